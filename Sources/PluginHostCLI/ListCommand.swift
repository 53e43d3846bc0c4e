import ArgumentParser
import Logging
import PluginHost

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "Show every plugin manifest found, whether its library passes its checks, and why one is refused.",
        discussion:
            """
            Each plugin is loaded in a worker process to read its name, version and ABI; none is asked to quiesce. \
            Exits 0, or 3 when a plugin is refused.
            """
    )

    @Option(
        name: .customLong("plugins-dir"),
        help: ArgumentHelp("Plugin manifests (default /etc/pluginhost/plugins.d).", valueName: "dir"))
    var pluginsDirectory: String?

    @OptionGroup var output: OutputOptions

    func run() throws {
        _ = bootstrapLogging(verbose: output.verbose)
        let catalog = PluginCatalog.load(directory: pluginsDirectory)
        let records = PluginInventory.inspect(
            catalog, executable: currentExecutable(), logger: Logger(label: "pluginhost"))
        if output.json {
            try printJSON(PluginList(directory: catalog.directory, plugins: records, warnings: catalog.warnings))
        } else {
            var out = "Plugins in \(catalog.directory):\n"
            if records.isEmpty {
                out += "  (none)\n"
            } else {
                out += TextTable(
                    rows: [["  NAME", "VERSION", "ABI", "ORDER", "ENABLED", "CHECKSUM", "LIBRARY", "STATUS"]]
                        + records.map { record in
                            [
                                "  " + record.name, record.version ?? "-", record.abi ?? "-",
                                record.order.map(String.init) ?? "-",
                                record.state == .disabled ? "no" : "yes", record.checksumState, record.library ?? "-",
                                record.refusal.map { "refused: \($0)" } ?? "ok",
                            ]
                        }
                ).render()
            }
            if !catalog.warnings.isEmpty { out += "\nWarnings:\n" + catalog.warnings.map { "  \($0)\n" }.joined() }
            FileHandleOutput.standardOutput.write(out)
        }
        throw ExitCode(
            records.contains { $0.refusal != nil } ? ExitStatus.invalid.rawValue : ExitStatus.success.rawValue)
    }
}

struct PluginList: Encodable {
    var pluginhostVersion = BuildInfo.version
    var schemaVersion = BuildInfo.schemaVersion
    var directory: String
    var plugins: [PluginRecord]
    var warnings: [String]
}

extension PluginRecord {
    /// "ok" when the library's SHA-256 matched its manifest, else why it could not be compared.
    var checksumState: String {
        if sha256 != nil { return "ok" }
        guard let refusal else { return "-" }
        if refusal.hasPrefix("checksum") { return "MISMATCH" }
        if refusal.hasPrefix("manifest") { return "-" }
        return "unverified"
    }
}
