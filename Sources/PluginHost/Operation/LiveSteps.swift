import CPluginHostShim
import Glibc
import Logging
import PluginHostSupport

/// The real steps of an operation: scripts, plugins, syncfs, the freeze guard, the snapshot command.
final class LiveSteps: OperationSteps {
    let request: OperationRequest
    private let preflight: Preflight
    private let operationID: String
    private let start: Monotonic.Instant
    private let lock: OperationLock
    private let logger: Logger
    let interrupt: InterruptSignal?
    private let logOutput: HeldLogOutput?
    private let runner = ScriptRunner()
    private let containment: ProcessContainment?

    private var freezeGuard: FreezeGuard?
    private var guardStartError: HostError?
    private var flushError: HostError?
    private let plugins: PluginSet

    private(set) var scripts: [ScriptRun] = []
    private(set) var snapshotRecord: SnapshotRecord?
    private(set) var warnings: [String] = []
    private var freezeAttempted = false

    private(set) var freezeRecord: FreezeRecord?
    /// The operation's time limit (host config `maxOperationSeconds`): see `ScriptRunner.run`
    /// and `PluginSet.quiesce`.
    private var operationDeadline: Monotonic.Instant { start + .seconds(preflight.maxOperationSeconds) }
    /// The consistency group this operation takes part in (`LiveSteps+Group.swift`).
    var group: GroupMember?
    private(set) var pluginRecords: [PluginRecord] = []

    init(
        request: OperationRequest, preflight: Preflight, operationID: String, start: Monotonic.Instant,
        lock: OperationLock,
        logger: Logger, interrupt: InterruptSignal?, logOutput: HeldLogOutput?, containment: ProcessContainment? = nil
    ) {
        self.request = request
        self.preflight = preflight
        self.operationID = operationID
        self.start = start
        self.lock = lock
        self.logger = logger
        self.interrupt = interrupt
        self.logOutput = logOutput
        self.containment = containment
        plugins = PluginSet(
            catalog: preflight.plugins, operationID: operationID,
            freezeTargets: preflight.fsFreezeEnabled ? preflight.freezeSelection?.targets ?? [] : [], start: start)
    }

    /// Starts the guard (it opens and verifies the mount points on its own) and the plugin
    /// workers (load, create): none of that is inside the freeze window or the application's stall.
    func prepare() -> StepResult {
        lock.setPhase("prepare")
        if preflight.fsFreezeEnabled, !request.mode.agentFreezes, let targets = preflight.freezeSelection?.targets,
            !targets.isEmpty
        {
            do {
                freezeGuard = try FreezeGuard(
                    executable: request.executable, targets: targets,
                    deadlineSeconds: preflight.maxFrozenSeconds, operationID: operationID,
                    journalPath: request.paths.journalFile, lock: lock, operationStart: start)
            } catch {
                guardStartError = error
            }
        }
        plugins.prepare(
            executable: request.executable, logger: logger, containment: containment, interrupt: interrupt?.descriptor)
        warnings += plugins.warnings
        return .succeeded
    }

    /// After the sequence: let the guard go (it exits once its socket closes) and remove the
    /// journal unless something may still be frozen (then the next invocation, or `recover`,
    /// finds it).
    func finish() {
        plugins.shutDown()
        pluginRecords = plugins.records
        guard let freezeGuard else { return }
        _ = freezeGuard.thaw()  // nothing to do unless a path above forgot it
        let record = freezeGuard.record
        if freezeAttempted { freezeRecord = record }
        let journal = freezeGuard.journalPath
        self.freezeGuard = nil
        if !record.mayStillBeFrozen { try? FileSystem.remove(journal) }
    }

    // MARK: - Scripts

    func preScript() -> StepResult {
        runScript(.pre, outcome: nil)
    }

    func postScript(_ outcome: OperationOutcome) -> StepResult {
        runScript(.post, outcome: outcome)
    }

