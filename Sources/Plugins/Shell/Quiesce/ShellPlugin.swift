import Glibc
public import PluginHostSupport
public import PluginKit

/// The generic shell module: runs a configured quiesce command and resume command, or, in
/// hold mode, keeps the quiesce command alive — holding, say, a database session — from the
/// moment it prints its ready line until resume closes its stdin. Commands run like the
/// scripts: no shell, a process group of their own, output drained, SIGTERM then SIGKILL to
/// the whole group on timeout, and they die with the worker (and so with the host).
///
///     "config": {
///       "quiesce": ["/usr/local/sbin/app-pause", "--wait"],
///       "resume": ["/usr/local/sbin/app-resume"],
///       "check": ["/usr/local/sbin/app-status"],
///       "hold": false,
///       "readyLine": "READY",
///       "dataPaths": ["/srv/app"]
///     }
public final class ShellPlugin: QuiescePlugin {
    public static let name = "shell"
    public static let version = "1.0.0"
    public static let summary = "runs quiesce/resume commands, or holds one running between quiesce and resume"

    public struct Config: Sendable, Equatable {
        public var quiesce: [String]
        public var resume: [String]?
        public var check: [String]?
        public var hold = false
        public var readyLine = "READY"
        public var dataPaths: [String] = []

        /// Every configured command with its key.
        var commands: [(key: String, argv: [String])] {
            [("quiesce", quiesce), ("resume", resume), ("check", check)].compactMap { entry in
                entry.1.map { (entry.0, $0) }
            }
        }
    }

    public let config: Config
    private let host: PluginHostServices
    /// Hold mode: the running quiesce command and the write end of its stdin.
    private var held: (process: ChildProcess, stdin: FileDescriptor)?
    private var quiesced = false

    public init(config: JSONValue, host: PluginHostServices) throws(PluginError) {
        self.config = try Self.parse(config)
        self.host = host
        // Refused at create: an operation never quiesces with a command it could not undo or trust.
        for (key, argv) in self.config.commands { _ = try Self.trusted(argv, key: key) }
    }

    public static func parse(_ json: JSONValue) throws(PluginError) -> Config {
        guard case .object(let members) = json else { throw PluginError(.invalidConfig, "config: expected an object") }
        let known = ["quiesce", "resume", "check", "hold", "readyLine", "dataPaths"]
        if let unknown = members.first(where: { !known.contains($0.key) }) {
            throw PluginError(
                .invalidConfig, "config: unknown key \"\(unknown.key)\" (expected \(known.joined(separator: ", ")))")
        }
        func command(_ key: String) throws(PluginError) -> [String]? {
            guard let value = json[key] else { return nil }
            guard case .array(let items) = value, !items.isEmpty else {
                throw PluginError(
                    .invalidConfig, "config.\(key): expected an array: the command's absolute path, then its arguments")
            }
            var argv: [String] = []
            for item in items {
                guard case .string(let text) = item, !text.utf8.contains(0) else {
                    throw PluginError(.invalidConfig, "config.\(key): every element must be a string")
                }
                argv.append(text)
            }
            guard argv[0].hasPrefix("/") else {
                throw PluginError(
                    .invalidConfig,
                    "config.\(key): the command must be an absolute path (no PATH search), found \(argv[0])")
            }
            return argv
        }
        guard let quiesce = try command("quiesce") else {
            throw PluginError(.invalidConfig, "config.quiesce: required")
        }
        var config = Config(quiesce: quiesce, resume: try command("resume"), check: try command("check"))
        if let value = json["hold"] {
            guard case .bool(let flag) = value else {
                throw PluginError(.invalidConfig, "config.hold: expected true or false")
            }
            config.hold = flag
        }
        if let value = json["readyLine"] {
            guard case .string(let line) = value, !line.isEmpty, !line.contains("\n") else {
                throw PluginError(.invalidConfig, "config.readyLine: expected a non-empty single line")
            }
            config.readyLine = line
        }
        if let value = json["dataPaths"] {
            guard case .array(let items) = value else {
                throw PluginError(.invalidConfig, "config.dataPaths: expected an array of absolute paths")
            }
            for item in items {
                guard case .string(let path) = item, path.hasPrefix("/") else {
                    throw PluginError(.invalidConfig, "config.dataPaths: expected absolute paths")
                }
                config.dataPaths.append(path)
            }
        }
        if !config.hold && config.resume == nil {
            throw PluginError(
                .invalidConfig, "config.resume: required unless hold is true (something must undo the quiesce)")
        }
        return config
    }

    public func check(_ call: inout PluginCall) throws(PluginError) {
        for (key, argv) in config.commands { _ = try Self.trusted(argv, key: key) }
        call.detail("mode", config.hold ? "hold" : "run")
        if let check = config.check { try run(check, "check", &call) }
    }

    /// The real path of a command's executable, if it passes the trust rules of what root runs
    /// (`FileTrust.Rule.command`): a regular file owned by root, executable by its owner, not
    /// writable by group or other, and every directory above it root's and not writable by
    /// group or other (unless sticky) — on the real path after symlinks and on the path as
    /// written. Root runs it; only root may be able to change it.
    static func trusted(_ argv: [String], key: String) throws(PluginError) -> String {
        switch FileTrust.verify(argv[0], rule: .command) {
        case .success(let real):
            return real
        case .failure(let failure):
            let remedy = failure.remedy.map { " (\($0))" } ?? ""
            throw PluginError(
                .invalidConfig,
                """
                config.\(key): \(failure)\(remedy); commands run as root, so they must be root's, executable by their \
                owner, writable only by root, in directories only root can write
                """
            )
        }
    }

