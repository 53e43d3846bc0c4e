public import PluginHostSupport
public import PluginHostWire

/// What one step reports to the sequence.
public enum StepResult: Sendable, Equatable {
    case succeeded
    /// Not configured or turned off: nothing ran, nothing to undo.
    case skipped(String)
    /// Done by someone else — a hook's agent freezes the filesystems itself: nothing ran here,
    /// nothing to undo here, but the snapshot has the step's guarantee once the agent's thaw
    /// arrives normally.
    case delegated(String)
    /// Failed. `attempted` says whether something ran that must be undone (a script that was
    /// started, a plugin that was asked to quiesce); a check failure ran nothing. `more` holds
    /// further errors of the same step (several plugins).
    case failed(HostError, attempted: Bool, more: [HostError] = [])
    /// Failed, and the operation cannot go on even with continueBackupOnFailure: a hook's agent
    /// would freeze filesystems whose flush never returned, and its FIFREEZE would not return
    /// either. Nothing ran.
    case fatal(HostError)
    /// Stopped by SIGTERM/SIGINT; what it started was stopped.
    case interrupted(HostError)

    var ranSomething: Bool {
        switch self {
        case .succeeded, .interrupted: true
        case .skipped, .delegated, .fatal: false
        case .failed(_, let attempted, _): attempted
        }
    }
}

/// The effects of an operation, one method per step. `OperationSequence` decides the order,
/// what is undone and what the snapshot is worth; tests substitute a recording implementation.
public protocol OperationSteps: AnyObject {
    /// Starts what later steps need (the freeze guard, the plugin workers) so that their
    /// start-up is outside the application's stall. Its problems surface in later steps.
    func prepare() -> StepResult
    func preScript() -> StepResult
    /// syncfs of every filesystem to freeze, while writes still flow (keeps FIFREEZE short).
    func flush() -> StepResult
    func quiesce() -> StepResult
    func freeze() -> StepResult
    /// `prospect`: what the snapshot is worth if taken now, and `errors` so far (a two-phase
    /// caller is told both).
    func snapshot(_ prospect: OperationOutcome, errors: [HostError]) -> StepResult
    func thaw() -> StepResult
    func resume() -> StepResult
    func postScript(_ outcome: OperationOutcome) -> StepResult
    /// A signal that arrived between steps, consumed once.
    func pendingInterrupt() -> HostError?

    // Consistency groups (README, "Consistency groups"); without a group these do nothing.
    /// Whether this operation waits for its group at `stage`.
    func waitsForGroup(at stage: GroupStage) -> Bool
    /// Waits until every member of the group reached `stage`.
    func groupBarrier(_ stage: GroupStage, prospect: OperationOutcome) -> StepResult
    /// The operation is failing: tell the other members at once, before undoing anything.
    func groupAbort(_ errors: [HostError])
}

extension OperationSteps {
    public func waitsForGroup(at stage: GroupStage) -> Bool { false }
    public func groupBarrier(_ stage: GroupStage, prospect: OperationOutcome) -> StepResult { .succeeded }
    public func groupAbort(_ errors: [HostError]) {}
}

/// The operation as one function of nested steps, each owning the undo of exactly what it did:
///
///     prepare ─► pre-script ─► flush ─► quiesce ─► freeze ─► snapshot
///                post-script ◄──────── resume  ◄── thaw  ◄──┘
///
/// The post-script runs whenever the pre-script ran, resume whenever quiesce was called, thaw
/// whenever the freeze was attempted — whatever fails or interrupts in between.
public struct OperationSequence {
    public let continueOnFailure: Bool
    public private(set) var records: [StepRecord] = []
    public private(set) var errors: [HostError] = []
    public private(set) var snapshotTaken = false
    /// The operation failed (as opposed to a degraded snapshot).
    public private(set) var failed = false

    private let steps: any OperationSteps
    private let start: Monotonic.Instant
    private var applicationStepsSucceeded = 0
    private var applicationStepFailed = false
    private var freezeSucceeded = false
    private var freezeDisabled = false
    private var freezeDelegated = false
    private var interrupted = false

    public init(steps: any OperationSteps, continueOnFailure: Bool, start: Monotonic.Instant = .now) {
        self.steps = steps
        self.continueOnFailure = continueOnFailure
        self.start = start
    }

    /// What the snapshot would be worth if it were taken now.
    var prospect: OperationOutcome {
        var taken = self
        taken.snapshotTaken = true
        return taken.outcome
    }

    /// What the snapshot is worth so far.
    public var outcome: OperationOutcome {
        guard snapshotTaken else { return OperationOutcome(snapshotTaken: false, consistency: .none) }
        let applicationConsistent = applicationStepsSucceeded > 0 && !applicationStepFailed
        let level: ConsistencyLevel
        if freezeDisabled {
            level = applicationConsistent ? .application : .crash
        } else if freezeSucceeded || freezeDelegated {
            level = applicationConsistent ? .application : .filesystem
        } else {
            level = .crash
        }
        return OperationOutcome(snapshotTaken: true, consistency: level)
    }

