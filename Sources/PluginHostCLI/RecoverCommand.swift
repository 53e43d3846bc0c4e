import ArgumentParser
import PluginHost

struct RecoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Thaw what an operation that died left frozen (every run does this first, too).",
        discussion: "Exit 0: nothing left frozen. 4: an operation is running (its guard thaws on its own). 5: a thaw failed."
    )

    @OptionGroup var output: OutputOptions

    @Flag(name: .long, help: "Print nothing when there is nothing to recover or an operation is running (the systemd timer's mode).")
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
                FileHandleOutput.standardError.write("\(error.message); nothing to recover while it runs (its guard thaws on its own)\n")
            }
            throw ExitCode(ExitStatus.busy.rawValue)
        }
        let outcome = Recovery.run(paths: paths)
        withExtendedLifetime(lock) {}
        if output.json {
            try printJSON(RecoveryResult(outcome))
        } else if quiet && outcome == nil {
            // Nothing to say.
        } else {
            FileHandleOutput.standardOutput.write(outcome.map { "Recovered \($0.summary)\n" } ?? "Nothing to recover: no operation left a freeze journal.\n")
        }
        throw ExitCode(outcome?.complete == false ? ExitStatus.mayBeFrozen.rawValue : ExitStatus.success.rawValue)
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
    var mounts: [Mount]

    init(_ outcome: Recovery.Outcome?) {
        recovered = outcome != nil
        complete = outcome?.complete ?? true
        operationID = outcome?.journal.operationID
        mounts = outcome?.mounts.map { Mount(mountPoint: $0.mountPoint, state: $0.state) } ?? []
    }
}
