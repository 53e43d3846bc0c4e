import PluginHostSupport
import PluginKit
import Testing

@testable import MySQLQuiesce

@Suite("MySQL plugin lock plan")
struct LockPlanTests {
    static func server(_ text: String) throws -> ServerIdentity {
        try #require(ServerIdentity.parse(text))
    }

    @Test("version strings")
    func versions() throws {
        let mariadb = try Self.server("10.11.19-MariaDB-0+deb12u1")
        #expect(mariadb.flavor == .mariadb && mariadb.version == ServerVersion(10, 11, 19))
        let prefixed = try Self.server("5.5.5-10.3.39-MariaDB-0+deb10u2")
        #expect(prefixed.flavor == .mariadb && prefixed.version == ServerVersion(10, 3, 39))
        let mysql = try Self.server("8.4.0")
        #expect(mysql.flavor == .mysql && mysql.version == ServerVersion(8, 4, 0))
        let percona = try Self.server("8.0.36-28")
        #expect(percona.flavor == .mysql && percona.version == ServerVersion(8, 0, 36))
        #expect(try Self.server("11.4.2-MariaDB-log").version == ServerVersion(11, 4, 2))
        #expect(ServerIdentity.parse("garbage") == nil)
    }

    /// Server, configured mode → lock statements, unlock statements, binlog statement, GTID
    /// statement, privileges (binlog on, long-query check on).
    static let plans: [(String, LockMode, [String], [String], String?, String?, [String])] = [
        (
            "10.11.19-MariaDB", .auto,
            ["BACKUP STAGE START", "BACKUP STAGE FLUSH", "BACKUP STAGE BLOCK_DDL", "BACKUP STAGE BLOCK_COMMIT"],
            ["BACKUP STAGE END"], "SHOW MASTER STATUS", "SELECT @@GLOBAL.gtid_binlog_pos",
            ["RELOAD", "PROCESS", "BINLOG MONITOR"]
        ),
        (
            "10.4.1-MariaDB", .auto,
            ["BACKUP STAGE START", "BACKUP STAGE FLUSH", "BACKUP STAGE BLOCK_DDL", "BACKUP STAGE BLOCK_COMMIT"],
            ["BACKUP STAGE END"], "SHOW MASTER STATUS", "SELECT @@GLOBAL.gtid_binlog_pos",
            ["RELOAD", "PROCESS", "REPLICATION CLIENT"]
        ),
        (
            "10.3.39-MariaDB", .auto, ["FLUSH TABLES WITH READ LOCK"], ["UNLOCK TABLES"],
            "SHOW MASTER STATUS", "SELECT @@GLOBAL.gtid_binlog_pos", ["RELOAD", "PROCESS", "REPLICATION CLIENT"]
        ),
        (
            "10.11.19-MariaDB", .flushTables, ["FLUSH TABLES WITH READ LOCK"], ["UNLOCK TABLES"],
            "SHOW MASTER STATUS", "SELECT @@GLOBAL.gtid_binlog_pos", ["RELOAD", "PROCESS", "BINLOG MONITOR"]
        ),
        (
            "8.0.36", .auto, ["LOCK INSTANCE FOR BACKUP", "FLUSH TABLES WITH READ LOCK"],
            ["UNLOCK TABLES", "UNLOCK INSTANCE"],
            "SHOW MASTER STATUS", nil, ["BACKUP_ADMIN", "RELOAD", "PROCESS", "REPLICATION CLIENT"]
        ),
        (
            "8.2.0", .auto, ["LOCK INSTANCE FOR BACKUP", "FLUSH TABLES WITH READ LOCK"],
            ["UNLOCK TABLES", "UNLOCK INSTANCE"],
            "SHOW BINARY LOG STATUS", nil, ["BACKUP_ADMIN", "RELOAD", "PROCESS", "REPLICATION CLIENT"]
        ),
        (
            "8.4.3", .instanceLock, ["LOCK INSTANCE FOR BACKUP", "FLUSH TABLES WITH READ LOCK"],
            ["UNLOCK TABLES", "UNLOCK INSTANCE"],
            "SHOW BINARY LOG STATUS", nil, ["BACKUP_ADMIN", "RELOAD", "PROCESS", "REPLICATION CLIENT"]
        ),
        (
            "8.4.3", .flushTables, ["FLUSH TABLES WITH READ LOCK"], ["UNLOCK TABLES"],
            "SHOW BINARY LOG STATUS", nil, ["RELOAD", "PROCESS", "REPLICATION CLIENT"]
        ),
        (
            "5.7.44-log", .auto, ["FLUSH TABLES WITH READ LOCK"], ["UNLOCK TABLES"],
            "SHOW MASTER STATUS", nil, ["RELOAD", "PROCESS", "REPLICATION CLIENT"]
        ),
    ]

