import Glibc
import PluginHost
import PluginHostSupport
import Testing

let qemuGuestAgent = "/usr/sbin/qemu-ga"

/// The real qemu-ga (Debian's qemu-guest-agent) on a unix
/// socket, its fsfreeze hook the pluginhost binary under a hook name, plain
/// `guest-fsfreeze-freeze` blocked (-b), and only ever the test's own loop mount frozen with
/// `guest-fsfreeze-freeze-list`. qemu-ga's thaw issues FITHAW on every mount it lists, so it
/// runs in a private mount namespace where every other block filesystem but `/` is detached:
/// it cannot thaw what another test froze.
@Suite(
    "The real QEMU guest agent", .serialized,
    .enabled(
        if: isRoot && access(qemuGuestAgent, X_OK) == 0, "needs root and qemu-ga (apt-get install qemu-guest-agent)"))
struct QEMUGuestAgentTests {
    func scripts(_ host: HostSandbox, preExit: Int = 0, continueBackupOnFailure: Bool = true) -> String {
        let log = host.scratch.path + "/phases.log"
        let pre = host.script("pre.sh", "#!/bin/sh\necho pre >> \(log)\nexit \(preExit)\n")
        let post = host.script(
            "post.sh", "#!/bin/sh\necho \"post $PLUGINHOST_RESULT $PLUGINHOST_CONSISTENCY\" >> \(log)\n")
        return host.config(pre: pre, post: post, extra: "\"continueBackupOnFailure\": \(continueBackupOnFailure)")
    }

