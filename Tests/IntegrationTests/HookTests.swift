import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// The binary as the real agents call it — under hook names, with VMware's exact
/// convention, degraded operations that must not fail the agent, a quiesce no agent thaws,
/// relative paths.
@Suite("Hooks as the agents call them", .serialized, .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct HookTests {
    /// Pre/post scripts that log what they are told.
    func scripts(_ host: HostSandbox, preExit: Int = 0, extra: String = "") -> String {
        let log = host.scratch.path + "/phases.log"
        let pre = host.script("pre.sh", "#!/bin/sh\necho \"pre $*\" >> \(log)\nexit \(preExit)\n")
        let post = host.script(
            "post.sh", "#!/bin/sh\necho \"post $PLUGINHOST_RESULT $PLUGINHOST_CONSISTENCY\" >> \(log)\n")
        return host.config(pre: pre, post: post, extra: extra)
    }

    /// A symlink to the binary at `path` (directories made as needed).
    func link(_ path: String) -> String {
        sh("mkdir -p \"$(dirname '\(path)')\" && ln -sf '\(pluginhostBinary)' '\(path)'")
        return path
    }

    // MARK: - Names (item 6)

    /// Measured: installed as /usr/sbin/pre-freeze-script, the agent's `freeze` ran the
    /// top-level `pluginhost freeze`. Now it is VMware's freeze hook: quiesce, never freeze.
    @Test func theLegacyPreFreezeScriptIsTheVMwareHookNeverTheFreezeCommand() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = scripts(host)
        let preFreeze = link(host.scratch.path + "/sbin/pre-freeze-script")
        let postThaw = link(host.scratch.path + "/sbin/post-thaw-script")
        // --mount keeps the old behaviour (a top-level freeze) to this loop filesystem.
        let freeze = host.invoke(["freeze", "--config", config, "--mount", fs.mountPoint], as: preFreeze)
        #expect(freeze.status == 0, "\(freeze.stdout) \(freeze.stderr)")
        #expect(freeze.stdout.hasPrefix("Quiesced: operation"), "\(freeze.stdout)")
        #expect(try Writer(file: fs.mountPoint + "/probe").finishes(within: 10), "the hook froze the filesystem")
        #expect(host.journal == nil)
        #expect(host.scratch.read("phases.log") == "pre \n")

        let thaw = host.invoke(["thaw", "--json"], as: postThaw)
        #expect(thaw.status == 0, "\(thaw.stdout) \(thaw.stderr)")
        #expect(thaw.report?.command == "hook vmware")
        #expect(host.scratch.read("phases.log") == "pre \npost success application\n")
        // Each legacy name takes only the action VMware calls it with.
        #expect(host.invoke(["thaw"], as: preFreeze).status == ExitStatus.invalid.rawValue)
        #expect(host.invoke(["freeze", "--mount", fs.mountPoint], as: postThaw).status == ExitStatus.invalid.rawValue)
        #expect(host.waitUntilIdle())
    }

    /// Any other name: a clear error, exit 3, nothing run and nothing frozen.
    @Test func anUnknownNameRefusesEveryCommand() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let helper = link(host.scratch.path + "/bin/snapshot-helper")
        for arguments in [
            ["freeze", "--mount", fs.mountPoint], ["run", "--mount", fs.mountPoint, "--", "/bin/true"],
            ["hook", "qemu", "freeze", "--mount", fs.mountPoint], ["recover"], ["thaw"], [],
        ] {
            let result = host.invoke(arguments, as: helper)
            #expect(result.status == ExitStatus.invalid.rawValue, "\(arguments): \(result.stdout) \(result.stderr)")
            #expect(result.stderr.contains("a name it does not answer to") && result.stderr.contains("nothing was run"))
            #expect(result.stdout.isEmpty)
        }
        #expect(try Writer(file: fs.mountPoint + "/probe").finishes(within: 10))
        #expect(host.journal == nil && OperationLock.currentHolder(paths: host.paths) == nil)
        #expect(ReportStore(paths: host.paths).lastReport() == nil)
    }

    /// A copy of the binary (not a symlink) named fsfreeze-hook re-executes itself under that
    /// name as the session: its internal roles must still work.
    @Test func aCopyNamedFsfreezeHookRunsItsInternalRoles() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = scripts(host)
        let hook = host.scratch.mkdir("libexec") + "/fsfreeze-hook"
        try #require(sh("cp '\(pluginhostBinary)' '\(hook)' && chmod 0755 '\(hook)'") == 0)
        let freeze = host.invoke(["freeze", "--config", config, "--mount", fs.mountPoint], as: hook)
        #expect(freeze.status == 0, "\(freeze.stdout) \(freeze.stderr)")
        #expect(freeze.stdout.hasPrefix("Quiesced"))
        let thaw = host.invoke(["thaw", "--json"], as: hook)
        #expect(thaw.status == 0 && thaw.report?.command == "hook qemu", "\(thaw.stdout) \(thaw.stderr)")
        #expect(host.scratch.read("phases.log") == "pre \npost success application\n")
    }

    // MARK: - VMware Tools' convention (items 7, 8, 11)

    /// Measured: with scriptArg set (always for vmbackup.startWithOpts), VMware runs
    /// `"<path>" freeze "<scriptArg>"`; pluginhost answered "Unexpected argument", exit 3.
    @Test func vmwareToolsWithScriptArgAndLegacyScripts() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = scripts(host)
        let hold = try addHoldingShellPlugin(host)
        let vmware = VMwareTools(host: host, legacyDirectory: host.scratch.path + "/sbin")
        // Another admin script in the directory, run after ours on freeze and before it on thaw.
        host.scratch.write(
            vmware.scriptsDirectory + "/90-other", "#!/bin/sh\necho \"other $*\" >> \(host.scratch.path)/phases.log\n",
            mode: 0o700)
        _ = link(vmware.legacyFreeze)
        _ = link(vmware.legacyThaw)
        let environment = [
            "PLUGINHOST_CONFIG": config, "PLUGINHOST_PLUGINS_DIR": host.pluginsDirectory,
            "PLUGINHOST_HOST_CONFIG": host.hostConfig(mounts: [fs.mountPoint]),
        ]
        let freeze = vmware.freeze(scriptArg: "FullBackup", environment: environment)
        #expect(freeze.failed == nil, "\(freeze)")
        #expect(host.scratch.read("phases.log") == "pre \nother freeze FullBackup\n")
        let holder = Int32(host.scratch.read("hold.pid").filter(\.isNumber)) ?? 0
        #expect(processExists(holder))
        #expect(try Writer(file: fs.mountPoint + "/probe").finishes(within: 10))

        let thaw = vmware.thaw(scriptArg: "FullBackup", environment: environment)
        #expect(thaw.failed == nil, "\(thaw)")
        #expect(
            host.scratch.read("phases.log")
                == "pre \nother freeze FullBackup\nother thaw FullBackup\npost success application\n")
        let report = try #require(ReportStore(paths: host.paths).lastReport())
        #expect(report.command == "hook vmware" && report.hookScriptArg == "FullBackup")
        #expect(report.consistency == .application && report.result == .succeeded)
        for _ in 0..<200 where processExists(holder) { usleep(10_000) }
        #expect(!processExists(holder))
        withExtendedLifetime(hold) {}
    }

    /// Measured: `hook … thaw` exited 1 on a merely degraded operation (no config or plugins; a
    /// failed pre-script with continueBackupOnFailure), so VMware reported "Custom quiesce script
    /// failed"; the post-script was told `crash`. Now: 0, and the agent's freeze makes it
    /// `filesystem`.
    @Test(arguments: [false, true])
    func aDegradedOperationDoesNotFailTheAgent(failingPreScript: Bool) throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let vmware = VMwareTools(host: host, legacyDirectory: nil)
        _ = link(vmware.scriptsDirectory + "/50-pluginhost")
        var environment = ["PLUGINHOST_HOST_CONFIG": host.hostConfig(mounts: [fs.mountPoint])]
        if failingPreScript { environment["PLUGINHOST_CONFIG"] = scripts(host, preExit: 1) }
        let freeze = vmware.freeze(scriptArg: nil, environment: environment)
        #expect(freeze.failed == nil, "\(freeze)")
        let thaw = vmware.thaw(scriptArg: nil, environment: environment)
        #expect(thaw.failed == nil, "\(thaw)")
        let report = try #require(ReportStore(paths: host.paths).lastReport())
        #expect(report.consistency == .filesystem && report.snapshotTaken && report.result == .degraded)
        #expect(report.exitStatus == .degraded)  // the report keeps the operation's own status
        if failingPreScript {
            #expect(host.scratch.read("phases.log") == "pre \npost success filesystem\n")
        }
        // `status` shows what the agent did, not "not finished".
        let status = host.invoke(["status"]).stdout
        #expect(status.contains("the agent called thaw: snapshot taken"), "\(status)")
        #expect(!status.contains("not finished"))
    }

    /// The freeze hook fails only when the agent should abort its snapshot: a failed pre-script
    /// without continueBackupOnFailure. VMware then runs freezeFail on the scripts before it.
    @Test func aFailedQuiesceAbortsVMwaresSnapshot() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let vmware = VMwareTools(host: host, legacyDirectory: nil)
        host.scratch.write(
            vmware.scriptsDirectory + "/10-first", "#!/bin/sh\necho \"first $*\" >> \(host.scratch.path)/first.log\n",
            mode: 0o700)
        _ = link(vmware.scriptsDirectory + "/50-pluginhost")
        let environment = [
            "PLUGINHOST_CONFIG": scripts(host, preExit: 3, extra: "\"continueBackupOnFailure\": false"),
            "PLUGINHOST_HOST_CONFIG": host.hostConfig(mounts: [fs.mountPoint]),
        ]
        let freeze = vmware.freeze(scriptArg: nil, environment: environment)
        #expect(freeze.failed?.hasSuffix("50-pluginhost") == true, "\(freeze)")
        #expect(freeze.statuses == [0, ExitStatus.failed.rawValue, 0])  // first freeze, ours, first freezeFail
        #expect(host.scratch.read("first.log") == "first freeze\nfirst freezeFail\n")
        #expect(host.scratch.read("phases.log") == "pre \npost failure none\n")
        #expect(host.waitUntilIdle())
    }

    // MARK: - Hook hold limit (item 10)

    /// Measured: qemu-ga calls no thaw hook when it froze nothing, and the quiesce was held for
    /// the whole 60 s deadline. Now the hook hold limit (here 1 s) releases it and says so.
    @Test(arguments: ["option", "host config"])
    func aQuiesceNoAgentThawsIsReleasedAtTheHoldLimit(setting: String) throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let config = scripts(host)
        let hold = try addHoldingShellPlugin(host)
        var arguments = [
            "hook", "qemu", "freeze", "--config", config, "--plugins-dir", host.pluginsDirectory, "--json",
        ]
        if setting == "option" {
            arguments += ["--mount", fs.mountPoint, "--hold-limit", "1"]
        } else {
            arguments += [
                "--host-config", host.hostConfig(mounts: [fs.mountPoint], extra: "\"hookHoldLimitSeconds\": 1"),
            ]
        }
        let freeze = host.invoke(arguments)
        #expect(freeze.status == 0, "\(freeze.stdout) \(freeze.stderr)")
        if case .number(let seconds)? = (try? JSONParser.parse(freeze.stdout))?["deadlineSeconds"] {
            #expect(seconds.doubleValue == 1)
        } else {
            Issue.record("no deadlineSeconds in \(freeze.stdout)")
        }
        let holder = Int32(host.scratch.read("hold.pid").filter(\.isNumber)) ?? 0
        #expect(host.waitUntilIdle(), "the hook session still holds the quiesce")
        #expect(!processExists(holder))
        #expect(host.scratch.read("phases.log") == "pre \npost failure none\n")
        let report = try #require(ReportStore(paths: host.paths).lastReport())
        #expect(report.errors.map(\.code) == [.hookHoldLimitExpired])
        #expect(report.errors.first?.message.contains("hook hold limit of 1 s") == true)
        #expect(report.snapshot?.outcome?.contains("no thaw") == true)
        // The agent's late thaw finds nothing to resume: not its failure.
        let late = host.invoke(["hook", "qemu", "thaw"])
        #expect(late.status == 0 && late.stderr.contains("HookHoldLimitExpired"), "\(late.stderr)")
        withExtendedLifetime(hold) {}
    }

    @Test func theHoldLimitIsValidated() throws {
        let host = HostSandbox()
        #expect(host.invoke(["hook", "qemu", "freeze", "--hold-limit", "0"]).status == ExitStatus.invalid.rawValue)
        #expect(host.invoke(["hook", "qemu", "freeze", "--hold-limit", "601"]).status == ExitStatus.invalid.rawValue)
        let bad = host.invoke([
            "hook", "qemu", "freeze", "--json", "--host-config",
            host.hostConfig(mounts: [], extra: "\"hookHoldLimitSeconds\": 0.5"),
        ])
        #expect(bad.status == ExitStatus.invalid.rawValue)
        #expect(bad.stdout.contains("hookHoldLimitSeconds must be from 1 to 600"))
    }

    // MARK: - Relative paths (item 12)

    /// Measured: `freeze`/`hook` resolved a relative --config/--plugins-dir against `/` (the
    /// session's directory) and a relative --mount failed, where `run` worked.
    @Test(arguments: ["freeze", "hook"])
    func relativePathsMeanTheCallersFiles(command: String) throws {
        let host = HostSandbox()
        _ = host.scratch.mkdir("data")
        let fs = try LoopFilesystem(in: host.scratch, mountPoint: host.scratch.path + "/data")
        let config = scripts(host)
        host.addPlugin(
            try fixturePlugin("GOOD", in: host.libraryDirectory), config: "{\"log\":\"\(host.scratch.path)/calls.log\"}"
        )
        let relativeConfig = String(config.dropFirst(host.scratch.path.count + 1))
        let relativePlugins = "./" + String(host.pluginsDirectory.dropFirst(host.scratch.path.count + 1))
        let arguments =
            (command == "freeze" ? ["freeze"] : ["hook", "qemu", "freeze"])
            + ["--config", relativeConfig, "--plugins-dir", relativePlugins, "--mount", "data", "--json"]
        let freeze = host.invoke(arguments, in: host.scratch.path)
        #expect(freeze.status == 0, "\(freeze.stdout) \(freeze.stderr)")
        let notice = try #require(try? JSONParser.parse(freeze.stdout), "\(freeze.stdout)")
        #expect(notice["consistency"] == .string("application"))
        #expect(notice["mounts"] == .array([.string(fs.mountPoint)]))
        let thaw =
            command == "freeze" ? host.invoke(["thaw", "--json"]) : host.invoke(["hook", "qemu", "thaw", "--json"])
        #expect(thaw.status == 0, "\(thaw.stdout) \(thaw.stderr)")
        #expect(thaw.report?.consistency == .application)
        #expect(thaw.report?.configFile == config)
        #expect(host.scratch.read("calls.log").contains("fixture quiesce"))
    }
}

