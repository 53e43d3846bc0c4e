import CPluginHostShim
import Glibc

/// What to run: an executable path (no shell, no PATH search), its arguments, its whole
/// environment and its working directory.
public struct Command: Sendable, Equatable {
    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]
    public var workingDirectory: String?

    public init(
        executable: String, arguments: [String] = [], environment: [String: String] = [:],
        workingDirectory: String? = "/"
    ) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
    }
}

/// How a child ended. In JSON: `{"exitStatus": 0}` or `{"signal": 9, "signalName": "SIGKILL"}`.
public enum Termination: Sendable, Equatable, Codable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)

    private enum CodingKeys: String, CodingKey { case exitStatus, signal, signalName }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if let status = try container.decodeIfPresent(Int32.self, forKey: .exitStatus) {
            self = .exited(status)
        } else {
            self = .signalled(try container.decode(Int32.self, forKey: .signal))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .exited(let status):
            try container.encode(status, forKey: .exitStatus)
        case .signalled(let signal):
            try container.encode(signal, forKey: .signal)
            try container.encode(signalName(signal), forKey: .signalName)
        }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exit status \(code)"
        case .signalled(let signal): "killed by signal \(signal) (\(signalName(signal)))"
        }
    }
}

/// A spawned child in a process group of its own, with stdout and stderr drained into tails.
/// Its exit is noticed through a pidfd, in the same poll(2) as its output and any other
/// descriptor the caller watches (a signal pipe, the freeze guard), so nothing polls on a timer.
public final class ChildProcess {
    public let pid: Int32
    public private(set) var stdoutTail: OutputTail
    public private(set) var stderrTail: OutputTail
    public private(set) var termination: Termination?
    /// The cgroup it was started in (nil: only its process group), killed with it when it is
    /// stopped — whatever left the process group.
    public let cell: ProcessContainment.Cell?

    /// The child's pidfd: readable once it has exited. Nil on a kernel without pidfd_open
    /// (before 5.3), where the shared SIGCHLD pipe wakes the poll and waitid(WNOWAIT) on this
    /// child — ours, not reaped yet, so its pid cannot have been reused — says whether it exited.
    private let exitDescriptor: FileDescriptor?
    private let childExitPipe: Int32
    private var stdout: FileDescriptor?
    private var stderr: FileDescriptor?
    private var readBuffer = [UInt8](repeating: 0, count: 65536)

    /// Starts `command` with stdin from /dev/null (or `stdin`) and stdout/stderr captured, in a
    /// new process group. `extraDescriptors` become descriptors 3, 4, … in the child. Unless
    /// `outlivesHost`, the child is killed if the host dies (a snapshot command must not go on
    /// after the freeze is gone). `outputCapacity` bytes of each stream's end are kept. In a
    /// `cell`, the child and all it starts live in that cell's cgroup.
    public convenience init(
        spawning command: Command, stdin: Int32 = -1, extraDescriptors: [Int32] = [],
        outlivesHost: Bool = false, newSession: Bool = false,
        outputCapacity: Int = OutputTail.defaultCapacity, cell: ProcessContainment.Cell? = nil
    ) throws(SystemError) {
        let argv = [command.executable] + command.arguments
        let envp = command.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let flags =
            (newSession ? PH_SPAWN_NEW_SESSION : PH_SPAWN_NEW_PROCESS_GROUP)
            | (outlivesHost ? 0 : PH_SPAWN_DIE_WITH_PARENT)
        var joinError: Int32 = 0
        let order = cell?.wardenOrder
        try self.init(
            stdin: stdin, extraDescriptors: extraDescriptors, outputCapacity: outputCapacity, cell: cell,
            what: "spawn \(command.executable)"
        ) { map, count, pid in
            withCStrings(argv) { argvPointer in
                withCStrings(envp) { envpPointer in
                    withOptionalPointer(to: order) { orderPointer in
                        ph_spawn_in(
                            command.executable, argvPointer, envpPointer, map, count, command.workingDirectory, flags,
                            cell?.cgroupDescriptor ?? -1, cell?.wardenDescriptor ?? -1, orderPointer, &joinError, &pid)
                    }
                }
            }
        }
        cell?.joined(pid, error: joinError)
    }

    /// Forks without exec and runs `entry` in the child — far cheaper than starting a program,
    /// for children that run code of this binary (plugin workers). Same descriptors, process
    /// group, signals and death-with-the-host as `spawning`. Throws EAGAIN when this process
    /// has more than one thread: forking then is not safe, and the caller should spawn instead.
    public convenience init(
        forking entry: @escaping @convention(c) (UnsafeMutableRawPointer?) -> Int32,
        stdin: Int32 = -1, extraDescriptors: [Int32] = [],
        outputCapacity: Int = OutputTail.defaultCapacity, cell: ProcessContainment.Cell? = nil
    ) throws(SystemError) {
        guard ph_thread_count() == 1 else { throw SystemError("fork (more than one thread)", errno: EAGAIN) }
        var joinError: Int32 = 0
        try self.init(
            stdin: stdin, extraDescriptors: extraDescriptors, outputCapacity: outputCapacity, cell: cell, what: "fork"
        ) { map, count, pid in
            withOptionalPointer(to: cell?.wardenOrder) { orderPointer in
                ph_fork_call_in(
                    map, count, PH_SPAWN_NEW_PROCESS_GROUP | PH_SPAWN_DIE_WITH_PARENT, cell?.cgroupDescriptor ?? -1,
                    cell?.wardenDescriptor ?? -1, orderPointer, entry, nil, &joinError, &pid)
            }
        }
        cell?.joined(pid, error: joinError)
    }

