import Glibc
import PluginHostSupport
import PluginKit
import Testing

@testable import PostgreSQLQuiesce

/// Against the main test server (superuser postgres, trust auth, archive_mode off).
@Suite(
    "PostgreSQL plugin: checkpoint mode", .enabled(if: TestDatabase.isAvailable, "PGHOST is not set: no test server"))
struct CheckpointModeTests {
    let config = #"{"conninfo": "\#(TestDatabase.conninfo)"}"#

    @Test("check reports version, privileges, archiving and the cluster's paths")
    func check() throws {
        let plugin = try makePlugin(config)
        var call = PluginCall.within(30)
        try plugin.check(&call)
        #expect(call.value(of: "server_version")?.hasPrefix("15.") == true)
        #expect(call.value(of: "role") == "postgres")
        #expect(call.value(of: "role.superuser") == "yes")
        #expect(call.value(of: "privilege.checkpoint") == "yes")
        #expect(call.value(of: "privilege.pg_backup_start") == "yes")
        #expect(call.value(of: "archive_mode") == "off")
        let data = try #require(TestDatabase.dataDirectory)
        #expect(call.value(of: "data_directory") == data)
        #expect(call.value(of: "wal_directory") == data + "/pg_wal")
        #expect(call.value(of: "data_directory.filesystem")?.isEmpty == false)
        #expect(call.value(of: "warning.1") == nil, "no freeze mounts given: nothing to warn about")
        #expect(call.summary?.contains("ready") == true)
        print("check summary: \(call.summary ?? "")")
    }

    @Test("quiesce runs CHECKPOINT and holds nothing; resume is idempotent")
    func quiesceAndResume() throws {
        let plugin = try makePlugin(config)
        var timings: [Double] = []
        for _ in 0..<5 {
            var quiesce = PluginCall.within(30)
            try plugin.quiesce(&quiesce)
            #expect(quiesce.value(of: "mode") == "checkpoint")
            #expect(quiesce.value(of: "redo_lsn")?.contains("/") == true)
            let pid = try #require(quiesce.value(of: "session_pid"))
            timings.append(try #require(Double(quiesce.value(of: "checkpoint_ms") ?? "")))
            // Checkpoint mode closes its session: nothing is held across the snapshot.
            let admin = try AdminConnection(TestDatabase.conninfo)
            #expect(try admin.waitForBackendToEnd(pid, seconds: 10) != nil)
            var resume = PluginCall.within(30)
            try plugin.resume(&resume)
            var again = PluginCall.within(30)
            try plugin.resume(&again)
            #expect(again.summary?.contains("nothing to undo") == true)
        }
        print(
            "CHECKPOINT on the idle test server, ms: \(timings.map { NumberText.fixed($0, decimals: 3) }.joined(separator: ", "))"
        )
    }

    @Test("resume without quiesce has nothing to undo")
    func resumeWithoutQuiesce() throws {
        let plugin = try makePlugin(config)
        var call = PluginCall.within(30)
        try plugin.resume(&call)
        #expect(call.summary?.contains("nothing to undo") == true)
    }

    @Test("dataPaths: the data directory and the WAL directory")
    func dataPaths() throws {
        let plugin = try makePlugin(config)
        var call = PluginCall.within(30)
        let paths = try plugin.dataPaths(&call)
        let data = try #require(TestDatabase.dataDirectory)
        #expect(paths == [data, data + "/pg_wal"])
    }

    @Test("check warns when the cluster lies outside the frozen filesystems, not when inside")
    func freezeMountWarnings() throws {
        let data = try #require(TestDatabase.dataDirectory)
        let dataMount = try #require(MountInfo.current().entry(containing: data)).mountPoint

        let outside = try makePlugin(config, freezeMounts: ["/dev/shm"])
        var call = PluginCall.within(30)
        try outside.check(&call)
        let warning = try #require(call.value(of: "warning.1"))
        #expect(warning.contains("data directory") && warning.contains("does not freeze"))
        #expect(call.summary?.contains("warning") == true)

        let inside = try makePlugin(config, freezeMounts: [dataMount])
        var covered = PluginCall.within(30)
        try inside.check(&covered)
        #expect(covered.value(of: "warning.1") == nil)
    }

    @Test("backup mode is refused without WAL archiving, and nothing is started")
    func backupRefusedWithoutArchiving() throws {
        let labels = try TemporaryDirectory()
        let plugin = try makePlugin(
            #"{"conninfo": "\#(TestDatabase.conninfo)", "mode": "backup", "labelDirectory": "\#(labels.path)"}"#,
            operationID: "refused-1")
        var check = PluginCall.within(30)
        let checkError = try #require(throws: PluginError.self) { try plugin.check(&check) }
        #expect(checkError.status == .unsupported)
        #expect(checkError.message.contains("archive_mode is off"))
        #expect(checkError.message.contains("mode \"checkpoint\""))

        var quiesce = PluginCall.within(30)
        let quiesceError = try #require(throws: PluginError.self) { try plugin.quiesce(&quiesce) }
        #expect(quiesceError.status == .unsupported)
        #expect(access(labels.path + "/refused-1", F_OK) != 0, "no label directory for a backup that never started")
        var resume = PluginCall.within(30)
        try plugin.resume(&resume)
        #expect(resume.summary?.contains("nothing to undo") == true)
    }
}
