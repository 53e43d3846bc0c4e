import ArgumentParser
import PluginHost
import Glibc
import PluginHostGuard

/// The freeze guard, started by the host itself (never by hand): see `FreezeGuardProcess`.
struct GuardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "__guard",
        abstract: "Internal: the freeze guard process.",
        shouldDisplay: false
    )

    @Option(name: .customLong("deadline-ms")) var deadlineMilliseconds: UInt64
    @Option var journal: String?
    @Option(name: .customLong("target"), parsing: .unconditionalSingleValue) var targets: [String] = []

    func run() throws {
        var parsed: [FreezeGuardProcess.Target] = []
        for target in targets {
            guard let colon = target.firstIndex(of: ":"), let id = Int(target[..<colon]) else {
                throw ValidationError("--target takes MOUNT-ID:PATH")
            }
            parsed.append(.init(mountID: id, path: String(target[target.index(after: colon)...])))
        }
        let status = FreezeGuardProcess.run(targets: parsed, deadlineMilliseconds: deadlineMilliseconds) { complete in
            if let journal { FreezeJournal.markThawedByGuard(at: journal, guardPID: getpid(), complete: complete) }
        }
        throw ExitCode(status)
    }
}
