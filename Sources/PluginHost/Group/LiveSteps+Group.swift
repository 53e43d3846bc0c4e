import PluginHostSupport
import PluginHostWire

/// The operation's steps in a consistency group (README, "Consistency groups"): the barriers
/// between the sequence's steps, and telling the others at once when this member fails.
extension LiveSteps {
    /// `run` waits at every barrier. Two-phase: the caller of `freeze` takes every member's
    /// snapshot and then thaws each member, so there is no "all snapshotted" to wait for (a
    /// member's thaw must not wait for the others'). Hooks take no part in groups.
    func waitsForGroup(at stage: GroupStage) -> Bool {
        guard group != nil else { return false }
        switch request.mode {
        case .run: return true
        case .twoPhase: return stage != .snapshotted
        case .hook: return false
        }
    }

    func groupBarrier(_ stage: GroupStage, prospect: OperationOutcome) -> StepResult {
        guard let group else { return .succeeded }
        let lastStage: GroupStage = waitsForGroup(at: .snapshotted) ? .snapshotted : .frozen
        switch group.barrier(
            stage, consistency: prospect.consistency, watching: interrupt.map { [$0.descriptor] } ?? [])
        {
        case .passed:
            if stage == lastStage { group.complete() }
            return .succeeded
        case .failed(let error):
            return .failed(error, attempted: false)
        case .interrupted:
            let error = pendingInterrupt() ?? HostError(.operationInterrupted, "a signal arrived", step: nil)
            group.announceFailure(error.message)
            return .interrupted(HostError(error.code, error.message, step: "group: all \(stage.rawValue)"))
        }
    }

    func groupAbort(_ errors: [HostError]) {
        guard let group, !group.isBroken else { return }
        group.announceFailure(
            errors.first.map { "\($0.code.rawValue): \($0.message)" } ?? "member \(group.settings.member) failed")
    }

    /// For the snapshot command: which group and operation the snapshot belongs to.
    var groupEnvironment: [String: String] {
        guard let group else { return [:] }
        return [
            "PLUGINHOST_GROUP": group.settings.name, "PLUGINHOST_GROUP_MEMBER": group.settings.member,
            "PLUGINHOST_GROUP_OPERATION_ID": group.record.operationID ?? "",
        ]
    }
}
