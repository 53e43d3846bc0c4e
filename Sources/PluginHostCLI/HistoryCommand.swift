import ArgumentParser
import PluginHost

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "List past operations from the kept reports, newest first.",
        discussion: """
            The reports are in /var/lib/pluginhost/reports; the newest keepReports of them are kept \
            (host config, default \(ReportStore.defaultKeep)). `pluginhost status --operation ID` shows one in full.
            """
    )

    @Option(name: .long, help: ArgumentHelp("At most this many operations (default 20).", valueName: "n"))
    var limit = 20

    @Option(
        name: .customLong("host-config"),
        help: ArgumentHelp("The host's own settings (for keepReports).", valueName: "path"))
    var hostConfig: String?

    @Flag(name: .long, help: "Machine-readable JSON on stdout.")
    var json = false

    func validate() throws {
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        let keep: Int
        switch HostConfig.load(path: hostConfig) {
        case .success(let config): keep = config.keepReports
        case .failure(let error):
            FileHandleOutput.standardError.write("\(error.code.rawValue): \(error.message)\n")
            throw ExitCode(ExitStatus.invalid.rawValue)
        }
        let paths = statePaths()
        let (reports, unreadable) = ReportStore(paths: paths, keep: keep).history(limit: limit)
        let history = OperationHistory(
            reportsDirectory: paths.reportsDirectory, keepReports: keep,
            operations: reports.map(OperationHistory.Entry.init),
            unreadable: unreadable)
        if json {
            try printJSON(history)
        } else {
            FileHandleOutput.standardOutput.write(history.text)
        }
    }
}

/// What `history` shows: one entry per kept report.
struct OperationHistory: Encodable {
    struct Entry: Encodable {
        var operationID: String
        var command: String
        var startedAt: String
        var durationMs: Double
        var result: OperationResult
        var consistency: ConsistencyLevel
        var snapshotTaken: Bool
        var exitStatus: ExitStatus
        /// From the first FIFREEZE to the last FITHAW; nil when nothing was frozen.
        var freezeWindowMs: Double?
        var frozenMounts: [String]
        var errorCodes: [String]
        /// The pluginhost that ran it (nil for reports older than the field).
        var ranBy: String?

        init(_ report: OperationReport) {
            operationID = report.operationID
            command = report.command
            startedAt = report.startedAt
            durationMs = report.durationMs
            result = report.result
            consistency = report.consistency
            snapshotTaken = report.snapshotTaken
            exitStatus = report.exitStatus
            freezeWindowMs = report.freeze?.windowMs
            frozenMounts = report.freeze?.mounts.filter { $0.freeze == .frozen }.map(\.mountPoint) ?? []
            var codes: [String] = []
            for error in report.errors where !codes.contains(error.code.rawValue) { codes.append(error.code.rawValue) }
            errorCodes = codes
            ranBy = report.pluginhostVersion
        }
    }

    var reportsDirectory: String
    var keepReports: Int
    var operations: [Entry]
    /// Files in the reports directory that are not readable reports (left in place).
    var unreadable: [String]
    var pluginhostVersion = BuildInfo.version
    var schemaVersion = BuildInfo.schemaVersion

    var text: String {
        guard !operations.isEmpty else {
            return "No operations recorded in \(reportsDirectory).\n" + unreadableText
        }
        let rows =
            [["OPERATION", "COMMAND", "STARTED", "RESULT", "CONSISTENCY", "FROZEN", "WINDOW", "ERRORS"]]
            + operations.map { entry in
                [
                    entry.operationID, entry.command, entry.startedAt, entry.result.rawValue,
                    entry.consistency.rawValue,
                    entry.frozenMounts.isEmpty ? "-" : String(entry.frozenMounts.count),
                    entry.freezeWindowMs.map { "\(formatNumber($0)) ms" } ?? "-",
                    entry.errorCodes.isEmpty ? "-" : entry.errorCodes.joined(separator: ","),
                ]
            }
        return TextTable(rows: rows).render() + unreadableText
    }

    private var unreadableText: String {
        unreadable.isEmpty ? "" : "Not readable as reports (left in place): \(unreadable.joined(separator: ", "))\n"
    }
}
