import Glibc
import PluginHostSupport
import PluginKit
import Testing

@testable import PostgreSQLQuiesce

/// Every config rule, one row each: the JSON, the status, and words the message must contain.
@Suite("PostgreSQL plugin config")
struct ConfigValidationTests {
    struct Row: CustomTestStringConvertible, Sendable {
        let json: String
        let status: PluginStatus
        let mentions: [String]
        var testDescription: String { json }
    }

    static let invalid: [Row] = [
        Row(json: #"[]"#, status: .invalidConfig, mentions: ["JSON object"]),
        Row(json: #"{"conection": "host=x"}"#, status: .invalidConfig, mentions: ["\"conection\"", "known keys"]),
        Row(json: #"{"conninfo": 5}"#, status: .invalidConfig, mentions: ["\"conninfo\"", "string", "integer 5"]),
        Row(
            json: #"{"conninfo": "host=/run password=hunter2xyz"}"#, status: .invalidConfig,
            mentions: ["\"conninfo\"", "password", "passfile"]),
        Row(
            json: #"{"conninfo": "postgresql://app:hunter2xyz@localhost/db"}"#, status: .invalidConfig,
            mentions: ["\"conninfo\"", "password"]),
        Row(json: #"{"conninfo": "sslpassword=hunter2xyz"}"#, status: .invalidConfig, mentions: ["sslpassword"]),
        Row(json: #"{"conninfo": "passfile=/root/.pgpass"}"#, status: .invalidConfig, mentions: ["\"passfile\" key"]),
        Row(json: #"{"conninfo": "host"}"#, status: .invalidConfig, mentions: ["\"conninfo\""]),
        Row(json: #"{"conninfo": "bogus=1"}"#, status: .invalidConfig, mentions: ["\"conninfo\"", "bogus"]),
        Row(
            json: #"{"conninfo": "service=a", "service": "b"}"#, status: .invalidConfig,
            mentions: ["\"service\"", "one place"]),
        Row(json: #"{"service": ""}"#, status: .invalidConfig, mentions: ["\"service\"", "empty"]),
        Row(json: #"{"service": true}"#, status: .invalidConfig, mentions: ["\"service\"", "boolean true"]),
        Row(json: #"{"passfile": "relative/pgpass"}"#, status: .invalidConfig, mentions: ["\"passfile\"", "absolute"]),
        Row(
            json: #"{"passfile": "/nonexistent/pgpass"}"#, status: .invalidConfig,
            mentions: ["\"passfile\"", "/nonexistent/pgpass", "does not exist"]),
        Row(
            json: #"{"mode": "Backup"}"#, status: .invalidConfig,
            mentions: ["\"mode\"", "\"checkpoint\" or \"backup\""]),
        Row(json: #"{"mode": null}"#, status: .invalidConfig, mentions: ["\"mode\"", "null"]),
        Row(json: #"{"mode": "backup"}"#, status: .invalidConfig, mentions: ["\"labelDirectory\"", "required"]),
        Row(
            json: #"{"mode": "backup", "labelDirectory": "labels"}"#, status: .invalidConfig,
            mentions: ["\"labelDirectory\"", "absolute"]),
        Row(
            json: #"{"mode": "backup", "labelDirectory": "/l", "label": "a b"}"#, status: .invalidConfig,
            mentions: ["\"label\""]),
        Row(
            json: #"{"mode": "backup", "labelDirectory": "/l", "label": "x\n"}"#, status: .invalidConfig,
            mentions: ["\"label\"", "control"]),
        Row(
            json: #"{"label": "nightly"}"#, status: .invalidConfig, mentions: ["\"label\"", "only to mode \"backup\""]),
        Row(
            json: #"{"labelDirectory": "/var/lib/x"}"#, status: .invalidConfig,
            mentions: ["\"labelDirectory\"", "only to mode"]),
        Row(
            json: #"{"connectTimeoutSeconds": "10"}"#, status: .invalidConfig,
            mentions: ["\"connectTimeoutSeconds\"", "integer from 1 to 300", "string"]),
        Row(
            json: #"{"connectTimeoutSeconds": 10.0}"#, status: .invalidConfig,
            mentions: ["\"connectTimeoutSeconds\"", "number 10.0"]),
        Row(json: #"{"connectTimeoutSeconds": 0}"#, status: .invalidConfig, mentions: ["\"connectTimeoutSeconds\""]),
        Row(
            json: #"{"checkpointTimeoutSeconds": 3601}"#, status: .invalidConfig,
            mentions: ["\"checkpointTimeoutSeconds\"", "1 to 3600"]),
        Row(
            json: #"{"checkpointTimeoutSeconds": false}"#, status: .invalidConfig,
            mentions: ["\"checkpointTimeoutSeconds\""]),
        Row(
            json: #"{"mode": "backup", "labelDirectory": "/l", "backupStopTimeoutSeconds": -1}"#,
            status: .invalidConfig, mentions: ["\"backupStopTimeoutSeconds\""]),
    ]

    @Test("refused configs name the key", arguments: invalid)
    func refused(_ row: Row) throws {
        let error = try #require(throws: PluginError.self) { try makePlugin(row.json) }
        #expect(error.status == row.status)
        for word in row.mentions {
            #expect(error.message.contains(word), "\(error.message) should mention \(word)")
        }
        // A password given in the config is never echoed back.
        #expect(!error.message.contains("hunter2xyz"))
    }

    @Test("defaults: checkpoint mode, libpq defaults, 10 s connect, 60 s checkpoint")
    func defaults() throws {
        let plugin = try makePlugin("{}")
        #expect(plugin.config.mode == .checkpoint)
        #expect(plugin.config.connection.isEmpty)
        #expect(plugin.config.connectTimeoutSeconds == 10)
        #expect(plugin.config.checkpointTimeoutSeconds == 60)
        let keywords = plugin.connectionParameters.map(\.keyword)
        #expect(keywords == ["fallback_application_name", "client_encoding"])
    }

    @Test("conninfo and service become libpq keywords; URIs are split too")
    func connectionKeywords() throws {
        let plugin = try makePlugin(
            #"{"conninfo": "host=/run/postgresql port=5433 user=backup dbname=postgres application_name=snap", "connectTimeoutSeconds": 3}"#
        )
        let parameters = Dictionary(uniqueKeysWithValues: plugin.connectionParameters.map { ($0.keyword, $0.value) })
        #expect(parameters["host"] == "/run/postgresql")
        #expect(parameters["port"] == "5433")
        #expect(parameters["user"] == "backup")
        #expect(parameters["application_name"] == "snap")
        #expect(parameters["client_encoding"] == "UTF8")
        #expect(plugin.config.connectTimeoutSeconds == 3)

        let uri = try makePlugin(#"{"conninfo": "postgresql://backup@localhost:5433/app"}"#)
        let uriParameters = Dictionary(uniqueKeysWithValues: uri.connectionParameters.map { ($0.keyword, $0.value) })
        #expect(uriParameters["user"] == "backup")
        #expect(uriParameters["dbname"] == "app")

        let service = try makePlugin(#"{"service": "snapshots"}"#)
        #expect(service.connectionParameters.first { $0.keyword == "service" }?.value == "snapshots")
    }

    @Test("backup mode with its keys")
    func backupMode() throws {
        let plugin = try makePlugin(
            #"{"mode": "backup", "labelDirectory": "/var/lib/pluginhost/postgresql", "label": "nightly", "backupStopTimeoutSeconds": 120}"#
        )
        #expect(plugin.config.mode == .backup)
        #expect(plugin.config.label == "nightly")
        #expect(plugin.config.labelDirectory == "/var/lib/pluginhost/postgresql")
        #expect(plugin.config.backupStopTimeoutSeconds == 120)
    }

    @Test("idle_session_timeout: time left until holdUntil plus the margin; a fallback without holdUntil")
    func idleSessionTimeout() throws {
        let plugin = try makePlugin("{}")
        plugin.holdMargin = .seconds(10)
        let in30s = plugin.idleSessionTimeoutMilliseconds(holdUntil: .now + .seconds(30))
        #expect(in30s > 39_000 && in30s <= 40_000)
        #expect(plugin.idleSessionTimeoutMilliseconds(holdUntil: nil) == 610_000)
        // Already passed: the margin only.
        #expect(plugin.idleSessionTimeoutMilliseconds(holdUntil: Monotonic.Instant(nanoseconds: 1)) == 10_000)
        // Rounded up to whole milliseconds: a started one counts.
        plugin.holdMargin = .nanoseconds(1)
        #expect(plugin.idleSessionTimeoutMilliseconds(holdUntil: Monotonic.Instant(nanoseconds: 1)) == 1)
        plugin.holdMargin = .nanoseconds(1_000_001)
        #expect(plugin.idleSessionTimeoutMilliseconds(holdUntil: Monotonic.Instant(nanoseconds: 1)) == 2)
        plugin.unknownHold = .milliseconds(1_500)
        #expect(plugin.idleSessionTimeoutMilliseconds(holdUntil: nil) == 1_502)
        // At most Int32.max.
        plugin.holdMargin = .seconds(10)
        #expect(plugin.idleSessionTimeoutMilliseconds(holdUntil: .max) == Int(Int32.max))
    }

    @Test("the budget of a step: its own timeout, or a little before the call's deadline")
    func budget() throws {
        let plugin = try makePlugin("{}")
        let now = Monotonic.Instant.now
        let own = plugin.budget(PluginCall(deadline: nil), seconds: 5, key: "k")
        #expect(!own.isCallDeadline)
        #expect(own.deadline >= now + .seconds(5) && own.clientDeadline == own.deadline + .seconds(1))
        let short = plugin.budget(PluginCall(deadline: now + .seconds(2)), seconds: 5, key: "k")
        #expect(short.isCallDeadline)
        #expect(short.deadline < now + .seconds(2) && short.deadline > now + .milliseconds(1_700))
        // A deadline that has passed: the limit is the deadline itself (a tenth of nothing).
        let passed = plugin.budget(PluginCall(deadline: Monotonic.Instant(nanoseconds: 1)), seconds: 5, key: "k")
        #expect(passed.isCallDeadline && passed.deadline == Monotonic.Instant(nanoseconds: 1))
        #expect(passed.clientDeadline == passed.deadline)
        // Far away: the step's own timeout, and the client waits a second past it.
        let far = plugin.budget(PluginCall(deadline: now + .seconds(3600)), seconds: 5, key: "k")
        #expect(!far.isCallDeadline && far.clientDeadline == far.deadline + .seconds(1))
        // As far as the own timeout: the call's deadline wins, less a tenth of the time left, 250 ms at most.
        let near = plugin.budget(PluginCall(deadline: now + .seconds(5)), seconds: 5, key: "k")
        #expect(near.isCallDeadline && near.deadline == now + .seconds(5) - .milliseconds(250))
    }

    @Test("mountinfo: longest mount point wins, escapes decoded, device names the filesystem")
    func mountInfo() {
        let table = MountInfo(
            parsing: """
                27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
                42 27 7:0 / /srv/pg rw,relatime shared:5 - xfs /dev/loop0 rw
                43 27 7:1 / /srv/pg\\040wal rw - ext4 /dev/loop1 rw
                44 27 7:0 /sub /mnt/bind rw - xfs /dev/loop0 rw
                """)
        #expect(table.entry(containing: "/srv/pg/data")?.device == "7:0")
        #expect(table.entry(containing: "/srv/pgdata")?.device == "254:0")
        #expect(table.entry(containing: "/srv/pg wal/x")?.mountPoint == "/srv/pg wal")
        #expect(table.entry(containing: "/mnt/bind/x")?.fsType == "xfs")
        let layout = ClusterLayout(dataDirectory: "/", tablespaces: [], mounts: table)
        #expect(layout.locations.map(\.key) == ["data_directory", "wal_directory"])
    }

    @Test("server versions and the backup functions they have")
    func versions() {
        #expect(ServerVersion(150018).description == "15.18")
        #expect(ServerVersion(90624).description == "9.6.24")
        #expect(BackupFunctions(ServerVersion(150002)).startName == "pg_backup_start")
        #expect(BackupFunctions(ServerVersion(140010)).stopSignature == "pg_catalog.pg_stop_backup(boolean, boolean)")
        #expect(!ServerVersion(140010).hasCheckpointRole && ServerVersion(140010).hasIdleSessionTimeout)
        #expect(ServerFacts.archiving(mode: "off", command: "(disabled)", library: "") == .off)
        #expect(ServerFacts.archiving(mode: "on", command: "", library: "") == .noArchiver)
        #expect(ServerFacts.archiving(mode: "on", command: nil, library: nil) == .unknown)
        #expect(ServerFacts.archiving(mode: "always", command: "cp %p /a/%f", library: nil) == .on)
    }
}

func makePlugin(_ json: String, operationID: String = "test", freezeMounts: [String] = []) throws -> PostgreSQLPlugin {
    try PostgreSQLPlugin(
        config: JSONParser.parse(json), host: PluginHostServices(operationID: operationID, freezeMounts: freezeMounts))
}
