import PluginHostSupport
import Testing

@testable import PluginHost

/// A report over the reader's limit made `status` say "No report yet" and
/// `thaw --operation` "no operation recorded". Reports are cut to stay readable.
@Suite("Report bounds")
struct ReportBoundsTests {
    func hugeReport() -> OperationReport {
        var report = OperationReport(
            operationID: "20260101T000000Z-abcdef", command: "run", startedAt: "2026-01-01T00:00:00Z")
        report.result = .degraded
        report.consistency = .filesystem
        report.snapshotTaken = true
        report.exitStatus = .degraded
        report.errors = (0..<500).map {
            HostError(
                .incorrectPluginhostFile, "plugin p\($0) refused: " + String(repeating: "x", count: 300), step: "checks"
            )
        }
        report.warnings = (0..<20_000).map { "warning \($0): " + String(repeating: "w", count: 100) }
        let line = String(repeating: "l", count: 2048)
        let details = Dictionary(
            uniqueKeysWithValues: (0..<200).map { ("key\($0)", String(repeating: "d", count: 70)) })
        for index in 0..<64 {
            var record = PluginRecord(
                name: "busy\(index)", manifest: "/etc/pluginhost/plugins.d/10-busy\(index).json", state: .ready)
            record.logLines = Array(repeating: line, count: 100)
            record.calls = [PluginCallName.load, .create, .dataPaths, .quiesce, .resume].map {
                PluginRecord.Call(
                    function: $0, startMs: 1, durationMs: 1, outcome: .ok, message: String(repeating: "m", count: 4000),
                    details: details)
            }
            report.plugins.append(record)
        }
        for index in 0..<10_000 {
            report.plugins.append(
                PluginRecord(
                    name: "idle\(index)", manifest: "/etc/pluginhost/plugins.d/90-idle\(index).json", state: .disabled))
        }
        let tail = String(repeating: "t", count: 4096)
        let attempts = (1...11).map {
            ScriptAttempt(
                number: $0, startMs: 0, durationMs: 1, termination: .exited(1), timedOut: false, spawnError: nil,
                stdoutTail: tail, stderrTail: tail)
        }
        report.scripts = [ScriptRun(phase: .pre, path: "/pre", arguments: [], outcome: .failed, attempts: attempts)]
        return report
    }

    @Test func aHugeReportIsCutBelowTheLimitAndReadsBack() throws {
        let report = hugeReport()
        #expect(
            ReportStore.encode(report).count > ReportStore.maximumReadBytes,
            "the fixture must be too large to read back uncut")
        let bounded = report.bounded()
        let bytes = ReportStore.encode(bounded)
        #expect(bytes.count <= OperationReport.maximumBytes)
        let decoded = try #require(ReportStore.decode(bytes))
        #expect(decoded.operationID == report.operationID)
        #expect(decoded.result == .degraded && decoded.consistency == .filesystem && decoded.exitStatus == .degraded)
        #expect(decoded.errors.first == report.errors.first)
        #expect(decoded.warnings.last?.contains("the report was cut to stay under 4 MiB") == true)
    }

    @Test func eachCutIsTakenOnlyWhenNeeded() {
        var report = hugeReport()
        report.warnings = []
        report.errors = []
        report.plugins = Array(report.plugins.prefix(64))  // only log lines and details are large
        let bounded = report.bounded()
        #expect(bounded.plugins.count == 64)
        #expect(bounded.plugins.allSatisfy { $0.logLines.isEmpty && $0.droppedLogLines == 100 })
        #expect(bounded.scripts.first?.attempts.count == 11)
        #expect(ReportStore.encode(bounded).count <= OperationReport.maximumBytes)
    }

    @Test func aSmallReportIsLeftAlone() {
        var report = OperationReport(operationID: "x", command: "run", startedAt: "now")
        report.warnings = ["one"]
        #expect(report.bounded() == report)
    }
}
