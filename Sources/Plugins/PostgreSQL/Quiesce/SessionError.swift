/// What went wrong with a PostgreSQL session, before the plugin decides what it means for the
/// call (the same lost session is `PH_FAILED` in check and `PH_CONSISTENCY_LOST` in resume).
enum SessionError: Error, Sendable, Equatable {
    /// No server answered: connection refused, no such socket, no route, or nothing answered
    /// before the connect timeout.
    case unreachable(String)
    /// A server answered and refused the session: authentication, an unknown role or database,
    /// no pg_hba.conf entry. `needsPassword`: it asked for a password and none was available.
    case refused(String, needsPassword: Bool)
    /// The server is up but does not accept sessions now (starting up, shutting down, too many
    /// clients); `busy` for "too many clients".
    case notAccepting(String, busy: Bool)
    /// A password reached libpq from somewhere other than the verified passfile, or the password
    /// file in effect failed its check.
    case insecureCredentials(String)
    /// The deadline passed. For a statement, it was cancelled and the session closed.
    case deadlinePassed(String)
    /// The statement failed; the session is still usable.
    case statement(sqlState: String, message: String)
    /// The session broke: terminated by the server or an administrator, or the server went away.
    case sessionLost(String)

    var message: String {
        switch self {
        case .unreachable(let message), .refused(let message, _), .notAccepting(let message, _),
            .insecureCredentials(let message), .deadlinePassed(let message), .sessionLost(let message):
            message
        case .statement(let sqlState, let message): "\(message) (SQLSTATE \(sqlState))"
        }
    }
}

/// SQLSTATE codes the plugin acts on (PostgreSQL Appendix A).
enum SQLState {
    static let insufficientPrivilege = "42501"
    static let queryCanceled = "57014"
    static let objectNotInPrerequisiteState = "55000"
    static let undefinedFunction = "42883"
}
