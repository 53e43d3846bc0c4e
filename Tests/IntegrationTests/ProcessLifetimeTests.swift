import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// Waits (polling every 10 ms, up to `seconds`) until `condition` holds; returns whether it did.
/// The bound is generous: the assertion is the outcome, not the time it took.
@discardableResult
func eventually(within seconds: Double = 30, _ condition: () -> Bool) -> Bool {
    let limit = Monotonic.now() + UInt64(seconds * 1e9)
    while !condition() {
        if Monotonic.now() >= limit { return false }
        usleep(10_000)
    }
    return true
}

/// A reader or client that goes away never stops an operation.
@Suite("Readers that go away", .serialized, .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct BrokenPipeTests {
    /// A pre-script that says it started, then waits (bounded) for the test's go.
    func waitingScript(_ host: HostSandbox, _ name: String, marker: String, waitFor go: String) -> String {
        let dir = host.scratch.path
        return host.script(
            name,
            """
            #!/bin/sh
            touch '\(dir)/\(marker)'
            i=0
            while [ ! -e '\(dir)/\(go)' ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
            """)
    }

    @Test func theFreezeClientKilledDuringThePreScriptStopsNothing() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let pre = waitingScript(host, "pre.sh", marker: "pre.started", waitFor: "go")
        let post = host.script(
            "post.sh", "#!/bin/sh\necho \"post $PLUGINHOST_RESULT\" >> '\(host.scratch.path)/post.log'\n")
        let client = host.start([
            "freeze", "--config", host.config(pre: pre, post: post), "--mount", fs.mountPoint,
            "--max-frozen", "60", "--json",
        ])
        #expect(eventually { host.scratch.exists("pre.started") })
        kill(client.pid, SIGKILL)
        _ = client.finish()
        sh("touch '\(host.scratch.path)/go'")

        // The session writes its notice into the dead client's pipe (EPIPE), and goes on: it
        // stays frozen until thawed, then resumes, runs the post-script and reports.
        #expect(
            eventually { host.invoke(["status"]).stdout.hasPrefix("Frozen:") }, "the session did not reach the freeze")
        let thaw = host.invoke(["thaw", "--json"])
        #expect(thaw.status == 0, "\(thaw.stdout) \(thaw.stderr)")
        let report = try #require(thaw.report)
        #expect(report.consistency == .application)
        #expect(
            report.warnings.contains {
                $0.contains("the freeze client was gone before the freeze notice could be written")
            })
        #expect(host.scratch.read("post.log") == "post success\n")
        #expect(eventually { access(host.runDirectory + "/session.sock", F_OK) != 0 }, "session.sock was left behind")
        #expect(
            ReportStore(paths: StatePaths(runDirectory: host.runDirectory, stateDirectory: host.stateDirectory))
                .lastReport()?.operationID
                == report.operationID)
    }

    @Test func aPipeClosedByItsReaderStopsNothing() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let dir = host.scratch.path
        // The pre-script ends only once nobody reads the host's output any more, so every
        // later line of it is written into a closed pipe.
        let pre = waitingScript(host, "pre.sh", marker: "pre.started", waitFor: "closed")
        let post = host.script("post.sh", "#!/bin/sh\ntouch '\(dir)/post.ran'\n")
        host.addPlugin(try fixturePlugin("GOOD", in: host.libraryDirectory), config: "{\"log\":\"\(dir)/calls.log\"}")
        let snapshot = host.script("snapshot.sh", "#!/bin/sh\nexit 0\n")
        // `pluginhost run -v … 2>&1 | head -1`; the reader closes the pipe after head's line.
        let pipeline = host.script(
            "pipeline.sh",
            """
            #!/bin/bash
            "$@" 2>&1 | { head -1 > '\(dir)/first.line'; exec 0<&-; touch '\(dir)/closed'; }
            exit ${PIPESTATUS[0]}
            """)
        let result = capture(
            pipeline,
            [
                pluginhostBinary, "run", "-v", "--config", host.config(pre: pre, post: post),
                "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json", "--", snapshot,
            ],
            environment: host.environment)
        #expect(result.termination == .exited(0), "\(result.stdout) \(result.stderr)")
        #expect(!host.scratch.read("first.line").isEmpty)
        #expect(host.scratch.exists("post.ran"))
        #expect(host.scratch.read("calls.log").contains("fixture resume"), "the plugin was not resumed")
        #expect(host.journal == nil, "the journal was left behind")
        let status = host.invoke(["status"]).stdout
        #expect(status.hasPrefix("Idle:"), "\(status)")
        let saved = ReportStore(paths: StatePaths(runDirectory: host.runDirectory, stateDirectory: host.stateDirectory))
            .lastReport()
        #expect(saved?.result == .succeeded)
        #expect(saved?.warnings.contains { $0.hasPrefix("log output failed") } == true, "\(saved?.warnings ?? [])")
    }
}