// MARK: - Helpers

/// The shell plugin in hold mode, with a command that records its pid and holds until stdin closes.
func addHoldingShellPlugin(_ host: HostSandbox) throws -> String {
    let built = String(pluginhostBinary.dropLast("pluginhost".count)) + "libpluginhost-shell.so"
    let library = host.libraryDirectory + "/libpluginhost-shell.so"
    sh("install -m 0755 '\(built)' '\(library)'")
    let hold = host.script(
        "hold.sh", "#!/bin/sh\necho $$ > '\(host.scratch.path)/hold.pid'\necho READY\nexec cat > /dev/null\n")
    let added = host.addPlugin(library, name: "holder", config: "{\"quiesce\": [\"\(hold)\"], \"hold\": true}")
    #expect(added.status == 0, "\(added.stderr)")
    return hold
}

extension HostSandbox {
    /// A host config (mode 0644, root's) restricting the freeze to `mounts`.
    func hostConfig(mounts: [String], extra: String = "") -> String {
        let list = mounts.map { "\"\($0)\"" }.joined(separator: ", ")
        return scratch.write(
            "pluginhost-\(mounts.count)-\(extra.count).json",
            "{\"mounts\": [\(list)]\(extra.isEmpty ? "" : ", " + extra)}", mode: 0o644)
    }
}

