import ArgumentParser
import Logging
import PluginHost

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one whole operation: checks, pre-script, freeze, snapshot command, thaw, post-script.",
        discussion: """
            The snapshot command runs while the filesystems are frozen; it must not write to them.
            Example: pluginhost run --mount /data -- /usr/local/sbin/take-snapshot /data
            """
    )

    @OptionGroup var plan: PlanOptions
    @OptionGroup var group: GroupOptions
    @OptionGroup var output: OutputOptions

    @Argument(
        parsing: .postTerminator,
        help: ArgumentHelp("The snapshot command and its arguments, after --.", valueName: "snapshot-command"))
    var snapshotCommand: [String] = []

    func validate() throws {
        guard let executable = snapshotCommand.first else {
            throw ValidationError(
                "give the snapshot command after --, e.g. pluginhost run -- /usr/local/sbin/take-snapshot")
        }
        guard executable.hasPrefix("/") else {
            throw ValidationError(
                "the snapshot command must be an absolute path (no PATH search runs as root): \(executable)")
        }
    }

    func run() throws {
        try requireRoot("run")
        let logOutput = bootstrapLogging(verbose: output.verbose)
        let interrupt = try? InterruptSignal.install()
        var request = plan.request(snapshotCommand: snapshotCommand)
        request.group = group.fields
        let operation = Operation(
            request: request,
            logger: Logger(label: "pluginhost"), interrupt: interrupt, logOutput: logOutput)
        let report = operation.run()
        logOutput.release()
        if output.json {
            FileHandleOutput.standardOutput.write(bytes: ReportStore.encode(report))
        } else {
            FileHandleOutput.standardOutput.write(ReportText.render(report))
        }
        throw ExitCode(report.exitStatus.rawValue)
    }
}
