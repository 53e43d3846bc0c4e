import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// Every input that could make an operation unbounded has a documented cap.
@Suite("Bounds", .serialized, .enabled(if: isRoot, "needs root for loop mounts and root-owned files"))
struct BoundsTests {
    /// 2147483647 retries of a failing pre-script held the lock forever, grew the host by 3 MB/s
    /// and made a report nobody could read back. Now: 10 retries at most, and the report reads back.
    @Test func retriesAreCappedAndTheReportReadsBack() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let count = host.scratch.path + "/count"
        let pre = host.script(
            "pre.sh",
            "#!/bin/sh\necho run >> '\(count)'\nhead -c 100000 /dev/zero | tr '\\0' x\necho\necho 'ERROR: still failing'\nexit 1\n"
        )
        let post = host.script("post.sh", "#!/bin/sh\n")
        let config = host.config(pre: pre, post: post, extra: "\"preScriptNoOfRetries\": 2147483647")
        let snapshot = host.script("snapshot.sh", "#!/bin/sh\n")
        let result = host.invoke(["run", "--config", config, "--mount", fs.mountPoint, "--json", "--", snapshot])
        #expect(
            result.status == ExitStatus.degraded.rawValue, "\(result.stdout.suffix(2000)) \(result.stderr.suffix(500))")
        let report = try #require(result.report)
        #expect(report.scripts.first?.attempts.count == ScriptConfig.maximumRetries + 1)
        #expect(host.scratch.read("count").split(separator: "\n").count == 11)
        #expect(
            report.warnings.contains { $0.contains("preScriptNoOfRetries 2147483647 is over the limit; 10 is used") })
        #expect(report.scripts.first?.attempts.last?.stdoutTail.hasSuffix("ERROR: still failing\n") == true)

        let status = host.invoke(["status", "--json"])
        #expect(status.stdout.contains(report.operationID), "\(status.stdout.prefix(500))")
        let byID = host.invoke(["thaw", "--operation", report.operationID, "--json"])
        #expect(byID.report?.operationID == report.operationID, "\(byID.stderr)")
    }

    /// The operation's time limit (`maxOperationSeconds` in the host config) stops a pre-script
    /// attempt that is still running and starts no retry; the post-script still runs.
    @Test func theOperationsTimeLimitStopsThePreScript() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let log = host.scratch.path + "/phases.log"
        let pre = host.script("pre.sh", "#!/bin/sh\necho pre >> '\(log)'\nexec sleep 60\n")
        let post = host.script("post.sh", "#!/bin/sh\necho \"post $PLUGINHOST_RESULT\" >> '\(log)'\n")
        let config = host.config(
            """
            {"preScriptLocation": "\(pre)", "postScriptLocation": "\(post)", "preScriptNoOfRetries": 5, "timeoutInSeconds": 50}
            """)
        let hostConfig = host.scratch.write("pluginhost.json", "{\"maxOperationSeconds\": 10}", mode: 0o644)
        let snapshot = host.script("snapshot.sh", "#!/bin/sh\n")
        let result = host.invoke([
            "run", "--config", config, "--host-config", hostConfig, "--mount", fs.mountPoint, "--json", "--", snapshot,
        ])
        let report = try #require(result.report, "\(result.stdout) \(result.stderr)")
        #expect(report.errors.map(\.code) == [.preScriptTimeout])
        #expect(report.errors.first?.message.contains("time limit") == true)
        #expect(report.scripts.first?.attempts.count == 1)
        #expect(host.scratch.read("phases.log") == "pre\npost success\n")
        #expect(report.snapshotTaken && report.consistency == .filesystem)
    }

    /// 2,000 disabled manifests under `ulimit -n 1024`: each one used to keep its library open,
    /// so the scripts, the guard and the snapshot failed with EMFILE. Disabled plugins are never
    /// opened now, and `list` loads them a few at a time.
    @Test func thousandsOfDisabledManifestsOpenNothing() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let log = host.scratch.path + "/calls.log"
        let library = try fixturePlugin("GOOD", in: host.libraryDirectory)
        let digest = host.sha256(library)
        host.writeManifest(
            "10-fixture.json",
            "{\"name\": \"fixture\", \"library\": \"\(library)\", \"sha256\": \"\(digest)\", \"config\": {\"log\": \"\(log)\"}}"
        )
        #expect(
            sh(
                """
                cd '\(host.pluginsDirectory)' && for i in $(seq 1 2000); do
                  printf '{"name": "off%d", "library": "%s", "sha256": "%s", "enabled": false}' $i '\(library)' '\(digest)' > 50-off$i.json
                done
                """) == 0)
        let pre = host.script("pre.sh", "#!/bin/sh\necho pre >> '\(log)'\n")
        let post = host.script("post.sh", "#!/bin/sh\necho post >> '\(log)'\n")
        let config = host.config(pre: pre, post: post)
        let snapshot = host.script("snapshot.sh", "#!/bin/sh\necho snapshot >> '\(log)'\n")
        func limited(_ arguments: [String]) -> Invocation {
            let quoted = arguments.map { "'\($0)'" }.joined(separator: " ")
            let output = capture(
                "/bin/sh", ["-c", "ulimit -n 1024 && exec '\(pluginhostBinary)' \(quoted)"],
                environment: host.environment)
            var status: Int32 = -1
            if case .exited(let code)? = output.termination { status = code }
            return Invocation(status: status, stdout: output.stdout, stderr: output.stderr)
        }
        let result = limited([
            "run", "--config", config, "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json", "--",
            snapshot,
        ])
        #expect(result.status == 0, "\(result.stdout.suffix(3000)) \(result.stderr.suffix(1000))")
        #expect(result.report?.consistency == .application)
        let calls = host.scratch.read("calls.log").split(separator: "\n").map {
            $0.split(separator: " ").prefix(2).joined(separator: " ")
        }
        #expect(
            Array(calls.prefix(6)) == [
                "fixture create", "pre", "fixture quiesce-start", "fixture quiesce-end", "snapshot", "fixture resume",
            ],
            "\(calls)")
        #expect(Set(calls.dropFirst(6)) == ["post", "fixture destroy"])

        let list = limited(["list", "--plugins-dir", host.pluginsDirectory, "--json"])
        #expect(list.status == 0, "\(list.stderr.suffix(1000))")
        #expect(list.stdout.ranges(of: "\"state\" : \"disabled\"").count == 2000, "\(list.stdout.prefix(1000))")
    }

    @Test func morePluginsThanTheLimitAreRefusedClearly() throws {
        let host = HostSandbox()
        let library = try fixturePlugin("GOOD", in: host.libraryDirectory)
        let digest = host.sha256(library)
        #expect(
            sh(
                """
                cd '\(host.pluginsDirectory)' && for i in $(seq 10 \(10 + PluginCatalog.maximumEnabled)); do
                  printf '{"name": "on%d", "library": "%s", "sha256": "%s"}' $i '\(library)' '\(digest)' > 20-on$i.json
                done
                """) == 0)
        let fs = try LoopFilesystem(in: host.scratch)
        let check = host.invoke(["check", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json"])
        #expect(check.status == ExitStatus.invalid.rawValue)
        #expect(check.stdout.contains("more than 64 plugins are enabled"), "\(check.stdout.suffix(2000))")
        #expect(check.stdout.contains("IncorrectPluginhostFile"))
    }

    /// A manifest `config` of 256 KiB–1 MiB passed the checks and then killed its worker
    /// (PluginCrashed, "worker stopped answering"). One limit, checked with the manifest.
    @Test(arguments: [70 << 10, 300 << 10, 1000 << 10])
    func anOversizedConfigIsRefusedUpFront(bytes: Int) throws {
        let host = HostSandbox()
        let library = try fixturePlugin("GOOD", in: host.libraryDirectory)
        let filler = String(repeating: "x", count: bytes)
        host.writeManifest(
            "10-fixture.json",
            "{\"name\": \"fixture\", \"library\": \"\(library)\", \"sha256\": \"\(host.sha256(library))\", \"config\": {\"filler\": \"\(filler)\"}}"
        )
        let fs = try LoopFilesystem(in: host.scratch)
        let check = host.invoke(["check", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json"])
        #expect(check.status == ExitStatus.invalid.rawValue)
        #expect(
            check.stdout.contains("IncorrectPluginhostFile") && check.stdout.contains("config: "),
            "\(check.stdout.prefix(3000))")
        #expect(check.stdout.contains("at most 65536"))
        #expect(!check.stdout.contains("PluginCrashed"))
        // plugin add applies the same rule.
        let configFile = host.scratch.write("big.json", "{\"filler\": \"\(filler)\"}")
        let added = host.invoke([
            "plugin", "add", library, "--plugins-dir", host.scratch.mkdir("other.d"), "--config-file", configFile,
        ])
        #expect(
            added.status == ExitStatus.invalid.rawValue && added.stderr.contains("at most 65536"), "\(added.stderr)")
    }

    @Test func aConfigJustUnderTheLimitReachesThePlugin() throws {
        let host = HostSandbox()
        let log = host.scratch.path + "/calls.log"
        let library = try fixturePlugin("GOOD", in: host.libraryDirectory)
        let filler = String(repeating: "x", count: PluginManifest.maximumConfigBytes - 200)
        let added = host.addPlugin(library, config: "{\"log\":\"\(log)\",\"filler\":\"\(filler)\"}")
        #expect(added.status == 0, "\(added.stderr)")
        let fs = try LoopFilesystem(in: host.scratch)
        let check = host.invoke(["check", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint])
        #expect(check.status == 0, "\(check.stdout.suffix(1000))")
        #expect(host.scratch.read("calls.log").contains("fixture create"))
    }
}
