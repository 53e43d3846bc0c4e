import Glibc
import PluginHostSupport
import Testing

/// A second, throwaway PostgreSQL 15 cluster for what the main test server must not be changed
/// for: WAL archiving (archive_mode needs a restart), a role with a password behind
/// scram-sha-256, a role without privileges, pg_wal moved behind a symlink, and a tablespace
/// on another filesystem (tmpfs). Started once for the suite that uses `.archiveCluster`,
/// stopped and deleted after it (stop-postgres.sh removes its directory).
///
/// The directory is the test process's own: two test runs on one machine (two checkouts) once
/// shared a fixed one, and each start stopped the other run's server, which then looked as if
/// it had died. What a crashed run left (its process gone) is stopped and removed at start.
struct ArchiveCluster: Sendable {
    static let prefix = "/tmp/quiesce-postgres-archive."
    static let directory = prefix + String(getpid())
    static let passwordRole = "pluginhost_scram"
    static let password = "right-password"
    static let plainRole = "pluginhost_plain"

    @TaskLocal static var current: ArchiveCluster?

    let socketDirectory: String
    let port: String
    let dataDirectory: String
    let walDirectory: String
    let walArchive: String
    let tablespaceDirectory: String

    /// Connection as the superuser postgres over the socket (trust).
    var conninfo: String { "host=\(socketDirectory) port=\(port) user=postgres dbname=postgres" }

    /// Over TCP as `role` (scram-sha-256 for the password role, trust otherwise).
    func tcpConninfo(user role: String) -> String {
        "host=127.0.0.1 port=\(port) user=\(role) dbname=postgres sslmode=disable"
    }

    static func start() throws -> ArchiveCluster {
        let environment = ["POSTGRES_DIR": directory]
        try stopLeftovers()
        var values = try TestDatabase.runScript("start-postgres.sh", environment: environment)
        guard let data = values["POSTGRES_DATA"], let socket = values["PGHOST"], let port = values["PGPORT"],
            let postgres = getpwnam("postgres")?.pointee
        else {
            throw TestFailure("start-postgres.sh printed no POSTGRES_DATA/PGHOST/PGPORT, or there is no user postgres")
        }
        let walArchive = directory + "/wal-archive"
        let walMoved = directory + "/wal-elsewhere"
        let tablespace = "/dev/shm/pluginhost-pgtest-\(getpid())"
        for path in [walArchive, tablespace] {
            guard mkdir(path, 0o700) == 0, chown(path, postgres.pw_uid, postgres.pw_gid) == 0 else {
                throw TestFailure("cannot create \(path) for user postgres: \(String(cString: strerror(errno)))")
            }
        }

        do {
            let admin = try AdminConnection("host=\(socket) port=\(port) user=postgres dbname=postgres")
            try admin.query("ALTER SYSTEM SET archive_mode = 'on'")
            try admin.query("ALTER SYSTEM SET archive_command = 'test ! -f \(walArchive)/%f && cp %p \(walArchive)/%f'")
            try admin.query("CREATE ROLE \(passwordRole) LOGIN PASSWORD '\(password)'")
            try admin.query("GRANT pg_checkpoint TO \(passwordRole)")
            try admin.query("CREATE ROLE \(plainRole) LOGIN")
            try admin.query("CREATE TABLESPACE shm_space LOCATION '\(tablespace)'")
            try admin.query(
                "CREATE TABLE writes (id serial PRIMARY KEY, at timestamptz DEFAULT now()) TABLESPACE shm_space")
        }
        // The password role must really authenticate: scram-sha-256 over TCP, before the trust lines.
        let hba = data + "/pg_hba.conf"
        let old = try FileDescriptor.open(hba, O_RDONLY).readAll(limit: 1 << 20)
        try FileDescriptor.open(hba, O_WRONLY | O_TRUNC)
            .writeAll(
                "host all \(passwordRole) 127.0.0.1/32 scram-sha-256\nlocal all \(passwordRole) scram-sha-256\n"
                    + String(decoding: old, as: UTF8.self))

        // archive_mode needs a restart; move pg_wal behind a symlink meanwhile, as on servers
        // that keep WAL on a volume of its own.
        try TestDatabase.runScript("stop-postgres.sh", ["--keep"], environment: environment)
        guard rename(data + "/pg_wal", walMoved) == 0, symlink(walMoved, data + "/pg_wal") == 0 else {
            throw TestFailure("cannot move pg_wal to \(walMoved): \(String(cString: strerror(errno)))")
        }
        values = try TestDatabase.runScript("start-postgres.sh", environment: environment)
        guard let restartedSocket = values["PGHOST"], let restartedPort = values["PGPORT"] else {
            throw TestFailure("start-postgres.sh printed no PGHOST/PGPORT after the restart")
        }
        return ArchiveCluster(
            socketDirectory: restartedSocket, port: restartedPort, dataDirectory: data,
            walDirectory: walMoved, walArchive: walArchive, tablespaceDirectory: tablespace)
    }

