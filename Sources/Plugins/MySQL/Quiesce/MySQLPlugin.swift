import Glibc
public import PluginHostSupport
public import PluginKit

/// The bundled MariaDB/MySQL quiesce plugin.
///
/// quiesce opens ONE session and takes, within a bounded wait, the lock that blocks commits:
/// `BACKUP STAGE START … BLOCK_COMMIT` on MariaDB ≥ 10.4.1, `LOCK INSTANCE FOR BACKUP` +
/// `FLUSH TABLES WITH READ LOCK` on MySQL ≥ 8.0, `FLUSH TABLES WITH READ LOCK` elsewhere. The
/// session then stays idle and open until resume releases the lock. A lock dies with its
/// session, so: the host killing this worker releases it at once; the server's `wait_timeout`,
/// set from the host's hold limit, releases it if the host disappears; and resume reports
/// PH_CONSISTENCY_LOST when the session did not survive until then.
public final class MySQLPlugin: QuiescePlugin {
    public static var name: String { "mysql" }
    public static var version: String { "1.0.0" }
    public static var summary: String {
        "MariaDB/MySQL: blocks commits (BACKUP STAGE or FLUSH TABLES WITH READ LOCK) from quiesce to resume"
    }

    /// Added to the hold limit for the server-side dead-man switch (`wait_timeout`).
    static let holdMarginSeconds = 2
    /// The dead-man switch when the host gives no hold limit.
    static let fallbackHoldSeconds = 300

    let config: MySQLConfig
    /// Tests turn this off to exercise, on MariaDB, the path MySQL depends on: a lock step that
    /// the server does not end in time is ended here (KILL from a second connection).
    var serverSideStatementTimeout = true
    private let host: PluginHostServices
    private let optionFile: OptionFile?
    private var state: State = .idle

    private enum State {
        case idle
        /// quiesce failed and released everything it had taken.
        case failed
        case held(Hold)
    }

    /// A lock being held: its session, the thread watching it, and when commits stopped.
    private struct Hold {
        let connection: ServerConnection
        let watcher: SessionWatcher
        let plan: LockPlan
        let server: ServerIdentity
        let lockTakenAt: Monotonic.Instant
        let lockTakenWallClock: String
        /// When the session went idle (its last statement ended).
        let idleSince: Monotonic.Instant
        let holdTimeoutSeconds: Int
    }

    public init(config: JSONValue, host: PluginHostServices) throws(PluginError) {
        self.config = try MySQLConfig.parse(config)
        self.host = host
        if let path = self.config.optionFile {
            optionFile = try OptionFile(path: path)
        } else {
            optionFile = nil
        }
    }

    deinit {
        if case .held(let hold) = state {
            _ = hold.watcher.stop()
            hold.connection.close()  // COM_QUIT: the server ends the session and its lock at once
        }
    }

    var target: ConnectionTarget {
        ConnectionTarget(
            socket: config.socket, host: config.host, port: config.port,
            optionFilePath: optionFile?.libraryPath, optionFileHasPassword: optionFile?.hasPassword ?? false)
    }

    // MARK: - check

