import PluginHostSupport
import Testing

@testable import PluginHost

/// Steps that record every call and answer as scripted.
private final class RecordingSteps: OperationSteps {
    var results: [String: StepResult] = [:]
    var interruptBefore: String?
    private(set) var calls: [String] = []
    private(set) var postOutcome: OperationOutcome?
    private var nextStep = "pre-script"

    init(_ results: [String: StepResult] = [:], interruptBefore: String? = nil) {
        self.results = results
        self.interruptBefore = interruptBefore
    }

    private func call(_ name: String) -> StepResult {
        calls.append(name)
        return results[name] ?? .succeeded
    }

    func prepare() -> StepResult { call("prepare") }
    func preScript() -> StepResult {
        nextStep = "flush"
        return call("pre-script")
    }
    func flush() -> StepResult {
        nextStep = "quiesce"
        return call("flush")
    }
    func quiesce() -> StepResult {
        nextStep = "freeze"
        return call("quiesce")
    }
    func freeze() -> StepResult {
        nextStep = "snapshot"
        return call("freeze")
    }
    func snapshot(_ prospect: OperationOutcome, errors: [HostError]) -> StepResult { call("snapshot") }
    func thaw() -> StepResult { call("thaw") }
    func resume() -> StepResult { call("resume") }
    func postScript(_ outcome: OperationOutcome) -> StepResult {
        postOutcome = outcome
        return call("post-script")
    }

    func pendingInterrupt() -> HostError? {
        // Called before each forward step; "arrives" just before the named one.
        guard let interruptBefore, interruptBefore == upcoming else { return nil }
        self.interruptBefore = nil
        return HostError(.operationInterrupted, "SIGTERM received")
    }

    /// The forward step about to run, derived from the calls so far.
    private var upcoming: String {
        let order = ["prepare", "pre-script", "flush", "quiesce", "freeze", "snapshot"]
        let done = calls.filter(order.contains)
        return done.count < order.count ? order[done.count] : "none"
    }
}

private let full = ["prepare", "pre-script", "flush", "quiesce", "freeze", "snapshot", "thaw", "resume", "post-script"]

private func failure(_ code: ErrorCode = .preScriptExecutionFailed, attempted: Bool = true) -> StepResult {
    .failed(HostError(code, "scripted failure"), attempted: attempted)
}

struct SequenceCase: CustomTestStringConvertible, Sendable {
    var name: String
    var results: [String: StepResult] = [:]
    var continueOnFailure = true
    var interruptBefore: String?
    var expectedCalls: [String]
    var expectedTaken: Bool
    var expectedLevel: ConsistencyLevel
    var expectedFailed: Bool
    var testDescription: String { name }
}