/// True when this machine gives pluginhost a writable cgroup v2 with cgroup.kill (Linux 5.14+).
let cgroupsWork: Bool = {
    guard isRoot, case .success(let own) = ProcessContainment.ownCgroup() else { return false }
    let probe = own + "/pluginhost-test-probe.\(getpid())"
    guard mkdir(probe, 0o755) == 0 else { return false }
    defer { rmdir(probe) }
    return access(probe + "/cgroup.kill", W_OK) == 0
}()

/// Everything an operation starts dies with its owner: the worker, the host,
/// a stopped script — whoever goes, what it started goes too, even what left its process group.
@Suite(
    "What an operation starts dies with its owner", .serialized,
    .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"),
    .enabled(if: cgroupsWork, "needs a writable cgroup v2 with cgroup.kill"))
struct ProcessLifetimeTests {
    /// Adds the shell plugin in hold mode: its command takes `lock` in a child (flock, holding
    /// it in a sleeping grandchild), notes its worker's pid and the locker's, and holds.
    /// `setsid`: the child leaves the command's process group (and session).
    func addLockingHold(_ host: HostSandbox, lock: String, setsid: Bool = false, name: String? = nil) throws {
        let dir = host.scratch.path
        let hold = host.script(
            "locking-hold.sh",
            """
            #!/bin/sh
            echo $PPID > '\(dir)/worker.pid'
            \(setsid ? "setsid " : "")flock -x '\(lock)' sh -c 'echo $$ > "\(dir)/locker.pid"; exec sleep 300' &
            i=0
            while [ ! -s '\(dir)/locker.pid' ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done
            echo READY
            cat > /dev/null
            """)
        let built = String(pluginhostBinary.dropLast("pluginhost".count)) + "libpluginhost-shell.so"
        let library = host.libraryDirectory + "/libpluginhost-shell.so"
        sh("install -m 0755 '\(built)' '\(library)'")
        let added = host.addPlugin(
            library, name: name, order: 10, timeout: 30, config: "{\"quiesce\": [\"\(hold)\"], \"hold\": true}")
        #expect(added.status == 0, "\(added.stdout) \(added.stderr)")
    }

    func pid(_ host: HostSandbox, _ name: String) -> Int32 { Int32(host.scratch.read(name).filter(\.isNumber)) ?? 0 }

    func lockIsFree(_ lock: String) -> Bool { sh("flock -n -x '\(lock)' true") == 0 }

