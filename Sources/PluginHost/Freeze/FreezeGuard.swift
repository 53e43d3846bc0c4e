import CPluginHostShim
import Glibc
public import PluginHostSupport
import PluginHostWire

/// The host's handle on its freeze guard process (see `FreezeGuardProcess`).
///
/// Start it early (its start-up is then outside the freeze window): it writes the freeze
/// journal and spawns the guard, which opens and verifies every mount point. Then `freeze()`,
/// take the snapshot while watching `eventDescriptor` (readable if the guard thaws at its
/// deadline or dies) and `hostDeadline`, then `thaw()`.
///
/// The host is the deadline's second enforcer: should the guard be stopped, killed or mute
/// past its deadline (plus `grace`), the host kills it and thaws, from the journal,
/// exactly what it froze. The journal is the record of every ioctl; `record` reads it.
public final class FreezeGuard {
    public static let defaultDeadlineSeconds = 60.0
    public static let deadlineRange = 1.0...600.0
    /// How long the guard may take to open and verify the mount points.
    static let startupTimeout: Duration = .seconds(15)
    /// After the guard's deadline, how long the host waits for it before thawing by itself.
    public static let grace: Duration = .milliseconds(500)
    /// How long the host waits for an answer to THAW before it takes over.
    static let thawAnswerTimeout: Duration = .seconds(2)
    /// How much longer it waits while a FITHAW is under way in a guard that runs: killing the
    /// guard would not stop that FITHAW, and one of the host's would queue behind it. (A loaded
    /// machine's FITHAW of a loop filesystem flushes its image file: it can take seconds.)
    public static let thawUnderWayPatience: Duration = .seconds(30)
    /// How long the host waits for a killed guard to be gone.
    static let exitWait: Duration = .milliseconds(500)

    public let targets: [FreezeTarget]
    public let deadlineSeconds: Double
    public let journalPath: String
    private let journal: JournalMap
    private let origin: Monotonic.Instant
    private let process: ChildProcess
    private let socket: FileDescriptor
    private var ready = false
    /// When FREEZE was sent: the deadline counts from there.
    private var freezeSent: Monotonic.Instant?
    /// The guard has said its last word (thawed, or the freeze failed), or the host took over.
    private var finished = false

    public var pid: Int32 { process.pid }

    /// Readable when the guard has something to say on its own while frozen (it thawed at its
    /// deadline) or has died. Watch it during the snapshot; then call `thaw()`.
    public var eventDescriptor: Int32 { socket.rawValue }

    /// True from a successful `freeze()` until the thaw (by anyone).
    public private(set) var isFrozen = false

    /// When the host enforces the deadline by itself, once FREEZE was sent.
    public var hostDeadline: Monotonic.Instant? {
        freezeSent.map { $0 + .seconds(clamping: deadlineSeconds) + Self.grace }
    }

    /// What the freeze did so far, from the journal.
    public var record: FreezeRecord {
        var current = FreezeRecord(
            journal.record ?? FreezeJournal.record(operationID: "", targets: targets, deadlineSeconds: deadlineSeconds),
            origin: origin)
        current.guardPID = process.pid
        return current
    }

    /// Writes the journal for `targets` and spawns `executable __guard --journal PATH`.
    /// `operationStart` is the origin of the record's times.
    public init(
        executable: String, targets: [FreezeTarget], deadlineSeconds: Double, operationID: String,
        journalPath: String, lock: OperationLock?, operationStart: Monotonic.Instant
    ) throws(HostError) {
        self.targets = targets
        self.deadlineSeconds = deadlineSeconds
        self.journalPath = journalPath
        origin = operationStart
        do {
            try FreezeJournal.write(
                FreezeJournal.record(operationID: operationID, targets: targets, deadlineSeconds: deadlineSeconds),
                at: journalPath)
            journal = try JournalMap(path: journalPath)
        } catch {
            try? FileSystem.remove(journalPath)
            throw HostError(.freezeFailed, "cannot write the freeze journal \(journalPath): \(error)", step: "freeze")
        }

        let guardEnd: FileDescriptor
        do {
            (socket, guardEnd) = try FileDescriptor.messageSocketPair()
        } catch {
            try? FileSystem.remove(journalPath)
            throw HostError(.freezeFailed, "cannot create the guard's socket: \(error)", step: "freeze")
        }
        var extra = [guardEnd.rawValue]
        if let lock { extra.append(lock.descriptor.rawValue) }
        do {
            process = try ChildProcess(
                spawning: Command(
                    executable: executable, arguments: ["__guard", "--journal", journalPath],
                    environment: ["PATH": ScriptRunner.searchPath, "LANG": "C", "SWIFT_BACKTRACE": "enable=no"]
                        .merging(KernelFeature.inheritedEnvironment) { $1 }),
                extraDescriptors: extra, outlivesHost: true)
        } catch {
            try? FileSystem.remove(journalPath)
            throw HostError(.freezeFailed, "cannot start the freeze guard: \(error)", step: "freeze")
        }
        guardEnd.close()
    }

