import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// Small inputs that hurt — a mount point that is not UTF-8, `status` without
/// root, silent connections to a session.
@Suite("Hardening", .serialized, .enabled(if: isRoot, "needs root for loop mounts and sessions"))
struct HardeningTests {
    /// A mount point that is not valid UTF-8 passed `check` and then failed to freeze (its path
    /// was mangled). `check` now refuses it clearly, and naming other mounts still works.
    @Test func aMountPointThatIsNotUTF8IsRefusedByCheck() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let image = host.scratch.path + "/latin1.img"
        let shell = "dir=\"$(printf '\(host.scratch.path)/caf\\351')\""
        #expect(
            sh(
                "truncate -s 16M '\(image)' && mkfs.ext4 -q -F '\(image)' && \(shell) && mkdir \"$dir\" && mount -o loop '\(image)' \"$dir\""
            ) == 0)
        defer { sh("\(shell); umount \"$dir\" 2>/dev/null || umount -l \"$dir\"") }

        let check = host.invoke(["check"])
        #expect(check.status == ExitStatus.invalid.rawValue)
        #expect(
            check.stdout.contains("caf\\xE9") && check.stdout.contains("is not valid UTF-8"),
            "\(check.stdout.suffix(2000))")
        #expect(check.stdout.contains("FreezeFailed"))

        let named = host.invoke(["check", "--mount", fs.mountPoint])
        #expect(named.status == 0, "\(named.stdout.suffix(1000))")
        #expect(!named.stdout.contains("UTF-8"))
    }

    /// Without root, `status` said `Idle` while filesystems were frozen: it cannot know.
    @Test func statusWithoutRootSaysItNeedsRoot() {
        let host = HostSandbox()
        let output = capture(
            "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", pluginhostBinary, "status"],
            environment: host.environment)
        #expect(output.termination == .exited(ExitStatus.invalid.rawValue), "\(output.stdout) \(output.stderr)")
        #expect(output.stderr.contains("needs root"))
        #expect(!output.stdout.contains("Idle"))
    }

    /// Each silent root connection blocked the session for 2 s (10 of them: 20 s, during which
    /// nobody could thaw). The session now reads every client as its bytes come.
    @Test func silentConnectionsDoNotHoldUpTheSession() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let freeze = host.invoke([
            "freeze", "--mount", fs.mountPoint, "--plugins-dir", host.pluginsDirectory, "--max-frozen", "120", "--json",
        ])
        let notice = try #require(try? JSONParser.parse(freeze.stdout), "\(freeze.stdout) \(freeze.stderr)")
        guard case .string(let id)? = notice["operationID"] else {
            Issue.record("no operation id")
            return
        }
        let socketPath = host.runDirectory + "/session.sock"

        let silent = (0..<10).compactMap { _ in connect(socketPath) }
        #expect(silent.count == 10)
        // A status request behind them is answered: before, it waited 10 × 2 s. The wait below is
        // only an upper bound for a broken session, not a measurement.
        let asking = try #require(connect(socketPath))
        #expect((try? asking.writeAll("STATUS\n")) != nil)
        let answer = readAll(asking, seconds: 15)
        #expect(answer.contains(id), "no status answer: \(answer)")

        let thaw = host.invoke(["thaw", "--operation", id, "--json"])
        #expect(thaw.status == ExitStatus.degraded.rawValue, "\(thaw.stdout) \(thaw.stderr)")  // no application step
        #expect(thaw.report?.operationID == id)
        withExtendedLifetime(silent) {}
    }

    func connect(_ path: String) -> FileDescriptor? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        let descriptor = FileDescriptor(owning: fd)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return connected == 0 ? descriptor : nil
    }

    func readAll(_ descriptor: FileDescriptor, seconds: Double) -> String {
        var collected: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = Monotonic.now() + UInt64(seconds * 1e9)
        while true {
            var event = pollfd(fd: descriptor.rawValue, events: Int16(POLLIN), revents: 0)
            guard poll(&event, 1, Monotonic.pollTimeout(until: deadline)) == 1 else { break }
            let count = read(descriptor.rawValue, &buffer, buffer.count)
            if count <= 0 { break }
            collected += buffer[0..<count]
        }
        return String(decoding: collected, as: UTF8.self)
    }
}
