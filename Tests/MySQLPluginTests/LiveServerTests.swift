import Foundation
import PluginHostSupport
import PluginKit
import Testing

@testable import MySQLQuiesce

/// Against the real MariaDB of `scripts/db/start-mariadb.sh` (enabled when MARIADB_SOCKET is
/// set). Serialized: only one BACKUP STAGE can exist at a time on the server. Time bounds are
/// generous: they tell "bounded" from "hangs"; the measured figures are printed.
@Suite("MySQL plugin against MariaDB", .serialized, .enabled(if: MariaDBServer.available))
struct LiveServerTests {
    // MARK: check and data paths

    @Test("check reports server, mode, privileges, directories and whether they are frozen")
    func checkReports() throws {
        let fixture = try Fixture()
        let configured = try #require(fixture.server.dataDirectory)
        let data = try #require(DataDirectories.realPath(configured))
        let plugin = try fixture.plugin(freezeMounts: [data])
        var call = PluginCall(deadline: deadline(10))
        try plugin.check(&call)
        print("check: \(call.summary ?? "")")
        for (key, value) in call.details { print("  \(key)=\(value)") }
        #expect(call.detailValue("server_flavor") == "MariaDB")
        #expect(call.detailValue("server_version")?.contains("MariaDB") == true)
        #expect(call.detailValue("mode") == "backup-stage")
        #expect(call.detailValue("connection")?.contains("socket") == true)
        #expect(call.detailValue("account")?.hasPrefix("\(fixture.server.user)@") == true)
        #expect(call.detailValue("privileges_required")?.hasPrefix("RELOAD,PROCESS") == true)
        #expect(call.detailValue("datadir") == data)
        #expect(call.detailValue("innodb_log_dir") == data)
        #expect(call.detailValue("datadir.frozen") == "yes (\(data))")
        #expect(call.detailValue("binlog") != nil)
        #expect(call.summary?.contains("privileges OK") == true)
        #expect(call.summary?.contains("warning") == false)

        var elsewhere = PluginCall(deadline: deadline(10))
        try fixture.plugin(freezeMounts: ["/proc"]).check(&elsewhere)
        #expect(elsewhere.detailValue("datadir.frozen") == "no")
        #expect(elsewhere.summary?.contains("warning: \(data) (datadir, ") == true)

        var pathsCall = PluginCall(deadline: deadline(10))
        let paths = try plugin.dataPaths(&pathsCall)
        #expect(paths.first == data)
        #expect(paths.allSatisfy { $0.hasPrefix("/") && DataDirectories.realPath($0) == $0 })
        #expect(Set(paths).count == paths.count)
        print("dataPaths: \(paths)")
    }

    @Test("check over TCP (host and port)")
    func checkOverTCP() throws {
        let fixture = try Fixture()
        let plugin = try fixture.plugin([
            "socket": .null, "host": .string(fixture.server.host),
            "port": .number(JSONNumber(fixture.server.port)),
        ])
        var call = PluginCall(deadline: deadline(10))
        try plugin.check(&call)
        #expect(call.detailValue("connection")?.contains("TCP") == true)
    }

    @Test("without optionFile: root through the socket with unix_socket authentication")
    func noOptionFile() throws {
        let fixture = try Fixture()
        let plugin = try fixture.plugin(["optionFile": .null])
        var call = PluginCall(deadline: deadline(10))
        try plugin.check(&call)
        #expect(call.detailValue("account") == "root@localhost")
        #expect(call.detailValue("option_file") == nil)
        var quiesceCall = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        try plugin.quiesce(&quiesceCall)
        var resumeCall = PluginCall(deadline: deadline(10))
        try plugin.resume(&resumeCall)
        #expect(resumeCall.detailValue("commits_blocked_ms") != nil)
    }

    // MARK: the hold

