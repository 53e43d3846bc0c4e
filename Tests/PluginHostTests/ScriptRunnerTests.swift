import Glibc
import PluginHostSupport
import Testing

@testable import PluginHost

func processExists(_ pid: Int32) -> Bool {
    // A zombie is as good as gone; only a live process counts.
    guard let file = try? FileDescriptor.open("/proc/\(pid)/stat", O_RDONLY),
        let bytes = try? file.readAll(limit: 4096)
    else { return false }
    let text = String(decoding: bytes, as: UTF8.self)
    guard let close = text.lastIndex(of: ")") else { return false }
    let state = text[text.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}

@Suite("Script runner")
struct ScriptRunnerTests {
    let directory = TemporaryDirectory()
    let runner: ScriptRunner = {
        var runner = ScriptRunner()
        runner.grace = .milliseconds(300)
        return runner
    }()

    func run(
        _ path: String, arguments: [String] = [], retries: Int = 0, timeout: Int = 20,
        phase: ScriptPhase = .pre, interrupt: Int32? = nil
    ) -> ScriptRun {
        runner.run(
            phase: phase, path: path, arguments: arguments, retries: retries, timeoutSeconds: timeout,
            environment: ScriptRunner.environment(
                phase: phase, operationID: "op-1",
                result: phase == .post ? OperationOutcome(snapshotTaken: true, consistency: .filesystem) : nil),
            operationStart: .now, interrupt: interrupt)
    }

    @Test func argumentsAreSeparateAndEmptyOnesSurvive() {
        let script = directory.script("args.sh", "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\n")
        let result = run(script, arguments: ["a b", "", "c", ""])
        #expect(result.outcome == .succeeded)
        #expect(result.attempts.first?.stdoutTail == "[a b][][c][]")
    }

    @Test func environmentIsMinimalAndCarriesThePhase() {
        let script = directory.script("env.sh", "#!/bin/sh\nenv | LC_ALL=C sort\n")
        let pre = run(script)
        #expect(
            pre.attempts.first?.stdoutTail == """
                LANG=C
                PATH=\(ScriptRunner.searchPath)
                PLUGINHOST_OPERATION_ID=op-1
                PLUGINHOST_PHASE=pre
                PWD=/

                """)
        let post = run(script, phase: .post)
        let text = post.attempts.first?.stdoutTail ?? ""
        #expect(text.contains("PLUGINHOST_PHASE=post\n"))
        #expect(text.contains("PLUGINHOST_RESULT=success\n"))
        #expect(text.contains("PLUGINHOST_CONSISTENCY=filesystem\n"))
    }

    @Test func shebangIsHonouredAndCwdIsRootAndStdinIsEmpty() {
        let script = directory.script(
            "shebang",
            "#!/usr/bin/env perl\nprint \"perl \", `pwd`; my $in = <STDIN>; print defined($in) ? \"input\" : \"eof\";\n"
        )
        let result = run(script)
        #expect(result.outcome == .succeeded)
        #expect(result.attempts.first?.stdoutTail == "perl /\neof")
    }

    @Test func failureIsReRunForEachRetry() {
        let counter = "\(directory.path)/count"
        let script = directory.script("fail.sh", "#!/bin/sh\necho run >> \(counter)\necho oops >&2\nexit 3\n")
        let result = run(script, retries: 2)
        #expect(result.outcome == .failed)
        #expect(result.attempts.count == 3)
        #expect(result.attempts.allSatisfy { $0.termination == .exited(3) && $0.stderrTail == "oops\n" })
        #expect(directory.read("count") == "run\nrun\nrun\n")
        #expect(result.error?.code == .preScriptExecutionFailed)
        #expect(result.error?.message.contains("3 attempts") == true)
    }

    /// The operation's time limit: no retry starts once it has passed…
    @Test func noRetryStartsPastTheOperationsTimeLimit() {
        let counter = "\(directory.path)/count"
        let script = directory.script("fail.sh", "#!/bin/sh\necho run >> \(counter)\nexit 1\n")
        let result = runner.run(
            phase: .post, path: script, arguments: [], retries: 10, timeoutSeconds: 20,
            environment: [:], operationStart: .now, retryUntil: .now)
        #expect(result.attempts.count == 1, "the first attempt always runs (a post-script undoes the pre-script)")
        #expect(directory.read("count") == "run\n")
        #expect(result.timeLimitReached == true)
        #expect(result.error?.code == .postScriptExecutionFailed)
        #expect(result.error?.message.contains("maxOperationSeconds") == true)
    }

    /// …and an attempt still running when it comes is stopped, as a timeout.
    @Test func anAttemptRunningAtTheOperationsTimeLimitIsStopped() {
        let script = directory.script("slow.sh", "#!/bin/sh\nexec sleep 30\n")
        let result = runner.run(
            phase: .pre, path: script, arguments: [], retries: 3, timeoutSeconds: 60,
            environment: [:], operationStart: .now,
            retryUntil: Monotonic.Instant.now + .milliseconds(300), stopAt: Monotonic.Instant.now + .milliseconds(300))
        #expect(result.outcome == .timedOut)
        #expect(result.attempts.count == 1 && result.attempts[0].timedOut)
        #expect(result.timeLimitReached == true)
        #expect(result.error?.code == .preScriptTimeout)
        #expect(result.error?.message.contains("time limit") == true)
    }

    @Test func retriesStopAtTheFirstSuccess() {
        let marker = "\(directory.path)/marker"
        let script = directory.script(
            "flaky.sh", "#!/bin/sh\nif [ -e \(marker) ]; then exit 0; fi\ntouch \(marker)\nexit 1\n")
        let result = run(script, retries: 5)
        #expect(result.outcome == .succeeded)
        #expect(result.attempts.map(\.termination) == [.exited(1), .exited(0)])
    }

    /// Azure defines PrePost_ScriptStatus_Warning = 2 but reports every non-zero exit as a
    /// failure (the README once said "exit 2 success with a warning").
    @Test(arguments: [1, 2, 3, 126, 255] as [Int32])
    func everyNonZeroExitIsAFailureAndIsRetried(status: Int32) {
        let script = directory.script("status.sh", "#!/bin/sh\nexit \(status)\n")
        let result = run(script, retries: 2)
        #expect(result.outcome == .failed)
        #expect(result.attempts.count == 3)
        #expect(result.attempts.allSatisfy { $0.termination == .exited(status) })
        #expect(result.error?.code == .preScriptExecutionFailed)
        #expect(result.error?.message.contains("exit status \(status)") == true)
    }

    // MARK: - Azure's script shapes: no #! line, modes without the owner execute bit

    /// Microsoft's Oracle tutorial configures scripts that are plain commands without a `#!`
    /// line; Azure runs every script as `sh PATH PARAMS`. execve gives ENOEXEC: the shell runs it.
    @Test func aScriptWithoutAShebangRunsThroughTheShell() {
        let script = directory.script("noshebang.sh", "echo \"plain $0 $# [$1] [$2]\"\necho err >&2\n")
        let result = run(script, arguments: ["", ""])
        #expect(result.outcome == .succeeded)
        #expect(result.attempts.first?.stdoutTail == "plain \(script) 2 [] []\n")
        #expect(result.attempts.first?.stderrTail == "err\n")
        #expect(result.shell?.contains("no #! line") == true)
        #expect(ScriptRunner.interpreter(for: script) == "/bin/sh (no #! line)")
    }

    @Test func aFailingScriptWithoutAShebangIsAnExecutionFailure() {
        let script = directory.script("noshebangfail.sh", "echo failing\nexit 4\n")
        let result = run(script, retries: 1)
        #expect(result.outcome == .failed)
        #expect(result.attempts.map(\.termination) == [.exited(4), .exited(4)])
        #expect(result.error?.code == .preScriptExecutionFailed)
    }

    /// Azure accepts 600 and 400 scripts (it checks only the group and other digits) and runs
    /// them through sh; so does pluginhost, shebang or not.
    @Test(arguments: [0o600, 0o400] as [mode_t])
    func aScriptWithoutTheOwnerExecuteBitRunsThroughTheShell(mode: mode_t) {
        let script = directory.script(
            "mode\(String(mode, radix: 8)).sh", "#!/bin/bash\necho \"via ${BASH_VERSION:-sh} $1\"\n")
        chmod(script, mode)
        let result = run(script, arguments: ["x"])
        #expect(result.outcome == .succeeded)
        #expect(result.attempts.first?.stdoutTail == "via sh x\n")  // /bin/sh, not the #! interpreter
        #expect(result.shell?.contains("no owner execute bit") == true)
        #expect(ScriptRunner.interpreter(for: script) == "/bin/sh (no owner execute bit)")
    }

    @Test func aShebangScriptIsExecutedDirectly() {
        let script = directory.script("bash.sh", "#!/bin/bash\necho \"bash ${BASH_VERSION:+yes}\"\n")
        let result = run(script)
        #expect(result.attempts.first?.stdoutTail == "bash yes\n")
        #expect(result.shell == nil)
        #expect(ScriptRunner.interpreter(for: script) == "/bin/bash (its #! line)")
        #expect(ScriptRunner.interpreter(for: "/bin/true") == "executed directly (ELF binary)")
    }

    @Test func postScriptCodes() {
        let fail = run(directory.script("postfail.sh", "#!/bin/sh\nexit 1\n"), phase: .post)
        #expect(fail.error?.code == .postScriptExecutionFailed)
        let slow = run(directory.script("postslow.sh", "#!/bin/sh\nexec sleep 30\n"), timeout: 1, phase: .post)
        #expect(slow.error?.code == .postScriptTimeout)
    }

    @Test func timeoutKillsTheWholeGroupAndEveryAttemptGetsItsOwnTimeout() throws {
        let pids = "\(directory.path)/pids"
        // The script leaves a grandchild that ignores SIGTERM, then hangs itself.
        let script = directory.script(
            "hang.sh",
            """
            #!/bin/sh
            sh -c 'trap "" TERM; while :; do sleep 1; done' &
            echo $! >> \(pids)
            sleep 100
            """)
        let result = run(script, retries: 1, timeout: 1)
        #expect(result.outcome == .timedOut)
        #expect(result.attempts.count == 2)
        #expect(result.attempts.allSatisfy { $0.timedOut && $0.durationMs >= 1000 })
        #expect(result.error?.code == .preScriptTimeout)
        let grandchildren = directory.read("pids").split(separator: "\n").compactMap { Int32($0) }
        #expect(grandchildren.count == 2)
        // SIGKILL went to the group; give the kernel a moment to reap reparented grandchildren.
        for _ in 0..<100 where grandchildren.contains(where: processExists) { usleep(20_000) }
        #expect(!grandchildren.contains(where: processExists))
    }

    @Test func aScriptIgnoringSigtermIsKilledAfterTheGrace() {
        let script = directory.script("stubborn.sh", "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 1; done\n")
        let result = run(script, timeout: 1)
        #expect(result.outcome == .timedOut)
        #expect(result.attempts.first?.termination == .signalled(SIGKILL))
    }

    @Test func chattyOutputIsDrainedAndOnlyTheTailKept() {
        let script = directory.script(
            "chatty.sh", "#!/bin/sh\nyes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c 8000000\necho\necho end-of-output\n")
        let result = run(script)
        #expect(result.outcome == .succeeded)
        let tail = result.attempts.first?.stdoutTail ?? ""
        #expect(tail.hasSuffix("end-of-output\n"))
        #expect(tail.utf8.count <= OutputTail.defaultCapacity)
    }

    @Test func exitIsNoticedEvenWhenAGrandchildKeepsTheOutputOpen() throws {
        // The grandchild holds stdout open for 300 s: a runner that waited for the pipe's end of
        // file would reach the 3 s timeout and report the attempt as timed out (and kill it).
        let script = directory.script(
            "bg.sh", "#!/bin/sh\nsleep 300 &\necho $! > '\(directory.path)/bg.pid'\necho started\nexit 0\n")
        let result = run(script, timeout: 3)
        let grandchild = try #require(Int32(directory.read("bg.pid").split(separator: "\n").first ?? ""))
        defer { kill(grandchild, SIGKILL) }
        #expect(result.outcome == .succeeded)
        #expect(result.attempts.count == 1)
        #expect(result.attempts.first?.timedOut == false)
        #expect(result.attempts.first?.termination == .exited(0))
        #expect(result.attempts.first?.stdoutTail == "started\n")
        #expect(processExists(grandchild), "the grandchild still held the output when the runner returned")
    }

    @Test func aMissingInterpreterIsAnExecutionFailure() {
        let script = directory.script("noshell.sh", "#!/nonexistent/interpreter\n")
        let result = run(script)
        #expect(result.outcome == .failed)
        #expect(result.attempts.first?.spawnError?.contains("No such file") == true)
        #expect(result.error?.code == .preScriptExecutionFailed)
    }

    @Test func anInterruptStopsTheScriptAndIsNotRetried() throws {
        let pipe = try makePipe()
        try pipe.write.writeAll([1])
        let script = directory.script("long.sh", "#!/bin/sh\nexec sleep 30\n")
        let result = run(script, retries: 3, interrupt: pipe.read.rawValue)
        #expect(result.outcome == .interrupted)
        #expect(result.attempts.count == 1)
        #expect(result.attempts.first?.termination == .signalled(SIGTERM))
    }
}