    deinit {
        // Whatever happened, nothing may stay frozen: tell the guard, which thaws and exits.
        if !finished { _ = thaw() }
        // Before FREEZE nothing can be frozen: a guard still there (stopped?) is not needed.
        if freezeSent == nil { process.signalGroup(SIGKILL) }
        socket.close()
        // A guard that still waits for a FIFREEZE that has not returned must live on to undo it:
        // never kill it here.
        if case .exited = process.wait(until: Monotonic.Instant.now + .seconds(1)) {} else { process.detach() }
    }

    /// Waits for the guard to report every mount point open and verified (it does that while
    /// the host runs the pre-script).
    private enum Readiness { case ready, failed(HostError), interrupted }

    private func awaitReady(interrupt: Int32? = nil) -> Readiness {
        if ready { return .ready }
        switch receive(until: Monotonic.Instant.now + Self.startupTimeout, interrupt: interrupt) {
        case .message(.ready):
            ready = true
            return .ready
        case .message(.setupFailed(let text)):
            finished = true
            return .failed(HostError(.freezeFailed, text, step: "freeze"))
        case .interrupted:
            return .interrupted
        default:
            finished = true
            process.terminateGroup(grace: .zero)
            return .failed(
                HostError(.freezeFailed, "the freeze guard did not start (\(guardExitDescription()))", step: "freeze"))
        }
    }

    public enum FlushResult: Sendable, Equatable {
        case flushed
        /// A syncfs did not return by the limit: a filesystem its data lies on is frozen (by
        /// someone else), and a FIFREEZE would not return either.
        case failed(HostError)
        case interrupted
    }

    /// Has the guard syncfs every target, concurrently, while writes still flow (a syncfs that
    /// never returns holds a guard thread, never the host). Waits `seconds` at most for the
    /// flush, once the guard is ready.
    public func flush(within seconds: Double, interrupt: Int32? = nil) -> FlushResult {
        switch awaitReady(interrupt: interrupt) {
        case .ready: break
        case .failed(let error): return .failed(error)
        case .interrupted: return .interrupted
        }
        let limit = Monotonic.Instant.now + .seconds(clamping: seconds)
        guard sendCommand(.flush) else {
            finished = true
            return .failed(
                HostError(.freezeFailed, "the freeze guard is gone (\(guardExitDescription()))", step: "flush"))
        }
        while true {
            switch receive(until: limit, interrupt: interrupt) {
            case .message(.flushed): return .flushed
            case .message: continue
            case .interrupted: return .interrupted
            case .closed:
                finished = true
                return .failed(
                    HostError(
                        .freezeFailed, "the freeze guard died before the freeze (\(guardExitDescription()))",
                        step: "flush"))
            case .timedOut:
                // Nothing is frozen: a guard that did not answer (stopped, or a syncfs stuck in
                // it) is let go of for good.
                finished = true
                let stopped = guardState == UInt8(ascii: "T")
                process.signalGroup(SIGKILL)
                if stopped {
                    return .failed(
                        HostError(
                            .freezeFailed,
                            "the freeze guard was stopped and did not answer; it was killed. Nothing was frozen",
                            step: "flush"))
                }
                let names = targets.map(\.mountPoint).joined(separator: ", ")
                return .failed(
                    HostError(
                        .freezeFailed,
                        """
                        syncfs of \(names) did not finish within \(formatSeconds(deadlineSeconds)) s: is a filesystem \
                        that holds their storage frozen? Nothing was frozen
                        """,
                        step: "flush"))
            }
        }
    }

    public enum FreezeResult: Sendable, Equatable {
        case frozen
        /// Nothing is frozen by us any more (unless `record.mayStillBeFrozen`): the guard thawed
        /// what it had frozen, or the host did.
        case failed(HostError)
        /// A signal arrived during the freeze: what was frozen is thawed.
        case interrupted
    }

