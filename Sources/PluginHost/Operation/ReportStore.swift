import FoundationEssentials
import Glibc
public import PluginHostSupport

/// Reports on disk: the last one, and one per operation id (the newest `keep`), in the state
/// directory. Written only after everything is thawed.
public struct ReportStore: Sendable {
    /// How many per-operation reports are kept unless the host config says otherwise.
    public static let defaultKeep = 50
    /// Reports are written under `OperationReport.maximumBytes`; reading accepts four times that.
    public static let maximumReadBytes = 16 << 20

    public let paths: StatePaths
    public var keep: Int

    public init(paths: StatePaths, keep: Int = ReportStore.defaultKeep) {
        self.paths = paths
        self.keep = keep
    }

    public static func encode(_ report: OperationReport) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(report)) ?? Data()) + [0x0A]
    }

    public static func decode(_ bytes: [UInt8]) -> OperationReport? {
        try? JSONDecoder().decode(OperationReport.self, from: Data(bytes))
    }

    /// Writes the report and the last report; then keeps the newest `keep` reports, unless
    /// `prune` is false (a caller that does not know the host config's `keepReports`).
    public func save(_ report: OperationReport, prune: Bool = true) throws(SystemError) {
        let bytes = Self.encode(report)
        try writeFileAtomically(reportPath(report.operationID), bytes, mode: 0o600)
        try writeFileAtomically(paths.lastReportFile, bytes, mode: 0o600)
        if prune { self.prune() }
    }

    /// The kept reports, newest first, at most `limit`; and the names of files that could not
    /// be read as reports (kept, never deleted here).
    public func history(limit: Int) -> (reports: [OperationReport], unreadable: [String]) {
        var reports: [OperationReport] = []
        var unreadable: [String] = []
        for name in reportNamesOldestFirst().reversed() {
            guard reports.count < limit else { break }
            if let report = read("\(paths.reportsDirectory)/\(name)") {
                reports.append(report)
            } else {
                unreadable.append(name)
            }
        }
        return (reports, unreadable)
    }

    public func lastReport() -> OperationReport? { read(paths.lastReportFile) }

    public func report(operationID: String) -> OperationReport? {
        guard operationID.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else { return nil }
        return read(reportPath(operationID))
    }

    private func reportPath(_ operationID: String) -> String { "\(paths.reportsDirectory)/\(operationID).json" }

    private func read(_ path: String) -> OperationReport? {
        guard let file = try? FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW),
            let bytes = try? file.readAll(limit: Self.maximumReadBytes)
        else { return nil }
        return Self.decode(bytes)
    }

    /// Keeps the newest `keep` reports.
    private func prune() {
        for name in reportNamesOldestFirst().dropLast(max(keep, 1)) {
            try? FileSystem.remove("\(paths.reportsDirectory)/\(name)")
        }
    }

    /// The report files, in the order they were written (modification time, in nanoseconds; a
    /// report is written once, when its operation ends). Operation ids start with a UTC time
    /// in whole seconds, so two operations of the same second do not sort by name alone.
    private func reportNamesOldestFirst() -> [String] {
        guard let names = try? FileSystem.entries(of: paths.reportsDirectory) else { return [] }
        var entries: [(name: String, written: Int64)] = []
        for name in names {
            guard name.hasSuffix(".json") && !name.hasPrefix(".") else { continue }
            guard let info = try? FileSystem.status(of: "\(paths.reportsDirectory)/\(name)", followingSymlinks: false)
            else { continue }
            entries.append((name, Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)))
        }
        return entries.sorted { ($0.written, $0.name) < ($1.written, $1.name) }.map(\.name)
    }
}
