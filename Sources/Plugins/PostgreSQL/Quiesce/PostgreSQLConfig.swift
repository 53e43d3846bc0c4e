import CLibPQ
import PluginHostSupport
import PluginKit

/// The manifest's `config` object, validated strictly: unknown keys, wrong types and values out of
/// range are `PH_INVALID_CONFIG` naming the key. Secrets never come from here: a password only
/// from the file named by `passfile`, which must be root's and private (see `CredentialFiles`).
struct PostgreSQLConfig: Sendable {
    enum Mode: String, Sendable, CaseIterable {
        /// CHECKPOINT just before the freeze; the snapshot restores like after a crash, with a
        /// short WAL replay. Right when every volume of the cluster is snapshotted atomically.
        case checkpoint
        /// pg_backup_start before the freeze and pg_backup_stop after it, in one held session;
        /// the backup label is kept under `labelDirectory`. Needs WAL archiving.
        case backup
    }

    /// libpq keywords and values from `conninfo` and `service`, in the order given.
    var connection: [(keyword: String, value: String)] = []
    /// The password file handed to libpq as `passfile` (absolute, verified root-only).
    var passfile: String?
    var mode: Mode = .checkpoint
    /// Backup label prefix: the label is `<label>-<operation id>`.
    var label = "pluginhost"
    /// Where `pg_backup_stop`'s label file and tablespace map are kept, per operation id.
    var labelDirectory: String?
    var connectTimeoutSeconds = 10
    /// Bounds CHECKPOINT and pg_backup_start (which performs a checkpoint of its own).
    var checkpointTimeoutSeconds = 60
    /// Bounds pg_backup_stop, which waits until the last WAL segment is archived.
    var backupStopTimeoutSeconds = 60

    static let keys = [
        "conninfo", "service", "passfile", "mode", "label", "labelDirectory",
        "connectTimeoutSeconds", "checkpointTimeoutSeconds", "backupStopTimeoutSeconds",
    ]

    init() {}

    init(parsing json: JSONValue) throws(PluginError) {
        guard case .object(let members) = json else {
            throw PluginError(.invalidConfig, "the plugin config must be a JSON object, got \(json.kindDescription)")
        }
        for member in members where !Self.keys.contains(member.key) {
            throw PluginError(
                .invalidConfig,
                "unknown config key \"\(member.key)\"; known keys: \(Self.keys.joined(separator: ", "))")
        }
        let reader = Reader(json: json)

        if let conninfo = try reader.string("conninfo", allowEmpty: true) {
            connection = try Self.parseConninfo(conninfo)
        }
        if let service = try reader.string("service") {
            if connection.contains(where: { $0.keyword == "service" }) {
                throw PluginError(
                    .invalidConfig,
                    "config key \"service\": conninfo names a service too; give it in one place only")
            }
            connection.append(("service", service))
        }
        if let passfile = try reader.string("passfile") {
            guard passfile.hasPrefix("/") else {
                throw PluginError(
                    .invalidConfig, "config key \"passfile\": expected an absolute path, got \"\(passfile)\"")
            }
            if let problem = CredentialFiles.passfileProblem(passfile) {
                throw PluginError(.invalidConfig, "config key \"passfile\": \(problem)")
            }
            self.passfile = passfile
        }
        if let modeText = try reader.string("mode") {
            guard let mode = Mode(rawValue: modeText) else {
                throw PluginError(
                    .invalidConfig,
                    "config key \"mode\": expected \"checkpoint\" or \"backup\", got \"\(modeText)\"")
            }
            self.mode = mode
        }
        if let label = try reader.string("label") {
            guard label.count <= 64, label.unicodeScalars.allSatisfy(Self.isLabelCharacter) else {
                throw PluginError(
                    .invalidConfig,
                    "config key \"label\": expected 1 to 64 characters from A-Z a-z 0-9 . _ -, got \"\(label)\"")
            }
            self.label = label
        }
        if let directory = try reader.string("labelDirectory") {
            guard directory.hasPrefix("/") else {
                throw PluginError(
                    .invalidConfig,
                    "config key \"labelDirectory\": expected an absolute path, got \"\(directory)\"")
            }
            labelDirectory = directory
        }
        connectTimeoutSeconds = try reader.integer("connectTimeoutSeconds", in: 1...300) ?? connectTimeoutSeconds
        checkpointTimeoutSeconds =
            try reader.integer("checkpointTimeoutSeconds", in: 1...3600) ?? checkpointTimeoutSeconds
        backupStopTimeoutSeconds =
            try reader.integer("backupStopTimeoutSeconds", in: 1...3600) ?? backupStopTimeoutSeconds

        switch mode {
        case .backup:
            guard labelDirectory != nil else {
                throw PluginError(
                    .invalidConfig,
                    """
                    config key \"labelDirectory\" is required with mode \"backup\": the directory where the backup \
                    label of each snapshot is kept (it is needed to restore)
                    """
                )
            }
        case .checkpoint:
            for key in ["label", "labelDirectory", "backupStopTimeoutSeconds"] where json[key] != nil {
                throw PluginError(
                    .invalidConfig,
                    "config key \"\(key)\" applies only to mode \"backup\"; remove it or set \"mode\": \"backup\"")
            }
        }
    }

