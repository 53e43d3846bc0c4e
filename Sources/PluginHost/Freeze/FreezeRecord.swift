import Glibc
import PluginHostSupport
import PluginHostWire

/// What the freeze did, per filesystem and in all, as the report shows it.
public struct FreezeRecord: Sendable, Codable, Equatable {
    public struct Mount: Sendable, Codable, Equatable {
        public var mountPoint: String
        public var fsType: String
        public var device: String
        /// "frozen", "already-frozen" (by someone else; left as it was), "failed", "not-attempted".
        public var freeze: String
        public var freezeMs: Double?
        /// "thawed", "was-not-frozen", "failed", "not-ours", "not-needed".
        public var thaw: String
        public var thawMs: Double?
        /// When its FIFREEZE and FITHAW started, in ms since the operation started.
        public var freezeStartMs: Double?
        public var thawStartMs: Double?
        public var error: String?

        var frozeByUs: Bool { freeze == "frozen" }
    }

    public enum ThawCause: String, Sendable, Codable {
        case command
        case deadline
        case hostExited = "host-exited"
        /// The guard died or stopped answering; the host thawed.
        case guardLost = "guard-lost"

        init(_ reason: ThawReason) {
            switch reason {
            case .command: self = .command
            case .deadline: self = .deadline
            case .hostExited: self = .hostExited
            }
        }
    }

    public var mounts: [Mount]
    public var deadlineSeconds: Double
    public var guardPID: Int32?
    /// From the start of the first FIFREEZE to the end of the last FITHAW.
    public var windowMs: Double?
    /// When the window opened, in ms since the operation started.
    public var windowStartMs: Double?
    /// Time spent inside FIFREEZE and FITHAW, summed.
    public var ioctlMs: Double = 0
    public var thawCause: ThawCause?

    /// Monotonic readings, kept for the window and the timeline; not in the JSON.
    /// The operation's start, the origin of the `…StartMs` fields.
    var origin: UInt64 = 0
    public internal(set) var firstFreezeNanoseconds: UInt64?
    public internal(set) var lastThawNanoseconds: UInt64?

    private enum CodingKeys: String, CodingKey {
        case mounts, deadlineSeconds, guardPID, windowMs, windowStartMs, ioctlMs, thawCause
    }

    init(targets: [FreezeTarget], deadlineSeconds: Double) {
        mounts = targets.map {
            Mount(mountPoint: $0.mountPoint, fsType: $0.fsType, device: $0.device,
                  freeze: "not-attempted", thaw: "not-needed")
        }
        self.deadlineSeconds = deadlineSeconds
    }

    mutating func apply(freezes: [IoctlResult]) {
        for (index, result) in freezes.enumerated() where index < mounts.count && result.attempted {
            firstFreezeNanoseconds = min(firstFreezeNanoseconds ?? result.startNanoseconds, result.startNanoseconds)
            ioctlMs += result.milliseconds
            mounts[index].freezeMs = result.milliseconds
            mounts[index].freezeStartMs = Monotonic.milliseconds(from: origin, to: result.startNanoseconds)
            switch result.errno {
            case 0:
                mounts[index].freeze = "frozen"
            case EBUSY:
                mounts[index].freeze = "already-frozen"
                mounts[index].thaw = "not-ours"
            default:
                mounts[index].freeze = "failed"
                mounts[index].error = SystemError("FIFREEZE", errno: result.errno).description
            }
        }
    }

    mutating func apply(thaws: [IoctlResult], reason: ThawCause?) {
        if let reason, thawCause == nil || reason == .guardLost { thawCause = reason }
        for (index, result) in thaws.enumerated() where index < mounts.count && result.attempted {
            lastThawNanoseconds = max(lastThawNanoseconds ?? result.endNanoseconds, result.endNanoseconds)
            ioctlMs += result.milliseconds
            mounts[index].thawMs = result.milliseconds
            mounts[index].thawStartMs = Monotonic.milliseconds(from: origin, to: result.startNanoseconds)
            switch result.errno {
            case 0: mounts[index].thaw = "thawed"
            case EINVAL: mounts[index].thaw = "was-not-frozen"
            default:
                mounts[index].thaw = "failed"
                mounts[index].error = SystemError("FITHAW", errno: result.errno).description
            }
        }
        if let first = firstFreezeNanoseconds, let last = lastThawNanoseconds {
            windowMs = Monotonic.milliseconds(from: first, to: last)
            windowStartMs = Monotonic.milliseconds(from: origin, to: first)
        }
    }

    func freezeError() -> HostError? {
        guard let failed = mounts.first(where: { $0.freeze == "failed" }) else { return nil }
        return HostError(.freezeFailed, "\(failed.mountPoint) (\(failed.fsType)): \(failed.error ?? "failed"); everything frozen before it was thawed",
                         step: "freeze")
    }

    func thawError() -> HostError? {
        let failed = mounts.filter { $0.thaw == "failed" }
        guard !failed.isEmpty else { return nil }
        let names = failed.map { "\($0.mountPoint): \($0.error ?? "failed")" }.joined(separator: "; ")
        return HostError(.thawFailed, "could not thaw \(names)", step: "thaw")
    }

    /// True while anything this record froze has not been thawed.
    public var mayStillBeFrozen: Bool {
        mounts.contains { $0.frozeByUs && $0.thaw != "thawed" && $0.thaw != "was-not-frozen" }
    }
}