    @Test func aCellKeepsWhatLeftItsProcessGroupUntilItIsKilled() throws {
        let scratch = Scratch("cell")
        let containment = ProcessContainment(name: "test-cell-\(getpid())")
        guard case .cgroup(let path) = containment.mechanism else {
            Issue.record("no cgroup: \(containment.mechanism)")
            return
        }
        let cell = containment.cell("probe")
        let child = try ChildProcess(
            spawning: Command(
                executable: "/bin/sh",
                arguments: ["-c", "setsid sleep 300 & echo $! > '\(scratch.path)/pid'"],
                environment: ["PATH": "/usr/bin:/bin"]),
            cell: cell)
        #expect(child.wait() == .exited(.exited(0)))
        let escaped = Int32(scratch.read("pid").filter(\.isNumber)) ?? 0
        #expect(cell.members == [escaped], "the setsid child left the cell")
        cell.kill(reason: "a test")
        #expect(eventually { !processExists(escaped) })
        #expect(containment.killed.map(\.pid) == [escaped])
        // (Its command line is whatever it was at that moment: sh, setsid or sleep.)
        #expect(
            containment.killed.first.map { $0.owner == "probe" && $0.reason == "a test" && !$0.command.isEmpty } == true
        )
        #expect(eventually { cell.members.isEmpty })
        cell.removeIfEmpty()
        containment.finish()
        #expect(access(path, F_OK) != 0, "the operation's cgroup was left behind")
    }

    /// The spawned program is in its cell when it starts (clone3 creates it there; with the
    /// fallbacks forced it wrote itself into cgroup.procs before exec), and a program that
    /// cannot be started into a cell fails with the errno of its exec, as anywhere else.
    @Test func aSpawnedProgramStartsInItsCellAndAFailedExecIsReported() throws {
        let scratch = Scratch("cell-start")
        let containment = ProcessContainment(name: "test-start-\(getpid())")
        defer { containment.finish() }
        guard case .cgroup(let path) = containment.mechanism else {
            Issue.record("no cgroup: \(containment.mechanism)")
            return
        }
        for attempt in 1...3 {
            let cell = containment.cell("attempt \(attempt)")
            let child = try ChildProcess(
                spawning: Command(
                    executable: "/bin/sh", arguments: ["-c", "cat /proc/$$/cgroup > '\(scratch.path)/cgroup'"],
                    environment: ["PATH": "/usr/bin:/bin"]),
                cell: cell)
            #expect(child.wait() == .exited(.exited(0)))
            let line = scratch.read("cgroup").split(separator: "\n").first { $0.hasPrefix("0::") } ?? ""
            let operation = "/" + (path.split(separator: "/").last ?? "") + "/"
            #expect(
                line.contains(operation) && line.hasSuffix("-attempt-\(attempt)"),
                "attempt \(attempt) ran in \(line), not in its cell under \(path)")
            #expect(containment.warnings.isEmpty, "\(containment.warnings)")
        }
        func startError(_ command: Command, _ label: String) -> Int32? {
            do {
                _ = try ChildProcess(spawning: command, cell: containment.cell(label))
                return nil
            } catch {
                return error.errno
            }
        }
        let missing = scratch.path + "/no-such-program"
        #expect(startError(Command(executable: missing), "missing") == ENOENT)
        #expect(startError(Command(executable: "/bin/true", workingDirectory: missing), "cwd") == ENOENT)
    }

    /// The plugin's name is long: its cell's name is longer than the warden's notes once held,
    /// and the report must still name the plugin as the owner.
    @Test func aKilledWorkerTakesItsHeldCommandsChildrenAndTheirLocksWithIt() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let dir = host.scratch.path
        let lock = dir + "/app.lock"
        let name = "shell-for-the-orders-replica"
        try addLockingHold(host, lock: lock, name: name)
        // While frozen, the snapshot command kills the worker and waits (bounded) for the lock:
        // the host is busy waiting for it, so only the warden can release it.
        let snapshot = host.script(
            "snapshot.sh",
            """
            #!/bin/sh
            kill -9 "$(cat '\(dir)/worker.pid')"
            i=0
            until flock -n -x '\(lock)' true; do
                sleep 0.01; i=$((i+1))
                [ $i -lt 3000 ] || exit 1
            done
            touch '\(dir)/released'
            """)
        let result = host.invoke([
            "run", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json", "--", snapshot,
        ])
        let report = try #require(result.report, "\(result.stdout) \(result.stderr)")
        #expect(host.scratch.exists("released"), "the lock stayed held after the worker was killed")
        #expect(!processExists(pid(host, "locker.pid")))
        #expect(report.processContainment?.hasPrefix("cgroup ") == true)
        #expect(
            report.killedProcesses.contains { $0.owner == "plugin \(name)" && $0.pid == pid(host, "locker.pid") },
            "\(report.killedProcesses)")
    }

    @Test func aKilledHostTakesTheHeldCommandsChildrenAndTheirLocksWithIt() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let lock = host.scratch.path + "/app.lock"
        // When the host dies, its worker may see the socket close and stop its command's process
        // group before its own parent-death signal lands (the host's descriptors close first):
        // a child that left the group shows that only the cgroup catches it, every time.
        try addLockingHold(host, lock: lock, setsid: true)
        let running = host.start([
            "run", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--max-frozen", "120",
            "--", host.holdWhileFrozen(300),
        ])
        _ = try #require(host.waitUntilFrozen())
        #expect(!lockIsFree(lock))
        let locker = pid(host, "locker.pid")
        #expect(processExists(locker))
        kill(running.pid, SIGKILL)
        _ = running.finish()
        #expect(eventually { !processExists(locker) }, "the held command's child outlived the host")
        #expect(eventually { lockIsFree(lock) }, "the lock stayed held after the host was killed")
    }

    @Test(arguments: ["pre-script", "snapshot command"])
    func aKilledHostTakesTheScriptsChildrenWithItEvenThoseThatCalledSetsid(_ who: String) throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let dir = host.scratch.path
        let spawner = host.script(
            "spawner.sh",
            """
            #!/bin/sh
            sleep 300 &
            echo $! > '\(dir)/child.pid'
            setsid sleep 300 &
            echo $! > '\(dir)/setsid.pid'
            touch '\(dir)/started'
            exec sleep 300
            """)
        let post = host.script("post.sh", "#!/bin/sh\n")
        let config = who == "pre-script" ? host.config(pre: spawner, post: post) : host.config(pre: post, post: post)
        let running = host.start([
            "run", "--config", config, "--mount", fs.mountPoint, "--max-frozen", "120",
            "--", who == "pre-script" ? "/bin/true" : spawner,
        ])
        #expect(eventually { host.scratch.exists("started") })
        let children = [pid(host, "child.pid"), pid(host, "setsid.pid")]
        #expect(children.allSatisfy(processExists))
        kill(running.pid, SIGKILL)
        _ = running.finish()
        for child in children {
            #expect(eventually { !processExists(child) }, "pid \(child) started by the \(who) outlived the host")
        }
    }

    @Test func aTimedOutScriptsSetsidChildIsKilledAndNamed() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let dir = host.scratch.path
        let pre = host.script(
            "pre.sh", "#!/bin/sh\nsetsid sleep 300 &\necho $! > '\(dir)/setsid.pid'\nexec sleep 300\n")
        let post = host.script("post.sh", "#!/bin/sh\n")
        let config = host.config(
            "{\"preScriptLocation\": \"\(pre)\", \"postScriptLocation\": \"\(post)\", \"timeoutInSeconds\": 1}")
        let result = host.invoke([
            "run", "--config", config,
            "--mount", fs.mountPoint, "--json", "--", "/bin/true",
        ])
        let report = try #require(result.report, "\(result.stdout) \(result.stderr)")
        #expect(report.errors.map(\.code) == [.preScriptTimeout])
        let escaped = pid(host, "setsid.pid")
        #expect(eventually { !processExists(escaped) }, "the setsid child of the timed-out pre-script survived")
        #expect(
            report.killedProcesses.contains {
                $0.pid == escaped && $0.owner == "pre-script attempt 1" && $0.reason == "timed out"
            },
            "\(report.killedProcesses)")
    }

    @Test func whatAFinishedScriptStartedIsLetGoAndNamed() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let dir = host.scratch.path
        let pre = host.script("pre.sh", "#!/bin/sh\n")
        // A post-script that starts a service the old way: it must survive the operation.
        let post = host.script(
            "post.sh", "#!/bin/sh\nsetsid sleep 300 < /dev/null > /dev/null 2>&1 &\necho $! > '\(dir)/daemon.pid'\n")
        let result = host.invoke([
            "run", "--config", host.config(pre: pre, post: post), "--mount", fs.mountPoint, "--json", "--", "/bin/true",
        ])
        let report = try #require(result.report, "\(result.stdout) \(result.stderr)")
        let daemon = pid(host, "daemon.pid")
        defer { kill(daemon, SIGKILL) }
        #expect(processExists(daemon))
        #expect(report.killedProcesses.isEmpty)
        #expect(
            report.warnings.contains { $0.hasPrefix("the post-script attempt 1 left pid \(daemon)") },
            "\(report.warnings)")
    }
}

