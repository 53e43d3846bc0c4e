import Glibc
public import PluginHostSupport
public import PluginKit

/// The PostgreSQL quiesce plugin.
///
/// - mode `checkpoint` (default): quiesce runs `CHECKPOINT` and closes its session; nothing is
///   held, resume has nothing to undo. With an atomic snapshot of every volume the cluster uses,
///   the restored copy replays WAL like after a crash; the checkpoint keeps that replay short.
/// - mode `backup`: quiesce runs `pg_backup_start(label, fast => true)` in a session that stays
///   open across the snapshot; resume runs `pg_backup_stop()` in that same session and keeps the
///   label file and tablespace map under `labelDirectory/<operation id>/`. Needs WAL archiving.
///   The held session carries a dead-man switch (`idle_session_timeout`, from the call's
///   `holdUntil`), so backup mode cannot outlive a host that disappeared.
public final class PostgreSQLPlugin: QuiescePlugin {
    public static let name = "postgresql"
    public static let version = "1.0.0"
    public static let summary =
        "PostgreSQL: CHECKPOINT before the freeze, or a non-exclusive backup (pg_backup_start/pg_backup_stop) held across it"

    /// Bounds the catalog queries of `check` and `dataPaths`.
    static let queryTimeoutSeconds = 10

    let config: PostgreSQLConfig
    let host: PluginHostServices
    /// Added to the time left until `holdUntil` for the held session's idle_session_timeout.
    var holdMargin: Duration = .seconds(10)
    /// The hold assumed when the host gives no `holdUntil`.
    var unknownHold: Duration = .seconds(600)

    private var hold: Hold = .none

    private enum Hold {
        /// Nothing held: before quiesce, in checkpoint mode, or after a quiesce that failed
        /// before backup mode began (a failure closes its session, which ends what it started).
        case none
        /// Backup mode, held by this session until resume.
        case backup(HeldBackup)
        /// Resume ran; a repeated resume reports the same outcome.
        case ended(PluginError?)
    }

    private struct HeldBackup {
        let session: PostgresSession
        let functions: BackupFunctions
        let label: String
        let startLSN: String
        let directory: String
    }

    public init(config: JSONValue, host: PluginHostServices) throws(PluginError) {
        self.config = try PostgreSQLConfig(parsing: config)
        self.host = host
    }

    deinit {
        if case .backup(let held) = hold {
            host.log(
                .warning,
                "postgresql: destroyed while holding backup mode; closing session \(held.session.backendPID) ends it")
            held.session.close()
        }
    }

    // MARK: - check

