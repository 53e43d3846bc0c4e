/// A failed exchange with the server: libmariadb's error number, SQLSTATE and message, or a
/// deadline that passed while a call was still in progress (the statement may still be running
/// on the server: the caller must abort the connection).
struct ServerError: Error, Sendable, CustomStringConvertible {
    enum Kind: Sendable, Equatable {
        /// The server answered with an error (`mysql_errno` below 2000).
        case server
        /// libmariadb reported a client-side failure (2000–2999: connection, protocol).
        case client
        /// Our deadline passed before the call completed.
        case deadline
    }

    let kind: Kind
    let code: UInt32
    let sqlState: String
    let message: String

    init(kind: Kind, code: UInt32, sqlState: String = "HY000", message: String) {
        self.kind = kind
        self.code = code
        self.sqlState = sqlState
        self.message = message
    }

    static func deadline(_ what: String) -> ServerError {
        ServerError(kind: .deadline, code: 0, message: "no answer before the deadline while \(what)")
    }

    var description: String {
        kind == .deadline ? message : "\(message) (error \(code), SQLSTATE \(sqlState))"
    }

    var isDeadline: Bool { kind == .deadline }

    /// The session is gone: the server closed it (KILL, idle timeout, restart) or the link broke.
    var isConnectionLost: Bool {
        ServerErrorCode.connectionLost.contains(code)
    }

    /// A lock wait or statement time limit ended the statement (the session is still usable).
    var isLockWaitTimeout: Bool {
        ServerErrorCode.lockWaitTimeout.contains(code)
    }

    /// The login was refused or a privilege is missing.
    var isAccessDenied: Bool {
        ServerErrorCode.accessDenied.contains(code)
    }
}

/// The error numbers this plugin reacts to (errmsg.h for 2xxx, the servers' error lists below).
enum ServerErrorCode {
    static let tooManyConnections: UInt32 = 1040  // ER_CON_COUNT_ERROR
    static let userTooManyConnections: UInt32 = 1203  // ER_TOO_MANY_USER_CONNECTIONS
    static let specificAccessDenied: UInt32 = 1227  // ER_SPECIFIC_ACCESS_DENIED_ERROR: needs a privilege

    /// CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED, ER_SERVER_SHUTDOWN,
    /// ER_NET_READ_ERROR, ER_NET_READ_INTERRUPTED, ER_NET_ERROR_ON_WRITE, ER_NET_WRITE_INTERRUPTED,
    /// MariaDB's ER_CONNECTION_KILLED, MySQL 8.0.24+'s ER_CLIENT_INTERACTION_TIMEOUT.
    static let connectionLost: Set<UInt32> = [2006, 2013, 2055, 1053, 1158, 1159, 1160, 1161, 1927, 4031]

    /// ER_LOCK_WAIT_TIMEOUT, MariaDB's ER_STATEMENT_TIMEOUT (max_statement_time),
    /// MySQL's ER_QUERY_TIMEOUT (max_execution_time).
    static let lockWaitTimeout: Set<UInt32> = [1205, 1969, 3024]

    /// ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_HOST_NOT_PRIVILEGED,
    /// ER_NOT_SUPPORTED_AUTH_MODE, ER_ACCESS_DENIED_NO_PASSWORD_ERROR (unix_socket refused),
    /// ER_MUST_CHANGE_PASSWORD(_LOGIN), CR_AUTH_PLUGIN_CANNOT_LOAD, CR_AUTH_PLUGIN_ERR.
    static let accessDenied: Set<UInt32> = [1044, 1045, 1130, 1251, 1698, 1820, 1862, 2059, 2061]

    /// libmariadb could not reach the server at all: CR_CONNECTION_ERROR (socket),
    /// CR_CONN_HOST_ERROR (TCP), CR_UNKNOWN_HOST, CR_SSL_CONNECTION_ERROR.
    static let unreachable: Set<UInt32> = [2002, 2003, 2005, 2026]
}
