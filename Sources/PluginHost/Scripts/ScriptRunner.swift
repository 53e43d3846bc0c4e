import Glibc
public import PluginHostSupport

public enum ScriptPhase: String, Sendable, Codable {
    case pre
    case post

    var failedCode: ErrorCode { self == .pre ? .preScriptExecutionFailed : .postScriptExecutionFailed }
    var timeoutCode: ErrorCode { self == .pre ? .preScriptTimeout : .postScriptTimeout }
    var notFoundCode: ErrorCode { self == .pre ? .preScriptNotFound : .postScriptNotFound }
    var permissionCode: ErrorCode {
        self == .pre ? .insufficientPermissionForPreScript : .insufficientPermissionForPostScript
    }
    var stepName: String { self == .pre ? "pre-script" : "post-script" }
}

/// One attempt at running a script, as the report shows it.
public struct ScriptAttempt: Sendable, Codable, Equatable {
    public var number: Int
    public var startMs: Double
    public var durationMs: Double
    public var termination: Termination?
    public var timedOut: Bool
    /// spawn failed (the file vanished or is not executable after the checks).
    public var spawnError: String?
    public var stdoutTail: String
    public var stderrTail: String
}

/// All attempts at one script and what they add up to.
public struct ScriptRun: Sendable, Codable, Equatable {
    public enum Outcome: String, Sendable, Codable {
        case succeeded
        /// Only in reports written before exit status 2 became a failure like any other non-zero
        /// status (Azure defines a "warning = 2" constant but fails the script all the same).
        case succeededWithWarning
        case failed
        case timedOut
        case interrupted
    }

    public var phase: ScriptPhase
    public var path: String
    public var arguments: [String]
    public var outcome: Outcome
    public var attempts: [ScriptAttempt]
    /// Set when the script ran as `/bin/sh PATH PARAMS` instead of being executed directly, and why.
    public var shell: String?
    /// True when the operation's time limit stopped an attempt or kept a retry from starting.
    public var timeLimitReached: Bool?

    public var succeeded: Bool { outcome == .succeeded || outcome == .succeededWithWarning }
}

/// Runs the pre- and post-scripts (README, "The config file"): executed directly (the kernel honours the
/// shebang), or — for a file the kernel cannot execute (ENOEXEC: no `#!` line) or without the
/// owner execute bit — as `/bin/sh PATH PARAMS`, which is how Azure runs every script. argv =
/// path + params, cwd `/`, stdin `/dev/null`, a minimal environment, a process group of its own;
/// exit 0 is success, any other status a failure; every failed or timed-out attempt is really
/// run again, each with its own timeout; on timeout the whole group gets SIGTERM and, after a
/// grace, SIGKILL.
public struct ScriptRunner: Sendable {
    public static let searchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    public static let shell = "/bin/sh"

    /// How `path` will be started, for `check` and the report: `/bin/sh` with the reason, or
    /// the interpreter its `#!` line names, or "executed directly" for a binary.
    public static func interpreter(for path: String) -> String {
        let info: stat
        do {
            info = try FileSystem.status(of: path)
        } catch {
            return "unknown (\(error))"
        }
        if info.st_mode & S_IXUSR == 0 { return "\(shell) (no owner execute bit)" }
        guard let file = try? FileDescriptor.open(path, O_RDONLY | O_NONBLOCK) else {
            return "unknown (cannot read it)"
        }
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = (try? file.read(into: &buffer)) ?? 0
        let head = buffer.prefix(count)
        if head.starts(with: [0x23, 0x21]) {  // "#!"
            let line = head.dropFirst(2).prefix { $0 != 0x0A && $0 != 0x0D }.drop { $0 == 0x20 || $0 == 0x09 }
            return String(decoding: line, as: UTF8.self) + " (its #! line)"
        }
        if head.starts(with: [0x7F, 0x45, 0x4C, 0x46]) { return "executed directly (ELF binary)" }
        return "\(shell) (no #! line)"
    }

    /// How long a stopped attempt gets between SIGTERM and SIGKILL.
    public var grace: Duration = .seconds(2)

    public init() {}

    /// The environment a script sees: nothing inherited from the caller.
    public static func environment(
        phase: ScriptPhase, operationID: String,
        result: OperationOutcome?
    ) -> [String: String] {
        var environment = [
            "PATH": searchPath,
            "LANG": "C",
            "PLUGINHOST_PHASE": phase.rawValue,
            "PLUGINHOST_OPERATION_ID": operationID,
        ]
        if let result {
            environment["PLUGINHOST_RESULT"] = result.snapshotTaken ? "success" : "failure"
            environment["PLUGINHOST_CONSISTENCY"] = result.consistency.rawValue
        }
        return environment
    }