    public mutating func run() {
        perform("prepare") { $0.prepare() }
        within(
            "pre-script", application: true, act: { $0.preScript() },
            undo: "post-script", { steps, outcome in steps.postScript(outcome) }
        ) { sequence in
            sequence.perform("flush") { $0.flush() }
            sequence.within(
                "quiesce", application: true, act: { $0.quiesce() },
                undo: "resume", { steps, _ in steps.resume() }
            ) { sequence in
                guard sequence.barrier(.quiesced) else { return }
                sequence.within(
                    "freeze", application: false, act: { $0.freeze() },
                    undo: "thaw", { steps, _ in steps.thaw() }
                ) { sequence in
                    guard sequence.barrier(.frozen) else { return }
                    let prospect = sequence.prospect
                    let errors = sequence.errors
                    let result = sequence.perform("snapshot") { $0.snapshot(prospect, errors: errors) }
                    sequence.snapshotTaken = result == .succeeded
                    if !sequence.snapshotTaken {
                        sequence.failed = true
                    }
                    // A snapshot outside the group's complete cut is worth nothing.
                    else if !sequence.barrier(.snapshotted) {
                        sequence.snapshotTaken = false
                    }
                }
            }
        }
    }

    /// Runs `act`; runs `body` if the sequence should go on; then runs `undo` if `act` ran something.
    private mutating func within(
        _ name: String, application: Bool, act: (any OperationSteps) -> StepResult,
        undo undoName: String, _ undo: (any OperationSteps, OperationOutcome) -> StepResult,
        body: (inout OperationSequence) -> Void
    ) {
        // A signal that arrived before this step prevents it: nothing ran, nothing to undo.
        guard let result = perform(name, act) else { return }
        switch result {
        case .succeeded:
            if application { applicationStepsSucceeded += 1 } else { freezeSucceeded = true }
        case .skipped:
            if !application { freezeDisabled = true }
        case .delegated:
            if !application { freezeDelegated = true } else { applicationStepsSucceeded += 1 }
        case .failed:
            if application { applicationStepFailed = true }
            if !continueOnFailure { failed = true }
        case .interrupted, .fatal:
            failed = true
        }
        if !failed && !interrupted {
            body(&self)
        }
        if failed || interrupted { steps.groupAbort(errors) }
        guard result.ranSomething else { return }
        let outcome = self.outcome
        let undone = record(undoName) { undo($0, outcome) }
        if case .failed(let error, _, let more) = undone {
            if undoName == "post-script" && !continueOnFailure {
                failed = true  // a post-script failure fails the operation only without continueBackupOnFailure
            }
            if ([error] + more).contains(where: { $0.code == .pluginConsistencyLost }) {
                applicationStepFailed = true  // the quiesce did not hold: not application-consistent
            }
        }
    }

    /// A consistency group's barrier (when the operation has one at `stage`): true when every
    /// member got there; false when the group broke, timed out or a signal came, and the
    /// operation rolls back.
    private mutating func barrier(_ stage: GroupStage) -> Bool {
        guard steps.waitsForGroup(at: stage) else { return true }
        // Before the freeze, what the snapshot will be worth if the freeze succeeds.
        var assumed = self
        if stage == .quiesced { assumed.freezeSucceeded = true }
        let prospect = assumed.prospect
        guard let result = perform("group: all \(stage.rawValue)", { $0.groupBarrier(stage, prospect: prospect) })
        else { return false }
        if result == .succeeded { return true }
        failed = true
        steps.groupAbort(errors)
        return false
    }

    /// Runs a forward step; nil when a signal arrived before it (or an earlier step was interrupted).
    @discardableResult
    private mutating func perform(_ name: String, _ act: (any OperationSteps) -> StepResult) -> StepResult? {
        if interrupted { return nil }
        if let signal = steps.pendingInterrupt() {
            interrupted = true
            failed = true
            errors.append(signal)
            records.append(
                StepRecord(
                    name: name, startMs: milliseconds(Monotonic.Instant.now), durationMs: 0,
                    outcome: .interrupted, detail: signal.message))
            return nil
        }
        let result = record(name, act)
        if case .interrupted = result { interrupted = true }
        return result
    }

    /// Runs a step and keeps its record and error.
    private mutating func record(_ name: String, _ act: (any OperationSteps) -> StepResult) -> StepResult {
        TestStop.at(name)
        let begin = Monotonic.Instant.now
        let result = act(steps)
        let end = Monotonic.Instant.now
        var entry = StepRecord(
            name: name, startMs: milliseconds(begin), durationMs: (end - begin).inMilliseconds,
            outcome: .succeeded, detail: nil)
        switch result {
        case .succeeded:
            break
        case .skipped(let reason), .delegated(let reason):
            entry.outcome = .skipped
            entry.detail = reason
        case .failed(let error, _, let more):
            entry.outcome = .failed
            entry.detail = ([error] + more).map(\.message).joined(separator: "; ")
            errors.append(error)
            errors += more
        case .fatal(let error):
            entry.outcome = .failed
            entry.detail = error.message
            errors.append(error)
        case .interrupted(let error):
            entry.outcome = .interrupted
            entry.detail = error.message
            errors.append(error)
        }
        records.append(entry)
        return result
    }

    private func milliseconds(_ time: Monotonic.Instant) -> Double { (time - start).inMilliseconds }
}