    /// Clusters of earlier test runs whose process is gone: stopped, and their directories removed.
    static func stopLeftovers() throws {
        guard let names = try? FileSystem.entries(of: "/tmp") else { return }
        var leftovers: [String] = []
        for name in names {
            let path = "/tmp/" + name
            guard path.hasPrefix(prefix), let owner = Int32(path.dropFirst(prefix.count)) else { continue }
            if owner == getpid() || kill(owner, 0) != 0 { leftovers.append(path) }
        }
        for path in leftovers { try TestDatabase.runScript("stop-postgres.sh", environment: ["POSTGRES_DIR": path]) }
    }

    /// Starts the cluster again, on the same port, if it is gone, saying so with the end of its
    /// log: the server was found stopped, socket removed, when another test run on the same
    /// machine still shared its directory. Should it happen again, the log says who stopped it.
    func ensureRunning() throws {
        let pidFile = (try? FileDescriptor.open(dataDirectory + "/postmaster.pid", O_RDONLY).readAll(limit: 4096)) ?? []
        let pid = Int32(String(decoding: pidFile.prefix { $0 != 0x0A }, as: UTF8.self)) ?? 0
        guard pid <= 0 || kill(pid, 0) != 0 || access(socketDirectory + "/.s.PGSQL.\(port)", F_OK) != 0 else { return }
        let log = (try? FileDescriptor.open(Self.directory + "/postgres.log", O_RDONLY).readAll(limit: 1 << 24)) ?? []
        let tail = String(decoding: log, as: UTF8.self).split(separator: "\n").suffix(15).joined(separator: "\n")
        print(
            "archive cluster: the server on port \(port) was gone; starting it again (\(dataDirectory)). Its log ended:\n\(tail)"
        )
        let values = try TestDatabase.runScript(
            "start-postgres.sh", environment: ["POSTGRES_DIR": Self.directory, "POSTGRES_PORT": port])
        guard values["PGPORT"] == port else {
            throw TestFailure("the archive cluster came back on port \(values["PGPORT"] ?? "?"), not \(port)")
        }
    }

    func stop() {
        do {
            try TestDatabase.runScript("stop-postgres.sh", environment: ["POSTGRES_DIR": Self.directory])
        } catch {
            Issue.record("stopping the archive cluster: \(error)")
        }
        removeTree(tablespaceDirectory)
    }
}

/// Starts the archive cluster around a whole suite (once), and stops it after.
struct ArchiveClusterTrait: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void)
        async throws
    {
        let cluster = try ArchiveCluster.start()
        defer { cluster.stop() }
        try await ArchiveCluster.$current.withValue(cluster) { try await function() }
    }
}

extension Trait where Self == ArchiveClusterTrait {
    static var archiveCluster: Self { Self() }
}