    @Test("statements per flavor, version and mode", arguments: plans)
    func plan(
        _ version: String, _ mode: LockMode, _ lock: [String], _ unlock: [String], _ binlog: String?,
        _ gtid: String?, _ privileges: [String]
    ) throws {
        let plan = try LockPlan.make(
            server: Self.server(version), mode: mode, recordBinlog: true, binlogEnabled: true,
            longQueryCheck: true)
        #expect(plan.lockSteps.map(\.sql) == lock)
        #expect(plan.lockSteps.filter(\.blocksCommits).map(\.sql) == [lock.last!])
        #expect(plan.unlockStatements == unlock)
        #expect(plan.binlogStatusStatement == binlog)
        #expect(plan.gtidStatement == gtid)
        #expect(plan.requiredPrivileges.map(\.name) == privileges)
    }

    @Test("no binlog statements without log_bin or when not asked; no PROCESS without the long-query check")
    func optionalParts() throws {
        let server = try Self.server("10.11.19-MariaDB")
        let off = try LockPlan.make(
            server: server, mode: .auto, recordBinlog: true, binlogEnabled: false, longQueryCheck: false)
        #expect(off.binlogStatusStatement == nil && off.gtidStatement == nil)
        #expect(off.requiredPrivileges.map(\.name) == ["RELOAD"])
        let notAsked = try LockPlan.make(
            server: server, mode: .auto, recordBinlog: false, binlogEnabled: true, longQueryCheck: true)
        #expect(notAsked.binlogStatusStatement == nil)
        #expect(notAsked.requiredPrivileges.map(\.name) == ["RELOAD", "PROCESS"])
    }

    static let unsupported: [(String, LockMode, String)] = [
        ("8.0.36", .backupStage, "MariaDB 10.4.1"),
        ("10.3.39-MariaDB", .backupStage, "MariaDB 10.4.1"),
        ("10.11.19-MariaDB", .instanceLock, "MySQL 8.0"),
        ("5.7.44", .instanceLock, "MySQL 8.0"),
    ]

    @Test("a forced mode the server lacks is PH_UNSUPPORTED", arguments: unsupported)
    func unsupportedMode(_ version: String, _ mode: LockMode, _ needs: String) throws {
        let server = try Self.server(version)
        let error = expectPluginError(.unsupported) {
            _ = try LockPlan.make(
                server: server, mode: mode, recordBinlog: false, binlogEnabled: false, longQueryCheck: false)
        }
        #expect(error?.message.contains(needs) == true)
    }

    @Test("lock steps are bounded on the server where MariaDB can")
    func statementTimeout() throws {
        let mariadb = try LockPlan.make(
            server: Self.server("10.11.19-MariaDB"), mode: .auto, recordBinlog: false,
            binlogEnabled: false, longQueryCheck: false)
        #expect(
            mariadb.statement(for: mariadb.lockSteps[0], seconds: 1.25)
                == "SET STATEMENT max_statement_time=1.250 FOR BACKUP STAGE START")
        #expect(
            mariadb.statement(for: mariadb.lockSteps[3], seconds: 0)
                == "SET STATEMENT max_statement_time=0.001 FOR BACKUP STAGE BLOCK_COMMIT")
        let old = try LockPlan.make(
            server: Self.server("10.0.38-MariaDB"), mode: .auto, recordBinlog: false,
            binlogEnabled: false, longQueryCheck: false)
        #expect(old.statement(for: old.lockSteps[0], seconds: 2) == "FLUSH TABLES WITH READ LOCK")
        let mysql = try LockPlan.make(
            server: Self.server("8.0.36"), mode: .auto, recordBinlog: false, binlogEnabled: false,
            longQueryCheck: false)
        #expect(mysql.statement(for: mysql.lockSteps[1], seconds: 2) == "FLUSH TABLES WITH READ LOCK")
        #expect(LockPlan.decimal(2) == "2.000" && LockPlan.decimal(0.0504) == "0.051")
    }
}