    public func check(_ call: inout PluginCall) throws(PluginError) {
        let session = try connect(call)
        defer { session.close() }
        let version = ServerVersion(session.serverVersion)
        call.detail("server_version", version.description)
        call.detail("mode", config.mode.rawValue)
        try requireSupported(version)

        let facts = try readFacts(session, call, doing: "read the server's settings and the role's privileges")
        call.detail("role", facts.role)
        call.detail("role.superuser", facts.superuser ? "yes" : "no")
        call.detail("privilege.checkpoint", facts.mayCheckpoint ? "yes" : "no")
        let functions = BackupFunctions(version)
        call.detail("privilege.\(functions.startName)", facts.mayStartBackup ? "yes" : "no")
        call.detail("privilege.\(functions.stopName)", facts.mayStopBackup ? "yes" : "no")
        call.detail("privilege.read_settings", facts.mayReadSettings ? "yes" : "no")
        call.detail("archive_mode", facts.archiveMode)
        call.detail("archiver", Self.describe(facts.archiving))
        call.detail("in_recovery", facts.inRecovery ? "yes" : "no")

        // Most fundamental first: the plugin's config, the server's setup, the role's privileges.
        var problems: [PluginError] = []
        var warnings: [String] = []
        switch config.mode {
        case .checkpoint:
            if !facts.mayCheckpoint {
                problems.append(
                    PluginError(.notAuthorized, checkpointPrivilegeMessage(role: facts.role, version: version)))
            }
        case .backup:
            if let directory = config.labelDirectory {
                if let data = facts.dataDirectory, let realData = try? CredentialFiles.resolve(data).get(),
                    let realLabels = try? CredentialFiles.resolve(directory).get(),
                    MountInfo.path(realLabels, isInside: realData)
                {
                    problems.append(
                        PluginError(
                            .invalidConfig,
                            """
                            config key \"labelDirectory\": \(realLabels) is inside the data directory \(realData); a \
                            backup label there stops the server from starting: choose a directory outside it
                            """
                        ))
                } else if let problem = CredentialFiles.labelDirectoryProblem(directory) {
                    problems.append(PluginError(.invalidConfig, "config key \"labelDirectory\": \(problem)"))
                }
            }
            switch facts.archiving {
            case .off:
                problems.append(PluginError(.unsupported, archivingOffMessage(archiveMode: facts.archiveMode)))
            case .noArchiver:
                problems.append(PluginError(.unsupported, noArchiverMessage))
            case .unknown:
                warnings.append(
                    """
                    role \(facts.role) may not read archive_command, so the plugin cannot tell whether WAL is really \
                    archived (GRANT pg_read_all_settings TO \(facts.role))
                    """
                )
            case .on:
                break
            }
            let missing = [
                (facts.mayStartBackup, functions.startSignature), (facts.mayStopBackup, functions.stopSignature),
            ]
            .filter { !$0.0 }.map(\.1)
            if !missing.isEmpty {
                problems.append(PluginError(.notAuthorized, backupPrivilegeMessage(role: facts.role, missing: missing)))
            }
            if !version.hasIdleSessionTimeout {
                warnings.append(
                    """
                    PostgreSQL \(version) has no idle_session_timeout: backup mode ends only when the plugin's session \
                    ends (PostgreSQL 14 and later end it on a deadline too)
                    """
                )
            }
        }

        if let dataDirectory = facts.dataDirectory {
            let mounts = MountInfo.current()
            let layout = ClusterLayout(dataDirectory: dataDirectory, tablespaces: facts.tablespaces, mounts: mounts)
            for location in layout.locations {
                call.detail(location.key, location.path)
                if let real = location.realPath, real != location.path { call.detail(location.key + ".real", real) }
                if location.key.hasPrefix("tablespace.") {
                    call.detail(location.key + ".name", String(location.name.dropFirst(11)))
                }
                call.detail(location.key + ".filesystem", location.filesystem?.description ?? "unknown")
            }
            warnings += layout.warnings(freezeMounts: host.freezeMounts, mounts: mounts)
        } else {
            warnings.append(
                """
                role \(facts.role) may not read data_directory, so the plugin cannot tell where the cluster's files \
                are or whether the snapshot covers them (GRANT pg_read_all_settings TO \(facts.role))
                """
            )
        }
        for (index, warning) in warnings.enumerated() {
            call.detail("warning.\(index + 1)", warning)
            host.log(.warning, "postgresql: \(warning)")
        }

        if let first = problems.first {
            throw PluginError(first.status, problems.map(\.message).joined(separator: "; also: "))
        }
        call.summary =
            "PostgreSQL \(version), role \(facts.role)\(facts.superuser ? " (superuser)" : ""), mode \(config.mode.rawValue): ready"
            + (warnings.isEmpty ? "" : " with \(warnings.count) warning\(warnings.count == 1 ? "" : "s")")
    }

    // MARK: - dataPaths

    public func dataPaths(_ call: inout PluginCall) throws(PluginError) -> [String] {
        let session = try connect(call)
        defer { session.close() }
        try requireSupported(ServerVersion(session.serverVersion))
        let facts = try readFacts(session, call, doing: "read the data directory and the tablespaces")
        guard let dataDirectory = facts.dataDirectory else {
            throw PluginError(
                .notAuthorized,
                "role \(facts.role) may not read data_directory: GRANT pg_read_all_settings TO \(facts.role) (or use a superuser role)"
            )
        }
        return ClusterLayout(dataDirectory: dataDirectory, tablespaces: facts.tablespaces, mounts: MountInfo.current())
            .paths
    }

    // MARK: - quiesce

    public func quiesce(_ call: inout PluginCall) throws(PluginError) {
        if case .backup = hold {
            throw PluginError(.failed, "quiesce was called again while backup mode is held; resume first")
        }
        hold = .none
        switch config.mode {
        case .checkpoint: try checkpoint(&call)
        case .backup: try startBackup(&call)
        }
    }

