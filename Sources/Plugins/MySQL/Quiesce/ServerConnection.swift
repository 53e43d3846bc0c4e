import CMariaDB
import Glibc
import PluginHostSupport

/// Where to connect and how to log in. Credentials are never here: libmariadb reads them from
/// the option file itself (MYSQL_READ_DEFAULT_FILE), so they never pass through this process's
/// strings, argv, environment or logs.
struct ConnectionTarget: Sendable, Equatable {
    var socket: String?
    var host: String?
    var port: Int?
    /// The path libmariadb opens: `/proc/self/fd/N` of the verified, still open option file.
    var optionFilePath: String?
    /// Whether the option file sets a password. When it does not, an empty password is passed
    /// explicitly, so that libmariadb never falls back to `MYSQL_PWD` from the environment.
    var optionFileHasPassword = false

    /// How the target is named in messages.
    var displayName: String {
        if let socket { return "socket \(socket)" }
        if let host { return "\(host):\(port ?? 3306)" }
        return "the option file's or libmariadb's default socket"
    }
}

/// The result of a statement that returns rows.
struct ResultSet: Sendable, Equatable {
    var columns: [String]
    var rows: [[String?]]

    /// The first column of the first row (nil when there is none or it is SQL NULL).
    var firstValue: String? { rows.first?.first ?? nil }

    /// The value of `column` in row `row` (nil when absent or SQL NULL).
    func value(_ column: String, row: Int = 0) -> String? {
        guard row < rows.count,
            let index = columns.firstIndex(where: { $0.lowercased() == column.lowercased() })
        else { return nil }
        return rows[row][index]
    }
}

/// libmariadb is initialised once per process, before any thread uses it.
enum MariaDBLibrary {
    static let initialized: Bool = mysql_server_init(0, nil, nil) == 0
}

/// One client connection driven through libmariadb's non-blocking API, so that every call is
/// bounded by a CLOCK_MONOTONIC deadline of ours: the socket is polled here, never inside the
/// library. A call whose deadline passes is left suspended (`isBusy`); the statement may still
/// run on the server, so the owner aborts the session (KILL from a second connection, then
/// `close()`).
final class ServerConnection {
    private enum Operation { case connect, query, storeResult }

    private let handle: UnsafeMutablePointer<MYSQL>
    private var pending: Operation?
    private var pendingStatus: Int32 = 0
    /// C strings the suspended call may still read (libmariadb keeps pointers across a suspension).
    private var retained: [UnsafeMutablePointer<CChar>] = []
    private let connectSlot = UnsafeMutablePointer<UnsafeMutablePointer<MYSQL>?>.allocate(capacity: 1)
    private let statusSlot = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    private let resultSlot = UnsafeMutablePointer<UnsafeMutablePointer<MYSQL_RES>?>.allocate(capacity: 1)
    private var handleFreed = false

    private(set) var isClosed = false
    /// The server's id of this session (`CONNECTION_ID()`), for KILL. The handshake's id is
    /// 32 bits wide; the owner replaces it with `CONNECTION_ID()` once read.
    var connectionID: UInt64 = 0

    /// A call is suspended past its deadline: the connection can only be closed.
    var isBusy: Bool { pending != nil }

    /// The socket, for a watcher that polls it while the session is idle (-1 when closed).
    var socketDescriptor: Int32 { isClosed ? -1 : Int32(mysql_get_socket(handle)) }

    /// The server's version string as sent at login, e.g. `10.11.6-MariaDB-0+deb12u1`.
    private(set) var serverInfo = ""
    /// How libmariadb reached the server, e.g. `Localhost via UNIX socket`.
    private(set) var hostInfo = ""

    private init(handle: UnsafeMutablePointer<MYSQL>) {
        self.handle = handle
        connectSlot.initialize(to: nil)
        statusSlot.initialize(to: 0)
        resultSlot.initialize(to: nil)
    }

    deinit {
        close()
        connectSlot.deallocate()
        statusSlot.deallocate()
        resultSlot.deallocate()
    }

    /// Connects and logs in before `deadline` (nil: none).
    static func connect(_ target: ConnectionTarget, deadline: Monotonic.Instant?) throws(ServerError)
        -> ServerConnection
    {
        guard MariaDBLibrary.initialized, let handle = mysql_init(nil) else {
            throw ServerError(kind: .client, code: 2008, message: "libmariadb could not be initialised (out of memory)")
        }
        let connection = ServerConnection(handle: handle)
        try connection.setOptions(target, deadline: deadline)
        let host = connection.retain(target.host)
        let socket = connection.retain(target.socket)
        let password = target.optionFilePath != nil && target.optionFileHasPassword ? nil : connection.retain("")
        let status = mysql_real_connect_start(
            connection.connectSlot, handle, host, nil, password, nil,
            UInt32(target.port ?? 0), socket, 0)
        try connection.run(status, .connect, deadline: deadline, what: "connecting to \(target.displayName)")
        connection.releaseRetained()
        guard connection.connectSlot.pointee != nil else {
            let error = connection.lastError()
            connection.close()
            throw error
        }
        // An option file may say `reconnect`: a silent reconnect would lose a lock unnoticed.
        var off: my_bool = 0
        mysql_options(handle, MYSQL_OPT_RECONNECT, &off)
        connection.serverInfo = mysql_get_server_info(handle).map { String(cString: $0) } ?? ""
        connection.hostInfo = mysql_get_host_info(handle).map { String(cString: $0) } ?? ""
        connection.connectionID = UInt64(mysql_thread_id(handle))
        return connection
    }

