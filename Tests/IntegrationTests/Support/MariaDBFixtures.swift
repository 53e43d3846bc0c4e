import Glibc
import PluginHost
import PluginHostSupport

/// `start-mariadb.sh` and `stop-mariadb.sh`, from the same places as the PostgreSQL scripts
/// (`databaseScriptCandidates`); nil when none has them (the MariaDB suites are then skipped).
let mariadbScripts: String? = {
    for directory in databaseScriptCandidates
    where access(directory + "/start-mariadb.sh", R_OK) == 0 && access(directory + "/stop-mariadb.sh", R_OK) == 0 {
        return directory
    }
    return nil
}()

/// A fresh ext4 image mounted at `directory/data`, ready to be a MariaDB data directory: the
/// mount point is mysql's, searchable by all, and has no lost+found (which the server would list
/// as a database). The directories above it must be searchable by mysql (Scratch makes 0755).
func mariadbFilesystem(in scratch: Scratch, directory: String, name: String = "mariadb", sizeMB: Int = 512) throws
    -> LoopFilesystem
{
    let fs = try LoopFilesystem(in: scratch, name: name, sizeMB: sizeMB, mountPoint: directory + "/data")
    guard
        sh(
            "rmdir '\(fs.mountPoint)/lost+found' && chown mysql:mysql '\(fs.mountPoint)' && chmod 755 '\(fs.mountPoint)'"
        ) == 0
    else {
        throw FixtureError("cannot prepare \(fs.mountPoint) for MariaDB")
    }
    return fs
}

/// A MariaDB server of start-mariadb.sh in `directory` (MARIADB_DIR): a new one, or the `data/`
/// already there started as is (a restored snapshot copy). Its socket, error log and pid file are
/// in `directory`, outside the data's filesystem. It keeps `keeping` (the filesystem under
/// `data/`) alive until it is stopped, so that the unmount comes after the stop; `stop()` or
/// deinit thaws `data/` first (nothing can stop while it is frozen).
final class MariaDBInstance {
    let directory: String
    let socket: String
    let port: String
    let pid: Int32
    private(set) var running = true
    private var keeping: AnyObject?

    init(directory: String, keeping: AnyObject?) throws {
        guard let scripts = mariadbScripts else { throw FixtureError("no start-mariadb.sh") }
        self.directory = directory
        let started = capture("/bin/bash", [scripts + "/start-mariadb.sh"], environment: ["MARIADB_DIR": directory])
        var values: [String: String] = [:]
        for line in started.stdout.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        guard started.succeeded, let socket = values["MARIADB_SOCKET"], let port = values["MARIADB_PORT"] else {
            // A server that came up but printed nothing usable is stopped all the same.
            _ = capture("/bin/bash", [scripts + "/stop-mariadb.sh", "--keep"], environment: ["MARIADB_DIR": directory])
            self.socket = ""
            self.port = ""
            pid = 0
            running = false
            throw FixtureError(
                "start-mariadb.sh in \(directory) failed (\(started.termination.map { "\($0)" } ?? "not run")): \(started.stderr)"
            )
        }
        self.socket = socket
        self.port = port
        pid = Int32(values["MARIADB_PID"] ?? "") ?? 0
        self.keeping = keeping
    }

    deinit { stop() }

    /// stop-mariadb.sh --keep (idempotent), then lets go of the filesystem under `data/`.
    func stop() {
        guard running else { return }
        running = false
        sh("fsfreeze -u '\(directory)/data' 2>/dev/null")
        if let scripts = mariadbScripts {
            _ = capture("/bin/bash", [scripts + "/stop-mariadb.sh", "--keep"], environment: ["MARIADB_DIR": directory])
        }
        keeping = nil
    }

    var errorLog: String { directory + "/error.log" }

    /// Runs SQL as the server's root (unix_socket authentication through the socket) and returns
    /// the rows, tab-separated columns, no header.
    func query(_ sql: String, timeoutSeconds: Double = 300) throws -> [[String]] {
        let result = capture(
            "/usr/bin/mariadb", ["--no-defaults", "-S", socket, "-uroot", "-N", "-B", "-e", sql],
            timeoutSeconds: timeoutSeconds)
        guard result.succeeded else {
            throw FixtureError("mariadb on \(socket) failed: \(sql.prefix(200)): \(result.stderr)")
        }
        return result.stdout.split(separator: "\n").map {
            $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        }
    }

    /// Every base table outside the server's virtual schemas, as `` `schema`.`table` ``.
    func allTables() throws -> [String] {
        try query(
            """
            SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables
            WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('information_schema', 'performance_schema', 'sys')
            ORDER BY 1
            """
        ).compactMap(\.first)
    }

