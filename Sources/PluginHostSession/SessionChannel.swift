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
    private var notifyDescriptor: Int32? = 1
    private var thawClients: [FileDescriptor] = []
    /// Connections refused (not root) or malformed, for the report.
    public private(set) var refusals: [String] = []

    public init(socketPath: String) {
        self.socketPath = socketPath
    }

    deinit {
        if listener != nil { unlink(socketPath) }
    }

    /// Creates the listening socket; call with the operation lock held (a stale socket file of
    /// a dead session is replaced).
    public func open() throws(HostError) {
        unlink(socketPath)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HostError(.incorrectPluginhostFile, "cannot create the session socket: \(SystemError("socket"))") }
        let descriptor = FileDescriptor(owning: fd)
        guard let address = UnixSocketAddress(path: socketPath) else {
            throw HostError(.incorrectPluginhostFile, "the session socket path \(socketPath) is too long")
        }
        let umaskBefore = umask(0o177)
        let bound = address.withSockaddr { bind(fd, $0, $1) }
        umask(umaskBefore)
        guard bound == 0, chmod(socketPath, 0o600) == 0, listen(fd, 16) == 0 else {
            throw HostError(.incorrectPluginhostFile, "cannot listen on \(socketPath): \(SystemError("bind"))")
        }
        listener = descriptor
    }

    /// Readable when a client connects.
    public var listenDescriptor: Int32 { listener?.rawValue ?? -1 }

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
                try FileDescriptor(owning: dup(fd)).writeAll(bytes)
            } catch {
                let what = if case .notice = envelope { "freeze notice" } else { "report" }
                refusals.append("the freeze client was gone before the \(what) could be written (\(error)); the operation went on")
            }
        }
        let null = Glibc.open("/dev/null", O_RDWR | O_CLOEXEC)
        if null >= 0 {
            dup2(null, 1)
            dup2(null, 2)
            close(null)
        }
    }

    /// Accepts one connection. Returns a thaw request; answers a status request itself with
    /// `status()`; refuses anyone but root. Returns nil when nothing actionable arrived.
    public func accept(operationID: String, status: () -> SessionStatus) -> SessionThaw? {
        guard let listener else { return nil }
        let fd = ph_accept(listener.rawValue)
        guard fd >= 0 else { return nil }
        let client = FileDescriptor(owning: fd)
        var uid: uid_t = 0
        var pid: pid_t = 0
        guard ph_peer_credentials(fd, &uid, &pid) == 0, uid == 0 else {
            refusals.append("refused a connection from uid \(uid), pid \(pid) at \(isoTimestamp()): only root may talk to the session")
            try? client.writeAll(SessionRefusal("refused: only root may talk to the session").encoded)
            return nil
        }
        guard let line = Self.readLine(client, timeoutMilliseconds: 2000) else {
            refusals.append("dropped a connection from pid \(pid) that sent no request")
            return nil
        }
        switch SessionRequest.decode(line: line) {
        case .status?:
            try? client.writeAll(Self.json(status()) + "\n")
            return nil
        case .thaw(let requested, let snapshotTaken)?:
            if let requested, requested != operationID {
                try? client.writeAll(SessionRefusal("operation \(requested) is not the active one; the active one is \(operationID)").encoded)
                return nil
            }
            thawClients.append(client)
            return SessionThaw(snapshotTaken: snapshotTaken)
        case nil:
            refusals.append("dropped a connection from pid \(pid) with an unknown request")
            try? client.writeAll(SessionRefusal("unknown request").encoded)
            return nil
        }
    }

    /// Sends the final report to every thaw client (and to any client still queued), then
    /// closes the socket. Every later `thaw --operation ID` reads the saved report instead.
    public func finish(_ report: OperationReport) {
        notify(.report(report))
        let text = String(decoding: ReportStore.encode(report), as: UTF8.self)
        for client in thawClients { try? client.writeAll(text) }
        thawClients.removeAll()
        if let listener {
            let flags = fcntl(listener.rawValue, F_GETFL)
            _ = fcntl(listener.rawValue, F_SETFL, flags | O_NONBLOCK)
            while true {
                let fd = ph_accept(listener.rawValue)
                if fd < 0 { break }
                let client = FileDescriptor(owning: fd)
                var uid: uid_t = 0
                var pid: pid_t = 0
                if ph_peer_credentials(fd, &uid, &pid) == 0, uid == 0, Self.readLine(client, timeoutMilliseconds: 200) != nil {
                    try? client.writeAll(text)
                }
            }
            unlink(socketPath)
            self.listener = nil
        }
    }

    private static func readLine(_ client: FileDescriptor, timeoutMilliseconds: Int32) -> String? {
        var collected: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        let deadline = Monotonic.now() + UInt64(timeoutMilliseconds) * 1_000_000
        while collected.count < 1024 {
            var event = pollfd(fd: client.rawValue, events: Int16(POLLIN), revents: 0)
            guard poll(&event, 1, Monotonic.pollTimeout(until: deadline)) == 1 else { return nil }
            let count = read(client.rawValue, &buffer, buffer.count)
            if count <= 0 { break }
            collected += buffer[0..<count]
            if collected.contains(0x0A) { break }
        }
        guard let end = collected.firstIndex(of: 0x0A) else { return collected.isEmpty ? nil : String(decoding: collected, as: UTF8.self) }
        return String(decoding: collected[..<end], as: UTF8.self)
    }

    static func json(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}