    /// Freezes every target, wave by wave. Watches `interrupt` (a signal's self-pipe): a
    /// signal abandons the freeze at once.
    public func freeze(interrupt: Int32? = nil) -> FreezeResult {
        switch awaitReady(interrupt: interrupt) {
        case .ready: break
        case .failed(let error): return .failed(error)
        case .interrupted: return .interrupted
        }
        guard sendCommand(.freeze) else {
            finished = true
            return .failed(
                HostError(.freezeFailed, "the freeze guard is gone (\(guardExitDescription()))", step: "freeze"))
        }
        freezeSent = Monotonic.Instant.now
        let limit = hostDeadline!
        while true {
            switch receive(until: limit, interrupt: interrupt) {
            case .message(.frozen):
                isFrozen = true
                return .frozen
            case .message(.freezeFailed):
                finished = true
                return .failed(record.freezeError() ?? HostError(.freezeFailed, "the freeze failed", step: "freeze"))
            case .message(.thawed(let reason)):
                // Abandoned before every wave was frozen.
                finished = true
                return .failed(abandonedFreezeError(reason))
            case .message:
                continue
            case .interrupted:
                if !(sendCommand(.thaw) && awaitLastWord(until: Monotonic.Instant.now + Self.thawAnswerTimeout) != nil)
                {
                    takeOver()
                }
                finished = true
                return .interrupted
            case .closed:
                takeOver()
                return .failed(
                    HostError(
                        .freezeFailed,
                        "the freeze guard died during the freeze (\(guardExitDescription())); the host thawed what it had frozen",
                        step: "freeze"))
            case .timedOut:
                takeOver()
                return .failed(
                    HostError(
                        .freezeDeadlineExpired,
                        """
                        the freeze did not finish within \(formatSeconds(deadlineSeconds)) s and the guard did not \
                        thaw; the host killed it and thawed what it had frozen
                        """,
                        step: "freeze"))
            }
        }
    }

    private func abandonedFreezeError(_ reason: ThawReason) -> HostError {
        let stuck = record.mounts.filter { $0.freeze == .stuck }.map(\.mountPoint)
        let why =
            stuck.isEmpty
            ? ""
            : """
            ; FIFREEZE of \(stuck.joined(separator: ", ")) never returned (is its storage on a frozen filesystem?), it \
            is thawed as soon as it does
            """
        switch reason {
        case .deadline:
            return HostError(
                .freezeDeadlineExpired,
                "the freeze did not finish within \(formatSeconds(deadlineSeconds)) s; the guard thawed what it had frozen\(why)",
                step: "freeze")
        default:
            return HostError(
                .freezeFailed, "the freeze was abandoned (\(reason.name)); the guard thawed what it had frozen\(why)",
                step: "freeze")
        }
    }

    /// Thaws (if still frozen) and returns nil, or the error when a filesystem could not be thawed.
    public func thaw() -> HostError? {
        if !finished {
            finished = true
            isFrozen = false
            // Before FREEZE the guard just exits; after, it answers at once unless it is stopped
            // or dead — then the host thaws by itself, by its own deadline at the latest.
            let now = Monotonic.Instant.now
            let limit = min(now + Self.thawAnswerTimeout, max(hostDeadline ?? .max, now + .milliseconds(200)))
            if freezeSent != nil && !(sendCommand(.thaw) && awaitLastWord(until: limit) != nil) { takeOver() }
        }
        return record.thawError()
    }

    /// After `eventDescriptor` became readable while frozen: what happened on the guard's side.
    /// Returns the cause once the filesystems are thawed (by the guard at its deadline, or by
    /// the host because the guard died); nil if the freeze still holds.
    public func collectUnpromptedThaw() -> FreezeRecord.ThawCause? {
        guard isFrozen else { return record.thawCause ?? .guardLost }
        switch receive(until: Monotonic.Instant.now) {
        case .message(.thawed(let reason)):
            isFrozen = false
            finished = true
            return FreezeRecord.ThawCause(reason)
        case .timedOut, .message, .interrupted:
            return nil
        case .closed:
            takeOver()
            return .guardLost
        }
    }

    /// The host's deadline passed while frozen and the guard has not thawed: kill it and thaw
    /// (unless its thaw is under way: then wait for it). Returns the cause, as
    /// `collectUnpromptedThaw` does.
    public func enforceDeadline() -> FreezeRecord.ThawCause {
        if let cause = collectUnpromptedThaw() { return cause }
        if case .thawed(let reason)? = awaitLastWord(until: Monotonic.Instant.now) {
            isFrozen = false
            finished = true
            return FreezeRecord.ThawCause(reason)
        }
        takeOver()
        return .guardLost
    }

