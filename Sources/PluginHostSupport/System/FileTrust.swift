public import Glibc

/// Decides whether a file may be trusted by a root process: the real file (after resolving
/// every symlink) and every directory above it must be owned by root and writable by nobody
/// else. A directory writable by others is accepted only with the sticky bit (like /tmp), which
/// keeps others from replacing root's entries in it.
public enum FileTrust {
    /// What a file must look like, beyond being root's.
    public struct Rule: Sendable {
        /// Mode bits that must be clear (0o077: no group/other access at all).
        public var forbiddenBits: mode_t
        /// Mode bits that must be set (0o100: owner may execute).
        public var requiredBits: mode_t
        /// How the rule reads in a message, e.g. "0600 or 0400".
        public var expected: String

        /// The config file: 600 or 400 (no execute, no group/other bits).
        public static let configFile = Rule(forbiddenBits: 0o177, requiredBits: 0, expected: "0600 or 0400")
        /// A script: no group or other bits, exactly what Azure's ScriptRunner accepts (it runs
        /// every script through sh, so 600 and 400 work there and here).
        public static let script = Rule(
            forbiddenBits: 0o077, requiredBits: 0,
            expected: "0700, 0500, 0600 or 0400 (nothing for group or other)")
        /// A command a plugin runs as root (the shell plugin's): executable by its owner and
        /// writable only by root. Others may read and run it, as they may /bin/true or a
        /// database's client; unlike a script, it is executed directly, never through sh.
        public static let command = Rule(
            forbiddenBits: 0o022, requiredBits: 0o100,
            expected: "the owner's execute bit and no group or other write bit, e.g. 0755 or 0700")
        /// A file others may read but not change (manifests, libraries, host config).
        public static let readOnlyForOthers = Rule(
            forbiddenBits: 0o022, requiredBits: 0,
            expected: "no group or other write bit, e.g. 0644")
        /// A file holding a secret (a password file): 600 or 400.
        public static let secret = Rule(
            forbiddenBits: 0o077, requiredBits: 0, expected: "0600 or 0400 (nothing for group or others)")

        public init(forbiddenBits: mode_t, requiredBits: mode_t, expected: String) {
            self.forbiddenBits = forbiddenBits
            self.requiredBits = requiredBits
            self.expected = expected
        }
    }

    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        case missing(path: String)
        case danglingSymlink(path: String)
        case unreadable(path: String, error: SystemError)
        case notRegularFile(path: String)
        case notDirectory(path: String)
        case wrongOwner(path: String, uid: uid_t)
        case unsafeMode(path: String, mode: mode_t, expected: String)
        case unsafeDirectory(path: String, uid: uid_t, mode: mode_t)

        public var description: String {
            switch self {
            case .missing(let path): "\(path) does not exist"
            case .danglingSymlink(let path): "\(path) is a symlink to a file that does not exist"
            case .unreadable(let path, let error): "\(path) cannot be checked (\(error))"
            case .notRegularFile(let path): "\(path) is not a regular file"
            case .notDirectory(let path): "\(path) is not a directory"
            case .wrongOwner(let path, let uid): "\(path) is owned by uid \(uid); it must be owned by root"
            case .unsafeMode(let path, let mode, let expected):
                "\(path) has mode \(octal(mode)); expected \(expected)"
            case .unsafeDirectory(let path, let uid, let mode):
                uid != 0
                    ? "directory \(path) is owned by uid \(uid); every directory above the file must be owned by root"
                    : "directory \(path) has mode \(octal(mode)) and is writable by group or other without the sticky bit"
            }
        }

        /// The command that fixes it, when there is one.
        public var remedy: String? {
            switch self {
            case .wrongOwner(let path, _):
                return "chown root:root \(path)"
            case .unsafeMode(let path, _, let expected):
                // The first mode the rule names, e.g. "0600 or 0400" → chmod 600.
                let words = expected.split(whereSeparator: { !$0.isNumber })
                guard let mode = words.first(where: { $0.count == 4 }) else { return "chmod go-w \(path)" }
                return "chmod \(mode.dropFirst()) \(path)"
            case .unsafeDirectory(let path, let uid, _):
                return uid != 0 ? "chown root:root \(path)" : "chmod go-w \(path)"
            default:
                return nil
            }
        }

