import PluginHostSupport

/// What `check` learns from the server: version, the role's privileges, archiving, and where
/// the cluster keeps its files. Queried with version-aware SQL (PostgreSQL 10 and later).
struct ServerFacts: Sendable {
    var version: ServerVersion
    var role: String
    var superuser: Bool
    /// Superuser, or the privileges of pg_checkpoint (PostgreSQL 15+).
    var mayCheckpoint: Bool
    var mayStartBackup: Bool
    var mayStopBackup: Bool
    /// Superuser or pg_read_all_settings: data_directory (and archive_command) are readable.
    var mayReadSettings: Bool
    var archiveMode: String
    /// nil when the role may not read it.
    var archiveCommand: String?
    /// PostgreSQL 15+; nil when absent or unreadable.
    var archiveLibrary: String?
    var inRecovery: Bool
    /// nil when the role may not read it.
    var dataDirectory: String?
    var tablespaces: [(name: String, location: String)]

    /// Archiving is on and something archives: a backup can be completed from archived WAL.
    var archiving: Archiving {
        Self.archiving(mode: archiveMode, command: archiveCommand, library: archiveLibrary)
    }

    /// `command` nil: not readable by the role. PostgreSQL shows "(disabled)" for the command
    /// while archive_mode is off.
    static func archiving(mode: String, command: String?, library: String?) -> Archiving {
        guard mode == "on" || mode == "always" else { return .off }
        let command = command.map { $0 == "(disabled)" ? "" : $0 }
        if (command ?? "").isEmpty && (library ?? "").isEmpty {
            return command == nil ? .unknown : .noArchiver
        }
        return .on
    }

    enum Archiving: Sendable { case on, off, noArchiver, unknown }

    static func query(_ session: PostgresSession, until deadline: Monotonic.Instant) throws(SessionError) -> ServerFacts
    {
        let version = ServerVersion(session.serverVersion)
        let functions = BackupFunctions(version)
        let checkpointRole = version.hasCheckpointRole ? "pg_catalog.pg_has_role('pg_checkpoint', 'USAGE')" : "false"
        let privileges = try session.execute(
            """
            SELECT current_user::text, r.rolsuper,
                   r.rolsuper OR \(checkpointRole),
                   pg_catalog.has_function_privilege($1, 'EXECUTE'),
                   pg_catalog.has_function_privilege($2, 'EXECUTE'),
                   r.rolsuper OR pg_catalog.pg_has_role('pg_read_all_settings', 'USAGE'),
                   pg_catalog.current_setting('archive_mode'),
                   pg_catalog.pg_is_in_recovery()
            FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
            """, [functions.startSignature, functions.stopSignature], until: deadline)
        guard let row = privileges.first, row.count == 8 else {
            throw .statement(sqlState: "", message: "the role of this session is not in pg_roles")
        }
        // pg_settings lists only the settings this role may read: no error, just no row.
        let settings = try session.execute(
            """
            SELECT name, setting FROM pg_catalog.pg_settings
            WHERE name IN ('data_directory', 'archive_command', 'archive_library')
            """, until: deadline)
        func setting(_ name: String) -> String? { settings.first { $0.count == 2 && $0[0] == name }?[1] }
        let tablespaces = try session.execute(
            """
            SELECT spcname::text, pg_catalog.pg_tablespace_location(oid) FROM pg_catalog.pg_tablespace
            WHERE pg_catalog.pg_tablespace_location(oid) <> '' ORDER BY spcname
            """, until: deadline)
        return ServerFacts(
            version: version, role: row[0] ?? session.user, superuser: row[1] == "t", mayCheckpoint: row[2] == "t",
            mayStartBackup: row[3] == "t", mayStopBackup: row[4] == "t", mayReadSettings: row[5] == "t",
            archiveMode: row[6] ?? "", archiveCommand: setting("archive_command"),
            archiveLibrary: setting("archive_library"), inRecovery: row[7] == "t",
            dataDirectory: setting("data_directory"),
            tablespaces: tablespaces.map { (name: $0[0] ?? "", location: $0[1] ?? "") })
    }
}

/// `PQserverVersion` as numbers: 150018 is 15.18, 90624 is 9.6.24.
struct ServerVersion: Sendable, Comparable, CustomStringConvertible {
    let number: Int

    init(_ number: Int) { self.number = number }

    var major: Int { number >= 100000 ? number / 10000 : number / 100 }
    var description: String {
        number >= 100000
            ? "\(number / 10000).\(number % 10000)" : "\(number / 10000).\(number / 100 % 100).\(number % 100)"
    }

    static let minimum = ServerVersion(100000)
    var hasCheckpointRole: Bool { number >= 150000 }
    var hasIdleSessionTimeout: Bool { number >= 140000 }

    static func < (lhs: ServerVersion, rhs: ServerVersion) -> Bool { lhs.number < rhs.number }
}

/// The non-exclusive low-level backup API by version: `pg_backup_start`/`pg_backup_stop` from
/// 15 on; `pg_start_backup(label, fast, exclusive => false)`/`pg_stop_backup(exclusive => false,
/// wait_for_archive)` on 10–14 (15 removed them, and the exclusive mode with them).
struct BackupFunctions: Sendable {
    let startSQL: String
    let stopSQL: String
    let startSignature: String
    let stopSignature: String
    let startName: String
    let stopName: String

    init(_ version: ServerVersion) {
        if version.number >= 150000 {
            startName = "pg_backup_start"
            stopName = "pg_backup_stop"
            startSQL = "SELECT pg_catalog.pg_backup_start($1, true)::text"
            stopSQL = "SELECT lsn::text, labelfile, spcmapfile FROM pg_catalog.pg_backup_stop(true)"
            startSignature = "pg_catalog.pg_backup_start(text, boolean)"
            stopSignature = "pg_catalog.pg_backup_stop(boolean)"
        } else {
            startName = "pg_start_backup"
            stopName = "pg_stop_backup"
            startSQL = "SELECT pg_catalog.pg_start_backup($1, true, false)::text"
            stopSQL = "SELECT lsn::text, labelfile, spcmapfile FROM pg_catalog.pg_stop_backup(false, true)"
            startSignature = "pg_catalog.pg_start_backup(text, boolean, boolean)"
            stopSignature = "pg_catalog.pg_stop_backup(boolean, boolean)"
        }
    }
}