    private func checkpoint(_ call: inout PluginCall) throws(PluginError) {
        let session = try connect(call)
        defer { session.close() }
        let version = ServerVersion(session.serverVersion)
        try requireSupported(version)
        call.detail("mode", "checkpoint")
        call.detail("session_pid", String(session.backendPID))
        let bound = budget(call, seconds: config.checkpointTimeoutSeconds, key: "checkpointTimeoutSeconds")
        let started = Monotonic.Instant.now
        do throws(SessionError) {
            try limitStatement(session, to: bound)
            _ = try session.execute("CHECKPOINT", until: bound.clientDeadline)
        } catch {
            throw failure(
                error, doing: "run CHECKPOINT", bound: bound,
                privilege: checkpointPrivilegeMessage(role: session.user, version: version))
        }
        let elapsed = (Monotonic.Instant.now - started).inMilliseconds
        call.detail("checkpoint_ms", NumberText.fixed(elapsed, decimals: 3))
        // Where crash recovery of the snapshot starts: informative only, so a failure is no error.
        if let row = try? session.execute(
            "SELECT checkpoint_lsn::text, redo_lsn::text FROM pg_catalog.pg_control_checkpoint()",
            until: bound.clientDeadline
        ).first, row.count == 2 {
            call.detail("checkpoint_lsn", row[0] ?? "")
            call.detail("redo_lsn", row[1] ?? "")
        }
        host.log(.info, "postgresql: CHECKPOINT took \(NumberText.fixed(elapsed, decimals: 3)) ms")
        call.summary = "CHECKPOINT done in \(NumberText.fixed(elapsed, decimals: 3)) ms"
    }

    private func startBackup(_ call: inout PluginCall) throws(PluginError) {
        guard let labelDirectory = config.labelDirectory else {
            throw PluginError(.invalidConfig, "config key \"labelDirectory\" is required with mode \"backup\"")
        }
        let store = LabelStore(directory: labelDirectory)
        let session = try connect(call)
        var held = false
        // Until backup mode is held, any failure closes the session, and with it ends a backup
        // it may have begun: resume then has nothing to undo.
        defer { if !held { session.close() } }
        let version = ServerVersion(session.serverVersion)
        try requireSupported(version)
        let functions = BackupFunctions(version)
        call.detail("mode", "backup")
        call.detail("session_pid", String(session.backendPID))

        let bound = budget(call, seconds: config.checkpointTimeoutSeconds, key: "checkpointTimeoutSeconds")
        let label = "\(config.label)-\(host.operationID)"
        let archiving: ServerFacts.Archiving
        let archiveMode: String
        do throws(SessionError) {
            try limitStatement(session, to: bound)
            let rows = try session.execute(
                """
                SELECT pg_catalog.current_setting('archive_mode'),
                       (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'archive_command'),
                       (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'archive_library')
                """, until: bound.clientDeadline)
            let row = rows.first ?? [nil, nil, nil]
            archiveMode = row[0] ?? ""
            archiving = ServerFacts.archiving(mode: archiveMode, command: row[1], library: row[2])
        } catch {
            throw failure(error, doing: "read archive_mode", bound: bound)
        }
        switch archiving {
        case .off: throw PluginError(.unsupported, archivingOffMessage(archiveMode: archiveMode))
        case .noArchiver: throw PluginError(.unsupported, noArchiverMessage)
        case .on, .unknown: break
        }

        // Before the backup starts, so that a directory that cannot be written fails now and
        // not in resume, when the backup has run.
        let directory = try store.prepare(operationID: host.operationID)

        let started: Monotonic.Instant
        let startLSN: String
        do throws(SessionError) {
            if version.hasIdleSessionTimeout {
                let milliseconds = idleSessionTimeoutMilliseconds(holdUntil: call.holdUntil)
                try session.set("idle_session_timeout", String(milliseconds), until: bound.clientDeadline)
                call.detail("idle_session_timeout_ms", String(milliseconds))
            } else {
                call.detail("idle_session_timeout_ms", "unavailable")
                host.log(
                    .warning,
                    """
                    postgresql: PostgreSQL \(version.description) has no idle_session_timeout; backup mode ends only \
                    with the plugin's session
                    """
                )
            }
            started = Monotonic.Instant.now
            let rows = try session.execute(functions.startSQL, [label], until: bound.clientDeadline)
            startLSN = (rows.first?.first ?? nil) ?? ""
        } catch {
            throw failure(
                error, doing: "run \(functions.startName)", bound: bound,
                privilege: backupPrivilegeMessage(role: session.user, missing: [functions.startSignature]))
        }
        let elapsed = (Monotonic.Instant.now - started).inMilliseconds
        hold = .backup(
            HeldBackup(session: session, functions: functions, label: label, startLSN: startLSN, directory: directory))
        held = true
        call.detail("backup_label_name", label)
        call.detail("start_lsn", startLSN)
        call.detail("backup_start_ms", NumberText.fixed(elapsed, decimals: 3))
        call.detail("label_directory", directory)
        host.log(
            .info,
            "postgresql: \(functions.startName) took \(NumberText.fixed(elapsed, decimals: 3)) ms, start LSN \(startLSN)"
        )
        call.summary =
            "backup \(label) started at \(startLSN) in \(NumberText.fixed(elapsed, decimals: 3)) ms; held by session \(session.backendPID)"
    }

