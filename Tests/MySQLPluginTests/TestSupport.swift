import Foundation
import PluginHostSupport
import PluginKit
import Testing

@testable import MySQLQuiesce

/// The throwaway server of `scripts/db/start-mariadb.sh`, from the environment it prints.
struct MariaDBServer: Sendable {
    let socket: String
    let host: String
    let port: Int
    let user: String
    let password: String
    let database: String
    let dataDirectory: String?

    static let current: MariaDBServer? = {
        let environment = ProcessInfo.processInfo.environment
        guard let socket = environment["MARIADB_SOCKET"], !socket.isEmpty else { return nil }
        return MariaDBServer(
            socket: socket, host: environment["MARIADB_HOST"] ?? "127.0.0.1",
            port: Int(environment["MARIADB_PORT"] ?? "") ?? 3306,
            user: environment["MARIADB_USER"] ?? "test", password: environment["MARIADB_PASSWORD"] ?? "test",
            database: environment["MARIADB_DATABASE"] ?? "test", dataDirectory: environment["MARIADB_DATA"])
    }()

    static var available: Bool { current != nil }
}

/// A private directory under /tmp (root's, mode 700), removed at the end of the test.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/phmysql-test.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp") }
        path = String(cString: made)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes a file with `mode` and owner `uid`; returns its path.
    @discardableResult
    func write(_ name: String, _ text: String, mode: mode_t = 0o600, owner: uid_t = 0) throws -> String {
        let file = "\(path)/\(name)"
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        guard chmod(file, mode) == 0 else { throw SystemError("chmod") }
        guard chown(file, owner, owner == 0 ? 0 : owner) == 0 else { throw SystemError("chown") }
        return file
    }

    /// An option file with a `[client]` user and password.
    func optionFile(
        user: String, password: String, name: String = "client.cnf", mode: mode_t = 0o600,
        owner: uid_t = 0
    ) throws -> String {
        try write(name, "# test credentials\n[client]\nuser=\(user)\npassword=\(password)\n", mode: mode, owner: owner)
    }
}

/// Builds configs and sessions against the test server.
struct Fixture {
    let server: MariaDBServer
    let directory: TemporaryDirectory
    let optionFile: String

    init() throws {
        server = try #require(MariaDBServer.current)
        directory = try TemporaryDirectory()
        optionFile = try directory.optionFile(user: server.user, password: server.password)
    }

    /// The plugin's config as JSON, socket connection by default; `overrides` replace keys
    /// (a `.null` value removes the key).
    func config(_ overrides: [String: JSONValue] = [:]) -> JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            ("socket", .string(server.socket)),
            ("optionFile", .string(optionFile)),
            ("lockWaitTimeoutSeconds", .number(JSONNumber(text: "5", isInteger: true))),
        ]
        for (key, value) in overrides.sorted(by: { $0.key < $1.key }) {
            members.removeAll { $0.key == key }
            if value != .null { members.append((key, value)) }
        }
        return .object(members)
    }

    func plugin(_ overrides: [String: JSONValue] = [:], freezeMounts: [String] = []) throws -> MySQLPlugin {
        do {
            return try MySQLPlugin(config: config(overrides), host: PluginHostServices(freezeMounts: freezeMounts))
        } catch {
            Issue.record("creating the plugin failed: \(error.message)")
            throw error
        }
    }

    /// A separate session (the "application"), logged in with the test account.
    func session() throws -> ServerConnection {
        let target = ConnectionTarget(socket: server.socket, optionFilePath: optionFile, optionFileHasPassword: true)
        let connection = try ServerConnection.connect(target, deadline: deadline(10))
        try connection.execute("USE `\(server.database)`", deadline: deadline(10))
        return connection
    }

    /// A session as the server's root, through the socket with unix_socket authentication (the
    /// tests run as root; no option file, so libmariadb logs in as the OS user).
    func rootSession() throws -> ServerConnection {
        let connection = try ServerConnection.connect(ConnectionTarget(socket: server.socket), deadline: deadline(10))
        try connection.execute("USE `\(server.database)`", deadline: deadline(10))
        return connection
    }

    /// A fresh table `name` with rows 1…`rows`.
    func table(_ name: String, engine: String, rows: Int = 4) throws {
        let admin = try session()
        try admin.execute("DROP TABLE IF EXISTS \(name)", deadline: deadline(10))
        try admin.execute(
            "CREATE TABLE \(name) (id INT PRIMARY KEY, v INT NOT NULL DEFAULT 0) ENGINE=\(engine)",
            deadline: deadline(10))
        let values = (1...rows).map { "(\($0), 0)" }.joined(separator: ", ")
        try admin.execute("INSERT INTO \(name) (id, v) VALUES \(values)", deadline: deadline(10))
    }

    func dropTables(_ names: String...) {
        guard let admin = try? session() else { return }
        for name in names { try? admin.execute("DROP TABLE IF EXISTS \(name)", deadline: deadline(10)) }
    }
}

/// A deadline `seconds` from now.
func deadline(_ seconds: Double) -> Monotonic.Instant {
    .now + .seconds(clamping: seconds)
}

/// Milliseconds since `start`.
func elapsedMilliseconds(since start: UInt64) -> Double {
    Monotonic.milliseconds(from: start, to: Monotonic.now())
}

/// A unique name for this test process (tables, users).
func uniqueName(_ base: String) -> String {
    "phmysql_\(base)_\(getpid())"
}

extension PluginCall {
    func detailValue(_ key: String) -> String? {
        details.last { $0.key == key }?.value
    }
}

/// Runs `body` and returns the PluginError it throws (recording an issue when it does not).
func expectPluginError(
    _ status: PluginStatus, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) -> PluginError? {
    do {
        try body()
        Issue.record("expected \(status), but the call succeeded", sourceLocation: sourceLocation)
        return nil
    } catch let error as PluginError {
        #expect(error.status == status, "\(error.message)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected a PluginError \(status), got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
