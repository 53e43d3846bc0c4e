import CPluginHostShim
import Glibc
import Logging
import PluginHostSupport

/// The real steps of an operation: scripts, plugins, syncfs, the freeze guard, the snapshot command.
final class LiveSteps: OperationSteps {
    let request: OperationRequest
    private let preflight: Preflight
    private let operationID: String
    private let start: UInt64
    private let lock: OperationLock
    private let logger: Logger
    let interrupt: InterruptSignal?
    private let logOutput: HeldLogOutput?
    private let runner = ScriptRunner()
    private let containment: ProcessContainment?

    private var freezeGuard: FreezeGuard?
    private var guardStartError: HostError?
    private let plugins: PluginSet

    private(set) var scripts: [ScriptRun] = []
    private(set) var snapshotRecord: SnapshotRecord?
    private(set) var warnings: [String] = []
    private var journalWritten = false
    private var freezeAttempted = false

    private(set) var freezeRecord: FreezeRecord?
    /// The consistency group this operation takes part in (`LiveSteps+Group.swift`).
    var group: GroupMember?
    private(set) var pluginRecords: [PluginRecord] = []

    init(request: OperationRequest, preflight: Preflight, operationID: String, start: UInt64, lock: OperationLock,
         logger: Logger, interrupt: InterruptSignal?, logOutput: HeldLogOutput?, containment: ProcessContainment? = nil) {
        self.request = request
        self.preflight = preflight
        self.operationID = operationID
        self.start = start
        self.lock = lock
        self.logger = logger
        self.interrupt = interrupt
        self.logOutput = logOutput
        self.containment = containment
        plugins = PluginSet(catalog: preflight.plugins, operationID: operationID,
                            freezeTargets: preflight.fsFreezeEnabled ? preflight.freezeSelection?.targets ?? [] : [], start: start)
    }

    /// Starts the guard (it opens and verifies the mount points on its own) and the plugin
    /// workers (load, create): none of that is inside the freeze window or the application's stall.
    func prepare() -> StepResult {
        lock.setPhase("prepare")
        if preflight.fsFreezeEnabled, !request.mode.agentFreezes, let targets = preflight.freezeSelection?.targets, !targets.isEmpty {
            do {
                freezeGuard = try FreezeGuard(executable: request.executable, targets: targets,
                                              deadlineSeconds: preflight.maxFrozenSeconds,
                                              journalPath: request.paths.journalFile, lock: lock, operationStart: start)
            } catch {
                guardStartError = error
            }
        }
        plugins.prepare(executable: request.executable, logger: logger, containment: containment, interrupt: interrupt?.descriptor)
        warnings += plugins.warnings
        return .succeeded
    }