    /// Runs `path` with `arguments` up to `retries + 1` times until an attempt succeeds.
    /// `operationStart` anchors the attempts' `startMs`; `interrupt` is a descriptor that
    /// aborts the run when readable (the signal pipe). In a `containment`, each attempt runs in
    /// a cell of its own, killed whole when the attempt is stopped. The operation's time limit:
    /// no retry starts at or after `retryUntil`, and an attempt still running at `stopAt` is
    /// stopped as timed out (nil: no limit).
    public func run(
        phase: ScriptPhase, path: String, arguments: [String], retries: Int,
        timeoutSeconds: Int, environment: [String: String],
        operationStart: Monotonic.Instant, interrupt: Int32? = nil, containment: ProcessContainment? = nil,
        retryUntil: Monotonic.Instant? = nil, stopAt: Monotonic.Instant? = nil
    ) -> ScriptRun {
        var run = ScriptRun(phase: phase, path: path, arguments: arguments, outcome: .failed, attempts: [])
        var command = Command(executable: path, arguments: arguments, environment: environment)
        if let info = try? FileSystem.status(of: path), info.st_mode & S_IXUSR == 0 {
            command = Command(executable: Self.shell, arguments: [path] + arguments, environment: environment)
            run.shell = "\(Self.shell): the script has no owner execute bit"
        }
        for number in 1...(retries + 1) {
            if number > 1, let retryUntil, Monotonic.Instant.now >= retryUntil {
                run.timeLimitReached = true
                break
            }
            let (attempt, outcome) = runOnce(
                &command, run: &run, number: number, timeoutSeconds: timeoutSeconds,
                operationStart: operationStart, interrupt: interrupt, stopAt: stopAt,
                cell: containment?.cell("\(phase.stepName) attempt \(number)"))
            run.attempts.append(attempt)
            run.outcome = outcome
            if let stopAt, attempt.timedOut, Monotonic.Instant.now >= stopAt { run.timeLimitReached = true }
            if run.succeeded || outcome == .interrupted || run.timeLimitReached == true { break }
        }
        return run
    }

    private func runOnce(
        _ command: inout Command, run: inout ScriptRun, number: Int, timeoutSeconds: Int,
        operationStart: Monotonic.Instant,
        interrupt: Int32?, stopAt: Monotonic.Instant?, cell: ProcessContainment.Cell?
    ) -> (ScriptAttempt, ScriptRun.Outcome) {
        let start = Monotonic.Instant.now
        var attempt = ScriptAttempt(
            number: number, startMs: (start - operationStart).inMilliseconds,
            durationMs: 0, termination: nil, timedOut: false, spawnError: nil,
            stdoutTail: "", stderrTail: "")
        let child: ChildProcess
        do {
            do {
                child = try ChildProcess(spawning: command, cell: cell)
            } catch let error where error.errno == ENOEXEC && command.executable != Self.shell {
                // No #! line: what execvp(3) and Azure do — the shell reads it.
                command = Command(
                    executable: Self.shell, arguments: [command.executable] + command.arguments,
                    environment: command.environment)
                run.shell = "\(Self.shell): the kernel cannot execute the script (no #! line)"
                child = try ChildProcess(spawning: command, cell: cell)
            }
        } catch {
            attempt.spawnError = error.description
            cell?.removeIfEmpty()
            attempt.durationMs = (Monotonic.Instant.now - start).inMilliseconds
            return (attempt, .failed)
        }
        let deadline = min(start + .seconds(timeoutSeconds), stopAt ?? .max)
        var outcome: ScriptRun.Outcome
        switch child.wait(until: deadline, watching: interrupt.map { [$0] } ?? []) {
        case .exited(let termination):
            attempt.termination = termination
            outcome = termination == .exited(0) ? .succeeded : .failed
        case .deadlineReached:
            attempt.timedOut = true
            attempt.termination = child.terminateGroup(grace: grace, reason: "timed out")
            outcome = .timedOut
        case .readable:
            attempt.termination = child.terminateGroup(grace: grace, reason: "interrupted")
            outcome = .interrupted
        }
        attempt.durationMs = (Monotonic.Instant.now - start).inMilliseconds
        attempt.stdoutTail = child.stdoutTail.text
        attempt.stderrTail = child.stderrTail.text
        cell?.removeIfEmpty()
        return (attempt, outcome)
    }
}

extension ScriptRun {
    /// The error this run reports, if it failed: `…ExecutionFailed` or `…Timeout` per the last attempt.
    public var error: HostError? {
        let attemptsText =
            (attempts.count == 1 ? "1 attempt" : "\(attempts.count) attempts")
            + (timeLimitReached == true ? ", stopped at the operation's time limit, maxOperationSeconds" : "")
        switch outcome {
        case .succeeded, .succeededWithWarning:
            return nil
        case .timedOut:
            let seconds = attempts.last.map { Int(($0.durationMs / 1000).rounded()) } ?? 0
            return HostError(
                phase.timeoutCode,
                "\(path) did not finish in time (\(attemptsText), the last stopped after \(seconds) s)",
                step: phase.stepName)
        case .interrupted:
            return HostError(
                .operationInterrupted, "\(path) was stopped because the operation was interrupted",
                step: phase.stepName)
        case .failed:
            let how = attempts.last.map { $0.spawnError ?? $0.termination?.description ?? "failed" } ?? "failed"
            return HostError(phase.failedCode, "\(path) failed: \(how) (\(attemptsText))", step: phase.stepName)
        }
    }
}
