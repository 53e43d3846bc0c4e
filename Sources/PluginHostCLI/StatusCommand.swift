import ArgumentParser
import PluginHost
import PluginHostSupport

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show whether an operation is running or frozen, and the last report (or one by id), optionally as a timeline.",
        discussion: """
            --timeline draws the report's steps on a time axis (freeze window marked); --svg FILE writes the
            same as an SVG picture. --operation ID picks a report other than the last.
            """
    )

    @Option(name: .customLong("operation"), help: ArgumentHelp("Show this operation's report instead of the last.", valueName: "id"))
    var operationID: String?

    @Flag(help: "Draw the report as a timeline.")
    var timeline = false

    @Option(help: ArgumentHelp("Write the report's timeline as SVG to this file.", valueName: "file"))
    var svg: String?

    @OptionGroup var output: OutputOptions

    func run() throws {
        let paths = statePaths()
        var status = HostStatus(paths: paths)
        if let operationID {
            guard let report = ReportStore(paths: paths).report(operationID: operationID) else {
                FileHandleOutput.standardError.write("no report for operation \(operationID)\n")
                throw ExitCode(ExitStatus.invalid.rawValue)
            }
            status.lastReport = report
        }
        if let svg {
            guard let report = status.lastReport else {
                FileHandleOutput.standardError.write("no report to draw\n")
                throw ExitCode(ExitStatus.invalid.rawValue)
            }
            do {
                try writeFileAtomically(svg, Array(Timeline(report).svg().utf8), mode: 0o644)
            } catch {
                FileHandleOutput.standardError.write("cannot write \(svg): \(error)\n")
                throw ExitCode(ExitStatus.invalid.rawValue)
            }
        }
        if output.json {
            try printJSON(status)
        } else if timeline {
            FileHandleOutput.standardOutput.write(status.lastReport.map { Timeline($0).text() } ?? "No report yet.\n")
        } else {
            FileHandleOutput.standardOutput.write(status.text)
        }
    }
}

struct HostStatus: Encodable {
    /// idle, running, frozen, quiesced (a hook's session waits for the agent's thaw),
    /// interrupted (an operation died while frozen and its guard thawed) or needs-recovery (an
    /// operation died and may have left filesystems frozen).
    var state: String
    var operationID: String?
    var pid: Int32?
    var startedAt: String?
    /// The step the running operation is in.
    var phase: String?
    var frozenSince: String?
    var frozenForSeconds: Double?
    var frozenMounts: [String]
    var freezeDeadlineSeconds: Double?
    /// A two-phase session waiting for its thaw: its plugins and their state.
    var session: SessionStatus?
    /// The consistency group of the running operation, as etcd holds it now.
    var group: GroupStatus?
    var interruption: String?
    var lastReport: OperationReport?
    var pluginhostVersion = BuildInfo.version
    var schemaVersion = BuildInfo.schemaVersion

    init(paths: StatePaths) {
        let holder = OperationLock.currentHolder(paths: paths)
        let journal = FreezeJournal.read(from: paths.journalFile)
        operationID = holder?.operationID ?? journal?.operationID
        pid = holder?.pid
        startedAt = holder?.startedAt
        phase = holder?.phase
        frozenMounts = []
        if let journal, journal.state == .frozen {
            frozenSince = journal.frozenAt
            frozenForSeconds = secondsSince(isoTimestamp: journal.frozenAt).map { ($0 * 10).rounded() / 10 }
            frozenMounts = journal.mounts.map(\.mountPoint)
            freezeDeadlineSeconds = journal.deadlineSeconds
        }
        if holder != nil { session = SessionClient.status(paths: paths) }
        if let holder { group = GroupStatus.query(paths: paths, operationID: holder.operationID) }
        switch (holder, journal) {
        case (.some, .some(let journal)) where journal.state == .frozen: state = "frozen"
        case (.some, _) where session?.phase == "quiesced": state = "quiesced"
        case (.some, _): state = "running"
        case (nil, .some(let journal)) where journal.state == .thawedByGuard:
            state = "interrupted"
            interruption = "operation \(journal.operationID) (pid \(journal.hostPID)) ended while frozen; its guard thawed at \(journal.thawedAt ?? "?")"
        case (nil, .some): state = "needs-recovery"
        case (nil, nil): state = "idle"
        }
        lastReport = ReportStore(paths: paths).lastReport()
    }

    var text: String {
        var out: String
        switch state {
        case "frozen":
            out = "Frozen: operation \(operationID ?? "?") (pid \(pid ?? 0)) froze \(frozenMounts.joined(separator: ", ")) at \(frozenSince ?? "?")"
                + (frozenForSeconds.map { " (\(formatNumber($0)) s ago)" } ?? "")
                + "; its guard thaws after \(formatNumber(freezeDeadlineSeconds ?? 0)) s at the latest.\n"
        case "quiesced":
            out = "Quiesced: operation \(operationID ?? "?") (pid \(pid ?? 0)) waits for the agent's thaw since \(session?.since ?? "?") (deadline \(formatNumber(session?.deadlineSeconds ?? 0)) s).\n"
        case "running":
            out = "Running: operation \(operationID ?? "?") (pid \(pid ?? 0)) started \(startedAt ?? "?"), now in \(phase ?? "?").\n"
        case "interrupted":
            out = "Interrupted: \(interruption ?? "?"). Nothing is frozen; the next run (or `pluginhost recover`) records it.\n"
        case "needs-recovery":
            out = "Needs recovery: operation \(operationID ?? "?") ended without finishing; run `pluginhost recover`.\n"
        default:
            out = "Idle: no operation is running.\n"
        }
        if let group { out += group.text }
        if let session, !session.plugins.isEmpty {
            out += "Plugins:\n" + TextTable(rows: session.plugins.map { ["  " + $0.name, $0.state] }).render()
        }
        if let lastReport {
            out += "\nLast report:\n" + ReportText.render(lastReport)
        } else {
            out += "No report yet.\n"
        }
        return out
    }
}