    private func runScript(_ phase: ScriptPhase, outcome: OperationOutcome?) -> StepResult {
        lock.setPhase(phase.stepName)
        let config: ScriptConfig
        switch preflight.config {
        case .absent:
            return .skipped("no config file")
        case .invalid(let error):
            // The config cannot be trusted, so neither can its scripts: run none. Reported once.
            return phase == .pre ? .failed(error, attempted: false) : .skipped("config file invalid")
        case .loaded(let loaded, _):
            config = loaded
        }
        // Both scripts pass their checks before either runs (as Azure's validate_scripts): a
        // pre-script must never run when its post-script could not undo it. Reported once.
        let problems = [ScriptPhase.pre, .post].compactMap { preflight.scriptProblems[$0] }
        if var first = problems.first {
            guard phase == .pre else { return .skipped("not run: a script failed its checks") }
            first.message += "; neither script was run"
            return .failed(first, attempted: false, more: Array(problems.dropFirst()))
        }
        guard let path = preflight.scripts[phase] else { return .skipped("no script") }
        let script = phase == .pre ? config.preScript : config.postScript
        logger.info("running script", metadata: ["phase": "\(phase.rawValue)", "path": "\(path)"])
        let run = runner.run(
            phase: phase, path: path, arguments: script.params, retries: script.retries,
            timeoutSeconds: config.timeoutSeconds,
            environment: ScriptRunner.environment(phase: phase, operationID: operationID, result: outcome),
            operationStart: start,
            interrupt: phase == .pre ? interrupt?.descriptor : nil, containment: containment,
            retryUntil: operationDeadline, stopAt: phase == .pre ? operationDeadline : nil)
        scripts.append(run)
        guard let error = run.error else { return .succeeded }
        if run.outcome == .interrupted { return .interrupted(interruptError(during: phase.stepName)) }
        return .failed(error, attempted: true)
    }

    // MARK: - Filesystems

    func flush() -> StepResult {
        guard preflight.fsFreezeEnabled, let targets = preflight.freezeSelection?.targets, !targets.isEmpty else {
            return .skipped("nothing to freeze")
        }
        if let freezeGuard {
            // In the guard's threads, concurrently: a syncfs stuck behind a frozen filesystem
            // holds one of them, never the host.
            lock.setPhase("flush")
            switch freezeGuard.flush(within: preflight.maxFrozenSeconds, interrupt: interrupt?.descriptor) {
            case .flushed: return .succeeded
            case .failed(let error):
                flushError = error
                return .failed(error, attempted: false)
            case .interrupted: return .interrupted(interruptError(during: "flush"))
            }
        }
        if guardStartError != nil { return .skipped("no freeze guard") }
        return flushForAgent(targets.map(\.mountPoint))
    }

    /// An agent freezes (hooks): flush for it, with `sync --file-system` (syncfs(2) of each) in
    /// a child, so that a syncfs stuck behind a frozen filesystem (the one that holds a target's
    /// storage) holds that child, never the host, and the hook still answers. A flush that does
    /// not finish within the freeze limit fails the step: the agent's FIFREEZE would not return
    /// either, so the freeze is not handed to it. The child is left to finish on its own.
    private func flushForAgent(_ mounts: [String]) -> StepResult {
        let sync: ChildProcess
        do {
            sync = try ChildProcess(
                spawning: Command(
                    executable: "/bin/sync", arguments: ["--file-system", "--"] + mounts,
                    environment: ["PATH": ScriptRunner.searchPath, "LANG": "C"]),
                outlivesHost: true)
        } catch {
            warnings.append("cannot start /bin/sync (\(error)): the agent's freeze will flush instead")
            return .succeeded
        }
        let limit = Monotonic.Instant.now + .seconds(clamping: preflight.maxFrozenSeconds)
        while true {
            switch sync.wait(until: limit, watching: interrupt.map { [$0.descriptor] } ?? []) {
            case .exited(.exited(0)):
                return .succeeded
            case .exited(let termination):
                let said = sync.stderrTail.text.split(whereSeparator: \.isNewline).suffix(2).joined(separator: " / ")
                warnings.append(
                    "sync --file-system ended with \(termination): \(said) (the agent's freeze will flush instead)")
                return .succeeded
            case .readable:
                sync.detach()
                return .interrupted(interruptError(during: "flush"))
            case .deadlineReached:
                sync.detach()
                let error = HostError(
                    .freezeFailed,
                    """
                    syncfs of \(mounts.joined(separator: ", ")) did not finish within \
                    \(formatSeconds(preflight.maxFrozenSeconds)) s: is a filesystem that holds their storage frozen? \
                    The agent's FIFREEZE would not return either
                    """,
                    step: "flush")
                flushError = error
                return .failed(error, attempted: false)
            }
        }
    }

