import ArgumentParser
import PluginHostGuard

/// The freeze guard, started by the host itself (never by hand): see `FreezeGuardProcess`.
struct GuardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "__guard",
        abstract: "Internal: the freeze guard process.",
        shouldDisplay: false
    )

    @Option(help: "The freeze journal the host wrote: what to freeze, in which waves, and the deadline.")
    var journal: String

    func run() throws {
        throw ExitCode(FreezeGuardProcess.run(journalPath: journal))
    }
}
