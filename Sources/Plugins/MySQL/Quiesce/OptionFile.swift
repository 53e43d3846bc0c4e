import Glibc
import PluginHostSupport
import PluginKit

/// The option file that holds the credentials (`[client]` user and password), verified and
/// kept open. libmariadb reads it itself (MYSQL_READ_DEFAULT_FILE), through
/// `/proc/self/fd/N` of the descriptor verified here, so the file read is the file checked even
/// if the path is replaced later. This type never keeps the password: it only notes whether
/// one is set.
///
/// Rules (else PH_INVALID_CONFIG naming the file and the rule), checked on the real file after
/// resolving symlinks: a regular file, owned by root, no permission bits for group or others;
/// every directory above it owned by root and not writable by group or others (unless sticky,
/// like /tmp); no `!include`/`!includedir` (included files would escape these checks).
final class OptionFile {
    let configuredPath: String
    let resolvedPath: String
    let hasPassword: Bool
    private let descriptor: FileDescriptor

    static let sizeLimit = 64 * 1024
    /// The groups libmariadb reads from it (with MYSQL_READ_DEFAULT_GROUP "client").
    static let clientGroups: Set<String> = ["client", "client-server", "client-mariadb"]

    init(path: String) throws(PluginError) {
        configuredPath = path
        func refuse(_ rule: String) -> PluginError {
            PluginError(.invalidConfig, "optionFile \(path): \(rule)")
        }
        guard let real = realpath(path, nil) else {
            let error = errno
            throw refuse(error == ENOENT ? "does not exist" : "cannot be resolved: \(String(cString: strerror(error)))")
        }
        resolvedPath = String(cString: real)
        free(real)
        let shown = resolvedPath == path ? "" : " (resolved to \(resolvedPath))"

        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(resolvedPath, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK)
        } catch {
            throw refuse("cannot be opened\(shown): \(error)")
        }
        let info: stat
        do { info = try file.status() } catch { throw refuse("cannot be examined\(shown): \(error)") }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw refuse("is not a regular file\(shown); it must be a regular file owned by root with mode 600 or 400")
        }
        guard info.st_uid == 0 else {
            throw refuse("is owned by uid \(info.st_uid)\(shown); it must be owned by root (uid 0): chown root:root \(resolvedPath)")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw refuse("has mode \(Self.octal(info.st_mode & 0o7777))\(shown); it must give no permission to group or others (chmod 600 \(resolvedPath)), as it holds a password")
        }
        try Self.checkDirectories(above: resolvedPath, refuse: refuse)

        let bytes: [UInt8]
        do { bytes = try file.readAll(limit: Self.sizeLimit) } catch {
            throw refuse(error.errno == EFBIG ? "is larger than \(Self.sizeLimit / 1024) KiB" : "cannot be read: \(error)")
        }
        let text = String(decoding: bytes, as: UTF8.self)
        if text.split(whereSeparator: \.isNewline).contains(where: { $0.drop(while: \.isWhitespace).hasPrefix("!include") }) {
            throw refuse("uses !include or !includedir; included files escape the permission check, so put the options in this file")
        }
        hasPassword = Self.setsPassword(text)
        descriptor = file
    }

    /// What libmariadb is told to read: this descriptor's file, whatever the path names now.
    var libraryPath: String {
        let proc = "/proc/self/fd/\(descriptor.rawValue)"
        return access(proc, R_OK) == 0 ? proc : resolvedPath
    }

    private static func checkDirectories(above path: String, refuse: (String) -> PluginError) throws(PluginError) {
        var directory = path
        while let slash = directory.lastIndex(of: "/") {
            directory = slash == directory.startIndex ? "/" : String(directory[..<slash])
            var info = stat()
            guard stat(directory, &info) == 0 else {
                throw refuse("its directory \(directory) cannot be examined: \(String(cString: strerror(errno)))")
            }
            if info.st_uid != 0 {
                throw refuse("its directory \(directory) is owned by uid \(info.st_uid); every directory above the file must be owned by root, or the file could be replaced")
            }
            if info.st_mode & 0o022 != 0 && info.st_mode & S_ISVTX == 0 {
                throw refuse("its directory \(directory) is writable by group or others (mode \(octal(info.st_mode & 0o7777))), so the file could be replaced: chmod go-w \(directory)")
            }
            if directory == "/" { break }
        }
    }

    /// Whether a `password` option is set in a group libmariadb reads (`-` and `_` alike, as
    /// in libmariadb's option names).
    static func setsPassword(_ text: String) -> Bool {
        var inClientGroup = false
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingBlanks()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                let name = line.dropFirst().prefix { $0 != "]" }.trimmingBlanks()
                inClientGroup = clientGroups.contains(String(name))
                continue
            }
            guard inClientGroup else { continue }
            let key = line.prefix { $0 != "=" }.trimmingBlanks().replacingUnderscores()
            if key == "password" { return true }
        }
        return false
    }

    private static func octal(_ mode: mode_t) -> String {
        let text = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - text.count)) + text
    }
}

private extension StringProtocol {
    func trimmingBlanks() -> Substring {
        let trimmed = self.drop(while: \.isWhitespace)
        return Substring(trimmed.reversed().drop(while: \.isWhitespace).reversed())
    }

    func replacingUnderscores() -> String {
        String(map { $0 == "_" ? "-" : $0 })
    }
}
