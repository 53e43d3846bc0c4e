import Glibc
public import PluginHostSupport
public import PluginHostWire

/// What the freeze did, per filesystem and in all, as the report shows it. Built from the
/// freeze journal (`FreezeJournalRecord`), the one record of what each ioctl did.
public struct FreezeRecord: Sendable, Codable, Equatable {
    /// How a filesystem's FIFREEZE ended.
    public enum FreezeOutcome: String, Sendable, Codable {
        case frozen
        /// Frozen by someone else before (EBUSY): left as it was.
        case alreadyFrozen = "already-frozen"
        case failed
        case notAttempted = "not-attempted"
        /// Its FIFREEZE had not returned when the report was made (its storage lies on a
        /// frozen filesystem): it is thawed as soon as it returns.
        case stuck
    }

    /// How a filesystem's FITHAW ended.
    public enum ThawOutcome: String, Sendable, Codable {
        case thawed
        /// FITHAW said it was not frozen (someone else thawed it).
        case wasNotFrozen = "was-not-frozen"
        case failed
        /// Someone else's freeze: not ours to thaw.
        case notOurs = "not-ours"
        /// Never frozen by us: nothing to thaw.
        case notNeeded = "not-needed"
        /// Frozen by us and not thawed yet.
        case pending
    }

    public struct Mount: Sendable, Codable, Equatable {
        public var mountPoint: String
        public var fsType: String
        public var device: String
        /// Its dependency wave (0 first).
        public var wave: Int
        public var freeze: FreezeOutcome
        public var freezeMs: Double?
        public var thaw: ThawOutcome
        public var thawMs: Double?
        /// When its FIFREEZE and FITHAW started, in ms since the operation started.
        public var freezeStartMs: Double?
        public var thawStartMs: Double?
        public var error: String?

        init(_ entry: FreezeJournalRecord.Mount, origin: Monotonic.Instant) {
            mountPoint = entry.mountPoint
            fsType = entry.fsType
            device = entry.device
            wave = entry.wave
            let outcome = Self.outcome(of: entry.state)
            freeze = outcome.freeze
            thaw = outcome.thaw
            switch entry.state {
            case .freezeFailed: error = SystemError("FIFREEZE", errno: entry.errno).description
            case .thawFailed: error = SystemError("FITHAW", errno: entry.errno).description
            default: error = nil
            }
            if let freezeStart = entry.freezeStart {
                freezeStartMs = (freezeStart - origin).inMilliseconds
                if let freezeEnd = entry.freezeEnd { freezeMs = (freezeEnd - freezeStart).inMilliseconds }
            }
            if let thawStart = entry.thawStart {
                thawStartMs = (thawStart - origin).inMilliseconds
                if let thawEnd = entry.thawEnd { thawMs = (thawEnd - thawStart).inMilliseconds }
            }
        }

        /// A journal state as the report's pair of outcomes.
        static func outcome(of state: MountFreezeState) -> (freeze: FreezeOutcome, thaw: ThawOutcome) {
            switch state {
            case .pending: (.notAttempted, .notNeeded)
            case .freezing: (.stuck, .pending)
            case .frozen, .thawing: (.frozen, .pending)
            case .alreadyFrozen: (.alreadyFrozen, .notOurs)
            case .freezeFailed: (.failed, .notNeeded)
            case .thawed: (.frozen, .thawed)
            case .wasNotFrozen: (.frozen, .wasNotFrozen)
            case .thawFailed: (.frozen, .failed)
            }
        }
    }

    public enum ThawCause: String, Sendable, Codable {
        case command
        case deadline
        case hostExited = "host-exited"
        /// The guard died or stopped answering; the host thawed.
        case guardLost = "guard-lost"
        case recovery

        init(_ reason: ThawReason) {
            switch reason {
            case .command: self = .command
            case .deadline: self = .deadline
            case .hostExited: self = .hostExited
            case .guardLost: self = .guardLost
            case .recovery: self = .recovery
            }
        }
    }

