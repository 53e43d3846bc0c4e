/// Before taking the lock: is a statement running that would make the lock wait (and, while it
/// waits, stall other sessions)? Read from information_schema.PROCESSLIST, which needs the
/// PROCESS privilege to show other accounts' sessions.
///
/// Measured on MariaDB 10.11: BACKUP STAGE is not delayed by reads or by InnoDB writes, but
/// BLOCK_DDL waits for a running write to a MyISAM/Aria table (meanwhile MyISAM writers stall);
/// FLUSH TABLES WITH READ LOCK waiting behind any long write stalls every writer, and on MySQL
/// it also waits for long reads ("Waiting for table flush"). So in `backup-stage` mode reads are
/// ignored, and writes of any engine count (PROCESSLIST does not say which engine a statement
/// writes to); the other modes count every statement.
enum LongQueryCheck {
    struct RunningStatement: Sendable, Equatable {
        var id: String
        var user: String
        var database: String
        var command: String
        var seconds: Double
        var state: String
        /// The statement's first keyword only (the text may hold data or secrets).
        var keyword: String
    }

    /// Sessions busy for at least `threshold` seconds, longest first, excluding this session,
    /// idle ones, server threads and replication.
    static func query(flavor: ServerFlavor, threshold: Double) -> String {
        let age =
            flavor == .mariadb
            ? "TIME_MS >= \(Int((threshold * 1000).rounded(.up)))"
            : "TIME >= \(Int(threshold.rounded(.up)))"
        let seconds = flavor == .mariadb ? "TIME_MS / 1000" : "TIME"
        return """
            SELECT ID, USER, COALESCE(DB, ''), COMMAND, \(seconds), COALESCE(STATE, ''), LEFT(COALESCE(INFO, ''), 64) \
            FROM information_schema.PROCESSLIST \
            WHERE ID <> CONNECTION_ID() \
            AND COMMAND NOT IN ('Sleep', 'Daemon', 'Connect', 'Binlog Dump', 'Binlog Dump GTID', \
            'Slave_IO', 'Slave_SQL', 'Slave_worker') \
            AND USER NOT IN ('system user', 'event_scheduler') \
            AND \(age) ORDER BY 5 DESC LIMIT 20
            """
    }

    static func rows(_ result: ResultSet) -> [RunningStatement] {
        result.rows.map { row in
            func cell(_ index: Int) -> String { index < row.count ? row[index] ?? "" : "" }
            return RunningStatement(
                id: cell(0), user: cell(1), database: cell(2), command: cell(3),
                seconds: Double(cell(4)) ?? 0, state: cell(5), keyword: firstKeyword(cell(6)))
        }
    }

    /// The statements that would delay the lock in `mode`.
    static func blocking(_ statements: [RunningStatement], mode: LockMode) -> [RunningStatement] {
        guard mode == .backupStage else { return statements }
        return statements.filter { !readOnlyKeywords.contains($0.keyword) }
    }

    static let readOnlyKeywords: Set<String> = [
        "SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "HELP", "WITH", "VALUES", "TABLE",
    ]

    /// The first SQL keyword, upper-cased, after leading blanks, comments and parentheses.
    static func firstKeyword(_ text: String) -> String {
        var rest = Substring(text)
        while true {
            rest = rest.drop { $0.isWhitespace || $0 == "(" }
            if rest.hasPrefix("/*") {
                guard let end = rest.firstRange(of: "*/") else { return "" }
                rest = rest[end.upperBound...]
            } else if rest.hasPrefix("-- ") || rest.hasPrefix("#") {
                guard let end = rest.firstIndex(where: \.isNewline) else { return "" }
                rest = rest[end...]
            } else {
                break
            }
        }
        return rest.prefix { $0.isLetter || $0 == "_" }.uppercased()
    }

    /// One line naming the statements, for PH_BUSY.
    static func describe(_ statements: [RunningStatement]) -> String {
        let shown = statements.prefix(3).map { statement in
            let what = statement.keyword.isEmpty ? statement.command : statement.keyword
            let state = statement.state.isEmpty ? "" : ", \(statement.state)"
            return "session \(statement.id) (\(statement.user)) \(what) running for \(Int(statement.seconds)) s\(state)"
        }
        let more = statements.count > 3 ? " and \(statements.count - 3) more" : ""
        return shown.joined(separator: "; ") + more
    }
}
