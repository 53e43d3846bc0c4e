import FoundationEssentials
import Glibc
import PluginHostSupport
import PluginHostWire

/// The client side of two-phase operations: `freeze` starts a session process and waits for
/// its first word; `thaw` and `status` talk to it over its socket.
public enum SessionClient {
    /// Starts `executable __session ARGUMENTS` in a session of its own (no terminal; it
    /// outlives this process) and returns what it says first: frozen (a notice), or the final
    /// report when the operation ended before that. Its stderr is copied to ours meanwhile.
    public static func start(
        executable: String, arguments: [String], environment: [String: String],
        forwardingStderrTo stderr: Int32 = 2
    ) -> SessionEnvelope {
        let session: ChildProcess
        do {
            session = try ChildProcess(
                spawning: Command(
                    executable: executable, arguments: ["__session"] + arguments,
                    environment: environment),
                outlivesHost: true, newSession: true, outputCapacity: 16 << 20)
        } catch {
            return .report(failure(.freezeFailed, "cannot start the session process: \(error)"))
        }
        var forwarded = 0
        while true {
            let event = session.waitForOutput(until: nil)
            let total = session.stderrTail.totalBytes
            if total > forwarded {
                let fresh = session.stderrTail.bytes.suffix(min(total - forwarded, session.stderrTail.capacity))
                FileDescriptor.write(Array(fresh), to: STDERR_FILENO)
                forwarded = total
            }
            if case .exited = event { break }
            if session.outputClosed { break }
        }
        let text = session.stdoutTail.text
        session.detach()
        guard let line = text.split(separator: "\n").first,
            let envelope = try? JSONDecoder().decode(SessionEnvelope.self, from: Data(line.utf8))
        else {
            return .report(failure(.freezeFailed, "the session process ended without a word (\(text.prefix(200)))"))
        }
        return envelope
    }

    public enum Reply: Sendable {
        /// The final report of the operation.
        case report(OperationReport)
        /// What the session said instead (an error).
        case refused(String)
        /// No session is listening.
        case noSession
    }

    /// Sends `THAW [ID]` (or `THAW-FAILED`) and waits for the final report.
    public static func thaw(paths: StatePaths, operationID: String?, snapshotTaken: Bool = true) -> Reply {
        guard
            let bytes = request(
                paths: paths, .thaw(operationID: operationID, snapshotTaken: snapshotTaken),
                timeout: .seconds(3600))
        else { return .noSession }
        if let report = ReportStore.decode(bytes) { return .report(report) }
        let text = String(decoding: bytes, as: UTF8.self)
        if let refusal = SessionRefusal.decode(text) { return .refused(refusal.message) }
        return .refused(text.isEmpty ? "the session closed the connection" : text)
    }

    /// Asks a session waiting for its thaw what it holds (nil when none answers quickly).
    public static func status(paths: StatePaths) -> SessionStatus? {
        guard let bytes = request(paths: paths, .status, timeout: .seconds(1)) else { return nil }
        return try? JSONDecoder().decode(SessionStatus.self, from: Data(bytes))
    }

    /// Connects, sends `line`, reads until the session closes. nil when nobody listens.
    private static func request(paths: StatePaths, _ request: SessionRequest, timeout: Duration) -> [UInt8]? {
        guard let connection = try? FileDescriptor.socket(.stream),
            let address = UnixSocketAddress(path: paths.sessionSocket),
            (try? connection.connect(to: address)) != nil,
            (try? connection.writeAll(request.line)) != nil
        else { return nil }
        var collected: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = Monotonic.Instant.now + timeout
        while true {
            guard (try? Poll.wait(for: connection.rawValue, until: deadline)) == true else {
                return collected.isEmpty ? nil : collected
            }
            guard let count = try? connection.read(into: &buffer), count > 0 else { return collected }
            collected += buffer[0..<count]
        }
    }

    private static func failure(_ code: ErrorCode, _ message: String) -> OperationReport {
        var report = OperationReport(operationID: "none", command: "freeze", startedAt: isoTimestamp())
        report.errors = [HostError(code, message)]
        report.conclude(failed: true)
        return report
    }
}
