import Testing

@testable import PluginHost

/// Installed as VMware's legacy pre-freeze-script, `freeze` ran the top-level
/// `pluginhost freeze` and froze every filesystem. Under any name but `pluginhost` the first
/// argument is a hook action or nothing.
@Suite("Invocation")
struct InvocationTests {
    static let executable = "/usr/local/sbin/pluginhost"

    struct Case: Sendable, CustomTestStringConvertible {
        var argv0: String
        var arguments: [String]
        var expected: Invocation
        var testDescription: String { "\(argv0) \(arguments.joined(separator: " "))" }
    }

    static let cases: [Case] = [
        // Its own name: the command line as it is.
        Case(
            argv0: "pluginhost", arguments: ["freeze", "--mount", "/data"],
            expected: .commandLine(["freeze", "--mount", "/data"])),
        Case(
            argv0: "/usr/local/sbin/pluginhost", arguments: ["run", "--", "/bin/true"],
            expected: .commandLine(["run", "--", "/bin/true"])),
        Case(argv0: "./.build/debug/pluginhost", arguments: [], expected: .commandLine([])),
        // qemu-ga's -F hook and the stock hook's directory.
        Case(
            argv0: "/etc/qemu/fsfreeze-hook", arguments: ["freeze"],
            expected: .hook(.qemu, arguments: ["hook", "qemu", "freeze"])),
        Case(
            argv0: "/usr/local/lib/pluginhost/fsfreeze-hook", arguments: ["thaw"],
            expected: .hook(.qemu, arguments: ["hook", "qemu", "thaw"])),
        Case(
            argv0: "/etc/qemu/fsfreeze-hook.d/50-pluginhost", arguments: ["freeze"],
            expected: .hook(.qemu, arguments: ["hook", "qemu", "freeze"])),
        Case(
            argv0: "/etc/qemu/fsfreeze-hook.d/50-pluginhost", arguments: ["thaw", "--json"],
            expected: .hook(.qemu, arguments: ["hook", "qemu", "thaw", "--json"])),
        // VMware Tools: backupScripts.d, with and without scriptArg.
        Case(
            argv0: "/etc/vmware-tools/backupScripts.d/50-pluginhost", arguments: ["freeze"],
            expected: .hook(.vmware, arguments: ["hook", "vmware", "freeze"])),
        Case(
            argv0: "/etc/vmware-tools/backupScripts.d/50-pluginhost", arguments: ["freeze", "FullBackup"],
            expected: .hook(.vmware, arguments: ["hook", "vmware", "freeze", "--script-arg=FullBackup"])),
        Case(
            argv0: "/etc/vmware-tools/backupScripts.d/50-pluginhost", arguments: ["freezeFail", ""],
            expected: .hook(.vmware, arguments: ["hook", "vmware", "freezeFail", "--script-arg="])),
        Case(
            argv0: "/etc/vmware-tools/backupScripts.d/50-pluginhost", arguments: ["freezefail"],
            expected: .hook(.vmware, arguments: ["hook", "vmware", "freezeFail"])),
        Case(
            argv0: "/etc/vmware-tools/backupScripts.d/50-pluginhost", arguments: ["thaw", "-x y", "--json"],
            expected: .hook(.vmware, arguments: ["hook", "vmware", "thaw", "--json", "--script-arg=-x y"])),
        // VMware's legacy scripts, run first and last.
        Case(
            argv0: "/usr/sbin/pre-freeze-script", arguments: ["freeze"],
            expected: .hook(.vmwarePreFreeze, arguments: ["hook", "vmware", "freeze"])),
        Case(
            argv0: "/usr/sbin/pre-freeze-script", arguments: ["freeze", "FullBackup"],
            expected: .hook(.vmwarePreFreeze, arguments: ["hook", "vmware", "freeze", "--script-arg=FullBackup"])),
        Case(
            argv0: "/usr/sbin/post-thaw-script", arguments: ["thaw"],
            expected: .hook(.vmwarePostThaw, arguments: ["hook", "vmware", "thaw"])),
        Case(
            argv0: "/usr/sbin/post-thaw-script", arguments: ["freezeFail"],
            expected: .hook(.vmwarePostThaw, arguments: ["hook", "vmware", "freezeFail"])),
        Case(
            argv0: "post-thaw-script", arguments: ["--help"],
            expected: .hook(.vmwarePostThaw, arguments: ["hook", "vmware", "--help"])),
        // Internal roles: only when re-executed through the binary's real path.
        Case(
            argv0: executable, arguments: ["__session", "--mode", "qemu"],
            expected: .commandLine(["__session", "--mode", "qemu"])),
        Case(
            argv0: "/etc/qemu/fsfreeze-hook", arguments: ["__guard", "--deadline-ms", "1000"],
            expected: .commandLine(["__guard", "--deadline-ms", "1000"])),
    ]

