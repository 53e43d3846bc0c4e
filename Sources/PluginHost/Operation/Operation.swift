import Glibc
public import Logging
import PluginHostSupport

/// One application-consistent snapshot (README, "What an operation does"): lock, recover leftovers, checks, then the
/// sequence of `OperationSequence` with the real steps, then the report, saved once everything
/// is thawed. Never prints, never exits: the caller renders the report and exits with its status.
public final class Operation {
    public let request: OperationRequest
    public let operationID: String
    private let logger: Logger
    private let interrupt: InterruptSignal?
    private let logOutput: HeldLogOutput?

    public init(
        request: OperationRequest, logger: Logger, interrupt: InterruptSignal? = nil,
        logOutput: HeldLogOutput? = nil
    ) {
        self.request = request
        self.operationID = Self.makeID()
        self.logger = logger
        self.interrupt = interrupt
        self.logOutput = logOutput
    }

    /// A sortable, unique id: UTC time and 6 random hex digits.
    static func makeID() -> String {
        let stamp = isoTimestamp().filter { $0.isNumber || $0 == "T" }.prefix(15)
        let random = String(UInt32.random(in: 0..<0x100_0000), radix: 16)
        return "\(stamp)Z-\(String(repeating: "0", count: 6 - random.count))\(random)"
    }

    public func run() -> OperationReport {
        let start = Monotonic.Instant.now
        var report = OperationReport(operationID: operationID, command: request.mode.name, startedAt: isoTimestamp())
        report.hookScriptArg = request.hookScriptArg
        var logger = self.logger
        logger[metadataKey: "operation"] = "\(operationID)"

        func finish(_ status: ExitStatus? = nil, failed: Bool = true) -> OperationReport {
            report.durationMs = (Monotonic.Instant.now - start).inMilliseconds
            report.conclude(failed: failed)
            if let status { report.exitStatus = status }
            request.mode.channel?.finish(report)
            SystemLog.record(report)
            return report
        }

        do {
            try request.paths.prepare()
        } catch {
            report.errors.append(error)
            return finish(.invalid)
        }
        let lock: OperationLock
        do {
            lock = try OperationLock.acquire(paths: request.paths, operationID: operationID)
        } catch {
            report.errors.append(error)
            return finish(.busy)
        }
        do {
            try request.mode.channel?.open()
        } catch {
            report.errors.append(error)
            return finish(.invalid)
        }
        if let recovered = Recovery.run(paths: request.paths) {
            logger.warning("recovered a previous operation", metadata: ["summary": "\(recovered.summary)"])
            report.warnings.append("recovered: \(recovered.summary)")
            if !recovered.complete {
                let what =
                    recovered.journal == nil
                    ? "a previous operation's freeze journal cannot be read, so what it froze is unknown"
                    : "a previous operation left filesystems frozen that cannot be thawed"
                report.errors.append(HostError(.thawFailed, "\(what): \(recovered.summary)", step: "checks"))
                return finish(.mayBeFrozen)
            }
        }

        TestStop.at("checks")
        let checksStart = Monotonic.Instant.now
        let preflight = Preflight.run(request)
        report.steps.append(
            StepRecord(
                name: "checks", startMs: (checksStart - start).inMilliseconds,
                durationMs: (Monotonic.Instant.now - checksStart).inMilliseconds,
                outcome: preflight.setupProblems.isEmpty ? .succeeded : .failed,
                detail: preflight.setupProblems.first?.message))
        report.warnings += preflight.warnings
        report.continueBackupOnFailure = preflight.continueBackupOnFailure
        report.fsFreezeEnabled = preflight.fsFreezeEnabled
        if case .loaded(_, let path) = preflight.config { report.configFile = path }
        if !preflight.setupProblems.isEmpty {
            report.errors += preflight.setupProblems
            if let settings = preflight.group, !request.mode.agentFreezes {
                report.group = GroupMember.announceFailedChecks(
                    settings: settings, executable: request.executable, operationID: operationID, operationStart: start,
                    paths: request.paths,
                    reason: "its checks failed: " + preflight.setupProblems.map(\.description).joined(separator: "; "))
            }
            return finish(.invalid)
        }

        // A consistency group: joined before anything runs (a second operation of the group is busy).
        var group: GroupMember?
        if let settings = preflight.group {
            if request.mode.agentFreezes {
                report.warnings.append("consistency group \(settings.name) ignored: hooks take part in no group")
            } else {
                let joined = GroupMember.join(
                    settings: settings, executable: request.executable, operationID: operationID,
                    operationStart: start, maxFrozenSeconds: preflight.maxFrozenSeconds, paths: request.paths)
                report.group = joined.record
                if let error = joined.error {
                    report.errors.append(error)
                    return finish(error.code == .operationBusy ? .busy : .failed)
                }
                group = joined.member
            }
        }

        // Everything the steps start lives in the operation's cgroup and dies with its owner.
        let containment = ProcessContainment(name: operationID, cgroups: request.cgroups)
        let steps = LiveSteps(
            request: request, preflight: preflight, operationID: operationID, start: start,
            lock: lock, logger: logger, interrupt: interrupt, logOutput: logOutput, containment: containment)
        steps.group = group
        var sequence = OperationSequence(
            steps: steps, continueOnFailure: preflight.continueBackupOnFailure, start: start)
        sequence.run()
        steps.finish()
        containment.finish()

        report.steps += sequence.records
        report.errors += sequence.errors
        report.warnings += steps.warnings
        report.scripts = steps.scripts
        report.plugins = steps.pluginRecords
        report.freeze = steps.freezeRecord
        report.snapshot = steps.snapshotRecord
        report.snapshotTaken = sequence.outcome.snapshotTaken
        report.consistency = sequence.outcome.consistency
        if let group {
            let result =
                sequence.failed
                ? "failed"
                : (sequence.outcome.consistency == .application && sequence.errors.isEmpty ? "succeeded" : "degraded")
            report.group = group.leave(result: result, consistency: sequence.outcome.consistency)
            if let record = report.group, record.outcome == "completed", record.consistency != .application {
                let weaker = record.memberStates.filter { $0.consistency != ConsistencyLevel.application.rawValue }
                report.warnings.append(
                    "group \(record.name) is \(record.consistency?.rawValue ?? "not")-consistent: "
                        + weaker.map { "\($0.member) \($0.consistency)" }.joined(separator: ", "))
            }
        }
        if let channel = request.mode.channel { report.warnings += channel.refusals }
        if let lost = logOutput?.failure { report.warnings.append(lost) }
        report.processContainment = containment.mechanism.description
        report.killedProcesses = containment.killed
        report.warnings += containment.warnings
        report.durationMs = (Monotonic.Instant.now - start).inMilliseconds
        report.conclude(failed: sequence.failed)
        report = report.bounded()  // always small enough to be read back
        do {
            try ReportStore(paths: request.paths, keep: preflight.hostConfig.keepReports).save(report)
        } catch {
            logger.error("cannot save the report", metadata: ["error": "\(error)"])
        }
        request.mode.channel?.finish(report)
        // After the thaw and the report: one line to the system log (skipped if a thaw failed).
        SystemLog.record(report)
        withExtendedLifetime(lock) {}
        return report
    }
}
