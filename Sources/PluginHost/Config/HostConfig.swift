import Glibc
import PluginHostSupport

/// The host's own settings, `/etc/pluginhost/pluginhost.json` (optional):
///
///     { "mounts": ["/data"], "skipMounts": ["/scratch"], "maxFrozenSeconds": 60,
///       "hookHoldLimitSeconds": 30, "keepReports": 50, "maxOperationSeconds": 3600 }
///
/// `mounts` restricts the freeze to those mount points (as `--mount` does; the command line
/// wins), `skipMounts` excludes (added to `--skip`), `maxFrozenSeconds` is the guard's deadline,
/// `hookHoldLimitSeconds` how long a hook session holds its quiesce waiting for the agent's thaw,
/// `keepReports` how many per-operation reports are kept (the newest; `history` lists them),
/// `maxOperationSeconds` the operation's time limit (see `OperationRequest`).
/// It is one of the host's installed files: root's, not writable by others, else
/// `IncorrectPluginhostFile`.
public struct HostConfig: Sendable, Equatable {
    public static let defaultPath = "/etc/pluginhost/pluginhost.json"
    /// A hook session whose agent sends no thaw resumes after this long (qemu-ga calls no thaw
    /// hook when it froze nothing): short, since the applications stay quiesced meanwhile.
    public static let defaultHookHoldLimitSeconds = 30.0
    public static let hookHoldLimitRange = 1.0...600.0
    /// The whole operation's time limit, counted from its start: past it no script attempt or
    /// plugin quiesce starts and a running pre-script attempt or quiesce call is stopped; the
    /// undo steps (thaw, resume, the post-script's first attempt) still run, each bounded.
    public static let defaultOperationSeconds = 3600
    public static let operationSecondsRange = 10...86400

    public var mounts: [String] = []
    public var skipMounts: [String] = []
    public var maxFrozenSeconds: Double?
    /// `group`: this machine's consistency group settings (README, "Consistency groups").
    public var group = GroupFields()
    public var hookHoldLimitSeconds: Double?
    public var keepReports = ReportStore.defaultKeep
    public var maxOperationSeconds: Int?

    /// The range `keepReports` accepts.
    public static let keepReportsRange = 1...10_000

    public init(
        mounts: [String] = [], skipMounts: [String] = [], maxFrozenSeconds: Double? = nil,
        hookHoldLimitSeconds: Double? = nil, keepReports: Int = ReportStore.defaultKeep,
        maxOperationSeconds: Int? = nil
    ) {
        self.mounts = mounts
        self.skipMounts = skipMounts
        self.maxFrozenSeconds = maxFrozenSeconds
        self.hookHoldLimitSeconds = hookHoldLimitSeconds
        self.keepReports = keepReports
        self.maxOperationSeconds = maxOperationSeconds
    }

    /// Loads `path` (default when nil); a missing default file is an empty config.
    public static func load(path explicitPath: String?) -> Result<HostConfig, HostError> {
        let path = explicitPath ?? defaultPath
        func problem(_ message: String) -> HostError {
            HostError(.incorrectPluginhostFile, "host config \(message)", step: "checks")
        }
        let real: String
        switch FileTrust.verify(path, rule: .readOnlyForOthers) {
        case .success(let resolved): real = resolved
        case .failure(let failure):
            if failure.isMissing && explicitPath == nil { return .success(HostConfig()) }
            return .failure(problem("\(failure)"))
        }
        let bytes: [UInt8]
        do {
            let file = try FileDescriptor.open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
            if let failure = FileTrust.check(try file.status(), of: real, rule: .readOnlyForOthers) {
                return .failure(problem("\(failure)"))
            }
            bytes = try file.readAll(limit: 1 << 20)
        } catch {
            return .failure(problem("\(real): \(error)"))
        }
        return parse(bytes, path: real)
    }

    /// Parses the file's bytes (`path` names it in messages).
    public static func parse(_ bytes: [UInt8], path real: String) -> Result<HostConfig, HostError> {
        func problem(_ message: String) -> HostError {
            HostError(.incorrectPluginhostFile, "host config \(message)", step: "checks")
        }
        let document: JSONValue
        do {
            document = try JSONParser.parse(bytes)
        } catch {
            return .failure(problem("\(real): \(error)"))
        }
        guard case .object(let members) = document else {
            return .failure(problem("\(real): the top level must be an object"))
        }
        var config = HostConfig()
        for (key, value) in members {
            switch (key, value) {
            case ("mounts", .array(let items)), ("skipMounts", .array(let items)):
                var paths: [String] = []
                for item in items {
                    guard case .string(let path) = item, path.hasPrefix("/") else {
                        return .failure(
                            problem("\(real): \(key) must be an array of absolute paths, found \(item.kindDescription)")
                        )
                    }
                    paths.append(path)
                }
                if key == "mounts" { config.mounts = paths } else { config.skipMounts = paths }
            case ("maxFrozenSeconds", .number(let number)):
                guard let seconds = number.doubleValue, FreezeGuard.deadlineRange.contains(seconds) else {
                    return .failure(problem("\(real): maxFrozenSeconds must be from 1 to 600, found \(number.text)"))
                }
                config.maxFrozenSeconds = seconds
            case ("group", _):
                switch GroupFields.parse(value) {
                case .success(let fields): config.group = fields
                case .failure(let message): return .failure(problem("\(real): \(message)"))
                }
            case ("hookHoldLimitSeconds", .number(let number)):
                guard let seconds = number.doubleValue, hookHoldLimitRange.contains(seconds) else {
                    return .failure(
                        problem("\(real): hookHoldLimitSeconds must be from 1 to 600, found \(number.text)"))
                }
                config.hookHoldLimitSeconds = seconds
            case ("keepReports", .number(let number)):
                guard let count = number.integerValue, keepReportsRange.contains(count) else {
                    return .failure(
                        problem("\(real): keepReports must be an integer from 1 to 10000, found \(number.text)"))
                }
                config.keepReports = count
            case ("maxOperationSeconds", .number(let number)):
                guard let seconds = number.integerValue, operationSecondsRange.contains(seconds) else {
                    return .failure(
                        problem(
                            """
                            \(real): maxOperationSeconds must be an integer from \(operationSecondsRange.lowerBound) \
                            to \(operationSecondsRange.upperBound), found \(number.text)
                            """
                        ))
                }
                config.maxOperationSeconds = seconds
            default:
                return .failure(problem("\(real): unexpected key \"\(key)\" or value \(value.kindDescription)"))
            }
        }
        return .success(config)
    }
}
