import Glibc
import Logging
import PluginHostSupport
import PluginHostWire

/// The plugins of one operation: their workers, their calls in order, their records.
/// Plugins with the same `order` are called concurrently; lower orders quiesce first and resume
/// last. Resume goes to every plugin whose quiesce was called, whatever it answered.
final class PluginSet {
    private final class Member {
        let manifest: PluginManifest
        let library: VerifiedLibrary
        var worker: PluginWorker?
        var record: PluginRecord
        /// Why it cannot quiesce (refused at load, create failed); nil while usable.
        var unusable: HostError?
        var quiesceCalled = false

        init(_ manifest: PluginManifest, _ library: VerifiedLibrary, record: PluginRecord) {
            self.manifest = manifest
            self.library = library
            self.record = record
        }
    }

    private var members: [Member] = []
    private var refusedRecords: [PluginRecord] = []
    private let refusals: [HostError]
    private let operationID: String
    private let freezeTargets: [FreezeTarget]
    private let start: Monotonic.Instant
    /// The step a set-up failure is reported at: `prepare` in an operation, `checks` for
    /// `list` and `check`.
    private let setupStep: String
    private(set) var warnings: [String] = []

    var isEmpty: Bool { members.isEmpty && refusals.isEmpty }

    /// Every plugin, in manifest order: the refused and disabled ones too.
    var records: [PluginRecord] {
        (members.map { member in
            var record = member.record
            if let worker = member.worker {
                record.logLines = worker.logLines
                record.droppedLogLines = worker.droppedLogLines
            }
            return record
        } + refusedRecords).sorted { $0.manifest < $1.manifest }
    }

    /// `includeDisabled` loads disabled plugins too (for `list`; an operation never does).
    init(
        catalog: PluginCatalog, operationID: String, freezeTargets: [FreezeTarget], start: Monotonic.Instant,
        includeDisabled: Bool = false, setupStep: String = "prepare"
    ) {
        self.operationID = operationID
        self.setupStep = setupStep
        self.freezeTargets = freezeTargets
        self.start = start
        refusals = catalog.refusals
        for entry in catalog.entries {
            var record = PluginRecord(
                name: entry.name, manifest: entry.manifestPath, library: entry.manifest?.library,
                sha256: entry.library?.sha256, order: entry.manifest?.order,
                timeoutSeconds: entry.manifest?.timeoutSeconds, state: .ready)
            switch entry.state {
            case .ready:
                members.append(Member(entry.manifest!, entry.library!, record: record))
            case .disabled where includeDisabled && entry.library != nil:  // verified for `list`
                record.state = .disabled
                members.append(Member(entry.manifest!, entry.library!, record: record))
            case .disabled:
                record.state = .disabled
                refusedRecords.append(record)
            case .refused(let refusal):
                record.state = .refused
                record.refusal = refusal.description
                refusedRecords.append(record)
            }
        }
    }

    // MARK: - Preparation

    /// Starts every worker (from this thread: workers die with the thread that spawned them),
    /// loads every library and checks its descriptor, then creates every instance and asks
    /// for its data paths. Failures make a plugin unusable; they surface at quiesce.
    /// A signal (`interrupt` readable; it is left for the sequence to see) stops the waiting:
    /// the busy workers are killed and their plugins unusable.
    func prepare(executable: String, logger: Logger, containment: ProcessContainment? = nil, interrupt: Int32? = nil) {
        self.interrupt = interrupt
        load(executable: executable, logger: logger, containment: containment)
        createInstances()
    }

    /// The signal pipe, watched while a quiesce (or load, create) call runs: a signal kills
    /// the busy workers at once instead of waiting for the call to return. Resume, the undo,
    /// is never cut short.
    private var interrupt: Int32?
    /// A call was cut short by a signal.
    private var interrupted = false

    /// Starts the workers and loads the libraries, nothing more (`pluginhost list`).
    func inspect(executable: String, logger: Logger) {
        load(executable: executable, logger: logger)
    }

    private func createInstances() {
        let mounts = freezeTargets.map(\.mountPoint)
        perform(.create, on: usable, interruptible: true) { member in
            .create(
                config: member.manifest.kind == .ffi ? "{}" : member.manifest.config, operationID: operationID,
                freezeMounts: mounts, deadline: deadline(member).nanoseconds)
        } failure: { member, error in
            member.unusable = error
        }
        perform(.dataPaths, on: usable, interruptible: true) { member in
            .call(function: .dataPaths, deadline: deadline(member).nanoseconds, holdUntil: 0)
        } success: { member, message in
            member.record.dataPaths = message.split(whereSeparator: \.isNewline).map(String.init).filter {
                $0.hasPrefix("/")
            }
        } failure: { member, error in
            member.unusable = error
        }
        warnAboutDataOutsideTheFreeze()
    }

