/// The report's `group` section: the group, this member, every member's outcome as this member
/// last saw it, the barriers, and the group's consistency (the lowest of the members').
public struct GroupRecord: Sendable, Codable, Equatable {
    public struct Member: Sendable, Codable, Equatable {
        public var member: String
        public var host: String
        /// That member's own operation id (its report).
        public var operationID: String
        /// The last state it published: joined, quiesced, frozen, snapshotted, or at its end
        /// succeeded, degraded, failed.
        public var state: String
        public var consistency: String
    }

    public struct Barrier: Sendable, Codable, Equatable {
        public enum Outcome: String, Sendable, Codable {
            case passed, broken, timedOut = "timed-out", interrupted
        }

        public var stage: String
        /// Milliseconds since the operation started: arrival, and how long it waited.
        public var startMs: Double
        public var waitMs: Double
        public var outcome: Outcome
    }

    public var name: String
    public var member: String
    public var members: Int
    /// The group's operation id (the first member's): its state in etcd lives under
    /// `/pluginhost/groups/NAME/OPERATION/`.
    public var operationID: String?
    public var etcd: [String]
    public var ttlSeconds: Int
    /// joined, completed (every barrier passed), broken (a member failed or vanished, or etcd
    /// was lost), busy (another operation of the group runs), unreachable (etcd never answered).
    public var outcome: String
    /// The group's consistency: the lowest of the members', once every barrier has passed (nil
    /// until then, and when the group broke).
    public var consistency: ConsistencyLevel?
    public var memberStates: [Member] = []
    public var barriers: [Barrier] = []
    /// Why the group broke, when it did.
    public var brokenBy: String?
    /// This member removed the group's state from etcd as the last one out.
    public var removedGroupState = false
    /// CLOCK_MONOTONIC of the operation's start, in ns: members on one machine (tests, bench)
    /// put their steps on one time axis with it.
    public var originMonotonicNs: UInt64

    /// The lowest consistency of the given levels (`none` when there are none).
    public static func lowest(_ levels: [ConsistencyLevel]) -> ConsistencyLevel {
        guard !levels.isEmpty else { return .none }
        let order: [ConsistencyLevel] = [.none, .crash, .filesystem, .application]
        return levels.min { order.firstIndex(of: $0)! < order.firstIndex(of: $1)! }!
    }
}
