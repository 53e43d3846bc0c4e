import Glibc
import PluginHost
import PluginHostSupport
import PluginHostWire
import Testing

/// The freeze engine's measured failures, each as it was measured, against the real binary on real loop
/// filesystems: dependency order, a deadline that holds when FIFREEZE never returns, recovery
/// that thaws exactly what we froze, an honest outcome, no busy loop, the host as the deadline's
/// second enforcer, a status that changes at the thaw, a guard the OOM killer leaves alone.
/// Each test has its own loop filesystems and run directories, so the suite runs concurrently.
@Suite(
    "Freeze engine: order, deadline, journal, outcome", .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct FreezeEngineTests {
    // MARK: 1. Dependency order

    /// Failure 1: `lower` mounted deeper than `upper`, whose image file lies in `lower`. Frozen
    /// children-first by path, `lower` went first and upper's FIFREEZE never returned (23 min).
    @Test func aFilesystemFreezesBeforeTheOneHoldingItsStorage() throws {
        let host = HostSandbox("order")
        let stack = try StackedFilesystems(in: host.scratch)
        stack.dirtyUpper()
        let check = host.invoke([
            "check", "--json", "--mount", stack.lower.mountPoint, "--mount", stack.upper.mountPoint,
        ])
        let upperAt = offset(of: "\"mountPoint\" : \"\(stack.upper.mountPoint)\"", in: check.stdout)
        let lowerAt = offset(of: "\"mountPoint\" : \"\(stack.lower.mountPoint)\"", in: check.stdout)
        #expect(upperAt != nil && lowerAt != nil && upperAt! < lowerAt!, "\(check.stdout)")

        let result = host.start([
            "run", "--mount", stack.lower.mountPoint, "--mount", stack.upper.mountPoint,
            "--max-frozen", "20", "--json", "--", "/bin/true",
        ]).finish(timeoutSeconds: 90)
        #expect(result.status == ExitStatus.degraded.rawValue, "\(result.stdout)\n\(result.stderr)")  // no scripts: filesystem-consistent
        let mounts = try #require(result.report?.freeze?.mounts)
        #expect(mounts.map(\.mountPoint) == [stack.upper.mountPoint, stack.lower.mountPoint])
        #expect(mounts.map(\.wave) == [0, 1])
        #expect(mounts.allSatisfy { $0.freeze == .frozen && $0.thaw == .thawed })
        // The wave of `upper` was over before `lower`'s began, and thawed in reverse.
        if let upperEnd = mounts[0].freezeStartMs.flatMap({ start in mounts[0].freezeMs.map { start + $0 } }),
            let lowerStart = mounts[1].freezeStartMs, let lowerThaw = mounts[1].thawStartMs,
            let upperThaw = mounts[0].thawStartMs
        {
            #expect(upperEnd <= lowerStart)
            #expect(lowerThaw <= upperThaw)
        } else {
            Issue.record("times missing: \(mounts)")
        }
        #expect(host.journal == nil)
    }

    /// Failure 1, the deadline: a FIFREEZE that never returns (the filesystem holding its
    /// storage was frozen by someone else between the flush and the freeze) must not keep the
    /// operation past its deadline; what this operation froze meanwhile — concurrently, in the
    /// same wave — is thawed at the deadline; someone else's freeze is left alone; the stuck
    /// freeze is undone by the guard as soon as it returns.
    @Test func theDeadlineHoldsWhenAFreezeNeverReturns() throws {
        let host = HostSandbox("stuck")
        let stack = try StackedFilesystems(in: host.scratch)
        let other = try LoopFilesystem(in: host.scratch, name: "other")
        try addFreezingPlugin(host, stack)
        let result = host.start([
            "run", "--plugins-dir", host.pluginsDirectory, "--mount", stack.upper.mountPoint,
            "--mount", other.mountPoint, "--max-frozen", "3", "--json", "--", "/bin/true",
        ])
        .finish(timeoutSeconds: 60)  // it hung for 23 minutes
        #expect(result.status == ExitStatus.mayBeFrozen.rawValue, "\(result.stdout)\n\(result.stderr)")
        let report = try #require(result.report, "\(result.stderr)")
        #expect(report.errors.map(\.code).contains(.freezeDeadlineExpired), "\(report.errors)")
        let mounts = Dictionary(uniqueKeysWithValues: (report.freeze?.mounts ?? []).map { ($0.mountPoint, $0) })
        #expect(mounts[stack.upper.mountPoint]?.freeze == .stuck && mounts[stack.upper.mountPoint]?.thaw == .pending)
        // Frozen while upper's FIFREEZE was in flight: the wave froze concurrently. Thawed at the deadline.
        #expect(mounts[other.mountPoint]?.freeze == .frozen && mounts[other.mountPoint]?.thaw == .thawed)
        #expect(try Writer(file: other.mountPoint + "/probe").finishes(within: 10))
        // Someone else's freeze of lower is theirs: still frozen.
        let lowerWriter = try Writer(file: stack.lower.mountPoint + "/probe")
        #expect(isFrozen(probing: stack.lower.mountPoint), "lower was thawed by pluginhost, but someone else froze it")

        // They thaw it: upper's FIFREEZE returns, and the guard, still waiting for it, thaws it.
        sh("fsfreeze -u '\(stack.lower.mountPoint)'")
        #expect(lowerWriter.finishes(within: 30))
        #expect(try Writer(file: stack.upper.mountPoint + "/probe").finishes(within: 30), "upper stayed frozen")
        let journal = try #require(host.waitForJournal { !$0.mayBeFrozenByUs })
        #expect(journal.mounts.map(\.state) == [.thawed, .thawed])
        for _ in 0..<3000 where OperationLock.currentHolder(paths: host.paths) != nil { usleep(10_000) }
        let recover = host.invoke(["recover"])
        #expect(recover.status == 0 && recover.stdout.contains("thawed-by-guard"), "\(recover.stdout)")
    }

    /// Failure 1, SIGTERM: the host waited for its stuck guard and ignored SIGTERM.
    @Test func sigtermIsHonouredWhileAFreezeNeverReturns() throws {
        let host = HostSandbox("term")
        let stack = try StackedFilesystems(in: host.scratch)
        let other = try LoopFilesystem(in: host.scratch, name: "other")
        try addFreezingPlugin(host, stack)
        let running = host.start([
            "run", "--plugins-dir", host.pluginsDirectory, "--mount", stack.upper.mountPoint,
            "--mount", other.mountPoint, "--max-frozen", "100", "--json", "--", "/bin/true",
        ])
        let stuck = host.waitForJournal {
            $0.states([stack.upper.mountPoint, other.mountPoint]) == [.freezing, .frozen]
        }
        #expect(stuck != nil, "upper's FIFREEZE was expected to hang: \(String(describing: host.journal))")
        kill(running.pid, SIGTERM)
        let result = running.finish(timeoutSeconds: 30)  // not 100 s, not until someone thaws lower
        let report = try #require(result.report, "\(result.stdout)\n\(result.stderr)")
        #expect(report.errors.map(\.code).contains(.operationInterrupted), "\(report.errors)")
        #expect(report.freeze?.mounts.first { $0.mountPoint == other.mountPoint }?.thaw == .thawed)
        #expect(try Writer(file: other.mountPoint + "/probe").finishes(within: 10))
        sh("fsfreeze -u '\(stack.lower.mountPoint)'")
        #expect(try Writer(file: stack.upper.mountPoint + "/probe").finishes(within: 30), "upper stayed frozen")
    }

    /// The same dependency under an agent's hook: the host's own syncfs of `upper`, before the
    /// agent freezes, never returned while `lower` was frozen, and the hook never answered. The
    /// flush now runs in a child: at the limit the hook fails (the agent must not start a
    /// FIFREEZE that cannot return either), and the post-script is told.
    @Test func aHookFlushStuckBehindAFrozenFilesystemFailsInsteadOfHanging() throws {
        let host = HostSandbox("hook-flush")
        let stack = try StackedFilesystems(in: host.scratch)
        stack.dirtyUpper()
        let log = host.scratch.path + "/phases.log"
        let config = host.config(
            pre: host.script("pre.sh", "#!/bin/sh\necho pre >> '\(log)'\n"),
            post: host.script("post.sh", "#!/bin/sh\necho \"post $PLUGINHOST_RESULT\" >> '\(log)'\n"))
        // Registered before the freeze: a failed set-up or a failure below still thaws `lower`.
        defer { sh("fsfreeze -u '\(stack.lower.mountPoint)' 2>/dev/null") }
        try #require(sh("fsfreeze -f '\(stack.lower.mountPoint)'") == 0)
        let freeze = host.start([
            "hook", "vmware", "freeze", "--config", config, "--mount", stack.upper.mountPoint, "--max-frozen", "2",
            "--json",
        ])
        .finish(timeoutSeconds: 60)
        sh("fsfreeze -u '\(stack.lower.mountPoint)'")
        #expect(freeze.status == ExitStatus.failed.rawValue, "\(freeze.stdout)\n\(freeze.stderr)")
        let report = try #require(freeze.report, "\(freeze.stdout)\n\(freeze.stderr)")
        #expect(
            report.errors.contains { $0.code == .freezeFailed && $0.message.contains("did not finish within 2 s") },
            "\(report.errors)")
        #expect(host.scratch.read("phases.log") == "pre\npost failure\n")
        #expect(host.waitUntilIdle())
    }

    // MARK: 3. Thaw exactly what we froze

    /// Failure 3a: the host is killed in the post-script (the journal said `frozen` then); an
    /// admin freezes the filesystem; recovery must not thaw the admin's freeze.
    @Test func recoveryLeavesAFreezeMadeAfterOurThaw() throws {
        let host = HostSandbox("stale")
        let fs = try LoopFilesystem(in: host.scratch)
        let marker = host.scratch.path + "/post.marker"
        let pre = host.script("pre.sh", "#!/bin/sh\n")
        let post = host.script("post.sh", "#!/bin/sh\ntouch '\(marker)'\nexec sleep 60\n")
        let running = host.start([
            "run", "--config", host.config(pre: pre, post: post), "--mount", fs.mountPoint, "--json", "--", "/bin/true",
        ])
        for _ in 0..<3000 where !host.scratch.exists("post.marker") { usleep(10_000) }
        // Failure 7: during the post-script nothing is frozen, and status says so.
        let during = host.invoke(["status", "--json"])
        let status = try #require(try? JSONParser.parse(during.stdout), "\(during.stdout)")
        #expect(status["state"] == .string("running") && status["frozenMounts"] == .array([]), "\(during.stdout)")
        #expect(host.journal?.mounts.map(\.state) == [.thawed])
        kill(running.pid, SIGKILL)
        _ = running.finish()
        #expect(host.invoke(["status"]).stdout.hasPrefix("Interrupted: operation"))

        #expect(sh("fsfreeze -f '\(fs.mountPoint)'") == 0)  // the admin's own freeze
        let recover = host.invoke(["recover", "--json"])
        #expect(recover.status == 0, "\(recover.stdout) \(recover.stderr)")
        #expect(recover.stdout.contains("\"state\" : \"thawed-by-guard\""), "\(recover.stdout)")
        #expect(isFrozen(probing: fs.mountPoint), "recovery thawed the admin's freeze")
        sh("fsfreeze -u '\(fs.mountPoint)'")
    }

    /// Failure 3b: `x` was frozen by the admin before the run; host and guard die while frozen;
    /// recovery thaws `y`, which we froze, and leaves `x`.
    @Test func recoveryLeavesAFreezeMadeBeforeUs() throws {
        let host = HostSandbox("before")
        let x = try LoopFilesystem(in: host.scratch, name: "x")
        let y = try LoopFilesystem(in: host.scratch, name: "y")
        #expect(sh("fsfreeze -f '\(x.mountPoint)'") == 0)
        let running = host.start([
            "run", "--mount", x.mountPoint, "--mount", y.mountPoint, "--", host.holdWhileFrozen(60),
        ])
        let journal = try #require(host.waitUntilFrozen())
        kill(running.pid, SIGSTOP)
        kill(journal.guardPID, SIGKILL)
        usleep(100_000)
        kill(running.pid, SIGKILL)
        _ = running.finish()
        #expect(
            host.journal?.mounts.map(\.state) == [.alreadyFrozen, .frozen]
                || host.journal?.mounts.map(\.state) == [.frozen, .alreadyFrozen])

        let recover = host.invoke(["recover", "--json"])
        #expect(recover.status == 0, "\(recover.stdout) \(recover.stderr)")
        #expect(
            recover.stdout.contains("\"state\" : \"not-ours\"") && recover.stdout.contains("\"state\" : \"thawed\""),
            "\(recover.stdout)")
        #expect(try Writer(file: y.mountPoint + "/probe").finishes(within: 10))
        #expect(isFrozen(probing: x.mountPoint), "recovery thawed the admin's freeze")
        sh("fsfreeze -u '\(x.mountPoint)'")
    }

    /// Failure 3c: the guard is killed while a FIFREEZE is in flight; the host used to thaw
    /// every target (a never-attempted one included). Now it thaws what the journal says the
    /// guard froze, leaves the never-attempted `lower` (the admin's freeze) alone, and leaves
    /// the in-flight one to `recover` once its FIFREEZE has returned.
    @Test func theGuardKilledMidFreezeThawsOnlyWhatItFroze() throws {
        let host = HostSandbox("midfreeze")
        let stack = try StackedFilesystems(in: host.scratch)
        let other = try LoopFilesystem(in: host.scratch, name: "other")
        try addFreezingPlugin(host, stack)
        let running = host.start([
            "run", "--plugins-dir", host.pluginsDirectory, "--mount", stack.upper.mountPoint,
            "--mount", other.mountPoint, "--mount", stack.lower.mountPoint, "--max-frozen", "100", "--json", "--",
            "/bin/true",
        ])
        let order = [stack.upper.mountPoint, other.mountPoint, stack.lower.mountPoint]
        let journal = try #require(
            host.waitForJournal { $0.states(order) == [.freezing, .frozen, .pending] },
            "\(String(describing: host.journal))")
        kill(journal.guardPID, SIGKILL)
        let result = running.finish(timeoutSeconds: 30)
        #expect(result.status == ExitStatus.mayBeFrozen.rawValue, "\(result.stdout)\n\(result.stderr)")
        let report = try #require(result.report)
        let mounts = Dictionary(uniqueKeysWithValues: (report.freeze?.mounts ?? []).map { ($0.mountPoint, $0) })
        #expect(order.map { mounts[$0]?.freeze } == [.stuck, .frozen, .notAttempted])
        #expect(order.map { mounts[$0]?.thaw } == [.pending, .thawed, .notNeeded])
        #expect(try Writer(file: other.mountPoint + "/probe").finishes(within: 10))
        let lowerWriter = try Writer(file: stack.lower.mountPoint + "/probe")
        #expect(isFrozen(probing: stack.lower.mountPoint), "the host thawed lower, which it never froze")

        // The admin thaws lower: upper's FIFREEZE completes in the dead guard; nobody thaws it but recover.
        sh("fsfreeze -u '\(stack.lower.mountPoint)'")
        #expect(lowerWriter.finishes(within: 30))
        // The dead guard's last thread ends once its FIFREEZE returns; then the lock is free.
        for _ in 0..<3000 where OperationLock.currentHolder(paths: host.paths) != nil { usleep(10_000) }
        let recover = host.invoke(["recover", "--json"])
        #expect(recover.status == 0, "\(recover.stdout) \(recover.stderr)")
        #expect(
            recover.stdout.contains("\"state\" : \"never-frozen\"")
                && recover.stdout.contains("\"state\" : \"thawed-by-host\""), "\(recover.stdout)")
        #expect(
            try Writer(file: stack.upper.mountPoint + "/probe").finishes(within: 10),
            "upper stayed frozen after recover")
    }

    /// A journal that cannot be read is kept and reported, never deleted, never acted on.
    @Test func anUnreadableJournalIsKeptAndReported() throws {
        let host = HostSandbox("unreadable")
        let fs = try LoopFilesystem(in: host.scratch)
        sh("mkdir -p -m 0700 '\(host.runDirectory)'")
        host.scratch.write(host.paths.journalFile, "PHFREEZE garbage")
        let first = host.invoke(["run", "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(first.status == ExitStatus.mayBeFrozen.rawValue, "\(first.stdout)")
        #expect(first.report?.errors.first?.message.contains("cannot be read") == true)
        let recover = host.invoke(["recover"])
        #expect(
            recover.status == ExitStatus.mayBeFrozen.rawValue
                && recover.stdout.contains("Kept: \(host.paths.journalFile).unreadable-"), "\(recover.stdout)")
        #expect(host.invoke(["status"]).stdout.contains("Kept: "))
        // The next run is not blocked by it.
        #expect(
            host.invoke(["run", "--mount", fs.mountPoint, "--", "/bin/true"]).status == ExitStatus.degraded.rawValue)
    }

    // MARK: 4. An honest outcome

    /// Failure 4: the host was stopped while the guard thawed at its deadline, and the snapshot
    /// command ended after that thaw: the report said success. The snapshot command here stops
    /// its host, outlives the 3 s deadline, and has the host continued after it has ended.
    @Test func aSnapshotThatOutlivesTheFreezeIsNotASuccess() throws {
        let host = HostSandbox("honest")
        let fs = try LoopFilesystem(in: host.scratch)
        let snapshot = host.script(
            "stop-host.sh",
            """
            #!/bin/sh
            host=$PPID
            kill -STOP "$host"
            sleep 4
            (sleep 0.5; kill -CONT "$host") &
            exit 0
            """)
        let result = host.start(["run", "--mount", fs.mountPoint, "--max-frozen", "3", "--json", "--", snapshot])
            .finish(timeoutSeconds: 60)
        #expect(result.status == ExitStatus.failed.rawValue, "\(result.stdout)\n\(result.stderr)")
        let report = try #require(result.report)
        #expect(report.errors.map(\.code).contains(.freezeDeadlineExpired), "\(report.errors)")
        #expect(!report.snapshotTaken && report.result == .failed && report.consistency == .none)
        #expect(report.freeze?.thawCause == .deadline)
        // The window is the real one: the guard's, shorter than the snapshot command's run.
        #expect((report.freeze?.windowMs ?? .infinity) < (report.snapshot?.durationMs ?? 0))
    }

    // MARK: 5. A failed freeze fails at once, without a busy loop

    /// Failure 5: FIFREEZE of an xfs shut down by the pre-script fails with EIO; the host spun
    /// at 100% CPU on the guard's closed socket and ran the snapshot past --max-frozen.
    @Test func aFailedFreezeDoesNotSpin() throws {
        let host = HostSandbox("eio")
        let fs = try LoopFilesystem(in: host.scratch, type: "xfs")
        let pre = host.script("pre.sh", "#!/bin/sh\nexec xfs_io -x -c shutdown '\(fs.mountPoint)'\n")
        let post = host.script("post.sh", "#!/bin/sh\n")
        let config = host.config(pre: pre, post: post)
        // The host's CPU time, its guard's included, from the wait status of a wrapper.
        let measured = host.scratch.path + "/cpu"
        let wrapper = host.scratch.write(
            "measure.py",
            """
            import resource, subprocess, sys
            subprocess.run(sys.argv[2:])
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            open(sys.argv[1], "w").write(str(usage.ru_utime + usage.ru_stime))
            """, mode: 0o644)
        let result = capture(
            "/usr/bin/python3",
            [
                wrapper, measured, pluginhostBinary, "run", "--config", config, "--mount", fs.mountPoint,
                "--max-frozen", "2", "--json", "--", "/bin/sleep", "6",
            ],
            environment: host.environment)
        let report = try #require(ReportStore.decode(Array(result.stdout.utf8)), "\(result.stdout) \(result.stderr)")
        // EIO from FIFREEZE — or already from opening the mount point, when the guard (started in
        // parallel with the pre-script) gets to it after the shutdown.
        #expect(
            report.errors.first?.code == .freezeFailed
                && report.errors.first?.message.contains("Input/output error") == true, "\(report.errors)")
        #expect(report.freeze == nil || report.freeze?.mounts.first?.freeze == .failed)
        // Without a freeze the command still gets the deadline as its limit, not its 6 s.
        #expect(report.snapshot?.termination == .signalled(SIGTERM))
        let cpu = Double(host.scratch.read(measured)) ?? .infinity
        #expect(cpu < 1.0, "the host used \(cpu) s of CPU in a 2 s wait")

        // Two-phase: `freeze` must not claim frozen, and the session must not spin.
        let freeze = host.invoke(["freeze", "--config", config, "--mount", fs.mountPoint, "--json"])
        let notice = try #require(try? JSONParser.parse(freeze.stdout), "\(freeze.stdout) \(freeze.stderr)")
        #expect(notice["state"] == .string("quiesced"), "\(freeze.stdout)")
        #expect(freeze.stdout.contains("FreezeFailed"))
        let session = try #require(OperationLock.currentHolder(paths: host.paths))
        let before = cpuSeconds(of: session.pid)
        usleep(1_000_000)
        let spent = cpuSeconds(of: session.pid) - before
        #expect(spent < 0.5, "the session used \(spent) s of CPU in 1 s")
        #expect(host.invoke(["thaw", "--operation", session.operationID]).status != 0)
    }

    // MARK: 6. The host enforces the deadline too

    /// Failure 6: with the guard stopped, the filesystem stayed frozen for the whole snapshot plus
    /// the host's 30 s wait.
    @Test func aStoppedGuardDoesNotStopTheDeadline() throws {
        let host = HostSandbox("stopped")
        let fs = try LoopFilesystem(in: host.scratch)
        let running = host.start([
            "run", "--mount", fs.mountPoint, "--max-frozen", "3", "--json", "--", host.holdWhileFrozen(20),
        ])
        let journal = try #require(host.waitUntilFrozen())
        kill(journal.guardPID, SIGSTOP)
        let writer = try Writer(file: fs.mountPoint + "/probe")
        #expect(writer.finishes(within: 15), "still frozen long after the deadline")
        let result = running.finish(timeoutSeconds: 60)
        #expect(result.status == ExitStatus.failed.rawValue, "\(result.stdout)\n\(result.stderr)")
        let report = try #require(result.report)
        #expect(report.errors.map(\.code).contains(.freezeDeadlineExpired), "\(report.errors)")
        #expect(report.freeze?.thawCause == .guardLost)
        #expect(report.freeze?.mounts.first?.thaw == .thawed)
        #expect((report.freeze?.windowMs ?? .infinity) < 20_000)
        #expect(!processExists(journal.guardPID))
        #expect(host.journal == nil)
    }

    /// The same in two-phase: the session enforces the deadline, resumes and runs the post-script.
    @Test func aStoppedGuardDoesNotStopTheSessionsDeadline() throws {
        let host = HostSandbox("stopped2")
        let fs = try LoopFilesystem(in: host.scratch)
        let freeze = host.invoke(["freeze", "--mount", fs.mountPoint, "--max-frozen", "3", "--json"])
        guard case .string(let id)? = (try? JSONParser.parse(freeze.stdout))?["operationID"] else {
            Issue.record("no id: \(freeze.stdout) \(freeze.stderr)")
            return
        }
        let journal = try #require(host.journal)
        kill(journal.guardPID, SIGSTOP)
        #expect(try Writer(file: fs.mountPoint + "/probe").finishes(within: 15), "still frozen long after the deadline")
        for _ in 0..<3000 where OperationLock.currentHolder(paths: host.paths) != nil { usleep(10_000) }
        let thaw = host.invoke(["thaw", "--operation", id, "--json"])
        #expect(thaw.status == ExitStatus.failed.rawValue)
        #expect(thaw.report?.errors.map(\.code).contains(.freezeDeadlineExpired) == true)
        #expect(thaw.report?.freeze?.thawCause == .guardLost)
    }

    // MARK: 7. A thaw that takes long is waited for

    /// Flaky kill-matrix case: on a loaded machine a FITHAW took longer than the guard's 1.5 s
    /// wait; the guard said `thawed` with the journal still at `thawing`, and the report said
    /// the filesystem might still be frozen (exit 5) although its thaw was only slow. Made
    /// slow here for as long as the test likes: the snapshot command freezes `lower`, which
    /// holds upper's image, so upper's FITHAW (its superblock write) waits until `lower` is
    /// thawed — by the test, once the guard's and the host's old waits are over.
    @Test func aSlowThawOnCommandIsWaitedFor() throws {
        try slowThaw(deadline: 20, sleepAfterFreeze: 0) { result, report in
            #expect(result.status == ExitStatus.degraded.rawValue, "\(result.stdout)\n\(result.stderr)")  // no scripts: filesystem-consistent
            #expect(report.freeze?.thawCause == .command)
        }
    }

    /// The same at the guard's deadline: the host, past its own, waits for the guard's thaw
    /// under way instead of killing the guard in it (the thread then died before recording it).
    @Test func aSlowThawAtTheDeadlineIsWaitedFor() throws {
        try slowThaw(deadline: 2, sleepAfterFreeze: 30) { result, report in
            #expect(result.status == ExitStatus.failed.rawValue, "\(result.stdout)\n\(result.stderr)")
            #expect(report.errors.map(\.code).contains(.freezeDeadlineExpired), "\(report.errors)")
            #expect(report.freeze?.thawCause == .deadline)
        }
    }

    func slowThaw(deadline: Int, sleepAfterFreeze: Int, _ checks: (Invocation, OperationReport) throws -> Void) throws {
        let host = HostSandbox("slowthaw")
        let stack = try StackedFilesystems(in: host.scratch)
        let snapshot = host.script(
            "freeze-lower.sh",
            """
            #!/bin/sh
            /usr/sbin/fsfreeze -f '\(stack.lower.mountPoint)' || exit 1
            exec sleep \(sleepAfterFreeze)
            """)
        let running = host.start([
            "run", "--mount", stack.upper.mountPoint, "--max-frozen", "\(deadline)", "--json", "--", snapshot,
        ])
        let thawing = host.waitForJournal { $0.states([stack.upper.mountPoint]) == [.thawing] }
        #expect(thawing != nil, "upper's FITHAW was expected to wait for lower: \(String(describing: host.journal))")
        usleep(3_000_000)  // past the guard's old 1.5 s and the host's 2 s (or 0.5 s past its deadline)
        sh("fsfreeze -u '\(stack.lower.mountPoint)'")
        let result = running.finish(timeoutSeconds: 60)
        let report = try #require(result.report, "\(result.stdout)\n\(result.stderr)")
        #expect(report.freeze?.mayStillBeFrozen == false, "\(String(describing: report.freeze))")
        #expect(report.freeze?.mounts.map(\.thaw) == [.thawed])
        #expect(!report.errors.map(\.code).contains(.thawFailed), "\(report.errors)")
        try checks(result, report)
        #expect(!wasFrozen(thawing: stack.upper.mountPoint))
        #expect(host.journal == nil)
    }

    // MARK: 8. The guard

    /// Failure 8: the OOM killer must not pick the guard, and its memory stays locked.
    @Test func theGuardIsProtectedFromTheOOMKillerAndLocked() throws {
        let host = HostSandbox("oom")
        let fs = try LoopFilesystem(in: host.scratch)
        let go = host.scratch.path + "/go"
        let snapshot = host.script(
            "wait.sh",
            "#!/bin/sh\ntouch '\(host.scratch.path)/frozen.marker'\nwhile [ ! -e '\(go)' ]; do sleep 0.05; done\n")
        let running = host.start(["run", "--mount", fs.mountPoint, "--json", "--", snapshot])
        let journal = try #require(host.waitUntilFrozen())
        let adjustment = host.scratch.read("/proc/\(journal.guardPID)/oom_score_adj").filter { !$0.isWhitespace }
        let status = host.scratch.read("/proc/\(journal.guardPID)/status")
        host.scratch.write(go, "")
        #expect(running.finish().status == ExitStatus.degraded.rawValue)
        // Some sandboxes refuse any process a negative adjustment (EIO): there the guard cannot either.
        let allowed = sh("echo -1000 > /proc/self/oom_score_adj") == 0
        #expect(adjustment == (allowed ? "-1000" : "0"))
        let locked = status.split(separator: "\n").first { $0.hasPrefix("VmLck:") }
        let kilobytes = Int(locked?.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        #expect(kilobytes > 0, "\(locked ?? "no VmLck line")")
    }

    // MARK: - Helpers

    /// The bundled shell plugin, whose quiesce — after the flush, before the freeze — leaves
    /// dirty data on `upper` and then freezes `lower` as someone else would: upper's FIFREEZE
    /// then cannot return until `lower` is thawed.
    func addFreezingPlugin(_ host: HostSandbox, _ stack: StackedFilesystems) throws {
        let built = String(pluginhostBinary.dropLast("pluginhost".count)) + "libpluginhost-shell.so"
        let library = host.libraryDirectory + "/libpluginhost-shell.so"
        sh("install -m 0755 '\(built)' '\(library)'")
        let quiesce = host.script(
            "freeze-lower.sh",
            """
            #!/bin/sh
            dd if=/dev/urandom of='\(stack.upper.mountPoint)/dirty' bs=1M count=64 status=none
            exec /usr/sbin/fsfreeze -f '\(stack.lower.mountPoint)'
            """)
        let added = host.addPlugin(
            library, name: "freezer", config: "{\"quiesce\": [\"\(quiesce)\"], \"resume\": [\"/bin/true\"]}")
        #expect(added.status == 0, "\(added.stdout) \(added.stderr)")
    }

    func cpuSeconds(of pid: Int32) -> Double {
        guard let file = try? FileDescriptor.open("/proc/\(pid)/stat", O_RDONLY),
            let bytes = try? file.readAll(limit: 4096)
        else { return 0 }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the name: state is field 3, utime 14 and stime 15 (1-based), in clock ticks.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

extension FreezeJournalRecord {
    /// The states of the named mounts, in that order.
    func states(_ mountPoints: [String]) -> [MountFreezeState?] {
        mountPoints.map { point in mounts.first { $0.mountPoint == point }?.state }
    }
}