/// Without cgroups (PLUGINHOST_CGROUPS=off stands in for a machine without them), the warden
/// kills the process groups of what the operation started when the host dies.
@Suite(
    "Process groups where there are no cgroups", .serialized,
    .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct ProcessGroupFallbackTests {
    @Test func aKilledHostTakesThePreScriptsGroupWithIt() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let dir = host.scratch.path
        let pre = host.script(
            "pre.sh", "#!/bin/sh\nsleep 300 &\necho $! > '\(dir)/child.pid'\ntouch '\(dir)/started'\nexec sleep 300\n")
        let post = host.script("post.sh", "#!/bin/sh\n")
        let running = RunningHost(
            try ChildProcess(
                spawning: Command(
                    executable: pluginhostBinary,
                    arguments: [
                        "run", "--config", host.config(pre: pre, post: post), "--mount", fs.mountPoint, "--",
                        "/bin/true",
                    ],
                    environment: host.environment.merging(["PLUGINHOST_CGROUPS": "off"]) { $1 })))
        #expect(eventually { host.scratch.exists("started") })
        let child = Int32(host.scratch.read("child.pid").filter(\.isNumber)) ?? 0
        #expect(processExists(child))
        kill(running.pid, SIGKILL)
        _ = running.finish()
        // The script itself dies by its parent-death signal; its child only by the group kill.
        #expect(eventually { !processExists(child) }, "the pre-script's child outlived the host")
    }

    @Test func theReportSaysProcessGroups() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let running = RunningHost(
            try ChildProcess(
                spawning: Command(
                    executable: pluginhostBinary,
                    arguments: ["run", "--mount", fs.mountPoint, "--json", "--", "/bin/true"],
                    environment: host.environment.merging(["PLUGINHOST_CGROUPS": "off"]) { $1 }),
                outputCapacity: 16 << 20))
        let report = try #require(running.finish().report)
        #expect(report.processContainment == "process groups (cgroups turned off)")
    }
}

