import Glibc
import PluginHost
import PluginHostSupport
import PluginHostWire
import Testing

/// The real binary driven like a backup agent: freeze, snapshot elsewhere, thaw; and the QEMU
/// and VMware hook adapters.
@Suite("Two-phase and hooks", .serialized, .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct TwoPhaseTests {
    func scripts(_ host: HostSandbox) -> String {
        let log = host.scratch.path + "/phases.log"
        let pre = host.script("pre.sh", "#!/bin/sh\necho pre >> \(log)\n")
        let post = host.script(
            "post.sh", "#!/bin/sh\necho \"post $PLUGINHOST_RESULT $PLUGINHOST_CONSISTENCY\" >> \(log)\n")
        return host.config(pre: pre, post: post)
    }

    @Test func freezeReturnsFrozenThenThawFinishes() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = scripts(host)
        let freeze = host.invoke(["freeze", "--config", config, "--mount", fs.mountPoint, "--json"])
        #expect(freeze.status == 0, "\(freeze.stdout) \(freeze.stderr)")
        let notice = try #require(try? JSONParser.parse(freeze.stdout))
        #expect(notice["state"] == .string("frozen"))
        #expect(notice["consistency"] == .string("application"))
        guard case .string(let id)? = notice["operationID"] else {
            Issue.record("no operation id")
            return
        }
        #expect(host.scratch.read("phases.log") == "pre\n")

        let writer = try Writer(file: fs.mountPoint + "/probe")
        #expect(isFrozen(probing: fs.mountPoint), "the filesystem was not frozen")
        #expect(host.invoke(["status"]).stdout.hasPrefix("Frozen: operation \(id)"))
        // A second freeze while one is active is busy.
        #expect(host.invoke(["freeze", "--mount", fs.mountPoint]).status == ExitStatus.busy.rawValue)

        let thaw = host.invoke(["thaw", "--operation", id, "--json"])
        #expect(thaw.status == 0, "\(thaw.stdout) \(thaw.stderr)")
        let report = try #require(thaw.report)
        #expect(report.operationID == id && report.command == "freeze" && report.consistency == .application)
        #expect(writer.finishes(within: 10))
        #expect(host.scratch.read("phases.log") == "pre\npost success application\n")

        // Safe to retry: the same report, the same status, nothing run again.
        let again = host.invoke(["thaw", "--operation", id, "--json"])
        #expect(again.status == 0 && again.report == report)
        #expect(host.scratch.read("phases.log") == "pre\npost success application\n")
        // A plain thaw with nothing active has its own code.
        let plain = host.invoke(["thaw"])
        #expect(plain.status == ExitStatus.invalid.rawValue && plain.stderr.contains("NoActiveOperation"))
    }

    @Test func theFreezeNoticeCarriesTheErrorsSoFar() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let pre = host.script("pre.sh", "#!/bin/sh\nexit 9\n")
        let post = host.script("post.sh", "#!/bin/sh\n")
        let freeze = host.invoke([
            "freeze", "--config", host.config(pre: pre, post: post), "--mount", fs.mountPoint, "--json",
        ])
        #expect(freeze.status == ExitStatus.degraded.rawValue)  // frozen, but the pre-script failed
        let notice = try #require(try? JSONParser.parse(freeze.stdout))
        #expect(notice["consistency"] == .string("filesystem"))
        guard case .array(let errors)? = notice["errors"], case .string(let id)? = notice["operationID"] else {
            Issue.record("no errors or id in \(freeze.stdout)")
            return
        }
        #expect(errors.first?["code"] == .string("Pre-ScriptExecutionFailed"))
        #expect(host.invoke(["thaw", "--operation", id]).status == ExitStatus.degraded.rawValue)
    }

    @Test func withoutThawTheDeadlineThawsResumesAndReports() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = scripts(host)
        host.addPlugin(
            try fixturePlugin("GOOD", in: host.libraryDirectory), config: "{\"log\":\"\(host.scratch.path)/calls.log\"}"
        )
        let freeze = host.invoke([
            "freeze", "--config", config, "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint,
            "--max-frozen", "1", "--json",
        ])
        #expect(freeze.status == 0)
        guard case .string(let id)? = (try? JSONParser.parse(freeze.stdout))?["operationID"] else {
            Issue.record("no id")
            return
        }
        #expect(try Writer(file: fs.mountPoint + "/probe").finishes(within: 15), "the guard's deadline did not thaw")
        // The session resumes the plugin and runs the post-script on its own.
        for _ in 0..<500 where !host.scratch.read("phases.log").contains("post") { usleep(10_000) }
        #expect(host.scratch.read("phases.log") == "pre\npost failure none\n")
        #expect(host.scratch.read("calls.log").contains("fixture resume"))
        // A thaw after the deadline fired exits non-zero with that report.
        for _ in 0..<500
        where OperationLock.currentHolder(
            paths: StatePaths(runDirectory: host.runDirectory, stateDirectory: host.stateDirectory)) != nil
        {
            usleep(10_000)
        }
        let thaw = host.invoke(["thaw", "--operation", id, "--json"])
        #expect(thaw.status == ExitStatus.failed.rawValue)
        #expect(thaw.report?.errors.map(\.code).contains(.freezeDeadlineExpired) == true)
        #expect(thaw.report?.freeze?.thawCause == .deadline)
    }

    @Test func killingTheSessionWhileFrozenLeavesNothingFrozen() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let freeze = host.invoke(["freeze", "--mount", fs.mountPoint, "--max-frozen", "120", "--json"])
        #expect(freeze.status == ExitStatus.degraded.rawValue)  // no scripts or plugins: filesystem-consistent so far
        let holder = try #require(
            OperationLock.currentHolder(
                paths: StatePaths(runDirectory: host.runDirectory, stateDirectory: host.stateDirectory)))
        let writer = try Writer(file: fs.mountPoint + "/probe")
        #expect(isFrozen(probing: fs.mountPoint))
        kill(holder.pid, SIGKILL)
        #expect(writer.finishes(within: 10), "still frozen after the session was killed")
        #expect(host.waitForJournal { !$0.mayBeFrozenByUs } != nil)
        #expect(host.invoke(["status"]).stdout.hasPrefix("Interrupted: operation \(holder.operationID)"))
        #expect(host.invoke(["thaw"]).status == ExitStatus.invalid.rawValue)
    }

    @Test func onlyRootMayTalkToTheSession() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let freeze = host.invoke(["freeze", "--mount", fs.mountPoint, "--json"])
        guard case .string(let id)? = (try? JSONParser.parse(freeze.stdout))?["operationID"] else {
            Issue.record("no id")
            return
        }
        let socket = host.runDirectory + "/session.sock"
        // The session may refuse before the request is sent: send what can be sent, then read.
        let client = host.scratch.write(
            "client.py",
            """
            import socket, sys
            s = socket.socket(socket.AF_UNIX)
            s.connect(sys.argv[1])
            try:
                s.sendall(b"THAW -\\n")
            except OSError:
                pass
            print(s.recv(4096).decode())
            """, mode: 0o644)
        // Without privileges, uid 65534 cannot even reach the socket (0700 directory, 0600 socket)…
        let denied = sh(
            "setpriv --reuid 65534 --regid 65534 --clear-groups python3 '\(client)' '\(socket)' > '\(host.scratch.path)/denied.out' 2>&1"
        )
        #expect(denied != 0)
        #expect(host.scratch.read("denied.out").contains("Permission denied"))
        // …and one that gets past the file modes is refused by its peer credentials.
        let refused = sh(
            "setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps +dac_override --ambient-caps +dac_override python3 '\(client)' '\(socket)' > '\(host.scratch.path)/refused.out' 2>&1"
        )
        #expect(refused == 0)
        #expect(host.scratch.read("refused.out").contains("refused"))
        // Still frozen: the refused client thawed nothing.
        let writer = try Writer(file: fs.mountPoint + "/probe")
        #expect(isFrozen(probing: fs.mountPoint))
        let thaw = host.invoke(["thaw", "--operation", id, "--json"])
        #expect(thaw.status == ExitStatus.degraded.rawValue)
        #expect(thaw.report?.warnings.contains { $0.contains("refused a connection from uid 65534") } == true)
        #expect(writer.finishes(within: 10))
    }

    /// The QEMU adapter, installed the way qemu-ga finds it: a symlink in fsfreeze-hook.d.
    @Test func qemuHookHoldsThePluginBetweenFreezeAndThawWithoutFreezing() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = scripts(host)
        let hold = try addHoldingShellPlugin(host)
        let hookDirectory = host.scratch.mkdir("fsfreeze-hook.d")
        let hook = hookDirectory + "/50-pluginhost"
        symlink(pluginhostBinary, hook)
        let arguments = ["--config", config, "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint]
        let freeze = host.invoke(["freeze"] + arguments, as: hook)
        #expect(freeze.status == 0, "\(freeze.stdout) \(freeze.stderr)")
        #expect(freeze.stdout.hasPrefix("Quiesced: operation"))
        // The plugin's session is held in between; the host did not freeze (the agent does).
        let holder = Int32(host.scratch.read("hold.pid").filter(\.isNumber)) ?? 0
        #expect(processExists(holder))
        #expect(try Writer(file: fs.mountPoint + "/probe").finishes(within: 10))
        #expect(host.scratch.read("phases.log") == "pre\n")

        let thaw = host.invoke(["thaw", "--json"], as: hook)
        #expect(thaw.status == 0, "\(thaw.stdout) \(thaw.stderr)")
        #expect(thaw.report?.command == "hook qemu" && thaw.report?.consistency == .application)
        for _ in 0..<200 where processExists(holder) { usleep(10_000) }
        #expect(!processExists(holder))
        #expect(host.scratch.read("phases.log") == "pre\npost success application\n")
        withExtendedLifetime(hold) {}
    }

    @Test func vmwareHookFreezeFailResumesAndTellsThePostScript() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = scripts(host)
        let arguments = ["--config", config, "--mount", fs.mountPoint]
        #expect(host.invoke(["hook", "vmware", "freeze"] + arguments).status == 0)
        let failed = host.invoke(["hook", "vmware", "freezeFail", "--json"])
        // The agent's snapshot failed, but what freezeFail asks for — resume, post-script — did
        // not: VMware Tools must not read "Custom quiesce script failed".
        #expect(failed.status == 0)
        #expect(failed.report?.snapshotTaken == false && failed.report?.result == .failed)
        #expect(host.scratch.read("phases.log") == "pre\npost failure none\n")

        // And the normal path, with the lower-case spelling some versions use.
        #expect(host.invoke(["hook", "vmware", "freeze"] + arguments).status == 0)
        let thaw = host.invoke(["hook", "vmware", "thaw", "--json"])
        #expect(thaw.status == 0 && thaw.report?.command == "hook vmware")
        // Nothing active any more: nothing to resume, which is no failure of the agent's thaw.
        let stray = host.invoke(["hook", "vmware", "freezefail"])
        #expect(stray.status == 0 && stray.stderr.contains("no hook session is waiting"))
    }

    @Test func timelineInTheTerminalAndAsSVG() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        host.addPlugin(try fixturePlugin("GOOD", in: host.libraryDirectory))
        let run = host.invoke([
            "run", "--config", scripts(host), "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--",
            "/bin/true",
        ])
        #expect(run.status == 0)
        let text = host.invoke(["status", "--timeline"]).stdout
        for label in [
            "checks", "pre-script", "fixture quiesce", "freeze", fs.mountPoint, "snapshot", "thaw", "fixture resume",
            "post-script",
        ] {
            #expect(text.contains(label), "\(label) missing from the timeline")
        }
        #expect(text.contains("frozen for") && text.contains("▓"))
        let svg = host.scratch.path + "/timeline.svg"
        #expect(host.invoke(["status", "--svg", svg]).status == 0)
        let picture = host.scratch.read(svg)
        #expect(picture.hasPrefix("<svg") && picture.contains("frozen ") && picture.contains("fixture quiesce"))
        #expect(
            sh("python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' '\(svg)'") == 0,
            "not well-formed XML")
    }
}
