import Glibc
import PluginHostSupport
import PluginKit

/// The option file that holds the credentials (`[client]` user and password), verified and
/// kept open. libmariadb reads it itself (MYSQL_READ_DEFAULT_FILE), through
/// `/proc/self/fd/N` of the descriptor verified here, so the file read is the file checked even
/// if the path is replaced later. This type never keeps the password: it only notes whether
/// one is set.
///
/// Rules (else PH_INVALID_CONFIG naming the file and the rule): the host's `FileTrust` rule for
/// secrets on the real file after resolving symlinks — a regular file, owned by root, nothing
/// for group or others — and on every directory above it; and no `!include`/`!includedir`
/// (included files would escape these checks).
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
        switch FileTrust.resolve(path) {
        case .success(let real): resolvedPath = real
        case .failure(let failure): throw refuse(failure.description)
        }
        let shown = resolvedPath == path ? "" : " (resolved to \(resolvedPath))"

        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(resolvedPath, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK)
        } catch {
            throw refuse("cannot be opened\(shown): \(error)")
        }
        // The host's rules, on the descriptor that libmariadb will read and on every directory
        // above it (as resolved and as written).
        let info: stat
        do { info = try file.status() } catch { throw refuse("cannot be examined\(shown): \(error)") }
        var failure =
            FileTrust.check(info, of: resolvedPath, rule: .secret) ?? FileTrust.checkDirectories(above: resolvedPath)
        if failure == nil, path != resolvedPath { failure = FileTrust.checkDirectories(above: path) }
        if let failure {
            throw refuse("\(failure)\(shown); it holds a password" + (failure.remedy.map { " (\($0))" } ?? ""))
        }

        let bytes: [UInt8]
        do { bytes = try file.readAll(limit: Self.sizeLimit) } catch {
            throw refuse(
                error.errno == EFBIG ? "is larger than \(Self.sizeLimit / 1024) KiB" : "cannot be read: \(error)")
        }
        let text = String(decoding: bytes, as: UTF8.self)
        if text.split(whereSeparator: \.isNewline).contains(where: {
            $0.drop(while: \.isWhitespace).hasPrefix("!include")
        }) {
            throw refuse(
                "uses !include or !includedir; included files escape the permission check, so put the options in this file"
            )
        }
        hasPassword = Self.setsPassword(text)
        descriptor = file
    }

    /// What libmariadb is told to read: this descriptor's file, whatever the path names now.
    var libraryPath: String {
        let proc = "/proc/self/fd/\(descriptor.rawValue)"
        return access(proc, R_OK) == 0 ? proc : resolvedPath
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
}

extension StringProtocol {
    fileprivate func trimmingBlanks() -> Substring {
        let trimmed = self.drop(while: \.isWhitespace)
        return Substring(trimmed.reversed().drop(while: \.isWhitespace).reversed())
    }

    fileprivate func replacingUnderscores() -> String {
        String(map { $0 == "_" ? "-" : $0 })
    }
}
