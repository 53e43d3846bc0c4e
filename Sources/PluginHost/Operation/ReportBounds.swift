extension OperationReport {
    /// A report is never larger than this (pretty-printed JSON): it is saved, printed and sent
    /// to thaw clients whole, and read back by `status` and `thaw --operation`, which accept
    /// up to four times as much (`ReportStore.maximumReadBytes`).
    public static let maximumBytes = 4 << 20

    /// Lists longer than this are cut first when a report is too large.
    static let keptListLength = 100

    /// The report itself when it fits in `maximumBytes`; otherwise a copy cut down step by
    /// step — plugin log lines, then the records of plugins that never ran, long lists of
    /// warnings and errors, call details, output tails — until it fits, each cut named in the
    /// warnings. The result, consistency, exit status and the first errors are always kept.
    public func bounded(maximumBytes: Int = OperationReport.maximumBytes) -> OperationReport {
        func fits(_ report: OperationReport) -> Bool { ReportStore.encode(report).count <= maximumBytes }
        if fits(self) { return self }
        var report = self
        var cuts: [String] = []
        let steps: [(String, (inout OperationReport) -> Void)] = [
            (
                "plugin log lines",
                { report in
                    for index in report.plugins.indices {
                        report.plugins[index].droppedLogLines += report.plugins[index].logLines.count
                        report.plugins[index].logLines = []
                    }
                }
            ),
            (
                "the records of plugins that were disabled or refused",
                { report in
                    let idle = report.plugins.filter { $0.calls.isEmpty }
                    guard idle.count > Self.keptListLength else { return }
                    let keptIdle = Set(idle.prefix(Self.keptListLength).map(\.manifest))
                    report.plugins = report.plugins.filter { !$0.calls.isEmpty || keptIdle.contains($0.manifest) }
                    report.warnings.append(
                        "\(idle.count - Self.keptListLength) more plugins were disabled or refused; `pluginhost list` shows them all"
                    )
                }
            ),
            (
                "warnings and errors past the first \(Self.keptListLength)",
                { report in
                    if report.errors.count > Self.keptListLength {
                        let more = report.errors.count - Self.keptListLength
                        report.errors = Array(report.errors.prefix(Self.keptListLength))
                        report.warnings.insert("\(more) more errors were not kept", at: 0)
                    }
                    if report.warnings.count > Self.keptListLength {
                        let more = report.warnings.count - Self.keptListLength
                        report.warnings =
                            Array(report.warnings.prefix(Self.keptListLength)) + ["\(more) more warnings were not kept"]
                    }
                }
            ),
            (
                "plugin call details",
                { report in
                    for plugin in report.plugins.indices {
                        for call in report.plugins[plugin].calls.indices {
                            report.plugins[plugin].calls[call].details = nil
                            report.plugins[plugin].calls[call].message = report.plugins[plugin].calls[call].message.map
                            { String($0.prefix(256)) }
                        }
                    }
                }
            ),
            (
                "output tails",
                { report in
                    for script in report.scripts.indices {
                        for attempt in report.scripts[script].attempts.indices {
                            report.scripts[script].attempts[attempt].stdoutTail = String(
                                report.scripts[script].attempts[attempt].stdoutTail.suffix(256))
                            report.scripts[script].attempts[attempt].stderrTail = String(
                                report.scripts[script].attempts[attempt].stderrTail.suffix(256))
                        }
                    }
                    if var snapshot = report.snapshot {
                        snapshot.stdoutTail = String(snapshot.stdoutTail.suffix(256))
                        snapshot.stderrTail = String(snapshot.stderrTail.suffix(256))
                        report.snapshot = snapshot
                    }
                }
            ),
            (
                "every plugin record and script attempt but the last, and all but the first 10 warnings and errors",
                { report in
                    report.plugins = []
                    for script in report.scripts.indices {
                        report.scripts[script].attempts = Array(report.scripts[script].attempts.suffix(1))
                    }
                    report.warnings = Array(report.warnings.prefix(10))
                    report.errors = Array(report.errors.prefix(10)).map { error in
                        HostError(error.code, String(error.message.prefix(1024)), step: error.step)
                    }
                    report.steps = Array(report.steps.prefix(20))
                }
            ),
        ]
        for (what, cut) in steps {
            cut(&report)
            cuts.append(what)
            if fits(report) { break }
        }
        let limit = maximumBytes % (1 << 20) == 0 ? "\(maximumBytes >> 20) MiB" : "\(maximumBytes >> 10) KiB"
        report.warnings.append(
            "the report was cut to stay under \(limit): \(cuts.joined(separator: "; ")) were left out")
        return report
    }
}
