import Glibc
import PluginHostSupport
public import PluginHostWire

/// Thaws what a dead operation left frozen, from its journal — exactly the filesystems the
/// journal says that operation may have left frozen (`MountFreezeState.mayBeFrozenByUs`), never
/// one it found frozen already (EBUSY) or never froze. Run with the operation lock held: holding
/// it proves that no operation (and no guard) is alive, so the journal is stale.
public enum Recovery {
    /// What recovery did with one mount of the journal.
    public enum MountResult: Sendable, Equatable, CustomStringConvertible {
        /// It was frozen by the dead operation; thawed now.
        case thawed
        /// The dead operation may have frozen it, but FITHAW says it is not frozen.
        case wasNotFrozen
        /// The dead operation's guard (or host) had thawed it already.
        case thawedBefore(by: FreezeRecord.ThawCause?)
        /// Frozen by someone else before the operation (EBUSY): left alone.
        case notOurs
        /// The operation never froze it: left alone.
        case neverFrozen
        /// Nothing is mounted there any more, or another filesystem is.
        case noLongerMounted(String)
        /// It could not be thawed (or not even checked): it may still be frozen.
        case failed(String)

        public var description: String {
            switch self {
            case .thawed: "thawed"
            case .wasNotFrozen: "was-not-frozen"
            case .thawedBefore(let cause): cause == .guardLost ? "thawed-by-host" : "thawed-by-guard"
            case .notOurs: "not-ours"
            case .neverFrozen: "never-frozen"
            case .noLongerMounted: "no longer mounted"
            case .failed(let why): "thaw failed: \(why)"
            }
        }
    }

    public struct Outcome: Sendable, Equatable {
        /// Where the journal was (or, when unreadable, where it is kept now).
        public var journalPath: String
        /// The journal as found; nil when it could not be decoded.
        public var journal: FreezeJournalRecord?
        /// Why the journal could not be decoded: it is kept, reported, never acted on.
        public var unreadable: String?
        public var mounts: [Mount]
        /// False when a thaw failed or the journal was unreadable: something may still be frozen.
        public var complete: Bool

        public struct Mount: Sendable, Equatable {
            public var mountPoint: String
            public var result: MountResult
        }

        /// One line for people and for the report's warnings.
        public var summary: String {
            guard let journal else {
                return
                    """
                    a freeze journal that cannot be read (\(unreadable ?? "?")) was kept at \(journalPath); check the \
                    filesystems it may name, thaw any left frozen with `fsfreeze -u`, then delete it
                    """
            }
            let states = mounts.map { "\($0.mountPoint) \($0.result)" }.joined(separator: ", ")
            let what: String
            if journal.mayBeFrozenByUs {
                what = "ended while frozen"
            } else if journal.thawCause != nil {
                what =
                    """
                    ended while frozen; its \(journal.thawCause == .guardLost ? "host" : "guard") thawed at \
                    \(isoTimestamp(epochNanoseconds: journal.thawedAtNanoseconds))
                    """
            } else {
                what = "ended without leaving anything frozen"
            }
            return
                "operation \(journal.operationID) (host pid \(journal.hostPID)) \(what): \(states.isEmpty ? "no mounts" : states)"
        }
    }

    /// Recovers from the journal of a dead operation, if there is one (nil: nothing to do). A
    /// journal that cannot be decoded (damaged, or written by another version) is moved aside,
    /// kept, and reported as incomplete.
    public static func run(paths: StatePaths) -> Outcome? {
        for path in [paths.legacyJournalFile, paths.journalFile] {
            switch FreezeJournal.read(at: path) {
            case .absent:
                continue
            case .unreadable(let why):
                let reason = path == paths.legacyJournalFile ? "written by an older pluginhost (JSON)" : why
                return Outcome(
                    journalPath: FreezeJournal.keepAside(path) ?? path, journal: nil, unreadable: reason,
                    mounts: [], complete: false)
            case .record(let journal):
                return recover(journal, at: path, paths: paths)
            }
        }
        return nil
    }

    private static func recover(_ journal: FreezeJournalRecord, at path: String, paths: StatePaths) -> Outcome {
        var updated = journal
        var results = [MountResult?](repeating: nil, count: journal.mounts.count)
        // Reverse waves, as a thaw runs.
        let order = journal.mounts.indices.sorted { journal.mounts[$0].wave > journal.mounts[$1].wave }
        for index in order {
            let mount = journal.mounts[index]
            switch mount.state {
            case .pending, .freezeFailed: results[index] = .neverFrozen
            case .alreadyFrozen: results[index] = .notOurs
            case .thawed: results[index] = .thawedBefore(by: journal.thawCause.map(FreezeRecord.ThawCause.init))
            case .wasNotFrozen: results[index] = .wasNotFrozen
            case .freezing, .frozen, .thawing, .thawFailed:
                let target = FreezeTarget(
                    mountPoint: mount.mountPoint, fsType: mount.fsType, source: mount.source,
                    device: mount.device, mountID: Int(mount.mountID), wave: mount.wave)
                let (outcome, start, end) = DirectThaw.thaw(target)
                updated.mounts[index].thawStartNanoseconds = start.nanoseconds
                updated.mounts[index].thawEndNanoseconds = end.nanoseconds
                switch outcome {
                case .thawed:
                    results[index] = .thawed
                    updated.mounts[index].state = .thawed
                case .wasNotFrozen:
                    results[index] = .wasNotFrozen
                    updated.mounts[index].state = .wasNotFrozen
                case .notMounted(let why):
                    results[index] = .noLongerMounted(why)
                    updated.mounts[index].state = .wasNotFrozen
                case .failed(let error):
                    results[index] = .failed("\(error)")
                    updated.mounts[index].state = .thawFailed
                    updated.mounts[index].errno = error.errno
                }
            }
        }
        var outcome = Outcome(
            journalPath: path, journal: journal, unreadable: nil,
            mounts: zip(journal.mounts, results).map { Outcome.Mount(mountPoint: $0.mountPoint, result: $1!) },
            complete: true)
        outcome.complete = !outcome.mounts.contains { if case .failed = $0.result { true } else { false } }
        if outcome.complete {
            recordInterruptedOperation(outcome, journal: journal, paths: paths)
            try? FileSystem.remove(path)
        } else {
            // Keep what was learned: the next attempt retries only what is still ours.
            if updated.thawCause == nil { updated.thawCause = .recovery }
            try? FreezeJournal.write(updated, at: path)
        }
        return outcome
    }

    /// The operation never wrote its report; write one saying what happened, so that `status`
    /// shows it.
    private static func recordInterruptedOperation(_ outcome: Outcome, journal: FreezeJournalRecord, paths: StatePaths)
    {
        let store = ReportStore(paths: paths)
        if store.report(operationID: journal.operationID) != nil { return }
        var report = OperationReport(
            operationID: journal.operationID, command: "run",
            startedAt: isoTimestamp(epochNanoseconds: journal.createdAtNanoseconds))
        let attempted = journal.mounts.contains { $0.state != .pending }
        report.errors = [
            HostError(
                .operationInterrupted, "the host exited during the operation; \(outcome.summary)",
                step: attempted ? "freeze" : "prepare")
        ]
        report.warnings = ["recovered at \(isoTimestamp())"]
        report.conclude(failed: true)
        // Pruning is left to the next operation, which knows the host config's keepReports.
        try? store.save(report, prune: false)
        SystemLog.record(report)
    }
}
