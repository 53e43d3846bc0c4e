import ArgumentParser
import FoundationEssentials
import Glibc
import Logging
import PluginHost
import PluginHostSupport

/// The options every command that plans an operation shares (`run`, `check`).
struct PlanOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The Azure script config.", valueName: "path"))
    var config: String?

    @Option(
        name: .customLong("host-config"),
        help: ArgumentHelp("The host's own settings (mounts, skip list, deadline).", valueName: "path"))
    var hostConfig: String?

    @Option(
        name: .customLong("mount"), help: ArgumentHelp("Freeze only this mount point (repeatable).", valueName: "path"))
    var mounts: [String] = []

    @Option(
        name: .customLong("skip"), help: ArgumentHelp("Never freeze this mount point (repeatable).", valueName: "path"))
    var skipMounts: [String] = []

    @Option(
        name: .customLong("max-frozen"),
        help: ArgumentHelp("The freeze guard's deadline, 1 to 600 seconds (default 60).", valueName: "seconds"))
    var maxFrozen: Double?

    @Option(
        name: .customLong("plugins-dir"),
        help: ArgumentHelp("Plugin manifests (default /etc/pluginhost/plugins.d).", valueName: "dir"))
    var pluginsDirectory: String?

    func validate() throws {
        if let maxFrozen, !FreezeGuard.deadlineRange.contains(maxFrozen) {
            throw ValidationError("--max-frozen must be from 1 to 600 seconds")
        }
    }

    /// The options with every path made absolute against the caller's working directory, and
    /// PLUGINHOST_CONFIG, PLUGINHOST_HOST_CONFIG and PLUGINHOST_PLUGINS_DIR standing in for
    /// options not given (a hook's agent passes none): the session process runs in `/`, so the
    /// same arguments must mean the same files for `run`, `freeze` and the hooks.
    var resolved: PlanOptions {
        let environment = ProcessEnvironment()
        var copy = self
        copy.config = (config ?? environment["PLUGINHOST_CONFIG"]).map(absolutePath)
        copy.hostConfig = (hostConfig ?? environment["PLUGINHOST_HOST_CONFIG"]).map(absolutePath)
        copy.pluginsDirectory = (pluginsDirectory ?? environment["PLUGINHOST_PLUGINS_DIR"]).map(absolutePath)
        copy.mounts = mounts.map(absolutePath)
        copy.skipMounts = skipMounts.map(absolutePath)
        return copy
    }

    func request(snapshotCommand: [String] = []) -> OperationRequest {
        let plan = resolved
        var request = OperationRequest(executable: currentExecutable())
        request.configPath = plan.config
        request.hostConfigPath = plan.hostConfig
        request.mounts = plan.mounts
        request.skipMounts = plan.skipMounts
        request.maxFrozenSeconds = maxFrozen
        request.snapshotCommand = snapshotCommand
        request.pluginsDirectory = plan.pluginsDirectory
        request.paths = statePaths()
        request.cgroups = ProcessEnvironment()["PLUGINHOST_CGROUPS"] != "off"
        return request
    }
}

struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Machine-readable JSON on stdout.")
    var json = false

    @Flag(name: [.short, .long], help: "Log each step on stderr.")
    var verbose = false
}

/// The state directories; PLUGINHOST_RUN_DIR and PLUGINHOST_STATE_DIR move them (tests, staging).
func statePaths() -> StatePaths {
    let environment = ProcessEnvironment()
    return StatePaths(
        runDirectory: environment["PLUGINHOST_RUN_DIR"] ?? StatePaths.defaultRunDirectory,
        stateDirectory: environment["PLUGINHOST_STATE_DIR"] ?? StatePaths.defaultStateDirectory)
}

/// `path` made absolute against the working directory (unchanged when already absolute or empty).
func absolutePath(_ path: String) -> String {
    guard !path.isEmpty, !path.hasPrefix("/") else { return path }
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return path }
    let directory = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var relative = Substring(path)
    while relative.hasPrefix("./") { relative = relative.dropFirst(2) }
    return (directory == "/" ? "" : directory) + "/" + relative
}

/// The running binary, re-executed as the freeze guard.
func currentExecutable() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    return count > 0
        ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
}

struct ProcessEnvironment {
    subscript(name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}

/// Sets up logging to stderr (held while frozen) and returns the output to hold.
func bootstrapLogging(verbose: Bool) -> HeldLogOutput {
    let output = HeldLogOutput(descriptor: 2)
    LoggingSystem.bootstrap { label in
        HeldLogHandler(label: label, output: output, level: verbose ? .info : .warning)
    }
    return output
}

func requireRoot(_ command: String) throws {
    guard geteuid() == 0 else {
        FileHandleOutput.standardError.write(
            "pluginhost \(command) must run as root (it freezes filesystems and runs root's scripts)\n")
        throw ExitCode(ExitStatus.invalid.rawValue)
    }
}

/// Unbuffered writes to stdout/stderr.
struct FileHandleOutput {
    let descriptor: Int32
    static let standardOutput = FileHandleOutput(descriptor: 1)
    static let standardError = FileHandleOutput(descriptor: 2)

    func write(_ text: String) {
        FileDescriptor.write(text, to: descriptor)
    }

    func write(bytes: [UInt8]) { write(String(decoding: bytes, as: UTF8.self)) }
}

/// A JSON answer that is only errors (e.g. `thaw` with nothing to thaw).
struct ErrorDocument: Encodable {
    var errors: [HostError]
    var pluginhostVersion = BuildInfo.version
    var schemaVersion = BuildInfo.schemaVersion
}

/// Pretty, key-sorted JSON on stdout.
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    FileHandleOutput.standardOutput.write(bytes: Array(try encoder.encode(value)) + [0x0A])
}