    @Test("during the hold a COMMIT waits and reads go on; after resume it proceeds")
    func holdBlocksCommits() throws {
        let fixture = try Fixture()
        let innodb = uniqueName("hold_innodb")
        let myisam = uniqueName("hold_myisam")
        try fixture.table(innodb, engine: "InnoDB")
        try fixture.table(myisam, engine: "MyISAM")
        defer { fixture.dropTables(innodb, myisam) }

        let writer = try fixture.session()
        try writer.execute("BEGIN", deadline: deadline(5))
        try writer.execute("UPDATE \(innodb) SET v = v + 1 WHERE id = 1", deadline: deadline(5))

        let plugin = try fixture.plugin()
        var call = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        let quiesceStart = Monotonic.now()
        try plugin.quiesce(&call)
        let quiesceMs = elapsedMilliseconds(since: quiesceStart)
        print("quiesce: \(call.summary ?? "") in \(quiesceMs) ms")
        for (key, value) in call.details { print("  \(key)=\(value)") }
        #expect(call.detailValue("mode") == "backup-stage")
        #expect(call.detailValue("lock_steps")?.contains("BACKUP STAGE BLOCK_COMMIT") == true)

        try writer.send("COMMIT")
        #expect(try !writer.poll(until: deadline(0.5)), "the COMMIT went through during the hold")

        let reader = try fixture.session()
        let readStart = Monotonic.now()
        #expect(try reader.query("SELECT COUNT(*) FROM \(innodb)", deadline: deadline(5)).firstValue == "4")
        #expect(try reader.query("SELECT COUNT(*) FROM \(myisam)", deadline: deadline(5)).firstValue == "4")
        let readMs = elapsedMilliseconds(since: readStart)
        let uncommittedStart = Monotonic.now()
        try reader.execute("BEGIN", deadline: deadline(5))
        try reader.execute("UPDATE \(innodb) SET v = v + 10 WHERE id = 2", deadline: deadline(5))
        let uncommittedMs = elapsedMilliseconds(since: uncommittedStart)
        print("during the hold: 2 reads took \(readMs) ms, an uncommitted InnoDB update \(uncommittedMs) ms")
        #expect(readMs < 3000 && uncommittedMs < 3000)

        var resumeCall = PluginCall(deadline: deadline(10))
        let resumeStart = Monotonic.now()
        try plugin.resume(&resumeCall)
        let resumeMs = elapsedMilliseconds(since: resumeStart)
        #expect(try writer.poll(until: deadline(5)), "the COMMIT did not proceed after resume")
        let blocked = try #require(resumeCall.detailValue("commits_blocked_ms"))
        print(
            "resume: \(resumeCall.summary ?? "") in \(resumeMs) ms; commits_blocked_ms=\(blocked), unlock_ms=\(resumeCall.detailValue("unlock_ms") ?? "?")"
        )
        try reader.execute("ROLLBACK", deadline: deadline(5))
        #expect(try reader.query("SELECT v FROM \(innodb) WHERE id = 1", deadline: deadline(5)).firstValue == "1")

        var again = PluginCall(deadline: deadline(10))
        try plugin.resume(&again)
        #expect(again.summary?.contains("nothing to resume") == true)
    }

    @Test("idle figures: commits blocked per quiesce/resume cycle")
    func idleFigures() throws {
        let fixture = try Fixture()
        let plugin = try fixture.plugin(["recordBinlogPosition": .bool(false)])
        var blocked: [Double] = []
        var acquire: [Double] = []
        for _ in 0..<10 {
            var call = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
            try plugin.quiesce(&call)
            var resumeCall = PluginCall(deadline: deadline(10))
            try plugin.resume(&resumeCall)
            blocked.append(Double(resumeCall.detailValue("commits_blocked_ms") ?? "") ?? -1)
            acquire.append(Double(call.detailValue("lock_acquire_ms") ?? "") ?? -1)
        }
        blocked.sort()
        acquire.sort()
        print(
            "idle, 10 cycles: lock_acquire_ms median \(acquire[5]) max \(acquire[9]); commits_blocked_ms (no snapshot in between) median \(blocked[5]) max \(blocked[9])"
        )
        #expect(blocked.allSatisfy { $0 >= 0 })
    }