/// A faithful driver of open-vm-tools' backup scripts (services/plugins/vmbackup/scriptOps.c):
/// the legacy pre-freeze-script first, then every file of backupScripts.d in strcmp order, each
/// as `bash -c '"<path>" <op> ["<scriptArg>"]'`; the first failing freeze script stops the
/// freeze and the scripts before it get freezeFail in reverse order; on thaw every script runs
/// in reverse order, the legacy post-thaw-script last, and a failure is reported after all ran.
struct VMwareTools {
    let host: HostSandbox
    let scriptsDirectory: String
    let legacyFreeze: String
    let legacyThaw: String

    struct Run: CustomStringConvertible {
        var statuses: [Int32] = []
        /// The script that failed ("Custom quiesce script failed."), if any.
        var failed: String?
        var output: [String] = []
        var description: String {
            "statuses \(statuses), failed \(failed ?? "none"): \(output.joined(separator: " | "))"
        }
    }

    init(host: HostSandbox, legacyDirectory: String?) {
        self.host = host
        scriptsDirectory = host.scratch.mkdir("backupScripts.d")
        let legacy = legacyDirectory ?? host.scratch.path + "/no-legacy"
        legacyFreeze = legacy + "/pre-freeze-script"
        legacyThaw = legacy + "/post-thaw-script"
    }