    /// Splits a libpq connection string (key=value or URI) into keywords, refusing secrets.
    static func parseConninfo(_ text: String) throws(PluginError) -> [(keyword: String, value: String)] {
        var failure: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(text, &failure) else {
            var detail = failure.map { String(cString: $0) } ?? "libpq could not parse it"
            if let failure { PQfreemem(failure) }
            // libpq quotes the offending part; never echo a string that may hold a password.
            if text.lowercased().contains("password") || text.contains("@") {
                detail = "it is not a valid connection string"
            }
            throw PluginError(.invalidConfig, "config key \"conninfo\": \(detail.trimmingWhitespace())")
        }
        defer { PQconninfoFree(options) }
        var result: [(keyword: String, value: String)] = []
        var cursor = options
        while let keyword = cursor.pointee.keyword {
            defer { cursor += 1 }
            guard let value = cursor.pointee.val else { continue }
            let name = String(cString: keyword)
            // libpq marks secret options ("password", "sslpassword") with the display character "*".
            if let display = cursor.pointee.dispchar, String(cString: display) == "*" {
                throw PluginError(
                    .invalidConfig,
                    """
                    config key \"conninfo\": it contains \"\(name)\"; secrets never go in the manifest: put the \
                    password in the file named by \"passfile\" (mode 600, owner root)
                    """
                )
            }
            if name == "passfile" {
                throw PluginError(
                    .invalidConfig,
                    "config key \"conninfo\": give the password file with the \"passfile\" key, which the plugin verifies, not in conninfo"
                )
            }
            result.append((name, String(cString: value)))
        }
        return result
    }

    static func isLabelCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "A"..."Z", "a"..."z", "0"..."9", ".", "_", "-": true
        default: false
        }
    }
}

/// Typed access to the members of the config object, with messages that name the key.
private struct Reader {
    let json: JSONValue

    func string(_ key: String, allowEmpty: Bool = false) throws(PluginError) -> String? {
        guard let value = json[key] else { return nil }
        guard case .string(let text) = value else {
            throw PluginError(.invalidConfig, "config key \"\(key)\": expected a string, got \(value.kindDescription)")
        }
        if text.isEmpty && !allowEmpty {
            throw PluginError(.invalidConfig, "config key \"\(key)\": must not be empty")
        }
        if text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw PluginError(.invalidConfig, "config key \"\(key)\": must not contain control characters")
        }
        return text
    }

    func integer(_ key: String, in range: ClosedRange<Int>) throws(PluginError) -> Int? {
        guard let value = json[key] else { return nil }
        guard case .number(let number) = value, let integer = number.integerValue, range.contains(integer) else {
            throw PluginError(
                .invalidConfig,
                "config key \"\(key)\": expected an integer from \(range.lowerBound) to \(range.upperBound), got \(value.kindDescription)"
            )
        }
        return integer
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self).unicodeScalars
        while let first = scalars.first, first.properties.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
