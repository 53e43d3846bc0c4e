import CLibPQ
import Glibc
import PluginHostSupport

/// One libpq connection, driven asynchronously so that every wait is bounded by a deadline (a
/// `Monotonic.Instant`; nil: none): connecting polls `PQconnectPoll`, a statement polls the
/// socket, and a statement past its deadline is cancelled (`PQcancel`) and the session closed.
/// libpq 15 has no `PQcancelConn`; `PQcancel` opens a short connection of its own to the server.
///
/// Closing the session ends everything it holds on the server (a backup started in it, locks).
final class PostgresSession {
    private var connection: OpaquePointer?
    private let notices: NoticeSink
    /// Notices received before the current statement.
    private var noticesBefore = 0

    let backendPID: Int32
    /// `PQserverVersion`: 150018 for 15.18.
    let serverVersion: Int
    let user: String

    var isOpen: Bool { connection != nil }

    private init(connection: OpaquePointer, notices: NoticeSink) {
        self.connection = connection
        self.notices = notices
        backendPID = PQbackendPID(connection)
        serverVersion = Int(PQserverVersion(connection))
        user = PQuser(connection).map { String(cString: $0) } ?? ""
        PQsetNoticeProcessor(connection, noticeProcessor, Unmanaged.passUnretained(notices).toOpaque())
    }

    deinit { close() }

    /// Closes the connection (PQfinish); later calls do nothing.
    func close() {
        guard let connection else { return }
        PQfinish(connection)
        self.connection = nil
    }

    // MARK: - Connecting

    /// Connects with `parameters` (libpq keywords; `expand_dbname` off, so no value is parsed as
    /// a connection string), giving up at `deadline`. `timeoutIsCallDeadline` says whether that
    /// instant is the call's deadline (→ `deadlinePassed`) or the connect timeout (→ `unreachable`).
    /// Before anything is sent that could carry a password, refuses one that came from elsewhere
    /// than a verified password file.
    static func connect(
        _ parameters: [(keyword: String, value: String)], until deadline: Monotonic.Instant?,
        timeoutIsCallDeadline: Bool, timeoutDescription: String,
        notices: @escaping @Sendable (String) -> Void
    ) throws(SessionError) -> PostgresSession {
        let started = withCStringArrays(parameters.map(\.keyword), parameters.map(\.value)) { keywords, values in
            PQconnectStartParams(keywords, values, 0)
        }
        guard let connection = started else { throw .unreachable("libpq could not allocate a connection") }
        var handedOver = false
        defer { if !handedOver { PQfinish(connection) } }

        if let problem = credentialProblem(connection) { throw .insecureCredentials(problem) }

        // "Consider a status of PGRES_POLLING_WRITING at the start" (libpq documentation).
        var polling = PGRES_POLLING_WRITING
        var reachedServer = false
        while true {
            if PQstatus(connection) == CONNECTION_BAD { polling = PGRES_POLLING_FAILED }
            reachedServer = reachedServer || answered(PQstatus(connection))
            switch polling {
            case PGRES_POLLING_OK:
                handedOver = true
                return PostgresSession(connection: connection, notices: NoticeSink(notices))
            case PGRES_POLLING_FAILED:
                throw classifyConnectFailure(connection, reachedServer: reachedServer)
            default:
                let ready = waitForSocket(
                    PQsocket(connection), events: polling == PGRES_POLLING_READING ? POLLIN : POLLOUT,
                    until: deadline)
                if !ready {
                    throw timeoutIsCallDeadline
                        ? .deadlinePassed("connecting to PostgreSQL did not finish before \(timeoutDescription)")
                        : .unreachable("no answer from the PostgreSQL server within \(timeoutDescription)")
                }
                polling = PQconnectPoll(connection)
            }
        }
    }

    /// The connection states reached only after some server answered on the socket.
    private static func answered(_ status: ConnStatusType) -> Bool {
        switch status {
        case CONNECTION_AWAITING_RESPONSE, CONNECTION_AUTH_OK, CONNECTION_SETENV, CONNECTION_CHECK_WRITABLE,
            CONNECTION_CONSUME, CONNECTION_CHECK_TARGET, CONNECTION_CHECK_STANDBY:
            true
        default:
            false
        }
    }