    func freezeList(_ paths: [String]) -> String {
        "{\"execute\":\"guest-fsfreeze-freeze-list\",\"arguments\":{\"mountpoints\":[\(paths.map { "\"\($0)\"" }.joined(separator: ","))]}}"
    }

    /// Installed as qemu-ga's `-F` hook, a failed quiesce makes qemu-ga refuse the freeze;
    /// installed in the stock hook's fsfreeze-hook.d, it cannot: Debian's and upstream's
    /// fsfreeze-hook end with `exit 0` whatever the scripts return (what the README says).
    @Test(arguments: ["-F", "fsfreeze-hook.d"])
    func aFailedQuiesceAbortsTheFreezeOnlyAsTheFHook(installation: String) throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = scripts(host, preExit: 3, continueBackupOnFailure: false)
        let hook = try QEMUGuestAgent.installHook(host, as: installation)
        let agent = try QEMUGuestAgent(
            host: host, hook: hook, onlyMount: fs.mountPoint,
            environment: [
                "PLUGINHOST_CONFIG": config, "PLUGINHOST_HOST_CONFIG": host.hostConfig(mounts: [fs.mountPoint]),
            ])
        let answer = agent.execute(freezeList([fs.mountPoint]))
        if installation == "-F" {
            #expect(
                answer.contains("\"error\"") && answer.contains("fsfreeze hook has failed with status 2"), "\(answer)")
            #expect(agent.execute("{\"execute\":\"guest-fsfreeze-status\"}").contains("thawed"))
            #expect(
                try Writer(file: fs.mountPoint + "/probe").finishes(within: 10), "qemu-ga froze after a failed quiesce")
        } else {
            #expect(answer == "{\"return\": 1}", "\(answer)")  // frozen all the same
            #expect(agent.execute("{\"execute\":\"guest-fsfreeze-thaw\"}") == "{\"return\": 1}")
        }
        #expect(host.waitUntilIdle())
        #expect(host.scratch.read("phases.log") == "pre\npost failure none\n")
        #expect(ReportStore(paths: host.paths).lastReport()?.errors.first?.code == .preScriptExecutionFailed)
    }

    /// The quiesce spans qemu-ga's freeze: freeze hook, FIFREEZE of the test's mount, snapshot
    /// time, FITHAW, thaw hook — which resumes the plugin and runs the post-script.
    @Test func thawCallsTheHookWhichResumesAndRunsThePostScript() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = scripts(host)
        let hold = try addHoldingShellPlugin(host)
        let hook = try QEMUGuestAgent.installHook(host, as: "-F")
        let agent = try QEMUGuestAgent(
            host: host, hook: hook, onlyMount: fs.mountPoint,
            environment: [
                "PLUGINHOST_CONFIG": config, "PLUGINHOST_PLUGINS_DIR": host.pluginsDirectory,
                "PLUGINHOST_HOST_CONFIG": host.hostConfig(mounts: [fs.mountPoint]),
            ])
        #expect(agent.execute("{\"execute\":\"guest-fsfreeze-freeze\"}").contains("has been disabled"))
        #expect(agent.execute(freezeList([fs.mountPoint])) == "{\"return\": 1}")
        let holder = Int32(host.scratch.read("hold.pid").filter(\.isNumber)) ?? 0
        #expect(processExists(holder), "the plugin does not hold its quiesce while qemu-ga is frozen")
        let writer = try Writer(file: fs.mountPoint + "/probe")
        #expect(isFrozen(probing: fs.mountPoint), "qemu-ga did not freeze the test's mount")
        #expect(host.invoke(["status"]).stdout.hasPrefix("Quiesced: operation"))

        #expect(agent.execute("{\"execute\":\"guest-fsfreeze-thaw\"}") == "{\"return\": 1}")
        #expect(writer.finishes(within: 10))
        #expect(host.waitUntilIdle())
        for _ in 0..<200 where processExists(holder) { usleep(10_000) }
        #expect(!processExists(holder))
        #expect(host.scratch.read("phases.log") == "pre\npost success application\n")
        let report = try #require(ReportStore(paths: host.paths).lastReport())
        #expect(report.command == "hook qemu" && report.result == .succeeded && report.consistency == .application)
        #expect(report.plugins.first?.calls.contains { $0.function == .resume && $0.outcome == .ok } == true)
        withExtendedLifetime(hold) {}
    }

    /// Item 10, measured: freeze-list on a path that is not a mount point freezes nothing,
    /// returns 0 and never calls the thaw hook — the quiesce (BACKUP STAGE BLOCK_COMMIT in the
    /// measurement) was held for the whole 60 s deadline. The hook hold limit releases it.
    @Test func nothingFrozenMeansNoThawHookAndTheHoldLimitReleases() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = scripts(host)
        let hold = try addHoldingShellPlugin(host)
        let hook = try QEMUGuestAgent.installHook(host, as: "-F")
        let notAMount = host.scratch.mkdir("not-a-mount")
        let agent = try QEMUGuestAgent(
            host: host, hook: hook, onlyMount: fs.mountPoint,
            environment: [
                "PLUGINHOST_CONFIG": config, "PLUGINHOST_PLUGINS_DIR": host.pluginsDirectory,
                "PLUGINHOST_HOST_CONFIG": host.hostConfig(
                    mounts: [fs.mountPoint], extra: "\"hookHoldLimitSeconds\": 2"),
            ])
        #expect(agent.execute(freezeList([notAMount])) == "{\"return\": 0}")
        #expect(agent.execute("{\"execute\":\"guest-fsfreeze-status\"}").contains("thawed"))
        #expect(host.scratch.read("phases.log") == "pre\n")
        #expect(host.waitUntilIdle(), "the quiesce is still held")
        let holder = Int32(host.scratch.read("hold.pid").filter(\.isNumber)) ?? 0
        for _ in 0..<200 where processExists(holder) { usleep(10_000) }
        #expect(!processExists(holder))
        #expect(host.scratch.read("phases.log") == "pre\npost failure none\n")
        let report = try #require(ReportStore(paths: host.paths).lastReport())
        #expect(report.errors.map(\.code) == [.hookHoldLimitExpired])
        #expect(
            !agent.log.contains("executing fsfreeze hook with arg 'thaw'"), "qemu-ga called the thaw hook after all")
        withExtendedLifetime(hold) {}
    }
}

/// qemu-ga on a unix socket in a fenced mount namespace, with `-F` the given hook.
final class QEMUGuestAgent {
    let socket: String
    let logFile: String
    private let process: ChildProcess