@Suite("Output tail")
struct OutputTailTests {
    @Test func keepsTheLastBytesAndCountsAll() {
        var tail = OutputTail(capacity: 8)
        tail.append(Array("abc".utf8))
        #expect(tail.text == "abc" && !tail.truncated)
        tail.append(Array("defghij".utf8))
        #expect(String(decoding: tail.bytes, as: UTF8.self) == "cdefghij")
        #expect(tail.totalBytes == 10 && tail.truncated)
        tail.append(Array("0123456789".utf8))
        #expect(String(decoding: tail.bytes, as: UTF8.self) == "23456789")
    }

    @Test func truncatedTextStartsAtALine() {
        var tail = OutputTail(capacity: 10)
        tail.append(Array("first line\nsecond\n".utf8))
        #expect(tail.text == "second\n")
    }

    /// When the last 4 KiB held only the end of one long last line and its newline,
    /// the tail was empty and `ERROR: disk full` was lost. The last line's beginning is kept.
    @Test func aLongLastLineKeepsItsBeginningAndEnd() {
        let paths = (0..<600).map { "/data/file\($0)" }.joined(separator: " ")
        var tail = OutputTail()
        tail.append(Array("starting\nERROR: disk full: cannot write \(paths)\n".utf8))
        #expect(tail.text.hasPrefix("ERROR: disk full: cannot write /data/file0 "), "\(tail.text.prefix(100))")
        #expect(tail.text.contains(" … "))
        #expect(tail.text.hasSuffix("/data/file599\n"))
    }

    /// The same, written a few bytes at a time (as a pipe delivers it), with trailing blank lines.
    @Test(arguments: [1, 7, 100, 5000])
    func theLastLineSurvivesAnyChunking(chunk: Int) {
        let text = Array(("  early\n" + "ERROR: disk full " + String(repeating: "z", count: 6000) + "\n\n  \n").utf8)
        var tail = OutputTail()
        var index = 0
        while index < text.count {
            tail.append(text[index..<min(index + chunk, text.count)])
            index += chunk
        }
        #expect(tail.text.hasPrefix("ERROR: disk full zzz"), "\(tail.text.prefix(40))")
        #expect(tail.text.hasSuffix("zzz\n\n  \n"))
    }

    @Test func aHeadThatReachesTheWindowIsJoinedWithoutAGap() {
        var tail = OutputTail(capacity: 8)
        tail.append(Array("x\nABCDEFGHIJKL\n".utf8))
        #expect(tail.text == "ABCDEFGHIJKL\n")
    }
}