    public func check(_ call: inout PluginCall) throws(PluginError) {
        let budget = CallBudget(deadline: call.deadline)
        let (connection, server) = try connect(budget)
        defer { connection.close() }
        call.detail("server_flavor", server.flavor.rawValue)
        call.detail("server_version", server.versionString)
        call.detail("connection", connection.hostInfo)
        if let optionFile { call.detail("option_file", optionFile.resolvedPath) }

        let account = try run(connection, "SELECT CURRENT_USER()", budget, "reading the account").firstValue ?? "?"
        call.detail("account", account)
        let grants = try readGrants(connection, server, budget)
        let directories = DataDirectories.from(
            variables: try run(
                connection, DataDirectories.query, budget,
                "reading the server's directories")
        ).resolved()
        let plan = try LockPlan.make(
            server: server, mode: config.mode, recordBinlog: config.recordBinlogPosition,
            binlogEnabled: directories.binlogEnabled,
            longQueryCheck: config.longQueryThresholdSeconds > 0)
        call.detail("mode", plan.mode.rawValue)
        call.detail("privileges_required", plan.requiredPrivileges.map(\.name).joined(separator: ","))
        call.detail("binlog", directories.binlogEnabled ? "enabled" : "disabled")
        call.detail("lock_wait_timeout_s", secondsText(config.lockWaitTimeoutSeconds))
        call.detail(
            "long_query_threshold_s",
            config.longQueryThresholdSeconds > 0 ? secondsText(config.longQueryThresholdSeconds) : "off")

        let warnings = pathWarnings(directories, &call)
        if config.recordBinlogPosition && !directories.binlogEnabled {
            call.detail("binlog_position", "not recorded: the binary log is disabled (log_bin=OFF)")
        }
        let missing = grants.missing(plan.requiredPrivileges)
        if !missing.isEmpty {
            call.detail("privileges_missing", missing.map(\.name).joined(separator: ","))
            let list = missing.map { "\($0.anyOf.joined(separator: " or ")) (for \($0.reason))" }.joined(
                separator: ", ")
            throw PluginError(
                .notAuthorized,
                """
                the account \(account) lacks \(list); grant it with: \
                \(GrantSet.grantStatement(for: missing, account: Self.quoted(account)))
                """
            )
        }
        call.summary =
            "\(server.summary) via \(connection.hostInfo): mode \(plan.mode.rawValue), privileges OK"
            + warnings.map { "; warning: \($0)" }.joined()
    }

    /// Details `<key>`, `<key>.frozen` for each directory, and the warnings for the summary.
    private func pathWarnings(_ directories: DataDirectories, _ call: inout PluginCall) -> [String] {
        let coverage = FreezeScope(freezeMounts: host.freezeMounts)
        var notFrozen: [(path: String, keys: [String])] = []
        var missing: [String] = []
        for entry in directories.entries {
            let path = entry.resolved ?? entry.path
            call.detail(entry.key, path)
            guard entry.resolved != nil else {
                call.detail("\(entry.key).frozen", "unknown (not found on this machine)")
                missing.append("\(entry.key) \(entry.path)")
                continue
            }
            if !coverage.isKnown {
                call.detail("\(entry.key).frozen", "unknown (no freeze set given)")
            } else if let mount = coverage.freezeMount(holding: path) {
                call.detail("\(entry.key).frozen", "yes (\(mount))")
            } else {
                call.detail("\(entry.key).frozen", "no")
                if let index = notFrozen.firstIndex(where: { $0.path == path }) {
                    notFrozen[index].keys.append(entry.key)
                } else {
                    notFrozen.append((path, [entry.key]))
                }
            }
        }
        var warnings = notFrozen.map {
            """
            \($0.path) (\($0.keys.joined(separator: ", "))) is not on a filesystem this operation freezes: the \
            snapshot of it would not be consistent
            """
        }
        if !missing.isEmpty {
            warnings.append(
                "\(missing.joined(separator: ", ")) not found on this machine (is the server remote or in a container?)"
            )
        }
        return warnings
    }

    private func readGrants(_ connection: ServerConnection, _ server: ServerIdentity, _ budget: CallBudget)
        throws(PluginError) -> GrantSet
    {
        var statement = "SHOW GRANTS"
        if server.flavor == .mysql && server.version >= ServerVersion(8, 0, 0) {
            // MySQL 8 does not expand roles in SHOW GRANTS unless asked to with USING.
            let roles = try run(connection, "SELECT CURRENT_ROLE()", budget, "reading the active roles").firstValue
            if let roles, !roles.isEmpty, roles.uppercased() != "NONE" {
                statement = "SHOW GRANTS FOR CURRENT_USER() USING \(roles)"
            }
        }
        let rows = try run(connection, statement, budget, "reading the account's privileges").rows
        return GrantSet.parse(rows.compactMap { $0.first ?? nil })
    }

    /// `test@localhost` → `'test'@'localhost'`.
    static func quoted(_ account: String) -> String {
        guard let at = account.lastIndex(of: "@") else { return "'\(account)'" }
        return "'\(account[..<at])'@'\(account[account.index(after: at)...])'"
    }

    // MARK: - data paths

