import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// Real `.so` files compiled here, verified and loaded by the real binary in worker processes.
@Suite(
    "Plugins: verification, isolation, ordering", .serialized,
    .enabled(if: isRoot, "needs root for loop mounts and root-owned files"))
struct PluginTests {
    /// Runs a whole operation with the sandbox's plugins on a fresh loop filesystem; the
    /// snapshot command appends "snapshot" to the calls log.
    func operation(_ host: HostSandbox, extraArguments: [String] = [], config: String? = nil) throws -> (
        Invocation, OperationReport?
    ) {
        let fs = try LoopFilesystem(in: host.scratch)
        let snapshot = host.script("snapshot.sh", "#!/bin/sh\necho \"snapshot\" >> '\(host.scratch.path)/calls.log'\n")
        var arguments =
            ["run", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json"] + extraArguments
        if let config { arguments += ["--config", config] }
        let result = host.invoke(arguments + ["--", snapshot])
        return (result, result.report)
    }

    func calls(_ host: HostSandbox) -> [String] {
        host.scratch.read("calls.log").split(separator: "\n").map {
            $0.split(separator: " ").prefix(2).joined(separator: " ")
        }
    }

    @Test func aGoodPluginIsAddedListedAndQuiescedAroundTheFreeze() throws {
        let host = HostSandbox()
        let library = try fixturePlugin("GOOD", in: host.libraryDirectory)
        let added = host.addPlugin(library, order: 10, config: "{\"log\":\"\(host.scratch.path)/calls.log\"}")
        #expect(added.status == 0, "\(added.stdout) \(added.stderr)")
        #expect(added.stdout.contains("10-fixture.json"))

        let list = host.invoke(["list", "--plugins-dir", host.pluginsDirectory])
        #expect(list.status == 0, "\(list.stdout)")
        #expect(list.stdout.contains("fixture") && list.stdout.contains("1.0") && list.stdout.contains("ok"))
        #expect(
            calls(host) == ["fixture create", "fixture destroy"],
            "plugin add creates it once with its config; list only loads")
        sh("rm -f '\(host.scratch.path)/calls.log'")

        let (result, report) = try operation(host)
        #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
        #expect(report?.consistency == .application)
        #expect(
            calls(host) == [
                "fixture create", "fixture quiesce-start", "fixture quiesce-end", "snapshot", "fixture resume",
                "fixture destroy",
            ])
        let record = try #require(report?.plugins.first)
        #expect(record.version == "1.0" && record.abi == "1.0")
        #expect(record.calls.map(\.function) == [.load, .create, .dataPaths, .quiesce, .resume])
        #expect(record.calls.first { $0.function == .quiesce }?.details?["position"] == "42")
    }

    static let refusedBuilds: [(behaviour: String, check: String)] = [
        ("WRONG_MAGIC", "magic"), ("WRONG_MAJOR", "abi-major"), ("SMALL_STRUCT", "struct-size"),
        ("NO_ENTRY", "entry"), ("MISSING_QUIESCE", "function"), ("RESERVED", "reserved"),
        ("TRAILING", "trailing-fields"),
    ]

    @Test(arguments: refusedBuilds)
    func anIncompatibleBuildIsRefusedAndNeverQuiesced(behaviour: String, check: String) throws {
        let host = HostSandbox()
        let library = try fixturePlugin(behaviour, in: host.libraryDirectory)
        // `plugin add` refuses it outright…
        let added = host.addPlugin(library, name: "fixture")
        #expect(added.status == ExitStatus.invalid.rawValue)
        #expect(added.stderr.contains(check), "\(added.stderr)")
        // …and a hand-written manifest gets it refused at every operation.
        host.writeManifest(
            "20-fixture.json",
            """
            {"name": "fixture", "library": "\(library)", "sha256": "\(host.sha256(library))",
             "config": {"log": "\(host.scratch.path)/calls.log"}}
            """)
        let list = host.invoke(["list", "--plugins-dir", host.pluginsDirectory, "--json"])
        #expect(list.status == ExitStatus.invalid.rawValue)
        #expect(list.stdout.contains("\(check):"), "\(list.stdout)")
        let (result, report) = try operation(host)
        #expect(result.status == ExitStatus.degraded.rawValue, "\(result.stdout)")
        #expect(report?.consistency == .filesystem && report?.snapshotTaken == true)
        #expect(report?.errors.map(\.code) == [.incorrectPluginhostFile])
        #expect(report?.errors.first?.message.contains("fixture") == true)
        // Refused while the plugins were set up, not "during quiesce".
        #expect(report?.errors.first?.step == "prepare")
        #expect(!calls(host).contains { $0.hasPrefix("fixture quiesce") })
    }

    @Test func aRefusedPluginWithoutContinueFailsTheOperationAndFreezesNothing() throws {
        let host = HostSandbox()
        let library = try fixturePlugin("WRONG_MAGIC", in: host.libraryDirectory)
        host.writeManifest(
            "20-fixture.json",
            "{\"name\": \"fixture\", \"library\": \"\(library)\", \"sha256\": \"\(host.sha256(library))\"}")
        let config = host.config(
            """
            {"preScriptLocation": "\(host.script("pre.sh", "#!/bin/sh\n"))", "postScriptLocation": "\(host.script("post.sh", "#!/bin/sh\n"))",
             "continueBackupOnFailure": false}
            """)
        let (result, report) = try operation(host, config: config)
        #expect(result.status == ExitStatus.failed.rawValue)
        #expect(report?.freeze == nil && report?.snapshotTaken == false)
        #expect(report?.steps.map(\.name) == ["checks", "prepare", "pre-script", "flush", "quiesce", "post-script"])
    }

    @Test func filesThatFailTheirChecksAreRefused() throws {
        let host = HostSandbox()
        let lib = host.libraryDirectory
        let good = try fixturePlugin("GOOD", in: lib)
        let digest = host.sha256(good)
        func refusal(_ manifest: String, mode: mode_t = 0o644) -> String {
            sh("rm -f '\(host.pluginsDirectory)'/*.json")
            host.writeManifest("30-fixture.json", manifest, mode: mode)
            return host.invoke(["list", "--plugins-dir", host.pluginsDirectory, "--json"]).stdout
        }
        func manifest(_ library: String, sha: String) -> String {
            "{\"name\": \"fixture\", \"library\": \"\(library)\", \"sha256\": \"\(sha)\"}"
        }
        // Checksum mismatch.
        #expect(refusal(manifest(good, sha: String(repeating: "0", count: 64))).contains("checksum:"))
        // Library replaced after the manifest was written.
        let replaced = try fixturePlugin("FAIL_QUIESCE", in: lib)
        let original = host.sha256(replaced)
        _ = try compilePlugin(
            "\(repositoryRoot)/Tests/Fixtures/fixture_plugin.c", to: replaced,
            defines: ["BEHAVIOUR_GOOD", "PLUGIN_NAME=\\\"other\\\""])
        #expect(refusal(manifest(replaced, sha: original)).contains("checksum:"))
        // Not an ELF file; truncated library.
        let text = host.scratch.write(lib + "/libtext.so", "not a library\n", mode: 0o644)
        #expect(refusal(manifest(text, sha: host.sha256(text))).contains("elf:"))
        let truncated = lib + "/libtruncated.so"
        sh("head -c 3000 '\(good)' > '\(truncated)'")
        #expect(refusal(manifest(truncated, sha: host.sha256(truncated))).contains("elf:"))
        #expect(refusal(manifest(truncated, sha: host.sha256(truncated))).contains("is truncated"))
        // Group-writable; owned by another user.
        let writable = lib + "/libwritable.so"
        sh("cp '\(good)' '\(writable)' && chmod 664 '\(writable)'")
        #expect(refusal(manifest(writable, sha: digest)).contains("mode 0664"))
        let foreign = lib + "/libforeign.so"
        sh("cp '\(good)' '\(foreign)' && chown 65534 '\(foreign)'")
        #expect(refusal(manifest(foreign, sha: digest)).contains("owned by uid 65534"))
        // A symlink to an unverified file (owned by someone else).
        let link = lib + "/liblink.so"
        symlink(foreign, link)
        #expect(refusal(manifest(link, sha: digest)).contains("owned by uid 65534"))
        // The manifest itself: writable by others, owned by another user.
        #expect(refusal(manifest(good, sha: digest), mode: 0o666).contains("manifest:"))
        // A library in a directory others can write.
        let open = host.scratch.mkdir("open")
        chmod(open, 0o777)
        sh("cp '\(good)' '\(open)/libopen.so'")
        #expect(refusal(manifest(open + "/libopen.so", sha: digest)).contains("writable by group or other"))
        // And the good one passes.
        #expect(refusal(manifest(good, sha: digest)).contains("\"state\" : \"ready\""))
    }

    @Test func aPluginThatCrashesInQuiesceIsKilledAndTheOthersCarryOn() throws {
        let host = HostSandbox()
        let log = "{\"log\":\"\(host.scratch.path)/calls.log\"}"
        host.addPlugin(try fixturePlugin("GOOD", in: host.libraryDirectory, name: "steady"), order: 10, config: log)
        host.writeManifest(
            "20-crasher.json",
            """
            {"name": "crasher", "library": "\(try fixturePlugin("SEGV_QUIESCE", in: host.libraryDirectory, name: "crasher"))",
             "sha256": "\(host.sha256(host.libraryDirectory + "/libcrasher-segv_quiesce.so"))", "config": \(log)}
            """)
        let (result, report) = try operation(host)
        #expect(result.status == ExitStatus.degraded.rawValue, "\(result.stdout) \(result.stderr)")
        #expect(report?.errors.map(\.code) == [.pluginCrashed])
        #expect(report?.errors.first?.message.contains("SIGSEGV") == true)
        #expect(report?.consistency == .filesystem && report?.snapshotTaken == true)
        #expect(calls(host).contains("steady resume"))
        #expect(report?.freeze?.mounts.first?.thaw == .thawed)
    }

    @Test func hangsPastTheDeadlineAreKilled() throws {
        let host = HostSandbox()
        let log = "{\"log\":\"\(host.scratch.path)/calls.log\"}"
        host.writeManifest(
            "10-hang.json",
            """
            {"name": "hang", "library": "\(try fixturePlugin("HANG_QUIESCE", in: host.libraryDirectory, name: "hang"))",
             "sha256": "\(host.sha256(host.libraryDirectory + "/libhang-hang_quiesce.so"))", "timeoutSeconds": 1, "config": \(log)}
            """)
        host.writeManifest(
            "20-stuck.json",
            """
            {"name": "stuck", "library": "\(try fixturePlugin("HANG_RESUME", in: host.libraryDirectory, name: "stuck"))",
             "sha256": "\(host.sha256(host.libraryDirectory + "/libstuck-hang_resume.so"))", "timeoutSeconds": 1, "config": \(log)}
            """)
        let (result, report) = try operation(host)
        #expect(result.status == ExitStatus.degraded.rawValue, "\(result.stdout)")
        #expect(report?.errors.map(\.code) == [.pluginQuiesceTimeout, .pluginResumeTimeout])
        let hang = report?.plugins.first { $0.name == "hang" }
        #expect(hang?.calls.first { $0.function == .quiesce }?.outcome == .timedOut)
        #expect(hang?.calls.first { $0.function == .resume }?.outcome == .skipped)
        #expect(report?.freeze?.mounts.first?.thaw == .thawed)
    }

    /// A worker that died during the hold (nobody was waiting on it) had no resume in
    /// its plugin's call list, as if resume had never been tried.
    @Test func aDeadWorkersResumeIsListed() throws {
        let host = HostSandbox()
        host.addPlugin(try fixturePlugin("DIE_AFTER_QUIESCE", in: host.libraryDirectory, name: "mortal"))
        let fs = try LoopFilesystem(in: host.scratch)
        let snapshot = host.script("snapshot.sh", "#!/bin/sh\nsleep 2\n")
        let result = host.invoke([
            "run", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json", "--", snapshot,
        ])
        let record = try #require(result.report?.plugins.first, "\(result.stdout) \(result.stderr)")
        #expect(record.calls.map(\.function) == [.load, .create, .dataPaths, .quiesce, .resume])
        let resume = record.calls.last
        #expect(resume?.outcome == .crashed || resume?.outcome == .skipped, "\(String(describing: resume))")
        #expect(resume?.message?.contains("signal 14") == true, "\(String(describing: resume?.message))")
        #expect(result.report?.errors.map(\.code) == [.pluginCrashed])
    }

    @Test func aFloodingLogIsCappedAndTheHostStaysFine() throws {
        let host = HostSandbox()
        host.addPlugin(try fixturePlugin("LOG_FLOOD", in: host.libraryDirectory, name: "chatty"))
        let (result, report) = try operation(host)
        #expect(result.status == 0, "\(result.stderr.suffix(500))")
        let record = try #require(report?.plugins.first)
        #expect(record.logLines.count == 100)
        #expect(record.droppedLogLines == 19900)
    }

    @Test func garbageFromAWorkerKillsIt() throws {
        let host = HostSandbox()
        host.writeManifest(
            "10-garbage.json",
            """
            {"name": "garbage", "library": "\(try fixturePlugin("GARBAGE", in: host.libraryDirectory, name: "garbage"))",
             "sha256": "\(host.sha256(host.libraryDirectory + "/libgarbage-garbage.so"))"}
            """)
        let (_, report) = try operation(host)
        #expect(report?.errors.map(\.code) == [.pluginCrashed])
        #expect(report?.errors.first?.message.contains("not a message") == true)
    }

    @Test func failedQuiesceAndLostConsistencyHaveTheirCodes() throws {
        let host = HostSandbox()
        host.addPlugin(try fixturePlugin("FAIL_QUIESCE", in: host.libraryDirectory, name: "busy"), order: 10)
        host.addPlugin(try fixturePlugin("LOST_RESUME", in: host.libraryDirectory, name: "lost"), order: 20)
        let (result, report) = try operation(host)
        #expect(result.status == ExitStatus.degraded.rawValue)
        #expect(report?.errors.map(\.code) == [.pluginQuiesceFailed, .pluginConsistencyLost])
        #expect(report?.errors.first?.message.contains("busy") == true)
        #expect(report?.consistency == .filesystem)
    }

    @Test func lostConsistencyAloneLowersTheLevel() throws {
        let host = HostSandbox()
        host.addPlugin(try fixturePlugin("LOST_RESUME", in: host.libraryDirectory, name: "lost"))
        let (result, report) = try operation(host)
        #expect(result.status == ExitStatus.degraded.rawValue)
        #expect(report?.consistency == .filesystem)
    }

    @Test func sameOrderRunsConcurrentlyLowerFirstResumeInReverse() throws {
        let host = HostSandbox()
        let config = "{\"log\":\"\(host.scratch.path)/calls.log\",\"sleep_ms\":400}"
        host.addPlugin(try fixturePlugin("GOOD", in: host.libraryDirectory, name: "first"), order: 10, config: config)
        host.addPlugin(try fixturePlugin("GOOD", in: host.libraryDirectory, name: "twin-a"), order: 20, config: config)
        host.addPlugin(try fixturePlugin("GOOD", in: host.libraryDirectory, name: "twin-b"), order: 20, config: config)
        let (result, _) = try operation(host)
        #expect(result.status == 0, "\(result.stdout)")
        let lines = host.scratch.read("calls.log").split(separator: "\n").map {
            $0.split(separator: " ").map(String.init)
        }.filter { $0.count == 3 }
        func time(_ name: String, _ event: String) -> Int {
            Int(lines.first { $0[0] == name && $0[1] == event }?[2] ?? "") ?? -1
        }
        // first quiesces before either twin starts; the twins overlap.
        #expect(time("first", "quiesce-end") <= time("twin-a", "quiesce-start"))
        #expect(time("first", "quiesce-end") <= time("twin-b", "quiesce-start"))
        #expect(time("twin-a", "quiesce-start") < time("twin-b", "quiesce-end"))
        #expect(time("twin-b", "quiesce-start") < time("twin-a", "quiesce-end"))
        // Resume in reverse order: the twins before first.
        let resumes = lines.filter { $0[1] == "resume" }.map { $0[0] }
        #expect(resumes.last == "first" && Set(resumes.prefix(2)) == ["twin-a", "twin-b"])
    }

    @Test func dataOutsideTheFreezeIsWarnedAbout() throws {
        let host = HostSandbox()
        host.addPlugin(
            try fixturePlugin("GOOD", in: host.libraryDirectory, name: "elsewhere", extra: ["DATA_PATH=\\\"/tmp\\\""]))
        let (_, report) = try operation(host)
        #expect(
            report?.warnings.contains {
                $0.contains("elsewhere keeps data in /tmp") && $0.contains("not be consistent")
            } == true)
    }

    @Test func checkCallsEachPluginsCheckWithoutQuiescing() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        host.addPlugin(
            try fixturePlugin("GOOD", in: host.libraryDirectory), config: "{\"log\":\"\(host.scratch.path)/calls.log\"}"
        )
        #expect(
            calls(host) == ["fixture create", "fixture destroy"], "plugin add creates the plugin once with its config")
        sh("rm -f '\(host.scratch.path)/calls.log'")
        let check = host.invoke(["check", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json"])
        #expect(check.status == 0, "\(check.stdout)")
        #expect(check.stdout.contains("fixture_version"))
        #expect(calls(host) == ["fixture create", "fixture check", "fixture destroy"])
    }

    @Test func theCExampleWorksEndToEnd() throws {
        let host = HostSandbox()
        let library = try compilePlugin(
            "\(repositoryRoot)/examples/plugins/flagfile.c", to: host.libraryDirectory + "/libflagfile.so")
        let app = host.scratch.mkdir("app")
        let added = host.addPlugin(library, config: "{\"flag\":\"\(app)/pause\",\"dataDirectory\":\"\(app)\"}")
        #expect(added.status == 0, "\(added.stderr)")
        // The "application": acknowledges the flag while it exists, as a real one would.
        let application = try ChildProcess(
            spawning: Command(
                executable: "/bin/sh",
                arguments: [
                    "-c",
                    "while :; do if [ -e '\(app)/pause' ]; then echo paused >> '\(host.scratch.path)/seen'; touch '\(app)/pause.ack'; fi; sleep 0.01; done",
                ],
                environment: ["PATH": "/usr/bin:/bin"]))
        defer { application.terminateGroup(grace: .zero) }
        let (result, report) = try operation(host)
        #expect(result.status == 0, "\(result.stdout)")
        #expect(report?.plugins.first?.calls.first { $0.function == .quiesce }?.details?["ack_ms"] != nil)
        #expect(!host.scratch.exists("app/pause"), "resume removes the flag")
        #expect(host.scratch.read("seen").hasPrefix("paused\n"))
    }

    @Test func aVendorLibraryBoundThroughLibffi() throws {
        let host = HostSandbox()
        let library = try compilePlugin(
            "\(repositoryRoot)/Tests/Fixtures/vendor_library.c", to: host.libraryDirectory + "/libvendor.so")
        let log = host.scratch.path + "/vendor.log"
        let spec = host.scratch.write(
            "ffi.json",
            """
            {"quiesce": {"symbol": "vendor_suspend", "arguments": [
                {"type": "string", "value": "\(log)"}, {"type": "string", "from": "operationID"},
                {"type": "int32", "from": "remainingMilliseconds"}, {"type": "bool", "value": true}]},
             "resume": {"symbol": "vendor_resume", "returns": "int64",
                        "arguments": [{"type": "string", "value": "\(log)"}, {"type": "string", "value": "db1"}]},
             "check": {"symbol": "vendor_ping", "returns": "bool"}}
            """)
        let added = host.addPlugin(library, name: "vendor", extra: ["--ffi", spec])
        #expect(added.status == 0, "\(added.stderr)")
        let (result, report) = try operation(host)
        #expect(result.status == 0, "\(result.stdout)")
        let lines = host.scratch.read(log).split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix("suspend+flush \(report?.operationID ?? "?") 1") == true)
        #expect(lines.last == "resume db1 0")

        // A function that returns something other than success fails the quiesce.
        let refusing = host.scratch.write(
            "ffi2.json",
            """
            {"quiesce": {"symbol": "vendor_refuse", "arguments": [{"type": "string", "value": "\(log)"}]},
             "resume": {"symbol": "vendor_ping", "returns": "bool"}}
            """)
        #expect(host.addPlugin(library, name: "vendor", extra: ["--ffi", refusing, "--force"]).status == 0)
        let (_, second) = try operation(host)
        #expect(second?.errors.first?.message.contains("returned 17") == true)
        // A symbol the library lacks is refused at load.
        let missing = host.scratch.write(
            "ffi3.json",
            "{\"quiesce\": {\"symbol\": \"nope\"}, \"resume\": {\"symbol\": \"vendor_ping\", \"returns\": \"bool\"}}")
        let refused = host.addPlugin(library, name: "vendor", extra: ["--ffi", missing, "--force"])
        #expect(refused.status == ExitStatus.invalid.rawValue && refused.stderr.contains("no function nope"))
    }
}