    func quiesce() -> StepResult {
        lock.setPhase("quiesce")
        let result = plugins.quiesce(
            continueOnFailure: preflight.continueBackupOnFailure, maxFrozenSeconds: preflight.maxFrozenSeconds,
            notAfter: operationDeadline)
        if case .interrupted = result {
            // Acted on at once, not when the call returns: the busy workers are already dead.
            let signal = interrupt?.consume().map(signalName) ?? "a signal"
            return .interrupted(
                HostError(
                    .operationInterrupted,
                    """
                    \(signal) received during the quiesce: the busy plugin workers were killed at once, and with them \
                    their sessions and locks; everything done so far was undone
                    """,
                    step: "quiesce"))
        }
        return result
    }

    func resume() -> StepResult {
        lock.setPhase("resume")
        return plugins.resume()
    }

    func freeze() -> StepResult {
        // A flush that did not return means a FIFREEZE would not either: do not start one, nor
        // let an agent start one, whatever continueBackupOnFailure says (the hook fails, and the
        // agent goes on without a freeze).
        if flushError != nil {
            let error = HostError(.freezeFailed, "not attempted: the flush before it did not finish", step: "freeze")
            return request.mode.agentFreezes ? .fatal(error) : .failed(error, attempted: false)
        }
        if case .hook(let agent, _) = request.mode {
            lock.setPhase("quiesced")
            return .delegated("\(agent.displayName) freezes the filesystems")
        }
        guard preflight.fsFreezeEnabled else {
            lock.setPhase("quiesced")
            return .skipped("fsFreezeEnabled is false")
        }
        if let guardStartError { return .failed(guardStartError, attempted: false) }
        guard let freezeGuard else { return .skipped("nothing to freeze") }
        freezeAttempted = true
        lock.setPhase("frozen")  // the last write before the freeze (the journal is a mapping)
        logger.info("freezing", metadata: ["mounts": "\(freezeGuard.targets.map(\.mountPoint))"])
        logOutput?.hold()
        switch freezeGuard.freeze(interrupt: interrupt?.descriptor) {
        case .frozen:
            return .succeeded
        case .failed(let error):
            // The guard (or the host) has thawed what was frozen, unless a FIFREEZE never returned.
            logOutput?.release()
            if !freezeGuard.record.mayStillBeFrozen { lock.setPhase("freeze-failed") }
            return .failed(error, attempted: false)
        case .interrupted:
            logOutput?.release()
            if !freezeGuard.record.mayStillBeFrozen { lock.setPhase("thawed") }
            return .interrupted(interruptError(during: "freeze"))
        }
    }

    func thaw() -> StepResult {
        guard let freezeGuard else { return .succeeded }
        let error = freezeGuard.thaw()
        logOutput?.release()
        let record = freezeGuard.record
        if !record.mayStillBeFrozen { lock.setPhase("thawed") }
        if let error { return .failed(error, attempted: true) }
        if let cause = record.thawCause, cause != .command {
            warnings.append("the filesystems were thawed by \(cause.rawValue), not on command")
        }
        for mount in record.mounts where mount.thaw == .wasNotFrozen {
            warnings.append(
                "\(mount.mountPoint) was no longer frozen at the thaw: something else thawed it while the snapshot was taken"
            )
        }
        logger.info("thawed", metadata: ["windowMs": "\(record.windowMs ?? 0)"])
        return .succeeded
    }

    // MARK: - Snapshot

    func snapshot(_ prospect: OperationOutcome, errors: [HostError]) -> StepResult {
        switch request.mode {
        case .run: runSnapshotCommand()
        case .twoPhase(let channel), .hook(_, let channel): awaitThaw(channel, prospect, errors: errors)
        }
    }

