import PluginHostSupport

/// What the session tells the `freeze` client: frozen (or, for a hook, quiesced), or — when it
/// ended before that — the final report.
public enum SessionEnvelope: Codable, Sendable {
    case notice(FreezeNotice)
    case report(OperationReport)
}

/// "Frozen, take your snapshot now."
public struct FreezeNotice: Codable, Sendable, Equatable {
    /// frozen (two-phase), or quiesced (a hook: the agent freezes).
    public var state: String
    public var operationID: String
    public var mounts: [String]
    /// What the snapshot will be worth if taken now.
    public var consistency: ConsistencyLevel
    public var at: String
    /// The guard thaws (or, for a hook, the session resumes) after this many seconds.
    public var deadlineSeconds: Double
    public var errors: [HostError]
    public var warnings: [String]
    public var thawCommand: String
    /// The pluginhost that wrote this document, and the version of its keys (`BuildInfo`).
    public var pluginhostVersion: String? = BuildInfo.version
    public var schemaVersion: Int? = BuildInfo.schemaVersion
    /// The consistency group, when this member is in one: every member is frozen now.
    public var group: GroupRecord? = nil
}

/// What `pluginhost status` learns from a session waiting for its thaw.
public struct SessionStatus: Codable, Sendable, Equatable {
    public struct Plugin: Codable, Sendable, Equatable {
        public var name: String
        public var state: String
    }

    public var operationID: String
    public var command: String
    public var phase: String
    public var since: String
    public var mounts: [String]
    public var deadlineSeconds: Double
    public var plugins: [Plugin]
}

/// A two-phase operation's link to its callers, served by the session runtime
/// (`PluginHostSession.SessionChannel`): the `freeze` client that waits for the notice, and
/// the `thaw`/`status` clients on the session socket.
public protocol SessionLink: AnyObject {
    /// Creates the listening socket; called with the operation lock held.
    func open() throws(HostError)
    /// Readable when a client connects.
    var listenDescriptor: Int32 { get }
    /// Tells the `freeze` client what it waits for (the notice, or the final report), once,
    /// then lets go of it.
    func notify(_ envelope: SessionEnvelope)
    /// Accepts one connection: a thaw request is returned; a status request is answered with
    /// `status()`; anything else is refused. nil when nothing actionable arrived.
    func accept(operationID: String, status: () -> SessionStatus) -> SessionThaw?
    /// Sends the final report to every thaw client and closes the socket.
    func finish(_ report: OperationReport)
    /// Connections refused (not root) or malformed, and a notice the `freeze` client was not
    /// there to read, for the report's warnings.
    var refusals: [String] { get }
}

/// A thaw request the session accepted.
public struct SessionThaw: Sendable, Equatable {
    /// False when the agent reports that its snapshot failed.
    public var snapshotTaken: Bool

    public init(snapshotTaken: Bool) { self.snapshotTaken = snapshotTaken }
}
