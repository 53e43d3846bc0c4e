import PluginKit

/// How the plugin makes the data on disk consistent (the config's `mode`).
enum LockMode: String, Sendable, CaseIterable {
    /// Pick from the server: `backup-stage` on MariaDB ≥ 10.4.1, `instance-lock` on MySQL ≥ 8.0,
    /// `flush-tables` on anything older.
    case auto
    /// MariaDB ≥ 10.4.1: BACKUP STAGE START … BLOCK_COMMIT; commits wait, reads and
    /// uncommitted work go on; InnoDB writes are not blocked while the lock is being taken.
    case backupStage = "backup-stage"
    /// MySQL ≥ 8.0: LOCK INSTANCE FOR BACKUP, then FLUSH TABLES WITH READ LOCK.
    case instanceLock = "instance-lock"
    /// Any version: FLUSH TABLES WITH READ LOCK (blocks every write while held).
    case flushTables = "flush-tables"
}

/// One statement that takes part of the lock.
struct LockStep: Sendable, Equatable {
    var sql: String
    /// Commits are blocked from the moment this step returns.
    var blocksCommits: Bool
    /// What the step waits for when it does not return at once (for PH_BUSY messages).
    var waitsFor: String
}

/// A privilege the plan needs; any one of `anyOf` is enough.
struct PrivilegeRequirement: Sendable, Equatable {
    var anyOf: [String]
    var reason: String

    var name: String { anyOf[0] }
}

/// The statements of one quiesce, chosen from the server's flavor and version. Pure: unit tests
/// check the sequence for versions no test server runs (MySQL 8.0/8.4, old MariaDB).
struct LockPlan: Sendable, Equatable {
    var mode: LockMode
    var lockSteps: [LockStep]
    var unlockStatements: [String]
    /// Reads the binary log position under the lock (nil when not recorded or binlog is off).
    var binlogStatusStatement: String?
    /// MariaDB: the GTID position is a variable, not a column of the status statement.
    var gtidStatement: String?
    /// MariaDB ≥ 10.1.2 bounds each lock step on the server with `SET STATEMENT
    /// max_statement_time=… FOR …` (MySQL's max_execution_time covers SELECT only).
    var hasStatementTimeout: Bool
    var requiredPrivileges: [PrivilegeRequirement]

    static let backupStageMinimum = ServerVersion(10, 4, 1)
    static let instanceLockMinimum = ServerVersion(8, 0, 0)
    static let binaryLogStatusMinimum = ServerVersion(8, 2, 0)  // MySQL: SHOW MASTER STATUS is gone in 8.4
    static let binlogMonitorMinimum = ServerVersion(10, 5, 2)  // MariaDB's BINLOG MONITOR privilege
    static let statementTimeoutMinimum = ServerVersion(10, 1, 2)  // MariaDB's SET STATEMENT … FOR

    /// The mode `auto` means for this server.
    static func resolve(_ mode: LockMode, for server: ServerIdentity) throws(PluginError) -> LockMode {
        switch (mode, server.flavor) {
        case (.auto, .mariadb):
            return server.version >= backupStageMinimum ? .backupStage : .flushTables
        case (.auto, .mysql):
            return server.version >= instanceLockMinimum ? .instanceLock : .flushTables
        case (.backupStage, .mysql):
            throw PluginError(
                .unsupported,
                """
                mode backup-stage needs MariaDB 10.4.1 or later; this server is \(server.summary) (use instance-lock, \
                flush-tables or auto)
                """
            )
        case (.backupStage, .mariadb) where server.version < backupStageMinimum:
            throw PluginError(
                .unsupported,
                "mode backup-stage needs MariaDB 10.4.1 or later; this server is \(server.summary) (use flush-tables or auto)"
            )
        case (.instanceLock, .mariadb):
            throw PluginError(
                .unsupported,
                "mode instance-lock needs MySQL 8.0 or later; this server is \(server.summary) (use backup-stage, flush-tables or auto)"
            )
        case (.instanceLock, .mysql) where server.version < instanceLockMinimum:
            throw PluginError(
                .unsupported,
                "mode instance-lock needs MySQL 8.0 or later; this server is \(server.summary) (use flush-tables or auto)"
            )
        default:
            return mode
        }
    }