    /// Two-phase and hooks: tell the caller it may take its snapshot now, then wait for its
    /// thaw — or the guard's deadline, or a signal.
    private func awaitThaw(_ channel: any SessionLink, _ prospect: OperationOutcome, errors: [HostError]) -> StepResult
    {
        let begin = Monotonic.Instant.now
        let agentFreezes = request.mode.agentFreezes
        let who = agentFreezes ? "the agent" : "the caller of pluginhost freeze"
        var record = SnapshotRecord(
            command: ["(taken by \(who))"], termination: nil, durationMs: 0, stdoutTail: "", stderrTail: "")
        defer {
            record.durationMs = (Monotonic.Instant.now - begin).inMilliseconds
            snapshotRecord = record
        }
        // Only a guard that holds the freeze counts: a failed freeze leaves nothing to watch.
        let frozenBy = freezeGuard?.isFrozen == true ? freezeGuard : nil
        let mounts = (agentFreezes ? preflight.freezeSelection?.targets : frozenBy?.targets)?.map(\.mountPoint) ?? []
        let since = isoTimestamp()
        // A hook's agent may never thaw (qemu-ga calls no thaw hook when it froze nothing): its
        // quiesce is held only as long as the hook hold limit.
        let waitSeconds = agentFreezes ? preflight.hookHoldLimitSeconds : preflight.maxFrozenSeconds
        channel.notify(
            .notice(
                FreezeNotice(
                    state: frozenBy == nil ? "quiesced" : "frozen",
                    operationID: operationID, mounts: mounts, consistency: prospect.consistency, at: since,
                    deadlineSeconds: waitSeconds, errors: errors, warnings: warnings,
                    thawCommand: agentFreezes
                        ? "pluginhost hook \(request.mode.agent?.rawValue ?? "") thaw"
                        : "pluginhost thaw --operation \(operationID)",
                    group: group?.record)))
        // The guard thaws at its deadline; the host enforces it too, a little later.
        let limit = frozenBy?.hostDeadline ?? begin + .seconds(clamping: waitSeconds)
        while true {
            var fds = [PollEntry(channel.listenDescriptor)]
            if let interrupt { fds.append(PollEntry(interrupt.descriptor)) }
            if let frozenBy { fds.append(PollEntry(frozenBy.eventDescriptor)) }
            if let group { fds.append(PollEntry(group.eventDescriptor)) }
            _ = try? Poll.wait(&fds, until: limit)
            if let group, fds.contains(where: { $0.descriptor == group.eventDescriptor && $0.isReady }),
                let error = group.collectBreak()
            {
                return .failed(error, attempted: true)
            }
            if let interrupt, fds.contains(where: { $0.descriptor == interrupt.descriptor && $0.isReady }) {
                record.outcome = "interrupted by a signal before \(who) called thaw"
                return .interrupted(interruptError(during: "wait for the thaw"))
            }
            if let frozenBy, fds.contains(where: { $0.descriptor == frozenBy.eventDescriptor && $0.isReady }),
                let cause = frozenBy.collectUnpromptedThaw()
            {
                let error = unpromptedThawError(cause, during: "the wait for the thaw")
                record.outcome = error.message
                return .failed(error, attempted: true)
            }
            if fds[0].isReady,
                let thaw = channel.accept(
                    operationID: operationID,
                    status: {
                        sessionStatus(
                            phase: frozenBy == nil ? "quiesced" : "frozen", since: since, mounts: mounts,
                            deadlineSeconds: waitSeconds)
                    })
            {
                // The caller's snapshot counts only if no filesystem was thawed before it said so.
                if let frozenBy, let thawed = frozenBy.firstThawStart, thawed <= Monotonic.Instant.now {
                    let error = unpromptedThawError(
                        frozenBy.collectUnpromptedThaw() ?? .deadline, during: "the wait for the thaw")
                    record.outcome = error.message
                    return .failed(error, attempted: true)
                }
                record.outcome =
                    thaw.snapshotTaken
                    ? "\(who) called thaw: snapshot taken" : "\(who) reported that its snapshot failed"
                return thaw.snapshotTaken
                    ? .succeeded
                    : .failed(
                        HostError(.snapshotCommandFailed, "\(who) reported that its snapshot failed", step: "snapshot"),
                        attempted: true)
            }
            guard Monotonic.Instant.now >= limit else { continue }
            if let frozenBy {
                let error = unpromptedThawError(
                    frozenBy.enforceDeadline(), during: "the wait for the thaw", missedDeadline: true)
                record.outcome = error.message
                return .failed(error, attempted: true)
            }
            if agentFreezes {
                record.outcome = "no thaw from \(who) within the hook hold limit (\(formatSeconds(waitSeconds)) s)"
                return .failed(
                    HostError(
                        .hookHoldLimitExpired,
                        """
                        \(who) sent no thaw within the hook hold limit of \(formatSeconds(waitSeconds)) s; the quiesce \
                        was released: the plugins were resumed and the post-script ran; a snapshot taken after that is \
                        not application-consistent
                        """,
                        step: "snapshot"), attempted: true)
            }
            record.outcome = "no thaw came within \(formatSeconds(waitSeconds)) s"
            return .failed(
                HostError(
                    .freezeDeadlineExpired,
                    "no thaw came within \(formatSeconds(waitSeconds)) s; the plugins were resumed and the post-script ran",
                    step: "snapshot"), attempted: true)
        }
    }

