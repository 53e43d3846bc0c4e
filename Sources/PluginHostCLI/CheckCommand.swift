import ArgumentParser
import PluginHost

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Run the checks an operation runs first and list every problem; freeze nothing.",
        discussion: "Lists the filesystems an operation would freeze, in freeze order. Exits 0 when no problem is found, 3 otherwise."
    )

    @OptionGroup var plan: PlanOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let preflight = Preflight.run(plan.request())
        let result = CheckResult(preflight)
        if output.json {
            try printJSON(result)
        } else {
            FileHandleOutput.standardOutput.write(result.text)
        }
        throw ExitCode(result.problems.isEmpty ? ExitStatus.success.rawValue : ExitStatus.invalid.rawValue)
    }
}

/// What `check` reports, for both renderings.
struct CheckResult: Encodable {
    var configFile: String?
    var config: ConfigSummary?
    var freezeEnabled: Bool
    var freezeOrder: [FreezeTarget]
    var notFrozen: [NotFrozen]
    var maxFrozenSeconds: Double
    var problems: [HostError]
    var warnings: [String]

    struct ConfigSummary: Encodable {
        var preScript: String
        var postScript: String
        var timeoutInSeconds: Int
        var preScriptNoOfRetries: Int
        var postScriptNoOfRetries: Int
        var continueBackupOnFailure: Bool
        var fsFreezeEnabled: Bool
    }

    struct NotFrozen: Encodable {
        var mountPoint: String
        var reason: String
    }

    init(_ preflight: Preflight) {
        if case .loaded(let config, let path) = preflight.config {
            configFile = path
            self.config = ConfigSummary(
                preScript: config.preScript.location, postScript: config.postScript.location,
                timeoutInSeconds: config.timeoutSeconds, preScriptNoOfRetries: config.preScript.retries,
                postScriptNoOfRetries: config.postScript.retries,
                continueBackupOnFailure: config.continueBackupOnFailure, fsFreezeEnabled: config.fsFreezeEnabled)
        }
        freezeEnabled = preflight.fsFreezeEnabled
        freezeOrder = preflight.freezeSelection?.targets ?? []
        notFrozen = preflight.freezeSelection?.skipped.map { NotFrozen(mountPoint: $0.mountPoint, reason: $0.reason) } ?? []
        maxFrozenSeconds = preflight.maxFrozenSeconds
        problems = preflight.problems
        warnings = preflight.warnings
    }

    var text: String {
        var out = ""
        if let config, let configFile {
            out += "Config \(configFile)\n"
            out += TextTable(rows: [
                ["  pre-script", config.preScript, "retries \(config.preScriptNoOfRetries)"],
                ["  post-script", config.postScript, "retries \(config.postScriptNoOfRetries)"],
                ["  timeout", "\(config.timeoutInSeconds) s per attempt", ""],
                ["  continueBackupOnFailure", "\(config.continueBackupOnFailure)", ""],
                ["  fsFreezeEnabled", "\(config.fsFreezeEnabled)", ""],
            ]).render()
        } else {
            out += "Config: none loaded\n"
        }
        if freezeEnabled {
            out += "\nWould freeze, in this order (thaw in reverse; deadline \(formatNumber(maxFrozenSeconds)) s):\n"
            out += freezeOrder.isEmpty ? "  (nothing)\n"
                : TextTable(rows: freezeOrder.enumerated().map { ["  \($0.offset + 1).", $0.element.mountPoint, $0.element.fsType, $0.element.source] }).render()
            if !notFrozen.isEmpty {
                out += "Not frozen:\n" + TextTable(rows: notFrozen.map { ["  " + $0.mountPoint, $0.reason] }).render()
            }
        } else {
            out += "\nFreeze: off (fsFreezeEnabled is false)\n"
        }
        if !warnings.isEmpty { out += "\nWarnings:\n" + warnings.map { "  \($0)\n" }.joined() }
        out += problems.isEmpty ? "\nNo problems found.\n"
            : "\n\(problems.count) problem\(problems.count == 1 ? "" : "s"):\n" + problems.map { "  \($0.code.rawValue): \($0.message)\n" }.joined()
        return out
    }
}