    @Test("figures under a write load: lock acquisition, commits blocked, the longest commit a writer saw")
    func loadFigures() throws {
        let fixture = try Fixture()
        let table = uniqueName("load_innodb")
        try fixture.table(table, engine: "InnoDB")
        defer { fixture.dropTables(table) }
        let target = ConnectionTarget(
            socket: fixture.server.socket, optionFilePath: fixture.optionFile, optionFileHasPassword: true)
        let load = WriteLoad(target: target, database: fixture.server.database, table: table, writers: 2, seconds: 3)
        Thread.sleep(forTimeInterval: 0.3)
        let plugin = try fixture.plugin()
        var acquire: [Double] = []
        var blocked: [Double] = []
        for _ in 0..<5 {
            var call = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
            try plugin.quiesce(&call)
            Thread.sleep(forTimeInterval: 0.05)  // the snapshot
            var resumeCall = PluginCall(deadline: deadline(10))
            try plugin.resume(&resumeCall)
            acquire.append(Double(call.detailValue("lock_acquire_ms") ?? "") ?? -1)
            blocked.append(Double(resumeCall.detailValue("commits_blocked_ms") ?? "") ?? -1)
            Thread.sleep(forTimeInterval: 0.3)
        }
        let figures = load.wait()
        acquire.sort()
        blocked.sort()
        print(
            "under load (2 writers, \(figures.commits) commits in 3 s): lock_acquire_ms median \(acquire[2]) max \(acquire[4]); "
                + "commits_blocked_ms with a 50 ms hold median \(blocked[2]) max \(blocked[4]); longest commit a writer saw \(figures.maximumMilliseconds) ms"
        )
        #expect(figures.errors.isEmpty, "\(figures.errors)")
        #expect(figures.commits > 0)
        #expect(figures.maximumMilliseconds < 5000)
    }

    @Test("binary log position and GTID when enabled, or a clear note that the binlog is off")
    func binlogPosition() throws {
        let fixture = try Fixture()
        let logBin = try fixture.session().query("SELECT @@GLOBAL.log_bin", deadline: deadline(5)).firstValue == "1"
        let plugin = try fixture.plugin(["recordBinlogPosition": .bool(true)])
        var call = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        try plugin.quiesce(&call)
        var resumeCall = PluginCall(deadline: deadline(10))
        try plugin.resume(&resumeCall)
        print("log_bin=\(logBin ? "ON" : "OFF"): \(call.summary ?? "")")
        if logBin {
            #expect(call.detailValue("binlog_file")?.isEmpty == false)
            #expect(call.detailValue("binlog_position").flatMap { UInt64($0) } != nil)
            #expect(call.detailValue("gtid_binlog_pos") != nil)
        } else {
            #expect(call.detailValue("binlog") == "disabled")
            #expect(call.summary?.contains("binary log disabled: no position recorded") == true)
            #expect(call.detailValue("binlog_file") == nil)
        }

        var checkCall = PluginCall(deadline: deadline(10))
        try fixture.plugin(["recordBinlogPosition": .bool(true)]).check(&checkCall)
        #expect(checkCall.detailValue("binlog") == (logBin ? "enabled" : "disabled"))

        let quiet = try fixture.plugin(["recordBinlogPosition": .bool(false)])
        var quietCall = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        try quiet.quiesce(&quietCall)
        var quietResume = PluginCall(deadline: deadline(10))
        try quiet.resume(&quietResume)
        #expect(quietCall.detailValue("binlog") == nil && quietCall.detailValue("binlog_file") == nil)
    }

    @Test("a MyISAM table copied during the hold is closed properly (myisamchk), unlike one copied without")
    func myisamCopyIsClean() throws {
        let fixture = try Fixture()
        let data = try #require(fixture.server.dataDirectory)
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/myisamchk") else {
            print("myisamchk not installed: skipped")
            return
        }
        let table = uniqueName("copy_myisam")
        try fixture.table(table, engine: "MyISAM")
        defer { fixture.dropTables(table) }
        let writer = try fixture.session()
        let copies = try TemporaryDirectory()

        func copyAndCheck(_ name: String) throws -> String {
            let target = "\(copies.path)/\(name)"
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
            for suffix in ["frm", "MYD", "MYI"] {
                try FileManager.default.copyItem(
                    atPath: "\(data)/\(fixture.server.database)/\(table).\(suffix)",
                    toPath: "\(target)/\(table).\(suffix)")
            }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/myisamchk")
            process.arguments = ["--check", "--read-only", "\(target)/\(table)"]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return output
        }

        try writer.execute("INSERT INTO \(table) VALUES (100, 1)", deadline: deadline(5))
        let unquiesced = try copyAndCheck("plain")
        print("copy without quiesce: \(unquiesced.split(separator: "\n").filter { $0.contains("warning") })")
        #expect(unquiesced.contains("hasn't closed the table properly"))

