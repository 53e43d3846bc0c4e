import ArgumentParser
import Glibc
import Logging
import PluginHost
import PluginHostWorker

@main
struct PluginHostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pluginhost",
        abstract: "Application-consistent snapshots: pre-script, quiesce, freeze, snapshot, thaw, resume, post-script.",
        discussion: """
            Compatible with Azure's /etc/azure/VMSnapshotScriptPluginConfig.json and its error codes.
            Exit statuses: \(ExitStatus.allCases.map { "\($0.rawValue) \($0)" }.joined(separator: ", ")).
            """,
        subcommands: [RunCommand.self, FreezeCommand.self, ThawCommand.self, HookCommand.self, CheckCommand.self,
                      ListCommand.self, StatusCommand.self, RecoverCommand.self, PluginCommand.self,
                      GuardCommand.self, WorkerCommand.self, SessionCommand.self, GroupCommand.self, DocsCommand.self]
    )

    /// Parses and runs; maps argument errors to the documented exit status for invalid use.
    static func main() {
        // Workers are forks of this process running the worker runtime (the only code that loads plugins).
        WorkerLauncher.register { _ in PluginWorkerProcess.run() }
        do {
            var command = try parseAsRoot(hookArguments())
            try command.run()
        } catch let code as ExitCode {
            Glibc.exit(code.rawValue)
        } catch {
            let status = exitCode(for: error)
            if status == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            FileHandleOutput.standardError.write(fullMessage(for: error) + "\n")
            Glibc.exit(ExitStatus.invalid.rawValue)
        }
    }

    /// Installed as a hook, the binary is called by the agent's name for it: a path inside
    /// /etc/qemu/fsfreeze-hook.d (or named fsfreeze-hook) means `hook qemu`, one inside a VMware
    /// Tools backupScripts.d means `hook vmware`.
    static func hookArguments() -> [String] {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let invokedAs = CommandLine.arguments.first ?? ""
        if invokedAs.contains("fsfreeze-hook") { return ["hook", "qemu"] + arguments }
        if invokedAs.contains("backupScripts.d") { return ["hook", "vmware"] + arguments }
        return arguments
    }
}
