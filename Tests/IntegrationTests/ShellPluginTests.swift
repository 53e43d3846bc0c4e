import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// The bundled shell plugin (libpluginhost-shell.so, built by the package) loaded like any other.
@Suite("Shell plugin", .serialized, .enabled(if: isRoot, "needs root for loop mounts and root-owned files"))
struct ShellPluginTests {
    /// Copies the built library into the sandbox (root's, 0755) and adds it.
    func addShell(_ host: HostSandbox, config: String, timeout: Int = 10) throws -> Invocation {
        let built = String(pluginhostBinary.dropLast("pluginhost".count)) + "libpluginhost-shell.so"
        try #require(access(built, R_OK) == 0, "build the package first: \(built)")
        let library = host.libraryDirectory + "/libpluginhost-shell.so"
        sh("install -m 0755 '\(built)' '\(library)'")
        return host.addPlugin(library, order: 10, timeout: timeout, config: config)
    }

    func run(_ host: HostSandbox) throws -> (Invocation, OperationReport?) {
        let fs = try LoopFilesystem(in: host.scratch)
        let snapshot = host.script("snapshot.sh", "#!/bin/sh\necho snapshot >> '\(host.scratch.path)/events'\n")
        let result = host.invoke([
            "run", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json", "--", snapshot,
        ])
        return (result, result.report)
    }

    @Test func runModeRunsQuiesceAndResumeCommands() throws {
        let host = HostSandbox()
        let events = host.scratch.path + "/events"
        let pause = host.script(
            "pause.sh", "#!/bin/sh\necho \"pause $PLUGINHOST_OPERATION_ID\" >> '\(events)'\necho paused\n")
        let resume = host.script("resume.sh", "#!/bin/sh\necho resume >> '\(events)'\n")
        let added = try addShell(host, config: "{\"quiesce\": [\"\(pause)\"], \"resume\": [\"\(resume)\"]}")
        #expect(added.status == 0, "\(added.stderr)")
        #expect(added.stdout.contains("shell 1.0.0"))
        let (result, report) = try run(host)
        #expect(result.status == 0, "\(result.stdout)")
        let lines = host.scratch.read("events").split(separator: "\n").map(String.init)
        #expect(lines == ["pause \(report?.operationID ?? "?")", "snapshot", "resume"])
        #expect(report?.plugins.first?.calls.first { $0.function == .quiesce }?.details?["quiesce_output"] == "paused")
    }

    @Test func holdModeKeepsTheCommandRunningUntilResume() throws {
        let host = HostSandbox()
        let events = host.scratch.path + "/events"
        let hold = host.script(
            "hold.sh",
            """
            #!/bin/sh
            echo held >> '\(events)'
            echo READY
            cat > /dev/null
            echo released >> '\(events)'
            """)
        #expect(try addShell(host, config: "{\"quiesce\": [\"\(hold)\"], \"hold\": true}").status == 0)
        let (result, _) = try run(host)
        #expect(result.status == 0, "\(result.stdout)")
        #expect(host.scratch.read("events") == "held\nsnapshot\nreleased\n")
    }

    @Test func aHeldCommandThatDiesBeforeResumeLosesConsistency() throws {
        let host = HostSandbox()
        // Ready, then gone while the snapshot runs (the snapshot command waits for that).
        let hold = host.script(
            "hold.sh", "#!/bin/sh\necho READY\nexec 1>&-\nsleep 0.2\necho gone >> '\(host.scratch.path)/events'\n")
        #expect(try addShell(host, config: "{\"quiesce\": [\"\(hold)\"], \"hold\": true}").status == 0)
        let fs = try LoopFilesystem(in: host.scratch)
        let snapshot = host.script(
            "wait.sh",
            "#!/bin/sh\nwhile ! grep -q gone '\(host.scratch.path)/events' 2>/dev/null; do sleep 0.05; done\nsleep 0.2\n"
        )
        let result = host.invoke([
            "run", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint, "--json", "--", snapshot,
        ])
        #expect(result.status == ExitStatus.degraded.rawValue)
        #expect(result.report?.errors.map(\.code) == [.pluginConsistencyLost])
        #expect(result.report?.consistency == .filesystem)
    }