    /// The filesystems were thawed before the snapshot was done: by the guard at its deadline,
    /// or by the host because the guard died or missed its deadline. The snapshot is not usable.
    private func unpromptedThawError(_ cause: FreezeRecord.ThawCause, during what: String, missedDeadline: Bool = false)
        -> HostError
    {
        let deadline = formatSeconds(preflight.maxFrozenSeconds)
        switch cause {
        case .deadline, .command, .recovery:
            return HostError(
                .freezeDeadlineExpired,
                """
                the freeze guard thawed at its deadline (\(deadline) s) during \(what); a snapshot not taken wholly \
                inside the freeze is not consistent
                """,
                step: "snapshot")
        case .guardLost where missedDeadline:
            return HostError(
                .freezeDeadlineExpired,
                """
                the freeze guard did not thaw at its \(deadline) s deadline (stopped?) during \(what); the host killed \
                it and thawed; the snapshot is not consistent
                """,
                step: "snapshot")
        case .guardLost:
            return HostError(
                .freezeFailed, "the freeze guard died during \(what); the host thawed; the snapshot is not consistent",
                step: "snapshot")
        case .hostExited:
            return HostError(
                .freezeFailed,
                "the freeze guard thawed during \(what) because it lost its host; the snapshot is not consistent",
                step: "snapshot")
        }
    }

    private func sessionStatus(phase: String, since: String, mounts: [String], deadlineSeconds: Double) -> SessionStatus
    {
        SessionStatus(
            operationID: operationID, command: request.mode.name, phase: phase, since: since, mounts: mounts,
            deadlineSeconds: deadlineSeconds,
            plugins: plugins.records.map { record in
                let last = record.calls.last
                return SessionStatus.Plugin(
                    name: record.name,
                    state: record.refusal != nil
                        ? PluginState.refused.rawValue
                        : last.map { "\($0.function.rawValue) \($0.outcome.rawValue)" } ?? record.state.rawValue)
            })
    }