        public var isMissing: Bool {
            if case .missing = self { return true }
            return false
        }
    }

    /// Resolves `path` and checks the real file against `rule` and every directory above it.
    /// Returns the real path.
    public static func verify(_ path: String, rule: Rule) -> Result<String, Failure> {
        verifyResolved(path) { info, real in check(info, of: real, rule: rule) }
    }

    /// A directory root can trust: the real directory is root's and writable by nobody else,
    /// and so is every directory above it. Returns the real path.
    public static func verifyDirectory(_ path: String) -> Result<String, Failure> {
        verifyResolved(path) { info, real in
            guard info.st_mode & S_IFMT == S_IFDIR else { return .notDirectory(path: real) }
            guard info.st_uid == 0 else { return .wrongOwner(path: real, uid: info.st_uid) }
            guard info.st_mode & 0o022 == 0 else {
                return .unsafeMode(
                    path: real, mode: info.st_mode & 0o7777, expected: "no group or other write bit, e.g. 0700")
            }
            return nil
        }
    }

    /// Resolves, checks the real entry with `checkEntry`, then every directory above it — on
    /// the real path and on the path as written: a symlink in a directory others can write
    /// could be pointed at another root-owned file between this check and its use.
    private static func verifyResolved(_ path: String, _ checkEntry: (stat, String) -> Failure?) -> Result<
        String, Failure
    > {
        let real: String
        switch resolve(path) {
        case .success(let resolved): real = resolved
        case .failure(let failure): return .failure(failure)
        }
        var info = stat()
        guard lstat(real, &info) == 0 else { return .failure(.unreadable(path: real, error: SystemError("lstat"))) }
        if let failure = checkEntry(info, real) ?? checkDirectories(above: real) { return .failure(failure) }
        if path != real, let failure = checkDirectories(above: path) { return .failure(failure) }
        return .success(real)
    }

    /// The checks of `verify` on an already opened file's status, for callers that open once
    /// and then verify the descriptor they will use.
    public static func check(_ info: stat, of path: String, rule: Rule) -> Failure? {
        guard info.st_mode & S_IFMT == S_IFREG else { return .notRegularFile(path: path) }
        guard info.st_uid == 0 else { return .wrongOwner(path: path, uid: info.st_uid) }
        let mode = info.st_mode & 0o7777
        if mode & rule.forbiddenBits != 0 || mode & rule.requiredBits != rule.requiredBits {
            return .unsafeMode(path: path, mode: mode, expected: rule.expected)
        }
        return nil
    }

    /// realpath(3), telling a missing file from a dangling symlink.
    public static func resolve(_ path: String) -> Result<String, Failure> {
        guard let resolved = realpath(path, nil) else {
            let error = errno
            var info = stat()
            if error == ENOENT {
                return lstat(path, &info) == 0 ? .failure(.danglingSymlink(path: path)) : .failure(.missing(path: path))
            }
            return .failure(.unreadable(path: path, error: SystemError("realpath", errno: error)))
        }
        defer { free(resolved) }
        return .success(String(cString: resolved))
    }

    /// Every directory from the parent of `realPath` up to `/`.
    public static func checkDirectories(above realPath: String) -> Failure? {
        var directory = parent(of: realPath)
        while true {
            var info = stat()
            guard stat(directory, &info) == 0 else {
                return .unreadable(path: directory, error: SystemError("stat"))
            }
            let writableByOthers = info.st_mode & 0o022 != 0 && info.st_mode & S_ISVTX == 0
            if info.st_uid != 0 || writableByOthers {
                return .unsafeDirectory(path: directory, uid: info.st_uid, mode: info.st_mode & 0o7777)
            }
            if directory == "/" { return nil }
            directory = parent(of: directory)
        }
    }

    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}

/// A mode as four octal digits, as chmod takes it.
public func octal(_ mode: mode_t) -> String {
    let digits = String(mode, radix: 8)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}