    @Test func aHeldCommandThatExitsAtOnceFailsTheQuiesce() throws {
        let host = HostSandbox()
        let hold = host.script("hold.sh", "#!/bin/sh\necho not-the-ready-line\nexit 0\n")
        #expect(try addShell(host, config: "{\"quiesce\": [\"\(hold)\"], \"hold\": true}").status == 0)
        let (_, report) = try run(host)
        #expect(report?.errors.map(\.code) == [.pluginQuiesceFailed])
        #expect(report?.errors.first?.message.contains("instead of holding") == true)
    }

    @Test func aCommandThatNeverGetsReadyIsKilledAtTheDeadline() throws {
        let host = HostSandbox()
        let pids = host.scratch.path + "/pids"
        let hold = host.script("hold.sh", "#!/bin/sh\nsleep 300 &\necho $! >> '\(pids)'\nsleep 300\n")
        #expect(try addShell(host, config: "{\"quiesce\": [\"\(hold)\"], \"hold\": true}", timeout: 1).status == 0)
        let (_, report) = try run(host)
        #expect(report?.errors.map(\.code) == [.pluginQuiesceTimeout])
        // The plugin killed its whole process group: the grandchild is gone too.
        let grandchild = Int32(host.scratch.read("pids").filter(\.isNumber)) ?? 0
        for _ in 0..<200 where processExists(grandchild) { usleep(10_000) }
        #expect(!processExists(grandchild))
    }

    @Test func aFailingQuiesceCommandIsReportedWithItsOutput() throws {
        let host = HostSandbox()
        let pause = host.script("pause.sh", "#!/bin/sh\necho 'cannot pause: 3 writers active' >&2\nexit 5\n")
        let resume = host.script("resume.sh", "#!/bin/sh\n")
        #expect(try addShell(host, config: "{\"quiesce\": [\"\(pause)\"], \"resume\": [\"\(resume)\"]}").status == 0)
        let (_, report) = try run(host)
        #expect(report?.errors.map(\.code) == [.pluginQuiesceFailed])
        #expect(report?.errors.first?.message.contains("cannot pause: 3 writers active") == true)
    }