    /// The instant the first filesystem of ours was thawed, if any was: a snapshot that ended
    /// after it was not taken inside the freeze.
    public var firstThawStart: Monotonic.Instant? {
        let mapping = journal.mapping
        var first: Monotonic.Instant?
        for index in 0..<mapping.mountCount {
            let start = mapping.time(.thawStart, index)
            if start != 0 { first = min(first ?? .max, Monotonic.Instant(nanoseconds: start)) }
        }
        return first
    }

    /// The guard is gone, stopped or mute while we may be frozen: kill it, then thaw here, from
    /// the journal, exactly what it froze — in reverse waves. A FIFREEZE the killed guard may
    /// still be inside is thawed only once the guard has really exited (until then the kernel
    /// may still complete it, and a FITHAW now would wait behind it).
    private func takeOver() {
        finished = true
        isFrozen = false
        process.signalGroup(SIGKILL)
        let exited: Bool
        if case .exited = process.wait(until: Monotonic.Instant.now + Self.exitWait) {
            exited = true
        } else {
            exited = false
        }
        let mapping = journal.mapping
        thawDirectly(mapping, states: exited ? [.freezing, .frozen, .thawing, .thawFailed] : [.frozen, .thawFailed])
        if !exited, case .exited = process.wait(until: Monotonic.Instant.now + Self.exitWait) {
            thawDirectly(mapping, states: [.freezing, .thawing])
        }
        mapping.recordThaw(.guardLost, atNanoseconds: epochNanoseconds())
    }

    private func thawDirectly(_ mapping: FreezeJournalMapping, states: Set<MountFreezeState>) {
        let waves = (0..<mapping.mountCount).map { mapping.wave($0) }
        for wave in Set(waves).sorted(by: >) {
            for index in 0..<mapping.mountCount where waves[index] == wave {
                guard let state = mapping.state(index), states.contains(state) else { continue }
                DirectThaw.run(targets[index], recordingIn: mapping, at: index)
            }
        }
    }

    // MARK: - Socket

    private func sendCommand(_ command: GuardRequest) -> Bool {
        (try? socket.sendMessage(command.encoded)) != nil
    }

    private enum Received { case message(GuardMessage), closed, timedOut, interrupted }

    /// Reads messages until the guard's last word (thawed, or the freeze failed), which it
    /// sends once every FITHAW it issued has returned; nil if it closed the socket or said
    /// nothing by `deadline` — or, while a FITHAW is under way in it and it runs, by
    /// `thawUnderWayPatience` later.
    private func awaitLastWord(until deadline: Monotonic.Instant) -> GuardMessage? {
        let patience = deadline + Self.thawUnderWayPatience
        while true {
            let now = Monotonic.Instant.now
            let until: Monotonic.Instant
            if now < deadline {
                until = deadline
            } else if now < patience && thawUnderWay {
                until = min(patience, now + Self.livenessTick)
            } else {
                return nil
            }
            switch receive(until: until) {
            case .message(let message):
                switch message {
                case .thawed, .freezeFailed: return message
                default: continue
                }
            case .timedOut: continue
            case .closed, .interrupted: return nil
            }
        }
    }

    /// A FITHAW of ours is under way (the journal says `thawing`) in a guard whose main thread
    /// runs (neither stopped nor gone).
    private var thawUnderWay: Bool {
        let mapping = journal.mapping
        guard (0..<mapping.mountCount).contains(where: { mapping.state($0) == .thawing }), let state = guardState else {
            return false
        }
        return !"TtZX".utf8.contains(state)
    }

    /// How often a wait on the guard checks that its main thread is alive: a killed guard whose
    /// other thread is stuck in FIFREEZE keeps its socket open until that returns.
    static let livenessTick: Duration = .milliseconds(200)

    private func receive(until deadline: Monotonic.Instant, interrupt: Int32? = nil) -> Received {
        var buffer = [UInt8](repeating: 0, count: GuardMessage.maximumSize)
        while true {
            var events = [PollEntry(socket.rawValue)]
            if let interrupt { events.append(PollEntry(interrupt)) }
            let now = Monotonic.Instant.now
            let timeout = Monotonic.pollTimeout(until: min(deadline, now + Self.livenessTick), now: now)
            let ready: Int
            do {
                ready = try Poll.wait(&events, timeoutMilliseconds: timeout)
            } catch let error where error.errno == EINTR {
                continue
            } catch {
                ready = -1  // as before: nothing reported, wait again
            }
            if ready == 0 {
                if Monotonic.Instant.now >= deadline { return .timedOut }
                if !mainThreadAlive { return .closed }
                continue
            }
            if events[0].isReady {
                switch try? socket.receiveMessage(into: &buffer, wait: false) {
                case .wouldBlock?: continue
                case .message(let length)?:
                    // Something that is not a message of ours: the guard is not to be trusted.
                    guard let message = GuardMessage.decode(Array(buffer.prefix(length))) else { return .closed }
                    return .message(message)
                case .endOfStream?, nil: return .closed
                }
            }
            if events.count > 1 && events[1].isReady { return .interrupted }
        }
    }

