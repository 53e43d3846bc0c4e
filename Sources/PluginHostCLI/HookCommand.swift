import ArgumentParser
import PluginHost

/// Hypervisor agents' hooks: the agent freezes and takes the snapshot; pluginhost runs the
/// pre-script and quiesces the plugins before (`freeze`), and resumes them and runs the
/// post-script after (`thaw`), holding the plugin sessions in between.
struct HookCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hook",
        abstract: "Hook adapters for hypervisor agents that freeze by themselves (QEMU guest agent, VMware Tools).",
        discussion: """
            Installed under a hook name the binary is that hook and nothing else: fsfreeze-hook (qemu-ga's
            --fsfreeze-hook) or a file in fsfreeze-hook.d acts as `hook qemu`; a file in backupScripts.d, or
            VMware's legacy /usr/sbin/pre-freeze-script (freeze) and /usr/sbin/post-thaw-script (thaw,
            freezeFail), as `hook vmware`. Under any other name than pluginhost it refuses (exit 3).
            freeze exits non-zero only when the agent should abort its snapshot; thaw and freezeFail only
            when resume or the post-script failed. A quiesce the agent never thaws is released after
            --hold-limit seconds (default 30).
            """,
        subcommands: [QEMUHook.self, VMwareHook.self]
    )
}

/// What only the hooks take.
struct HookOptions: ParsableArguments {
    @Option(
        name: .customLong("hold-limit"),
        help: ArgumentHelp(
            "Release a quiesce whose agent sends no thaw after this many seconds, 1 to 600 (default 30; host config hookHoldLimitSeconds).",
            valueName: "seconds"))
    var holdLimit: Double?

    func validate() throws {
        if let holdLimit, !HostConfig.hookHoldLimitRange.contains(holdLimit) {
            throw ValidationError("--hold-limit must be from 1 to 600 seconds")
        }
    }

    var arguments: [String] { holdLimit.map { ["--hold-limit", String($0)] } ?? [] }
}

struct QEMUHook: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qemu", abstract: "QEMU guest agent fsfreeze-hook: freeze | thaw.")

    @Argument(help: "freeze or thaw") var action: String
    @OptionGroup var plan: PlanOptions
    @OptionGroup var hook: HookOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard ["freeze", "thaw"].contains(action) else {
            throw ValidationError("the QEMU hook takes freeze or thaw, not \(action)")
        }
    }

    func run() throws {
        try requireRoot("hook qemu")
        throw ExitCode(runHook(agent: "qemu", action: action, plan: plan, hook: hook, output: output))
    }
}

struct VMwareHook: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmware", abstract: "VMware Tools backupScripts.d: freeze | thaw | freezeFail [SCRIPT-ARG].")

    @Argument(help: "freeze, thaw or freezeFail") var action: String
    @Argument(
        help: ArgumentHelp(
            "The scriptArg VMware Tools passes after the action, if any (recorded in the report).",
            valueName: "script-arg"))
    var positionalScriptArg: String?
    @Option(
        name: .customLong("script-arg"),
        help: ArgumentHelp("The same, as an option (a value may start with -).", valueName: "text"))
    var optionScriptArg: String?
    @OptionGroup var plan: PlanOptions
    @OptionGroup var hook: HookOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard ["freeze", "thaw", "freezefail"].contains(action.lowercased()) else {
            throw ValidationError("the VMware hook takes freeze, thaw or freezeFail, not \(action)")
        }
    }

    func run() throws {
        try requireRoot("hook vmware")
        throw ExitCode(
            runHook(
                agent: "vmware", action: action.lowercased(), plan: plan, hook: hook, output: output,
                scriptArg: optionScriptArg ?? positionalScriptArg))
    }
}

private func runHook(
    agent: String, action: String, plan: PlanOptions, hook: HookOptions, output: OutputOptions,
    scriptArg: String? = nil
) -> Int32 {
    switch action {
    case "freeze":
        let envelope = SessionClient.start(
            executable: currentExecutable(),
            arguments: ["--mode", agent] + plan.arguments + hook.arguments
                + (scriptArg.map { ["--script-arg=\($0)"] } ?? []),
            environment: sessionEnvironment(verbose: output.verbose))
        // Quiesced: exit 0 whatever the consistency (the agent freezes next; the report says
        // what the snapshot is worth). Ended before that: the agent must abort its snapshot.
        return SessionOutput.print(envelope, json: output.json, agentFreezes: true)
    case "thaw":
        return SessionOutput.hookThaw(snapshotTaken: true, json: output.json)
    default:  // freezefail: the agent's snapshot failed; resume and tell the post-script
        return SessionOutput.hookThaw(snapshotTaken: false, json: output.json)
    }
}

extension SessionOutput {
    /// `thaw`/`freezeFail` from an agent: fails only when what it asks for failed — resume and
    /// the post-script (or a thaw of ours: never, the agent froze). A lower consistency is in
    /// the report, not in the status the agent reads.
    static func hookThaw(snapshotTaken: Bool, json: Bool) -> Int32 {
        let paths = statePaths()
        switch SessionClient.thaw(paths: paths, operationID: nil, snapshotTaken: snapshotTaken) {
        case .report(let report):
            printReport(report, json: json)
            return hookStatus(report)
        case .refused(let message):
            FileHandleOutput.standardError.write("pluginhost hook: \(message)\n")
            return ExitStatus.invalid.rawValue
        case .noSession:
            // Nothing is held (no freeze came, it failed, or the hold limit released it): there
            // is nothing to resume, which is not a failure of the agent's thaw.
            var message = "pluginhost hook: no hook session is waiting for a thaw; nothing to resume"
            if let last = ReportStore(paths: paths).lastReport(), last.command.hasPrefix("hook") {
                message +=
                    "; the last one, \(last.operationID), ended \(last.result.rawValue)"
                    + (last.errors.first.map { " (\($0.code.rawValue))" } ?? "")
                    + ": `pluginhost status --operation \(last.operationID)` shows it"
            }
            FileHandleOutput.standardError.write(message + "\n")
            return ExitStatus.success.rawValue
        }
    }

    static func hookStatus(_ report: OperationReport) -> Int32 {
        if report.exitStatus == .mayBeFrozen { return ExitStatus.mayBeFrozen.rawValue }
        let failed = report.steps.contains { step in
            ["thaw", "resume", "post-script"].contains(step.name)
                && (step.outcome == .failed || step.outcome == .interrupted)
        }
        return failed ? ExitStatus.failed.rawValue : ExitStatus.success.rawValue
    }
}
