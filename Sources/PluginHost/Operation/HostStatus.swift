import PluginHostSupport
import PluginHostWire

/// Whether the machine is idle, running an operation, frozen, quiesced (a hook's session waits
/// for the agent's thaw), interrupted or in need of recovery — decided here, from the operation
/// lock, the freeze journal and the session, so that `status`, `recover` and the session agree.
public struct HostStatus: Encodable, Sendable {
    public enum State: String, Encodable, Sendable {
        case idle, running, frozen, quiesced
        /// An operation died and left nothing frozen.
        case interrupted
        /// An operation died and may have left filesystems frozen, or its journal cannot be read.
        case needsRecovery = "needs-recovery"
    }

    public var state: State
    public var operationID: String?
    public var pid: Int32?
    public var startedAt: String?
    /// The step the running operation is in.
    public var phase: String?
    public var frozenSince: String?
    public var frozenForSeconds: Double?
    /// What the operation's journal says it may hold frozen now (it changes at each thaw).
    public var frozenMounts: [String]
    public var freezeDeadlineSeconds: Double?
    /// Every mount of the journal with its state (pending, freezing, frozen, thawed, …).
    public var journalMounts: [JournalMount]?
    /// A two-phase session waiting for its thaw: its plugins and their state.
    public var session: SessionStatus?
    public var interruption: String?
    /// Journals that could not be read, kept for an administrator to look at.
    public var unreadableJournals: [String]
    public var lastReport: OperationReport?
    public var pluginhostVersion = BuildInfo.version
    public var schemaVersion = BuildInfo.schemaVersion

    public struct JournalMount: Encodable, Sendable {
        public var mountPoint: String
        public var state: String
    }

    public init(paths: StatePaths) {
        let holder = OperationLock.currentHolder(paths: paths)
        var journal: FreezeJournalRecord?
        var unreadable: String?
        switch FreezeJournal.read(at: paths.journalFile) {
        case .record(let record): journal = record
        case .unreadable(let why): unreadable = why
        case .absent: break
        }
        if case .unreadable = FreezeJournal.read(at: paths.legacyJournalFile) {
            unreadable = "written by an older pluginhost"
        }
        unreadableJournals = FreezeJournal.keptAside(in: paths)
        operationID = holder?.operationID ?? journal?.operationID
        pid = holder?.pid
        startedAt = holder?.startedAt
        phase = holder?.phase
        frozenMounts = []
        if let journal {
            journalMounts = journal.mounts.map { JournalMount(mountPoint: $0.mountPoint, state: $0.state.description) }
            frozenMounts = journal.mounts.filter(\.state.mayBeFrozenByUs).map(\.mountPoint)
            freezeDeadlineSeconds = Double(journal.deadlineMilliseconds) / 1000
            if let first = journal.mounts.compactMap(\.freezeStart).min() {
                let since = epochNanoseconds(monotonic: first)
                frozenSince = isoTimestamp(epochNanoseconds: since)
                frozenForSeconds = secondsSince(isoTimestamp: frozenSince!).map { ($0 * 10).rounded() / 10 }
            }
        }
        if holder != nil { session = SessionClient.status(paths: paths) }
        let mayBeFrozen = !frozenMounts.isEmpty
        switch (holder, journal) {
        case (.some, _) where mayBeFrozen: state = .frozen
        case (.some, _) where session?.phase == "quiesced": state = .quiesced
        case (.some, _): state = .running
        case (nil, .some) where mayBeFrozen: state = .needsRecovery
        case (nil, .some(let journal)):
            state = .interrupted
            let thawed = journal.thawCause.map {
                " ended while frozen; its \($0 == .guardLost ? "host" : "guard") thawed at "
                    + "\(isoTimestamp(epochNanoseconds: journal.thawedAtNanoseconds))"
            }
            interruption = "operation \(journal.operationID) (pid \(journal.hostPID))\(thawed ?? " ended")"
        case (nil, nil) where unreadable != nil:
            state = .needsRecovery
            interruption = "the freeze journal cannot be read (\(unreadable!))"
        case (nil, nil): state = .idle
        }
        lastReport = ReportStore(paths: paths).lastReport()
    }
}