    public func dataPaths(_ call: inout PluginCall) throws(PluginError) -> [String] {
        let budget = CallBudget(deadline: call.deadline)
        let (connection, _) = try connect(budget)
        defer { connection.close() }
        let variables = try run(connection, DataDirectories.query, budget, "reading the server's directories")
        return DataDirectories.from(variables: variables).resolved().distinctPaths
    }

    // MARK: - quiesce

    public func quiesce(_ call: inout PluginCall) throws(PluginError) {
        if case .held = state {
            throw PluginError(.failed, "quiesce was called while the lock is already held; resume must come first")
        }
        state = .idle
        do {
            state = .held(try takeLock(&call))
        } catch {
            state = .failed
            host.log(.warning, "mysql: quiesce failed: \(error.message)")
            throw error
        }
    }

    private func takeLock(_ call: inout PluginCall) throws(PluginError) -> Hold {
        let budget = CallBudget(deadline: call.deadline)
        let (connection, server) = try connect(budget)
        do {
            return try takeLock(connection, server, budget, &call)
        } catch {
            let note = abort(connection, budget)
            throw note.map { PluginError(error.status, "\(error.message) \($0)") } ?? error
        }
    }

    private func takeLock(
        _ connection: ServerConnection, _ server: ServerIdentity, _ budget: CallBudget,
        _ call: inout PluginCall
    ) throws(PluginError) -> Hold {
        // The session: its id (for KILL), whether there is a binary log, and the bounds of every
        // wait in it. wait_timeout is the dead-man switch for the idle hold that follows.
        let session = try run(connection, "SELECT CONNECTION_ID(), @@GLOBAL.log_bin", budget, "reading the session")
        if let id = session.firstValue, let value = UInt64(id) { connection.connectionID = value }
        let binlogEnabled = ["1", "ON"].contains((session.rows.first?.last ?? nil)?.uppercased() ?? "")
        var plan = try LockPlan.make(
            server: server, mode: config.mode, recordBinlog: config.recordBinlogPosition,
            binlogEnabled: binlogEnabled, longQueryCheck: config.longQueryThresholdSeconds > 0)
        plan.hasStatementTimeout = plan.hasStatementTimeout && serverSideStatementTimeout
        let holdSeconds = Self.holdTimeout(holdUntil: call.holdUntil, now: .now)
        let lockWaitWhole = max(1, Int(config.lockWaitTimeoutSeconds.rounded(.up)))
        try run(
            connection, "SET SESSION lock_wait_timeout = \(lockWaitWhole), wait_timeout = \(holdSeconds)", budget,
            "setting the session's time limits")

        if config.longQueryThresholdSeconds > 0 {
            let result = try run(
                connection, LongQueryCheck.query(flavor: server.flavor, threshold: config.longQueryThresholdSeconds),
                budget, "looking for long-running statements")
            let blocking = LongQueryCheck.blocking(LongQueryCheck.rows(result), mode: plan.mode)
            if !blocking.isEmpty {
                throw PluginError(
                    .busy,
                    """
                    not quiescing: \(LongQueryCheck.describe(blocking)) \
                    (longQueryThresholdSeconds=\(secondsText(config.longQueryThresholdSeconds))); \
                    \(plan.lockSteps.last!.sql) would wait for it while other writers stall. Try again when it has \
                    finished, or raise longQueryThresholdSeconds
                    """
                )
            }
        }

        // The lock: every step bounded by what is left of lockWaitTimeoutSeconds, on the server
        // (max_statement_time, lock_wait_timeout) and here (the statement is killed past it).
        let lockStart = Monotonic.Instant.now
        let lockDeadline = min(budget.work, lockStart + .seconds(clamping: config.lockWaitTimeoutSeconds))
        let limitedByCall = budget.hasCallDeadline && lockDeadline == budget.work
        var timings: [String] = []
        // Every plan has a step that blocks commits; until it ends, the lock is not taken.
        var takenAt = lockStart
        for step in plan.lockSteps {
            let stepStart = Monotonic.Instant.now
            // The server's bound ends a little before ours, so that it normally answers first
            // (and the session needs no KILL); ours is the backstop. Zero once that has passed.
            let left = lockDeadline - (stepStart + .milliseconds(50))
            let clientDeadline =
                plan.hasStatementTimeout ? min(budget.work, lockDeadline + .milliseconds(250)) : lockDeadline
            do {
                try connection.execute(plan.statement(for: step, seconds: left.inSeconds), deadline: clientDeadline)
            } catch {
                throw lockFailure(error, step: step, waitedFrom: lockStart, limitedByCall: limitedByCall)
            }
            let stepEnd = Monotonic.Instant.now
            timings.append("\(step.sql) \(milliseconds(stepEnd - stepStart)) ms")
            if step.blocksCommits { takenAt = stepEnd }
        }
        let takenWallClock = isoTimestamp()
        call.detail("server_flavor", server.flavor.rawValue)
        call.detail("server_version", server.versionString)
        call.detail("mode", plan.mode.rawValue)
        call.detail("connection_id", String(connection.connectionID))
        call.detail("lock_acquire_ms", milliseconds(takenAt - lockStart))
        call.detail("lock_steps", timings.joined(separator: ", "))
        call.detail("commits_blocked_since", takenWallClock)
        call.detail("hold_timeout_s", String(holdSeconds))

        var binlogNote = ""
        if let statusStatement = plan.binlogStatusStatement {
            binlogNote = try readBinlogPosition(connection, plan, statusStatement, budget, &call)
        } else if config.recordBinlogPosition {
            call.detail("binlog", "disabled")
            binlogNote = "; binary log disabled: no position recorded"
        }

        let watcher: SessionWatcher
        do {
            watcher = try SessionWatcher(socket: connection.socketDescriptor)
        } catch {
            throw PluginError(.failed, "cannot watch the held session: \(error)")
        }
        let idleSince = Monotonic.Instant.now
        call.summary =
            "commits blocked by \(plan.summary) on \(server.summary) (lock taken in \(milliseconds(takenAt - lockStart)) ms)\(binlogNote)"
        host.log(.info, "mysql: \(call.summary!)")
        return Hold(
            connection: connection, watcher: watcher, plan: plan, server: server, lockTakenAt: takenAt,
            lockTakenWallClock: takenWallClock, idleSince: idleSince, holdTimeoutSeconds: holdSeconds)
    }