    /// The held session's idle_session_timeout in milliseconds: the time left until resume comes
    /// at the latest (`unknownHold` without `holdUntil`, zero once it has passed), plus a margin,
    /// rounded up, at most `Int32.max`. If the host disappears, the server ends the session, and
    /// backup mode with it.
    func idleSessionTimeoutMilliseconds(holdUntil: Monotonic.Instant?) -> Int {
        let left = holdUntil.map { $0 - .now } ?? unknownHold
        return Int(min((left + holdMargin).millisecondsRoundedUp, Int64(Int32.max)))
    }

    // MARK: - resume

    public func resume(_ call: inout PluginCall) throws(PluginError) {
        switch hold {
        case .none:
            call.summary =
                config.mode == .checkpoint
                ? "nothing to undo: mode checkpoint holds nothing" : "nothing to undo: backup mode was not started"
        case .ended(let failure):
            if let failure { throw failure }
            call.summary = "already resumed"
        case .backup(let held):
            do throws(PluginError) {
                try stopBackup(held, &call)
                hold = .ended(nil)
            } catch {
                hold = .ended(error)
                throw error
            }
        }
    }

    private func stopBackup(_ held: HeldBackup, _ call: inout PluginCall) throws(PluginError) {
        defer { held.session.close() }
        call.detail("mode", "backup")
        call.detail("backup_label_name", held.label)
        call.detail("start_lsn", held.startLSN)
        let bound = budget(call, seconds: config.backupStopTimeoutSeconds, key: "backupStopTimeoutSeconds")
        let started = Monotonic.Instant.now
        let rows: [[String?]]
        do throws(SessionError) {
            try limitStatement(held.session, to: bound)
            rows = try held.session.execute(held.functions.stopSQL, until: bound.clientDeadline)
        } catch {
            switch error {
            case .sessionLost(let reason):
                throw consistencyLost(reason)
            case .statement(SQLState.objectNotInPrerequisiteState, let reason):
                throw consistencyLost(reason)
            case .deadlinePassed, .statement(SQLState.queryCanceled, _):
                throw PluginError(
                    .timeout,
                    """
                    \(held.functions.stopName) did not finish within \(bound.description): it waits until the backup's \
                    WAL is archived, so check archive_command and the server log. It was cancelled and its session \
                    closed; without the backup label this snapshot cannot be restored as a backup of this cluster
                    """
                )
            default:
                throw failure(
                    error, doing: "run \(held.functions.stopName)", bound: bound,
                    privilege: backupPrivilegeMessage(role: held.session.user, missing: [held.functions.stopSignature]))
            }
        }
        let elapsed = (Monotonic.Instant.now - started).inMilliseconds
        guard let row = rows.first, row.count == 3, let stopLSN = row[0], let labelFile = row[1] else {
            throw PluginError(.failed, "\(held.functions.stopName) returned no backup label")
        }
        let tablespaceMap = row[2] ?? ""
        call.detail("stop_lsn", stopLSN)
        call.detail("backup_stop_ms", NumberText.fixed(elapsed, decimals: 3))
        do throws(SystemError) {
            let labelPath = try LabelStore.write(labelFile, named: LabelStore.labelFileName, in: held.directory)
            let mapPath = try LabelStore.write(
                tablespaceMap, named: LabelStore.tablespaceMapFileName, in: held.directory)
            call.detail("label_file", labelPath)
            call.detail("tablespace_map_file", mapPath)
            call.detail("tablespace_map_entries", String(tablespaceMap.split(whereSeparator: \.isNewline).count))
        } catch {
            // The only copy of the label is in memory: put it in the host's log rather than lose it.
            host.log(
                .error,
                "postgresql: backup \(held.label): backup_label follows, as it could not be stored:\n\(labelFile)")
            if !tablespaceMap.isEmpty {
                host.log(.error, "postgresql: backup \(held.label): tablespace_map follows:\n\(tablespaceMap)")
            }
            throw PluginError(
                .failed,
                """
                \(held.functions.stopName) succeeded, but the backup label could not be stored in \(held.directory) \
                (\(error)); its content is in the host's log: keep it, a restore needs it
                """
            )
        }
        host.log(
            .info,
            "postgresql: \(held.functions.stopName) took \(NumberText.fixed(elapsed, decimals: 3)) ms, stop LSN \(stopLSN)"
        )
        call.summary =
            "backup \(held.label) stopped at \(stopLSN) (started at \(held.startLSN)); label kept in \(held.directory)"
    }