@Suite("Operation sequence: order, undo and consistency")
struct OperationSequenceTests {
    static let cases: [SequenceCase] = [
        SequenceCase(
            name: "everything succeeds", expectedCalls: full, expectedTaken: true,
            expectedLevel: .application, expectedFailed: false),
        SequenceCase(
            name: "no scripts, no plugins: the freeze alone is filesystem-consistent",
            results: ["pre-script": .skipped("no config"), "quiesce": .skipped("no plugins")],
            expectedCalls: ["prepare", "pre-script", "flush", "quiesce", "freeze", "snapshot", "thaw"],
            expectedTaken: true, expectedLevel: .filesystem, expectedFailed: false),
        SequenceCase(
            name: "pre-script fails, continue: snapshot taken, filesystem-consistent",
            results: ["pre-script": failure()], expectedCalls: full, expectedTaken: true,
            expectedLevel: .filesystem, expectedFailed: false),
        SequenceCase(
            name: "pre-script fails, stop: only the post-script runs",
            results: ["pre-script": failure()], continueOnFailure: false,
            expectedCalls: ["prepare", "pre-script", "post-script"], expectedTaken: false,
            expectedLevel: .none, expectedFailed: true),
        SequenceCase(
            name: "pre-script not found, stop: nothing ran, so no post-script",
            results: ["pre-script": failure(.preScriptNotFound, attempted: false)], continueOnFailure: false,
            expectedCalls: ["prepare", "pre-script"], expectedTaken: false, expectedLevel: .none, expectedFailed: true),
        SequenceCase(
            name: "pre-script not found, continue: no post-script, filesystem-consistent",
            results: ["pre-script": failure(.preScriptNotFound, attempted: false)],
            expectedCalls: ["prepare", "pre-script", "flush", "quiesce", "freeze", "snapshot", "thaw", "resume"],
            expectedTaken: true, expectedLevel: .filesystem, expectedFailed: false),
        SequenceCase(
            name: "quiesce fails, stop: resume and post-script undo it",
            results: ["quiesce": failure(.freezeFailed)], continueOnFailure: false,
            expectedCalls: ["prepare", "pre-script", "flush", "quiesce", "resume", "post-script"],
            expectedTaken: false, expectedLevel: .none, expectedFailed: true),
        SequenceCase(
            name: "quiesce fails, continue: filesystem-consistent",
            results: ["quiesce": failure(.freezeFailed)], expectedCalls: full, expectedTaken: true,
            expectedLevel: .filesystem, expectedFailed: false),
        SequenceCase(
            name: "freeze fails, stop: no snapshot, no thaw, resume and post-script",
            results: ["freeze": failure(.freezeFailed, attempted: false)], continueOnFailure: false,
            expectedCalls: ["prepare", "pre-script", "flush", "quiesce", "freeze", "resume", "post-script"],
            expectedTaken: false, expectedLevel: .none, expectedFailed: true),
        SequenceCase(
            name: "freeze fails, continue: crash-consistent snapshot",
            results: ["freeze": failure(.freezeFailed, attempted: false)],
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "freeze", "snapshot", "resume", "post-script",
            ],
            expectedTaken: true, expectedLevel: .crash, expectedFailed: false),
        SequenceCase(
            name: "freeze off: application-consistent when the application steps succeed",
            results: ["freeze": .skipped("fsFreezeEnabled is false")],
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "freeze", "snapshot", "resume", "post-script",
            ],
            expectedTaken: true, expectedLevel: .application, expectedFailed: false),
        SequenceCase(
            name: "freeze off and pre-script fails, continue: crash-consistent",
            results: ["freeze": .skipped("off"), "pre-script": failure()],
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "freeze", "snapshot", "resume", "post-script",
            ],
            expectedTaken: true, expectedLevel: .crash, expectedFailed: false),
        SequenceCase(
            name: "snapshot fails: thaw, resume, post-script; failed",
            results: ["snapshot": failure(.snapshotCommandFailed)], expectedCalls: full,
            expectedTaken: false, expectedLevel: .none, expectedFailed: true),
        SequenceCase(
            name: "freeze fatal (an agent would freeze what cannot be flushed), even with continue: no snapshot",
            results: ["freeze": .fatal(HostError(.freezeFailed, "not attempted"))], continueOnFailure: true,
            expectedCalls: ["prepare", "pre-script", "flush", "quiesce", "freeze", "resume", "post-script"],
            expectedTaken: false, expectedLevel: .none, expectedFailed: true),
        SequenceCase(
            name: "interrupted during the snapshot: everything undone",
            results: ["snapshot": .interrupted(HostError(.operationInterrupted, "SIGTERM"))],
            expectedCalls: full, expectedTaken: false, expectedLevel: .none, expectedFailed: true),
        SequenceCase(
            name: "interrupted during the pre-script: only the post-script",
            results: ["pre-script": .interrupted(HostError(.operationInterrupted, "SIGINT"))],
            continueOnFailure: true, expectedCalls: ["prepare", "pre-script", "post-script"],
            expectedTaken: false, expectedLevel: .none, expectedFailed: true),
        SequenceCase(
            name: "signal between quiesce and freeze: no freeze, resume and post-script",
            interruptBefore: "freeze",
            expectedCalls: ["prepare", "pre-script", "flush", "quiesce", "resume", "post-script"],
            expectedTaken: false, expectedLevel: .none, expectedFailed: true),
        SequenceCase(
            name: "signal before the snapshot: thawed at once",
            interruptBefore: "snapshot",
            expectedCalls: ["prepare", "pre-script", "flush", "quiesce", "freeze", "thaw", "resume", "post-script"],
            expectedTaken: false, expectedLevel: .none, expectedFailed: true),
        SequenceCase(
            name: "thaw fails: the error is kept, the rest still runs",
            results: ["thaw": failure(.thawFailed)], expectedCalls: full, expectedTaken: true,
            expectedLevel: .application, expectedFailed: false),
        SequenceCase(
            name: "post-script fails, continue: the operation stands",
            results: ["post-script": failure(.postScriptExecutionFailed)], expectedCalls: full,
            expectedTaken: true, expectedLevel: .application, expectedFailed: false),
        SequenceCase(
            name: "post-script fails, stop: the operation fails after the snapshot",
            results: ["post-script": failure(.postScriptExecutionFailed)], continueOnFailure: false,
            expectedCalls: full, expectedTaken: true, expectedLevel: .application, expectedFailed: true),
    ]

    @Test(arguments: cases)
    func sequence(_ testCase: SequenceCase) {
        let steps = RecordingSteps(testCase.results, interruptBefore: testCase.interruptBefore)
        var sequence = OperationSequence(steps: steps, continueOnFailure: testCase.continueOnFailure)
        sequence.run()
        #expect(steps.calls == testCase.expectedCalls)
        #expect(sequence.outcome.snapshotTaken == testCase.expectedTaken)
        #expect(sequence.outcome.consistency == testCase.expectedLevel)
        #expect(sequence.failed == testCase.expectedFailed)
        // Every call is recorded, in order; a signal between steps adds a record for the step it prevented.
        let called = sequence.records.filter { $0.outcome != .interrupted || steps.calls.contains($0.name) }
        #expect(called.map(\.name) == testCase.expectedCalls)
        if let prevented = testCase.interruptBefore {
            #expect(sequence.records.contains { $0.name == prevented && $0.outcome == .interrupted })
        }
    }

    @Test func postScriptIsToldTheOutcome() {
        let taken = RecordingSteps()
        var sequence = OperationSequence(steps: taken, continueOnFailure: true)
        sequence.run()
        #expect(taken.postOutcome == OperationOutcome(snapshotTaken: true, consistency: .application))

        let failed = RecordingSteps(["snapshot": failure(.snapshotCommandFailed)])
        var second = OperationSequence(steps: failed, continueOnFailure: true)
        second.run()
        #expect(failed.postOutcome == OperationOutcome(snapshotTaken: false, consistency: .none))
    }

    @Test func errorsAreKeptInOrder() {
        let steps = RecordingSteps([
            "pre-script": failure(), "snapshot": failure(.snapshotCommandFailed),
            "post-script": failure(.postScriptExecutionFailed),
        ])
        var sequence = OperationSequence(steps: steps, continueOnFailure: true)
        sequence.run()
        #expect(
            sequence.errors.map(\.code) == [
                .preScriptExecutionFailed, .snapshotCommandFailed, .postScriptExecutionFailed,
            ])
    }

    @Test func conclusionMapsToExitStatus() {
        var report = OperationReport(operationID: "x", command: "run", startedAt: "t")
        report.snapshotTaken = true
        report.consistency = .application
        report.conclude(failed: false)
        #expect(report.exitStatus == .success && report.result == .succeeded)

        report.consistency = .filesystem
        report.conclude(failed: false)
        #expect(report.exitStatus == .degraded && report.result == .degraded)

        report.consistency = .application
        report.errors = [HostError(.postScriptExecutionFailed, "x")]
        report.conclude(failed: false)
        #expect(report.exitStatus == .degraded)

        report.conclude(failed: true)
        #expect(report.exitStatus == .failed && report.result == .failed)

        report.errors = [HostError(.operationBusy, "x")]
        report.snapshotTaken = false
        report.conclude(failed: true)
        #expect(report.exitStatus == .busy)
    }
}
