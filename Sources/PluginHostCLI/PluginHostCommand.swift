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
        version: BuildInfo.versionLine,
        subcommands: [
            RunCommand.self, FreezeCommand.self, ThawCommand.self, HookCommand.self, CheckCommand.self,
            ListCommand.self, StatusCommand.self, HistoryCommand.self, RecoverCommand.self, PluginCommand.self,
            GuardCommand.self, WorkerCommand.self, SessionCommand.self, GroupCommand.self, DocsCommand.self,
        ]
    )

    /// Parses and runs; maps argument errors to the documented exit status for invalid use.
    static func main() {
        // Every role (host, freeze client, session, guard, worker): a reader that goes away —
        // `| head`, a killed `freeze` client, a closed terminal — makes a write fail with
        // EPIPE, never ends the operation. Spawned children get the default back.
        _ = signal(SIGPIPE, SIG_IGN)
        // Workers are forks of this process running the worker runtime (the only code that loads plugins).
        WorkerLauncher.register { _ in PluginWorkerProcess.run() }
        let arguments: [String]
        switch Invocation.resolve(
            argv0: CommandLine.arguments.first ?? "", arguments: Array(CommandLine.arguments.dropFirst()),
            executable: currentExecutable())
        {
        case .commandLine(let given): arguments = given
        case .hook(_, let translated): arguments = translated
        case .refused(let message):
            FileHandleOutput.standardError.write(message + "\n")
            Glibc.exit(ExitStatus.invalid.rawValue)
        }
        do {
            var command = try parseAsRoot(arguments)
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
}