    private func setOptions(_ target: ConnectionTarget, deadline: Monotonic.Instant?) throws(ServerError) {
        var stackSize = 256 * 1024  // the coroutine stack of the non-blocking calls (TLS needs room)
        var failed = mysql_options(handle, MYSQL_OPT_NONBLOCK, &stackSize) != 0
        if let deadline {
            // libmariadb's own connect timeout, in whole seconds: the whole seconds left plus one
            // (1 once the deadline has passed); ours is the precise one.
            var seconds = UInt32(clamping: (deadline - .now).wholeSeconds + 1)
            failed = failed || mysql_options(handle, MYSQL_OPT_CONNECT_TIMEOUT, &seconds) != 0
        }
        var off: my_bool = 0
        failed = failed || mysql_options(handle, MYSQL_OPT_RECONNECT, &off) != 0
        var noLocalInfile: UInt32 = 0
        failed = failed || mysql_options(handle, MYSQL_OPT_LOCAL_INFILE, &noLocalInfile) != 0
        if let file = target.optionFilePath {
            failed = failed || mysql_options(handle, MYSQL_READ_DEFAULT_FILE, file) != 0
            failed = failed || mysql_options(handle, MYSQL_READ_DEFAULT_GROUP, "client") != 0
        }
        _ = mysql_options4(handle, MYSQL_OPT_CONNECT_ATTR_ADD, "program_name", "pluginhost-mysql")
        if failed {
            let error = lastError()
            close()
            throw ServerError(
                kind: .client, code: error.code, message: "libmariadb refused an option: \(error.message)")
        }
    }

    /// Runs a statement that returns no rows (or whose rows are not wanted).
    func execute(_ sql: String, deadline: Monotonic.Instant?) throws(ServerError) {
        _ = try query(sql, deadline: deadline)
    }

    /// Runs a statement and returns its rows (empty for statements without a result set).
    @discardableResult
    func query(_ sql: String, deadline: Monotonic.Instant?) throws(ServerError) -> ResultSet {
        try send(sql)
        return try finish(deadline: deadline, what: "running \(Self.label(sql))")
    }

    /// Sends a statement without waiting for its result; `finish` collects it. Used for the
    /// lock steps (so the caller can time them) and by tests that watch a statement block.
    func send(_ sql: String) throws(ServerError) {
        try checkUsable()
        let text = strdup(sql)!
        retained.append(text)
        let status = mysql_real_query_start(statusSlot, handle, text, UInt(strlen(text)))
        pending = .query
        pendingStatus = status
    }

    /// Waits for the statement `send` started; throws `.deadline` (leaving it running) when the
    /// deadline passes first.
    func finish(deadline: Monotonic.Instant?, what: String) throws(ServerError) -> ResultSet {
        guard let operation = pending else { return ResultSet(columns: [], rows: []) }
        if operation == .query {
            try run(pendingStatus, .query, deadline: deadline, what: what)
            releaseRetained()
            if statusSlot.pointee != 0 { throw lastError() }
            guard mysql_field_count(handle) > 0 else { return ResultSet(columns: [], rows: []) }
            try run(mysql_store_result_start(resultSlot, handle), .storeResult, deadline: deadline, what: what)
        } else {
            try run(pendingStatus, operation, deadline: deadline, what: what)
        }
        guard let result = resultSlot.pointee else { throw lastError() }
        resultSlot.pointee = nil
        defer { mysql_free_result(result) }
        return Self.read(result)
    }

    /// Whether the statement `send` started has completed, waiting at most until `deadline`.
    func poll(until deadline: Monotonic.Instant?) throws(ServerError) -> Bool {
        do {
            _ = try finish(deadline: deadline, what: "waiting")
            return true
        } catch let error where error.isDeadline {
            return false
        }
    }