    public func dataPaths(_ call: inout PluginCall) throws(PluginError) -> [String] { config.dataPaths }

    public func quiesce(_ call: inout PluginCall) throws(PluginError) {
        quiesced = true
        if config.hold {
            try startHold(&call)
        } else {
            try run(config.quiesce, "quiesce", &call)
        }
    }

    public func resume(_ call: inout PluginCall) throws(PluginError) {
        guard quiesced else { return }  // idempotent: nothing (more) to undo
        quiesced = false
        var lost: PluginError?
        if config.hold { lost = endHold(&call) }
        if let resume = config.resume { try run(resume, "resume", &call) }
        if let lost { throw lost }
    }

    // MARK: - Run mode

    private func run(_ argv: [String], _ what: String, _ call: inout PluginCall) throws(PluginError) {
        let child = try spawn(argv, stdin: -1)
        switch child.wait(until: Self.ownDeadline(call)) {
        case .exited(.exited(0)):
            call.detail("\(what)_output", lastLine(child.stdoutTail.text))
        case .exited(let termination):
            throw PluginError(.failed, "\(argv[0]) \(termination)\(tail(child))")
        case .deadlineReached, .readable:
            child.terminateGroup(grace: Self.grace)
            throw PluginError(.timeout, "\(argv[0]) did not finish in time; it was killed\(tail(child))")
        }
    }

    // MARK: - Hold mode

    private func startHold(_ call: inout PluginCall) throws(PluginError) {
        let input: (read: FileDescriptor, write: FileDescriptor)
        do {
            input = try makePipe()
        } catch {
            throw PluginError(.failed, "cannot create a pipe: \(error)")
        }
        let child = try spawn(config.quiesce, stdin: input.read.rawValue)
        input.read.close()
        let deadline = Self.ownDeadline(call)
        while true {
            switch child.waitForOutput(until: deadline) {
            case .output:
                let lines = child.stdoutTail.text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
                if lines.contains(where: { $0 == config.readyLine }) {
                    held = (child, input.write)
                    call.detail("hold_pid", String(child.pid))
                    return
                }
            case .exited(let termination):
                throw PluginError(
                    .failed, "\(config.quiesce[0]) \(termination) instead of holding until resume\(tail(child))")
            case .deadlineReached:
                child.terminateGroup(grace: Self.grace)
                throw PluginError(
                    .timeout,
                    "\(config.quiesce[0]) did not print \"\(config.readyLine)\" in time; it was killed\(tail(child))")
            }
        }
    }

    /// Closes the held command's stdin and waits for it to end. Returns the error to report
    /// after resume ran: the hold broke (consistency lost) or the command failed to let go.
    private func endHold(_ call: inout PluginCall) -> PluginError? {
        guard let (child, stdin) = held else { return nil }
        held = nil
        // Did it die while holding? Then the snapshot was taken without the hold.
        if case .exited(let termination) = child.wait(until: .now) {
            stdin.close()
            return PluginError(
                .consistencyLost,
                """
                \(config.quiesce[0]) \(termination) while it should have held; the snapshot is not \
                application-consistent for it\(tail(child))
                """
            )
        }
        stdin.close()
        switch child.wait(until: Self.ownDeadline(call)) {
        case .exited(.exited(0)):
            return nil
        case .exited(let termination):
            return PluginError(.failed, "\(config.quiesce[0]) \(termination) after its stdin was closed\(tail(child))")
        case .deadlineReached, .readable:
            child.terminateGroup(grace: Self.grace)
            return PluginError(.timeout, "\(config.quiesce[0]) did not end after its stdin was closed; it was killed")
        }
    }

    deinit {
        // Never leave a held command behind: it dies with the plugin.
        if let (child, stdin) = held {
            stdin.close()
            child.terminateGroup(grace: .milliseconds(500))
        }
    }

    // MARK: - Helpers

    /// SIGTERM to SIGKILL for a command's process group.
    static let grace: Duration = .milliseconds(200)

    /// The host kills the worker at the call's deadline, and a killed worker cannot kill its
    /// commands' process groups: give up earlier — a tenth of the time left, between 0.3 and
    /// 2 seconds — so that no grandchild survives.
    static func ownDeadline(_ call: PluginCall) -> Monotonic.Instant {
        let now = Monotonic.Instant.now
        guard let deadline = call.deadline else { return now + .seconds(60) }
        guard deadline > now else { return now }
        let margin = min(max((deadline - now) / 10, .milliseconds(300)), .seconds(2))
        return deadline > now + margin ? deadline - margin : now
    }

    private func spawn(_ argv: [String], stdin: Int32) throws(PluginError) -> ChildProcess {
        // Checked again at each run: the file may have changed since create. (The path as written
        // is run: its directories were checked too, so only root could re-point it.)
        _ = try Self.trusted(argv, key: config.commands.first { $0.argv == argv }?.key ?? "command")
        do {
            return try ChildProcess(
                spawning: Command(
                    executable: argv[0], arguments: Array(argv.dropFirst()),
                    environment: [
                        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "LANG": "C", "PLUGINHOST_OPERATION_ID": host.operationID,
                    ]),
                stdin: stdin)
        } catch {
            throw PluginError(.failed, "cannot start \(argv[0]): \(error)")
        }
    }

    private func tail(_ child: ChildProcess) -> String {
        let text = (child.stderrTail.text + child.stdoutTail.text).split(whereSeparator: \.isNewline).suffix(3).joined(
            separator: " / ")
        return text.isEmpty ? "" : ": \(text)"
    }

    private func lastLine(_ text: String) -> String {
        String(text.split(whereSeparator: \.isNewline).last ?? "")
    }
}
