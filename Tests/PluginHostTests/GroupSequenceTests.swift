import PluginHostSupport
import PluginHostWire
import Testing

@testable import PluginHost

/// Steps of a consistency group member that record every call (barriers and the announcement of
/// a failure included) and answer as scripted.
private final class GroupRecordingSteps: OperationSteps {
    var results: [String: StepResult]
    var barriers: Set<GroupStage>
    private(set) var calls: [String] = []
    private(set) var prospects: [GroupStage: ConsistencyLevel] = [:]

    init(_ results: [String: StepResult] = [:], barriers: Set<GroupStage> = Set(GroupStage.allCases)) {
        self.results = results
        self.barriers = barriers
    }

    private func call(_ name: String) -> StepResult {
        calls.append(name)
        return results[name] ?? .succeeded
    }

    func prepare() -> StepResult { call("prepare") }
    func preScript() -> StepResult { call("pre-script") }
    func flush() -> StepResult { call("flush") }
    func quiesce() -> StepResult { call("quiesce") }
    func freeze() -> StepResult { call("freeze") }
    func snapshot(_ prospect: OperationOutcome, errors: [HostError]) -> StepResult { call("snapshot") }
    func thaw() -> StepResult { call("thaw") }
    func resume() -> StepResult { call("resume") }
    func postScript(_ outcome: OperationOutcome) -> StepResult { call("post-script") }
    func pendingInterrupt() -> HostError? { nil }

    func waitsForGroup(at stage: GroupStage) -> Bool { barriers.contains(stage) }
    func groupBarrier(_ stage: GroupStage, prospect: OperationOutcome) -> StepResult {
        prospects[stage] = prospect.consistency
        return call("all \(stage.rawValue)")
    }
    func groupAbort(_ errors: [HostError]) { calls.append("abort") }

    /// The calls with repeated announcements folded (the live steps send one).
    var distinctCalls: [String] {
        calls.enumerated().filter { $0.element != "abort" || !calls[..<$0.offset].contains("abort") }.map(\.element)
    }
}

private func broken(_ code: ErrorCode = .groupMemberFailed) -> StepResult {
    .failed(HostError(code, "member m3 is gone"), attempted: false)
}

private func failure(_ code: ErrorCode) -> StepResult {
    .failed(HostError(code, "scripted failure"), attempted: true)
}

struct GroupSequenceCase: CustomTestStringConvertible, Sendable {
    var name: String
    var results: [String: StepResult] = [:]
    var continueOnFailure = true
    var barriers: Set<GroupStage> = Set(GroupStage.allCases)
    var expectedCalls: [String]
    var expectedTaken: Bool
    var expectedFailed: Bool
    var testDescription: String { name }
}

