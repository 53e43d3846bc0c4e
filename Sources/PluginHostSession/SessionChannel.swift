import CPluginHostShim
import FoundationEssentials
import Glibc
public import PluginHost
import PluginHostSupport
import PluginHostWire

/// A two-phase operation's links to its callers: the `freeze` client, which reads
/// the session's stdout until it says frozen, and `thaw`/`status` clients on a unix socket in
/// the runtime directory that only root can reach (mode 0600 in a 0700 directory, and the
/// peer's uid checked on every connection).
///
/// Requests are `SessionRequest` lines. A thaw client gets the final report when the
/// operation has ended. This is the only code that rewires the process's stdio.
public final class SessionChannel: SessionLink {
    public let socketPath: String
    private var listener: FileDescriptor?
    /// Readable while the listener or a connected client has something to read (epoll).
    private var readiness: FileDescriptor?
    private var notifyDescriptor: Int32? = 1
    private var thawClients: [FileDescriptor] = []
    /// Root's connections whose request line has not (all) arrived yet. Each is read as its
    /// bytes come, never waited for: a silent client costs nothing but its descriptor, until
    /// its budget runs out (each one used to block the session for 2 s).
    private var pending: [PendingClient] = []

    private struct PendingClient {
        let descriptor: FileDescriptor
        let pid: pid_t
        let deadline: Monotonic.Instant
        var received: [UInt8] = []
        var ended = false
    }

    /// How long a client may take to send its request line.
    static let requestBudget: Duration = .seconds(2)
    /// Clients waiting for their request at once; past it the oldest is dropped.
    static let maximumPending = 32
    /// Connections refused (not root) or malformed, for the report.
    public private(set) var refusals: [String] = []

    public init(socketPath: String) {
        self.socketPath = socketPath
    }

    deinit {
        if listener != nil { try? FileSystem.remove(socketPath) }
    }

