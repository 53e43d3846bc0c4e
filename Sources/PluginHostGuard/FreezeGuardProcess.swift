import CPluginHostShim
import Glibc
import PluginHostWire

/// The freeze guard: a process of its own (the host binary, started as `pluginhost __guard`)
/// that owns the freeze (README, "How an operation runs").
///
/// - One worker thread per filesystem, created (stack and all) before anything is frozen, does
///   that filesystem's FIFREEZE and FITHAW and writes each state change into the shared,
///   memory-mapped freeze journal (`FreezeJournalMapping`) as it happens.
/// - The main thread never issues an ioctl: it only starts waves, watches, and enforces. So the
///   deadline holds even when a FIFREEZE never returns (its filesystem's storage lies on a
///   frozen filesystem): at the deadline it thaws every filesystem whose freeze completed, which
///   also releases a FIFREEZE stuck behind one of them; that worker then thaws its own
///   filesystem the moment its FIFREEZE returns.
/// - Waves: every filesystem of wave n is frozen, concurrently, before wave n + 1 starts (a
///   filesystem is frozen before the ones its storage lies on); thaw runs in reverse waves.
/// - It thaws on command, at its deadline, or the moment the host exits; it ignores stray
///   signals; it asks not to be chosen by the OOM killer and locks its memory.
/// - From the first FIFREEZE to the last FITHAW it neither allocates nor writes anywhere but
///   its socket and the journal mapping. What can still stop it: SIGKILL or SIGSTOP by root (the
///   host then enforces the deadline itself and thaws from the journal), or a kernel that never
///   returns from FIFREEZE (the journal then says `freezing`, which `recover` thaws).
public enum FreezeGuardProcess {
    /// The guard's end of the socketpair, as the host maps it.
    public static let socketDescriptor: Int32 = 3

    static let ignoredSignals = [
        SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM,
        SIGTSTP, SIGTTIN, SIGTTOU,
    ]

    /// Each worker thread's stack: it runs a few calls deep, and all of it is locked in memory.
    static let workerStackSize = 256 * 1024

    /// How long the main thread waits for one wave's thaws before it starts the next wave's
    /// anyway (a thaw that takes longer goes on; its worker records it when it returns).
    static let thawWaitNanoseconds: UInt64 = 1_500_000_000

    /// Runs the guard on the journal at `journalPath`; returns its exit status (0: everything it
    /// froze was thawed).
    public static func run(journalPath: String) -> Int32 {
        for signal in ignoredSignals { _ = ph_signal_ignore(signal) }
        protectFromOOMKiller()
        let socket = socketDescriptor
        let host = getppid()
        // The host's exit is seen twice: its end of the socket closes (only the host holds it:
        // every child it starts gets its other descriptors closed), and its pidfd becomes
        // readable. Without pidfd_open (Linux < 5.3) the socket alone says it; poll ignores -1.
        let hostExit = ph_pidfd_open(host)
        guard host != 1, hostExit >= 0 || errno == ENOSYS else { return 1 }  // the host is already gone

        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: GuardMessage.maximumSize, alignment: 8)
        func send(_ message: GuardMessage) {
            let length = message.encode(into: output)
            _ = Glibc.send(socket, output.baseAddress, length, Int32(MSG_NOSIGNAL))
        }

        // ---- Set-up: everything the frozen phase needs is allocated here. ----
        let setup: Setup
        switch Setup.make(journalPath: journalPath) {
        case .success(let made): setup = made
        case .failure(let problem):
            send(.setupFailed(problem.text))
            return 1
        }
        setup.journal.setGuardPID(getpid())
        if mlockall(MCL_CURRENT | MCL_FUTURE) != 0 {
            // Without CAP_IPC_LOCK or under a tight RLIMIT_MEMLOCK: carry on unlocked.
        }
        let loop = Loop(setup: setup, socket: socket, hostExit: hostExit)
        send(.ready)

        // Flush on request; wait for FREEZE. THAW or the host's exit ends the guard with nothing
        // frozen (a syncfs that never returns keeps it until it does, harmlessly).
        guard loop.awaitFreezeCommand(send: send) else { return 0 }
        let deadline = GuardClock.now() + setup.deadlineMilliseconds * 1_000_000