    private func consistencyLost(_ reason: String) -> PluginError {
        PluginError(
            .consistencyLost,
            """
            the PostgreSQL session that held backup mode was lost before the backup was stopped (\(reason)); backup \
            mode ended with it, so the snapshot is not application-consistent for this cluster and there is no backup \
            label for it (it is still crash-consistent if every volume of the cluster was snapshotted atomically)
            """
        )
    }

    // MARK: - Connecting and deadlines

    /// The libpq parameters: the config's, the verified password file, and defaults that make
    /// the session recognisable in pg_stat_activity and its text UTF-8.
    var connectionParameters: [(keyword: String, value: String)] {
        var parameters = config.connection
        if let passfile = config.passfile { parameters.append(("passfile", passfile)) }
        if !parameters.contains(where: { $0.keyword == "fallback_application_name" }) {
            parameters.append(("fallback_application_name", "pluginhost-postgresql"))
        }
        if !parameters.contains(where: { $0.keyword == "client_encoding" }) {
            parameters.append(("client_encoding", "UTF8"))
        }
        return parameters
    }

    private func connect(_ call: PluginCall) throws(PluginError) -> PostgresSession {
        let bound = budget(call, seconds: config.connectTimeoutSeconds, key: "connectTimeoutSeconds")
        let host = self.host
        do throws(SessionError) {
            return try PostgresSession.connect(
                connectionParameters, until: bound.deadline,
                timeoutIsCallDeadline: bound.isCallDeadline, timeoutDescription: bound.description,
                notices: { host.log(.info, "postgresql: server says: \($0)") })
        } catch {
            switch error {
            case .unreachable(let message):
                throw PluginError(
                    .unreachable,
                    """
                    cannot reach PostgreSQL: \(message). Is the server running, and do the config's host and port (or \
                    socket directory) point at it?
                    """
                )
            case .refused(let message, let needsPassword):
                let advice =
                    needsPassword
                    ? """
                    the server asks for a password and none was found: put it in the file named by \"passfile\" \
                    (hostname:port:database:username:password, mode 600, owner root)
                    """
                    : "check the role and database in the config, the password in the passfile, and pg_hba.conf"
                throw PluginError(.notAuthorized, "PostgreSQL refused the session: \(message); \(advice)")
            case .notAccepting(let message, let busy):
                throw PluginError(busy ? .busy : .unreachable, "PostgreSQL does not accept sessions now: \(message)")
            case .insecureCredentials(let message):
                throw PluginError(.invalidConfig, message)
            case .deadlinePassed(let message):
                throw PluginError(.timeout, message)
            case .statement, .sessionLost:
                throw PluginError(.unreachable, "cannot connect to PostgreSQL: \(error.message)")
            }
        }
    }

    /// When a step gives up: its own timeout, or a little before the call's deadline if that
    /// comes first (so that cancelling and reporting fit before the host kills the worker).
    struct Bound {
        /// The server's statement_timeout aims here.
        var deadline: Monotonic.Instant
        /// The client waits until here, then cancels: a little after `deadline` so that the
        /// server's own timeout normally ends the statement and keeps the session usable.
        var clientDeadline: Monotonic.Instant
        var isCallDeadline: Bool
        var description: String
    }

    func budget(_ call: PluginCall, seconds: Int, key: String) -> Bound {
        let now = Monotonic.Instant.now
        let own = now + .seconds(seconds)
        var callLimit = Monotonic.Instant.max
        if let deadline = call.deadline {
            // A tenth of the time left (zero once it has passed), at most 250 ms.
            callLimit = deadline - min(.milliseconds(250), (deadline - now) / 10)
        }
        if callLimit <= own {
            return Bound(
                deadline: callLimit, clientDeadline: callLimit, isCallDeadline: true,
                description: "the deadline of this call")
        }
        return Bound(
            deadline: own, clientDeadline: min(own + .seconds(1), callLimit), isCallDeadline: false,
            description: "\(key) (\(seconds) s)")
    }