    /// Creates the listening socket; call with the operation lock held (a stale socket file of
    /// a dead session is replaced).
    public func open() throws(HostError) {
        try? FileSystem.remove(socketPath)
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.socket(.stream)
        } catch {
            throw HostError(.incorrectPluginhostFile, "cannot create the session socket: \(error)")
        }
        guard let address = UnixSocketAddress(path: socketPath) else {
            throw HostError(.incorrectPluginhostFile, "the session socket path \(socketPath) is too long")
        }
        do {
            try FileSystem.withUmask(0o177) { () throws(SystemError) in try descriptor.bind(to: address) }
            try FileSystem.setMode(socketPath, 0o600)
            try descriptor.listen(backlog: 16)
        } catch {
            throw HostError(.incorrectPluginhostFile, "cannot listen on \(socketPath): \(error)")
        }
        try? descriptor.setNonBlocking(true)
        let epoll = ph_epoll_create()
        guard epoll >= 0, ph_epoll_add(epoll, descriptor.rawValue) == 0 else {
            throw HostError(.incorrectPluginhostFile, "cannot watch \(socketPath): \(SystemError("epoll"))")
        }
        readiness = FileDescriptor(owning: epoll)
        listener = descriptor
    }

    /// Readable when a client connects or a connected client sent something: call `accept`.
    public var listenDescriptor: Int32 { readiness?.rawValue ?? -1 }

    /// Writes what the freeze client waits for — the notice, or the final report when the
    /// operation ended before freezing — as one JSON document on stdout, then lets go of the
    /// client: stdout and stderr point at /dev/null from here on.
    public func notify(_ envelope: SessionEnvelope) {
        guard let fd = notifyDescriptor else { return }
        notifyDescriptor = nil
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if let data = try? encoder.encode(envelope) {
            let bytes = Array(data) + [0x0A]
            // The client may be gone (killed, or its agent timed out): EPIPE, never SIGPIPE
            // (ignored in every role). The operation goes on; the report says so.
            do {
                try FileDescriptor.duplicate(fd).writeAll(bytes)
            } catch {
                let what = if case .notice = envelope { "freeze notice" } else { "report" }
                refusals.append(
                    "the freeze client was gone before the \(what) could be written (\(error)); the operation went on")
            }
        }
        if let null = try? FileDescriptor.open("/dev/null", O_RDWR) {
            dup2(null.rawValue, 1)
            dup2(null.rawValue, 2)
        }
    }

    /// Takes new connections and reads what connected clients sent, without waiting for any
    /// of them. Answers status requests itself with `status()`, refuses anyone but root, and
    /// returns the first thaw request. Returns nil when nothing actionable arrived.
    public func accept(operationID: String, status: () -> SessionStatus) -> SessionThaw? {
        acceptWaiting()
        readPending()
        var index = 0
        while index < pending.count {
            guard let line = Self.requestLine(pending[index]) else {
                if pending[index].ended || Monotonic.Instant.now >= pending[index].deadline {
                    refusals.append("dropped a connection from pid \(pending[index].pid) that sent no request")
                    drop(at: index)
                } else {
                    index += 1
                }
                continue
            }
            let client = pending[index].descriptor
            let pid = pending[index].pid
            drop(at: index, closing: false)
            switch SessionRequest.decode(line: line) {
            case .status?:
                try? client.writeAll(Self.json(status()) + "\n")
            case .thaw(let requested, let snapshotTaken)?:
                if let requested, requested != operationID {
                    try? client.writeAll(
                        SessionRefusal("operation \(requested) is not the active one; the active one is \(operationID)")
                            .encoded)
                    continue
                }
                thawClients.append(client)
                return SessionThaw(snapshotTaken: snapshotTaken)
            case nil:
                refusals.append("dropped a connection from pid \(pid) with an unknown request")
                try? client.writeAll(SessionRefusal("unknown request").encoded)
            }
        }
        return nil
    }

    /// Accepts every queued connection: root's wait in `pending` for their request, anyone
    /// else is refused at once.
    private func acceptWaiting() {
        guard let listener else { return }
        while true {
            guard let client = try? listener.accept() else { return }
            let fd = client.rawValue
            var uid: uid_t = 0
            var pid: pid_t = 0
            guard ph_peer_credentials(fd, &uid, &pid) == 0, uid == 0 else {
                refusals.append(
                    "refused a connection from uid \(uid), pid \(pid) at \(isoTimestamp()): only root may talk to the session"
                )
                try? client.setNonBlocking(true)
                try? client.writeAll(SessionRefusal("refused: only root may talk to the session").encoded)
                continue
            }
            try? client.setNonBlocking(true)
            if pending.count >= Self.maximumPending {
                refusals.append(
                    """
                    dropped a connection from pid \(pending[0].pid): more than \(Self.maximumPending) clients were \
                    waiting to send a request
                    """
                )
                drop(at: 0)
            }
            if let readiness { _ = ph_epoll_add(readiness.rawValue, fd) }
            pending.append(
                PendingClient(descriptor: client, pid: pid, deadline: Monotonic.Instant.now + Self.requestBudget))
        }
    }

    /// Reads whatever each pending client has sent so far (non-blocking).
    private func readPending() {
        var buffer = [UInt8](repeating: 0, count: 1024)
        for index in pending.indices where !pending[index].ended && Self.requestLine(pending[index]) == nil {
            while pending[index].received.count < Self.maximumRequest {
                // nil: the end of the stream or an error; empty: nothing more for now (EAGAIN).
                guard let bytes = pending[index].descriptor.readAvailable(into: &buffer) else {
                    pending[index].ended = true
                    break
                }
                if bytes.isEmpty { break }
                pending[index].received += bytes
                if bytes.contains(0x0A) { break }
            }
        }
    }

    /// A request is one line; anything longer than this is not one.
    static let maximumRequest = 1024

    /// The client's request line, once complete (or once it ended or sent too much).
    private static func requestLine(_ client: PendingClient) -> String? {
        if let end = client.received.firstIndex(of: 0x0A) {
            return String(decoding: client.received[..<end], as: UTF8.self)
        }
        if client.received.count >= maximumRequest || (client.ended && !client.received.isEmpty) {
            return String(decoding: client.received, as: UTF8.self)
        }
        return nil
    }

    /// Removes a pending client; one kept (to be answered) is made blocking again, so that a
    /// long answer (a report) is written whole.
    private func drop(at index: Int, closing: Bool = true) {
        let client = pending.remove(at: index)
        if let readiness { _ = ph_epoll_remove(readiness.rawValue, client.descriptor.rawValue) }
        if closing {
            client.descriptor.close()
        } else {
            try? client.descriptor.setNonBlocking(false)
        }
    }

    /// Sends the final report to every thaw client (and to any client still queued), then
    /// closes the socket. Every later `thaw --operation ID` reads the saved report instead.
    public func finish(_ report: OperationReport) {
        notify(.report(report))
        let text = String(decoding: ReportStore.encode(report), as: UTF8.self)
        for client in thawClients { try? client.writeAll(text) }
        thawClients.removeAll()
        guard listener != nil else { return }
        // Whoever is queued or still sending gets the report, all of them within one short wait.
        let deadline = Monotonic.Instant.now + .milliseconds(200)
        while true {
            acceptWaiting()
            readPending()
            for index in pending.indices.reversed() where Self.requestLine(pending[index]) != nil {
                let client = pending[index].descriptor
                drop(at: index, closing: false)
                try? client.writeAll(text)
            }
            if pending.isEmpty || Monotonic.Instant.now >= deadline { break }
            _ = try? Poll.wait(for: listenDescriptor, until: deadline)
        }
        while !pending.isEmpty { drop(at: 0) }
        try? FileSystem.remove(socketPath)
        listener = nil
        readiness = nil
    }

    static func json(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}
