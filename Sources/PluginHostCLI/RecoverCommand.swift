import ArgumentParser
import PluginHost
import PluginHostWire

struct RecoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Thaw what an operation that died left frozen (every run does this first, too).",
        discussion:
            """
            Thaws exactly what the dead operation's journal says it may have left frozen, never what it found frozen \
            already. Exit 0: nothing left frozen. 4: an operation is running (its guard thaws on its own). 5: a thaw \
            failed, or a journal could not be read (it is kept and named).
            """
    )

    @OptionGroup var output: OutputOptions

    @Flag(
        name: .long,
        help: "Print nothing when there is nothing to recover or an operation is running (the systemd timer's mode).")
    var quiet = false

    func run() throws {
        try requireRoot("recover")
        let paths = statePaths()
        do {
            try paths.prepare()
        } catch {
            FileHandleOutput.standardError.write("\(error)\n")
            throw ExitCode(ExitStatus.invalid.rawValue)
        }
        let lock: OperationLock
        do {
            lock = try OperationLock.acquire(paths: paths, operationID: "recover")
        } catch {
            if !quiet {
                FileHandleOutput.standardError.write(
                    "\(error.message); nothing to recover while it runs (its guard thaws on its own)\n")
            }
            throw ExitCode(ExitStatus.busy.rawValue)
        }
        let outcome = Recovery.run(paths: paths)
        withExtendedLifetime(lock) {}
        // Journals that could not be read stay until an administrator has looked at them.
        let kept = FreezeJournal.keptAside(in: paths).filter { $0 != outcome?.journalPath }
        if output.json {
            var result = RecoveryResult(outcome)
            result.keptJournals = kept
            try printJSON(result)
        } else if quiet && outcome == nil && kept.isEmpty {
            // Nothing to say.
        } else {
            var text =
                outcome.map { "Recovered \($0.summary)\n" }
                ?? "Nothing to recover: no operation left a freeze journal.\n"
            for path in kept {
                text +=
                    "Kept: \(path), a freeze journal that could not be read; check what it may name, then delete it.\n"
            }
            FileHandleOutput.standardOutput.write(text)
        }
        throw ExitCode(
            outcome?.complete == false || !kept.isEmpty ? ExitStatus.mayBeFrozen.rawValue : ExitStatus.success.rawValue)
    }
}

struct RecoveryResult: Encodable {
    struct Mount: Encodable {
        var mountPoint: String
        var state: String
    }

    var recovered: Bool
    var complete: Bool
    var pluginhostVersion = BuildInfo.version
    var schemaVersion = BuildInfo.schemaVersion

    var operationID: String?
    var journal: String?
    var unreadable: String?
    var mounts: [Mount]
    var keptJournals: [String] = []

    init(_ outcome: Recovery.Outcome?) {
        recovered = outcome != nil
        complete = outcome?.complete ?? true
        operationID = outcome?.journal?.operationID
        journal = outcome?.journalPath
        unreadable = outcome?.unreadable
        mounts = outcome?.mounts.map { Mount(mountPoint: $0.mountPoint, state: $0.result.description) } ?? []
    }
}