    /// Reads the binary log position (and GTID) under the lock. A failure here does not undo
    /// the quiesce (the data is consistent all the same); it is reported instead.
    private func readBinlogPosition(
        _ connection: ServerConnection, _ plan: LockPlan, _ statement: String,
        _ budget: CallBudget, _ call: inout PluginCall
    ) throws(PluginError) -> String {
        do {
            let status = try connection.query(statement, deadline: budget.work)
            guard let file = status.value("File"), let position = status.value("Position") else {
                call.detail("binlog", "disabled")
                return "; binary log disabled: no position recorded"
            }
            call.detail("binlog_file", file)
            call.detail("binlog_position", position)
            var note = "; binlog \(file):\(position)"
            if let executed = status.value("Executed_Gtid_Set"), !executed.isEmpty {
                let gtid = executed.filter { !$0.isNewline }
                call.detail("gtid_executed", gtid)
                note += ", GTID \(gtid)"
            }
            if let gtidStatement = plan.gtidStatement {
                let gtid = try connection.query(gtidStatement, deadline: budget.work).firstValue ?? ""
                call.detail("gtid_binlog_pos", gtid)
                if !gtid.isEmpty { note += ", GTID \(gtid)" }
            }
            return note
        } catch let error where error.isDeadline {
            throw PluginError(.timeout, "the deadline passed while reading the binary log position under the lock")
        } catch {
            call.detail("binlog_error", error.message)
            host.log(.warning, "mysql: the binary log position could not be read: \(error.message)")
            return "; warning: binary log position not recorded (\(error.message))"
        }
    }

