import PluginHostSupport

/// Azure's `/etc/azure/VMSnapshotScriptPluginConfig.json`, read with the rules of README, "The config file".
/// A file that works with Azure's extension works here unchanged; what Azure silently misreads
/// (strings for numbers, floats, nulls, out-of-range values) is refused with the field named.
public struct ScriptConfig: Sendable, Equatable {
    public static let defaultPath = "/etc/azure/VMSnapshotScriptPluginConfig.json"
    public static let maximumTimeoutSeconds = 1800
    public static let defaultTimeoutSeconds = 10
    public static let pollSecondsRange = 1...5
    /// Re-runs of a failed script: more are capped with a warning (so at most 11 attempts per
    /// script, each in the report). Azure's own host never re-runs, so its files never need more.
    public static let maximumRetries = 10
    /// Larger files are refused before parsing: a config file is a few hundred bytes.
    public static let maximumFileSize = 1 << 20

    public var pluginName: String?
    public var preScript: Script
    public var postScript: Script
    /// Per script attempt; already capped at `maximumTimeoutSeconds`.
    public var timeoutSeconds: Int
    public var continueBackupOnFailure: Bool
    public var fsFreezeEnabled: Bool
    /// Accepted and validated for compatibility; the host reacts to a script's exit at once.
    public var pollSeconds: Int

    public struct Script: Sendable, Equatable {
        public var location: String
        public var params: [String]
        public var retries: Int
    }

    /// Every key Azure's config defines; others are reported as warnings.
    public static let knownKeys: Set<String> = [
        "pluginName", "preScriptLocation", "postScriptLocation", "preScriptParams", "postScriptParams",
        "preScriptNoOfRetries", "postScriptNoOfRetries", "timeoutInSeconds", "continueBackupOnFailure",
        "fsFreezeEnabled", "ScriptsExecutionPollTimeSeconds",
    ]

    /// Parses the file's bytes. Throws `IncorrectJSONConfigFile` naming the field and the
    /// expected form; warnings (unknown keys, a capped timeout) are returned beside the config.
    public static func parse(_ bytes: [UInt8]) throws(HostError) -> (config: ScriptConfig, warnings: [String]) {
        let document: JSONValue
        do {
            document = try JSONParser.parse(bytes)
        } catch {
            throw invalid("the file is not valid JSON: \(error)")
        }
        guard case .object(let members) = document else {
            throw invalid("the top level must be a JSON object, found \(document.kindDescription)")
        }
        var fields = FieldReader(members: members)
        var warnings: [String] = []

        let pluginName = try fields.string("pluginName")
        let preLocation = try fields.location("preScriptLocation")
        let postLocation = try fields.location("postScriptLocation")
        let preParams = try fields.params("preScriptParams")
        let postParams = try fields.params("postScriptParams")
        var preRetries = try fields.integer(
            "preScriptNoOfRetries", in: 0...Int(Int32.max), default: 0,
            expected: "an integer of 0 or more")
        var postRetries = try fields.integer(
            "postScriptNoOfRetries", in: 0...Int(Int32.max), default: 0,
            expected: "an integer of 0 or more")
        func capped(_ key: String, _ retries: inout Int) {
            guard retries > maximumRetries else { return }
            warnings.append("\(key) \(retries) is over the limit; \(maximumRetries) is used")
            retries = maximumRetries
        }
        capped("preScriptNoOfRetries", &preRetries)
        capped("postScriptNoOfRetries", &postRetries)
        var timeout = try fields.integer(
            "timeoutInSeconds", in: 1...Int(Int32.max), default: defaultTimeoutSeconds,
            expected: "an integer of 1 or more (seconds per script attempt)")
        if timeout > maximumTimeoutSeconds {
            warnings.append("timeoutInSeconds \(timeout) is over the limit; \(maximumTimeoutSeconds) is used")
            timeout = maximumTimeoutSeconds
        }
        let continueOnFailure = try fields.boolean("continueBackupOnFailure", default: true)
        let freezeEnabled = try fields.boolean("fsFreezeEnabled", default: true)
        let poll = try fields.integer(
            "ScriptsExecutionPollTimeSeconds", in: pollSecondsRange, default: 3,
            expected: "an integer from 1 to 5")

        for key in fields.unreadKeys {
            if let known = knownKeys.first(where: { $0.lowercased() == key.lowercased() }) {
                warnings.append("unknown key \"\(key)\" is ignored (did you mean \"\(known)\"?)")
            } else {
                warnings.append("unknown key \"\(key)\" is ignored")
            }
        }

        let config = ScriptConfig(
            pluginName: pluginName,
            preScript: Script(location: preLocation, params: preParams, retries: preRetries),
            postScript: Script(location: postLocation, params: postParams, retries: postRetries),
            timeoutSeconds: timeout,
            continueBackupOnFailure: continueOnFailure,
            fsFreezeEnabled: freezeEnabled,
            pollSeconds: poll
        )
        return (config, warnings)
    }

