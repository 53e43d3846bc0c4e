public import Glibc

/// Path-based file system calls, one thin wrapper per call (in the manner of swift-system's
/// `FileOperations.swift`): the doc names the C call. Each retries EINTR (which a network or
/// FUSE file system can return from any of them; opendir(3) and readdir(3) do not report it)
/// and throws every other errno as a `SystemError` named after the call.
public enum FileSystem {
    /// The names in `directory` (opendir(3)/readdir(3)/closedir(3)), without "." and "..",
    /// in the order readdir returns them (sort them if order matters).
    public static func entries(of directory: String) throws(SystemError) -> [String] {
        guard let handle = opendir(directory) else { throw SystemError("opendir") }
        defer { closedir(handle) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(handle) else {
                if errno != 0 { throw SystemError("readdir") }
                return names
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
    }

    /// stat(2), or lstat(2) when `followingSymlinks` is false (the link itself).
    public static func status(of path: String, followingSymlinks: Bool = true) throws(SystemError) -> stat {
        var info = stat()
        if followingSymlinks {
            _ = try retryingInterrupts("stat") { stat(path, &info) }
        } else {
            _ = try retryingInterrupts("lstat") { lstat(path, &info) }
        }
        return info
    }

    /// access(2) with F_OK: true when `path` exists (a dangling symlink does not).
    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// mkdir(2) with `mode` (less the umask). An existing entry is EEXIST, thrown like any other.
    public static func makeDirectory(_ path: String, mode: mode_t) throws(SystemError) {
        _ = try retryingInterrupts("mkdir") { mkdir(path, mode) }
    }

    /// unlink(2).
    public static func remove(_ path: String) throws(SystemError) {
        _ = try retryingInterrupts("unlink") { unlink(path) }
    }

    /// rename(2): replaces `destination` atomically.
    public static func rename(_ source: String, to destination: String) throws(SystemError) {
        _ = try retryingInterrupts("rename") { Glibc.rename(source, destination) }
    }

    /// chmod(2).
    public static func setMode(_ path: String, _ mode: mode_t) throws(SystemError) {
        _ = try retryingInterrupts("chmod") { chmod(path, mode) }
    }

    /// umask(2) set to `mask` around `body`, then back to what it was (umask cannot fail).
    public static func withUmask<Result, Failure: Error>(
        _ mask: mode_t, _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let before = umask(mask)
        defer { umask(before) }
        return try body()
    }
}
