import ArgumentParser
import Logging
import PluginHost
import PluginHostSession

/// `pluginhost freeze`: checks, pre-script, quiesce, freeze — then return, leaving a session
/// process holding the plugins and the freeze guard until `pluginhost thaw`.
struct FreezeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "freeze",
        abstract:
            "Two-phase, step one: run checks, pre-script, quiesce and freeze, then return while a session holds them.",
        discussion: """
            Returns (and closes its output) once frozen, with the operation id. Take the snapshot, then run
            `pluginhost thaw --operation ID`. If no thaw comes, the freeze guard thaws at --max-frozen
            (default 60 s), the plugins are resumed and the post-script runs; the report says so.
            Exit 0: frozen, application-consistent so far; 1: frozen, less consistent; otherwise the
            operation ended before freezing (the report is printed).
            """
    )

    @OptionGroup var plan: PlanOptions
    @OptionGroup var group: GroupOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try requireRoot("freeze")
        let envelope = SessionClient.start(
            executable: currentExecutable(), arguments: ["--mode", "freeze"] + plan.arguments + group.arguments,
            environment: sessionEnvironment(verbose: output.verbose))
        throw ExitCode(SessionOutput.print(envelope, json: output.json, agentFreezes: false))
    }
}

/// `pluginhost thaw`: step two.
struct ThawCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thaw",
        abstract: "Two-phase, step two: thaw, resume the plugins, run the post-script and print the final report.",
        discussion: """
            With --operation ID it is safe to repeat: an operation that already ended gives its final
            report again (same exit status), nothing is run twice. Without an active operation, a plain
            `thaw` fails with NoActiveOperation.
            """
    )

    @Option(name: .customLong("operation"), help: ArgumentHelp("The operation id `freeze` printed.", valueName: "id"))
    var operationID: String?

    @OptionGroup var output: OutputOptions

    func run() throws {
        try requireRoot("thaw")
        throw ExitCode(SessionOutput.thaw(operationID: operationID, snapshotTaken: true, json: output.json))
    }
}

/// The session process behind `freeze` and the hooks (never started by hand).
struct SessionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "__session", abstract: "Internal: a two-phase session.",
        shouldDisplay: false)

    @Option var mode: String
    @Option(name: .customLong("script-arg")) var scriptArg: String?
    @OptionGroup var plan: PlanOptions
    @OptionGroup var group: GroupOptions
    @OptionGroup var hook: HookOptions

    func run() throws {
        let verbose = ProcessEnvironment()["PLUGINHOST_VERBOSE"] == "1"
        let logOutput = bootstrapLogging(verbose: verbose)
        let interrupt = try? InterruptSignal.install()
        var request = plan.request()
        request.group = group.fields
        let channel = SessionChannel(socketPath: request.paths.sessionSocket)
        if let agent = HookAgent(rawValue: mode) {
            request.mode = .hook(agent: agent, channel)
        } else {
            request.mode = .twoPhase(channel)
        }
        request.hookScriptArg = scriptArg
        request.hookHoldLimitSeconds = hook.holdLimit
        let report = Operation(
            request: request, logger: Logger(label: "pluginhost"), interrupt: interrupt,
            logOutput: logOutput
        ).run()
        logOutput.release()
        throw ExitCode(report.exitStatus.rawValue)
    }
}

func sessionEnvironment(verbose: Bool) -> [String: String] {
    var environment = ["PATH": ScriptRunner.searchPath, "LANG": "C"]
    let current = ProcessEnvironment()
    for name in [
        "PLUGINHOST_RUN_DIR", "PLUGINHOST_STATE_DIR", "PLUGINHOST_CGROUPS", "PLUGINHOST_TEST_FORCE_FALLBACKS",
        "PLUGINHOST_TEST_SYSLOG_SOCKET", "PLUGINHOST_TEST_STOP_AT",
    ] {
        if let value = current[name] { environment[name] = value }
    }
    if verbose { environment["PLUGINHOST_VERBOSE"] = "1" }
    return environment
}

/// Printing what sessions say, shared by `freeze`, `thaw` and the hooks.
enum SessionOutput {
    /// Prints the freeze notice (or the report) and returns the exit status.
    static func print(_ envelope: SessionEnvelope, json: Bool, agentFreezes: Bool) -> Int32 {
        switch envelope {
        case .notice(let notice):
            if json {
                try? printJSON(notice)
            } else {
                var out =
                    """
                    \(notice.state == "frozen" ? "Frozen" : "Quiesced"): operation \(notice.operationID), consistency \
                    so far \(notice.consistency.rawValue)\n
                    """
                if !notice.mounts.isEmpty { out += "  mounts: \(notice.mounts.joined(separator: ", "))\n" }
                out += "  deadline: \(formatNumber(notice.deadlineSeconds)) s; then: \(notice.thawCommand)\n"
                out += notice.warnings.map { "  warning: \($0)\n" }.joined()
                FileHandleOutput.standardOutput.write(out)
            }
            if agentFreezes { return ExitStatus.success.rawValue }
            return notice.consistency == .application ? ExitStatus.success.rawValue : ExitStatus.degraded.rawValue
        case .report(let report):
            printReport(report, json: json)
            return report.exitStatus.rawValue
        }
    }

    /// Asks the active session to thaw; or, with an id and no session, gives the saved report.
    static func thaw(operationID: String?, snapshotTaken: Bool, json: Bool) -> Int32 {
        let paths = statePaths()
        switch SessionClient.thaw(paths: paths, operationID: operationID, snapshotTaken: snapshotTaken) {
        case .report(let report):
            printReport(report, json: json)
            return report.exitStatus.rawValue
        case .refused(let message):
            FileHandleOutput.standardError.write("pluginhost thaw: \(message)\n")
            return ExitStatus.invalid.rawValue
        case .noSession:
            let store = ReportStore(paths: paths)
            if let operationID, let report = store.report(operationID: operationID) {
                printReport(report, json: json)
                return report.exitStatus.rawValue
            }
            var message =
                operationID.map { "no operation \($0) is active or recorded" } ?? "no operation is waiting for a thaw"
            if operationID == nil, let last = store.lastReport() {
                message +=
                    """
                    ; the last one, \(last.operationID) (\(last.command)), ended \(last.result.rawValue): \
                    `pluginhost thaw --operation \(last.operationID)` prints its report
                    """
            }
            let error = HostError(.noActiveOperation, message)
            if json {
                try? printJSON(ErrorDocument(errors: [error]))
            } else {
                FileHandleOutput.standardError.write("\(error.code.rawValue): \(message)\n")
            }
            return ExitStatus.invalid.rawValue
        }
    }

    static func printReport(_ report: OperationReport, json: Bool) {
        if json {
            FileHandleOutput.standardOutput.write(bytes: ReportStore.encode(report))
        } else {
            FileHandleOutput.standardOutput.write(ReportText.render(report))
        }
    }
}

extension PlanOptions {
    /// The options again, as arguments for the session process.
    var arguments: [String] {
        let plan = resolved
        var arguments: [String] = []
        if let config = plan.config { arguments += ["--config", config] }
        if let hostConfig = plan.hostConfig { arguments += ["--host-config", hostConfig] }
        for mount in plan.mounts { arguments += ["--mount", mount] }
        for skip in plan.skipMounts { arguments += ["--skip", skip] }
        if let maxFrozen { arguments += ["--max-frozen", String(maxFrozen)] }
        if let pluginsDirectory = plan.pluginsDirectory { arguments += ["--plugins-dir", pluginsDirectory] }
        return arguments
    }
}
