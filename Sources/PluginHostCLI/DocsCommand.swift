import ArgumentParser
import PluginHost

/// Prints the README's generated tables (error codes, exit statuses).
struct DocsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "__docs", abstract: "Internal: print the README's reference tables.",
        shouldDisplay: false)

    func run() throws {
        print(ReferenceTables.errorCodes)
        print(ReferenceTables.exitStatuses)
    }
}
