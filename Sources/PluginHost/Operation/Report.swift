public import PluginHostSupport

/// How consistent the snapshot is (README, "What an operation does").
public enum ConsistencyLevel: String, Sendable, Codable, CaseIterable {
    /// Every application step (pre-script, plugin quiesce) succeeded, and the freeze succeeded
    /// or was turned off with `fsFreezeEnabled: false`.
    case application
    /// The freeze succeeded; an application step failed, was skipped, or none is configured.
    case filesystem
    /// Taken with neither guarantee: the freeze failed, or it was off and no application step
    /// succeeded.
    case crash
    /// No snapshot was taken.
    case none
}

/// What the post-script (and the report) is told about the snapshot.
public struct OperationOutcome: Sendable, Equatable {
    public var snapshotTaken: Bool
    public var consistency: ConsistencyLevel
}

public enum OperationResult: String, Sendable, Codable {
    /// Snapshot taken, application-consistent, no error.
    case succeeded
    /// Snapshot taken, but below application consistency or with an error after it.
    case degraded
    /// The operation failed (see `snapshotTaken` for whether a snapshot exists anyway).
    case failed
}

/// The process exit status, as data for the backup agent.
public enum ExitStatus: Int32, Sendable, CaseIterable, Codable {
    case success = 0
    case degraded = 1
    case failed = 2
    case invalid = 3
    case busy = 4
    case mayBeFrozen = 5

    public var meaning: String {
        switch self {
        case .success: "Snapshot taken, application-consistent (`check`: no problem found)."
        case .degraded: "Snapshot taken, but filesystem- or crash-consistent, or a step after it reported an error."
        case .failed: "The operation failed; everything it did was undone and nothing is left frozen."
        case .invalid: "Invalid command line or host setup, or `check` found problems; nothing was run."
        case .busy: "Another operation is running (OperationBusy); nothing was run."
        case .mayBeFrozen: "A thaw failed: something may still be frozen. Run `pluginhost recover` now."
        }
    }
}

/// One step of the sequence on the operation's time axis.
public struct StepRecord: Sendable, Codable, Equatable {
    public enum Outcome: String, Sendable, Codable {
        case succeeded, failed, skipped, interrupted
    }

    public var name: String
    /// Milliseconds since the operation started.
    public var startMs: Double
    public var durationMs: Double
    public var outcome: Outcome
    public var detail: String?
}

/// The snapshot command as it ran inside the freeze.
public struct SnapshotRecord: Sendable, Codable, Equatable {
    public var command: [String]
    public var termination: Termination?
    /// Two-phase and hooks, where no command of ours takes the snapshot: what the caller or
    /// agent said (thaw, a failed snapshot) or that nothing came.
    public var outcome: String?
    public var durationMs: Double
    public var stdoutTail: String
    public var stderrTail: String
}

/// Everything an operation did, for people (text) and machines (JSON with stable keys).
public struct OperationReport: Sendable, Codable, Equatable {
    public var operationID: String
    public var command: String
    public var startedAt: String
    public var durationMs: Double = 0
    public var result: OperationResult = .failed
    public var consistency: ConsistencyLevel = .none
    public var snapshotTaken = false
    public var exitStatus: ExitStatus = .failed
    public var configFile: String?
    /// The scriptArg VMware Tools passed to the hook, if any.
    public var hookScriptArg: String?
    public var continueBackupOnFailure = true
    public var fsFreezeEnabled = true
    public var steps: [StepRecord] = []
    public var scripts: [ScriptRun] = []
    public var plugins: [PluginRecord] = []
    public var freeze: FreezeRecord?
    public var snapshot: SnapshotRecord?
    /// The consistency group, when this member took part in one.
    public var group: GroupRecord?
    public var errors: [HostError] = []
    public var warnings: [String] = []
    /// The pluginhost that ran the operation, and the version of the report's keys
    /// (`BuildInfo`); nil in a report kept by a version before they existed.
    public var pluginhostVersion: String? = BuildInfo.version
    public var schemaVersion: Int? = BuildInfo.schemaVersion
    /// How what the operation started was kept together: "cgroup PATH", or "process groups (why)".
    public var processContainment: String?
    /// Every process killed because its owner went or was stopped (a timed-out script's setsid
    /// child, a plugin worker's leftovers), with what it belonged to.
    public var killedProcesses: [KilledProcess] = []

    public init(operationID: String, command: String, startedAt: String) {
        self.operationID = operationID
        self.command = command
        self.startedAt = startedAt
    }

    /// Sets result and exit status from what happened.
    mutating func conclude(failed: Bool) {
        if freeze?.mayStillBeFrozen == true {
            result = .failed
            exitStatus = .mayBeFrozen
        } else if failed || !snapshotTaken {
            result = .failed
            exitStatus = errors.contains { $0.code == .operationBusy } ? .busy : .failed
        } else if consistency == .application && errors.isEmpty && (group == nil || group?.consistency == .application)
        {
            result = .succeeded
            exitStatus = .success
        } else {
            result = .degraded
            exitStatus = .degraded
        }
    }
}