        // ---- From here until the last thaw: no allocation, no output but the socket. ----
        switch loop.freezeWaves(deadline: deadline) {
        case .frozen:
            send(.frozen)
            let reason = loop.awaitThawTrigger(deadline: deadline)
            loop.thawAll(cause: reason)
            send(.thawed(reason))
        case .failed:
            loop.thawAll(cause: nil)
            send(.freezeFailed)
        case .stopped(let reason):
            loop.thawAll(cause: reason)
            send(.thawed(reason))
        }
        // A FIFREEZE still stuck is undone by its worker once it returns: wait for that.
        loop.awaitStragglers()
        // ---- Thawed. ----
        return setup.journal.mayBeFrozenByUs ? 1 : 0
    }

    private static func protectFromOOMKiller() {
        let fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = "-1000".withCString { write(fd, $0, 5) }
        close(fd)
    }
}

/// What one worker thread owns. Plain values only (no references), so that copying it in the
/// thread retains nothing.
struct Worker {
    var index: Int
    /// The mount point, opened and verified during set-up.
    var descriptor: Int32
    var commandRead: Int32
    var commandWrite: Int32
    /// Shared by every worker: one byte per state change wakes the main thread.
    var doneWrite: Int32
    var journal: FreezeJournalMapping
    /// Shared by every worker: nonzero once the main thread has begun to thaw. A FIFREEZE that
    /// returns after that is undone at once by its own worker.
    var thawRequested: UnsafeMutablePointer<Int32>
    /// This worker's flag: nonzero once its latest syncfs has returned.
    var flushed: UnsafeMutablePointer<Int32>

    static let flushCommand = UInt8(ascii: "S")
    static let freezeCommand = UInt8(ascii: "F")
    static let thawCommand = UInt8(ascii: "T")

    /// The thread's body: wait for a command byte, do it, record it, wake the main thread.
    static func loop(_ pointer: UnsafeMutableRawPointer) {
        let worker = pointer.assumingMemoryBound(to: Worker.self).pointee
        var byte: UInt8 = 0
        while true {
            let count = read(worker.commandRead, &byte, 1)
            if count < 0 && ph_errno() == EINTR { continue }
            if count <= 0 { return }
            switch byte {
            case flushCommand: worker.flush()
            case freezeCommand: worker.freeze()
            case thawCommand: worker.thaw()
            default: return
            }
        }
    }

    /// syncfs before the freeze, while writes still flow, so that FIFREEZE finds little to do.
    /// Its errors do not matter here: FIFREEZE reports what is wrong.
    func flush() {
        _ = ph_syncfs(descriptor)
        ph_atomic_store_i32(flushed, 1)
        notify()
    }

    func freeze() {
        guard journal.exchangeState(index, from: .pending, to: .freezing) else { return }
        if ph_atomic_load_i32(thawRequested) != 0 {  // the freeze was abandoned before it began
            journal.setState(.pending, index)
            notify()
            return
        }
        journal.setTime(.freezeStart, GuardClock.now(), index)
        let error = ph_fifreeze(descriptor) == 0 ? 0 : ph_errno()
        journal.setTime(.freezeEnd, GuardClock.now(), index)
        journal.setErrno(error, index)
        // EBUSY: frozen already, by someone else: frozen is what matters, and it is not ours.
        journal.setState(error == 0 ? .frozen : error == EBUSY ? .alreadyFrozen : .freezeFailed, index)
        notify()
        if error == 0 && ph_atomic_load_i32(thawRequested) != 0 { thaw() }
    }

    func thaw() {
        guard journal.exchangeState(index, from: .frozen, to: .thawing) else { return }
        journal.setTime(.thawStart, GuardClock.now(), index)
        let error = ph_fithaw(descriptor) == 0 ? 0 : ph_errno()
        journal.setTime(.thawEnd, GuardClock.now(), index)
        journal.setErrno(error, index)
        journal.setState(error == 0 ? .thawed : error == EINVAL ? .wasNotFrozen : .thawFailed, index)
        notify()
    }

    private func notify() {
        var byte: UInt8 = 1
        _ = write(doneWrite, &byte, 1)  // a full pipe already says "something changed"
    }
}

