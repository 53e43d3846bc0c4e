import Glibc
import PluginHostSupport
import PluginKit
import Testing

@testable import PostgreSQLQuiesce

/// Servers that are not there, servers that do not answer, sessions that are refused, and
/// statements that overrun their deadline. Bounds on time are generous: they tell "bounded"
/// from "hangs"; the figures are printed.
@Suite("PostgreSQL plugin: failures")
struct ConnectionFailureTests {
    @Test("nothing listens on the port: PH_UNREACHABLE, at once")
    func refusedPort() throws {
        let port = try closedPort()
        let plugin = try makePlugin(#"{"conninfo": "host=127.0.0.1 port=\#(port) user=postgres"}"#)
        let start = Monotonic.now()
        var call = PluginCall.within(30)
        let error = try #require(throws: PluginError.self) { try plugin.check(&call) }
        let elapsed = Monotonic.milliseconds(from: start, to: Monotonic.now())
        #expect(error.status == .unreachable)
        #expect(error.message.contains("Connection refused"))
        #expect(elapsed < 5000)
        print("unreachable (refused) reported after \(NumberText.fixed(elapsed, decimals: 3)) ms")
    }

    @Test("no socket in the socket directory: PH_UNREACHABLE")
    func missingSocket() throws {
        let directory = try TemporaryDirectory()
        let plugin = try makePlugin(#"{"conninfo": "host=\#(directory.path) port=5432 user=postgres"}"#)
        var call = PluginCall.within(30)
        let error = try #require(throws: PluginError.self) { try plugin.quiesce(&call) }
        #expect(error.status == .unreachable)
        #expect(error.message.contains(directory.path))
    }

    @Test("a server that never answers: PH_UNREACHABLE after connectTimeoutSeconds")
    func silentServerConnectTimeout() throws {
        let listener = try SilentListener()
        let plugin = try makePlugin(
            #"{"conninfo": "host=127.0.0.1 port=\#(listener.port) user=postgres", "connectTimeoutSeconds": 1}"#)
        let start = Monotonic.now()
        var call = PluginCall.within(30)
        let error = try #require(throws: PluginError.self) { try plugin.check(&call) }
        let elapsed = Monotonic.milliseconds(from: start, to: Monotonic.now())
        #expect(error.status == .unreachable)
        #expect(error.message.contains("connectTimeoutSeconds"))
        #expect(elapsed >= 900 && elapsed < 10_000)
        print("silent server: unreachable after \(NumberText.fixed(elapsed, decimals: 3)) ms (connectTimeoutSeconds 1)")
    }

    @Test("a server that never answers, call deadline first: PH_TIMEOUT before the deadline")
    func silentServerCallDeadline() throws {
        let listener = try SilentListener()
        let plugin = try makePlugin(#"{"conninfo": "host=127.0.0.1 port=\#(listener.port) user=postgres"}"#)
        let start = Monotonic.now()
        var call = PluginCall.within(0.5)
        let error = try #require(throws: PluginError.self) { try plugin.quiesce(&call) }
        let elapsed = Monotonic.milliseconds(from: start, to: Monotonic.now())
        #expect(error.status == .timeout)
        let deadline = try #require(call.deadline)
        #expect(Monotonic.Instant.now < deadline, "the plugin gives up before the host's deadline")
        #expect(elapsed < 5000)
        print("silent server: timeout after \(NumberText.fixed(elapsed, decimals: 3)) ms (call deadline 500 ms)")
    }

    @Test(
        "an unknown role is refused by the server: PH_NOT_AUTHORIZED with the server's reason",
        .enabled(if: TestDatabase.isAvailable))
    func unknownRole() throws {
        let plugin = try makePlugin(#"{"conninfo": "\#(TestDatabase.conninfo) user=pluginhost_no_such_role"}"#)
        var call = PluginCall.within(30)
        let error = try #require(throws: PluginError.self) { try plugin.check(&call) }
        #expect(error.status == .notAuthorized)
        #expect(error.message.contains("role \"pluginhost_no_such_role\" does not exist"))
    }

    @Test(
        "an unknown database is refused by the server: PH_NOT_AUTHORIZED with the server's reason",
        .enabled(if: TestDatabase.isAvailable))
    func unknownDatabase() throws {
        let plugin = try makePlugin(#"{"conninfo": "\#(TestDatabase.conninfo) dbname=pluginhost_no_such_db"}"#)
        var call = PluginCall.within(30)
        let error = try #require(throws: PluginError.self) { try plugin.quiesce(&call) }
        #expect(error.status == .notAuthorized)
        #expect(error.message.contains("database \"pluginhost_no_such_db\" does not exist"))
    }

    @Test("a password that reaches libpq from elsewhere than the passfile is refused before anything is sent")
    func passwordFromElsewhere() throws {
        // What a service file entry or PGPASSWORD would give libpq (both are process-wide, so
        // the test hands libpq the keyword directly): the session is refused before connecting.
        let listener = try SilentListener()
        let parameters = [("host", "127.0.0.1"), ("port", String(listener.port)), ("password", "hunter2xyz")]
        let error = try #require(throws: SessionError.self) {
            try PostgresSession.connect(
                parameters.map { (keyword: $0.0, value: $0.1) }, until: .now + .seconds(5),
                timeoutIsCallDeadline: false, timeoutDescription: "5 s", notices: { _ in })
        }
        guard case .insecureCredentials(let message) = error else {
            Issue.record("expected insecureCredentials, got \(error)")
            return
        }
        #expect(message.contains("PGPASSWORD") && !message.contains("hunter2xyz"))
    }

    @Test(
        "a statement past the client deadline is cancelled and its session closed",
        .enabled(if: TestDatabase.isAvailable))
    func clientDeadlineCancels() throws {
        let session = try PostgresSession.connect(
            try PostgreSQLConfig.parseConninfo(TestDatabase.conninfo),
            until: .now + .seconds(10), timeoutIsCallDeadline: false,
            timeoutDescription: "10 s", notices: { _ in })
        let pid = String(session.backendPID)
        let start = Monotonic.now()
        #expect(throws: SessionError.deadlinePassed("the statement was cancelled and the session closed")) {
            try session.execute("SELECT pg_sleep(60)", until: .now + .milliseconds(500))
        }
        let elapsed = Monotonic.milliseconds(from: start, to: Monotonic.now())
        #expect(!session.isOpen)
        #expect(elapsed < 5000)
        let admin = try AdminConnection(TestDatabase.conninfo)
        let gone = try admin.waitForBackendToEnd(pid, seconds: 10)
        #expect(gone != nil, "the backend of a cancelled and closed session ends")
        print(
            "client deadline 500 ms: gave up after \(NumberText.fixed(elapsed, decimals: 3)) ms; backend gone \(gone.map { NumberText.fixed($0, decimals: 3) } ?? "never") ms later"
        )
    }

    @Test(
        "statement_timeout ends a statement on the server: SQLSTATE 57014, the session stays usable",
        .enabled(if: TestDatabase.isAvailable))
    func serverStatementTimeout() throws {
        let session = try PostgresSession.connect(
            try PostgreSQLConfig.parseConninfo(TestDatabase.conninfo),
            until: .now + .seconds(10), timeoutIsCallDeadline: false,
            timeoutDescription: "10 s", notices: { _ in })
        let deadline = Monotonic.Instant.now + .seconds(30)
        try session.set("statement_timeout", "300", until: deadline)
        let error = try #require(throws: SessionError.self) {
            try session.execute("SELECT pg_sleep(60)", until: deadline)
        }
        guard case .statement(let sqlState, _) = error else {
            Issue.record("expected a statement error, got \(error)")
            return
        }
        #expect(sqlState == SQLState.queryCanceled)
        #expect(try session.execute("SELECT 1", until: deadline) == [["1"]])
    }
}