/// A signal never waits for a plugin call to return.
@Suite("Signals during a plugin call", .serialized, .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct PluginCallSignalTests {
    @Test(arguments: [SIGTERM, SIGINT])
    func aSignalDuringAQuiesceKillsTheWorkerAndRollsBack(_ signal: Int32) throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let dir = host.scratch.path
        let pre = host.script("pre.sh", "#!/bin/sh\n")
        let post = host.script("post.sh", "#!/bin/sh\necho \"post $PLUGINHOST_RESULT\" >> '\(dir)/post.log'\n")
        // The quiesce sleeps 60 s, within its 120 s timeout: only the signal can cut it short.
        host.addPlugin(
            try fixturePlugin("GOOD", in: host.libraryDirectory), timeout: 120,
            config: "{\"log\":\"\(dir)/calls.log\",\"sleep_ms\":60000}")
        let running = host.start([
            "run", "--config", host.config(pre: pre, post: post), "--plugins-dir", host.pluginsDirectory,
            "--mount", fs.mountPoint, "--json", "--", "/bin/true",
        ])
        #expect(eventually { host.scratch.read("calls.log").contains("fixture quiesce-start") })
        kill(running.pid, signal)
        let result = running.finish()
        #expect(result.status == ExitStatus.failed.rawValue, "\(result.stdout) \(result.stderr)")
        let report = try #require(result.report)
        #expect(report.errors.map(\.code) == [.operationInterrupted])
        #expect(report.errors.first?.message.hasPrefix("\(signalName(signal)) received during the quiesce") == true)
        let calls = report.plugins.first?.calls ?? []
        #expect(calls.first { $0.function == .quiesce }?.outcome == .interrupted)
        #expect(calls.first { $0.function == .resume }?.outcome == .skipped)
        // The call never returned: the worker died in the middle of it.
        #expect(!host.scratch.read("calls.log").contains("quiesce-end"))
        #expect(
            report.steps.map(\.name) == [
                "checks", "prepare", "pre-script", "flush", "quiesce", "resume", "post-script",
            ])
        #expect(host.scratch.read("post.log") == "post failure\n")
        #expect(host.journal == nil)
        if cgroupsWork {
            #expect(
                report.killedProcesses.contains { $0.owner == "plugin fixture" && $0.reason == "interrupted" },
                "\(report.killedProcesses)")
        }
    }
}
