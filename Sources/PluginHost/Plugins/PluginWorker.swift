import Glibc
import Logging
import PluginHostSupport
import PluginHostWire

/// The host's handle on one plugin's worker process. The host enforces every deadline: a
/// worker that overruns, crashes or sends something that does not decode is killed (its
/// database sessions, and so its locks, die with it).
final class PluginWorker {
    /// What came back for one request.
    enum Outcome: Equatable {
        case reply(WorkerMessage)
        case timedOut
        /// The worker died or broke the protocol; it is gone now.
        case lost(String)
        /// A signal (SIGTERM, SIGINT, SIGHUP) came while waiting: the worker was killed at once,
        /// and with it the plugin's sessions and locks.
        case interrupted
    }

    static let maximumKeptLogLines = 100

    let manifest: PluginManifest
    let library: VerifiedLibrary
    private let process: ChildProcess
    private let socket: FileDescriptor
    private var logger: Logger
    private(set) var logLines: [String] = []
    private(set) var droppedLogLines = 0
    private(set) var alive = true
    private var buffer = [UInt8](repeating: 0, count: WorkerWire.maximumMessage)

    /// Starts a worker with the verified library on descriptor 3 and its socket on 4: a fork of
    /// this (single-threaded) host running the worker runtime — about a millisecond — or, if
    /// the host has more threads (or no entry is registered), `executable __worker`. Call from the main thread: the worker
    /// is tied to the starting thread's life (PR_SET_PDEATHSIG). In a `cell`, the worker and
    /// everything it starts (a held command and its children) die with it, whoever kills it.
    init(
        manifest: PluginManifest, library: VerifiedLibrary, executable: String, logger: Logger,
        cell: ProcessContainment.Cell? = nil
    ) throws(SystemError) {
        self.manifest = manifest
        self.library = library
        let workerEnd: FileDescriptor
        (socket, workerEnd) = try FileDescriptor.messageSocketPair()
        let descriptors = [library.descriptor.rawValue, workerEnd.rawValue]
        // Every signal is at its default in the child: a plugin's crash ends it at once.
        var forked: ChildProcess?
        if let entry = WorkerLauncher.forkedEntry {
            do {
                forked = try ChildProcess(forking: entry, extraDescriptors: descriptors, cell: cell)
            } catch let error where error.errno == EAGAIN {
                forked = nil  // more than one thread: forking is not safe
            }
        }
        if let forked {
            process = forked
        } else {
            // No Swift backtracer in the worker either: a crash must end it by the signal.
            process = try ChildProcess(
                spawning: Command(
                    executable: executable, arguments: ["__worker"],
                    environment: [
                        "PATH": ScriptRunner.searchPath, "LANG": "C",
                        "SWIFT_BACKTRACE": "enable=no",
                    ]
                    .merging(KernelFeature.inheritedEnvironment) { $1 }),
                extraDescriptors: descriptors, cell: cell)
        }
        workerEnd.close()
        // The worker holds the sealed copy now (descriptor 3): the host's descriptors stay few.
        library.descriptor.close()
        var logger = logger
        logger[metadataKey: "plugin"] = "\(manifest.name)"
        self.logger = logger
    }

    deinit {
        kill()
    }

    var pid: Int32 { process.pid }

    /// Sends a request; false if the worker is gone.
    func send(_ request: WorkerRequest) -> Bool {
        guard alive else { return false }
        let bytes = WorkerWire.encode(request)
        return (try? socket.sendMessage(bytes)) != nil
    }

