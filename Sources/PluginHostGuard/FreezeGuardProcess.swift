import CPluginHostShim
import Glibc
public import PluginHostWire

/// The freeze guard: a process of its own (the host binary, started as `pluginhost __guard`) that owns the freeze.
/// It opens and verifies every mount point, freezes on command, and thaws on command, at its
/// deadline, or the moment the host exits — whichever comes first. It ignores stray signals and,
/// between the first FIFREEZE and the last FITHAW, neither allocates nor writes anywhere but to
/// its socket.
public enum FreezeGuardProcess {
    /// The guard's end of the socketpair, as the host maps it.
    public static let socketDescriptor: Int32 = 3

    public struct Target: Sendable, Equatable {
        public var mountID: Int
        public var path: String

        public init(mountID: Int, path: String) {
            self.mountID = mountID
            self.path = path
        }
    }

    static let ignoredSignals = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM,
                                 SIGTSTP, SIGTTIN, SIGTTOU]

    /// Runs the guard; returns its exit status (0: everything it froze was thawed).
    /// `afterHostExit` runs once everything is thawed, when the host died while frozen (with
    /// true when every thaw succeeded): it records that in the journal.
    public static func run(targets: [Target], deadlineMilliseconds: UInt64, afterHostExit: (_ complete: Bool) -> Void) -> Int32 {
        for signal in ignoredSignals { _ = ph_signal_ignore(signal) }
        let socket = socketDescriptor
        let host = getppid()
        // The host's exit is seen twice: its end of the socket closes (only the host holds it:
        // every child it starts gets its other descriptors closed), and its pidfd becomes
        // readable. Without pidfd_open (Linux < 5.3) the socket alone says it; poll ignores -1.
        let hostExit = ph_pidfd_open(host)
        guard host != 1, hostExit >= 0 || errno == ENOSYS else { return 1 }  // the host is already gone

        // Everything the frozen phase needs is allocated here, before anything is frozen.
        let count = targets.count
        let freezes = UnsafeMutableBufferPointer<IoctlResult>.allocate(capacity: count)
        let thaws = UnsafeMutableBufferPointer<IoctlResult>.allocate(capacity: count)
        let descriptors = UnsafeMutableBufferPointer<Int32>.allocate(capacity: count)
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: GuardWire.maximumMessage, alignment: 8)
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        let events = UnsafeMutablePointer<pollfd>.allocate(capacity: 2)
        freezes.initialize(repeating: .notAttempted)
        thaws.initialize(repeating: .notAttempted)
        descriptors.initialize(repeating: -1)
        defer {
            for fd in descriptors where fd >= 0 { close(fd) }
            [freezes, thaws].forEach { $0.deallocate() }
            descriptors.deallocate()
            output.deallocate()
            input.deallocate()
            events.deallocate()
        }

        func send(_ kind: GuardWire.Kind, reason: ThawReason? = nil, first: UnsafeMutableBufferPointer<IoctlResult>? = nil,
                  second: UnsafeMutableBufferPointer<IoctlResult>? = nil) {
            let empty = UnsafeBufferPointer<IoctlResult>(start: nil, count: 0)
            let length = GuardWire.encode(kind: kind, reason: reason, first: first.map { UnsafeBufferPointer($0) } ?? empty,
                                          second: second.map { UnsafeBufferPointer($0) } ?? empty, into: output)
            _ = Glibc.send(socket, output.baseAddress, length, Int32(MSG_NOSIGNAL))
        }

        // Open and verify every mount point: the descriptor must be on the mount the host chose.
        for (index, target) in targets.enumerated() {
            let fd = open(target.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            var mountID: UInt64 = 0
            var problem: String?
            if fd < 0 {
                problem = "cannot open \(target.path): \(errorText(ph_errno()))"
            } else if ph_mount_id(fd, &mountID) != 0 {
                problem = "cannot identify the mount of \(target.path): \(errorText(ph_errno()))"
            } else if mountID != UInt64(target.mountID) {
                problem = "\(target.path) is no longer the mount that was planned (mount id \(mountID), expected \(target.mountID))"
            }
            if fd >= 0 { descriptors[index] = fd }
            if let problem {
                var text = problem
                let length = text.withUTF8 { utf8 in
                    GuardWire.encode(kind: .setupFailed, first: UnsafeBufferPointer(start: nil, count: 0),
                                     second: UnsafeBufferPointer(start: nil, count: 0),
                                     text: UnsafeRawBufferPointer(utf8), into: output)
                }
                _ = Glibc.send(socket, output.baseAddress, length, Int32(MSG_NOSIGNAL))
                return 1
            }
        }
        send(.ready)

        // Wait for FREEZE; anything else (THAW, the host gone) ends the guard with nothing done.
        guard receiveCommand(socket, into: input) == .freeze else { return 0 }
        let deadline = GuardClock.now() + deadlineMilliseconds * 1_000_000

        // ---- From here until the last thaw: no allocation, no output but the socket. ----
        var failed = false
        for index in 0..<count {
            let start = GuardClock.now()
            let error = ph_fifreeze(descriptors[index]) == 0 ? 0 : ph_errno()
            freezes[index] = IoctlResult(errno: error, attempted: true, startNanoseconds: start, endNanoseconds: GuardClock.now())
            // EBUSY: frozen already, by someone else. It is frozen, which is what matters, and
            // it is not ours to thaw.
            if error != 0 && error != EBUSY {
                failed = true
                break
            }
        }
        if failed {
            thawOwnFreezes(descriptors, freezes, thaws)
            send(.freezeFailed, first: freezes, second: thaws)
            return 1
        }
        send(.frozen, first: freezes)

        var reason = ThawReason.hostExited
        waiting: while true {
            events[0] = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            events[1] = pollfd(fd: hostExit, events: Int16(POLLIN), revents: 0)
            let ready = poll(events, 2, GuardClock.pollTimeout(until: deadline))
            if ready < 0 && ph_errno() == EINTR { continue }
            if events[0].revents != 0 {
                switch receiveCommand(socket, into: input) {
                case .thaw: reason = .command; break waiting
                case .closed: reason = .hostExited; break waiting
                case .freeze, .unknown: continue  // not meaningful now; stay frozen until told
                }
            }
            if events[1].revents != 0 { reason = .hostExited; break }
            if GuardClock.now() >= deadline { reason = .deadline; break }
        }
        thawOwnFreezes(descriptors, freezes, thaws)
        send(.thawed, reason: reason, first: thaws)
        // ---- Thawed. ----

        let allThawed = (0..<count).allSatisfy { thaws[$0].errno == 0 || thaws[$0].errno == EINVAL }
        if reason == .hostExited { afterHostExit(allThawed) }
        return allThawed ? 0 : 1
    }

    /// Thaws, in reverse order, exactly the filesystems this guard froze.
    private static func thawOwnFreezes(_ descriptors: UnsafeMutableBufferPointer<Int32>,
                                       _ freezes: UnsafeMutableBufferPointer<IoctlResult>,
                                       _ thaws: UnsafeMutableBufferPointer<IoctlResult>) {
        var index = descriptors.count
        while index > 0 {
            index -= 1
            guard freezes[index].attempted, freezes[index].errno == 0 else { continue }
            let start = GuardClock.now()
            let error = ph_fithaw(descriptors[index]) == 0 ? 0 : ph_errno()
            thaws[index] = IoctlResult(errno: error, attempted: true, startNanoseconds: start, endNanoseconds: GuardClock.now())
        }
    }

    private enum Received { case freeze, thaw, closed, unknown }

    private static func receiveCommand(_ socket: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Received {
        while true {
            let count = recv(socket, buffer.baseAddress, buffer.count, 0)
            if count < 0 && ph_errno() == EINTR { continue }
            if count <= 0 { return .closed }
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
            switch GuardRequest.decode(bytes) {
            case .freeze?: return .freeze
            case .thaw?: return .thaw
            case nil: return .unknown
            }
        }
    }
}

/// Set-up messages (before anything is frozen) name the errno.
private func errorText(_ code: Int32) -> String {
    "\(String(cString: strerror(code))) (errno \(code))"
}

/// CLOCK_MONOTONIC, the clock the host's timestamps use too; no allocation.
enum GuardClock {
    static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    /// poll(2) timeout in milliseconds until `deadline` (rounded up).
    static func pollTimeout(until deadline: UInt64) -> Int32 {
        let now = now()
        return deadline <= now ? 0 : Int32(clamping: (deadline - now + 999_999) / 1_000_000)
    }
}