        try writer.execute("INSERT INTO \(table) VALUES (101, 1)", deadline: deadline(5))
        let plugin = try fixture.plugin()
        var call = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        try plugin.quiesce(&call)
        let quiesced = try copyAndCheck("quiesced")
        var resumeCall = PluginCall(deadline: deadline(10))
        try plugin.resume(&resumeCall)
        #expect(!quiesced.contains("warning"), "\(quiesced)")
        #expect(!quiesced.contains("error"), "\(quiesced)")
    }

    // MARK: refusals and bounds

    @Test("a long-running write makes quiesce refuse at once (PH_BUSY) without stalling other writers")
    func longWriteRefused() throws {
        let fixture = try Fixture()
        let slowTable = uniqueName("slow_myisam")
        let otherMyISAM = uniqueName("other_myisam")
        let innodb = uniqueName("other_innodb")
        try fixture.table(slowTable, engine: "MyISAM")
        try fixture.table(otherMyISAM, engine: "MyISAM")
        try fixture.table(innodb, engine: "InnoDB")
        defer { fixture.dropTables(slowTable, otherMyISAM, innodb) }

        let slow = try fixture.session()
        try slow.send("UPDATE \(slowTable) SET v = SLEEP(1)")  // four rows: about 4 s
        Thread.sleep(forTimeInterval: 1.3)

        let plugin = try fixture.plugin([
            "longQueryThresholdSeconds": .number(JSONNumber(1)),
            "lockWaitTimeoutSeconds": .number(JSONNumber(2)),
        ])
        var call = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        let start = Monotonic.now()
        let error = expectPluginError(.busy) { try plugin.quiesce(&call) }
        let refusedMs = elapsedMilliseconds(since: start)
        print("refused in \(refusedMs) ms: \(error?.message ?? "")")
        #expect(error?.message.contains("UPDATE running for") == true)
        #expect(refusedMs < 2000, "not refused within lockWaitTimeoutSeconds")

        let writer = try fixture.session()
        let writeStart = Monotonic.now()
        try writer.execute("INSERT INTO \(otherMyISAM) VALUES (100, 1)", deadline: deadline(10))
        try writer.execute("INSERT INTO \(innodb) VALUES (100, 1)", deadline: deadline(10))
        let writeMs = elapsedMilliseconds(since: writeStart)
        print("other writers after the refusal: \(writeMs) ms for a MyISAM and an InnoDB insert")
        #expect(writeMs < 2000)

        var resumeCall = PluginCall(deadline: deadline(10))
        try plugin.resume(&resumeCall)
        #expect(resumeCall.summary?.contains("quiesce had failed") == true)
        #expect(try slow.poll(until: deadline(10)))
    }

    @Test(
        "with the check off, the lock wait is bounded: PH_BUSY after lockWaitTimeoutSeconds, InnoDB writers never stall"
    )
    func lockWaitBounded() throws {
        let fixture = try Fixture()
        let slowTable = uniqueName("wait_myisam")
        let otherMyISAM = uniqueName("wait_other_myisam")
        let innodb = uniqueName("wait_innodb")
        try fixture.table(slowTable, engine: "MyISAM")
        try fixture.table(otherMyISAM, engine: "MyISAM")
        try fixture.table(innodb, engine: "InnoDB")
        defer { fixture.dropTables(slowTable, otherMyISAM, innodb) }

        let slow = try fixture.session()
        try slow.send("UPDATE \(slowTable) SET v = SLEEP(1)")
        Thread.sleep(forTimeInterval: 0.3)

        let plugin = try fixture.plugin([
            "longQueryThresholdSeconds": .number(JSONNumber(0)),
            "lockWaitTimeoutSeconds": .number(JSONNumber(text: "1.0", isInteger: false)),
        ])
        let target = ConnectionTarget(
            socket: fixture.server.socket, optionFilePath: fixture.optionFile, optionFileHasPassword: true)
        let writers = BackgroundStatements(
            target: target, database: fixture.server.database, after: 0.3,
            [
                ("InnoDB insert", "INSERT INTO \(innodb) VALUES (200, 1)"),
                ("MyISAM insert", "INSERT INTO \(otherMyISAM) VALUES (200, 1)"),
            ])
        var call = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        let start = Monotonic.now()
        let error = expectPluginError(.busy) { try plugin.quiesce(&call) }
        let waitedMs = elapsedMilliseconds(since: start)
        let timings = writers.wait()
        print("gave up after \(waitedMs) ms: \(error?.message ?? "")")
        for timing in timings {
            print("  \(timing.label) during the wait: \(timing.milliseconds) ms \(timing.error ?? "")")
        }
        #expect(error?.message.contains("BACKUP STAGE BLOCK_DDL") == true)
        #expect(waitedMs >= 900 && waitedMs < 3000, "the wait was not bounded by lockWaitTimeoutSeconds")
        #expect(timings.allSatisfy { $0.error == nil })
        #expect(
            (timings.first { $0.label == "InnoDB insert" }?.milliseconds ?? .infinity) < 500, "an InnoDB writer stalled"
        )
        #expect(
            (timings.first { $0.label == "MyISAM insert" }?.milliseconds ?? .infinity) < 3000,
            "a MyISAM writer stalled past the bound")
        #expect(try slow.poll(until: deadline(10)))
    }

    @Test("quiesce timeout (the host's deadline): PH_TIMEOUT, bounded, nothing stays locked")
    func quiesceTimeout() throws {
        try quiesceTimeout(serverSide: true)
    }

    @Test("quiesce timeout when the server does not end the wait itself (MySQL): the session is killed")
    func quiesceTimeoutKills() throws {
        try quiesceTimeout(serverSide: false)
    }

    private func quiesceTimeout(serverSide: Bool) throws {
        let fixture = try Fixture()
        let table = uniqueName("timeout_innodb")
        try fixture.table(table, engine: "InnoDB")
        defer { fixture.dropTables(table) }
        let admin = try fixture.session()
        let blocker = try fixture.session()
        try blocker.execute("BACKUP STAGE START", deadline: deadline(5))  // only one backup at a time

        let plugin = try fixture.plugin([
            "lockWaitTimeoutSeconds": .number(JSONNumber(30)),
            "longQueryThresholdSeconds": .number(JSONNumber(0)),
        ])
        plugin.serverSideStatementTimeout = serverSide
        var call = PluginCall(deadline: deadline(1.5), holdUntil: deadline(60))
        let start = Monotonic.now()
        let error = expectPluginError(.timeout) { try plugin.quiesce(&call) }
        let elapsed = elapsedMilliseconds(since: start)
        print(
            "timed out after \(elapsed) ms (deadline 1500 ms, server-side bound \(serverSide)): \(error?.message ?? "")"
        )
        #expect(elapsed < 1600, "quiesce overran its deadline")
        #expect(error?.message.contains("BACKUP STAGE START") == true)
        if !serverSide { #expect(error?.message.contains("was killed") == true) }

        let waiting = try admin.query(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE 'Waiting for backup lock%'",
            deadline: deadline(5)
        ).firstValue
        #expect(waiting == "0", "a session still waits for the backup lock")
        try blocker.execute("BACKUP STAGE END", deadline: deadline(5))

        var resumeCall = PluginCall(deadline: deadline(10))
        try plugin.resume(&resumeCall)
        let commitStart = Monotonic.now()
        try admin.execute("INSERT INTO \(table) VALUES (300, 1)", deadline: deadline(5))
        print("  a commit right after: \(elapsedMilliseconds(since: commitStart)) ms")

        var retry = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        try plugin.quiesce(&retry)
        var retryResume = PluginCall(deadline: deadline(10))
        try plugin.resume(&retryResume)
    }

    // MARK: losing the lock

    @Test("destroying the instance without resume releases the lock at once")
    func destroyReleases() throws {
        let fixture = try Fixture()
        let table = uniqueName("destroy_innodb")
        try fixture.table(table, engine: "InnoDB")
        defer { fixture.dropTables(table) }
        let writer = try fixture.session()
        try writer.execute("BEGIN", deadline: deadline(5))
        try writer.execute("INSERT INTO \(table) VALUES (400, 1)", deadline: deadline(5))

        var plugin: MySQLPlugin? = try fixture.plugin()
        var call = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        try plugin!.quiesce(&call)
        try writer.send("COMMIT")
        #expect(try !writer.poll(until: deadline(0.3)))

        let start = Monotonic.now()
        plugin = nil
        #expect(try writer.poll(until: deadline(5)), "the lock outlived the instance")
        print("COMMIT proceeded \(elapsedMilliseconds(since: start)) ms after destroy")
        #expect(elapsedMilliseconds(since: start) < 1000)
    }

    @Test("the session killed during the hold: resume is PH_CONSISTENCY_LOST, saying when")
    func killedDuringHold() throws {
        let fixture = try Fixture()
        let plugin = try fixture.plugin()
        var call = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        try plugin.quiesce(&call)
        let id = try #require(call.detailValue("connection_id"))
        try fixture.session().execute("KILL CONNECTION \(id)", deadline: deadline(5))
        Thread.sleep(forTimeInterval: 0.2)

        var resumeCall = PluginCall(deadline: deadline(10))
        let error = expectPluginError(.consistencyLost) { try plugin.resume(&resumeCall) }
        print("resume: \(error?.message ?? "")")
        #expect(error?.message.contains("the lock was lost at ") == true)
        #expect(error?.message.contains("not application-consistent") == true)
        #expect(error?.message.contains("KILL") == true)
        #expect(resumeCall.detailValue("lock_lost_at") != nil)

        var again = PluginCall(deadline: deadline(10))
        try plugin.resume(&again)
        #expect(again.summary?.contains("nothing to resume") == true)
    }

    @Test("the dead-man switch: with no resume, the server releases the lock after the hold limit")
    func deadManSwitch() throws {
        let fixture = try Fixture()
        let table = uniqueName("deadman_innodb")
        try fixture.table(table, engine: "InnoDB")
        defer { fixture.dropTables(table) }
        let writer = try fixture.session()
        try writer.execute("BEGIN", deadline: deadline(5))
        try writer.execute("INSERT INTO \(table) VALUES (500, 1)", deadline: deadline(5))

        let plugin = try fixture.plugin()
        var call = PluginCall(deadline: deadline(10), holdUntil: deadline(1))
        try plugin.quiesce(&call)
        let held = Monotonic.now()
        #expect(call.detailValue("hold_timeout_s") == "3")
        try writer.send("COMMIT")
        #expect(try writer.poll(until: deadline(10)), "the lock was not released by wait_timeout")
        let releasedMs = elapsedMilliseconds(since: held)
        print("released by the server \(releasedMs) ms after quiesce (wait_timeout=3)")
        #expect(releasedMs > 2000 && releasedMs < 6000)

        var resumeCall = PluginCall(deadline: deadline(10))
        let error = expectPluginError(.consistencyLost) { try plugin.resume(&resumeCall) }
        #expect(error?.message.contains("wait_timeout=3") == true)
    }

    // MARK: connection failures

    @Test("bad credentials: PH_NOT_AUTHORIZED, and the password is never in the message")
    func badCredentials() throws {
        let fixture = try Fixture()
        let secret = "wrong-Pa55word-\(getpid())"
        let file = try fixture.directory.optionFile(user: fixture.server.user, password: secret, name: "bad.cnf")
        let plugin = try fixture.plugin(["optionFile": .string(file)])
        var call = PluginCall(deadline: deadline(10))
        let error = expectPluginError(.notAuthorized) { try plugin.check(&call) }
        print("bad password: \(error?.message ?? "")")
        #expect(error?.message.contains("Access denied") == true)
        #expect(error?.message.contains(file) == true)
        #expect(error?.message.contains(secret) == false)
        #expect(!call.details.contains { $0.value.contains(secret) })

        var quiesceCall = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        #expect(
            expectPluginError(.notAuthorized) { try plugin.quiesce(&quiesceCall) }?.message.contains(secret) == false)
        var resumeCall = PluginCall(deadline: deadline(10))
        try plugin.resume(&resumeCall)

        let stranger = try fixture.directory.optionFile(
            user: "nobody_\(getpid())", password: secret, name: "stranger.cnf")
        let strangerPlugin = try fixture.plugin(["optionFile": .string(stranger)])
        var strangerCall = PluginCall(deadline: deadline(10))
        _ = expectPluginError(.notAuthorized) { try strangerPlugin.check(&strangerCall) }
    }

    @Test("unreachable socket and port: PH_UNREACHABLE, quickly")
    func unreachable() throws {
        let fixture = try Fixture()
        let socketPlugin = try fixture.plugin(["socket": .string("\(fixture.directory.path)/absent.sock")])
        var call = PluginCall(deadline: deadline(10))
        var start = Monotonic.now()
        let socketError = expectPluginError(.unreachable) { try socketPlugin.check(&call) }
        print("missing socket (\(elapsedMilliseconds(since: start)) ms): \(socketError?.message ?? "")")
        #expect(socketError?.message.contains("absent.sock") == true)

        let port = try Self.closedPort()
        let tcpPlugin = try fixture.plugin([
            "socket": .null, "host": .string("127.0.0.1"), "port": .number(JSONNumber(port)),
        ])
        var quiesceCall = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        start = Monotonic.now()
        let portError = expectPluginError(.unreachable) { try tcpPlugin.quiesce(&quiesceCall) }
        print("closed port \(port) (\(elapsedMilliseconds(since: start)) ms): \(portError?.message ?? "")")
        #expect(portError?.message.contains("127.0.0.1:\(port)") == true)
        var resumeCall = PluginCall(deadline: deadline(10))
        try tcpPlugin.resume(&resumeCall)
        #expect(elapsedMilliseconds(since: start) < 5000)
    }

    /// A loopback port nobody listens on (bound, then closed).
    static func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                guard bind(fd, raw, length) == 0, getsockname(fd, raw, &length) == 0 else { throw SystemError("bind") }
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test("missing privileges: check names them (PH_NOT_AUTHORIZED), quiesce is refused the same way")
    func missingPrivileges() throws {
        let fixture = try Fixture()
        let user = uniqueName("limited")
        let password = "limited-\(getpid())"
        let admin = try fixture.rootSession()
        try admin.execute("DROP USER IF EXISTS '\(user)'@'localhost'", deadline: deadline(5))
        try admin.execute("CREATE USER '\(user)'@'localhost' IDENTIFIED BY '\(password)'", deadline: deadline(5))
        defer { try? admin.execute("DROP USER IF EXISTS '\(user)'@'localhost'", deadline: deadline(5)) }
        let file = try fixture.directory.optionFile(user: user, password: password, name: "limited.cnf")
        let plugin = try fixture.plugin(["optionFile": .string(file)])

        var call = PluginCall(deadline: deadline(10))
        let error = expectPluginError(.notAuthorized) { try plugin.check(&call) }
        print("check: \(error?.message ?? "")")
        #expect(error?.message.contains("RELOAD (for BACKUP STAGE)") == true)
        #expect(error?.message.contains("PROCESS") == true)
        #expect(error?.message.contains("GRANT RELOAD, PROCESS") == true)
        #expect(call.detailValue("privileges_missing")?.hasPrefix("RELOAD,PROCESS") == true)
        #expect(call.detailValue("datadir") != nil)

        var quiesceCall = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        let refused = expectPluginError(.notAuthorized) { try plugin.quiesce(&quiesceCall) }
        print("quiesce: \(refused?.message ?? "")")
        #expect(refused?.message.contains("RELOAD") == true)
        var resumeCall = PluginCall(deadline: deadline(10))
        try plugin.resume(&resumeCall)

        // With what the lock needs but not the binlog privilege: the quiesce holds, and says
        // why there is no position (only where a binary log exists to be read).
        try admin.execute("GRANT RELOAD, PROCESS ON *.* TO '\(user)'@'localhost'", deadline: deadline(5))
        let granted = try fixture.plugin(["optionFile": .string(file)])
        var grantedCall = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        try granted.quiesce(&grantedCall)
        var grantedResume = PluginCall(deadline: deadline(10))
        try granted.resume(&grantedResume)
        print("RELOAD, PROCESS only: \(grantedCall.summary ?? "")")
        if grantedCall.detailValue("binlog") != "disabled" {
            #expect(grantedCall.detailValue("binlog_error")?.contains("BINLOG MONITOR") == true)
            #expect(grantedCall.summary?.contains("warning: binary log position not recorded") == true)
        }
        #expect(grantedResume.detailValue("commits_blocked_ms") != nil)
    }

    @Test("resume without quiesce, and quiesce twice")
    func misuse() throws {
        let fixture = try Fixture()
        let plugin = try fixture.plugin()
        var first = PluginCall(deadline: deadline(10))
        try plugin.resume(&first)
        #expect(first.summary?.contains("not quiesced") == true)
        var call = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        try plugin.quiesce(&call)
        var twice = PluginCall(deadline: deadline(10), holdUntil: deadline(60))
        _ = expectPluginError(.failed) { try plugin.quiesce(&twice) }
        var resumeCall = PluginCall(deadline: deadline(10))
        try plugin.resume(&resumeCall)
        #expect(resumeCall.detailValue("commits_blocked_ms") != nil)
    }
}