    /// After the sequence: let the guard go (it exits once its socket closes) and remove the
    /// journal if nothing is frozen.
    func finish() {
        plugins.shutDown()
        pluginRecords = plugins.records
        if freezeAttempted { freezeRecord = freezeGuard?.record }
        freezeGuard = nil
        if journalWritten, freezeRecord?.mayStillBeFrozen != true {
            unlink(request.paths.journalFile)
            journalWritten = false
        }
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
        let run = runner.run(phase: phase, path: path, arguments: script.params, retries: script.retries,
                             timeoutSeconds: config.timeoutSeconds,
                             environment: ScriptRunner.environment(phase: phase, operationID: operationID, result: outcome),
                             operationStart: start,
                             interrupt: phase == .pre ? interrupt?.descriptor : nil, containment: containment)
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
        for target in targets {
            let fd = open(target.mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd < 0 || ph_syncfs(fd) != 0 {
                warnings.append("syncfs \(target.mountPoint): \(SystemError("syncfs")) (the freeze will flush instead)")
            }
            if fd >= 0 { close(fd) }
        }
        return .succeeded
    }

    func quiesce() -> StepResult {
        lock.setPhase("quiesce")
        let result = plugins.quiesce(continueOnFailure: preflight.continueBackupOnFailure, maxFrozenSeconds: preflight.maxFrozenSeconds)
        if case .interrupted = result {
            // Acted on at once, not when the call returns: the busy workers are already dead.
            let signal = interrupt?.consume().map(signalName) ?? "a signal"
            return .interrupted(HostError(.operationInterrupted, "\(signal) received during the quiesce: the busy plugin workers were killed at once, and with them their sessions and locks; everything done so far was undone",
                                          step: "quiesce"))
        }
        return result
    }

    func resume() -> StepResult {
        lock.setPhase("resume")
        return plugins.resume()
    }

    func freeze() -> StepResult {
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
        let journal = FreezeJournal(operationID: operationID, hostPID: getpid(), guardPID: freezeGuard.pid, state: .frozen,
                                    mounts: freezeGuard.targets, frozenAt: isoTimestamp(),
                                    deadlineSeconds: freezeGuard.deadlineSeconds, thawedAt: nil)
        do {
            try journal.write(to: request.paths.journalFile)
            journalWritten = true
        } catch {
            return .failed(HostError(.freezeFailed, "cannot write the freeze journal: \(error)", step: "freeze"), attempted: false)
        }
        freezeAttempted = true
        lock.setPhase("frozen")  // the last write before the freeze
        logger.info("freezing", metadata: ["mounts": "\(freezeGuard.targets.map(\.mountPoint))"])
        logOutput?.hold()
        if let error = freezeGuard.freeze() {
            logOutput?.release()
            return .failed(error, attempted: false)  // the guard has already thawed what it froze
        }
        return .succeeded
    }

    func thaw() -> StepResult {
        guard let freezeGuard else { return .succeeded }
        let error = freezeGuard.thaw()
        logOutput?.release()
        if !freezeGuard.record.mayStillBeFrozen { lock.setPhase("thawed") }
        if let error { return .failed(error, attempted: true) }
        if let cause = freezeGuard.record.thawCause, cause != .command {
            warnings.append("the filesystems were thawed by \(cause.rawValue), not on command")
        }
        logger.info("thawed", metadata: ["windowMs": "\(freezeGuard.record.windowMs ?? 0)"])
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
    private func awaitThaw(_ channel: any SessionLink, _ prospect: OperationOutcome, errors: [HostError]) -> StepResult {
        let begin = Monotonic.now()
        let agentFreezes = request.mode.agentFreezes
        let who = agentFreezes ? "the agent" : "the caller of pluginhost freeze"
        var record = SnapshotRecord(command: ["(taken by \(who))"], termination: nil, durationMs: 0, stdoutTail: "", stderrTail: "")
        defer {
            record.durationMs = Monotonic.milliseconds(from: begin, to: Monotonic.now())
            snapshotRecord = record
        }
        let mounts = (agentFreezes ? preflight.freezeSelection?.targets : freezeGuard?.targets)?.map(\.mountPoint) ?? []
        let since = isoTimestamp()
        // A hook's agent may never thaw (qemu-ga calls no thaw hook when it froze nothing): its
        // quiesce is held only as long as the hook hold limit.
        let waitSeconds = agentFreezes ? preflight.hookHoldLimitSeconds : preflight.maxFrozenSeconds
        channel.notify(.notice(FreezeNotice(
            state: agentFreezes ? "quiesced" : (freezeGuard == nil ? "quiesced" : "frozen"),
            operationID: operationID, mounts: mounts, consistency: prospect.consistency, at: since,
            deadlineSeconds: waitSeconds, errors: errors, warnings: warnings,
            thawCommand: agentFreezes ? "pluginhost hook \(request.mode.agent?.rawValue ?? "") thaw"
                                      : "pluginhost thaw --operation \(operationID)",
            group: group?.record)))
        // The guard's own deadline comes first when there is a guard; otherwise this one.
        let limit = begin + UInt64((waitSeconds + (freezeGuard == nil ? 0 : 5)) * 1e9)
        while true {
            var fds = [pollfd(fd: channel.listenDescriptor, events: Int16(POLLIN), revents: 0)]
            if let interrupt { fds.append(pollfd(fd: interrupt.descriptor, events: Int16(POLLIN), revents: 0)) }
            if let freezeGuard { fds.append(pollfd(fd: freezeGuard.eventDescriptor, events: Int16(POLLIN), revents: 0)) }
            if let group { fds.append(pollfd(fd: group.eventDescriptor, events: Int16(POLLIN), revents: 0)) }
            _ = poll(&fds, nfds_t(fds.count), Monotonic.pollTimeout(until: limit))
            if let group, fds.contains(where: { $0.fd == group.eventDescriptor && $0.revents != 0 }), let error = group.collectBreak() {
                return .failed(error, attempted: true)
            }
            if let interrupt, fds.contains(where: { $0.fd == interrupt.descriptor && $0.revents != 0 }) {
                record.outcome = "interrupted by a signal before \(who) called thaw"
                return .interrupted(interruptError(during: "wait for the thaw"))
            }
            if let freezeGuard, fds.contains(where: { $0.fd == freezeGuard.eventDescriptor && $0.revents != 0 }),
               let cause = freezeGuard.collectUnpromptedThaw() {
                let why = cause == .deadline ? "no thaw came within \(formatSeconds(preflight.maxFrozenSeconds)) s: the guard thawed at its deadline"
                                             : "the freeze guard exited; the host thawed"
                record.outcome = why
                return .failed(HostError(cause == .deadline ? .freezeDeadlineExpired : .freezeFailed,
                                         "\(why); the plugins were resumed and the post-script ran; a snapshot taken now is not consistent",
                                         step: "snapshot"), attempted: true)
            }
            if fds[0].revents != 0, let thaw = channel.accept(operationID: operationID, status: { sessionStatus(phase: agentFreezes ? "quiesced" : "frozen", since: since, mounts: mounts, deadlineSeconds: waitSeconds) }) {
                record.outcome = thaw.snapshotTaken ? "\(who) called thaw: snapshot taken" : "\(who) reported that its snapshot failed"
                return thaw.snapshotTaken ? .succeeded
                    : .failed(HostError(.snapshotCommandFailed, "\(who) reported that its snapshot failed", step: "snapshot"), attempted: true)
            }
            if agentFreezes, Monotonic.now() >= limit {
                record.outcome = "no thaw from \(who) within the hook hold limit (\(formatSeconds(waitSeconds)) s)"
                return .failed(HostError(.hookHoldLimitExpired,
                                         "\(who) sent no thaw within the hook hold limit of \(formatSeconds(waitSeconds)) s; the quiesce was released: the plugins were resumed and the post-script ran; a snapshot taken after that is not application-consistent",
                                         step: "snapshot"), attempted: true)
            }
            if Monotonic.now() >= limit {
                record.outcome = "no thaw came within \(formatSeconds(preflight.maxFrozenSeconds)) s"
                return .failed(HostError(.freezeDeadlineExpired,
                                         "no thaw came within \(formatSeconds(preflight.maxFrozenSeconds)) s; the plugins were resumed and the post-script ran",
                                         step: "snapshot"), attempted: true)
            }
        }
    }

    private func sessionStatus(phase: String, since: String, mounts: [String], deadlineSeconds: Double) -> SessionStatus {
        SessionStatus(operationID: operationID, command: request.mode.name, phase: phase, since: since, mounts: mounts,
                      deadlineSeconds: deadlineSeconds,
                      plugins: plugins.records.map { record in
                          let last = record.calls.last
                          return SessionStatus.Plugin(name: record.name, state: record.refusal != nil ? PluginState.refused.rawValue
                                                          : last.map { "\($0.function.rawValue) \($0.outcome.rawValue)" } ?? record.state.rawValue)
                      })
    }

    private func runSnapshotCommand() -> StepResult {
        guard let executable = request.snapshotCommand.first else {
            return .failed(HostError(.snapshotCommandFailed, "no snapshot command given", step: "snapshot"), attempted: false)
        }
        let begin = Monotonic.now()
        var record = SnapshotRecord(command: request.snapshotCommand, termination: nil, durationMs: 0, stdoutTail: "", stderrTail: "")
        defer { snapshotRecord = record }
        let child: ChildProcess
        do {
            child = try ChildProcess(spawning: Command(executable: executable, arguments: Array(request.snapshotCommand.dropFirst()),
                                                       environment: snapshotEnvironment()),
                                     cell: containment?.cell("snapshot command"))
        } catch {
            record.durationMs = Monotonic.milliseconds(from: begin, to: Monotonic.now())
            return .failed(HostError(.snapshotCommandFailed, "cannot start \(executable): \(error)", step: "snapshot"), attempted: false)
        }
        var watched: [Int32] = []
        if let interrupt { watched.append(interrupt.descriptor) }
        if let freezeGuard, preflight.fsFreezeEnabled { watched.append(freezeGuard.eventDescriptor) }
        if let group { watched.append(group.eventDescriptor) }
        // Without a freeze, the command still gets the freeze deadline as its limit.
        let limit = begin + UInt64(preflight.maxFrozenSeconds * 1e9)

        var result: StepResult
        waiting: while true {
            switch child.wait(until: freezeGuard == nil ? limit : nil, watching: watched) {
            case .exited(let termination):
                record.termination = termination
                result = termination == .exited(0)
                    ? .succeeded
                    : .failed(HostError(.snapshotCommandFailed, "\(executable) \(termination)", step: "snapshot"), attempted: true)
                break waiting
            case .deadlineReached:
                record.termination = child.terminateGroup(graceNanoseconds: 500_000_000, reason: "timed out")
                result = .failed(HostError(.snapshotCommandFailed, "\(executable) did not finish within \(preflight.maxFrozenSeconds) s",
                                           step: "snapshot"), attempted: true)
                break waiting
            case .readable(let fd) where fd == interrupt?.descriptor:
                record.termination = child.terminateGroup(graceNanoseconds: 500_000_000, reason: "interrupted")
                result = .interrupted(interruptError(during: "snapshot"))
                break waiting
            case .readable(let fd) where fd == group?.eventDescriptor:
                // Another member failed or vanished: this snapshot will not be part of a whole cut.
                guard let error = group?.collectBreak() else { continue waiting }
                record.termination = child.terminateGroup(graceNanoseconds: 500_000_000)
                result = .failed(error, attempted: true)
                break waiting
            case .readable:
                // The guard spoke on its own: it thawed at its deadline, or it died and we thawed.
                guard let cause = freezeGuard?.collectUnpromptedThaw() else { continue waiting }
                record.termination = child.terminateGroup(graceNanoseconds: 500_000_000, reason: "the freeze ended under it")
                let error = cause == .deadline
                    ? HostError(.freezeDeadlineExpired, "the freeze guard thawed after \(preflight.maxFrozenSeconds) s while \(executable) was still running; the snapshot is not usable",
                                step: "snapshot")
                    : HostError(.freezeFailed, "the freeze guard exited while \(executable) was running; the host thawed; the snapshot is not usable",
                                step: "snapshot")
                result = .failed(error, attempted: true)
                break waiting
            }
        }
        record.durationMs = Monotonic.milliseconds(from: begin, to: Monotonic.now())
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
        return HostError(.operationInterrupted, "\(signalName(signal)) received; everything done so far was undone", step: nil)
    }

    private func interruptError(during step: String) -> HostError {
        let signal = interrupt?.consume().map(signalName) ?? "a signal"
        return HostError(.operationInterrupted, "\(signal) received during the \(step); everything done so far was undone", step: step)
    }
}

func formatSeconds(_ seconds: Double) -> String { NumberText.decimal(seconds, decimals: 3) }
