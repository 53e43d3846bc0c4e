import Glibc

/// The files the plugin trusts as root: the password file (libpq reads it by path) and the
/// directory that keeps backup labels. Checked on the real file after resolving every symlink,
/// and on every directory above it: a directory others can write to would let them swap the file
/// (unless it has the sticky bit, like /tmp, which keeps others from replacing root's entries).
enum CredentialFiles {
    /// Why `path` may not be used as a password file, or nil when it may: a regular file owned by
    /// root with no group or other permission bits (600 or 400), in root-owned directories.
    static func passfileProblem(_ path: String) -> String? {
        let real: String
        switch resolve(path) {
        case .success(let resolved): real = resolved
        case .failure(let problem): return "password file \(problem)"
        }
        var info = stat()
        guard lstat(real, &info) == 0 else { return "password file \(real) cannot be checked: \(errnoText())" }
        let shown = real == path ? path : "\(path) (really \(real))"
        guard info.st_mode & S_IFMT == S_IFREG else {
            return "password file \(shown) is not a regular file; it must be a regular file owned by root with mode 600 or 400"
        }
        guard info.st_uid == 0 else {
            return "password file \(shown) is owned by uid \(info.st_uid); it must be owned by root (chown root \(real))"
        }
        let mode = info.st_mode & 0o7777
        guard mode & 0o077 == 0 else {
            return "password file \(shown) has mode \(octal(mode)); it must have no group or other permission bits (chmod 600 \(real))"
        }
        if let problem = directoryProblem(above: real) { return "password file \(shown): \(problem)" }
        return nil
    }

    /// Why `path` may not keep backup labels, or nil: an existing directory owned by root, not
    /// writable by group or other, in root-owned directories.
    static func labelDirectoryProblem(_ path: String) -> String? {
        let real: String
        switch resolve(path) {
        case .success(let resolved): real = resolved
        case .failure(let problem): return "label directory \(problem); create it (mkdir -m 700 \(path))"
        }
        var info = stat()
        guard lstat(real, &info) == 0 else { return "label directory \(real) cannot be checked: \(errnoText())" }
        guard info.st_mode & S_IFMT == S_IFDIR else { return "label directory \(real) is not a directory" }
        guard info.st_uid == 0 else {
            return "label directory \(real) is owned by uid \(info.st_uid); it must be owned by root"
        }
        guard info.st_mode & 0o022 == 0 else {
            return "label directory \(real) has mode \(octal(info.st_mode & 0o7777)); it must not be writable by group or other (chmod 700)"
        }
        return directoryProblem(above: real).map { "label directory \(real): \($0)" }
    }

    /// realpath(3), with a message for a missing file or a dangling symlink.
    static func resolve(_ path: String) -> Result<String, Problem> {
        guard let resolved = realpath(path, nil) else {
            let error = errno
            var info = stat()
            if error == ENOENT && lstat(path, &info) == 0 {
                return .failure(Problem("\(path) is a symlink to a file that does not exist"))
            }
            if error == ENOENT { return .failure(Problem("\(path) does not exist")) }
            return .failure(Problem("\(path) cannot be resolved: \(String(cString: strerror(error)))"))
        }
        defer { free(resolved) }
        return .success(String(cString: resolved))
    }

    struct Problem: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Every directory above a real path must be root's and writable by nobody else, unless sticky.
    private static func directoryProblem(above real: String) -> String? {
        var directory = parent(of: real)
        while true {
            var info = stat()
            guard lstat(directory, &info) == 0 else { return "directory \(directory) cannot be checked: \(errnoText())" }
            if info.st_uid != 0 {
                return "directory \(directory) is owned by uid \(info.st_uid); every directory above the file must be owned by root"
            }
            if info.st_mode & 0o022 != 0 && info.st_mode & S_ISVTX == 0 {
                return "directory \(directory) has mode \(octal(info.st_mode & 0o7777)) and is writable by group or other without the sticky bit"
            }
            if directory == "/" { return nil }
            directory = parent(of: directory)
        }
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}