    /// Starts a worker per plugin and asks it at once to load its library, so that one worker
    /// loads while the next is started.
    private func load(executable: String, logger: Logger, containment: ProcessContainment? = nil) {
        var sent: [Member] = []
        var deadlines: [Monotonic.Instant] = []
        var begins: [Monotonic.Instant] = []
        for member in members where member.unusable == nil {
            do {
                member.worker = try PluginWorker(
                    manifest: member.manifest, library: member.library,
                    executable: executable, logger: logger,
                    cell: containment?.cell("plugin \(member.manifest.name)", diesWithItsProcess: true))
            } catch {
                member.unusable = HostError(
                    .pluginCrashed, "plugin \(member.manifest.name): cannot start its worker: \(error)", step: setupStep
                )
                continue
            }
            let spec = member.manifest.ffi.map { $0.json.serialized() }
            let begin = Monotonic.Instant.now
            if member.worker!.send(.load(kind: member.manifest.kind, ffiSpec: spec)) {
                sent.append(member)
                deadlines.append(deadline(member))
                begins.append(begin)
            } else {
                member.unusable = HostError(
                    .incorrectPluginhostFile,
                    "plugin \(member.manifest.name): its worker did not start (\(member.worker!.exitDescription()))",
                    step: setupStep)
            }
        }
        let outcomes = PluginWorker.await(sent.map { $0.worker! }, deadlines: deadlines, interrupt: interrupt)
        for (index, member) in sent.enumerated() {
            let (outcome, end) = outcomes[index]
            var call = PluginRecord.Call(
                function: .load, startMs: ms(begins[index]),
                durationMs: (end - begins[index]).inMilliseconds,
                outcome: .ok)
            switch outcome {
            case .reply(.loaded(let identity)):
                member.record.reportedName = identity.name.isEmpty ? nil : identity.name
                member.record.version = identity.version.isEmpty ? nil : identity.version
                member.record.abi = identity.abi
            case .reply(.refused(let check, let message)):
                call.outcome = .refused
                call.message = "\(check.rawValue): \(message)"
                member.record.state = .refused
                member.record.refusal = call.message
                member.unusable = HostError(
                    .incorrectPluginhostFile,
                    "plugin \(member.manifest.name) (\(member.manifest.path)) refused by the \(check.rawValue) check: \(message)",
                    step: setupStep)
                member.worker?.kill()
            case .timedOut, .lost, .reply, .interrupted:
                let how = describe(outcome, member)
                call.outcome = .failed
                call.message = how
                member.record.state = .refused
                member.record.refusal = "load: \(how)"
                member.unusable = HostError(
                    .incorrectPluginhostFile,
                    "plugin \(member.manifest.name) (\(member.manifest.path)) could not be loaded: \(how)",
                    step: setupStep)
                member.worker?.kill()
            }
            member.record.calls.append(call)
        }
    }

    private func warnAboutDataOutsideTheFreeze() {
        guard !freezeTargets.isEmpty else { return }
        let scope = FreezeScope(freezeMounts: freezeTargets.map(\.mountPoint))
        for member in members {
            for path in member.record.dataPaths {
                guard let filesystem = scope.filesystem(holding: path) else {
                    warnings.append("plugin \(member.manifest.name) keeps data in \(path), which does not exist here")
                    continue
                }
                if scope.freezeMount(holding: path) == nil {
                    warnings.append(
                        """
                        plugin \(member.manifest.name) keeps data in \(path) (on \(filesystem.mountPoint), device \
                        \(filesystem.device)), which this operation does not freeze: the snapshot would not be \
                        consistent for it
                        """
                    )
                }
            }
        }
    }

    // MARK: - Quiesce and resume

