import ArgumentParser
import PluginHostWorker

/// A plugin worker, started by the host itself (never by hand): see `PluginWorkerProcess`.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "__worker", abstract: "Internal: a plugin worker process.",
        shouldDisplay: false)

    func run() throws {
        throw ExitCode(PluginWorkerProcess.run())
    }
}
