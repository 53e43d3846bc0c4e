import Glibc
import PluginHostSupport

/// The host's own settings, `/etc/pluginhost/pluginhost.json` (optional):
///
///     { "mounts": ["/data"], "skipMounts": ["/scratch"], "maxFrozenSeconds": 60 }
///
/// `mounts` restricts the freeze to those mount points (as `--mount` does; the command line
/// wins), `skipMounts` excludes (added to `--skip`), `maxFrozenSeconds` is the guard's deadline.
/// It is one of the host's installed files: root's, not writable by others, else
/// `IncorrectPluginhostFile`.
public struct HostConfig: Sendable, Equatable {
    public static let defaultPath = "/etc/pluginhost/pluginhost.json"

    public var mounts: [String] = []
    public var skipMounts: [String] = []
    public var maxFrozenSeconds: Double?
    /// `group`: this machine's consistency group settings (README, "Consistency groups").
    public var group = GroupFields()

    public init(mounts: [String] = [], skipMounts: [String] = [], maxFrozenSeconds: Double? = nil) {
        self.mounts = mounts
        self.skipMounts = skipMounts
        self.maxFrozenSeconds = maxFrozenSeconds
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
        let document: JSONValue
        do {
            let file = try FileDescriptor.open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
            if let failure = FileTrust.check(try file.status(), of: real, rule: .readOnlyForOthers) {
                return .failure(problem("\(failure)"))
            }
            document = try JSONParser.parse(try file.readAll(limit: 1 << 20))
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
                        return .failure(problem("\(real): \(key) must be an array of absolute paths, found \(item.kindDescription)"))
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
            default:
                return .failure(problem("\(real): unexpected key \"\(key)\" or value \(value.kindDescription)"))
            }
        }
        return .success(config)
    }
}
