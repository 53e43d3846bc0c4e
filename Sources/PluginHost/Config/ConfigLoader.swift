import Glibc
import PluginHostSupport

/// Loads the Azure config file the way a root process must: resolve it, check the real file
/// and every directory above it, open it once and read the descriptor it checked.
public enum ConfigLoader {
    public enum Outcome: Sendable {
        /// The default file does not exist: scripts are off.
        case absent
        case loaded(ScriptConfig, path: String, warnings: [String])
    }

    /// `explicitPath` is `--config`; a missing explicit file is an error, a missing default is not.
    public static func load(explicitPath: String?) -> Result<Outcome, HostError> {
        loadKeepingPolicy(explicitPath: explicitPath).result
    }

    /// `load`, and for a trusted file (root's, safe mode) that fails to parse, its own
    /// continueBackupOnFailure when that key is a boolean: a bad field must not turn a file
    /// that says `false` into a backup that goes on. An untrusted file says nothing.
    public static func loadKeepingPolicy(explicitPath: String?) -> (
        result: Result<Outcome, HostError>, continueBackupOnFailure: Bool?
    ) {
        var declared: Bool?
        let result = load(explicitPath: explicitPath, declared: &declared)
        return (result, declared)
    }

    private static func load(explicitPath: String?, declared: inout Bool?) -> Result<Outcome, HostError> {
        let path = explicitPath ?? ScriptConfig.defaultPath
        let real: String
        switch FileTrust.verify(path, rule: .configFile) {
        case .success(let resolved):
            real = resolved
        case .failure(let failure):
            if failure.isMissing && explicitPath == nil { return .success(.absent) }
            return .failure(ScriptConfig.invalid("config file \(failure)"))
        }
        do {
            let file = try FileDescriptor.open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
            // Check what was opened, not only what the path named a moment ago.
            if let failure = FileTrust.check(try file.status(), of: real, rule: .configFile) {
                return .failure(ScriptConfig.invalid("config file \(failure)"))
            }
            let bytes = try file.readAll(limit: ScriptConfig.maximumFileSize)
            declared = ScriptConfig.declaredContinueBackupOnFailure(bytes)
            let (config, warnings) = try ScriptConfig.parse(bytes)
            return .success(.loaded(config, path: real, warnings: warnings))
        } catch let error as SystemError {
            if error.errno == EFBIG {
                return .failure(
                    ScriptConfig.invalid("config file \(real) is larger than \(ScriptConfig.maximumFileSize) bytes"))
            }
            return .failure(ScriptConfig.invalid("config file \(real) cannot be read (\(error))"))
        } catch let error as HostError {
            return .failure(HostError(error.code, "\(real): \(error.message)", step: error.step))
        } catch {
            return .failure(ScriptConfig.invalid("config file \(real): \(error)"))
        }
    }
}