/// Set-up: the journal mapped, every mount point opened and verified, the worker threads
/// started and waiting.
struct Setup {
    var journal: FreezeJournalMapping
    var deadlineMilliseconds: UInt64
    var waveCount: Int
    var workers: UnsafeMutableBufferPointer<Worker>
    var doneRead: Int32

    struct Problem: Error {
        var text: String
    }

    static func make(journalPath: String) -> Result<Setup, Problem> {
        let file = open(journalPath, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        guard file >= 0 else {
            return .failure(Problem(text: "cannot open the freeze journal \(journalPath): \(errorText(ph_errno()))"))
        }
        defer { close(file) }  // the mapping stays
        var info = stat()
        guard fstat(file, &info) == 0, info.st_size > 0, info.st_size < 1 << 24 else {
            return .failure(Problem(text: "the freeze journal \(journalPath) has an unusable size"))
        }
        let size = Int(info.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        guard bytes.withUnsafeMutableBytes({ pread(file, $0.baseAddress, size, 0) }) == size else {
            return .failure(Problem(text: "cannot read the freeze journal \(journalPath): \(errorText(ph_errno()))"))
        }
        let record: FreezeJournalRecord
        do {
            record = try FreezeJournalRecord.decode(bytes)
        } catch {
            return .failure(Problem(text: "\(journalPath): \(error)"))
        }
        guard !record.mounts.isEmpty, record.mounts.allSatisfy({ $0.state == .pending }) else {
            return .failure(Problem(text: "\(journalPath) holds no mount to freeze, or one already attempted"))
        }
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, file, 0), base != MAP_FAILED else {
            return .failure(Problem(text: "cannot map the freeze journal: \(errorText(ph_errno()))"))
        }
        let journal = FreezeJournalMapping(base: base, mountCount: record.mounts.count)

        // Open and verify every mount point: the descriptor must be on the mount the host chose.
        var descriptors: [Int32] = []
        for (index, mount) in record.mounts.enumerated() {
            let fd = open(mount.mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            var mountID: UInt64 = 0
            var problem: String?
            if fd < 0 {
                problem = "cannot open \(mount.mountPoint): \(errorText(ph_errno()))"
            } else if ph_mount_id(fd, &mountID) != 0 {
                problem = "cannot identify the mount of \(mount.mountPoint): \(errorText(ph_errno()))"
            } else if mountID != journal.mountID(index) {
                problem =
                    "\(mount.mountPoint) is no longer the mount that was planned (mount id \(mountID), expected \(mount.mountID))"
            }
            if let problem {
                if fd >= 0 { close(fd) }
                for fd in descriptors { close(fd) }
                return .failure(Problem(text: problem))
            }
            descriptors.append(fd)
        }

        var done: [Int32] = [-1, -1]
        guard ph_pipe_cloexec(&done) == 0 else { return .failure(Problem(text: "pipe: \(errorText(ph_errno()))")) }
        for fd in done { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        let thawRequested = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        thawRequested.initialize(to: 0)
        let workers = UnsafeMutableBufferPointer<Worker>.allocate(capacity: descriptors.count)
        let flushed = UnsafeMutablePointer<Int32>.allocate(capacity: descriptors.count)
        flushed.initialize(repeating: 0, count: descriptors.count)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setstacksize(&attributes, FreezeGuardProcess.workerStackSize)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        defer { pthread_attr_destroy(&attributes) }
        for (index, fd) in descriptors.enumerated() {
            var command: [Int32] = [-1, -1]
            guard ph_pipe_cloexec(&command) == 0 else {
                return .failure(Problem(text: "pipe: \(errorText(ph_errno()))"))
            }
            (workers.baseAddress! + index).initialize(
                to: Worker(
                    index: index, descriptor: fd, commandRead: command[0], commandWrite: command[1], doneWrite: done[1],
                    journal: journal, thawRequested: thawRequested, flushed: flushed + index))
            var thread = pthread_t()
            let started = pthread_create(
                &thread, &attributes,
                { pointer in
                    Worker.loop(pointer!)
                    return nil
                }, UnsafeMutableRawPointer(workers.baseAddress! + index))
            guard started == 0 else {
                return .failure(Problem(text: "cannot start a freeze thread: \(errorText(started))"))
            }
        }
        return .success(
            Setup(
                journal: journal, deadlineMilliseconds: record.deadlineMilliseconds, waveCount: record.waveCount,
                workers: workers, doneRead: done[0]))
    }
}

/// The main thread's side once set up: start waves, watch, enforce. It never issues an ioctl
/// and, after `awaitFreezeCommand`, never allocates.
struct Loop {
    let setup: Setup
    let socket: Int32
    let hostExit: Int32
    let input: UnsafeMutableRawBufferPointer
    let events: UnsafeMutablePointer<pollfd>

    init(setup: Setup, socket: Int32, hostExit: Int32) {
        self.setup = setup
        self.socket = socket
        self.hostExit = hostExit
        input = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        events = UnsafeMutablePointer<pollfd>.allocate(capacity: 3)
    }

    var journal: FreezeJournalMapping { setup.journal }
    var count: Int { setup.workers.count }

    enum Event { case progress, flush, freeze, thaw, hostGone, deadline }

    /// Waits for a worker's state change, a command, the host's exit, or `deadline`.
    /// `watchHost` false: only the workers (after the host is gone, its descriptors stay readable).
    func next(until deadline: UInt64?, watchHost: Bool = true) -> Event {
        events[0] = pollfd(fd: setup.doneRead, events: Int16(POLLIN), revents: 0)
        events[1] = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        events[2] = pollfd(fd: hostExit, events: Int16(POLLIN), revents: 0)
        let timeout = deadline.map { GuardClock.pollTimeout(until: $0) } ?? -1
        let ready = poll(events, watchHost ? 3 : 1, timeout)
        if ready < 0 { return .progress }  // EINTR: the caller looks again
        if events[0].revents != 0 {
            var sink: UInt64 = 0
            while read(setup.doneRead, &sink, 8) > 0 {}
            return .progress
        }
        if watchHost && events[1].revents != 0 {
            switch receiveCommand() {
            case .flush: return .flush
            case .freeze: return .freeze
            case .thaw: return .thaw
            case .closed: return .hostGone
            case .unknown: return .progress
            }
        }
        if watchHost && events[2].revents != 0 { return .hostGone }
        if let deadline, GuardClock.now() >= deadline { return .deadline }
        return .progress
    }

    /// Before the freeze: flushes when asked (every target concurrently, answering `flushed`
    /// once all have returned); true once FREEZE arrives; false if THAW comes or the host exits.
    func awaitFreezeCommand(send: (GuardMessage) -> Void) -> Bool {
        var flushing = false
        while true {
            if flushing && (0..<count).allSatisfy({ ph_atomic_load_i32(setup.workers[$0].flushed) != 0 }) {
                flushing = false
                send(.flushed)
            }
            switch next(until: nil) {
            case .progress: continue
            case .flush:
                for index in 0..<count {
                    ph_atomic_store_i32(setup.workers[index].flushed, 0)
                    post(Worker.flushCommand, to: index)
                }
                flushing = true
            case .freeze: return true
            case .thaw, .hostGone: return false
            case .deadline: continue
            }
        }
    }

    enum FreezeOutcome { case frozen, failed, stopped(ThawReason) }

    /// Freezes wave after wave, each wave's filesystems concurrently. Stops at the first
    /// failure, at THAW, at the host's exit or at the deadline.
    func freezeWaves(deadline: UInt64) -> FreezeOutcome {
        for wave in 0..<setup.waveCount {
            for index in 0..<count where journal.wave(index) == wave { post(Worker.freezeCommand, to: index) }
            while true {
                var inFlight = false
                for index in 0..<count where journal.wave(index) == wave {
                    switch journal.state(index) {
                    case .pending?, .freezing?: inFlight = true
                    case .freezeFailed?: return .failed
                    default: break
                    }
                }
                if !inFlight { break }
                switch next(until: deadline) {
                case .progress, .flush, .freeze: continue  // not meaningful now
                case .thaw: return .stopped(.command)
                case .hostGone: return .stopped(.hostExited)
                case .deadline: return .stopped(.deadline)
                }
            }
        }
        return .frozen
    }

    /// Frozen: waits for THAW, the host's exit or the deadline.
    func awaitThawTrigger(deadline: UInt64) -> ThawReason {
        while true {
            switch next(until: deadline) {
            case .progress, .flush, .freeze: continue  // not meaningful now
            case .thaw: return .command
            case .hostGone: return .hostExited
            case .deadline: return .deadline
            }
        }
    }

    /// Thaws, in reverse waves, every filesystem whose FIFREEZE completed; a FIFREEZE still in
    /// flight is undone by its worker when it returns. A wave whose thaws take longer than
    /// `thawWaitNanoseconds` does not hold back the next; but it returns only once every FITHAW
    /// it issued has returned and its worker has stored the outcome, so that `thawed`, sent
    /// next, means the journal says how each thaw ended (a loaded machine's FITHAW of a loop
    /// filesystem flushes its image file and can take seconds).
    func thawAll(cause: ThawReason?) {
        ph_atomic_store_i32(setup.workers[0].thawRequested, 1)
        let limit = GuardClock.now() + FreezeGuardProcess.thawWaitNanoseconds
        var wave = setup.waveCount
        while wave > 0 {
            wave -= 1
            for index in 0..<count where journal.wave(index) == wave && journal.state(index) == .frozen {
                post(Worker.thawCommand, to: index)
            }
            while GuardClock.now() < limit {
                var busy = false
                for index in 0..<count where journal.wave(index) == wave {
                    if journal.state(index) == .frozen || journal.state(index) == .thawing { busy = true }
                }
                if !busy { break }
                _ = next(until: limit, watchHost: false)
            }
        }
        awaitThaws()
        if let cause { journal.recordThaw(cause, atNanoseconds: GuardClock.realtime()) }
    }

    /// Waits, without limit, until no FITHAW of ours is in flight or still to start: no mount
    /// `frozen` (its thaw posted, or its late FIFREEZE just returned: its worker thaws it) or
    /// `thawing`. A FIFREEZE still in flight is not waited for: it may never return.
    func awaitThaws() {
        while (0..<count).contains(where: { journal.state($0) == .frozen || journal.state($0) == .thawing }) {
            _ = next(until: nil, watchHost: false)
        }
    }

    /// Waits, without limit, until no FIFREEZE or FITHAW of ours is in flight (each worker
    /// undoes its own late freeze); meanwhile thaws any filesystem that became frozen late.
    func awaitStragglers() {
        while true {
            var busy = false
            for index in 0..<count {
                switch journal.state(index) {
                case .freezing?, .thawing?: busy = true
                case .frozen?:
                    busy = true
                    post(Worker.thawCommand, to: index)
                default: break
                }
            }
            if !busy { return }
            _ = next(until: nil, watchHost: false)
        }
    }

    private func post(_ command: UInt8, to index: Int) {
        var byte = command
        _ = write(setup.workers[index].commandWrite, &byte, 1)
    }

    private enum Received { case flush, freeze, thaw, closed, unknown }

    private func receiveCommand() -> Received {
        while true {
            let count = recv(socket, input.baseAddress, input.count, Int32(MSG_DONTWAIT))
            if count < 0 && ph_errno() == EINTR { continue }
            if count < 0 && ph_errno() == EAGAIN { return .unknown }
            if count <= 0 { return .closed }
            switch GuardRequest.decode(UnsafeRawBufferPointer(rebasing: input[0..<count])) {
            case .flush?: return .flush
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

/// The clocks, read without allocating.
enum GuardClock {
    /// CLOCK_MONOTONIC ns, the clock of the host's timestamps too.
    static func now() -> UInt64 { read(CLOCK_MONOTONIC) }

    /// CLOCK_REALTIME ns.
    static func realtime() -> UInt64 { read(CLOCK_REALTIME) }

    private static func read(_ clock: clockid_t) -> UInt64 {
        var spec = timespec()
        clock_gettime(clock, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    /// poll(2) timeout in milliseconds until `deadline` (rounded up).
    static func pollTimeout(until deadline: UInt64) -> Int32 {
        let now = now()
        return deadline <= now ? 0 : Int32(clamping: (deadline - now + 999_999) / 1_000_000)
    }
}
