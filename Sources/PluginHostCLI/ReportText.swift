import PluginHost
import PluginHostSupport

/// The report as aligned text for people. The JSON rendering is `ReportStore.encode`.
enum ReportText {
    static func render(_ report: OperationReport) -> String {
        var out =
            "Operation \(report.operationID): \(report.result.rawValue), consistency \(report.consistency.rawValue), "
            + "snapshot \(report.snapshotTaken ? "taken" : "not taken") (exit \(report.exitStatus.rawValue))\n"
        out += "Started \(report.startedAt), took \(formatMs(report.durationMs))"
        if let configFile = report.configFile { out += ", config \(configFile)" }
        if let scriptArg = report.hookScriptArg { out += ", scriptArg '\(scriptArg)'" }
        out += "\n"

        if !report.steps.isEmpty {
            out += "\nSteps:\n"
            out += TextTable(
                rows: [["  step", "start", "duration", "outcome", ""]]
                    + report.steps.map {
                        [
                            "  " + $0.name, formatMs($0.startMs), formatMs($0.durationMs), $0.outcome.rawValue,
                            $0.detail ?? "",
                        ]
                    }
            ).render()
        }

        if let freeze = report.freeze {
            out +=
                """
                \nFreeze window \(formatMs(freeze.windowMs)) (ioctls \(formatMs(freeze.ioctlMs)), deadline \
                \(formatNumber(freeze.deadlineSeconds)) s
                """
            if let cause = freeze.thawCause { out += ", thawed by \(cause.rawValue)" }
            out += "):\n"
            out += TextTable(
                rows: freeze.mounts.map {
                    [
                        "  " + $0.mountPoint, $0.fsType, $0.device, "wave \($0.wave)",
                        "\($0.freeze.rawValue) \(formatMs($0.freezeMs))",
                        "\($0.thaw.rawValue) \(formatMs($0.thawMs))", $0.error ?? "",
                    ]
                }
            ).render()
        }

        if !report.plugins.isEmpty {
            out += "\nPlugins:\n"
            for plugin in report.plugins {
                out +=
                    "  \(plugin.name) \(plugin.version ?? "") (order \(plugin.order.map(String.init) ?? "-"), \(plugin.state.rawValue))"
                    + (plugin.refusal.map { ": refused: \($0)" } ?? "") + "\n"
                let calls = plugin.calls.filter {
                    $0.function == .quiesce || $0.function == .resume || $0.outcome != .ok
                }
                out += TextTable(
                    rows: calls.map { call in
                        let details =
                            call.details.map {
                                $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                            } ?? ""
                        return [
                            "    " + call.function.rawValue, formatMs(call.startMs), formatMs(call.durationMs),
                            call.outcome.rawValue,
                            [call.message, details].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: "; "),
                        ]
                    }
                ).render()
                if plugin.droppedLogLines > 0 {
                    out += "    (log: \(plugin.logLines.count) lines kept, \(plugin.droppedLogLines) dropped)\n"
                }
            }
        }

        if let group = report.group {
            out +=
                """
                \nGroup \(group.name) (operation \(group.operationID ?? "-"), member \(group.member) of \
                \(group.members)): \(group.outcome)
                """
                + (group.consistency.map { ", consistency \($0.rawValue)" } ?? "") + "\n"
            if let brokenBy = group.brokenBy { out += "  \(brokenBy)\n" }
            out += TextTable(
                rows: group.barriers.map {
                    ["  all " + $0.stage, formatMs($0.startMs), "waited " + formatMs($0.waitMs), $0.outcome.rawValue]
                }
                    + group.memberStates.map { ["  " + $0.member, $0.host, $0.state, $0.consistency] }
            ).render()
        }

        if let snapshot = report.snapshot {
            out += "\nSnapshot: \(snapshot.command.joined(separator: " "))\n"
            out +=
                "  \(snapshot.termination?.description ?? snapshot.outcome ?? "not finished"), \(formatMs(snapshot.durationMs))\n"
            out += tails(stdout: snapshot.stdoutTail, stderr: snapshot.stderrTail)
        }

        for script in report.scripts {
            out +=
                "\n\(script.phase == .pre ? "Pre" : "Post")-script \(script.path) "
                + "\(script.arguments.map { "'\($0)'" }.joined(separator: " ")): "
                + "\(script.outcome.rawValue) after \(script.attempts.count) attempt\(script.attempts.count == 1 ? "" : "s")"
                + (script.shell.map { " (run by \($0))" } ?? "") + "\n"
            for attempt in script.attempts {
                let how = attempt.spawnError ?? attempt.termination?.description ?? "?"
                out +=
                    "  attempt \(attempt.number): \(how)\(attempt.timedOut ? " (timed out)" : ""), \(formatMs(attempt.durationMs))\n"
                out += tails(stdout: attempt.stdoutTail, stderr: attempt.stderrTail)
            }
        }

        if !report.killedProcesses.isEmpty {
            out +=
                "\nKilled with their owner:\n"
                + TextTable(
                    rows: report.killedProcesses.map {
                        ["  pid \($0.pid)", $0.owner, $0.reason, $0.command]
                    }
                ).render()
        }

        if !report.errors.isEmpty {
            out += "\nErrors:\n" + report.errors.map { "  \($0.code.rawValue): \($0.message)\n" }.joined()
            out +=
                "What to do:\n"
                + report.errors.map(\.code).uniqued().map { "  \($0.rawValue): \($0.action)\n" }.joined()
        }
        if !report.warnings.isEmpty {
            out += "\nWarnings:\n" + report.warnings.map { "  \($0)\n" }.joined()
        }
        return out
    }

    private static func tails(stdout: String, stderr: String) -> String {
        var out = ""
        for (name, text) in [("stdout", stdout), ("stderr", stderr)] where !text.isEmpty {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            let shown = lines.suffix(6).filter { !$0.isEmpty }
            out += "    \(name)\(lines.count > 6 ? " (last lines)" : ""):\n" + shown.map { "      \($0)\n" }.joined()
        }
        return out
    }
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