    /// The file's own continueBackupOnFailure when it is JSON with that key as a boolean, even
    /// if another field is wrong: a trusted file that fails to parse still says whether a
    /// failure should fail the backup.
    public static func declaredContinueBackupOnFailure(_ bytes: [UInt8]) -> Bool? {
        guard let document = try? JSONParser.parse(bytes), case .object(let members) = document,
            case .bool(let flag)? = members.first(where: { $0.key == "continueBackupOnFailure" })?.value
        else { return nil }
        return flag
    }

    static func invalid(_ message: String) -> HostError {
        HostError(.incorrectJSONConfigFile, message, step: "checks")
    }
}

/// Reads typed fields from a JSON object, remembering which keys were read.
private struct FieldReader {
    let members: [(key: String, value: JSONValue)]
    private var read = Set<[UInt8]>()

    init(members: [(key: String, value: JSONValue)]) { self.members = members }

    /// Keys compare by Unicode scalars, as the parser tells them apart.
    var unreadKeys: [String] { members.map(\.key).filter { !read.contains(Array($0.utf8)) } }

    private mutating func value(_ key: String) -> JSONValue? {
        read.insert(Array(key.utf8))
        return JSONValue.object(members)[key]
    }

    private func wrong(_ key: String, _ expected: String, _ found: JSONValue) -> HostError {
        ScriptConfig.invalid("\(key): expected \(expected), found \(found.kindDescription)")
    }

    mutating func string(_ key: String) throws(HostError) -> String? {
        guard let found = value(key) else { return nil }
        guard case .string(let text) = found else { throw wrong(key, "a string", found) }
        return text
    }

    /// A script's location. Any string is one, as in Azure: what is not an absolute path names
    /// no script, and the checks report it as not found (`Preflight`), so that a template's
    /// unexpanded `@BINDIR@/…` keeps the file's own continueBackupOnFailure.
    mutating func location(_ key: String) throws(HostError) -> String {
        let expected = "an absolute path to a script"
        guard let found = value(key) else {
            // A key in the wrong case is only a warning, and warnings are lost with the error.
            let nearMiss = members.first { $0.key.lowercased() == key.lowercased() }.map {
                " (found \"\($0.key)\"; keys are case-sensitive: did you mean \"\(key)\"?)"
            }
            throw ScriptConfig.invalid("\(key): required, expected \(expected)\(nearMiss ?? "")")
        }
        guard case .string(let path) = found else { throw wrong(key, expected, found) }
        guard !path.utf8.contains(0) else { throw wrong(key, "\(expected) without NUL characters", found) }
        guard path.utf8.count < 4096 else { throw ScriptConfig.invalid("\(key): the path is longer than 4095 bytes") }
        return path
    }

    /// An array of strings; numbers are passed as written. Absent means no parameters.
    mutating func params(_ key: String) throws(HostError) -> [String] {
        let expected = "an array of strings"
        guard let found = value(key) else { return [] }
        guard case .array(let items) = found else { throw wrong(key, expected, found) }
        var params: [String] = []
        for (position, item) in items.enumerated() {
            switch item {
            case .string(let text) where !text.utf8.contains(0):
                params.append(text)
            case .number(let number):
                params.append(number.text)
            case .string:
                throw ScriptConfig.invalid(
                    "\(key)[\(position)]: expected a string without NUL characters, found \(item.kindDescription)")
            default:
                throw ScriptConfig.invalid(
                    "\(key)[\(position)]: expected a string (or a number), found \(item.kindDescription)")
            }
        }
        return params
    }

    mutating func integer(
        _ key: String, in range: ClosedRange<Int>, default fallback: Int,
        expected: String
    ) throws(HostError) -> Int {
        guard let found = value(key) else { return fallback }
        guard case .number(let number) = found, number.isInteger else { throw wrong(key, expected, found) }
        guard let integer = number.integerValue, range.contains(integer) else {
            throw ScriptConfig.invalid("\(key): expected \(expected), found \(number.text), which is out of range")
        }
        return integer
    }

    mutating func boolean(_ key: String, default fallback: Bool) throws(HostError) -> Bool {
        guard let found = value(key) else { return fallback }
        guard case .bool(let flag) = found else { throw wrong(key, "true or false", found) }
        return flag
    }
}