    @Test(arguments: cases)
    func resolves(_ testCase: Case) {
        // The fsfreeze-hook internal-role case runs as a copy of the binary named fsfreeze-hook.
        let executable =
            testCase.argv0 == "/etc/qemu/fsfreeze-hook" && testCase.arguments.first == "__guard"
            ? "/etc/qemu/fsfreeze-hook" : Self.executable
        #expect(
            Invocation.resolve(argv0: testCase.argv0, arguments: testCase.arguments, executable: executable)
                == testCase.expected)
    }

    /// Never a top-level command under another name: each of these must be refused, whatever
    /// the words (`freeze` froze every filesystem when the binary was pre-freeze-script).
    @Test(
        arguments: [
            ("/usr/sbin/pre-freeze-script", ["thaw"]),
            ("/usr/sbin/pre-freeze-script", ["freezeFail"]),
            ("/usr/sbin/pre-freeze-script", ["run", "--", "/bin/true"]),
            ("/usr/sbin/post-thaw-script", ["freeze"]),
            ("/etc/qemu/fsfreeze-hook", ["freezeFail"]),
            ("/etc/qemu/fsfreeze-hook", ["recover"]),
            ("/etc/qemu/fsfreeze-hook", []),
            ("/etc/vmware-tools/backupScripts.d/50-pluginhost", ["check"]),
            ("/usr/local/bin/snapshot-helper", ["freeze"]),
            ("/usr/local/bin/pluginhost-1.2", ["freeze"]),
            ("/usr/local/bin/snapshot-helper", []),
            ("/usr/local/bin/snapshot-helper", ["run", "--", "/bin/true"]),
            // An internal role through a symlink under a hook name (argv[0] is not the real path).
            ("/etc/qemu/fsfreeze-hook.d/50-pluginhost", ["__guard", "--deadline-ms", "1000"]),
            ("/usr/local/bin/snapshot-helper", ["__session", "--mode", "freeze"]),
        ] as [(String, [String])])
    func refusesEverythingElse(argv0: String, arguments: [String]) {
        guard
            case .refused(let message) = Invocation.resolve(
                argv0: argv0, arguments: arguments, executable: Self.executable)
        else {
            Issue.record("\(argv0) \(arguments) was not refused")
            return
        }
        #expect(message.contains("Nothing was run") || message.contains("nothing was run"))
        #expect(message.contains(argv0))
    }

    @Test func anUnknownNameListsTheNamesItAnswersTo() {
        let result = Invocation.resolve(
            argv0: "/usr/local/bin/snapshot-helper", arguments: ["freeze"], executable: Self.executable)
        guard case .refused(let message) = result else {
            Issue.record("not refused")
            return
        }
        for name in [
            "pluginhost", "fsfreeze-hook", "fsfreeze-hook.d", "backupScripts.d", "pre-freeze-script",
            "post-thaw-script",
        ] {
            #expect(message.contains(name), "\(name) missing from \(message)")
        }
    }
}