    /// Quiesces order group after order group. Without `continueOnFailure`, the first failure
    /// stops it (what was quiesced is resumed by `resume`).
    /// No group starts at or after `notAfter` (the operation's time limit), and no call runs past it.
    func quiesce(continueOnFailure: Bool, maxFrozenSeconds: Double, notAfter: Monotonic.Instant = .max) -> StepResult {
        if isEmpty { return .skipped("no plugins") }
        var errors = refusals + members.compactMap(\.unusable)
        var attempted = false
        let groups = Dictionary(grouping: usable, by: \.manifest.order).sorted { $0.key < $1.key }
        for (position, (_, group)) in groups.enumerated() {
            if !errors.isEmpty && !continueOnFailure || interrupted { break }
            if Monotonic.Instant.now >= notAfter {
                let names = groups[position...].flatMap(\.value).map(\.manifest.name)
                errors.append(
                    HostError(
                        .pluginQuiesceTimeout,
                        """
                        plugins \(names.joined(separator: ", ")) were not quiesced: the operation reached its time \
                        limit (maxOperationSeconds)
                        """,
                        step: "quiesce"))
                break
            }
            // The hold lasts until resume: the later groups' quiesce, the freeze, resume's start.
            let later = groups[position...].flatMap(\.value).map(\.manifest.timeoutSeconds).reduce(0, +)
            let holdUntil = Monotonic.Instant.now + .seconds(clamping: Double(later) + maxFrozenSeconds + 30)
            for member in group { member.quiesceCalled = true }
            attempted = true
            perform(.quiesce, on: group, interruptible: true) { member in
                .call(
                    function: .quiesce, deadline: min(deadline(member), notAfter).nanoseconds,
                    holdUntil: holdUntil.nanoseconds)
            } failure: { _, error in
                errors.append(error)
            }
        }
        if interrupted {
            return .interrupted(
                HostError(
                    .operationInterrupted,
                    "a signal came during the quiesce: the busy workers were killed, and with them their sessions and locks",
                    step: "quiesce"))
        }
        guard let first = errors.first else { return .succeeded }
        return .failed(first, attempted: attempted, more: Array(errors.dropFirst()))
    }

    func resume() -> StepResult {
        var errors: [HostError] = []
        let called = members.filter(\.quiesceCalled)
        guard !called.isEmpty else { return .skipped("no plugin was quiesced") }
        let groups = Dictionary(grouping: called, by: \.manifest.order).sorted { $0.key > $1.key }
        for (_, group) in groups {
            let reachable = group.filter { $0.worker?.alive == true }
            for member in group where member.worker?.alive != true {
                member.record.calls.append(
                    PluginRecord.Call(
                        function: .resume, startMs: ms(Monotonic.Instant.now), durationMs: 0, outcome: .skipped,
                        message: "its worker was killed during quiesce; its sessions and locks ended with it"))
            }
            perform(.resume, on: reachable) { member in
                .call(function: .resume, deadline: deadline(member).nanoseconds, holdUntil: 0)
            } failure: { _, error in
                errors.append(error)
            }
        }
        guard let first = errors.first else { return .succeeded }
        return .failed(first, attempted: true, more: Array(errors.dropFirst()))
    }

    /// For `pluginhost check`: create and check each plugin without quiescing.
    func check() -> [HostError] {
        var errors = refusals + members.compactMap(\.unusable)
        perform(.check, on: usable) { member in
            .call(function: .check, deadline: deadline(member).nanoseconds, holdUntil: 0)
        } failure: { member, error in
            member.unusable = error
            errors.append(error)
        }
        return errors
    }

    /// What keeps plugins from being used: refusals, failed loads and creates.
    var problems: [HostError] { refusals + members.compactMap(\.unusable) }

    /// Destroys every instance and ends every worker.
    func shutDown() {
        for member in members { member.worker?.shutDown() }
    }

    // MARK: - Calls

    private var usable: [Member] { members.filter { $0.unusable == nil && $0.worker?.alive == true } }

    private func deadline(_ member: Member) -> Monotonic.Instant {
        Monotonic.Instant.now + .seconds(member.manifest.timeoutSeconds)
    }

