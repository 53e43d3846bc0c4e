import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// What an admin operating pluginhost sees: its version, the version stamp of every JSON
/// document, the history of past operations, and one line per operation in the system log.
@Suite(
    "Versions, history and the system log", .serialized, .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE")
)
struct VersionHistoryLogTests {
    @Test func versionPrintsTheVersionAndTheCommit() {
        let result = HostSandbox().invoke(["--version"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "pluginhost \(BuildInfo.version) (commit \(BuildInfo.commit))\n")
        #expect(!BuildInfo.commit.isEmpty)
    }

    /// Every JSON document: a report, the freeze notice, check, list, status, recover, history,
    /// and an answer that is only errors.
    @Test func everyJSONDocumentCarriesTheVersionAndTheSchemaVersion() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = host.config(pre: host.script("pre.sh", "#!/bin/sh\n"), post: host.script("post.sh", "#!/bin/sh\n"))
        let plugins = host.scratch.mkdir("plugins.d")
        var documents: [(String, Invocation)] = []
        documents.append(
            ("run", host.invoke(["run", "--config", config, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])))
        let freeze = host.invoke(["freeze", "--config", config, "--mount", fs.mountPoint, "--json"])
        documents.append(("freeze notice", freeze))
        if case .string(let id)? = (try? JSONParser.parse(freeze.stdout))?["operationID"] {
            documents.append(("thaw", host.invoke(["thaw", "--operation", id, "--json"])))
        }
        documents.append(("thaw without a session", host.invoke(["thaw", "--json"])))
        documents.append(
            (
                "check",
                host.invoke(["check", "--config", config, "--mount", fs.mountPoint, "--plugins-dir", plugins, "--json"])
            ))
        documents.append(("list", host.invoke(["list", "--plugins-dir", plugins, "--json"])))
        documents.append(("status", host.invoke(["status", "--json"])))
        documents.append(("recover", host.invoke(["recover", "--json"])))
        documents.append(("history", host.invoke(["history", "--json"])))
        #expect(documents.count == 9)
        for (name, invocation) in documents {
            let document = try? JSONParser.parse(invocation.stdout)
            #expect(
                document?["pluginhostVersion"] == .string(BuildInfo.version),
                "\(name): \(invocation.stdout) \(invocation.stderr)")
            #expect(document?["schemaVersion"] == .number(JSONNumber(BuildInfo.schemaVersion)), "\(name)")
        }
        // The kept report carries them too, and `status` shows the last one with its own.
        let status = try JSONParser.parse(documents.first { $0.0 == "status" }!.1.stdout)
        #expect(status["lastReport"]?["pluginhostVersion"] == .string(BuildInfo.version))
    }

    @Test func historyListsTheKeptReportsNewestFirstAndRetentionComesFromTheHostConfig() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let hostConfig = host.scratch.write("pluginhost.json", #"{"keepReports": 2}"#, mode: 0o600)
        var ids: [String] = []
        for failing in [false, false, true] {
            let run = host.invoke([
                "run", "--host-config", hostConfig, "--mount", fs.mountPoint, "--json", "--",
                failing ? "/bin/false" : "/bin/true",
            ])
            ids.append(try #require(run.report?.operationID, "\(run.stdout) \(run.stderr)"))
        }
        let history = host.invoke(["history", "--host-config", hostConfig, "--json"])
        #expect(history.status == 0, "\(history.stderr)")
        let document = try JSONParser.parse(history.stdout)
        guard case .array(let operations)? = document["operations"] else {
            Issue.record("no operations in \(history.stdout)")
            return
        }
        // keepReports 2: the oldest of three was pruned; newest first.
        #expect(operations.map { $0["operationID"] } == [.string(ids[2]), .string(ids[1])])
        #expect(operations.first?["result"] == .string("failed"))
        #expect(operations.first?["errorCodes"] == .array([.string("SnapshotCommandFailed")]))
        #expect(operations.last?["consistency"] == .string("filesystem"))
        #expect(operations.last?["freezeWindowMs"].map { if case .number = $0 { true } else { false } } == true)
        #expect(document["keepReports"] == .number(JSONNumber(2)))

        let limited = host.invoke(["history", "--host-config", hostConfig, "--limit", "1"])
        #expect(limited.status == 0)
        #expect(limited.stdout.contains(ids[2]) && !limited.stdout.contains(ids[1]))
        #expect(limited.stdout.hasPrefix("OPERATION"))
        #expect(host.invoke(["history", "--limit", "0"]).status == ExitStatus.invalid.rawValue)
    }

    /// The summary line is sent once the filesystems are thawed, never while they are frozen.
    @Test func oneSummaryLineGoesToTheSystemLogAfterTheThaw() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let receiver = try DatagramReceiver(path: host.scratch.path + "/log.sock")
        let hold = host.holdWhileFrozen(1)
        var environment = host.environment
        environment["PLUGINHOST_TEST_SYSLOG_SOCKET"] = receiver.path
        let running = RunningHost(
            try ChildProcess(
                spawning: Command(
                    executable: pluginhostBinary, arguments: ["run", "--mount", fs.mountPoint, "--json", "--", hold],
                    environment: environment), outputCapacity: 1 << 20))
        #expect(host.waitUntilFrozen() != nil)
        #expect(receiver.pending() == [], "a line was sent while frozen")
        let result = running.finish()
        let report = try #require(result.report, "\(result.stdout) \(result.stderr)")
        let lines = receiver.pending()
        #expect(lines.count == 1)
        let line = try #require(lines.first)
        // <daemon.warning> (a filesystem-consistent snapshot), glibc's syslog(3) header.
        #expect(line.hasPrefix("<28>"), "\(line)")
        #expect(
            line.contains(
                " pluginhost[\(running.pid)]: operation=\(report.operationID) command=run result=degraded consistency=filesystem snapshot=taken exit=1 frozen_mounts=1 freeze_window_ms="
            ))
        #expect(line.contains(" errors=none version=\(BuildInfo.version)"))
        #expect(
            line == "<28>" + line.dropFirst(4).prefix(15) + " pluginhost[\(running.pid)]: "
                + SystemLog.summary(of: report))

        // A failed one says its error codes, at error severity.
        var failing = environment
        failing["PLUGINHOST_TEST_SYSLOG_SOCKET"] = receiver.path
        let failed = RunningHost(
            try ChildProcess(
                spawning: Command(
                    executable: pluginhostBinary, arguments: ["run", "--mount", fs.mountPoint, "--", "/bin/false"],
                    environment: failing), outputCapacity: 1 << 20)
        ).finish()
        #expect(failed.status == ExitStatus.failed.rawValue)
        let failure = receiver.pending()
        #expect(failure.count == 1)
        #expect(failure.first?.hasPrefix("<27>") == true)
        #expect(
            failure.first?.contains("result=failed") == true
                && failure.first?.contains("errors=SnapshotCommandFailed") == true)
    }
}

/// A unix datagram socket standing in for /dev/log.
final class DatagramReceiver {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(
            AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard fd >= 0, bound == 0 else { throw FixtureError("cannot bind \(path)") }
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Every datagram received so far.
    func pending() -> [String] {
        var lines: [String] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            guard count > 0 else { return lines }
            lines.append(String(decoding: buffer[0..<count], as: UTF8.self))
        }
    }
}
