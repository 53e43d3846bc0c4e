import PluginHostSupport

/// An operation's report on a time axis: every step, script attempt, plugin call and
/// per-mount freeze and thaw, with the freeze window marked — so that a person sees at a glance
/// where the window went. Rendered as text for the terminal and as SVG.
public struct Timeline: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case step, script, plugin, mount
    }

    public struct Bar: Sendable, Equatable {
        public var label: String
        public var startMs: Double
        public var durationMs: Double
        public var kind: Kind
        /// succeeded / ok, or what went wrong.
        public var outcome: String
        public var failed: Bool
    }

    public var title: String
    public var bars: [Bar]
    public var totalMs: Double
    /// The freeze window: first FIFREEZE to last FITHAW.
    public var window: (startMs: Double, durationMs: Double)?

    public static func == (lhs: Timeline, rhs: Timeline) -> Bool {
        lhs.title == rhs.title && lhs.bars == rhs.bars && lhs.totalMs == rhs.totalMs
            && lhs.window?.startMs == rhs.window?.startMs && lhs.window?.durationMs == rhs.window?.durationMs
    }

    public init(_ report: OperationReport) {
        title =
            "operation \(report.operationID) (\(report.command)): \(report.result.rawValue), consistency \(report.consistency.rawValue)"
        var bars: [Bar] = []
        for step in report.steps where step.outcome != .skipped {
            bars.append(
                Bar(
                    label: step.name, startMs: step.startMs, durationMs: step.durationMs, kind: .step,
                    outcome: step.outcome.rawValue, failed: step.outcome == .failed || step.outcome == .interrupted))
            switch step.name {
            case "pre-script", "post-script":
                let phase: ScriptPhase = step.name == "pre-script" ? .pre : .post
                for script in report.scripts where script.phase == phase && script.attempts.count > 1 {
                    for attempt in script.attempts {
                        bars.append(
                            Bar(
                                label: "  attempt \(attempt.number)", startMs: attempt.startMs,
                                durationMs: attempt.durationMs,
                                kind: .script,
                                outcome: attempt.timedOut ? "timed out" : attempt.termination?.description ?? "?",
                                failed: attempt.timedOut || attempt.termination != .exited(0)))
                    }
                }
            case "quiesce", "resume", "prepare":
                let functions: [PluginCallName] =
                    step.name == "prepare" ? [.load, .create] : PluginCallName(rawValue: step.name).map { [$0] } ?? []
                for plugin in report.plugins {
                    for call in plugin.calls where functions.contains(call.function) {
                        bars.append(
                            Bar(
                                label: "  \(plugin.name) \(call.function.rawValue)", startMs: call.startMs,
                                durationMs: call.durationMs,
                                kind: .plugin, outcome: call.outcome.rawValue,
                                failed: call.outcome != .ok && call.outcome != .skipped))
                    }
                }
            case "freeze", "thaw":
                for mount in report.freeze?.mounts ?? [] {
                    let start = step.name == "freeze" ? mount.freezeStartMs : mount.thawStartMs
                    let duration = step.name == "freeze" ? mount.freezeMs : mount.thawMs
                    if let start, let duration {
                        let outcome = step.name == "freeze" ? mount.freeze.rawValue : mount.thaw.rawValue
                        let failed =
                            step.name == "freeze"
                            ? mount.freeze == .failed || mount.freeze == .stuck : mount.thaw == .failed
                        bars.append(
                            Bar(
                                label: "  \(mount.mountPoint)", startMs: start, durationMs: duration, kind: .mount,
                                outcome: outcome, failed: failed))
                    }
                }
            default:
                break
            }
        }
        self.bars = bars
        totalMs = max(report.durationMs, bars.map { $0.startMs + $0.durationMs }.max() ?? 0)
        if let freeze = report.freeze, let start = freeze.windowStartMs, let duration = freeze.windowMs {
            window = (start, duration)
        }
    }

    // MARK: - Text

    /// Bars on a `width`-column axis; cells inside the freeze window are drawn darker.
    public func text(width: Int = 60) -> String {
        let labelWidth = min(max(bars.map(\.label.count).max() ?? 10, 14), 34)
        let scale = Double(width) / max(totalMs, 0.001)
        func column(_ ms: Double) -> Int { min(width - 1, max(0, Int(ms * scale))) }
        var out = "Timeline of \(title)\n"
        if let window {
            out +=
                """
                frozen for \(Self.ms(window.durationMs)) (▓), from \(Self.ms(window.startMs)) to \
                \(Self.ms(window.startMs + window.durationMs))\n
                """
        }
        let axis = "0 ms"
        let end = Self.ms(totalMs)
        out +=
            String(repeating: " ", count: labelWidth + 2) + axis
            + String(repeating: " ", count: max(1, width - axis.count - end.count)) + end + "\n"
        var windowColumns: ClosedRange<Int>?
        if let window { windowColumns = column(window.startMs)...column(window.startMs + window.durationMs) }
        for bar in bars {
            var cells = [Character](repeating: " ", count: width)
            if let windowColumns { for index in windowColumns { cells[index] = "·" } }
            let first = column(bar.startMs)
            let last = max(first, column(bar.startMs + bar.durationMs))
            for index in first...last {
                cells[index] = windowColumns?.contains(index) == true ? "▓" : "█"
            }
            let label = bar.label.count > labelWidth ? String(bar.label.prefix(labelWidth - 1)) + "…" : bar.label
            out +=
                label + String(repeating: " ", count: labelWidth - label.count) + "  " + String(cells)
                + "  " + Self.ms(bar.durationMs) + (bar.failed ? "  \(bar.outcome)" : "") + "\n"
        }
        return out
    }

    // MARK: - SVG

    public func svg() -> String {
        let labelWidth = 240.0
        let chartWidth = 720.0
        let rowHeight = 22.0
        let top = 64.0
        let height = top + Double(bars.count) * rowHeight + 40
        let width = labelWidth + chartWidth + 120
        let scale = chartWidth / max(totalMs, 0.001)
        func x(_ ms: Double) -> Double { labelWidth + ms * scale }
        let colors: [Kind: String] = [.step: "#4a7fb5", .script: "#e69138", .plugin: "#6aa84f", .mount: "#8e7cc3"]
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="10" y="20" font-size="14" font-weight="bold">\(Self.escape("Timeline of " + title))</text>

            """
        if let window {
            let left = x(window.startMs)
            let right = max(x(window.startMs + window.durationMs), left + 1)
            svg +=
                """
                <rect x=\"\(Self.f(left))\" y=\"\(Self.f(top - 8))\" width=\"\(Self.f(right - left))\" \
                height=\"\(Self.f(Double(bars.count) * rowHeight + 8))\" fill=\"#cc4125\" fill-opacity=\"0.15\"/>\n
                """
            svg +=
                """
                <text x=\"\(Self.f(left))\" y=\"\(Self.f(top - 12))\" \
                fill=\"#cc4125\">\(Self.escape("frozen " + Self.ms(window.durationMs)))</text>\n
                """
        }
        // Axis with five ticks.
        let axisY = top + Double(bars.count) * rowHeight + 8
        svg +=
            """
            <line x1=\"\(Self.f(labelWidth))\" y1=\"\(Self.f(axisY))\" x2=\"\(Self.f(labelWidth + chartWidth))\" \
            y2=\"\(Self.f(axisY))\" stroke=\"#888\"/>\n
            """
        for tick in 0...4 {
            let ms = totalMs * Double(tick) / 4
            svg +=
                """
                <line x1=\"\(Self.f(x(ms)))\" y1=\"\(Self.f(axisY))\" x2=\"\(Self.f(x(ms)))\" \
                y2=\"\(Self.f(axisY + 5))\" stroke=\"#888\"/>
                """
            svg +=
                """
                <text x=\"\(Self.f(x(ms)))\" y=\"\(Self.f(axisY + 18))\" text-anchor=\"middle\" \
                fill=\"#555\">\(Self.escape(Self.ms(ms)))</text>\n
                """
        }
        for (row, bar) in bars.enumerated() {
            let y = top + Double(row) * rowHeight
            let left = x(bar.startMs)
            let barWidth = max(bar.durationMs * scale, 1.5)
            let stroke = bar.failed ? " stroke=\"#cc0000\" stroke-width=\"2\"" : ""
            let indent = bar.label.prefix { $0 == " " }.count
            svg +=
                """
                <text x=\"\(10 + indent * 8)\" y=\"\(Self.f(y + 15))\" \
                fill=\"\(indent > 0 ? "#555" : "#000")\">\(Self.escape(bar.label.trimmingCharacters(in: " ")))</text>
                """
            svg +=
                """
                <rect x=\"\(Self.f(left))\" y=\"\(Self.f(y + 4))\" width=\"\(Self.f(barWidth))\" height=\"14\" \
                fill=\"\(colors[bar.kind]!)\"\(stroke)>
                """
            let tooltip = """
                \(bar.label.trimmingCharacters(in: " ")): \(Self.ms(bar.durationMs)) from \(Self.ms(bar.startMs)), \
                \(bar.outcome)
                """
            svg += "<title>\(Self.escape(tooltip))</title></rect>"
            svg +=
                """
                <text x=\"\(Self.f(left + barWidth + 4))\" y=\"\(Self.f(y + 15))\" \
                fill=\"#333\">\(Self.escape(Self.ms(bar.durationMs) + (bar.failed ? " " + bar.outcome : "")))</text>\n
                """
        }
        return svg + "</svg>\n"
    }

    static func ms(_ value: Double) -> String { NumberText.duration(milliseconds: value) }

    static func f(_ value: Double, decimals: Int = 1) -> String { NumberText.decimal(value, decimals: decimals) }

    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }
}
