import ArgumentParser
import Glibc
import PluginHost
import PluginHostSupport
import PluginHostWire

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract:
            "Show whether an operation is running or frozen, and the last report (or one by id), optionally as a timeline.",
        discussion: """
            --timeline draws the report's steps on a time axis (freeze window marked); --svg FILE writes the
            same as an SVG picture. --operation ID picks a report other than the last.
            """
    )

    @Option(
        name: .customLong("operation"),
        help: ArgumentHelp("Show this operation's report instead of the last.", valueName: "id"))
    var operationID: String?

    @Flag(help: "Draw the report as a timeline.")
    var timeline = false

    @Option(help: ArgumentHelp("Write the report's timeline as SVG to this file.", valueName: "file"))
    var svg: String?

    @OptionGroup var output: OutputOptions

    func run() throws {
        // Without root the journal, the lock and the reports cannot be read, and "Idle" would be
        // a guess (it said Idle while filesystems were frozen).
        guard geteuid() == 0 else {
            FileHandleOutput.standardError.write(
                """
                pluginhost status needs root: what is frozen or running is recorded in files only root can read \
                (\(statePaths().runDirectory))\n
                """
            )
            throw ExitCode(ExitStatus.invalid.rawValue)
        }
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
        // A running member of a consistency group: the group as etcd holds it now.
        let group = status.operationID.flatMap { id in
            status.pid == nil ? nil : GroupStatus.query(paths: paths, operationID: id)
        }
        if output.json {
            try printJSON(StatusDocument(host: status, group: group))
        } else if timeline {
            FileHandleOutput.standardOutput.write(status.lastReport.map { Timeline($0).text() } ?? "No report yet.\n")
        } else {
            // The group right after the first line (what the machine is doing).
            var lines = status.text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).map(
                String.init)
            if let group {
                lines.insert(group.text.hasSuffix("\n") ? String(group.text.dropLast()) : group.text, at: 1)
            }
            FileHandleOutput.standardOutput.write(lines.joined(separator: "\n"))
        }
    }
}

/// `status --json`: the machine's status, and the group's when the running operation is in one.
struct StatusDocument: Encodable {
    var host: HostStatus
    var group: GroupStatus?

    private enum Key: String, CodingKey { case group }

    func encode(to encoder: any Encoder) throws {
        try host.encode(to: encoder)
        var container = encoder.container(keyedBy: Key.self)
        try container.encodeIfPresent(group, forKey: .group)
    }
}

extension HostStatus {
    var text: String {
        var out: String
        switch state {
        case .frozen:
            out =
                """
                Frozen: operation \(operationID ?? "?") (pid \(pid ?? 0)) froze \
                \(frozenMounts.joined(separator: ", ")) at \(frozenSince ?? "?")
                """
                + (frozenForSeconds.map { " (\(formatNumber($0)) s ago)" } ?? "")
                + "; its guard thaws after \(formatNumber(freezeDeadlineSeconds ?? 0)) s at the latest.\n"
        case .quiesced:
            out =
                """
                Quiesced: operation \(operationID ?? "?") (pid \(pid ?? 0)) waits for the agent's thaw since \
                \(session?.since ?? "?") (deadline \(formatNumber(session?.deadlineSeconds ?? 0)) s).\n
                """
        case .running:
            out =
                "Running: operation \(operationID ?? "?") (pid \(pid ?? 0)) started \(startedAt ?? "?"), now in \(phase ?? "?").\n"
        case .interrupted:
            out =
                "Interrupted: \(interruption ?? "?"). Nothing is frozen; the next run (or `pluginhost recover`) records it.\n"
        case .needsRecovery:
            out =
                interruption.map { "Needs recovery: \($0); run `pluginhost recover`.\n" }
                    ?? """
                    Needs recovery: operation \(operationID ?? "?") ended while \
                    \(frozenMounts.joined(separator: ", ")) may still be frozen; run `pluginhost recover`.\n
                    """
        case .idle:
            out = "Idle: no operation is running.\n"
        }
        for kept in unreadableJournals {
            out += "Kept: \(kept), a freeze journal that could not be read; check what it may name, then delete it.\n"
        }
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
