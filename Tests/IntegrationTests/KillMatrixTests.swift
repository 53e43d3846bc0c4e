import CPluginHostShim
import Dispatch
import Glibc
import PluginHost
import PluginHostSupport
import PluginHostWire
import Synchronization
import Testing

/// The kill matrix: for every step of `run` and of the two-phase session, SIGKILL and
/// SIGSTOP (past the deadline) of the host (the session, in two-phase), the freeze guard and a
/// plugin worker. The host stops itself at the start of the step (`PLUGINHOST_TEST_STOP_AT`),
/// the test signals the victim and continues the host. Asserted for each case: nothing of
/// ours is frozen later than deadline + 2 s; a filesystem someone else froze is never thawed;
/// the report (or, when the host was killed, the next invocation's record) says what happened;
/// `recover` and the next run are clean. Cases run concurrently, each with its own loop
/// filesystems, run and state directories.
@Suite("Kill matrix", .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct KillMatrixTests {
    static let deadline = 2.0
    static let steps = [
        "checks", "prepare", "pre-script", "flush", "quiesce", "freeze", "snapshot", "thaw", "resume", "post-script",
    ]
    static let concurrentCases = 4

    enum Mode: String, Sendable { case run, twoPhase = "two-phase" }
    enum Victim: String, Sendable { case host, guardProcess = "guard", worker }

    struct Case: Sendable, CustomStringConvertible {
        var mode: Mode
        var step: String
        var victim: Victim
        var signal: Int32
        var description: String {
            "\(mode.rawValue) \(step) \(signal == SIGKILL ? "SIGKILL" : "SIGSTOP") \(victim == .host && mode == .twoPhase ? "session" : victim.rawValue)"
        }
    }

    /// Every case; the guard and the workers are started by `prepare`, so they exist from the
    /// step after it.
    static func cases(_ mode: Mode) -> [Case] {
        var all: [Case] = []
        for step in steps {
            for victim in [Victim.host, .guardProcess, .worker]
            where victim == .host || (step != "checks" && step != "prepare") {
                for signal in [SIGKILL, SIGSTOP] {
                    all.append(Case(mode: mode, step: step, victim: victim, signal: signal))
                }
            }
        }
        return all
    }

    @Test func run() throws { try Self.runAll(.run) }

    @Test func twoPhase() throws { try Self.runAll(.twoPhase) }

    /// Runs the mode's cases, `concurrentCases` at a time, and records every failure.
    static func runAll(_ mode: Mode) throws {
        let libraries = Scratch("km-lib")
        let library = try fixturePlugin("GOOD", in: libraries.path)
        let cases = Self.cases(mode)
        let failures = Mutex<[String]>([])
        let next = Mutex(0)
        let group = DispatchGroup()
        for _ in 0..<concurrentCases {
            DispatchQueue.global().async(group: group) {
                while true {
                    let index = next.withLock { value -> Int in
                        defer { value += 1 }
                        return value
                    }
                    guard index < cases.count else { return }
                    let found = CaseRun(cases[index], library: library).run()
                    failures.withLock { $0 += found.map { "\(cases[index]): \($0)" } }
                }
            }
        }
        group.wait()
        withExtendedLifetime(libraries) {}
        for failure in failures.withLock({ $0 }) { Issue.record(Comment(rawValue: failure)) }
    }
}

/// One case of the matrix, run to the end; returns what went wrong.
final class CaseRun {
    let testCase: KillMatrixTests.Case
    let library: String
    var failures: [String] = []

    init(_ testCase: KillMatrixTests.Case, library: String) {
        self.testCase = testCase
        self.library = library
    }

    func check(_ condition: Bool, _ what: @autoclosure () -> String) {
        if !condition { failures.append(what()) }
    }

    func run() -> [String] {
        let host = HostSandbox("km")
        guard let ours = try? LoopFilesystem(in: host.scratch, name: "ours", sizeMB: 16),
            let theirs = try? LoopFilesystem(in: host.scratch, name: "theirs", sizeMB: 16)
        else {
            return ["cannot make the loop filesystems"]
        }
        // Someone else's freeze, before the operation: it must stay as it is, whatever happens.
        check(sh("fsfreeze -f '\(theirs.mountPoint)'") == 0, "cannot freeze theirs")
        let pre = host.script("pre.sh", "#!/bin/sh\n")
        let post = host.script("post.sh", "#!/bin/sh\n")
        let config = host.config(pre: pre, post: post)
        let added = host.addPlugin(library, timeout: 2)
        check(added.status == 0, "plugin add: \(added.stderr)")
        let base = [
            "--config", config, "--plugins-dir", host.pluginsDirectory, "--mount", ours.mountPoint, "--mount",
            theirs.mountPoint,
        ]
        let plan = base + ["--max-frozen", formatted(KillMatrixTests.deadline)]
        var environment = host.environment
        environment["PLUGINHOST_TEST_STOP_AT"] = testCase.step

        let hostKilled = testCase.victim == .host && testCase.signal == SIGKILL
        var signalled: [Int32] = []
        switch testCase.mode {
        case .run:
            let running = start(host, ["run"] + plan + ["--json", "--", "/bin/true"], environment)
            signalled = act(host, ours, hostPID: running.pid)
            let result = running.finish(timeoutSeconds: 60)
            if !hostKilled { checkReport(result) }
        case .twoPhase:
            let lateStep = ["thaw", "resume", "post-script"].contains(testCase.step)
            let freeze = start(host, ["freeze"] + plan + ["--json"], environment)
            var thawClient: RunningHost?
            var freezeResult: Invocation?
            if lateStep {
                freezeResult = freeze.finish(timeoutSeconds: 60)
                if let id = operationID(freezeResult!) {
                    thawClient = start(host, ["thaw", "--operation", id, "--json"], environment)
                } else {
                    failures.append(
                        "freeze did not return an operation: \(freezeResult!.stdout) \(freezeResult!.stderr)")
                }
            }
            guard let session = waitForHolder(host) else {
                failures.append("no session holds the lock")
                break
            }
            signalled = act(host, ours, hostPID: session)
            if freezeResult == nil { freezeResult = freeze.finish(timeoutSeconds: 60) }
            if thawClient == nil, let id = operationID(freezeResult!), !hostKilled {
                thawClient = start(host, ["thaw", "--operation", id, "--json"], environment)
            }
            if let thawClient {
                let result = thawClient.finish(timeoutSeconds: 60)
                if !hostKilled { checkReport(result) }
            }
        }
        // Whatever was left stopped (a stopped guard or worker that nobody killed) goes now.
        for pid in signalled where isPluginhost(pid) { kill(pid, SIGKILL) }
        for _ in 0..<3000 where OperationLock.currentHolder(paths: host.paths) != nil { usleep(10_000) }

        check(isFrozen(probing: theirs.mountPoint), "someone else's freeze was thawed")
        let recover = host.invoke(["recover", "--json"])
        check(recover.status == 0, "recover exited \(recover.status): \(recover.stdout) \(recover.stderr)")
        if hostKilled && !["checks", "prepare"].contains(testCase.step) {
            // The next invocation recorded what happened to the operation that died.
            let status = host.invoke(["status", "--json"]).stdout
            check(
                status.contains("OperationInterrupted") || status.contains("\"result\" : \"failed\""),
                "no record of the killed operation: \(status.prefix(400))")
        }
        // A generous deadline here: on a loaded machine FIFREEZE alone can take seconds.
        let again = host.invoke(["run"] + base + ["--max-frozen", "60", "--json", "--", "/bin/true"])
        check(
            again.status == ExitStatus.success.rawValue,
            "the next run exited \(again.status): \(again.report?.errors.map(\.message) ?? [again.stderr])")
        check(!wasFrozen(thawing: ours.mountPoint), "ours is frozen after the next run")
        withExtendedLifetime((ours, theirs)) {}
        return failures
    }

    /// Waits until the host has stopped itself at the step, signals the victim, continues the
    /// host; checks that nothing of ours stays frozen past the deadline. Returns the pids signalled.
    func act(_ host: HostSandbox, _ ours: LoopFilesystem, hostPID: Int32) -> [Int32] {
        guard waitForState(hostPID, "T") else {
            failures.append("the host never stopped at \(testCase.step)")
            return []
        }
        let victim: Int32?
        switch testCase.victim {
        case .host: victim = hostPID
        case .guardProcess: victim = children(of: hostPID).first { commandLine($0).contains("__guard") }
        case .worker:
            // Workers are forks of the host, and so is the operation's warden (which names itself).
            let own = commandLine(hostPID)
            victim = children(of: hostPID).first {
                commandLine($0) == own && readProc("/proc/\($0)/comm") != "pluginhost-ward\n"
            }
        }
        guard let victim else {
            // The guard exits once it has thawed: after the thaw there is no guard to signal.
            if !(testCase.victim == .guardProcess && ["resume", "post-script"].contains(testCase.step)) {
                failures.append("no \(testCase.victim.rawValue) to signal")
            }
            kill(hostPID, SIGCONT)
            return []
        }
        let signalledAt = Monotonic.now()
        if victim != hostPID || testCase.signal == SIGKILL { kill(victim, testCase.signal) }
        if victim == hostPID && testCase.signal == SIGSTOP {
            // The host stays stopped past the deadline: by then nothing of ours may be frozen.
            usleep(UInt32((KillMatrixTests.deadline + 2) * 1_000_000))
            check(!wasFrozen(thawing: ours.mountPoint), "ours still frozen with the host stopped past the deadline")
            kill(hostPID, SIGCONT)
            return [victim]
        }
        if victim != hostPID { kill(hostPID, SIGCONT) }
        // Frozen now and then is fine (the host may still freeze and thaw on its way), but not
        // past the deadline and its grace.
        let limit = KillMatrixTests.deadline + 2 - Monotonic.milliseconds(from: signalledAt, to: Monotonic.now()) / 1000
        check(
            try! Writer(file: ours.mountPoint + "/probe").finishes(within: max(limit, 0.5) + 3),
            "ours still frozen more than the deadline + 2 s after the signal")
        return [victim]
    }

    /// The host's (or thaw client's) final report: it exists, and it does not claim a success
    /// that did not happen.
    func checkReport(_ result: Invocation) {
        guard let report = result.report else {
            failures.append(
                "no report (exit \(result.status)): \(result.stdout.prefix(300)) \(result.stderr.prefix(300))")
            return
        }
        check(
            report.freeze?.mayStillBeFrozen != true,
            "the report says something may still be frozen: \(String(describing: report.freeze))")
        let disturbed =
            testCase.victim != .host
            && ["pre-script", "flush", "quiesce", "freeze", "snapshot"].contains(testCase.step)
            || (testCase.victim == .worker && ["thaw", "resume"].contains(testCase.step))
        if disturbed {
            check(
                report.result != .succeeded || !report.warnings.isEmpty,
                "a \(testCase.victim.rawValue) signalled at \(testCase.step), yet a clean success: \(report.steps.map { "\($0.name) \($0.outcome)" })"
            )
        }
    }

    // MARK: - Processes

    func start(_ host: HostSandbox, _ arguments: [String], _ environment: [String: String]) -> RunningHost {
        RunningHost(
            try! ChildProcess(
                spawning: Command(executable: pluginhostBinary, arguments: arguments, environment: environment),
                outputCapacity: 16 << 20))
    }

    func operationID(_ invocation: Invocation) -> String? {
        if case .string(let id)? = (try? JSONParser.parse(invocation.stdout))?["operationID"], !id.isEmpty, id != "none"
        {
            return id
        }
        return nil
    }

    func waitForHolder(_ host: HostSandbox) -> Int32? {
        for _ in 0..<3000 {
            if let holder = OperationLock.currentHolder(paths: host.paths), holder.pid > 0 { return holder.pid }
            usleep(10_000)
        }
        return nil
    }

    func waitForState(_ pid: Int32, _ state: Character) -> Bool {
        for _ in 0..<3000 {
            if processState(pid) == state { return true }
            usleep(10_000)
        }
        return false
    }

    func formatted(_ seconds: Double) -> String { String(Int(seconds)) }
}

/// The state letter of a process (R, S, D, T, Z, …), nil when it is gone.
func processState(_ pid: Int32) -> Character? {
    let text = readProc("/proc/\(pid)/stat")
    guard let close = text.lastIndex(of: ")"), text.distance(from: close, to: text.endIndex) > 2 else { return nil }
    return text[text.index(close, offsetBy: 2)]
}

/// The live children of `pid`.
func children(of pid: Int32) -> [Int32] {
    var result: [Int32] = []
    guard let directory = opendir("/proc") else { return [] }
    defer { closedir(directory) }
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let child = Int32(name) else { continue }
        let text = readProc("/proc/\(child)/stat")
        guard let close = text.lastIndex(of: ")") else { continue }
        let fields = text[text.index(after: close)...].split(separator: " ")
        if fields.count > 1, Int32(fields[1]) == pid, fields[0] != "Z" { result.append(child) }
    }
    return result
}

func commandLine(_ pid: Int32) -> String {
    readProc("/proc/\(pid)/cmdline").replacingNulls
}

/// True while `pid` is a pluginhost process (the binary under test), so that a pid is never
/// signalled after it was reused.
func isPluginhost(_ pid: Int32) -> Bool {
    processState(pid).map { $0 != "Z" } == true && commandLine(pid).hasPrefix(pluginhostBinary)
}

func readProc(_ path: String) -> String {
    guard let file = try? FileDescriptor.open(path, O_RDONLY), let bytes = try? file.readAll(limit: 1 << 16) else {
        return ""
    }
    return String(decoding: bytes, as: UTF8.self)
}

extension String {
    fileprivate var replacingNulls: String { String(map { $0 == "\u{0}" ? " " : $0 }) }
}
