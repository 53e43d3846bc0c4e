import Glibc
import PluginHost
import PluginHostSupport
import PluginHostWire
import Testing

/// The real binary on real loop filesystems: freeze, block, thaw, and survive being killed.
@Suite("Freeze on real filesystems", .serialized, .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct FreezeTests {
    @Test(arguments: ["ext4", "xfs"])
    func aWriterBlocksWhileFrozenAndTheCopyIsClean(type: String) throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch, type: type)
        // Data written before the operation must be in the snapshot.
        #expect(sh("dd if=/dev/urandom of='\(fs.mountPoint)/before' bs=1M count=4 status=none") == 0)
        let copy = host.scratch.path + "/copy.img"
        let snapshot = host.script(
            "snapshot.sh",
            """
            #!/bin/sh
            # Runs while frozen: start a writer on the frozen filesystem, see that it is stuck,
            # then copy the image. The writer finishes after the thaw.
            sh -c 'echo during > "\(fs.mountPoint)/during" && sync "\(fs.mountPoint)/during"' &
            echo $! > "\(host.scratch.path)/writer.pid"
            sleep 0.3
            if [ -s "\(fs.mountPoint)/during" ]; then echo "writer was not blocked"; exit 1; fi
            cp --sparse=always "\(fs.image)" "\(copy)"
            """)
        let result = host.invoke(["run", "--mount", fs.mountPoint, "--json", "--", snapshot])
        #expect(result.status == ExitStatus.degraded.rawValue, "\(result.stdout)\n\(result.stderr)")
        let report = try #require(result.report)
        #expect(report.consistency == .filesystem)  // no scripts configured: the freeze alone
        #expect(report.freeze?.mounts.map(\.freeze) == [.frozen])
        #expect(report.freeze?.mounts.map(\.thaw) == [.thawed])
        #expect((report.freeze?.windowMs ?? 0) > 300)

        // The writer completes once thawed.
        let writerPid = Int32(host.scratch.read("writer.pid").filter(\.isNumber)) ?? 0
        for _ in 0..<500 where processExists(writerPid) { usleep(10_000) }
        #expect(host.scratch.read(fs.mountPoint + "/during") == "during\n")

        // The copy taken while frozen holds the earlier data and is a consistent filesystem.
        // ext4's freeze leaves a clean journal; XFS's leaves a log to replay (as after a
        // crash, but consistent), so the XFS copy is mounted read-write once before the check.
        let copyMount = host.scratch.mkdir("copy")
        if type == "ext4" { #expect(sh("e2fsck -fn '\(copy)' >/dev/null 2>&1") == 0, "the snapshot copy is not clean") }
        let options = type == "xfs" ? "loop,nouuid" : "loop,ro"
        #expect(
            sh(
                "mount -o \(options) '\(copy)' '\(copyMount)' && cmp -s '\(copyMount)/before' '\(fs.mountPoint)/before'; s=$?; umount '\(copyMount)'; exit $s"
            ) == 0)
        if type == "xfs" {
            #expect(sh("xfs_repair -n '\(copy)' >/dev/null 2>&1") == 0, "the snapshot copy is not clean")
        }
        #expect(host.journal == nil)
    }

    @Test func killingTheHostThawsAtOnce() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let running = host.start([
            "run", "--mount", fs.mountPoint, "--max-frozen", "120", "--", host.holdWhileFrozen(60),
        ])
        _ = try #require(host.waitUntilFrozen())
        let writer = try Writer(file: fs.mountPoint + "/probe")
        #expect(isFrozen(probing: fs.mountPoint), "the filesystem was not frozen")
        kill(running.pid, SIGKILL)
        // The guard sees its host's pidfd at once; the deadline (120 s) is far away.
        #expect(writer.finishes(within: 10), "still frozen after the host was killed")
        _ = running.finish()
        // The guard records each thaw in the journal as it happens, and who thawed.
        let journal = try #require(host.waitForJournal { $0.thawCause != nil })
        #expect(journal.mounts.map(\.state) == [.thawed] && journal.thawCause == .hostExited)

        let status = host.invoke(["status", "--json"])
        #expect(status.stdout.contains("\"state\" : \"interrupted\""))
        let recover = host.invoke(["recover"])
        #expect(recover.status == 0)
        #expect(recover.stdout.contains("thawed-by-guard"))
        #expect(host.journal == nil)
        // The interrupted operation is now the last report, saying what happened.
        let last = host.invoke(["status", "--json"])
        #expect(last.stdout.contains("OperationInterrupted"))
    }

    @Test func theGuardIgnoresStraySignals() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let go = host.scratch.path + "/go"
        let snapshot = host.script(
            "wait.sh",
            "#!/bin/sh\ntouch '\(host.scratch.path)/frozen.marker'\nwhile [ ! -e '\(go)' ]; do sleep 0.05; done\n")
        let running = host.start(["run", "--mount", fs.mountPoint, "--json", "--", snapshot])
        let journal = try #require(host.waitUntilFrozen())
        // While frozen, the guard gets the signals a careless admin might send.
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTSTP] {
            kill(journal.guardPID, signal)
        }
        usleep(300_000)
        #expect(processExists(journal.guardPID), "the guard died of a stray signal")
        host.scratch.write(go, "")
        let result = running.finish()
        let report = try #require(result.report, "\(result.stdout) \(result.stderr)")
        #expect(report.snapshotTaken && report.freeze?.thawCause == .command)
        #expect(report.freeze?.mounts.first?.thaw == .thawed)
    }

    @Test func killingTheGuardMakesTheHostThawAndFail() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let running = host.start(["run", "--mount", fs.mountPoint, "--json", "--", host.holdWhileFrozen(30)])
        let journal = try #require(host.waitUntilFrozen())
        let writer = try Writer(file: fs.mountPoint + "/probe")
        #expect(isFrozen(probing: fs.mountPoint))
        kill(journal.guardPID, SIGKILL)
        #expect(writer.finishes(within: 10))
        let result = running.finish()
        #expect(result.status == ExitStatus.failed.rawValue)
        let report = try #require(result.report, "\(result.stdout)\n\(result.stderr)")
        #expect(report.freeze?.thawCause == .guardLost)
        #expect(report.errors.map(\.code).contains(.freezeFailed))
        #expect(!report.snapshotTaken)
        #expect(host.journal == nil)
    }

    @Test func bothKilledThenRecoverThaws() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let running = host.start(["run", "--mount", fs.mountPoint, "--", host.holdWhileFrozen(30)])
        let journal = try #require(host.waitUntilFrozen())
        killHostAndGuard(running, journal)
        let writer = try Writer(file: fs.mountPoint + "/probe")
        #expect(isFrozen(probing: fs.mountPoint), "something thawed although host and guard were killed")
        #expect(host.journal?.mounts.map(\.state) == [.frozen])
        #expect(host.invoke(["status"]).stdout.contains("Needs recovery"))

        let recover = host.invoke(["recover", "--json"])
        #expect(recover.status == 0, "\(recover.stdout) \(recover.stderr)")
        #expect(recover.stdout.contains("\"state\" : \"thawed\""))
        #expect(writer.finishes(within: 10))
        #expect(host.journal == nil)
        #expect(host.invoke(["recover"]).stdout.contains("Nothing to recover"))
    }

    @Test func theNextRunRecoversByItself() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let running = host.start(["run", "--mount", fs.mountPoint, "--", host.holdWhileFrozen(30)])
        let journal = try #require(host.waitUntilFrozen())
        killHostAndGuard(running, journal)

        let result = host.invoke(["run", "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(result.status == ExitStatus.degraded.rawValue)  // no scripts: filesystem-consistent
        let report = try #require(result.report)
        #expect(report.warnings.contains { $0.hasPrefix("recovered:") && $0.contains(journal.operationID) })
        #expect(try Writer(file: fs.mountPoint + "/probe").finishes(within: 10))
    }

    @Test func theGuardThawsAtItsDeadline() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let result = host.invoke([
            "run", "--mount", fs.mountPoint, "--max-frozen", "1", "--json", "--", "/bin/sleep", "20",
        ])
        #expect(result.status == ExitStatus.failed.rawValue)
        let report = try #require(result.report)
        #expect(report.errors.map(\.code).contains(.freezeDeadlineExpired))
        #expect(report.freeze?.thawCause == .deadline)
        #expect(report.snapshot?.termination == .signalled(SIGTERM))
        #expect(try Writer(file: fs.mountPoint + "/probe").finishes(within: 10))
    }

    @Test func childrenFirstAndTheRootLast() throws {
        let host = HostSandbox()
        let outer = try LoopFilesystem(in: host.scratch, name: "outer")
        #expect(sh("mkdir -p '\(outer.mountPoint)/inner'") == 0)
        let inner = try LoopFilesystem(in: host.scratch, name: "inner", mountPoint: outer.mountPoint + "/inner")
        let check = host.invoke(["check", "--json", "--mount", outer.mountPoint, "--mount", inner.mountPoint])
        #expect(check.status == 0, "\(check.stdout)")
        let innerAt = offset(of: "\"mountPoint\" : \"\(inner.mountPoint)\"", in: check.stdout)
        let outerAt = offset(of: "\"mountPoint\" : \"\(outer.mountPoint)\"", in: check.stdout)
        #expect(innerAt != nil && outerAt != nil)
        if let innerAt, let outerAt { #expect(innerAt < outerAt) }

        let result = host.invoke([
            "run", "--mount", outer.mountPoint, "--mount", inner.mountPoint, "--json", "--", "/bin/true",
        ])
        let report = try #require(result.report)
        #expect(report.freeze?.mounts.map(\.mountPoint) == [inner.mountPoint, outer.mountPoint])
        #expect(report.freeze?.mounts.allSatisfy { $0.freeze == .frozen && $0.thaw == .thawed } == true)
        withExtendedLifetime(inner) {}
    }

    @Test func anAlreadyFrozenFilesystemIsLeftAsItWas() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        #expect(sh("fsfreeze -f '\(fs.mountPoint)'") == 0)
        let result = host.invoke(["run", "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        let report = try #require(result.report, "\(result.stderr)")
        #expect(report.freeze?.mounts.first?.freeze == .alreadyFrozen)
        #expect(report.freeze?.mounts.first?.thaw == .notOurs)
        // Still frozen by its owner: the host did not thaw what it did not freeze.
        let writer = try Writer(file: fs.mountPoint + "/probe")
        #expect(isFrozen(probing: fs.mountPoint))
        sh("fsfreeze -u '\(fs.mountPoint)'")
        #expect(writer.finishes(within: 10))
    }

    /// Stops the host so that it cannot react, kills the guard, then the host: nobody thaws.
    private func killHostAndGuard(_ running: RunningHost, _ journal: FreezeJournalRecord) {
        kill(running.pid, SIGSTOP)
        kill(journal.guardPID, SIGKILL)
        usleep(100_000)
        kill(running.pid, SIGKILL)
        _ = running.finish()
    }
}
