public import PluginHostWire

/// One plugin in the report: what it is, whether it was refused, and every call it served.
public struct PluginRecord: Sendable, Codable, Equatable {
    public struct Call: Sendable, Codable, Equatable {
        public var function: PluginCallName
        /// Milliseconds since the operation started.
        public var startMs: Double
        public var durationMs: Double
        public var outcome: PluginCallOutcome
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
    public var state: PluginState
    public var refusal: String?
    public var dataPaths: [String] = []
    public var calls: [Call] = []
    /// The plugin's first log lines (the rest are counted, not kept).
    public var logLines: [String] = []
    public var droppedLogLines = 0
}

/// What the host asks of a plugin, in the report's call list.
public enum PluginCallName: String, Sendable, Codable, CaseIterable {
    case load, create, check, dataPaths, quiesce, resume

    public init(_ function: PluginFunction) {
        switch function {
        case .check: self = .check
        case .quiesce: self = .quiesce
        case .resume: self = .resume
        case .dataPaths: self = .dataPaths
        }
    }
}

/// How a plugin call ended: a `PluginStatus` the plugin returned, or what the host saw.
public enum PluginCallOutcome: String, Sendable, Codable, CaseIterable {
    case ok, failed, unreachable, timeout, busy, unsupported
    case invalidConfig = "invalid-config"
    case notAuthorized = "not-authorized"
    case consistencyLost = "consistency-lost"
    /// A status this host does not know (a newer plugin's): treated as a failure.
    case unknownStatus = "unknown-status"
    /// The host killed the worker at the call's deadline.
    case timedOut = "timed-out"
    /// The worker died or broke the protocol.
    case crashed
    /// The worker refused to load the library (a descriptor check failed).
    case refused
    /// Not called: the worker was already gone.
    case skipped
    /// A signal came during the call: the host killed the worker at once, without waiting.
    case interrupted

    public init(status: Int32) {
        guard let known = PluginStatus(rawValue: status) else {
            self = .unknownStatus
            return
        }
        self = Self(rawValue: known.name) ?? .unknownStatus
    }
}

/// Where a plugin stands in an operation.
public enum PluginState: String, Sendable, Codable, CaseIterable {
    /// Verified and enabled.
    case ready
    case disabled
    /// Failed its integrity or descriptor checks: never used.
    case refused
    /// Create, dataPaths or check failed: not used for this operation.
    case failed
}

/// A status as reports and messages name it ("status 42" for one this host does not know).
func statusName(_ status: Int32) -> String {
    PluginStatus(rawValue: status)?.name ?? "status \(status)"
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