    /// False once the guard's main thread has exited (its thread-group leader is a zombie
    /// while another thread still sleeps in the kernel) or the process is gone.
    private var mainThreadAlive: Bool {
        guard let state = guardState else { return false }
        return state != UInt8(ascii: "Z") && state != UInt8(ascii: "X")
    }

    /// The guard's state letter in /proc (R, S, D, T, Z, …), nil once it is gone.
    private var guardState: UInt8? {
        guard let file = try? FileDescriptor.open("/proc/\(process.pid)/stat", O_RDONLY),
            let bytes = try? file.readAll(limit: 4096),
            let close = bytes.lastIndex(of: UInt8(ascii: ")")), close + 2 < bytes.count
        else { return nil }
        return bytes[close + 2]
    }

    private func guardExitDescription() -> String {
        if case .exited(let termination) = process.wait(until: Monotonic.Instant.now + .seconds(1)) {
            let stderr = process.stderrTail.text.trimmingCharacters(in: " \n")
            return stderr.isEmpty ? "guard \(termination)" : "guard \(termination): \(stderr)"
        }
        return "guard still running"
    }
}

/// A FITHAW from a process other than the guard (the host taking over, or recovery): open the
/// mount point, check it is still the same mount, thaw.
enum DirectThaw {
    enum Outcome: Sendable, Equatable {
        case thawed
        /// EINVAL: it was not frozen.
        case wasNotFrozen
        /// The path is gone or another filesystem is mounted there now: nothing of ours to thaw.
        case notMounted(String)
        /// The mount could not be checked or FITHAW failed: it may still be frozen.
        case failed(SystemError)
    }

    static func thaw(_ target: FreezeTarget) -> (outcome: Outcome, start: Monotonic.Instant, end: Monotonic.Instant) {
        let start = Monotonic.Instant.now
        let directory: FileDescriptor
        do {
            directory = try FileDescriptor.open(target.mountPoint, O_RDONLY | O_DIRECTORY)
        } catch {
            let outcome: Outcome =
                error.errno == ENOENT || error.errno == ENOTDIR ? .notMounted("\(error)") : .failed(error)
            return (outcome, start, Monotonic.Instant.now)
        }
        let fd = directory.rawValue
        var mountID: UInt64 = 0
        guard ph_mount_id(fd, &mountID) == 0 else {
            // Not knowing which mount this is is not "no longer mounted": it may still be ours.
            return (.failed(SystemError("statx \(target.mountPoint)")), start, Monotonic.Instant.now)
        }
        guard mountID == UInt64(target.mountID) else {
            return (
                .notMounted(
                    "another filesystem is mounted at \(target.mountPoint) now (mount id \(mountID), was \(target.mountID))"
                ),
                start, Monotonic.Instant.now
            )
        }
        let result = ph_fithaw(fd) == 0 ? 0 : errno
        let end = Monotonic.Instant.now
        switch result {
        case 0: return (.thawed, start, end)
        case EINVAL: return (.wasNotFrozen, start, end)
        default: return (.failed(SystemError("FITHAW", errno: result)), start, end)
        }
    }

    /// Thaws and records the result in the journal entry `index`.
    @discardableResult
    static func run(_ target: FreezeTarget, recordingIn mapping: FreezeJournalMapping, at index: Int) -> Outcome {
        let (outcome, start, end) = thaw(target)
        mapping.setTime(.thawStart, start.nanoseconds, index)
        mapping.setTime(.thawEnd, end.nanoseconds, index)
        switch outcome {
        case .thawed:
            mapping.setErrno(0, index)
            mapping.setState(.thawed, index)
        case .wasNotFrozen:
            mapping.setErrno(EINVAL, index)
            mapping.setState(.wasNotFrozen, index)
        case .notMounted:
            mapping.setErrno(ENOENT, index)
            mapping.setState(.thawFailed, index)
        case .failed(let error):
            mapping.setErrno(error.errno, index)
            mapping.setState(.thawFailed, index)
        }
        return outcome
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
