import Glibc
import PluginHostSupport
import PluginKit
import Testing

@testable import PostgreSQLQuiesce

/// Against a second cluster with WAL archiving (see `ArchiveCluster`), one test at a time.
@Suite(
    "PostgreSQL plugin: backup mode and roles", .serialized,
    .enabled(if: TestDatabase.isAvailable && getuid() == 0, "needs root and the test database scripts (PGHOST set)"),
    .archiveCluster)
struct BackupModeTests {
    let cluster: ArchiveCluster
    let labels: TemporaryDirectory

    init() throws {
        cluster = try #require(ArchiveCluster.current)
        try cluster.ensureRunning()
        labels = try TemporaryDirectory("pg-plugin-labels")
    }

    func backupPlugin(operationID: String, conninfo: String? = nil) throws -> PostgreSQLPlugin {
        try makePlugin(
            #"{"conninfo": "\#(conninfo ?? cluster.conninfo)", "mode": "backup", "labelDirectory": "\#(labels.path)", "label": "test"}"#,
            operationID: operationID)
    }

    @Test("check: archiving on, WAL directory behind a symlink, a tablespace on another filesystem")
    func check() throws {
        let plugin = try makePlugin(
            #"{"conninfo": "\#(cluster.conninfo)", "mode": "backup", "labelDirectory": "\#(labels.path)"}"#,
            freezeMounts: ["/"])
        var call = PluginCall.within(30)
        try plugin.check(&call)
        #expect(call.value(of: "archive_mode") == "on")
        #expect(call.value(of: "archiver") == "configured")
        #expect(call.value(of: "wal_directory") == cluster.dataDirectory + "/pg_wal")
        #expect(call.value(of: "wal_directory.real") == cluster.walDirectory)
        #expect(call.value(of: "tablespace.1") == cluster.tablespaceDirectory)
        #expect(call.value(of: "tablespace.1.name") == "shm_space")
        #expect(call.value(of: "tablespace.1.filesystem")?.contains("tmpfs") == true)
        // "/" is frozen; the tablespace on /dev/shm is not: exactly one warning, naming it.
        let warning = try #require(call.value(of: "warning.1"))
        #expect(warning.contains("tablespace shm_space") && warning.contains("does not freeze"))
        #expect(call.value(of: "warning.2") == nil)

        var paths = PluginCall.within(30)
        #expect(
            try plugin.dataPaths(&paths) == [cluster.dataDirectory, cluster.walDirectory, cluster.tablespaceDirectory])
    }

    @Test(
        "quiesce starts the backup in a held session; writes go on; resume stops it in the same session and keeps the label"
    )
    func startAndStop() throws {
        let plugin = try backupPlugin(operationID: "20260101T000000Z-abc123")
        let admin = try AdminConnection(cluster.conninfo)
        var quiesce = PluginCall.within(60, holdUntil: .now + .seconds(120))
        try plugin.quiesce(&quiesce)
        let pid = try #require(quiesce.value(of: "session_pid"))
        let startLSN = try #require(quiesce.value(of: "start_lsn"))
        #expect(startLSN.contains("/"))
        #expect(quiesce.value(of: "backup_label_name") == "test-20260101T000000Z-abc123")
        let idleTimeout = try #require(Int(quiesce.value(of: "idle_session_timeout_ms") ?? ""))
        #expect(idleTimeout > 125_000 && idleTimeout <= 130_000)  // 120 s hold + 10 s margin

        // The session is held, idle, with the dead-man switch set.
        #expect(try admin.value("SELECT state FROM pg_stat_activity WHERE pid = \(pid)") == "idle")
        #expect(
            try admin.value("SELECT application_name FROM pg_stat_activity WHERE pid = \(pid)")
                == "pluginhost-postgresql")
        // Backup mode does not stop writes.
        try admin.query("INSERT INTO writes DEFAULT VALUES")

        var resume = PluginCall.within(60)
        try plugin.resume(&resume)
        let stopLSN = try #require(resume.value(of: "stop_lsn"))
        #expect(resume.value(of: "start_lsn") == startLSN)
        let directory = labels.path + "/20260101T000000Z-abc123"
        #expect(resume.value(of: "label_file") == directory + "/backup_label")
        #expect(resume.value(of: "tablespace_map_file") == directory + "/tablespace_map")
        #expect(resume.value(of: "tablespace_map_entries") == "1")

        let label = try read(directory + "/backup_label")
        #expect(label.contains("LABEL: test-20260101T000000Z-abc123"))
        #expect(label.contains("START WAL LOCATION: \(startLSN)"))
        let map = try read(directory + "/tablespace_map")
        #expect(map.contains(cluster.tablespaceDirectory))
        for path in [directory + "/backup_label", directory + "/tablespace_map"] {
            var info = stat()
            #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600 && info.st_uid == 0)
        }
        var info = stat()
        #expect(stat(directory, &info) == 0 && info.st_mode & 0o777 == 0o700)
        // Never in the data directory: a backup_label there stops the server from starting.
        #expect(access(cluster.dataDirectory + "/backup_label", F_OK) != 0)
        #expect(try admin.waitForBackendToEnd(pid, seconds: 10) != nil, "resume closes the held session")

        var again = PluginCall.within(30)
        try plugin.resume(&again)
        #expect(again.summary == "already resumed")
        print(
            "backup mode: start \(quiesce.value(of: "backup_start_ms") ?? "?") ms, stop \(resume.value(of: "backup_stop_ms") ?? "?") ms, \(startLSN) → \(stopLSN)"
        )
    }

    @Test("a session killed during the hold: backup mode ends, resume reports PH_CONSISTENCY_LOST (every time)")
    func killedSession() throws {
        let plugin = try backupPlugin(operationID: "killed-1")
        var quiesce = PluginCall.within(60, holdUntil: .now + .seconds(120))
        try plugin.quiesce(&quiesce)
        let pid = try #require(quiesce.value(of: "session_pid"))
        let admin = try AdminConnection(cluster.conninfo)
        #expect(try admin.value("SELECT pg_terminate_backend(\(pid))") == "t")
        #expect(try admin.waitForBackendToEnd(pid, seconds: 10) != nil)

        var resume = PluginCall.within(30)
        let error = try #require(throws: PluginError.self) { try plugin.resume(&resume) }
        #expect(error.status == .consistencyLost)
        #expect(error.message.contains("not application-consistent for this cluster"))
        #expect(error.message.contains("administrator command"))
        #expect(access(labels.path + "/killed-1/backup_label", F_OK) != 0)

        var again = PluginCall.within(30)
        let repeated = try #require(throws: PluginError.self) { try plugin.resume(&again) }
        #expect(repeated.status == .consistencyLost)

        // The plugin is usable for the next operation.
        var next = PluginCall.within(60)
        try plugin.quiesce(&next)
        var nextResume = PluginCall.within(60)
        try plugin.resume(&nextResume)
    }

    @Test("idle_session_timeout from holdUntil ends backup mode when resume does not come")
    func deadManSwitch() throws {
        let plugin = try backupPlugin(operationID: "dead-man-1")
        plugin.holdMargin = .seconds(1)
        let start = Monotonic.Instant.now
        var quiesce = PluginCall.within(60, holdUntil: start + .seconds(1))
        try plugin.quiesce(&quiesce)
        let pid = try #require(quiesce.value(of: "session_pid"))
        let timeout = try #require(Int(quiesce.value(of: "idle_session_timeout_ms") ?? ""))
        #expect(timeout > 1000 && timeout <= 2000)  // up to 1 s left + 1 s margin

        let admin = try AdminConnection(cluster.conninfo)
        let waited = try admin.waitForBackendToEnd(pid, seconds: 20)
        let ended = (Monotonic.Instant.now - start).inMilliseconds
        #expect(waited != nil, "the server ends the idle session")
        print(
            "dead-man switch: idle_session_timeout \(timeout) ms, session gone \(NumberText.fixed(ended, decimals: 3)) ms after quiesce began"
        )

        var resume = PluginCall.within(30)
        let error = try #require(throws: PluginError.self) { try plugin.resume(&resume) }
        #expect(error.status == .consistencyLost)
        #expect(error.message.contains("idle-session timeout"))
    }

    @Test("destroy closes the held session, which ends backup mode")
    func destroyEndsBackup() throws {
        var plugin: PostgreSQLPlugin? = try backupPlugin(operationID: "destroy-1")
        var quiesce = PluginCall.within(60, holdUntil: .now + .seconds(120))
        try plugin!.quiesce(&quiesce)
        let pid = try #require(quiesce.value(of: "session_pid"))
        let admin = try AdminConnection(cluster.conninfo)
        #expect(try admin.backendExists(pid))
        plugin = nil
        #expect(try admin.waitForBackendToEnd(pid, seconds: 10) != nil)
    }

    @Test("quiesce past its deadline: PH_TIMEOUT, the session closed, resume has nothing to undo")
    func quiesceDeadline() throws {
        let plugin = try backupPlugin(operationID: "deadline-1")
        // A deadline that leaves no time: the plugin gives up before it and holds nothing.
        var quiesce = PluginCall(deadline: .now + .milliseconds(2))
        let error = try #require(throws: PluginError.self) { try plugin.quiesce(&quiesce) }
        #expect(error.status == .timeout)
        var resume = PluginCall.within(30)
        try plugin.resume(&resume)
        #expect(resume.summary?.contains("nothing to undo") == true)
    }

    @Test("credentials from the passfile: right password connects, wrong one is refused, none is asked for")
    func passwords() throws {
        let files = try TemporaryDirectory()
        let conninfo = cluster.tcpConninfo(user: ArchiveCluster.passwordRole)
        func plugin(_ passfile: String) throws -> PostgreSQLPlugin {
            try makePlugin(#"{"conninfo": "\#(conninfo)", "passfile": "\#(passfile)"}"#)
        }
        let right = try files.file(
            "right", "127.0.0.1:\(cluster.port):*:\(ArchiveCluster.passwordRole):\(ArchiveCluster.password)\n")
        var ok = PluginCall.within(30)
        try plugin(right).check(&ok)
        #expect(ok.value(of: "role") == ArchiveCluster.passwordRole)
        #expect(ok.value(of: "privilege.checkpoint") == "yes")  // pg_checkpoint granted
        var quiesce = PluginCall.within(30)
        try plugin(right).quiesce(&quiesce)

        let wrong = try files.file(
            "wrong", "127.0.0.1:\(cluster.port):*:\(ArchiveCluster.passwordRole):wrong-password\n")
        var refused = PluginCall.within(30)
        let error = try #require(throws: PluginError.self) { try plugin(wrong).check(&refused) }
        #expect(error.status == .notAuthorized)
        #expect(error.message.contains("password authentication failed for user \"\(ArchiveCluster.passwordRole)\""))
        #expect(!error.message.contains("wrong-password"))

        let other = try files.file("other", "otherhost:5432:*:someone:pw\n")
        var none = PluginCall.within(30)
        let missing = try #require(throws: PluginError.self) { try plugin(other).quiesce(&none) }
        #expect(missing.status == .notAuthorized)
        #expect(missing.message.contains("asks for a password"))
    }

    @Test("a role without privileges: PH_NOT_AUTHORIZED naming what is missing, in both modes")
    func missingPrivileges() throws {
        let conninfo = cluster.tcpConninfo(user: ArchiveCluster.plainRole)
        let checkpoint = try makePlugin(#"{"conninfo": "\#(conninfo)"}"#)
        var check = PluginCall.within(30)
        let checkError = try #require(throws: PluginError.self) { try checkpoint.check(&check) }
        #expect(checkError.status == .notAuthorized)
        #expect(checkError.message.contains("GRANT pg_checkpoint TO \(ArchiveCluster.plainRole)"))
        #expect(check.value(of: "warning.1")?.contains("pg_read_all_settings") == true)
        var quiesce = PluginCall.within(30)
        let quiesceError = try #require(throws: PluginError.self) { try checkpoint.quiesce(&quiesce) }
        #expect(quiesceError.status == .notAuthorized)
        #expect(quiesceError.message.contains("pg_checkpoint"))
        var dataPaths = PluginCall.within(30)
        let pathsError = try #require(throws: PluginError.self) { try checkpoint.dataPaths(&dataPaths) }
        #expect(pathsError.status == .notAuthorized && pathsError.message.contains("pg_read_all_settings"))

        let backup = try backupPlugin(operationID: "noprivs-1", conninfo: conninfo)
        var backupCheck = PluginCall.within(30)
        let backupError = try #require(throws: PluginError.self) { try backup.check(&backupCheck) }
        #expect(backupError.status == .notAuthorized)
        #expect(backupError.message.contains("GRANT EXECUTE ON FUNCTION pg_catalog.pg_backup_start(text, boolean)"))
        #expect(backupError.message.contains("GRANT EXECUTE ON FUNCTION pg_catalog.pg_backup_stop(boolean)"))
        var backupQuiesce = PluginCall.within(30)
        let startError = try #require(throws: PluginError.self) { try backup.quiesce(&backupQuiesce) }
        #expect(startError.status == .notAuthorized)
        #expect(startError.message.contains("pg_backup_start"))
        // Resume after the failed quiesce: nothing was started, nothing to undo.
        var resume = PluginCall.within(30)
        try backup.resume(&resume)
        #expect(resume.summary?.contains("nothing to undo") == true)
    }

    @Test("a label directory inside the data directory is refused")
    func labelDirectoryInsideData() throws {
        let inside = cluster.dataDirectory + "/pluginhost-labels"
        #expect(mkdir(inside, 0o700) == 0)
        defer { rmdir(inside) }
        let plugin = try makePlugin(
            #"{"conninfo": "\#(cluster.conninfo)", "mode": "backup", "labelDirectory": "\#(inside)"}"#)
        var call = PluginCall.within(30)
        let error = try #require(throws: PluginError.self) { try plugin.check(&call) }
        #expect(error.status == .invalidConfig)
        #expect(error.message.contains("inside the data directory"))
    }

    @Test("under a pgbench write load: CHECKPOINT and the backup stay bounded, and writes go on")
    func underLoad() throws {
        let pgbench = (TestDatabase.environment("PGBIN") ?? "/usr/lib/postgresql/15/bin") + "/pgbench"
        let target = ["-h", cluster.socketDirectory, "-p", cluster.port, "-U", "postgres"]
        let initialise = try ChildProcess(
            spawning: Command(executable: pgbench, arguments: ["-i", "-q", "-s", "4"] + target + ["postgres"]))
        #expect(
            initialise.wait(until: Monotonic.Instant.now + .seconds(120)) == .exited(.exited(0)),
            "\(initialise.stderrTail.text)")
        let load = try ChildProcess(
            spawning: Command(executable: pgbench, arguments: ["-n", "-c", "4", "-T", "8"] + target + ["postgres"]))
        usleep(1_500_000)  // let the load build up
        let admin = try AdminConnection(cluster.conninfo)

        let checkpoint = try makePlugin(#"{"conninfo": "\#(cluster.conninfo)"}"#)
        var checkpoints: [String] = []
        for _ in 0..<3 {
            var call = PluginCall.within(60)
            try checkpoint.quiesce(&call)
            checkpoints.append(call.value(of: "checkpoint_ms") ?? "?")
        }

        let backup = try backupPlugin(operationID: "load-1")
        var quiesce = PluginCall.within(60, holdUntil: .now + .seconds(120))
        try backup.quiesce(&quiesce)
        let before = Int(try admin.value("SELECT count(*) FROM pgbench_history") ?? "") ?? 0
        usleep(500_000)  // the hold, while the snapshot would be taken
        let after = Int(try admin.value("SELECT count(*) FROM pgbench_history") ?? "") ?? 0
        var resume = PluginCall.within(60)
        try backup.resume(&resume)
        #expect(after > before, "writes go on in backup mode")
        #expect(
            load.wait(until: Monotonic.Instant.now + .seconds(60)) == .exited(.exited(0)), "\(load.stderrTail.text)")
        print(
            "under pgbench -c 4: CHECKPOINT ms \(checkpoints.joined(separator: ", ")); backup start \(quiesce.value(of: "backup_start_ms") ?? "?") ms, stop \(resume.value(of: "backup_stop_ms") ?? "?") ms; \(after - before) transactions committed during a 0.5 s hold"
        )
    }

    private func read(_ path: String) throws -> String {
        String(decoding: try FileDescriptor.open(path, O_RDONLY).readAll(limit: 1 << 20), as: UTF8.self)
    }
}