    @Test func badConfigIsRefusedWithTheKeyNamed() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = "{\"quiesce\": [\"relative/cmd\"], \"resume\": [\"\(host.script("resume.sh", "#!/bin/sh\n"))\"]}"
        // plugin add creates the plugin with its config and refuses what the plugin refuses…
        let added = try addShell(host, config: config)
        #expect(added.status == ExitStatus.invalid.rawValue)
        #expect(added.stderr.contains("config.quiesce") && added.stderr.contains("absolute path"), "\(added.stderr)")
        // …and a manifest written by hand is refused by check the same way.
        let library = host.libraryDirectory + "/libpluginhost-shell.so"
        host.writeManifest(
            "10-shell.json",
            "{\"name\": \"shell\", \"library\": \"\(library)\", \"sha256\": \"\(host.sha256(library))\", \"config\": \(config)}"
        )
        let check = host.invoke(["check", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint])
        #expect(check.status == ExitStatus.invalid.rawValue)
        #expect(check.stdout.contains("config.quiesce") && check.stdout.contains("absolute path"))
    }

    /// A shell library added under the mysql name with a MySQL config was written and
    /// listed as ready. plugin add calls create with the config and refuses what it refuses;
    /// a disabled manifest (a template to finish) is written with a warning.
    @Test func pluginAddRefusesAConfigThePluginRefuses() throws {
        let host = HostSandbox()
        let mysqlConfig = "{\"socket\": \"/run/mysqld/mysqld.sock\", \"optionFile\": \"/etc/pluginhost/mysql.cnf\"}"
        let built = String(pluginhostBinary.dropLast("pluginhost".count)) + "libpluginhost-shell.so"
        let library = host.libraryDirectory + "/libpluginhost-shell.so"
        sh("install -m 0755 '\(built)' '\(library)'")
        let added = host.addPlugin(library, name: "mysql", config: mysqlConfig)
        #expect(added.status == ExitStatus.invalid.rawValue)
        #expect(added.stderr.contains("refuses this config") && added.stderr.contains("unknown key"), "\(added.stderr)")
        #expect(!host.scratch.exists("plugins.d/50-mysql.json"))
        #expect(host.invoke(["list", "--plugins-dir", host.pluginsDirectory]).stdout.contains("(none)"))

        let disabled = host.addPlugin(library, name: "mysql", config: mysqlConfig, extra: ["--disabled"])
        #expect(disabled.status == 0, "\(disabled.stderr)")
        #expect(disabled.stderr.contains("warning") && disabled.stderr.contains("before enabling"))
    }

    /// The commands run as root, so only root may be able to change them: root's, executable
    /// by their owner, not writable by group or other, in directories only root can write (the
    /// scripts' messages and remedies). A refused command refuses the plugin at create: nothing is quiesced.
    static let untrusted: [(name: String, setUp: String, words: [String])] = [
        ("group-writable", "chmod 0775 SCRIPT", ["has mode 0775", "no group or other write bit", "chmod 755"]),
        ("writable by others", "chmod 0757 SCRIPT", ["has mode 0757", "chmod 755"]),
        ("owned by another user", "chown 65534 SCRIPT", ["owned by uid 65534", "chown root:root"]),
        (
            "in a directory others can write",
            "mkdir -p DIR/open && chmod 0777 DIR/open && mv SCRIPT DIR/open/pause.sh && ln -s DIR/open/pause.sh SCRIPT",
            ["writable by group or other", "chmod go-w"]
        ),
        ("missing", "rm SCRIPT", ["does not exist"]),
        // A script may be 0600 (it then runs through /bin/sh); a command is executed directly.
        ("without its execute bit", "chmod 0600 SCRIPT", ["has mode 0600", "the owner's execute bit", "chmod 755"]),
    ]

    @Test(arguments: untrusted)
    func untrustedCommandsAreRefusedLikeScripts(name: String, setUp: String, words: [String]) throws {
        let host = HostSandbox()
        let events = host.scratch.path + "/events"
        let pause = host.script("pause.sh", "#!/bin/sh\necho pause >> '\(events)'\n")
        let resume = host.script("resume.sh", "#!/bin/sh\necho resume >> '\(events)'\n")
        #expect(try addShell(host, config: "{\"quiesce\": [\"\(pause)\"], \"resume\": [\"\(resume)\"]}").status == 0)
        #expect(sh(setUp.replacing("SCRIPT", with: pause).replacing("DIR", with: host.scratch.path)) == 0)

        let fs = try LoopFilesystem(in: host.scratch, name: "checked")
        let check = host.invoke(["check", "--plugins-dir", host.pluginsDirectory, "--mount", fs.mountPoint])
        #expect(check.status == ExitStatus.invalid.rawValue, "\(check.stdout)")
        #expect(
            check.stdout.contains("PluginCheckFailed") && check.stdout.contains("config.quiesce"), "\(check.stdout)")
        for word in words { #expect(check.stdout.contains(word), "\(name): \(word) not in \(check.stdout)") }

        let (result, report) = try run(host)
        #expect(result.status == ExitStatus.degraded.rawValue, "\(result.stdout)")
        #expect(report?.errors.map(\.code) == [.pluginCheckFailed])
        #expect(!host.scratch.read("events").contains("pause"), "an untrusted command ran")
    }

    @Test func aCommandMadeUnsafeAfterCreateIsNotRun() throws {
        let host = HostSandbox()
        let events = host.scratch.path + "/events"
        let resume = host.script("resume.sh", "#!/bin/sh\necho resume >> '\(events)'\n")
        // The quiesce command loosens the resume command's mode: resume must refuse to run it.
        let pause = host.script("pause.sh", "#!/bin/sh\necho pause >> '\(events)'\nchmod 0777 '\(resume)'\n")
        #expect(try addShell(host, config: "{\"quiesce\": [\"\(pause)\"], \"resume\": [\"\(resume)\"]}").status == 0)
        let (_, report) = try run(host)
        #expect(report?.errors.map(\.code) == [.pluginResumeFailed])
        #expect(report?.errors.first?.message.contains("config.resume") == true)
        #expect(report?.errors.first?.message.contains("has mode 0777") == true)
        #expect(host.scratch.read("events") == "pause\nsnapshot\n")
    }
}