    /// PH_BUSY when the lock could not be had within lockWaitTimeoutSeconds, PH_TIMEOUT when the
    /// host's deadline was what ran out.
    private func lockFailure(
        _ error: ServerError, step: LockStep, waitedFrom start: Monotonic.Instant, limitedByCall: Bool
    ) -> PluginError {
        let waited = milliseconds(.now - start)
        if error.isDeadline || error.isLockWaitTimeout {
            if limitedByCall {
                return PluginError(
                    .timeout,
                    "the deadline passed while \(step.sql) was waiting for the lock (\(waited) ms): \(step.waitsFor)")
            }
            return PluginError(
                .busy,
                """
                \(step.sql) did not get the lock within \
                lockWaitTimeoutSeconds=\(secondsText(config.lockWaitTimeoutSeconds)) (waited \(waited) ms): \
                \(step.waitsFor). Nothing was left locked; try again later
                """
            )
        }
        if error.isAccessDenied || error.code == ServerErrorCode.specificAccessDenied {
            return PluginError(.notAuthorized, "\(step.sql) was refused: \(error.message)")
        }
        if error.isConnectionLost {
            return PluginError(.failed, "the server closed the session during \(step.sql): \(error.message)")
        }
        return PluginError(.failed, "\(step.sql) failed: \(error)")
    }

    /// wait_timeout for the held session, in seconds: the time left until the host's hold limit
    /// rounded up, plus a margin (the margin alone once it has passed), at most a year; the
    /// fallback without a hold limit.
    static func holdTimeout(holdUntil: Monotonic.Instant?, now: Monotonic.Instant) -> Int {
        guard let holdUntil else { return fallbackHoldSeconds }
        return Int(min(31_536_000, (holdUntil - now).secondsRoundedUp + Int64(holdMarginSeconds)))
    }

    // MARK: - resume

    public func resume(_ call: inout PluginCall) throws(PluginError) {
        switch state {
        case .idle:
            call.summary = "nothing to resume: not quiesced"
        case .failed:
            state = .idle
            call.summary = "nothing to resume: the quiesce had failed and released what it took"
        case .held(let hold):
            state = .idle
            try release(hold, &call)
        }
    }

    /// The unlock statements decide whether the lock held: a session that can still run them
    /// held it all along (nothing else releases it: no reconnect, no other statement ran in
    /// it). The watcher only says when a lost session was closed; it is stopped after the
    /// unlock, so that stopping it adds nothing to the time commits are blocked (it only polls,
    /// so it does not disturb the statements), and before the close (its descriptor).
    private func release(_ hold: Hold, _ call: inout PluginCall) throws(PluginError) {
        let budget = CallBudget(deadline: call.deadline)
        let start = Monotonic.Instant.now
        for statement in hold.plan.unlockStatements {
            do {
                try hold.connection.execute(statement, deadline: budget.work)
            } catch let error where error.isConnectionLost {
                let watched = hold.watcher.stop()
                hold.connection.close()
                throw lost(
                    hold, at: watched ?? SessionWatcher.Loss(monotonic: .now, wallClock: isoTimestamp()),
                    &call)
            } catch {
                // The session was alive, so the lock held until now; ending the session releases it.
                _ = hold.watcher.stop()
                let note = abort(hold.connection, budget) ?? ""
                let released = Monotonic.Instant.now
                call.detail("commits_blocked_ms", milliseconds(released - hold.lockTakenAt))
                call.summary =
                    "\(statement) failed (\(error)); the session was closed instead, which released the lock \(note)"
                host.log(.warning, "mysql: \(call.summary!)")
                return
            }
        }
        let released = Monotonic.Instant.now
        _ = hold.watcher.stop()
        hold.connection.close()
        call.detail("commits_blocked_ms", milliseconds(released - hold.lockTakenAt))
        call.detail("unlock_ms", milliseconds(released - start))
        call.summary =
            """
            commits were blocked for \(milliseconds(released - hold.lockTakenAt)) ms; \
            \(hold.plan.unlockStatements.joined(separator: ", ")) done
            """
        host.log(.info, "mysql: \(call.summary!)")
    }

    private func lost(_ hold: Hold, at loss: SessionWatcher.Loss, _ call: inout PluginCall) -> PluginError {
        let held = loss.monotonic - hold.lockTakenAt
        let idle = loss.monotonic - hold.idleSince
        let cause =
            idle + .milliseconds(500) >= .seconds(hold.holdTimeoutSeconds)
            ? """
            the server ended the idle session after wait_timeout=\(hold.holdTimeoutSeconds) s (the dead-man switch): \
            resume came later than the host's hold limit
            """
            : "the server closed the session (KILL, a server restart or a broken connection)"
        call.detail("lock_lost_at", loss.wallClock)
        call.detail("lock_held_ms", milliseconds(held))
        let message =
            """
            the lock was lost at \(loss.wallClock), \(milliseconds(held)) ms after it was taken at \
            \(hold.lockTakenWallClock): \(cause); the snapshot is not application-consistent for this database
            """
        host.log(.error, "mysql: \(message)")
        return PluginError(.consistencyLost, message)
    }