    /// - Parameters:
    ///   - recordBinlog: the config asks for the binary log position.
    ///   - binlogEnabled: the server's `log_bin`.
    ///   - longQueryCheck: the config's threshold is above zero (the check reads PROCESSLIST).
    static func make(
        server: ServerIdentity, mode configured: LockMode, recordBinlog: Bool, binlogEnabled: Bool,
        longQueryCheck: Bool
    ) throws(PluginError) -> LockPlan {
        let mode = try resolve(configured, for: server)
        var privileges: [PrivilegeRequirement] = []
        let steps: [LockStep]
        let unlock: [String]
        switch mode {
        case .backupStage:
            steps = [
                LockStep(
                    sql: "BACKUP STAGE START", blocksCommits: false,
                    waitsFor:
                        """
                        another session is running a backup (only one BACKUP STAGE at a time, e.g. mariadb-backup) or \
                        a DDL statement is running
                        """
                ),
                LockStep(
                    sql: "BACKUP STAGE FLUSH", blocksCommits: false,
                    waitsFor: "a non-transactional (MyISAM/Aria) table is being written"),
                LockStep(
                    sql: "BACKUP STAGE BLOCK_DDL", blocksCommits: false,
                    waitsFor:
                        "a statement writing to a non-transactional (MyISAM/Aria) table or a DDL statement is still running"
                ),
                LockStep(
                    sql: "BACKUP STAGE BLOCK_COMMIT", blocksCommits: true,
                    waitsFor: "a commit or a binary log write is still in progress"),
            ]
            unlock = ["BACKUP STAGE END"]
            privileges.append(PrivilegeRequirement(anyOf: ["RELOAD"], reason: "BACKUP STAGE"))
        case .instanceLock:
            steps = [
                LockStep(
                    sql: "LOCK INSTANCE FOR BACKUP", blocksCommits: false,
                    waitsFor: "a DDL or file operation is running"),
                LockStep(
                    sql: "FLUSH TABLES WITH READ LOCK", blocksCommits: true,
                    waitsFor: "a long-running statement (a write, or a read still using a table) holds table locks"),
            ]
            unlock = ["UNLOCK TABLES", "UNLOCK INSTANCE"]
            privileges.append(PrivilegeRequirement(anyOf: ["BACKUP_ADMIN"], reason: "LOCK INSTANCE FOR BACKUP"))
            privileges.append(PrivilegeRequirement(anyOf: ["RELOAD"], reason: "FLUSH TABLES WITH READ LOCK"))
        case .flushTables, .auto:
            steps = [
                LockStep(
                    sql: "FLUSH TABLES WITH READ LOCK", blocksCommits: true,
                    waitsFor: "a long-running statement (a write, or a read still using a table) holds table locks")
            ]
            unlock = ["UNLOCK TABLES"]
            privileges.append(PrivilegeRequirement(anyOf: ["RELOAD"], reason: "FLUSH TABLES WITH READ LOCK"))
        }
        if longQueryCheck {
            privileges.append(
                PrivilegeRequirement(anyOf: ["PROCESS"], reason: "seeing other sessions' statements in PROCESSLIST"))
        }

        var statusStatement: String?
        var gtidStatement: String?
        if recordBinlog && binlogEnabled {
            switch server.flavor {
            case .mariadb:
                statusStatement = "SHOW MASTER STATUS"
                if server.version >= ServerVersion(10, 0, 2) { gtidStatement = "SELECT @@GLOBAL.gtid_binlog_pos" }
                privileges.append(
                    server.version >= binlogMonitorMinimum
                        ? PrivilegeRequirement(
                            anyOf: ["BINLOG MONITOR", "REPLICATION CLIENT", "SUPER"], reason: "SHOW MASTER STATUS")
                        : PrivilegeRequirement(anyOf: ["REPLICATION CLIENT", "SUPER"], reason: "SHOW MASTER STATUS"))
            case .mysql:
                let newName = server.version >= binaryLogStatusMinimum
                statusStatement = newName ? "SHOW BINARY LOG STATUS" : "SHOW MASTER STATUS"
                privileges.append(
                    PrivilegeRequirement(anyOf: ["REPLICATION CLIENT", "SUPER"], reason: statusStatement!))
            }
        }
        return LockPlan(
            mode: mode, lockSteps: steps, unlockStatements: unlock, binlogStatusStatement: statusStatement,
            gtidStatement: gtidStatement,
            hasStatementTimeout: server.flavor == .mariadb && server.version >= statementTimeoutMinimum,
            requiredPrivileges: privileges)
    }

    /// The text sent for `step` when at most `seconds` remain of the lock wait budget: bounded
    /// on the server by `max_statement_time` where MariaDB has it (the session's
    /// `lock_wait_timeout`, whole seconds, bounds it everywhere).
    func statement(for step: LockStep, seconds: Double) -> String {
        guard hasStatementTimeout else { return step.sql }
        return "SET STATEMENT max_statement_time=\(Self.decimal(max(seconds, 0.001))) FOR \(step.sql)"
    }

    /// Seconds as SQL decimal text with millisecond precision (`1.250`), no exponent.
    static func decimal(_ seconds: Double) -> String {
        let milliseconds = Int((seconds * 1000).rounded(.up))
        let fraction = String(milliseconds % 1000)
        return "\(milliseconds / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }

    /// A human name for the mode and its statements.
    var summary: String {
        switch mode {
        case .backupStage: "BACKUP STAGE BLOCK_COMMIT"
        case .instanceLock: "LOCK INSTANCE FOR BACKUP + FLUSH TABLES WITH READ LOCK"
        case .flushTables, .auto: "FLUSH TABLES WITH READ LOCK"
        }
    }
}