    /// statement_timeout for the next statement: the time left in `bound`.
    /// Version, role, privileges, settings and paths, within the query timeout.
    private func readFacts(_ session: PostgresSession, _ call: PluginCall, doing what: String) throws(PluginError)
        -> ServerFacts
    {
        let bound = budget(call, seconds: Self.queryTimeoutSeconds, key: "the query timeout")
        do throws(SessionError) {
            try limitStatement(session, to: bound)
            return try ServerFacts.query(session, until: bound.clientDeadline)
        } catch {
            throw failure(error, doing: what, bound: bound)
        }
    }

    private func limitStatement(_ session: PostgresSession, to bound: Bound) throws(SessionError) {
        // Whole milliseconds left, at least 1 (0 would mean none), at most Int32.max.
        let milliseconds = max(1, (bound.deadline - .now).wholeMilliseconds)
        try session.set("statement_timeout", String(min(milliseconds, Int64(Int32.max))), until: bound.clientDeadline)
    }

    private func failure(_ error: SessionError, doing what: String, bound: Bound, privilege: String? = nil)
        -> PluginError
    {
        switch error {
        case .deadlinePassed(let message):
            PluginError(.timeout, "could not \(what) before \(bound.description): \(message)")
        case .statement(SQLState.queryCanceled, _):
            PluginError(
                .timeout, "could not \(what) within \(bound.description); the server cancelled it (statement_timeout)")
        case .statement(SQLState.insufficientPrivilege, let message):
            PluginError(
                .notAuthorized, privilege.map { "\($0) (server: \(message))" } ?? "could not \(what): \(message)")
        case .statement(SQLState.undefinedFunction, let message):
            PluginError(.unsupported, "could not \(what): \(message)")
        case .statement(SQLState.objectNotInPrerequisiteState, let message):
            PluginError(.unsupported, "could not \(what): \(message)")
        case .sessionLost(let message):
            PluginError(.unreachable, "the session was lost while trying to \(what): \(message)")
        default:
            PluginError(.failed, "could not \(what): \(error.message)")
        }
    }

    private func requireSupported(_ version: ServerVersion) throws(PluginError) {
        guard version >= .minimum else {
            throw PluginError(
                .unsupported,
                "PostgreSQL \(version.description) is not supported: the plugin needs PostgreSQL 10 or later")
        }
    }

    // MARK: - Messages

    private func checkpointPrivilegeMessage(role: String, version: ServerVersion) -> String {
        version.hasCheckpointRole
            ? "role \(role) may not run CHECKPOINT: it needs superuser or the privileges of pg_checkpoint (GRANT pg_checkpoint TO \(role))"
            : "role \(role) may not run CHECKPOINT: before PostgreSQL 15 only a superuser may"
    }

    private func backupPrivilegeMessage(role: String, missing: [String]) -> String {
        "role \(role) may not execute \(missing.joined(separator: " and ")): "
            + missing.map { "GRANT EXECUTE ON FUNCTION \($0) TO \(role)" }.joined(separator: "; ")
            + " (or use a superuser role)"
    }

    private func archivingOffMessage(archiveMode: String) -> String {
        """
        mode \"backup\" needs WAL archiving, but archive_mode is \(archiveMode) on this server: a backup taken in \
        backup mode can only be restored with the archived WAL. Use mode \"checkpoint\" (a snapshot of every volume of \
        the cluster at one instant restores like after a crash), or set up archiving (archive_mode = on, \
        archive_command or archive_library, then restart)
        """
    }

    private var noArchiverMessage: String {
        """
        mode \"backup\" needs WAL archiving, but archive_mode is on while neither archive_command nor archive_library \
        is set: nothing archives the WAL and pg_backup_stop would wait for it forever
        """
    }

    private static func describe(_ archiving: ServerFacts.Archiving) -> String {
        switch archiving {
        case .on: "configured"
        case .off: "off"
        case .noArchiver: "none (archive_command and archive_library are empty)"
        case .unknown: "unknown (archive_command not readable by this role)"
        }
    }
}
