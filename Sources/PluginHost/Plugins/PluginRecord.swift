/// One plugin in the report: what it is, whether it was refused, and every call it served.
public struct PluginRecord: Sendable, Codable, Equatable {
    public struct Call: Sendable, Codable, Equatable {
        /// load, create, check, dataPaths, quiesce, resume.
        public var function: String
        /// Milliseconds since the operation started.
        public var startMs: Double
        public var durationMs: Double
        /// ok, a ph_status name (failed, busy, timeout, …), timed-out (the host killed the
        /// worker at the deadline), crashed, or skipped.
        public var outcome: String
        public var message: String?
        /// The plugin's `key=value` facts.
        public var details: [String: String]?
    }

    public var name: String
    public var manifest: String
    public var library: String?
    public var sha256: String?
    /// The name the plugin gives itself (its descriptor), when loaded.
    public var reportedName: String?
    public var version: String?
    public var abi: String?
    public var order: Int?
    public var timeoutSeconds: Int?
    /// ready, disabled, refused, failed.
    public var state: String
    public var refusal: String?
    public var dataPaths: [String] = []
    public var calls: [Call] = []
    /// The plugin's first log lines (the rest are counted, not kept).
    public var logLines: [String] = []
    public var droppedLogLines = 0
}

/// The ABI's status names, for reports and messages.
enum PluginStatusName {
    static func name(_ status: Int32) -> String {
        switch status {
        case 0: "ok"
        case 1: "failed"
        case 2: "invalid-config"
        case 3: "unreachable"
        case 4: "not-authorized"
        case 5: "timeout"
        case 6: "busy"
        case 7: "consistency-lost"
        case 8: "unsupported"
        default: "status \(status)"
        }
    }
}

/// Parses `key=value` lines (the ABI's details buffer).
func parseDetails(_ text: String) -> [String: String]? {
    var details: [String: String] = [:]
    for line in text.split(whereSeparator: \.isNewline) {
        guard let equals = line.firstIndex(of: "=") else { continue }
        let key = String(line[..<equals]).trimmingCharacters(in: " \t")
        guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }) else { continue }
        details[key] = String(line[line.index(after: equals)...]).trimmingCharacters(in: " \t")
    }
    return details.isEmpty ? nil : details
}