    /// Sends one request to each member at once, waits for all, records each call.
    private func perform(
        _ function: PluginCallName, on group: [Member], interruptible: Bool = false, request: (Member) -> WorkerRequest,
        success: (Member, String) -> Void = { _, _ in },
        failure: (Member, HostError) -> Void
    ) {
        var sent: [Member] = []
        var deadlines: [Monotonic.Instant] = []
        var begins: [Monotonic.Instant] = []
        for member in group {
            let message = request(member)
            let begin = Monotonic.Instant.now
            if member.worker?.send(message) == true {
                sent.append(member)
                begins.append(begin)
                if case .call(_, let deadline, _) = message {
                    deadlines.append(Monotonic.Instant(nanoseconds: deadline))
                } else if case .create(_, _, _, let deadline) = message {
                    deadlines.append(Monotonic.Instant(nanoseconds: deadline))
                } else {
                    deadlines.append(deadline(member))
                }
            } else {
                // The worker is gone (it died while nobody was waiting on it): the call is still
                // listed, so the record shows that it was attempted and why it failed.
                let why = member.worker?.exitDescription() ?? "no worker"
                member.worker?.kill()
                member.record.calls.append(
                    PluginRecord.Call(
                        function: function, startMs: ms(begin),
                        durationMs: (Monotonic.Instant.now - begin).inMilliseconds,
                        outcome: .crashed, message: "its worker was gone before the call: \(why)"))
                failure(member, error(function, .lost(why), member))
            }
        }
        let outcomes = PluginWorker.await(
            sent.compactMap(\.worker), deadlines: deadlines,
            interrupt: interruptible ? interrupt : nil)
        for (index, member) in sent.enumerated() {
            let (outcome, end) = outcomes[index]
            var call = PluginRecord.Call(
                function: function, startMs: ms(begins[index]),
                durationMs: (end - begins[index]).inMilliseconds, outcome: .ok)
            switch outcome {
            case .reply(.result(let status, let message, let details)):
                call.outcome = PluginCallOutcome(status: status)
                call.message = message.isEmpty ? nil : message
                call.details = parseDetails(details)
                if status == 0 {
                    success(member, message)
                } else {
                    failure(member, error(function, outcome, member))
                }
            case .timedOut:
                call.outcome = .timedOut
                call.message = "no answer within \(member.manifest.timeoutSeconds) s; the worker was killed"
                failure(member, error(function, outcome, member))
            case .lost(let why):
                call.outcome = .crashed
                call.message = why
                failure(member, error(function, outcome, member))
            case .interrupted:
                interrupted = true
                call.outcome = .interrupted
                call.message = "a signal came; the worker was killed, and with it its sessions and locks"
                failure(member, error(function, outcome, member))
            case .reply:
                call.outcome = .crashed
                call.message = "answered with the wrong kind of message; the worker was killed"
                member.worker?.kill()
                failure(member, error(function, .lost(call.message!), member))
            }
            member.record.calls.append(call)
            if call.outcome != .ok && [.create, .dataPaths, .check].contains(function) {
                member.record.state = .failed
            }
        }
    }

    /// The documented code for a failed call, reported at the step the call belongs to.
    private func error(_ function: PluginCallName, _ outcome: PluginWorker.Outcome, _ member: Member) -> HostError {
        let name = member.manifest.name
        let step = step(of: function)
        switch outcome {
        case .timedOut:
            let code: ErrorCode =
                switch function {
                case .resume: .pluginResumeTimeout
                case .quiesce: .pluginQuiesceTimeout
                case .load, .create, .check, .dataPaths: .pluginCheckFailed
                }
            return HostError(
                code,
                """
                plugin \(name): \(function.rawValue) did not answer within \(member.manifest.timeoutSeconds) s; its \
                worker was killed, and with it its sessions and locks
                """,
                step: step)
        case .lost(let why):
            return HostError(
                .pluginCrashed, "plugin \(name): its worker was lost during \(function.rawValue): \(why)", step: step)
        case .interrupted:
            return HostError(
                .operationInterrupted,
                "plugin \(name): a signal came during \(function.rawValue); its worker was killed, and with it its sessions and locks",
                step: step)
        case .reply(.result(let status, let message, _)):
            let text = message.isEmpty ? "no message" : message
            return HostError(
                Self.code(for: function, status: PluginStatus(rawValue: status)),
                "plugin \(name): \(function.rawValue) failed (\(statusName(status))): \(text)", step: step)
        case .reply:
            return HostError(.pluginCrashed, "plugin \(name): unexpected answer to \(function.rawValue)", step: step)
        }
    }

    /// The documented code for a call that returned `status` (nil: one this host does not know).
    static func code(for function: PluginCallName, status: PluginStatus?) -> ErrorCode {
        switch (function, status) {
        case (_, .unreachable?): .pluginApplicationUnreachable
        case (.resume, .consistencyLost?): .pluginConsistencyLost
        case (.resume, .timeout?): .pluginResumeTimeout
        case (.resume, _): .pluginResumeFailed
        case (.quiesce, .timeout?): .pluginQuiesceTimeout
        case (.quiesce, _): .pluginQuiesceFailed
        case (.load, _), (.create, _), (.check, _), (.dataPaths, _): .pluginCheckFailed
        }
    }

    /// Quiesce and resume are steps of their own; everything else happens while the plugins
    /// are set up (`prepare`), or during `pluginhost check` (`checks`).
    private func step(of function: PluginCallName) -> String {
        switch function {
        case .quiesce: "quiesce"
        case .resume: "resume"
        case .load, .create, .check, .dataPaths: setupStep
        }
    }

    private func describe(_ outcome: PluginWorker.Outcome, _ member: Member) -> String {
        switch outcome {
        case .timedOut: "no answer within \(member.manifest.timeoutSeconds) s"
        case .lost(let why): why
        case .interrupted: "a signal came; the worker was killed"
        case .reply(let message): "unexpected answer \(message)"
        }
    }

    private func ms(_ time: Monotonic.Instant) -> Double { (time - start).inMilliseconds }
}
