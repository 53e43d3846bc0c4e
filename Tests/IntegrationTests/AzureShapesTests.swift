import Glibc
import PluginHost
import PluginHostSupport
import Testing

/// Configs and scripts in the shapes people publish for
/// Azure's extension, through the real binary.
@Suite("Azure's published config shapes", .serialized, .enabled(if: isRoot, "needs root for loop mounts and FIFREEZE"))
struct AzureShapesTests {
    var log: (HostSandbox) -> String = { $0.scratch.path + "/phases.log" }

    func config(
        _ host: HostSandbox, pre: String, post: String, continueBackupOnFailure: Bool = true,
        params: String = #"["", ""]"#
    ) -> String {
        host.config(
            """
            {
                "pluginName" : "ScriptRunner",
                "preScriptLocation" : "\(pre)",
                "postScriptLocation" : "\(post)",
                "preScriptParams" : \(params),
                "postScriptParams" : \(params),
                "preScriptNoOfRetries" : 0,
                "postScriptNoOfRetries" : 0,
                "timeoutInSeconds" : 30,
                "continueBackupOnFailure" : \(continueBackupOnFailure),
                "fsFreezeEnabled" : true
            }
            """)
    }

    /// Microsoft's Oracle tutorial: plain commands, no `#!` line; Azure runs `sh PATH PARAMS`.
    /// Measured: execve gave ENOEXEC → Pre-ScriptExecutionFailed, and `check` saw no problem.
    @Test func scriptsWithoutAShebangLine() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let pre = host.script("pre_backup.sh", "echo \"pre [$1] [$2] $#\" >> \(log(host))\n")
        let post = host.script("post_backup.sh", "echo \"post $PLUGINHOST_CONSISTENCY\" >> \(log(host))\n")
        let file = config(host, pre: pre, post: post, continueBackupOnFailure: false)
        let check = host.invoke(["check", "--config", file, "--mount", fs.mountPoint])
        #expect(check.status == 0, "\(check.stdout)")
        #expect(check.stdout.contains("runs with /bin/sh (no #! line)"))
        let run = host.invoke(["run", "--config", file, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(run.report?.consistency == .application)
        #expect(run.report?.scripts.allSatisfy { $0.shell?.contains("no #! line") == true } == true)
        #expect(host.scratch.read("phases.log") == "pre [] [] 2\npost application\n")
    }

    /// Azure accepts 600 and 400 (its validate_permissions checks only the group and other
    /// digits) and runs them through sh. Measured: pluginhost refused them.
    @Test(arguments: [0o600, 0o400] as [mode_t])
    func scriptsWithoutTheOwnerExecuteBit(mode: mode_t) throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let pre = host.scratch.write("pre.sh", "#!/bin/sh\necho pre >> \(log(host))\n", mode: mode)
        let post = host.scratch.write("post.sh", "echo post >> \(log(host))\n", mode: mode)
        let file = config(host, pre: pre, post: post)
        let check = host.invoke(["check", "--config", file, "--mount", fs.mountPoint])
        #expect(check.status == 0, "\(check.stdout)")
        #expect(check.stdout.contains("runs with /bin/sh (no owner execute bit)"))
        let run = host.invoke(["run", "--config", file, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(host.scratch.read("phases.log") == "pre\npost\n")
    }

    /// What Azure refuses stays refused: group or other bits, another owner.
    @Test(arguments: [0o640, 0o604, 0o750] as [mode_t])
    func scriptsWithGroupOrOtherBitsAreRefused(mode: mode_t) throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let pre = host.scratch.write("pre.sh", "echo pre >> \(log(host))\n", mode: mode)
        let post = host.scratch.write("post.sh", "echo post >> \(log(host))\n", mode: 0o600)
        let check = host.invoke([
            "check", "--json", "--config", config(host, pre: pre, post: post), "--mount", fs.mountPoint,
        ])
        #expect(check.status == ExitStatus.invalid.rawValue)
        #expect(check.stdout.contains("InsufficientPermissionforPre-Script"))
    }

    /// Azure defines a "warning = 2" constant but fails the script: exit 2 with
    /// continueBackupOnFailure false fails the backup, nothing frozen.
    @Test func exitStatusTwoIsAFailure() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let pre = host.script("pre.sh", "#!/bin/sh\necho pre >> \(log(host))\nexit 2\n")
        let post = host.script("post.sh", "#!/bin/sh\necho \"post $PLUGINHOST_RESULT\" >> \(log(host))\n")
        let run = host.invoke([
            "run", "--config", config(host, pre: pre, post: post, continueBackupOnFailure: false),
            "--mount", fs.mountPoint, "--json", "--", "/bin/true",
        ])
        #expect(run.status == ExitStatus.failed.rawValue)
        let report = try #require(run.report)
        #expect(report.errors.map(\.code) == [.preScriptExecutionFailed])
        #expect(
            report.errors.first?.message.hasPrefix(
                "The prescript returned an error, so backup might not be application-consistent.") == true)
        #expect(report.freeze == nil && !report.snapshotTaken)
        #expect(host.scratch.read("phases.log") == "pre\npost failure\n")
    }

    /// A published DB2 template: an unexpanded @BINDIR@ path and continueBackupOnFailure
    /// false. Azure: script not found, backup failed. Measured: pluginhost called the whole file
    /// invalid and took a filesystem-consistent snapshot.
    @Test(arguments: [false, true])
    func anUnexpandedTemplatePathIsScriptNotFound(continueBackupOnFailure: Bool) throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let post = host.script("post.sh", "#!/bin/sh\necho post >> \(log(host))\n")
        let file = config(
            host, pre: "@BINDIR@/db2_pre_backup.sh", post: post, continueBackupOnFailure: continueBackupOnFailure,
            params: #"["db2inst1"]"#)
        let check = host.invoke(["check", "--config", file, "--mount", fs.mountPoint])
        #expect(check.status == ExitStatus.invalid.rawValue)
        #expect(check.stdout.contains("Pre-ScriptNotFound") && !check.stdout.contains("IncorrectJSONConfigFile"))
        #expect(check.stdout.contains("continueBackupOnFailure  \(continueBackupOnFailure)"))
        let run = host.invoke(["run", "--config", file, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        let report = try #require(run.report, "\(run.stdout) \(run.stderr)")
        #expect(report.errors.map(\.code) == [.preScriptNotFound])
        #expect(report.errors.first?.message.contains("@BINDIR@/db2_pre_backup.sh") == true)
        #expect(report.continueBackupOnFailure == continueBackupOnFailure)
        if continueBackupOnFailure {
            #expect(run.status == ExitStatus.degraded.rawValue && report.consistency == .filesystem)
        } else {
            #expect(run.status == ExitStatus.failed.rawValue && !report.snapshotTaken && report.freeze == nil)
        }
        #expect(!host.scratch.exists("phases.log"))  // no script ran: the post-script either
    }

    /// A trusted file with a bad field keeps its own continueBackupOnFailure; an untrusted
    /// file is ignored whole (filesystem-consistent snapshot).
    @Test func aTrustedInvalidConfigKeepsItsContinueBackupOnFailure() throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let pre = host.script("pre.sh", "#!/bin/sh\necho pre >> \(log(host))\n")
        let post = host.script("post.sh", "#!/bin/sh\necho post >> \(log(host))\n")
        let file = host.config(
            """
            {"preScriptLocation": "\(pre)", "postScriptLocation": "\(post)", "timeoutInSeconds": "60",
             "continueBackupOnFailure": false}
            """)
        let strict = host.invoke(["run", "--config", file, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(strict.status == ExitStatus.failed.rawValue)
        #expect(strict.report?.errors.map(\.code) == [.incorrectJSONConfigFile])
        #expect(strict.report?.freeze == nil && strict.report?.snapshotTaken == false)
        #expect(strict.report?.errors.first?.message.hasPrefix(ErrorCode.incorrectJSONConfigFile.azureMessage!) == true)

        chmod(file, 0o644)  // untrusted: nothing in it is believed
        let ignored = host.invoke(["run", "--config", file, "--mount", fs.mountPoint, "--json", "--", "/bin/true"])
        #expect(ignored.status == ExitStatus.degraded.rawValue)
        #expect(ignored.report?.consistency == .filesystem)
        #expect(!host.scratch.exists("phases.log"))
    }

    /// With the post-script missing or 0770, `run` executed the pre-script
    /// and refused the post-script only after the snapshot: whatever the pre-script quiesced
    /// stayed quiesced. Both are checked before either runs, as in Azure's validate_scripts.
    @Test(arguments: ["missing", "0770", "nobody"], [false, true])
    func aPostScriptThatFailsItsChecksStopsThePreScript(problem: String, continueBackupOnFailure: Bool) throws {
        let host = HostSandbox()
        let fs = try LoopFilesystem(in: host.scratch)
        let pre = host.script("pre.sh", "#!/bin/sh\necho pre >> \(log(host))\n")
        var post = host.script("post.sh", "#!/bin/sh\necho post >> \(log(host))\n")
        switch problem {
        case "missing": post = host.scratch.path + "/gone.sh"
        case "0770": chmod(post, 0o770)
        default: chown(post, 65534, 65534)
        }
        let run = host.invoke([
            "run", "--config", config(host, pre: pre, post: post, continueBackupOnFailure: continueBackupOnFailure),
            "--mount", fs.mountPoint, "--json", "--", "/bin/true",
        ])
        let report = try #require(run.report, "\(run.stdout) \(run.stderr)")
        #expect(
            report.errors.map(\.code) == [
                problem == "missing" ? .postScriptNotFound : .insufficientPermissionForPostScript
            ])
        #expect(report.errors.first?.message.contains("neither script was run") == true)
        #expect(!host.scratch.exists("phases.log"), "a script ran: \(host.scratch.read("phases.log"))")
        #expect(report.scripts.isEmpty)
        if continueBackupOnFailure {
            #expect(run.status == ExitStatus.degraded.rawValue && report.consistency == .filesystem)
        } else {
            #expect(run.status == ExitStatus.failed.rawValue && report.freeze == nil)
        }
    }
}