    /// Closes the session. Idle: a polite COM_QUIT (the server ends the session at once and
    /// releases its locks). With a call suspended: the socket is shut down first so the call
    /// ends locally; the server notices when its statement ends (or is killed).
    func close() {
        guard !handleFreed else { return }
        isClosed = true
        if pending != nil {
            let fd = Int32(mysql_get_socket(handle))
            if fd >= 0 { _ = shutdown(fd, Int32(SHUT_RDWR)) }
            var status = pendingStatus
            let limit = Monotonic.Instant.now + .seconds(1)
            while status != 0 && Monotonic.Instant.now < limit {
                status = resume(
                    pending!,
                    ready: status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT | MYSQL_WAIT_TIMEOUT))
            }
            if status != 0 {
                // The suspended call would not end: freeing the handle under it could crash, so
                // it is leaked (the socket is already shut down). Not expected to happen.
                handleFreed = true
                return
            }
            if pending == .storeResult, let result = resultSlot.pointee {
                mysql_free_result(result)
                resultSlot.pointee = nil
            }
            pending = nil
        }
        releaseRetained()
        mysql_close(handle)
        handleFreed = true
    }

    // MARK: - The non-blocking loop

    /// Drives a suspended call until it completes (status 0) or `deadline` (nil: none) passes.
    private func run(_ initial: Int32, _ operation: Operation, deadline: Monotonic.Instant?, what: String)
        throws(ServerError)
    {
        pending = operation
        pendingStatus = initial
        var status = initial
        var libraryDeadline: Monotonic.Instant?
        while status != 0 {
            let fd = Int32(mysql_get_socket(handle))
            var events: Int16 = 0
            if status & MYSQL_WAIT_READ != 0 { events |= Int16(POLLIN) }
            if status & MYSQL_WAIT_WRITE != 0 { events |= Int16(POLLOUT) }
            if status & MYSQL_WAIT_EXCEPT != 0 { events |= Int16(POLLPRI) }
            // libmariadb's own timeouts (connect/read/write timeouts from an option file).
            if status & MYSQL_WAIT_TIMEOUT != 0 {
                if libraryDeadline == nil {
                    libraryDeadline = .now + .milliseconds(mysql_get_timeout_value_ms(handle))
                }
            } else {
                libraryDeadline = nil
            }
            let wake = [deadline, libraryDeadline].compactMap { $0 }.min()
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            let count = Glibc.poll(&descriptor, 1, Monotonic.pollTimeout(until: wake))
            var ready: Int32 = 0
            if count < 0 {
                if errno == EINTR { continue }
                ready = status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE)  // let the library see the failure
            } else if count == 0 {
                let now = Monotonic.Instant.now
                if let libraryDeadline, now >= libraryDeadline {
                    ready = MYSQL_WAIT_TIMEOUT
                } else if let deadline, now >= deadline {
                    pendingStatus = status
                    throw ServerError.deadline(what)
                } else {
                    continue
                }
            } else {
                let revents = Int32(descriptor.revents)
                if revents & Int32(POLLIN) != 0 { ready |= MYSQL_WAIT_READ }
                if revents & Int32(POLLOUT) != 0 { ready |= MYSQL_WAIT_WRITE }
                if revents & Int32(POLLPRI) != 0 { ready |= MYSQL_WAIT_EXCEPT }
                if revents & Int32(POLLHUP | POLLERR | POLLNVAL) != 0 {
                    ready |= status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT)
                }
            }
            status = resume(operation, ready: ready)
            pendingStatus = status
        }
        pending = nil
        pendingStatus = 0
    }

    private func resume(_ operation: Operation, ready: Int32) -> Int32 {
        switch operation {
        case .connect: mysql_real_connect_cont(connectSlot, handle, ready)
        case .query: mysql_real_query_cont(statusSlot, handle, ready)
        case .storeResult: mysql_store_result_cont(resultSlot, handle, ready)
        }
    }

    // MARK: - Helpers

    private func checkUsable() throws(ServerError) {
        if isClosed { throw ServerError(kind: .client, code: 2006, message: "the connection is closed") }
        if pending != nil {
            throw ServerError(kind: .client, code: 2014, message: "a statement is still running on this connection")
        }
    }

    private func retain(_ text: String?) -> UnsafeMutablePointer<CChar>? {
        guard let text, let copy = strdup(text) else { return nil }
        retained.append(copy)
        return copy
    }

    private func releaseRetained() {
        for pointer in retained { free(pointer) }
        retained.removeAll()
    }

    private func lastError() -> ServerError {
        let code = mysql_errno(handle)
        let message = mysql_error(handle).map { String(cString: $0) } ?? "unknown error"
        let state = mysql_sqlstate(handle).map { String(cString: $0) } ?? "HY000"
        return ServerError(
            kind: code >= 2000 && code < 3000 ? .client : .server, code: code, sqlState: state,
            message: message.isEmpty ? "unknown error" : message)
    }

    private static func read(_ result: UnsafeMutablePointer<MYSQL_RES>) -> ResultSet {
        let count = Int(mysql_num_fields(result))
        var columns: [String] = []
        if let fields = mysql_fetch_fields(result) {
            for index in 0..<count { columns.append(fields[index].name.map { String(cString: $0) } ?? "") }
        }
        var rows: [[String?]] = []
        while let row = mysql_fetch_row(result) {
            let lengths = mysql_fetch_lengths(result)
            var values: [String?] = []
            for index in 0..<count {
                guard let cell = row[index] else {
                    values.append(nil)
                    continue
                }
                let length = lengths.map { Int($0[index]) } ?? Int(strlen(cell))
                let bytes = UnsafeRawBufferPointer(start: cell, count: length)
                values.append(String(decoding: bytes, as: UTF8.self))
            }
            rows.append(values)
        }
        return ResultSet(columns: columns, rows: rows)
    }

    /// The first words of a statement, for messages.
    static func label(_ sql: String) -> String {
        let words = sql.split(whereSeparator: \.isWhitespace).prefix(4).joined(separator: " ")
        return words.count < sql.count ? words + " …" : words
    }
}