    /// CHECK TABLE on every table: each answer that is not `status OK` (a warning such as "1
    /// client is using or hasn't closed the table properly", an error, "Corrupt"), as
    /// "table: type: text". Run it before anything else reads the tables: opening a MyISAM table
    /// that was not closed makes the server repair it on its own (myisam_recover_options).
    func checkAllTables() throws -> [String] {
        let tables = try allTables()
        guard !tables.isEmpty else { return ["no tables found"] }
        return try query("CHECK TABLE " + tables.joined(separator: ", ")).compactMap { row in
            guard row.count >= 4 else { return "unexpected CHECK TABLE row: \(row.joined(separator: " "))" }
            return row[2] == "status" && row[3] == "OK" ? nil : "\(row[0]): \(row[2]): \(row[3])"
        }
    }

    /// The ids of `table` in `range`, in order.
    func ids(in table: String, _ range: ClosedRange<Int64>) throws -> [Int64] {
        try query("SELECT id FROM \(table) WHERE id BETWEEN \(range.lowerBound) AND \(range.upperBound) ORDER BY id")
            .compactMap { $0.first.flatMap { Int64($0) } }
    }
}

/// Builds Tests/Fixtures/mariadb_ack_writer.c against libmariadb into `directory`.
func buildAckWriter(into directory: String) throws -> String {
    let output = directory + "/mariadb_ack_writer"
    let status = sh(
        "cc -O1 $(pkg-config --cflags libmariadb) -o '\(output)' '\(repositoryRoot)/Tests/Fixtures/mariadb_ack_writer.c' $(pkg-config --libs libmariadb)"
    )
    guard status == 0 else { throw FixtureError("cannot build mariadb_ack_writer (needs cc and libmariadb-dev)") }
    return output
}

/// One acknowledged commit of a writer: its id, when it was sent and when the OK came
/// (CLOCK_REALTIME, µs since the epoch), and how often a read-only server refused it first.
struct Acknowledgement: Equatable {
    var id: Int64
    var sentMicroseconds: Int64
    var ackedMicroseconds: Int64
    var retries: Int
}

/// A writer process (mariadb_ack_writer, never the test process): single-row autocommit inserts of
/// ids `firstID`, `firstID + 1`, … into `table`, each acknowledged commit appended to `ackFile`
/// (outside the frozen filesystem). Killed with its process group on `stop()` or deinit.
final class AckWriter {
    let table: String
    let firstID: Int64
    let ackFile: String
    let process: ChildProcess

    init(
        binary: String, socket: String, user: String = "root", password: String = "", table: String,
        firstID: Int64, ackFile: String
    ) throws {
        self.table = table
        self.firstID = firstID
        self.ackFile = ackFile
        process = try ChildProcess(
            spawning: Command(
                executable: binary,
                arguments: [socket, user, password, table, String(firstID), ackFile],
                environment: ["PATH": "/usr/bin:/bin"]))
    }

    deinit { stop() }

    var isRunning: Bool {
        if case .exited = process.wait(until: .now) { return false }
        return true
    }

    func stop() {
        process.terminateGroup(grace: .seconds(1))
    }

    var errors: String { process.stderrTail.text }

    /// How many commits it has acknowledged so far (lines in the file).
    var acknowledgedCount: Int {
        guard let file = try? FileDescriptor.open(ackFile, O_RDONLY), let bytes = try? file.readAll(limit: 256 << 20)
        else { return 0 }
        return bytes.reduce(0) { $0 + ($1 == 10 ? 1 : 0) }
    }

    /// Every acknowledged commit, in order.
    func acknowledgements() -> [Acknowledgement] {
        guard let file = try? FileDescriptor.open(ackFile, O_RDONLY), let bytes = try? file.readAll(limit: 256 << 20)
        else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count == 4, let id = Int64(fields[0]), let sent = Int64(fields[1]),
                let acked = Int64(fields[2]),
                let retries = Int(fields[3])
            else { return nil }
            return Acknowledgement(id: id, sentMicroseconds: sent, ackedMicroseconds: acked, retries: retries)
        }
    }
}

/// An ISO 8601 UTC timestamp with milliseconds ("2026-11-27T02:40:45.879Z", as the host and the
/// plugins write them) in µs since the epoch.
func epochMicroseconds(iso text: String) -> Int64? {
    epochSeconds(isoTimestamp: text).map { Int64(($0 * 1000).rounded()) * 1000 }
}
