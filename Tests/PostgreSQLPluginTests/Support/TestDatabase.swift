import CLibPQ
import Glibc
import PluginHostSupport
import PluginKit
import Testing

/// The PostgreSQL 15 server the project's test script starts (scripts/db/start-postgres.sh)
/// and describes in PG* variables. Tests that need it are enabled only when PGHOST is set.
enum TestDatabase {
    static var isAvailable: Bool { environment("PGHOST") != nil }

    /// The main test server, as a conninfo string for the plugin's config.
    static var conninfo: String {
        "host=\(environment("PGHOST") ?? "") port=\(environment("PGPORT") ?? "5432") user=\(environment("PGUSER") ?? "postgres") dbname=\(environment("PGDATABASE") ?? "postgres")"
    }

    static var dataDirectory: String? { environment("POSTGRES_DATA") }

    static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The start/stop scripts: the repository's scripts/db (or $PLUGINHOST_DB_SCRIPTS).
    static var scriptDirectory: String {
        if let override = environment("PLUGINHOST_DB_SCRIPTS") { return override }
        // <repository>/Tests/PostgreSQLPluginTests/Support/TestDatabase.swift → <repository>/scripts/db
        var path = #filePath
        for _ in 0..<4 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path + "/scripts/db"
    }

    /// Runs one of the scripts; returns its KEY=value lines.
    @discardableResult
    static func runScript(_ name: String, _ arguments: [String] = [], environment extra: [String: String]) throws
        -> [String: String]
    {
        let environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"].merging(extra) { $1 }
        let child = try ChildProcess(
            spawning: Command(
                executable: "/bin/bash", arguments: [scriptDirectory + "/" + name] + arguments,
                environment: environment), outputCapacity: 1 << 16)
        var termination: Termination?
        while termination == nil {
            if case .exited(let end) = child.wait(until: Monotonic.Instant.now + .seconds(180)) {
                termination = end
            } else {
                child.terminateGroup()
                throw TestFailure("\(name) did not finish within 180 s")
            }
        }
        guard termination == .exited(0) else {
            throw TestFailure("\(name) failed (\(termination!)): \(child.stderrTail.text)")
        }
        var values: [String: String] = [:]
        for line in child.stdoutTail.text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return values
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A plain libpq connection for the tests' own administration, independent of the plugin's code.
final class AdminConnection {
    private let connection: OpaquePointer

    init(_ conninfo: String) throws {
        guard let connection = PQconnectdb(conninfo) else { throw TestFailure("PQconnectdb returned NULL") }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(connection))
            PQfinish(connection)
            throw TestFailure("admin connection failed: \(message)")
        }
        self.connection = connection
    }

    deinit { PQfinish(connection) }

    @discardableResult
    func query(_ sql: String) throws -> [[String?]] {
        guard let result = PQexec(connection, sql) else { throw TestFailure("PQexec returned NULL") }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK:
            return (0..<PQntuples(result)).map { row in
                (0..<PQnfields(result)).map { column in
                    PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
                }
            }
        default:
            throw TestFailure("\(sql): \(String(cString: PQresultErrorMessage(result)))")
        }
    }

    func value(_ sql: String) throws -> String? {
        try query(sql).first?.first ?? nil
    }

    /// Whether a backend with this pid still exists.
    func backendExists(_ pid: String) throws -> Bool {
        try value("SELECT count(*) FROM pg_stat_activity WHERE pid = \(Int(pid) ?? -1)") == "1"
    }

    /// Waits up to `seconds` for a backend to go; returns how long it took (nil: still there).
    func waitForBackendToEnd(_ pid: String, seconds: Double) throws -> Double? {
        let start = Monotonic.now()
        while Monotonic.milliseconds(from: start, to: Monotonic.now()) < seconds * 1000 {
            if try !backendExists(pid) { return Monotonic.milliseconds(from: start, to: Monotonic.now()) }
            usleep(50_000)
        }
        return nil
    }
}

/// A private temporary directory (mode 700, root's), removed with everything in it.
final class TemporaryDirectory {
    let path: String

    init(_ prefix: String = "pg-plugin-test") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        path = String(cString: made)
    }

    deinit { removeTree(path) }

    func file(_ name: String, _ contents: String, mode: mode_t = 0o600) throws -> String {
        let path = self.path + "/" + name
        let file = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        try file.writeAll(contents)
        guard chmod(path, mode) == 0 else { throw TestFailure("chmod \(path)") }
        return path
    }
}

/// rm -rf, without following symlinks.
func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if info.st_mode & S_IFMT == S_IFDIR {
        if let directory = opendir(path) {
            var names: [String] = []
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(directory)
            names.forEach { removeTree(path + "/" + $0) }
        }
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// A TCP listener on 127.0.0.1 that accepts no connection and answers nothing: the kernel
/// completes the handshake, and then silence — a server that hangs.
final class SilentListener {
    let socket: Int32
    let port: Int

    init() throws {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.socket = socket
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) }
        }
        guard bound == 0, listen(socket, 8) == 0 else { throw TestFailure("cannot listen on 127.0.0.1") }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(socket) }
}

/// A TCP port on 127.0.0.1 with nothing listening (bound and closed again).
func closedPort() throws -> Int {
    let listener = try SilentListener()
    return listener.port
}

extension PluginCall {
    /// A call with a deadline `seconds` from now.
    static func within(_ seconds: Double, holdUntil: Monotonic.Instant? = nil) -> PluginCall {
        PluginCall(deadline: .now + .seconds(clamping: seconds), holdUntil: holdUntil)
    }

    func value(of key: String) -> String? {
        details.first { $0.key == key }?.value
    }
}