    private func runSnapshotCommand() -> StepResult {
        guard let executable = request.snapshotCommand.first else {
            return .failed(
                HostError(.snapshotCommandFailed, "no snapshot command given", step: "snapshot"), attempted: false)
        }
        let begin = Monotonic.Instant.now
        var record = SnapshotRecord(
            command: request.snapshotCommand, termination: nil, durationMs: 0, stdoutTail: "", stderrTail: "")
        defer { snapshotRecord = record }
        let child: ChildProcess
        do {
            child = try ChildProcess(
                spawning: Command(
                    executable: executable, arguments: Array(request.snapshotCommand.dropFirst()),
                    environment: snapshotEnvironment()),
                cell: containment?.cell("snapshot command"))
        } catch {
            record.durationMs = (Monotonic.Instant.now - begin).inMilliseconds
            return .failed(
                HostError(.snapshotCommandFailed, "cannot start \(executable): \(error)", step: "snapshot"),
                attempted: false)
        }
        // Only a guard that holds the freeze counts: a failed freeze leaves nothing to watch.
        let frozenBy = freezeGuard?.isFrozen == true ? freezeGuard : nil
        var watched: [Int32] = []
        if let interrupt { watched.append(interrupt.descriptor) }
        if let frozenBy { watched.append(frozenBy.eventDescriptor) }
        if let group { watched.append(group.eventDescriptor) }
        // The guard thaws at its deadline and the host enforces it too, a little later; without
        // a freeze, the command still gets the freeze deadline as its limit.
        let limit = frozenBy?.hostDeadline ?? begin + .seconds(clamping: preflight.maxFrozenSeconds)

        var result: StepResult
        waiting: while true {
            switch child.wait(until: limit, watching: watched) {
            case .exited(let termination):
                let end = Monotonic.Instant.now
                record.termination = termination
                if let frozenBy, let thawed = frozenBy.firstThawStart, thawed <= end {
                    // Thawed before the command was seen to end: not wholly inside the freeze.
                    let cause = frozenBy.collectUnpromptedThaw() ?? frozenBy.record.thawCause ?? .deadline
                    result = .failed(unpromptedThawError(cause, during: "\(executable)"), attempted: true)
                    break waiting
                }
                result =
                    termination == .exited(0)
                    ? .succeeded
                    : .failed(
                        HostError(.snapshotCommandFailed, "\(executable) \(termination)", step: "snapshot"),
                        attempted: true)
                break waiting
            case .deadlineReached:
                record.termination = child.terminateGroup(grace: .milliseconds(500), reason: "timed out")
                if let frozenBy {
                    // The guard missed its deadline (stopped?): the host killed it and thawed.
                    result = .failed(
                        unpromptedThawError(frozenBy.enforceDeadline(), during: "\(executable)", missedDeadline: true),
                        attempted: true)
                    break waiting
                }
                result = .failed(
                    HostError(
                        .snapshotCommandFailed, "\(executable) did not finish within \(preflight.maxFrozenSeconds) s",
                        step: "snapshot"), attempted: true)
                break waiting
            case .readable(let fd) where fd == interrupt?.descriptor:
                record.termination = child.terminateGroup(grace: .milliseconds(500), reason: "interrupted")
                result = .interrupted(interruptError(during: "snapshot"))
                break waiting
            case .readable(let fd) where fd == group?.eventDescriptor:
                // Another member failed or vanished: this snapshot will not be part of a whole cut.
                guard let error = group?.collectBreak() else { continue waiting }
                record.termination = child.terminateGroup(grace: .milliseconds(500))
                result = .failed(error, attempted: true)
                break waiting
            case .readable:
                // The guard spoke on its own: it thawed at its deadline, or it died and we thawed.
                guard let cause = frozenBy?.collectUnpromptedThaw() else { continue waiting }
                record.termination = child.terminateGroup(
                    grace: .milliseconds(500), reason: "the freeze ended under it")
                result = .failed(unpromptedThawError(cause, during: "\(executable)"), attempted: true)
                break waiting
            }
        }
        record.durationMs = (Monotonic.Instant.now - begin).inMilliseconds
        record.stdoutTail = child.stdoutTail.text
        record.stderrTail = child.stderrTail.text
        child.cell?.removeIfEmpty()
        return result
    }

    private func snapshotEnvironment() -> [String: String] {
        [
            "PATH": ScriptRunner.searchPath,
            "LANG": "C",
            "PLUGINHOST_PHASE": "snapshot",
            "PLUGINHOST_OPERATION_ID": operationID,
            "PLUGINHOST_FROZEN_MOUNTS": (freezeGuard?.targets.map(\.mountPoint) ?? []).joined(separator: ":"),
        ].merging(groupEnvironment) { $1 }
    }

    // MARK: - Signals

    func pendingInterrupt() -> HostError? {
        guard let signal = interrupt?.consume() else { return nil }
        return HostError(
            .operationInterrupted, "\(signalName(signal)) received; everything done so far was undone", step: nil)
    }

    private func interruptError(during step: String) -> HostError {
        let signal = interrupt?.consume().map(signalName) ?? "a signal"
        return HostError(
            .operationInterrupted, "\(signal) received during the \(step); everything done so far was undone",
            step: step)
    }
}

func formatSeconds(_ seconds: Double) -> String { NumberText.decimal(seconds, decimals: 3) }
