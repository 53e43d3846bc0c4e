import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// Whole operations through the real binary: scripts, rollback, busy, bad input.
@Suite("Operations end to end", .serialized, .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct OperationTests {
    /// Scripts that log each phase, with the result they are told, to a file outside the frozen filesystem.
    func scripts(_ host: HostSandbox, preExit: Int = 0, postExit: Int = 0, preBody: String = "") -> (
        pre: String, post: String, log: String
    ) {
        let log = host.scratch.path + "/phases.log"
        let pre = host.script(
            "pre.sh",
            """
            #!/bin/sh
            echo "pre $*" >> \(log)
            \(preBody)
            exit \(preExit)
            """)
        let post = host.script(
            "post.sh",
            """
            #!/bin/sh
            echo "post $PLUGINHOST_RESULT $PLUGINHOST_CONSISTENCY" >> \(log)
            exit \(postExit)
            """)
        return (pre, post, log)
    }

    @Test func applicationConsistentRun() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let (pre, post, log) = scripts(host)
        let config = host.config(
            """
            {"pluginName": "ScriptRunner", "preScriptLocation": "\(pre)", "postScriptLocation": "\(post)",
             "preScriptParams": ["", ""], "postScriptParams": [], "timeoutInSeconds": 30, "continueBackupOnFailure": false}
            """)
        let snapshot = host.script("snap.sh", "#!/bin/sh\necho \"snapshot $PLUGINHOST_FROZEN_MOUNTS\" >> \(log)\n")
        let result = host.invoke(["run", "--config", config, "--mount", fs.mountPoint, "--json", "--", snapshot])
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        let report = try #require(result.report)
        #expect(report.result == .succeeded && report.consistency == .application && report.snapshotTaken)
        // No plugins: quiesce is skipped, so there is no resume.
        #expect(
            report.steps.map(\.name) == [
                "checks", "prepare", "pre-script", "flush", "quiesce", "freeze", "snapshot", "thaw", "post-script",
            ])
        #expect(host.scratch.read("phases.log") == "pre  \nsnapshot \(fs.mountPoint)\npost success application\n")
        // Kept as the last report once thawed.
        #expect(
            ReportStore(paths: StatePaths(runDirectory: host.runDirectory, stateDirectory: host.stateDirectory))
                .lastReport()?.operationID == report.operationID)
        // And readable as text.
        let status = host.invoke(["status"])
        #expect(status.stdout.contains("Idle") && status.stdout.contains(report.operationID))
    }

    @Test func failedPreScriptWithoutContinueFreezesNothingAndRunsThePostScript() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let (pre, post, _) = scripts(host, preExit: 1)
        let config = host.config(
            pre: pre, post: post, extra: "\"continueBackupOnFailure\": false, \"preScriptNoOfRetries\": 1")
        let result = host.invoke(["run", "--config", config, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(result.status == ExitStatus.failed.rawValue)
        let report = try #require(result.report)
        #expect(report.errors.map(\.code) == [.preScriptExecutionFailed])
        #expect(report.steps.map(\.name) == ["checks", "prepare", "pre-script", "post-script"])
        #expect(report.freeze == nil && report.snapshot == nil)
        #expect(report.scripts.first?.attempts.count == 2)
        #expect(host.scratch.read("phases.log") == "pre \npre \npost failure none\n")
    }

    @Test func failedPreScriptWithContinueTakesAFilesystemConsistentSnapshot() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let (pre, post, _) = scripts(host, preExit: 7)
        let config = host.config(pre: pre, post: post)
        let result = host.invoke(["run", "--config", config, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(result.status == ExitStatus.degraded.rawValue)
        let report = try #require(result.report)
        #expect(report.consistency == .filesystem && report.snapshotTaken)
        #expect(host.scratch.read("phases.log") == "pre \npost success filesystem\n")
    }

    @Test func preScriptTimeout() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let (pre, post, _) = scripts(host, preBody: "sleep 30")
        let config = host.config(
            """
            {"preScriptLocation": "\(pre)", "postScriptLocation": "\(post)", "timeoutInSeconds": 1, "continueBackupOnFailure": false}
            """)
        let result = host.invoke(["run", "--config", config, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        let report = try #require(result.report)
        #expect(report.errors.map(\.code) == [.preScriptTimeout])
        #expect(result.status == ExitStatus.failed.rawValue)
    }

    @Test func failedSnapshotIsThawedAndReported() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let (pre, post, _) = scripts(host)
        let config = host.config(pre: pre, post: post)
        let snapshot = host.script("snap.sh", "#!/bin/sh\necho disk full >&2\nexit 4\n")
        let result = host.invoke(["run", "--config", config, "--mount", fs.mountPoint, "--json", "--", snapshot])
        #expect(result.status == ExitStatus.failed.rawValue)
        let report = try #require(result.report)
        #expect(report.errors.map(\.code) == [.snapshotCommandFailed])
        #expect(report.snapshot?.stderrTail == "disk full\n")
        #expect(report.freeze?.mounts.first?.thaw == .thawed)
        #expect(host.scratch.read("phases.log") == "pre \npost failure none\n")
    }

    @Test func failedPostScriptFailsTheOperationOnlyWithoutContinue() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let (pre, post, _) = scripts(host, postExit: 1)
        let lenient = host.config(pre: pre, post: post)
        let first = host.invoke(["run", "--config", lenient, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(first.status == ExitStatus.degraded.rawValue)
        #expect(first.report?.result == .degraded)
        #expect(first.report?.errors.map(\.code) == [.postScriptExecutionFailed])

        let strict = host.config(pre: pre, post: post, extra: "\"continueBackupOnFailure\": false")
        let second = host.invoke(["run", "--config", strict, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(second.status == ExitStatus.failed.rawValue)
        #expect(second.report?.snapshotTaken == true)
    }

    @Test func sigtermDuringTheSnapshotRollsBack() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let (pre, post, _) = scripts(host)
        let config = host.config(pre: pre, post: post)
        let running = host.start([
            "run", "--config", config, "--mount", fs.mountPoint, "--json", "--", host.holdWhileFrozen(30),
        ])
        try #require(host.waitUntilFrozen() != nil)
        kill(running.pid, SIGTERM)
        let result = running.finish()
        #expect(result.status == ExitStatus.failed.rawValue)
        let report = try #require(result.report, "\(result.stderr)")
        #expect(report.errors.map(\.code) == [.operationInterrupted])
        #expect(report.steps.first { $0.name == "snapshot" }?.outcome == .interrupted)
        #expect(report.freeze?.mounts.first?.thaw == .thawed)
        #expect(host.scratch.read("phases.log") == "pre \npost failure none\n")
        #expect(host.journal == nil)
    }

    @Test func sigintDuringThePreScriptStopsItAndRunsThePostScript() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let (pre, post, log) = scripts(host, preBody: "echo started >> \(host.scratch.path)/started; sleep 30")
        let config = host.config(pre: pre, post: post)
        let running = host.start(["run", "--config", config, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        for _ in 0..<2000 where !host.scratch.exists("started") { usleep(5_000) }
        kill(running.pid, SIGINT)
        let result = running.finish()
        #expect(result.status == ExitStatus.failed.rawValue)
        let report = try #require(result.report)
        #expect(report.steps.map(\.name) == ["checks", "prepare", "pre-script", "post-script"])
        #expect(report.freeze == nil)
        #expect(host.scratch.read(log) == "pre \npost failure none\n")
    }

    @Test func twoOperationsAtOnceTheSecondIsBusy() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let first = host.start(["run", "--mount", fs.mountPoint, "--json", "--", host.holdWhileFrozen(2)])
        try #require(host.waitUntilFrozen() != nil)
        let second = host.invoke(["run", "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(second.status == ExitStatus.busy.rawValue)
        #expect(second.report?.errors.first?.code == .operationBusy)
        #expect(second.report?.errors.first?.message.contains("pid \(first.pid)") == true)
        #expect(first.finish().status == ExitStatus.degraded.rawValue)
        #expect(
            host.invoke(["run", "--mount", fs.mountPoint, "--", "/bin/true"]).status == ExitStatus.degraded.rawValue)
    }

    @Test func anUnsafeConfigRunsNoScriptButStillTakesTheSnapshot() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let (pre, post, _) = scripts(host)
        let config = host.config(pre: pre, post: post)
        chmod(config, 0o644)
        let result = host.invoke(["run", "--config", config, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(result.status == ExitStatus.degraded.rawValue)
        let report = try #require(result.report)
        #expect(report.errors.map(\.code) == [.incorrectJSONConfigFile])
        #expect(report.consistency == .filesystem)
        #expect(!host.scratch.exists("phases.log"))
    }

    @Test func scriptProblemsAreReportedWithTheirCodes() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let (pre, post, _) = scripts(host)
        chmod(pre, 0o755)
        chown(post, 65534, 65534)
        let config = host.config(pre: pre, post: post)
        let check = host.invoke(["check", "--json", "--config", config, "--mount", fs.mountPoint])
        #expect(check.status == ExitStatus.invalid.rawValue)
        #expect(check.stdout.contains("InsufficientPermissionforPre-Script"))
        #expect(check.stdout.contains("InsufficientPermissionforPost-Script"))

        let missing = host.config(pre: host.scratch.path + "/nope.sh", post: host.scratch.path + "/nope2.sh")
        let second = host.invoke(["check", "--config", missing, "--mount", fs.mountPoint])
        #expect(second.stdout.contains("Pre-ScriptNotFound") && second.stdout.contains("Post-ScriptNotFound"))
        #expect(second.stdout.contains("2 problems"))
    }

    @Test func badCommandLinesAreInvalid() throws {
        let host = HostSandbox()
        #expect(
            host.invoke(["run", "--mount", host.scratch.path, "--", "/bin/true"]).status == ExitStatus.invalid.rawValue)
        #expect(
            host.invoke(["run", "--json", "--mount", "/proc", "--", "/bin/true"]).report?.errors.first?.message
                .contains("not a freezable") == true)
        #expect(host.invoke(["run", "--", "true"]).status == ExitStatus.invalid.rawValue)
        #expect(host.invoke(["run"]).status == ExitStatus.invalid.rawValue)
        #expect(host.invoke(["run", "--max-frozen", "9999", "--", "/bin/true"]).status == ExitStatus.invalid.rawValue)
        #expect(host.invoke(["run", "--help"]).status == 0)
    }
}