    /// Sets up the output pipes, starts the child with `launch` (which returns 0 or an errno),
    /// and takes its pidfd.
    private init(
        stdin: Int32, extraDescriptors: [Int32], outputCapacity: Int, cell: ProcessContainment.Cell?, what: String,
        launch: (UnsafePointer<Int32>, Int32, inout pid_t) -> Int32
    ) throws(SystemError) {
        self.cell = cell
        stdoutTail = OutputTail(capacity: outputCapacity)
        stderrTail = OutputTail(capacity: outputCapacity)
        let out = try makePipe(nonBlockingRead: true)
        let err = try makePipe(nonBlockingRead: true)
        let map = [stdin, out.write.rawValue, err.write.rawValue] + extraDescriptors
        var pid: pid_t = 0
        let rc = map.withUnsafeBufferPointer { launch($0.baseAddress!, Int32(map.count), &pid) }
        guard rc == 0 else { throw SystemError(what, errno: rc) }
        self.pid = pid
        let pidfd = ph_pidfd_open(pid)
        if pidfd >= 0 {
            exitDescriptor = FileDescriptor(owning: pidfd)
            childExitPipe = -1
        } else if errno == ENOSYS, case let pipe = ph_child_exit_pipe(), pipe >= 0 {
            // Installed before this child could be reaped by anyone: it is not waited for
            // until this object does, so its exit is still to be seen.
            exitDescriptor = nil
            childExitPipe = pipe
        } else {
            let error = SystemError("pidfd_open")
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            throw error
        }
        stdout = out.read
        stderr = err.read
    }

    /// Lets the child run on after this object is gone (it is not killed and not waited for).
    public func detach() {
        detached = true
        stdout = nil
        stderr = nil
    }

    private var detached = false

    /// Both output streams reached end of file (or were given up).
    public var outputClosed: Bool { stdout == nil && stderr == nil }

    deinit {
        if termination == nil && !detached {
            // Never leave a child behind, whatever path the caller took. A process that sleeps
            // uninterruptibly (a writer on a frozen filesystem) dies only later: wait a little,
            // not forever.
            // Not reaped yet, so the pid is still this child's: kill(2) is as safe as the pidfd.
            if let exitDescriptor {
                _ = ph_pidfd_send_signal(exitDescriptor.rawValue, SIGKILL)
            } else {
                kill(pid, SIGKILL)
            }
            cell?.kill(reason: "its owner was dropped")
            if case .exitPending = poll(until: Monotonic.Instant.now + .seconds(5), watching: []) {
                var status: Int32 = 0
                _ = waitpid(pid, &status, 0)
            }
        }
    }

    public enum Event: Sendable, Equatable {
        case exited(Termination)
        case deadlineReached
        /// One of the caller's descriptors became readable (or hung up).
        case readable(Int32)
    }

    /// Waits until the child exits, `deadline` passes, or one of `watching` becomes readable,
    /// draining the child's output meanwhile.
    public func wait(until deadline: Monotonic.Instant? = nil, watching: [Int32] = []) -> Event {
        if let termination { return .exited(termination) }
        switch poll(until: deadline, watching: watching) {
        case .exitPending: return .exited(reap())
        case .deadlineReached: return .deadlineReached
        case .readable(let fd): return .readable(fd)
        case .output: fatalError("poll returns .output only when asked")
        }
    }

    public enum OutputEvent: Sendable, Equatable {
        /// New output is in the tails, or both streams have just closed (`outputClosed`).
        case output
        case exited(Termination)
        case deadlineReached
    }

    /// Like `wait`, but also returns as soon as new output has been read (to look for a line).
    public func waitForOutput(until deadline: Monotonic.Instant?) -> OutputEvent {
        if let termination { return .exited(termination) }
        switch poll(until: deadline, watching: [], returnOnOutput: true) {
        case .exitPending: return .exited(reap())
        case .deadlineReached, .readable: return .deadlineReached
        case .output: return .output
        }
    }

    private enum PollResult { case exitPending, deadlineReached, readable(Int32), output }