    private static func classifyConnectFailure(_ connection: OpaquePointer, reachedServer: Bool) -> SessionError {
        let message = clean(PQerrorMessage(connection))
        guard reachedServer else { return .unreachable(message) }
        // The server's reason comes as text in its lc_messages language; these phrases are the
        // English ones. Anything else a server says while refusing is an authentication or
        // authorization failure, which is what it is in every other case.
        let lower = message.lowercased()
        if lower.contains("too many clients") || lower.contains("remaining connection slots are reserved") {
            return .notAccepting(message, busy: true)
        }
        if lower.contains("the database system is") || lower.contains("not yet accepting connections") {
            return .notAccepting(message, busy: false)
        }
        return .refused(message, needsPassword: PQconnectionNeedsPassword(connection) == 1)
    }

    /// Reads the options libpq settled on (after the service file and the environment), before
    /// any password can be sent: a password must come from a password file, and the password
    /// file in effect (the configured one, PGPASSFILE or ~/.pgpass) must pass the root-only check.
    private static func credentialProblem(_ connection: OpaquePointer) -> String? {
        guard let options = PQconninfo(connection) else { return nil }
        defer { PQconninfoFree(options) }
        var cursor = options
        while let keyword = cursor.pointee.keyword {
            defer { cursor += 1 }
            guard let value = cursor.pointee.val, value.pointee != 0 else { continue }
            switch String(cString: keyword) {
            case "password":
                return
                    """
                    libpq was given a password from outside the password file (a service file entry or the PGPASSWORD \
                    environment variable); the plugin takes passwords only from the file named by \"passfile\"
                    """
            case "passfile":
                let path = String(cString: value)
                if access(path, F_OK) == 0, let problem = CredentialFiles.passfileProblem(path) { return problem }
            default:
                continue
            }
        }
        return nil
    }

    // MARK: - Statements

    /// Runs one statement with text parameters ($1, $2, …) and returns its rows as text (nil
    /// for NULL). Past `deadline` the statement is cancelled and the session closed.
    func execute(_ sql: String, _ parameters: [String] = [], until deadline: Monotonic.Instant?)
        throws(SessionError) -> [[String?]]
    {
        guard let connection else { throw .sessionLost("the session was already closed") }
        noticesBefore = notices.received
        let sent = withCStringArrays(parameters, []) { values, _ in
            PQsendQueryParams(connection, sql, Int32(parameters.count), nil, values, nil, nil, 0)
        }
        if sent == 0 { throw lose() }

        // Send everything (a short statement fits at once; still, never block on the socket).
        while true {
            let flushed = PQflush(connection)
            if flushed == 0 { break }
            if flushed < 0 { throw lose() }
            guard Self.waitForSocket(PQsocket(connection), events: POLLIN | POLLOUT, until: deadline) else {
                throw cancelAndClose()
            }
            if PQconsumeInput(connection) == 0 { throw lose() }
        }

        var rows: [[String?]] = []
        var failure: SessionError?
        while true {
            while PQisBusy(connection) != 0 {
                guard Self.waitForSocket(PQsocket(connection), events: POLLIN, until: deadline) else {
                    throw cancelAndClose()
                }
                if PQconsumeInput(connection) == 0 { throw lose() }
            }
            guard let result = PQgetResult(connection) else { break }
            defer { PQclear(result) }
            switch PQresultStatus(result) {
            case PGRES_TUPLES_OK:
                rows = Self.rows(of: result)
            case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
                break
            default:
                if failure == nil { failure = Self.statementError(result) }
            }
        }
        if PQstatus(connection) == CONNECTION_BAD {
            if case .statement(_, let message)? = failure { throw lose(message) }
            throw lose()
        }
        if let failure { throw failure }
        return rows
    }

    /// `SELECT set_config(name, value, false)`: a session setting, as a parameter (no SQL text is built).
    func set(_ name: String, _ value: String, until deadline: Monotonic.Instant?) throws(SessionError) {
        _ = try execute("SELECT pg_catalog.set_config($1, $2, false)", [name, value], until: deadline)
    }

    /// The session broke: keep the server's last words (e.g. "terminating connection due to
    /// administrator command"), close, and say so.
    private func lose(_ known: String? = nil) -> SessionError {
        var reasons: [String] = []
        if let connection {
            // With the connection bad, PQgetResult does not wait: it returns what was received.
            for _ in 0..<8 {
                guard let result = PQgetResult(connection) else { break }
                PQclear(result)
            }
            // Every error of the current statement, the server's FATAL message included.
            reasons.append(Self.clean(PQerrorMessage(connection)))
        }
        close()
        // What the server said before it went, if it arrived as a notice.
        reasons = notices.notices(since: noticesBefore) + reasons
        if let known, !reasons.contains(where: { $0.contains(known) }) { reasons.append(known) }
        let message = reasons.filter { !$0.isEmpty }.joined(separator: "; ")
        return .sessionLost(message.isEmpty ? "the connection to the server was lost" : message)
    }

