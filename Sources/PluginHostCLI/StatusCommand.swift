import ArgumentParser
import PluginHost

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show whether an operation is running or frozen, and the last report."
    )

    @OptionGroup var output: OutputOptions

    func run() throws {
        let paths = statePaths()
        let status = HostStatus(paths: paths)
        if output.json {
            try printJSON(status)
        } else {
            FileHandleOutput.standardOutput.write(status.text)
        }
    }
}

struct HostStatus: Encodable {
    /// "idle", "running", "frozen", "interrupted" (an operation died while frozen and its guard
    /// thawed) or "needs-recovery" (an operation died and may have left filesystems frozen).
    var state: String
    var interruption: String?
    var operationID: String?
    var pid: Int32?
    var startedAt: String?
    var frozenSince: String?
    var frozenMounts: [String]
    var freezeDeadlineSeconds: Double?
    var lastReport: OperationReport?

    init(paths: StatePaths) {
        let holder = OperationLock.currentHolder(paths: paths)
        let journal = FreezeJournal.read(from: paths.journalFile)
        operationID = holder?.operationID ?? journal?.operationID
        pid = holder?.pid
        startedAt = holder?.startedAt
        frozenMounts = []
        if let journal, journal.state == .frozen {
            frozenSince = journal.frozenAt
            frozenMounts = journal.mounts.map(\.mountPoint)
            freezeDeadlineSeconds = journal.deadlineSeconds
        }
        switch (holder, journal) {
        case (.some, .some(let journal)) where journal.state == .frozen: state = "frozen"
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
            out = "Frozen: operation \(operationID ?? "?") (pid \(pid ?? 0)) froze \(frozenMounts.joined(separator: ", ")) at \(frozenSince ?? "?"); its guard thaws after \(formatNumber(freezeDeadlineSeconds ?? 0)) s at the latest.\n"
        case "running":
            out = "Running: operation \(operationID ?? "?") (pid \(pid ?? 0)) started \(startedAt ?? "?").\n"
        case "interrupted":
            out = "Interrupted: \(interruption ?? "?"). Nothing is frozen; the next run (or `pluginhost recover`) records it.\n"
        case "needs-recovery":
            out = "Needs recovery: operation \(operationID ?? "?") ended without finishing; run `pluginhost recover`.\n"
        default:
            out = "Idle: no operation is running.\n"
        }
        if let lastReport {
            out += "\nLast report:\n" + ReportText.render(lastReport)
        } else {
            out += "No report yet.\n"
        }
        return out
    }
}
