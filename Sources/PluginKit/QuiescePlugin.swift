public import PluginHostSupport

/// A quiesce plugin written in Swift. `PluginExport` turns a type conforming to this into the C
/// descriptor of `pluginhost_plugin.h`, so a Swift plugin is loaded exactly like a C one:
///
///     @_cdecl("pluginhost_plugin_entry")
///     public func pluginhostPluginEntry() -> UnsafeRawPointer {
///         PluginExport.descriptor(for: MyPlugin.self)
///     }
///
/// The header's rules hold: every call must return before its deadline, and `resume` is
/// idempotent and safe after a failed or partial `quiesce`.
public protocol QuiescePlugin: AnyObject {
    static var name: String { get }
    static var version: String { get }
    static var summary: String { get }

    /// Parses the manifest's `config` object; connects to nothing yet if it can avoid it.
    init(config: JSONValue, host: PluginHostServices) throws(PluginError)

    /// Reaches the application without quiescing it: version, privileges, paths.
    func check(_ call: inout PluginCall) throws(PluginError)

    /// The directories the application keeps data in (the host warns about those outside the freeze).
    func dataPaths(_ call: inout PluginCall) throws(PluginError) -> [String]

    func quiesce(_ call: inout PluginCall) throws(PluginError)

    func resume(_ call: inout PluginCall) throws(PluginError)
}

extension QuiescePlugin {
    public func dataPaths(_ call: inout PluginCall) throws(PluginError) -> [String] { [] }
}

/// The status codes of the ABI (`ph_status` in pluginhost_plugin.h, the source of this list;
/// PluginStatusTests compare them), an append-only list.
public enum PluginStatus: Int32, Sendable, CaseIterable {
    case ok = 0
    case failed = 1
    case invalidConfig = 2
    case unreachable = 3
    case notAuthorized = 4
    case timeout = 5
    case busy = 6
    case consistencyLost = 7
    case unsupported = 8
}

/// A failed call: its status and a message that says what went wrong and what to do.
public struct PluginError: Error, Sendable, CustomStringConvertible {
    public var status: PluginStatus
    public var message: String

    public init(_ status: PluginStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { message }
}

/// One call's deadline and what it reports.
public struct PluginCall: Sendable {
    /// When the call must have returned (the host kills the worker then); nil when it has none.
    public let deadline: Monotonic.Instant?
    /// quiesce: resume comes by then at the latest; nil when unknown. Use it for a server-side
    /// dead-man switch on a held session.
    public let holdUntil: Monotonic.Instant?
    /// A one-line summary for the report (on success).
    public var summary: String?
    /// Facts for the report, in order.
    public private(set) var details: [(key: String, value: String)] = []

    /// A call ending at `deadline`, whose hold (quiesce) ends at `holdUntil`; nil for none.
    public init(deadline: Monotonic.Instant?, holdUntil: Monotonic.Instant? = nil) {
        self.deadline = deadline
        self.holdUntil = holdUntil
    }

    /// Adds a fact for the report (`key=value`), after those added before.
    public mutating func detail(_ key: String, _ value: String) {
        details.append((key, value))
    }

    /// The time left before the deadline: zero once it has passed, nil when there is none.
    public var remaining: Duration? { deadline.map { $0 - .now } }

    /// Throws `timeout` when the deadline has passed.
    public func checkDeadline(_ what: String) throws(PluginError) {
        if let deadline, Monotonic.Instant.now >= deadline {
            throw PluginError(.timeout, "the deadline passed while \(what)")
        }
    }
}

public enum PluginLogLevel: Int32, Sendable {
    case debug = 0, info = 1, warning = 2, error = 3
}