    /// Waits for one reply from each worker (requests already sent), each by its own deadline,
    /// all in one poll loop: plugins of the same order work concurrently.
    /// Each outcome comes with the instant it arrived. When `interrupt` (the
    /// signal pipe, left unread) becomes readable, every worker still busy is killed at once:
    /// a signal never waits for a plugin call to return.
    static func await(_ workers: [PluginWorker], deadlines: [Monotonic.Instant], interrupt: Int32? = nil) -> [(
        outcome: Outcome, at: Monotonic.Instant
    )] {
        var outcomes = [(outcome: Outcome, at: Monotonic.Instant)?](repeating: nil, count: workers.count)
        var pending = Set(workers.indices.filter { workers[$0].alive })
        for index in workers.indices where !workers[index].alive {
            outcomes[index] = (.lost("the worker is gone"), Monotonic.Instant.now)
        }
        while !pending.isEmpty {
            var fds: [PollEntry] = []
            for index in pending {
                for fd in [workers[index].socket.rawValue] + workers[index].process.descriptors {
                    fds.append(PollEntry(fd))
                }
            }
            if let interrupt { fds.append(PollEntry(interrupt)) }
            let earliest = pending.map { deadlines[$0] }.min()
            _ = try? Poll.wait(&fds, until: earliest)
            if let interrupt, fds.last?.descriptor == interrupt, fds.last?.isReady == true {
                for index in pending.sorted() {
                    workers[index].kill(reason: "interrupted")
                    outcomes[index] = (.interrupted, Monotonic.Instant.now)
                }
                break
            }
            for index in pending.sorted() {
                if let outcome = workers[index].service() {
                    outcomes[index] = (outcome, Monotonic.Instant.now)
                    pending.remove(index)
                } else if Monotonic.Instant.now >= deadlines[index] {
                    workers[index].kill(reason: "its plugin call timed out")
                    outcomes[index] = (.timedOut, Monotonic.Instant.now)
                    pending.remove(index)
                }
            }
        }
        return outcomes.map { $0! }
    }

    /// Takes whatever is ready without blocking: log lines are kept, a reply is returned.
    private func service() -> Outcome? {
        receiving: while true {
            let count: Int
            do {
                switch try socket.receiveMessage(into: &buffer, wait: false) {
                case .message(let length): count = length
                case .endOfStream: return lose(nil)
                case .wouldBlock: break receiving
                }
            } catch {
                return lose("its socket failed: \(error)")
            }
            guard let message = WorkerWire.decodeMessage(buffer.prefix(count)) else {
                return lose("it sent \(count) bytes that are not a message")
            }
            if case .log(let level, let text) = message {
                keepLog(level: level, text)
                continue
            }
            return .reply(message)
        }
        // Drain its output; notice if it died without closing the socket first.
        if case .exited = process.wait(until: Monotonic.Instant.now) { return lose(nil) }
        return nil
    }

    private func keepLog(level: Int32, _ text: String) {
        let line = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        if logLines.count >= Self.maximumKeptLogLines {
            droppedLogLines += 1
            if droppedLogLines == 1 { logger.warning("plugin log is flooding; keeping only the first lines") }
            return
        }
        logLines.append(line)
        let mapped: Logger.Level =
            switch level {
            case 0: .debug
            case 1: .info
            case 2: .warning
            default: .error
            }
        logger.log(level: mapped, "\(line)")
    }

    /// The worker is gone (or must go): kill it and describe how it ended.
    private func lose(_ why: String?) -> Outcome {
        kill(reason: "its worker was lost")
        return .lost(why.map { "\($0); the worker was killed" } ?? exitDescription())
    }

    /// Kills the worker and everything in its cell (a held command, the children of one), and
    /// names them in the report with `reason`.
    func kill(reason: String = "its worker ended") {
        guard alive else { return }
        alive = false
        socket.close()
        process.terminateGroup(grace: .zero, reason: reason)
        process.cell?.kill(reason: reason)  // what it left behind when it exited on its own
    }

    /// How the worker ended, with the end of its stderr (a crash message, say).
    func exitDescription() -> String {
        guard case .exited(let termination) = process.wait(until: Monotonic.Instant.now + .seconds(2)) else {
            return "the worker stopped answering"
        }
        let stderr = process.stderrTail.text.split(whereSeparator: \.isNewline).suffix(3).joined(separator: " / ")
        return "the worker ended (\(termination))" + (stderr.isEmpty ? "" : ": \(stderr)")
    }

    /// Asks the worker to destroy the plugin and exit (bounded), then makes sure it is gone.
    func shutDown() {
        if alive, send(.destroy) {
            _ = Self.await([self], deadlines: [Monotonic.Instant.now + .seconds(manifest.timeoutSeconds)])
            // It exits right after its answer: let it, so that only what it left behind is killed.
            _ = process.wait(until: Monotonic.Instant.now + .seconds(1))
        }
        kill()
    }
}

/// Where a forked worker starts: the worker runtime's entry point, registered by the
/// executable at launch, before any thread exists. The engine itself never loads a plugin.
/// With none registered, workers are started as `executable __worker`.
public enum WorkerLauncher {
    public typealias Entry = @convention(c) (UnsafeMutableRawPointer?) -> Int32

    nonisolated(unsafe) static var forkedEntry: Entry?

    public static func register(_ entry: @escaping Entry) {
        forkedEntry = entry
    }
}
