import CPluginHostShim
import Glibc
import PluginHostSupport
public import PluginHostWire

/// The host's handle on its freeze guard process (see `FreezeGuardProcess`).
///
/// Start it early (its start-up is then outside the freeze window), `freeze()`, do the
/// snapshot while watching `eventDescriptor` (readable if the guard thaws at its deadline or
/// dies), then `thaw()`. If the guard dies while filesystems are frozen, the host thaws them
/// itself. Every outcome ends in the `FreezeRecord` the report shows.
public final class FreezeGuard {
    public static let defaultDeadlineSeconds = 60.0
    public static let deadlineRange = 1.0...600.0
    /// How long the guard may take to open and verify the mount points.
    static let startupTimeoutNanoseconds: UInt64 = 15_000_000_000

    public let targets: [FreezeTarget]
    public let deadlineSeconds: Double
    public private(set) var record: FreezeRecord
    private let process: ChildProcess
    private let socket: FileDescriptor
    private var frozen = false
    private var ready = false

    public var pid: Int32 { process.pid }

    /// Readable when the guard has something to say on its own while frozen (it thawed at its
    /// deadline) or has died. Watch it during the snapshot; then call `thaw()`.
    public var eventDescriptor: Int32 { socket.rawValue }

    /// Spawns `executable __guard …`; it opens and verifies every mount point on its own.
    /// `operationStart` (CLOCK_MONOTONIC ns) is the origin of the record's times.
    public init(executable: String, targets: [FreezeTarget], deadlineSeconds: Double,
                journalPath: String?, lock: OperationLock?, operationStart: UInt64) throws(HostError) {
        self.targets = targets
        self.deadlineSeconds = deadlineSeconds
        record = FreezeRecord(targets: targets, deadlineSeconds: deadlineSeconds)
        record.origin = operationStart

        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw HostError(.freezeFailed, "cannot create the guard's socket: \(SystemError("socketpair"))", step: "freeze")
        }
        socket = FileDescriptor(owning: pair[0])
        let guardEnd = FileDescriptor(owning: pair[1])