@Suite("MySQL plugin grants, processlist, paths, timing")
struct PureLogicTests {
    @Test("SHOW GRANTS parsing never keeps more than privilege names")
    func grants() {
        let mariadb = GrantSet.parse([
            "GRANT RELOAD, PROCESS, BINLOG MONITOR ON *.* TO `backup`@`localhost` IDENTIFIED BY PASSWORD '*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29'",
            "GRANT SELECT ON `app`.* TO `backup`@`localhost`",
        ])
        #expect(!mariadb.all)
        #expect(mariadb.privileges == ["RELOAD", "PROCESS", "BINLOG MONITOR"])
        #expect(!mariadb.privileges.contains { $0.contains("94BD") })

        let root = GrantSet.parse(["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"])
        #expect(root.all && root.satisfies(PrivilegeRequirement(anyOf: ["BACKUP_ADMIN"], reason: "")))

        let mysql = GrantSet.parse([
            "GRANT RELOAD, PROCESS, REPLICATION CLIENT ON *.* TO `backup`@`%`",
            "GRANT BACKUP_ADMIN ON *.* TO `backup`@`%`",
            "GRANT `dba`@`%` TO `backup`@`%`",
        ])
        let requirements = [
            PrivilegeRequirement(anyOf: ["BACKUP_ADMIN"], reason: "a"),
            PrivilegeRequirement(anyOf: ["RELOAD"], reason: "b"),
            PrivilegeRequirement(anyOf: ["REPLICATION CLIENT", "SUPER"], reason: "c"),
            PrivilegeRequirement(anyOf: ["PROCESS"], reason: "d"),
        ]
        #expect(mysql.missing(requirements).isEmpty)
        let usage = GrantSet.parse(["GRANT USAGE ON *.* TO `limited`@`localhost`"])
        #expect(usage.missing(requirements).map(\.name) == ["BACKUP_ADMIN", "RELOAD", "REPLICATION CLIENT", "PROCESS"])
        #expect(
            GrantSet.grantStatement(for: usage.missing(requirements), account: "'limited'@'localhost'")
                == "GRANT BACKUP_ADMIN, RELOAD, REPLICATION CLIENT, PROCESS ON *.* TO 'limited'@'localhost'")
        #expect(MySQLPlugin.quoted("test@localhost") == "'test'@'localhost'")
    }

    @Test("statement keywords and which statements delay the lock per mode")
    func longQueries() {
        #expect(LongQueryCheck.firstKeyword("  select 1") == "SELECT")
        #expect(LongQueryCheck.firstKeyword("/* app */ UPDATE t SET v = 1") == "UPDATE")
        #expect(LongQueryCheck.firstKeyword("-- note\nDELETE FROM t") == "DELETE")
        #expect(LongQueryCheck.firstKeyword("(SELECT 1) UNION (SELECT 2)") == "SELECT")
        #expect(LongQueryCheck.firstKeyword("") == "")
        let running = [
            LongQueryCheck.RunningStatement(
                id: "7", user: "app", database: "shop", command: "Query", seconds: 12,
                state: "User sleep", keyword: "SELECT"),
            LongQueryCheck.RunningStatement(
                id: "9", user: "app", database: "shop", command: "Query", seconds: 3,
                state: "Updating", keyword: "UPDATE"),
        ]
        #expect(LongQueryCheck.blocking(running, mode: .backupStage).map(\.id) == ["9"])
        #expect(LongQueryCheck.blocking(running, mode: .flushTables).map(\.id) == ["7", "9"])
        #expect(LongQueryCheck.blocking(running, mode: .instanceLock).map(\.id) == ["7", "9"])
        #expect(
            LongQueryCheck.describe(running)
                == "session 7 (app) SELECT running for 12 s, User sleep; session 9 (app) UPDATE running for 3 s, Updating"
        )
        #expect(LongQueryCheck.query(flavor: .mariadb, threshold: 1.5).contains("TIME_MS >= 1500"))
        #expect(LongQueryCheck.query(flavor: .mysql, threshold: 1.5).contains("TIME >= 2"))
    }

    @Test("directories from server variables")
    func directories() {
        let variables = ResultSet(
            columns: ["Variable_name", "Value"],
            rows: [
                ["datadir", "/var/lib/mysql/"], ["innodb_data_home_dir", ""], ["innodb_log_group_home_dir", "./"],
                ["innodb_undo_directory", "undo"], ["aria_log_dir_path", "/var/lib/mysql/"], ["log_bin", "ON"],
                ["log_bin_basename", "/var/log/mysql/mariadb-bin"],
            ])
        let directories = DataDirectories.from(variables: variables)
        #expect(directories.binlogEnabled)
        #expect(
            directories.entries.map(\.key) == [
                "datadir", "innodb_data_dir", "innodb_log_dir", "innodb_undo_dir", "aria_log_dir", "binlog_dir",
            ])
        #expect(
            directories.entries.map(\.path) == [
                "/var/lib/mysql", "/var/lib/mysql", "/var/lib/mysql", "/var/lib/mysql/undo",
                "/var/lib/mysql", "/var/log/mysql",
            ])
        #expect(directories.distinctPaths == ["/var/lib/mysql", "/var/lib/mysql/undo", "/var/log/mysql"])

        let mysql = DataDirectories.from(
            variables: ResultSet(
                columns: ["Variable_name", "Value"],
                rows: [
                    ["datadir", "/data/mysql/"], ["innodb_log_group_home_dir", "/redo"], ["log_bin", "OFF"],
                    ["log_bin_basename", "/data/mysql/binlog"],
                ]))
        #expect(!mysql.binlogEnabled)
        #expect(mysql.entries.map(\.key) == ["datadir", "innodb_log_dir"])
        #expect(mysql.distinctPaths == ["/data/mysql", "/redo"])
    }

    @Test("dead-man switch, budgets, number formats")
    func timing() {
        let now = Monotonic.Instant(nanoseconds: 1_000_000_000_000)
        #expect(MySQLPlugin.holdTimeout(holdUntil: nil, now: now) == MySQLPlugin.fallbackHoldSeconds)
        #expect(MySQLPlugin.holdTimeout(holdUntil: now + .seconds(60), now: now) == 62)
        #expect(MySQLPlugin.holdTimeout(holdUntil: now + .milliseconds(1_500), now: now) == 4)
        // A started second counts: 60 s and 1 ns is 61 s, plus the margin.
        #expect(MySQLPlugin.holdTimeout(holdUntil: now + .seconds(60) + .nanoseconds(1), now: now) == 63)
        #expect(MySQLPlugin.holdTimeout(holdUntil: now, now: now) == 2)
        #expect(MySQLPlugin.holdTimeout(holdUntil: now - .nanoseconds(1), now: now) == 2)
        // At most a year (31_536_000 s).
        #expect(MySQLPlugin.holdTimeout(holdUntil: .max, now: now) == 31_536_000)
        #expect(MySQLPlugin.holdTimeout(holdUntil: now + .seconds(31_535_998), now: now) == 31_536_000)
        #expect(MySQLPlugin.holdTimeout(holdUntil: now + .seconds(31_535_997), now: now) == 31_535_999)

        let none = CallBudget(deadline: nil, now: now)
        #expect(none.work == now + .seconds(60) && !none.hasCallDeadline)
        let tenSeconds = CallBudget(deadline: now + .seconds(10), now: now)
        #expect(tenSeconds.work == now + .milliseconds(9_500) && tenSeconds.hasCallDeadline)
        let short = CallBudget(deadline: now + .milliseconds(100), now: now)
        #expect(short.work == now + .milliseconds(50))
        let passed = CallBudget(deadline: now - .nanoseconds(1), now: now)
        #expect(passed.work == now)
        // A fifth of the time left, truncated to whole nanoseconds: 1 s + 4 ns keeps 200 ms back.
        let uneven = CallBudget(deadline: now + .seconds(1) + .nanoseconds(4), now: now)
        #expect(uneven.work == now + .milliseconds(800) + .nanoseconds(4))
        let oneMore = CallBudget(deadline: now + .seconds(1) + .nanoseconds(5), now: now)
        #expect(oneMore.work == now + .milliseconds(800) + .nanoseconds(4))

        #expect(milliseconds(.nanoseconds(840_000)) == "0.84")
        #expect(milliseconds(.nanoseconds(1_234_567_890)) == "1234.57")
        #expect(milliseconds(.nanoseconds(1_234_565_000)) == "1234.57")  // half up
        #expect(milliseconds(.nanoseconds(1_234_564_999)) == "1234.56")
        #expect(milliseconds(.zero) == "0.00")
        #expect(secondsText(2) == "2" && secondsText(0.5) == "0.5")
    }
}
