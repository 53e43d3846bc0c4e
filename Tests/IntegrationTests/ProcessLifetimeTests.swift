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

/// A reader or client that goes away never stops an operation (issue 11, item 2).
@Suite("Readers that go away", .serialized, .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct BrokenPipeTests {
    /// A pre-script that says it started, then waits (bounded) for the test's go.
    func waitingScript(_ host: HostSandbox, _ name: String, marker: String, waitFor go: String) -> String {
        let dir = host.scratch.path
        return host.script(name, """
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
        let post = host.script("post.sh", "#!/bin/sh\necho \"post $PLUGINHOST_RESULT\" >> '\(host.scratch.path)/post.log'\n")
        let client = host.start(["freeze", "--config", host.config(pre: pre, post: post), "--mount", fs.mountPoint,
                                 "--max-frozen", "60", "--json"])
        #expect(eventually { host.scratch.exists("pre.started") })
        kill(client.pid, SIGKILL)
        _ = client.finish()
        sh("touch '\(host.scratch.path)/go'")

        // The session writes its notice into the dead client's pipe (EPIPE), and goes on: it
        // stays frozen until thawed, then resumes, runs the post-script and reports.
        #expect(eventually { host.invoke(["status"]).stdout.hasPrefix("Frozen:") }, "the session did not reach the freeze")
        let thaw = host.invoke(["thaw", "--json"])
        #expect(thaw.status == 0, "\(thaw.stdout) \(thaw.stderr)")
        let report = try #require(thaw.report)
        #expect(report.consistency == .application)
        #expect(report.warnings.contains { $0.contains("the freeze client was gone before the freeze notice could be written") })
        #expect(host.scratch.read("post.log") == "post success\n")
        #expect(access(host.runDirectory + "/session.sock", F_OK) != 0, "session.sock was left behind")
        #expect(ReportStore(paths: StatePaths(runDirectory: host.runDirectory, stateDirectory: host.stateDirectory)).lastReport()?.operationID
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
        let pipeline = host.script("pipeline.sh", """
            #!/bin/bash
            "$@" 2>&1 | { head -1 > '\(dir)/first.line'; exec 0<&-; touch '\(dir)/closed'; }
            exit ${PIPESTATUS[0]}
            """)
        let result = capture(pipeline, [pluginhostBinary, "run", "-v", "--config", host.config(pre: pre, post: post),
                                        "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json", "--", snapshot],
                             environment: host.environment)
        #expect(result.termination == .exited(0), "\(result.stdout) \(result.stderr)")
        #expect(!host.scratch.read("first.line").isEmpty)
        #expect(host.scratch.exists("post.ran"))
        #expect(host.scratch.read("calls.log").contains("fixture resume"), "the plugin was not resumed")
        #expect(host.journal == nil, "the journal was left behind")
        let status = host.invoke(["status"]).stdout
        #expect(status.hasPrefix("Idle:"), "\(status)")
        let saved = ReportStore(paths: StatePaths(runDirectory: host.runDirectory, stateDirectory: host.stateDirectory)).lastReport()
        #expect(saved?.result == .succeeded)
        #expect(saved?.warnings.contains { $0.hasPrefix("log output failed") } == true, "\(saved?.warnings ?? [])")
    }
}
