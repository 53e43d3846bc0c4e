import ArgumentParser
import Glibc
import Logging
import PluginHost
import PluginHostSupport

struct PluginCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin",
        abstract: "Install plugins: write their manifests with the computed checksum.",
        subcommands: [PluginAddCommand.self]
    )
}

struct PluginAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract:
            "Verify a plugin library, load and create it once in a worker with its config, and write its manifest NN-name.json.",
        discussion: """
            The library must be owned by root and not writable by group or other, in directories likewise.
            The plugin is created once with the config: a config it refuses is not written (with --disabled it is
            written, with a warning, for a template to finish before enabling it).
            The manifest gets the library's SHA-256, mode 0644 and root as owner; nobody edits a checksum by hand.
            Example: pluginhost plugin add /usr/local/lib/pluginhost/libpluginhost-mysql.so --order 10 --config-file mysql.json
            """
    )

    @Argument(help: ArgumentHelp("The shared library (absolute path).", valueName: "library"))
    var library: String

    @Option(help: "The plugin's name (default: the name the plugin reports; required for --ffi).")
    var name: String?

    @Option(help: "Lower orders quiesce first and resume last; equal orders run concurrently (0-99, default 50).")
    var order: Int?

    @Option(
        name: .customLong("timeout"),
        help: ArgumentHelp("Seconds each call may take (1-600, default 30).", valueName: "seconds"))
    var timeoutSeconds: Int?

    @Option(help: ArgumentHelp("The plugin's config as a JSON object.", valueName: "json"))
    var config: String?

    @Option(
        name: .customLong("config-file"), help: ArgumentHelp("The plugin's config from a JSON file.", valueName: "path")
    )
    var configFile: String?

    @Option(
        name: .customLong("ffi"),
        help: ArgumentHelp(
            "Bind a vendor library through libffi: a JSON file with its quiesce/resume/check functions.",
            valueName: "spec"))
    var ffiSpec: String?

    @Option(
        help: ArgumentHelp(
            "Take name, order, timeout, enabled and config from a template manifest (the repo's plugins.d/); other options override it.",
            valueName: "manifest"))
    var template: String?

    @Flag(help: "Write the manifest with \"enabled\": false.")
    var disabled = false

    @Flag(help: "Replace an existing manifest of the same name.")
    var force = false

    @Option(
        name: .customLong("plugins-dir"),
        help: ArgumentHelp("Where to write the manifest (default /etc/pluginhost/plugins.d).", valueName: "dir"))
    var pluginsDirectory: String?

    func validate() throws {
        guard library.hasPrefix("/") else { throw ValidationError("give the library as an absolute path") }
        if let order, !PluginManifest.orderRange.contains(order) {
            throw ValidationError("--order must be from 0 to 99")
        }
        if let timeoutSeconds, !PluginManifest.timeoutRange.contains(timeoutSeconds) {
            throw ValidationError("--timeout must be from 1 to 600")
        }
        if config != nil && configFile != nil { throw ValidationError("give --config or --config-file, not both") }
        if ffiSpec != nil && name == nil { throw ValidationError("--ffi needs --name") }
        if let name, !PluginManifest.isValidName(name) {
            throw ValidationError("--name: letters, digits, '.', '_' and '-'")
        }
    }

    func run() throws {
        try requireRoot("plugin add")
        _ = bootstrapLogging(verbose: false)
        var request = PluginInstaller.Request(library: library)
        if let template {
            do {
                try request.apply(template: Array(try readText(template).utf8))
            } catch {
                fail("\(template): \(error)")
            }
        }
        if let name { request.name = name }
        if let order { request.order = order }
        if let timeoutSeconds { request.timeoutSeconds = timeoutSeconds }
        if let text = try configFile.map(readText) ?? config { request.config = text }
        if let spec = try ffiSpec.map(readText) { request.ffiSpec = spec }
        if disabled { request.enabled = false }
        request.replace = force
        if let pluginsDirectory { request.directory = pluginsDirectory }
        do {
            let installed = try PluginInstaller.add(
                request, executable: currentExecutable(), logger: Logger(label: "pluginhost"))
            let record = installed.record
            for warning in installed.warnings {
                FileHandleOutput.standardError.write("pluginhost plugin add: warning: \(warning)\n")
            }
            FileHandleOutput.standardOutput.write(
                """
                wrote \(installed.manifestPath): \(record.name) \(record.version ?? "") (ABI \(record.abi ?? "?")), \
                sha256 \(record.sha256 ?? "?")\(request.enabled ? "" : ", disabled")\n
                """
            )
        } catch {
            fail("\(error.code.rawValue): \(error.message)")
        }
    }

    private func readText(_ path: String) throws -> String {
        do {
            let file = try FileDescriptor.open(path, O_RDONLY)
            return String(decoding: try file.readAll(limit: 1 << 20), as: UTF8.self)
        } catch {
            fail("cannot read \(path): \(error)")
        }
    }

    private func fail(_ message: String) -> Never {
        FileHandleOutput.standardError.write("pluginhost plugin add: \(message)\n")
        Glibc.exit(ExitStatus.invalid.rawValue)
    }
}