        var arguments = ["__guard", "--deadline-ms", String(UInt64(deadlineSeconds * 1000))]
        if let journalPath { arguments += ["--journal", journalPath] }
        for target in targets { arguments += ["--target", "\(target.mountID):\(target.mountPoint)"] }
        var extra = [guardEnd.rawValue]
        if let lock { extra.append(lock.descriptor.rawValue) }
        do {
            process = try ChildProcess(spawning: Command(executable: executable, arguments: arguments,
                                                         environment: ["PATH": ScriptRunner.searchPath, "LANG": "C", "SWIFT_BACKTRACE": "enable=no"]
                                                             .merging(KernelFeature.inheritedEnvironment) { $1 }),
                                       extraDescriptors: extra, outlivesHost: true)
        } catch {
            throw HostError(.freezeFailed, "cannot start the freeze guard: \(error)", step: "freeze")
        }
        guardEnd.close()
        record.guardPID = process.pid
    }

    /// Waits for the guard to report every mount point open and verified (it does that while
    /// the host runs the pre-script).
    private func awaitReady() -> HostError? {
        if ready { return nil }
        switch receive(until: Monotonic.now() + Self.startupTimeoutNanoseconds) {
        case .message(let message) where message.kind == .ready:
            ready = true
            return nil
        case .message(let message) where message.kind == .setupFailed:
            return HostError(.freezeFailed, message.text, step: "freeze")
        default:
            process.terminateGroup(graceNanoseconds: 0)
            return HostError(.freezeFailed, "the freeze guard did not start (\(guardExitDescription()))", step: "freeze")
        }
    }

    deinit {
        // Whatever happened, nothing may stay frozen: tell the guard, which thaws and exits.
        if frozen { _ = thaw() }
        socket.close()
        _ = process.wait(until: Monotonic.now() + 5_000_000_000)
    }

    /// Freezes every target in order. On failure the guard has already thawed what it froze.
    /// Returns nil on success, else the error.
    public func freeze() -> HostError? {
        if let error = awaitReady() { return error }
        guard sendCommand(.freeze) else {
            return HostError(.freezeFailed, "the freeze guard is gone (\(guardExitDescription()))", step: "freeze")
        }
        let limit = Monotonic.now() + UInt64((deadlineSeconds + 5) * 1e9)
        switch receive(until: limit) {
        case .message(let message) where message.kind == .frozen:
            frozen = true
            record.apply(freezes: message.first)
            return nil
        case .message(let message) where message.kind == .freezeFailed:
            record.apply(freezes: message.first)
            record.apply(thaws: message.second, reason: nil)
            return record.freezeError() ?? HostError(.freezeFailed, "the freeze failed", step: "freeze")
        case .message, .closed, .timedOut:
            // No answer: the guard died or hangs in FIFREEZE. Stop it and thaw whatever it may
            // have frozen, here.
            process.terminateGroup(graceNanoseconds: 0)
            record.apply(thaws: thawDirectly(targets), reason: .guardLost)
            return HostError(.freezeFailed, "the freeze guard stopped answering (\(guardExitDescription())); every target was thawed by the host",
                             step: "freeze")
        }
    }

    /// Thaws (if still frozen) and returns nil, or the error when a filesystem could not be thawed.
    public func thaw() -> HostError? {
        guard frozen else { return nil }
        frozen = false
        if sendCommand(.thaw) {
            let limit = Monotonic.now() + 30_000_000_000
            if case .message(let message) = receive(until: limit), message.kind == .thawed {
                record.apply(thaws: message.first, reason: message.reason.map(FreezeRecord.ThawCause.init))
                return record.thawError()
            }
        }
        return takeOverThaw()
    }

    /// After `eventDescriptor` became readable while frozen: what the guard did on its own.
    /// Returns the cause (deadline, or the guard's death, after which the host thawed).
    public func collectUnpromptedThaw() -> FreezeRecord.ThawCause? {
        guard frozen else { return record.thawCause }
        switch receive(until: Monotonic.now()) {
        case .message(let message) where message.kind == .thawed:
            frozen = false
            record.apply(thaws: message.first, reason: message.reason.map(FreezeRecord.ThawCause.init))
            return record.thawCause
        case .timedOut, .message:
            return nil
        case .closed:
            frozen = false
            _ = takeOverThaw()
            return record.thawCause
        }
    }

    /// The guard is gone or mute while we are frozen: thaw here what it froze for us.
    private func takeOverThaw() -> HostError? {
        process.terminateGroup(graceNanoseconds: 0)
        let ours = targets.indices.map { record.mounts[$0].frozeByUs ? targets[$0] : nil }
        record.apply(thaws: thawDirectly(ours), reason: .guardLost)
        return record.thawError()
    }

    // MARK: - Socket

    private func sendCommand(_ command: GuardRequest) -> Bool {
        command.encoded.withUnsafeBytes { Glibc.send(socket.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == command.encoded.count
    }

    private enum Received { case message(GuardWire.Message), closed, timedOut }

    private func receive(until deadline: UInt64) -> Received {
        var buffer = [UInt8](repeating: 0, count: GuardWire.maximumMessage)
        while true {
            var event = pollfd(fd: socket.rawValue, events: Int16(POLLIN), revents: 0)
            let ready = poll(&event, 1, Monotonic.pollTimeout(until: deadline))
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 { return .timedOut }
            let count = recv(socket.rawValue, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if count <= 0 { return .closed }
            guard let message = GuardWire.decode(Array(buffer[0..<count])) else { return .closed }
            return .message(message)
        }
    }

    private func guardExitDescription() -> String {
        if case .exited(let termination) = process.wait(until: Monotonic.now() + 1_000_000_000) {
            let stderr = process.stderrTail.text.trimmingCharacters(in: " \n")
            return stderr.isEmpty ? "guard \(termination)" : "guard \(termination): \(stderr)"
        }
        return "guard still running"
    }
}

/// Thaws targets from this process (nil entries are skipped), for when the guard cannot: open
/// the mount point, check it is still the same mount, FITHAW. EINVAL means it was not frozen.
func thawDirectly(_ targets: [FreezeTarget?]) -> [IoctlResult] {
    targets.map { target in
        guard let target else { return .notAttempted }
        let start = Monotonic.now()
        let fd = open(target.mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            return IoctlResult(errno: errno, attempted: true, startNanoseconds: start, endNanoseconds: Monotonic.now())
        }
        defer { close(fd) }
        var mountID: UInt64 = 0
        guard ph_mount_id(fd, &mountID) == 0, mountID == UInt64(target.mountID) else {
            return IoctlResult(errno: ESTALE, attempted: true, startNanoseconds: start, endNanoseconds: Monotonic.now())
        }
        let error = ph_fithaw(fd) == 0 ? 0 : errno
        return IoctlResult(errno: error, attempted: true, startNanoseconds: start, endNanoseconds: Monotonic.now())
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var view = Substring(self)
        while let first = view.first, set.contains(first) { view.removeFirst() }
        while let last = view.last, set.contains(last) { view.removeLast() }
        return String(view)
    }
}