@Suite("Operation sequence in a consistency group: barriers and undo")
struct GroupSequenceTests {
    static let cases: [GroupSequenceCase] = [
        GroupSequenceCase(
            name: "every barrier passes",
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "all quiesced", "freeze", "all frozen", "snapshot",
                "all snapshotted", "thaw", "resume", "post-script",
            ],
            expectedTaken: true, expectedFailed: false),
        GroupSequenceCase(
            name: "the group breaks before anyone freezes: nothing frozen, resume and post-script",
            results: ["all quiesced": broken()],
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "all quiesced", "abort", "resume", "post-script",
            ],
            expectedTaken: false, expectedFailed: true),
        GroupSequenceCase(
            name: "the group breaks once frozen: no snapshot, thawed at once",
            results: ["all frozen": broken(.groupCoordinatorUnreachable)],
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "all quiesced", "freeze", "all frozen", "abort", "thaw",
                "resume", "post-script",
            ],
            expectedTaken: false, expectedFailed: true),
        GroupSequenceCase(
            name: "the group breaks after this member's snapshot: it does not count",
            results: ["all snapshotted": broken()],
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "all quiesced", "freeze", "all frozen", "snapshot",
                "all snapshotted", "abort", "thaw", "resume", "post-script",
            ],
            expectedTaken: false, expectedFailed: true),
        GroupSequenceCase(
            name: "this member's snapshot fails: the others are told before the thaw",
            results: ["snapshot": failure(.snapshotCommandFailed)],
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "all quiesced", "freeze", "all frozen", "snapshot",
                "abort", "thaw", "resume", "post-script",
            ],
            expectedTaken: false, expectedFailed: true),
        GroupSequenceCase(
            name: "this member's quiesce fails without continueBackupOnFailure: told before the resume",
            results: ["quiesce": failure(.pluginQuiesceFailed)], continueOnFailure: false,
            expectedCalls: ["prepare", "pre-script", "flush", "quiesce", "abort", "resume", "post-script"],
            expectedTaken: false, expectedFailed: true),
        GroupSequenceCase(
            name: "this member's freeze fails without continueBackupOnFailure: told, nothing to thaw",
            results: ["freeze": .failed(HostError(.freezeFailed, "EBUSY"), attempted: false)], continueOnFailure: false,
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "all quiesced", "freeze", "abort", "resume", "post-script",
            ],
            expectedTaken: false, expectedFailed: true),
        GroupSequenceCase(
            name: "a plugin fails with continueBackupOnFailure: the group goes on",
            results: ["quiesce": failure(.pluginQuiesceFailed)],
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "all quiesced", "freeze", "all frozen", "snapshot",
                "all snapshotted", "thaw", "resume", "post-script",
            ],
            expectedTaken: true, expectedFailed: false),
        GroupSequenceCase(
            name: "two-phase: no \"all snapshotted\" (the service's thaw is that barrier)",
            barriers: [.quiesced, .frozen],
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "all quiesced", "freeze", "all frozen", "snapshot",
                "thaw", "resume", "post-script",
            ],
            expectedTaken: true, expectedFailed: false),
        GroupSequenceCase(
            name: "a signal at a barrier: everything undone",
            results: ["all frozen": .interrupted(HostError(.operationInterrupted, "SIGTERM"))],
            expectedCalls: [
                "prepare", "pre-script", "flush", "quiesce", "all quiesced", "freeze", "all frozen", "abort", "thaw",
                "resume", "post-script",
            ],
            expectedTaken: false, expectedFailed: true),
    ]

    @Test(arguments: cases)
    func sequence(_ testCase: GroupSequenceCase) {
        let steps = GroupRecordingSteps(testCase.results, barriers: testCase.barriers)
        var sequence = OperationSequence(steps: steps, continueOnFailure: testCase.continueOnFailure)
        sequence.run()
        #expect(steps.distinctCalls == testCase.expectedCalls)
        #expect(sequence.outcome.snapshotTaken == testCase.expectedTaken)
        #expect(sequence.failed == testCase.expectedFailed)
        #expect(
            sequence.records.map(\.name).filter { $0.hasPrefix("group: ") }
                == testCase.expectedCalls.filter { $0.hasPrefix("all ") }.map { "group: " + $0 })
    }

    /// Each barrier publishes what this member's snapshot is worth at that point.
    @Test func barriersCarryTheProspect() {
        let steps = GroupRecordingSteps(["quiesce": failure(.pluginQuiesceFailed)])
        var sequence = OperationSequence(steps: steps, continueOnFailure: true)
        sequence.run()
        #expect(steps.prospects == [.quiesced: .filesystem, .frozen: .filesystem, .snapshotted: .filesystem])

        let clean = GroupRecordingSteps()
        var second = OperationSequence(steps: clean, continueOnFailure: true)
        second.run()
        #expect(clean.prospects == [.quiesced: .application, .frozen: .application, .snapshotted: .application])
    }

    @Test func theGroupsConsistencyIsTheLowestOfTheMembers() {
        #expect(GroupRecord.lowest([.application, .filesystem, .application]) == .filesystem)
        #expect(GroupRecord.lowest([.application, .crash]) == .crash)
        #expect(GroupRecord.lowest([.application]) == .application)
        #expect(GroupRecord.lowest([.application, .none]) == .none)
        #expect(GroupRecord.lowest([]) == .none)
    }

    /// A member's exit status says what the group's cut is worth, not only its own snapshot.
    @Test func aLessConsistentGroupDegradesEveryMembersExitStatus() {
        var report = OperationReport(operationID: "x", command: "run", startedAt: "t")
        report.snapshotTaken = true
        report.consistency = .application
        report.group = GroupRecord(
            name: "g", member: "m1", members: 2, operationID: "o", etcd: [], ttlSeconds: 5, outcome: "completed",
            consistency: .application, originMonotonicNs: 0)
        report.conclude(failed: false)
        #expect(report.exitStatus == .success)
        report.group?.consistency = .filesystem
        report.conclude(failed: false)
        #expect(report.exitStatus == .degraded)
    }
}