    /// The list VMware builds at freeze: the legacy slot (if either legacy script exists), then the directory.
    private func scripts() -> [String] {
        var list: [String] = []
        if access(legacyFreeze, F_OK) == 0 || access(legacyThaw, F_OK) == 0 { list.append(legacyFreeze) }
        var names: [String] = []
        if let directory = opendir(scriptsDirectory) {
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(directory)
        }
        list += names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }.map {
            scriptsDirectory + "/" + $0
        }
        return list
    }

    private func isFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
    }

    private func runScript(
        _ path: String, _ op: String, _ scriptArg: String?, _ environment: [String: String], into run: inout Run
    ) -> Bool {
        let command = scriptArg.map { "\"\(path)\" \(op) \"\($0)\"" } ?? "\"\(path)\" \(op)"
        let result = host.invoke(["-c", command], as: "/bin/bash", environment: environment)
        run.statuses.append(result.status)
        run.output.append("\(path) \(op): \(result.status) \(result.stderr)")
        return result.status == 0
    }

    func freeze(scriptArg: String?, environment: [String: String]) -> Run {
        var run = Run()
        let list = scripts()
        for (index, path) in list.enumerated() where isFile(path) {
            if !runScript(path, "freeze", scriptArg, environment, into: &run) {
                run.failed = path
                for earlier in list[..<index].reversed() {
                    let thawPath = earlier == legacyFreeze ? legacyThaw : earlier
                    if isFile(thawPath) { _ = runScript(thawPath, "freezeFail", scriptArg, environment, into: &run) }
                }
                return run
            }
        }
        return run
    }

    func thaw(scriptArg: String?, environment: [String: String]) -> Run {
        var run = Run()
        for path in scripts().reversed() {
            let thawPath = path == legacyFreeze ? legacyThaw : path
            if isFile(thawPath), !runScript(thawPath, "thaw", scriptArg, environment, into: &run) {
                run.failed = run.failed ?? thawPath
            }
        }
        return run
    }
}
