import Glibc
import PluginHostSupport
import PluginHostWire

/// Thaws what a dead operation left frozen, from its journal. Run with the operation lock held:
/// holding it proves that no operation (and no guard) is alive, so the journal is stale.
public enum Recovery {
    public struct Outcome: Sendable, Equatable {
        public var journal: FreezeJournal
        /// Per journal mount: "thawed", "was-not-frozen", "thawed-by-guard", or an error.
        public var mounts: [(mountPoint: String, state: String)]
        /// False when a thaw failed: the journal is kept and the next attempt tries again.
        public var complete: Bool

        public static func == (lhs: Outcome, rhs: Outcome) -> Bool {
            lhs.journal == rhs.journal && lhs.complete == rhs.complete
                && lhs.mounts.map(\.mountPoint) == rhs.mounts.map(\.mountPoint)
                && lhs.mounts.map(\.state) == rhs.mounts.map(\.state)
        }

        /// One line for people and for the report's warnings.
        public var summary: String {
            let states = mounts.map { "\($0.mountPoint) \($0.state)" }.joined(separator: ", ")
            let what = journal.state == .frozen
                ? "operation \(journal.operationID) (host pid \(journal.hostPID)) ended while frozen"
                : "operation \(journal.operationID) (host pid \(journal.hostPID)) ended while frozen; its guard thawed at \(journal.thawedAt ?? "?")"
            return "\(what): \(states.isEmpty ? "no mounts" : states)"
        }
    }

    /// Returns nil when there is no journal, i.e. nothing to recover.
    public static func run(paths: StatePaths) -> Outcome? {
        guard let journal = FreezeJournal.read(from: paths.journalFile) else {
            unlink(paths.journalFile)  // unreadable or absent; nothing to act on
            return nil
        }
        var outcome = Outcome(journal: journal, mounts: [], complete: true)
        if journal.state == .thawedByGuard {
            outcome.mounts = journal.mounts.map { ($0.mountPoint, "thawed-by-guard") }
        } else {
            // Frozen, or the guard's thaw was incomplete: thaw every mount that is still the
            // same mount (a remounted path is someone else's filesystem now).
            for (target, result) in zip(journal.mounts, thawDirectly(journal.mounts)) {
                switch result.errno {
                case 0: outcome.mounts.append((target.mountPoint, "thawed"))
                case EINVAL: outcome.mounts.append((target.mountPoint, "was-not-frozen"))
                case ESTALE, ENOENT: outcome.mounts.append((target.mountPoint, "no longer mounted"))
                default:
                    outcome.mounts.append((target.mountPoint, "thaw failed: \(SystemError("FITHAW", errno: result.errno))"))
                    outcome.complete = false
                }
            }
        }
        if outcome.complete {
            recordInterruptedOperation(outcome, paths: paths)
            unlink(paths.journalFile)
        }
        return outcome
    }

    /// The operation never wrote its report; write one saying what happened, so that `status`
    /// shows it.
    private static func recordInterruptedOperation(_ outcome: Outcome, paths: StatePaths) {
        let store = ReportStore(paths: paths)
        if store.report(operationID: outcome.journal.operationID) != nil { return }
        var report = OperationReport(operationID: outcome.journal.operationID, command: "run",
                                     startedAt: outcome.journal.frozenAt)
        report.errors = [HostError(.operationInterrupted, "the host exited during the operation; \(outcome.summary)", step: "freeze")]
        report.warnings = ["recovered at \(isoTimestamp())"]
        report.conclude(failed: true)
        // Pruning is left to the next operation, which knows the host config's keepReports.
        try? store.save(report, prune: false)
        SystemLog.record(report)
    }
}
