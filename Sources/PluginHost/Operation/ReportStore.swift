import FoundationEssentials
import Glibc
public import PluginHostSupport

/// Reports on disk: the last one, and one per operation id (the newest `keep`), in the state
/// directory. Written only after everything is thawed.
public struct ReportStore: Sendable {
    public let paths: StatePaths
    public var keep = 50
    /// Reports are written under `OperationReport.maximumBytes`; reading accepts four times that.
    public static let maximumReadBytes = 16 << 20

    public init(paths: StatePaths) {
        self.paths = paths
    }

    public static func encode(_ report: OperationReport) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(report)) ?? Data()) + [0x0A]
    }

    public static func decode(_ bytes: [UInt8]) -> OperationReport? {
        try? JSONDecoder().decode(OperationReport.self, from: Data(bytes))
    }

    public func save(_ report: OperationReport) throws(SystemError) {
        let bytes = Self.encode(report)
        try writeFileAtomically(reportPath(report.operationID), bytes, mode: 0o600)
        try writeFileAtomically(paths.lastReportFile, bytes, mode: 0o600)
        prune()
    }

    public func lastReport() -> OperationReport? { read(paths.lastReportFile) }

    public func report(operationID: String) -> OperationReport? {
        guard operationID.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else { return nil }
        return read(reportPath(operationID))
    }

    private func reportPath(_ operationID: String) -> String { "\(paths.reportsDirectory)/\(operationID).json" }

    private func read(_ path: String) -> OperationReport? {
        guard let file = try? FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW),
              let bytes = try? file.readAll(limit: Self.maximumReadBytes) else { return nil }
        return Self.decode(bytes)
    }

    /// Keeps the newest `keep` reports (operation ids start with a UTC timestamp, so names sort by age).
    private func prune() {
        guard let directory = opendir(paths.reportsDirectory) else { return }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasSuffix(".json") { names.append(name) }
        }
        closedir(directory)
        for name in names.sorted().dropLast(keep) { unlink("\(paths.reportsDirectory)/\(name)") }
    }
}
