import Glibc
import PluginHost
import PluginHostSupport

/// `start-postgres.sh` and `stop-postgres.sh`: the repository's `scripts/db` (or
/// $PLUGINHOST_DB_SCRIPTS, to try other ones); nil when they are missing.
let postgresScripts: String? = {
    for directory in databaseScriptCandidates
    where access(directory + "/start-postgres.sh", R_OK) == 0 && access(directory + "/stop-postgres.sh", R_OK) == 0 {
        return directory
    }
    return nil
}()

/// Where the database start/stop scripts may be, in order.
let databaseScriptCandidates: [String] =
    (getenv("PLUGINHOST_DB_SCRIPTS").map { [String(cString: $0)] } ?? []) + [repositoryRoot + "/scripts/db"]

/// Where start-postgres.sh finds (or installs) PostgreSQL 15.
let postgresBin = "/usr/lib/postgresql/15/bin"

/// Wall-clock time in microseconds since the epoch (pgbench's `-l` log uses this clock).
func wallClockMicroseconds() -> Int64 {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return Int64(time.tv_sec) * 1_000_000 + Int64(time.tv_nsec) / 1000
}

/// A PostgreSQL log sequence number "X/Y" as a byte position.
func parseLSN(_ text: String) -> UInt64? {
    let parts = text.trimmed().split(separator: "/")
    guard parts.count == 2, let high = UInt64(parts[0], radix: 16), let low = UInt64(parts[1], radix: 16) else {
        return nil
    }
    return high << 32 | low
}

/// A PostgreSQL 15 server of start-postgres.sh in `directory` (POSTGRES_DIR): a new cluster, or
/// the `data/` already there started as is (a restored snapshot copy). Stopped by `stop()` or
/// on deinit; the directory is kept (it lives on a filesystem the test unmounts).
final class PostgresServer {
    let directory: String
    let port: String
    private(set) var running = true

    /// Starts it; start-postgres.sh picks a port below the kernel's ephemeral range that no
    /// socket uses (not even one in TIME_WAIT, which would refuse a probe yet fail the bind).
    /// Retried should the bind fail all the same (a port taken between the choice and the bind).
    init(directory: String) throws {
        guard let scripts = postgresScripts else { throw FixtureError("no start-postgres.sh") }
        self.directory = directory
        var failure = ""
        for _ in 0..<5 {
            let started = capture(
                "/bin/bash", [scripts + "/start-postgres.sh"], environment: ["POSTGRES_DIR": directory])
            let values = Dictionary(
                started.stdout.split(separator: "\n").compactMap { line -> (String, String)? in
                    guard let equals = line.firstIndex(of: "=") else { return nil }
                    return (String(line[..<equals]), String(line[line.index(after: equals)...]))
                }, uniquingKeysWith: { $1 })
            if started.succeeded, let port = values["PGPORT"] {
                self.port = port
                return
            }
            // A server that came up but printed nothing usable is stopped all the same.
            _ = capture(
                "/bin/bash", [scripts + "/stop-postgres.sh", "--keep"], environment: ["POSTGRES_DIR": directory])
            failure = "(\(started.termination.map { "\($0)" } ?? "not run")): \(started.stderr)"
            guard started.stderr.contains("Address already in use") else { break }
        }
        running = false
        throw FixtureError("start-postgres.sh in \(directory) failed \(failure)")
    }

    deinit { stop() }

    /// stop-postgres.sh --keep (idempotent).
    func stop() {
        guard running, let scripts = postgresScripts else { return }
        running = false
        _ = capture("/bin/bash", [scripts + "/stop-postgres.sh", "--keep"], environment: ["POSTGRES_DIR": directory])
    }

    var dataDirectory: String { directory + "/data" }
    var logFile: String { directory + "/postgres.log" }

    /// For libpq clients (the plugin, the load): loopback TCP, never the socket on the data's filesystem.
    var conninfo: String { "host=127.0.0.1 port=\(port) user=postgres dbname=postgres" }

    var clientEnvironment: [String: String] {
        ["PGHOST": "127.0.0.1", "PGPORT": port, "PGUSER": "postgres", "PGDATABASE": "postgres"]
    }

    /// One SQL command through psql; unaligned, tuples only, `|` between columns.
    func psql(_ sql: String) throws -> String {
        let result = capture(
            postgresBin + "/psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
            environment: clientEnvironment, timeoutSeconds: 300)
        guard result.succeeded else { throw FixtureError("psql failed on port \(port): \(sql): \(result.stderr)") }
        return result.stdout.trimmed("\n")
    }

    /// One row of `|`-separated columns.
    func row(_ sql: String) throws -> [String] {
        try psql(sql).split(separator: "|", omittingEmptySubsequences: false).map(String.init)
    }
}

/// A load generator: a separate process (never the test process) whose output goes to a file.
/// Killed with its process group on `stop()` or deinit.
final class LoadProcess {
    let name: String
    let process: ChildProcess
    let outputFile: String

    init(
        _ name: String, _ executable: String, _ arguments: [String], environment: [String: String] = [:],
        outputFile: String
    ) throws {
        self.name = name
        self.outputFile = outputFile
        let quoted = ([executable] + arguments).map(shellQuoted)
        process = try ChildProcess(
            spawning: Command(
                executable: "/bin/sh",
                arguments: ["-c", "exec " + quoted.joined(separator: " ") + " >'\(outputFile)' 2>&1"],
                environment: ["PATH": "/usr/bin:/bin"].merging(environment) { $1 }))
    }

    deinit { stop() }

    /// Still running?
    var isRunning: Bool {
        if case .exited = process.wait(until: .now) { return false }
        return true
    }

    /// Waits up to `seconds` for it to end by itself.
    func finish(within seconds: Double) -> Termination? {
        if case .exited(let end) = process.wait(until: Monotonic.Instant.now + .seconds(seconds)) { return end }
        return nil
    }

    @discardableResult
    func stop() -> Termination {
        process.terminateGroup(grace: .seconds(2))
    }
}

/// One transaction of a `pgbench -l` log: `client_id transaction_no latency_us script_no epoch_s epoch_us`.
struct PgbenchTransaction {
    var endMicroseconds: Int64
    var latencyMicroseconds: Int64
    var startMicroseconds: Int64 { endMicroseconds - latencyMicroseconds }

    /// Every transaction in the logs `PREFIX.<pid>[.<thread>]`.
    static func read(logPrefix: String) -> [PgbenchTransaction] {
        let text = capture("/bin/sh", ["-c", "cat \"$0\".[0-9]*", logPrefix]).stdout
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 6, let latency = Int64(fields[2]), let seconds = Int64(fields[4]),
                let micros = Int64(fields[5])
            else { return nil }
            return PgbenchTransaction(endMicroseconds: seconds * 1_000_000 + micros, latencyMicroseconds: latency)
        }
    }
}

/// `text` as one word for /bin/sh.
func shellQuoted(_ text: String) -> String {
    "'" + text.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
}

extension String {
    /// Without leading and trailing characters from `set`.
    func trimmed(_ set: String = " \n") -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}