    /// The binary as qemu-ga's `-F` hook (a symlink named fsfreeze-hook), or in the stock
    /// hook's fsfreeze-hook.d (Debian's fsfreeze-hook copied beside it, its log moved here).
    static func installHook(_ host: HostSandbox, as installation: String) throws -> String {
        let directory = host.scratch.mkdir("qemu")
        if installation == "-F" {
            symlink(pluginhostBinary, directory + "/fsfreeze-hook")
            return directory + "/fsfreeze-hook"
        }
        let stock = directory + "/fsfreeze-hook"
        try #require(
            sh(
                "sed 's|^LOGFILE=.*|LOGFILE=\(host.scratch.path)/qga-fsfreeze-hook.log|' /etc/qemu/fsfreeze-hook > '\(stock)' && chmod 0700 '\(stock)' && grep -q '^exit 0' '\(stock)'"
            ) == 0,
            "no stock /etc/qemu/fsfreeze-hook ending in exit 0")
        _ = host.scratch.mkdir("qemu/fsfreeze-hook.d")
        symlink(pluginhostBinary, directory + "/fsfreeze-hook.d/50-pluginhost")
        return stock
    }

    init(host: HostSandbox, hook: String, onlyMount: String, environment: [String: String]) throws {
        socket = host.scratch.path + "/qga.sock"
        logFile = host.scratch.path + "/qga.log"
        let state = host.scratch.mkdir("qga-state")
        // Runs in the new namespace: detach every block filesystem but / and the test's own,
        // deepest first, then become qemu-ga. An unmount may fail on a mount that is already gone
        // (another test removed its mount point meanwhile), so failures are let be and what is
        // left is checked afterwards, and named if anything is.
        let fence = host.scratch.write(
            "qga-fence.sh",
            """
            #!/bin/sh
            mine="$1"; shift
            foreign() {
                awk -v mine="$mine" '$3 !~ /^0:/ && $5 != "/" && $5 != mine && index(mine, $5 "/") != 1 {print $5}' \\
                    /proc/self/mountinfo | tac
            }
            foreign | while read -r mp; do umount -l "$(printf '%b' "$mp")" 2>/dev/null; done
            if [ -n "$(foreign)" ]; then
                echo "qga-fence: still mounted:" >&2
                grep -F "$(foreign)" /proc/self/mountinfo >&2
                exit 1
            fi
            exec "$@"
            """, mode: 0o700)
        process = try ChildProcess(
            spawning: Command(
                executable: "/usr/bin/unshare",
                arguments: [
                    "--mount", "--propagation", "private", fence, onlyMount, qemuGuestAgent, "-m", "unix-listen", "-p",
                    socket,
                    "-t", state, "-f", host.scratch.path + "/qga.pid", "-F\(hook)", "-b", "guest-fsfreeze-freeze", "-l",
                    logFile,
                ],
                environment: host.environment.merging(environment) { $1 }))
        // Waiting on the child drains its stderr, so that the fence's or qemu-ga's complaint is
        // in the error when it exits instead of listening.
        for _ in 0..<1000 where access(socket, F_OK) != 0 {
            if case .exited(let termination) = process.wait(until: .now + .milliseconds(10)) {
                throw FixtureError(
                    "qemu-ga did not start (\(termination)): \(process.stderrTail.text) \(host.scratch.read(logFile))")
            }
        }
        guard access(socket, F_OK) == 0 else {
            throw FixtureError(
                "qemu-ga did not listen in 10 s: \(process.stderrTail.text) \(host.scratch.read(logFile))")
        }
    }

    deinit {
        _ = execute("{\"execute\":\"guest-fsfreeze-thaw\"}", timeoutSeconds: 20)
        process.terminateGroup()
    }

    var log: String {
        guard let file = try? FileDescriptor.open(logFile, O_RDONLY), let bytes = try? file.readAll(limit: 1 << 20)
        else { return "" }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Sends one QMP command on a fresh connection and returns the answer line.
    func execute(_ command: String, timeoutSeconds: Double = 120) -> String {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "socket failed" }
        let connection = FileDescriptor(owning: fd)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in socket.utf8.enumerated() { raw[index] = byte }
        }
        // The socket file exists from bind(2) on; on a loaded machine listen(2) may come a little
        // later: a refused connection is retried (bounded) while qemu-ga runs.
        var connected: Int32 = -1
        for _ in 0..<100 {
            connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if connected == 0 || errno != ECONNREFUSED || !processExists(process.pid) { break }
            usleep(100_000)
        }
        guard connected == 0, (try? connection.writeAll(command + "\n")) != nil else {
            return "cannot reach qemu-ga (\(String(cString: strerror(errno)))): \(process.stderrTail.text) \(log)"
        }
        var collected: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = Monotonic.now() + UInt64(timeoutSeconds * 1e9)
        while !collected.contains(0x0A) {
            var event = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&event, 1, Monotonic.pollTimeout(until: deadline)) == 1 else { return "no answer" }
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }
            collected += buffer[0..<count]
        }
        let line = collected.prefix { $0 != 0x0A }
        return String(decoding: line, as: UTF8.self).trimmingTrailingWhitespace()
    }
}

extension String {
    fileprivate func trimmingTrailingWhitespace() -> String {
        var copy = self
        while let last = copy.last, last == " " || last == "\r" { copy.removeLast() }
        return copy
    }
}
