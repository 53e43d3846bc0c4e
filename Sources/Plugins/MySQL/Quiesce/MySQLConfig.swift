import PluginHostSupport
import PluginKit

/// The manifest's `config` object, validated strictly: an unknown key, a wrong type or a value
/// out of range is PH_INVALID_CONFIG naming the key. Credentials are never here: they are in
/// the option file named by `optionFile`.
struct MySQLConfig: Sendable, Equatable {
    /// Unix socket of the server (absolute path).
    var socket: String?
    /// TCP host (use `127.0.0.1`: libmariadb takes `localhost` as "the default socket").
    var host: String?
    /// TCP port, only with `host`; default 3306.
    var port: Int?
    /// Option file with the `[client]` user and password (root's, mode 600 or 400).
    var optionFile: String?
    var mode: LockMode = .auto
    /// Longest the lock statements may wait for running statements, in total.
    var lockWaitTimeoutSeconds: Double = 2
    /// Refuse (PH_BUSY) when a statement has run this long; 0 turns the check off.
    var longQueryThresholdSeconds: Double = 1
    var recordBinlogPosition = true
    var connectTimeoutSeconds: Double = 5

    static let keys = [
        "socket", "host", "port", "optionFile", "mode", "lockWaitTimeoutSeconds",
        "longQueryThresholdSeconds", "recordBinlogPosition", "connectTimeoutSeconds",
    ]

    static func parse(_ json: JSONValue) throws(PluginError) -> MySQLConfig {
        guard case .object(let members) = json else {
            throw invalid("the config must be a JSON object, got \(json.kindDescription)")
        }
        var config = MySQLConfig()
        for (key, value) in members {
            switch key {
            case "socket":
                config.socket = try absolutePath(key, value)
                if config.socket!.utf8.count > 107 {
                    throw invalid(
                        "config key \"socket\": the path is longer than a unix socket path can be (107 bytes)")
                }
            case "host":
                let host = try string(key, value)
                guard !host.isEmpty, host.utf8.count <= 255, !host.contains(where: { $0.isWhitespace || $0.isNewline })
                else {
                    throw invalid(
                        "config key \"host\": expected a host name or IP address, got \(value.kindDescription)")
                }
                config.host = host
            case "port":
                config.port = try integer(key, value, in: 1...65535)
            case "optionFile":
                config.optionFile = try absolutePath(key, value)
            case "mode":
                let text = try string(key, value)
                guard let mode = LockMode(rawValue: text) else {
                    throw invalid(
                        """
                        config key \"mode\": expected one of \
                        \(LockMode.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), got \
                        \(value.kindDescription)
                        """
                    )
                }
                config.mode = mode
            case "lockWaitTimeoutSeconds":
                config.lockWaitTimeoutSeconds = try seconds(key, value, minimum: 0, exclusive: true, maximum: 3600)
            case "longQueryThresholdSeconds":
                config.longQueryThresholdSeconds = try seconds(key, value, minimum: 0, exclusive: false, maximum: 86400)
            case "recordBinlogPosition":
                guard case .bool(let flag) = value else {
                    throw invalid(
                        "config key \"recordBinlogPosition\": expected true or false, got \(value.kindDescription)")
                }
                config.recordBinlogPosition = flag
            case "connectTimeoutSeconds":
                config.connectTimeoutSeconds = try seconds(key, value, minimum: 0, exclusive: true, maximum: 300)
            default:
                throw invalid(
                    """
                    unknown config key \"\(key)\" (known keys: \(keys.joined(separator: ", "))); credentials belong in \
                    the option file named by optionFile, never in the manifest
                    """
                )
            }
        }
        if config.socket != nil && config.host != nil {
            throw invalid("config keys \"socket\" and \"host\": give one of them, not both")
        }
        if config.port != nil && config.host == nil {
            throw invalid("config key \"port\": a port needs \"host\" (a unix socket has no port)")
        }
        return config
    }

    private static func invalid(_ message: String) -> PluginError {
        PluginError(.invalidConfig, message)
    }

    private static func string(_ key: String, _ value: JSONValue) throws(PluginError) -> String {
        guard case .string(let text) = value else {
            throw invalid("config key \"\(key)\": expected a string, got \(value.kindDescription)")
        }
        return text
    }

    private static func absolutePath(_ key: String, _ value: JSONValue) throws(PluginError) -> String {
        let path = try string(key, value)
        guard path.hasPrefix("/"), !path.contains("\0") else {
            throw invalid("config key \"\(key)\": expected an absolute path, got \(value.kindDescription)")
        }
        return path
    }

    private static func integer(_ key: String, _ value: JSONValue, in range: ClosedRange<Int>) throws(PluginError)
        -> Int
    {
        guard case .number(let number) = value, let integer = number.integerValue else {
            throw invalid(
                "config key \"\(key)\": expected an integer from \(range.lowerBound) to \(range.upperBound), got \(value.kindDescription)"
            )
        }
        guard range.contains(integer) else {
            throw invalid(
                "config key \"\(key)\": \(integer) is out of range (\(range.lowerBound) to \(range.upperBound))")
        }
        return integer
    }

    private static func seconds(
        _ key: String, _ value: JSONValue, minimum: Double, exclusive: Bool,
        maximum: Double
    ) throws(PluginError) -> Double {
        let range =
            exclusive
            ? "greater than \(Int(minimum)) and at most \(Int(maximum))" : "from \(Int(minimum)) to \(Int(maximum))"
        guard case .number(let number) = value, let seconds = number.doubleValue, seconds.isFinite else {
            throw invalid("config key \"\(key)\": expected a number of seconds \(range), got \(value.kindDescription)")
        }
        guard exclusive ? seconds > minimum : seconds >= minimum, seconds <= maximum else {
            throw invalid("config key \"\(key)\": \(number.text) is out of range (\(range) seconds)")
        }
        return seconds
    }
}