    // MARK: - connections

    private func connect(_ budget: CallBudget) throws(PluginError) -> (ServerConnection, ServerIdentity) {
        let connectDeadline = min(budget.work, .now + .seconds(clamping: config.connectTimeoutSeconds))
        let connection: ServerConnection
        do {
            connection = try ServerConnection.connect(target, deadline: connectDeadline)
        } catch {
            throw connectFailure(error, limitedByCall: budget.hasCallDeadline && connectDeadline == budget.work)
        }
        guard let server = ServerIdentity.parse(connection.serverInfo) else {
            connection.close()
            throw PluginError(
                .unsupported,
                "the server at \(target.displayName) sent a version this plugin cannot read: \"\(connection.serverInfo)\""
            )
        }
        return (connection, server)
    }

    private func connectFailure(_ error: ServerError, limitedByCall: Bool) -> PluginError {
        let place = target.displayName
        if error.isDeadline {
            return limitedByCall
                ? PluginError(.timeout, "the deadline passed while connecting to \(place)")
                : PluginError(
                    .unreachable,
                    "no answer from the server at \(place) within connectTimeoutSeconds=\(secondsText(config.connectTimeoutSeconds))"
                )
        }
        if error.isAccessDenied {
            let credentials =
                optionFile.map { "the user and password in the [client] group of \($0.configuredPath)" }
                    ?? """
                    the login: without optionFile, libmariadb logs in as the OS user (root) with no password, which \
                    needs unix_socket authentication
                    """
            return PluginError(
                .notAuthorized,
                "the server at \(place) refused the login: \(error.message). Check \(credentials), and the account's host part"
            )
        }
        if error.code == ServerErrorCode.tooManyConnections || error.code == ServerErrorCode.userTooManyConnections {
            return PluginError(.busy, "the server at \(place) refused the connection: \(error.message)")
        }
        return PluginError(.unreachable, "cannot connect to the server at \(place): \(error.message)")
    }

    /// Runs a statement outside the lock steps, mapping its failure to a plugin status.
    @discardableResult
    private func run(_ connection: ServerConnection, _ sql: String, _ budget: CallBudget, _ what: String)
        throws(PluginError) -> ResultSet
    {
        do {
            return try connection.query(sql, deadline: budget.work)
        } catch {
            if error.isDeadline { throw PluginError(.timeout, "the deadline passed while \(what)") }
            if error.isAccessDenied || error.code == ServerErrorCode.specificAccessDenied {
                throw PluginError(.notAuthorized, "\(what) was refused: \(error.message)")
            }
            if error.isConnectionLost {
                throw PluginError(.unreachable, "the server closed the connection while \(what): \(error.message)")
            }
            throw PluginError(.failed, "\(what) failed: \(error)")
        }
    }

    /// Ends a session whatever it is doing, so that nothing it took stays locked. A session
    /// waiting for a lock does not notice its client leaving until the wait ends (and
    /// meanwhile the waiting request delays others), so it is killed from a second connection
    /// first. Returns a note for the message when there was something to say.
    private func abort(_ connection: ServerConnection, _ budget: CallBudget) -> String? {
        var note: String?
        if connection.isBusy && connection.connectionID > 0 {
            let deadline = budget.abortDeadline
            do {
                let killer = try ServerConnection.connect(target, deadline: deadline)
                defer { killer.close() }
                do {
                    try killer.execute("KILL CONNECTION \(connection.connectionID)", deadline: deadline)
                } catch let error where error.code == 1094 {
                    // ER_NO_SUCH_THREAD: it has ended already.
                }
                note = "(the waiting session \(connection.connectionID) was killed: nothing stays locked)"
            } catch {
                note =
                    """
                    (the waiting session \(connection.connectionID) could not be killed: \(error); the server ends its \
                    wait within lockWaitTimeoutSeconds)
                    """
            }
        }
        connection.close()
        return note
    }
}