    /// Deadline passed: ask the server to cancel the running statement, then close the session,
    /// which ends whatever it held.
    private func cancelAndClose() -> SessionError {
        var outcome = "the statement was cancelled and the session closed"
        if let connection, let cancel = PQgetCancel(connection) {
            var buffer = [CChar](repeating: 0, count: 256)
            if PQcancel(cancel, &buffer, Int32(buffer.count)) != 1 {
                let reason = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                outcome = "the cancel request failed (\(Self.clean(reason))); the session was closed"
            }
            PQfreeCancel(cancel)
        }
        close()
        return .deadlinePassed(outcome)
    }

    // MARK: - Helpers

    private static func rows(of result: OpaquePointer) -> [[String?]] {
        let rowCount = PQntuples(result)
        let columnCount = PQnfields(result)
        return (0..<rowCount).map { row in
            (0..<columnCount).map { column in
                PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
            }
        }
    }

    private static func statementError(_ result: OpaquePointer) -> SessionError {
        // PG_DIAG_SQLSTATE is 'C' and PG_DIAG_MESSAGE_PRIMARY is 'M' (postgres_ext.h).
        let sqlState = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? ""
        let primary = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
        return .statement(sqlState: sqlState, message: primary ?? clean(PQresultErrorMessage(result)))
    }

    /// libpq messages end in newlines and may span lines; make them one line.
    static func clean(_ text: UnsafePointer<CChar>?) -> String {
        guard let text else { return "" }
        return clean(String(cString: text))
    }

    static func clean(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline)
            .map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
            .filter { !$0.isEmpty }
            .joined(separator: "; ")
    }

    /// poll(2) on `socket` until it is ready or `deadline` (nil: none) passes (false). A poll
    /// error other than EINTR counts as ready: libpq then sees the error itself.
    static func waitForSocket(_ socket: Int32, events: Int32, until deadline: Monotonic.Instant?) -> Bool {
        guard socket >= 0 else { return true }
        while true {
            if let deadline, Monotonic.Instant.now >= deadline { return false }
            var descriptor = pollfd(fd: socket, events: Int16(events), revents: 0)
            let ready = poll(&descriptor, 1, Monotonic.pollTimeout(until: deadline))  // -1 (forever) without one
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { return true }
        }
    }
}

/// Where server notices (WARNING, NOTICE) go instead of libpq's default, stderr. libpq also
/// passes here an error that arrives while no statement runs — typically the server's reason for
/// ending the session ("FATAL: terminating connection due to administrator command") — so the
/// last few are kept for the message of a lost session.
private final class NoticeSink {
    let forward: @Sendable (String) -> Void
    private(set) var received = 0
    private(set) var recent: [String] = []

    init(_ forward: @escaping @Sendable (String) -> Void) { self.forward = forward }

    func receive(_ message: String) {
        received += 1
        recent.append(message)
        if recent.count > 4 { recent.removeFirst() }
        forward(message)
    }

    /// The notices received after the `since`-th one (at most the last four).
    func notices(since: Int) -> [String] { Array(recent.suffix(min(recent.count, received - since))) }
}

private let noticeProcessor: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?) -> Void = {
    context, message in
    guard let context, let message else { return }
    Unmanaged<NoticeSink>.fromOpaque(context).takeUnretainedValue().receive(PostgresSession.clean(message))
}

/// NULL-terminated C string arrays for libpq's keyword/value interfaces; valid inside `body` only.
private func withCStringArrays<R>(
    _ first: [String], _ second: [String],
    _ body: (UnsafePointer<UnsafePointer<CChar>?>, UnsafePointer<UnsafePointer<CChar>?>) -> R
) -> R {
    let firstPointers: [UnsafeMutablePointer<CChar>?] = first.map { strdup($0) } + [nil]
    let secondPointers: [UnsafeMutablePointer<CChar>?] = second.map { strdup($0) } + [nil]
    defer {
        firstPointers.forEach { free($0) }
        secondPointers.forEach { free($0) }
    }
    let firstConst = firstPointers.map { UnsafePointer($0) }
    let secondConst = secondPointers.map { UnsafePointer($0) }
    return firstConst.withUnsafeBufferPointer { a in
        secondConst.withUnsafeBufferPointer { b in body(a.baseAddress!, b.baseAddress!) }
    }
}