    /// Polls the pidfd, the output pipes and `watching`. An exit is reported while the child is
    /// still a zombie, so that its pid (and the process group's id) cannot be reused yet.
    private func poll(until deadline: Monotonic.Instant?, watching: [Int32], returnOnOutput: Bool = false) -> PollResult
    {
        while true {
            // Without a pidfd: a child that exited while another waiter drained the shared
            // SIGCHLD pipe is seen here, before blocking.
            if exitDescriptor == nil && ph_child_exited(pid) == 1 { return .exitPending }
            var fds = [pollfd(fd: exitDescriptor?.rawValue ?? childExitPipe, events: Int16(POLLIN), revents: 0)]
            if let stdout { fds.append(pollfd(fd: stdout.rawValue, events: Int16(POLLIN), revents: 0)) }
            if let stderr { fds.append(pollfd(fd: stderr.rawValue, events: Int16(POLLIN), revents: 0)) }
            let firstWatched = fds.count
            fds += watching.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            var timeout = Monotonic.pollTimeout(until: deadline)
            // Without a pidfd, another thread may drain the SIGCHLD pipe between our check and
            // our poll: never sleep longer than 100 ms unchecked.
            if exitDescriptor == nil && (timeout < 0 || timeout > 100) { timeout = 100 }
            let ready = Glibc.poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 && errno == EINTR { continue }
            let before = stdoutTail.totalBytes + stderrTail.totalBytes
            let wasOpen = !outputClosed
            drainOutput()
            if exitDescriptor == nil {
                if fds[0].revents != 0 { drainChildExitPipe() }
                if ph_child_exited(pid) == 1 { return .exitPending }
            } else if fds[0].revents != 0 {
                return .exitPending
            }
            if returnOnOutput && (stdoutTail.totalBytes + stderrTail.totalBytes > before || (wasOpen && outputClosed)) {
                return .output
            }
            if let watched = fds[firstWatched...].first(where: { $0.revents != 0 }) {
                return .readable(watched.fd)
            }
            if let deadline, Monotonic.Instant.now >= deadline { return .deadlineReached }
        }
    }

    /// The descriptors to poll for this child (its exit and its output), for callers that wait
    /// on several things at once; then call `wait(until: .now)` to take what is ready.
    /// Without a pidfd there is no descriptor of this child's own exit (the SIGCHLD pipe is
    /// shared): a caller then sees the exit as its output pipes closing, or at its deadline.
    public var descriptors: [Int32] {
        (exitDescriptor.map { [$0.rawValue] } ?? []) + [stdout, stderr].compactMap { $0?.rawValue }
    }

    /// Empties the shared SIGCHLD pipe; every waiter then checks its own child with waitid.
    private func drainChildExitPipe() {
        var bytes = [UInt8](repeating: 0, count: 64)
        while Glibc.read(childExitPipe, &bytes, bytes.count) > 0 {}
    }

    /// Sends `signal` to the whole process group (the child and everything it started that
    /// stayed in the group). Safe before the child is reaped: its pid cannot be reused until then.
    public func signalGroup(_ signal: Int32) {
        guard termination == nil else { return }
        _ = kill(-pid, signal)
    }

    /// SIGTERM to the group (and its whole cell), up to `grace` for the child to
    /// exit, then SIGKILL to the group and the cell (so no grandchild survives, not even one that
    /// called setsid), and reap. `reason` is what the report says about each process killed.
    @discardableResult
    public func terminateGroup(grace: Duration = .seconds(2), reason: String = "stopped") -> Termination {
        if let termination { return termination }
        let signalled = cell?.signal(SIGTERM) ?? []
        signalGroup(SIGTERM)
        let graceEnd = Monotonic.Instant.now + grace
        while case .readable = poll(until: graceEnd, watching: []) {}
        // The group may outlive its leader; the leader is not reaped yet, so the id is still ours.
        cell?.kill(reason: reason, alsoNaming: signalled)
        _ = kill(-pid, SIGKILL)
        return reap()
    }

    /// Reads whatever output is available without blocking.
    private func drainOutput() {
        if let stream = stdout, drain(stream, into: &stdoutTail) { stdout = nil }
        if let stream = stderr, drain(stream, into: &stderrTail) { stderr = nil }
    }

    /// Returns true at end of file.
    private func drain(_ stream: FileDescriptor, into tail: inout OutputTail) -> Bool {
        while true {
            guard let chunk = stream.readAvailable(into: &readBuffer) else { return true }
            if chunk.isEmpty { return false }
            tail.append(chunk)
        }
    }

    private func reap() -> Termination {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        // Output written before the exit is already in the pipes; a grandchild that keeps them
        // open must not hold us, so take what is there and close.
        drainOutput()
        stdout = nil
        stderr = nil
        let result: Termination = (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signalled(status & 0x7f)
        termination = result
        return result
    }
}

/// `body` with a pointer to a copy of `value`, or nil without one (for a C pointer argument
/// that may be NULL).
func withOptionalPointer<T, R>(to value: T?, _ body: (UnsafePointer<T>?) -> R) -> R {
    guard var value else { return body(nil) }
    return withUnsafePointer(to: &value) { body($0) }
}

public func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { pointers.forEach { free($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

public func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGHUP: "SIGHUP"
    case SIGINT: "SIGINT"
    case SIGQUIT: "SIGQUIT"
    case SIGABRT: "SIGABRT"
    case SIGKILL: "SIGKILL"
    case SIGSEGV: "SIGSEGV"
    case SIGPIPE: "SIGPIPE"
    case SIGTERM: "SIGTERM"
    case SIGBUS: "SIGBUS"
    case SIGFPE: "SIGFPE"
    case SIGILL: "SIGILL"
    default: "signal \(signal)"
    }
}