    public var mounts: [Mount]
    public var deadlineSeconds: Double
    public var guardPID: Int32?
    /// From the start of the first FIFREEZE to the end of the last FITHAW, as the ioctls were
    /// timed where they ran (nil while something is still frozen).
    public var windowMs: Double?
    /// When the window opened, in ms since the operation started.
    public var windowStartMs: Double?
    /// Time spent inside FIFREEZE and FITHAW, summed.
    public var ioctlMs: Double = 0
    public var thawCause: ThawCause?

    /// Monotonic readings (not in the JSON): the first FIFREEZE's start and the first FITHAW's
    /// start — a snapshot that ended after the latter was not taken inside the freeze.
    public internal(set) var firstFreeze: Monotonic.Instant?
    public internal(set) var firstThaw: Monotonic.Instant?

    private enum CodingKeys: String, CodingKey {
        case mounts, deadlineSeconds, guardPID, windowMs, windowStartMs, ioctlMs, thawCause
    }

    /// The record of `journal`, with times relative to `origin` (the operation's start).
    public init(_ journal: FreezeJournalRecord, origin: Monotonic.Instant) {
        mounts = journal.mounts.map { Mount($0, origin: origin) }
        deadlineSeconds = Double(journal.deadlineMilliseconds) / 1000
        guardPID = journal.guardPID == 0 ? nil : journal.guardPID
        thawCause = journal.thawCause.map(ThawCause.init)
        var lastThaw: Monotonic.Instant?
        for entry in journal.mounts {
            if let start = entry.freezeStart {
                firstFreeze = min(firstFreeze ?? .max, start)
                if let end = entry.freezeEnd, end >= start { ioctlMs += (end - start).inMilliseconds }
            }
            if let start = entry.thawStart {
                firstThaw = min(firstThaw ?? .max, start)
                if let end = entry.thawEnd, end >= start {
                    ioctlMs += (end - start).inMilliseconds
                    lastThaw = max(lastThaw ?? end, end)
                }
            }
        }
        if let first = firstFreeze {
            windowStartMs = (first - origin).inMilliseconds
            // The window closes with the last thaw of what we froze (a freeze that failed at
            // once closes with its own return).
            if !journal.mayBeFrozenByUs {
                let lastFreezeEnd = journal.mounts.compactMap(\.freezeEnd).max() ?? first
                windowMs = (max(lastThaw ?? first, lastFreezeEnd) - first).inMilliseconds
            }
        }
    }

    /// The first failed FIFREEZE as an error.
    func freezeError() -> HostError? {
        guard let failed = mounts.first(where: { $0.freeze == .failed }) else { return nil }
        return HostError(
            .freezeFailed,
            "\(failed.mountPoint) (\(failed.fsType)): \(failed.error ?? "failed"); everything frozen before it was thawed",
            step: "freeze")
    }

    /// Every filesystem we froze and could not thaw, as an error.
    func thawError() -> HostError? {
        let failed = mounts.filter { $0.thaw == .failed || $0.thaw == .pending }
        guard !failed.isEmpty else { return nil }
        let names = failed.map { mount in
            let state =
                mount.thaw == .pending
                ? (mount.freeze == .stuck ? "its FIFREEZE has not returned" : "not thawed") : mount.error ?? "failed"
            return "\(mount.mountPoint): \(state)"
        }.joined(separator: "; ")
        return HostError(.thawFailed, "could not thaw \(names)", step: "thaw")
    }

    /// True while anything this record froze has not been thawed.
    public var mayStillBeFrozen: Bool {
        mounts.contains { $0.thaw == .pending || $0.thaw == .failed }
    }
}

/// The journal's times are raw CLOCK_MONOTONIC nanoseconds, 0 for "not yet": the engine reads
/// them as instants here.
extension FreezeJournalRecord.Mount {
    var freezeStart: Monotonic.Instant? { Self.instant(freezeStartNanoseconds) }
    var freezeEnd: Monotonic.Instant? { Self.instant(freezeEndNanoseconds) }
    var thawStart: Monotonic.Instant? { Self.instant(thawStartNanoseconds) }
    var thawEnd: Monotonic.Instant? { Self.instant(thawEndNanoseconds) }

    private static func instant(_ nanoseconds: UInt64) -> Monotonic.Instant? {
        nanoseconds == 0 ? nil : Monotonic.Instant(nanoseconds: nanoseconds)
    }
}
