import Glibc
public import Logging
import PluginHostSupport
import PluginHostWire

/// `pluginhost plugin add`: verify a library, load it once, and write its manifest with the
/// computed checksum, so that nobody edits a checksum by hand.
public enum PluginInstaller {
    public struct Request: Sendable {
        public var library: String
        public var name: String?
        public var order = 50
        public var timeoutSeconds = PluginManifest.defaultTimeoutSeconds
        /// The config object as JSON text.
        public var config = "{}"
        /// For a libffi binding: the spec object as JSON text.
        public var ffiSpec: String?
        public var enabled = true
        public var replace = false
        public var directory = PluginManifest.defaultPluginsDirectory

        public init(library: String) {
            self.library = library
        }

        /// Takes name, order, timeoutSeconds, enabled, config (and an ffi spec) from a template
        /// manifest, such as the repo's plugins.d/ files; the library and checksum come from here.
        public mutating func apply(template bytes: [UInt8]) throws(HostError) {
            func wrong(_ message: String) -> HostError {
                HostError(.incorrectPluginhostFile, "template: \(message)", step: "plugin add")
            }
            guard case .object(let members)? = try? JSONParser.parse(bytes) else {
                throw wrong("expected a JSON object")
            }
            for (key, value) in members {
                switch (key, value) {
                case ("name", .string(let text)): name = text
                case ("order", .number(let number)) where number.integerValue != nil: order = number.integerValue!
                case ("timeoutSeconds", .number(let number)) where number.integerValue != nil:
                    timeoutSeconds = number.integerValue!
                case ("enabled", .bool(let flag)): enabled = flag
                case ("config", .object): config = value.serialized()
                case ("ffi", .object): ffiSpec = value.serialized()
                case ("library", _), ("kind", _), ("sha256", _), ("comment", _): continue
                default: throw wrong("unexpected \(key): \(value.kindDescription)")
                }
            }
        }
    }

    public struct Installed: Sendable {
        public var manifestPath: String
        public var record: PluginRecord
        /// What the admin should know (a disabled plugin whose create refuses its config).
        public var warnings: [String] = []
    }

    public static func add(_ request: Request, executable: String, logger: Logger) throws(HostError) -> Installed {
        func refuse(_ message: String) -> HostError { HostError(.incorrectPluginhostFile, message, step: "plugin add") }
        let verified: VerifiedLibrary
        switch PluginVerifier.verifyLibrary(request.library, expectedSHA256: nil) {
        case .success(let library): verified = library
        case .failure(let refusal):
            throw refuse("the library is refused by the \(refusal.check.rawValue) check: \(refusal.message)")
        }

        // Build the manifest as text and parse it as the host will: one set of rules.
        func manifest(named name: String) throws(HostError) -> PluginManifest {
            var members: [(key: String, value: JSONValue)] = [("name", .string(name))]
            if request.ffiSpec != nil { members.append(("kind", .string("ffi"))) }
            members += [
                ("library", .string(request.library)), ("sha256", .string(verified.sha256)),
                ("enabled", .bool(request.enabled)), ("order", .number(JSONNumber(request.order))),
                ("timeoutSeconds", .number(JSONNumber(request.timeoutSeconds))),
            ]
            do {
                members.append(("config", try JSONParser.parse(request.config)))
                if let spec = request.ffiSpec { members.append(("ffi", try JSONParser.parse(spec))) }
            } catch {
                throw refuse("invalid JSON: \(error)")
            }
            let path = "\(request.directory)/\(request.order < 10 ? "0" : "")\(request.order)-\(name).json"
            do {
                return try PluginManifest.parse(Array(JSONValue.object(members).serialized().utf8), path: path)
            } catch {
                throw refuse("the manifest would be invalid: \(error.message)")
            }
        }

        // Load and create it once, as an operation would: it must load, it must accept its
        // config (its create is the judge), and it may name itself.
        var candidate = try manifest(named: request.name ?? "candidate")
        let trial = PluginCatalog(
            directory: request.directory,
            entries: [.init(manifestPath: candidate.path, manifest: candidate, library: verified, state: .ready)],
            warnings: [])
        let (record, problems) = PluginInventory.trial(trial, executable: executable, logger: logger)
        if let refusal = record.refusal { throw refuse("the plugin does not load: \(refusal)") }
        guard let name = request.name ?? record.reportedName else {
            throw refuse("the plugin does not name itself: give --name")
        }
        var warnings: [String] = []
        if !problems.isEmpty {
            let failed = record.calls.first { $0.outcome != .ok }
            let why =
                failed.map {
                    "its \($0.function.rawValue) failed (\($0.outcome.rawValue)): \($0.message ?? "no message")"
                } ?? problems[0].message
            // A disabled manifest is a template to finish (an option file to write, say): written, with the warning.
            guard !request.enabled else { throw refuse("the plugin refuses this config: \(why)") }
            warnings.append(
                "written disabled, but the plugin refuses this config as it is: \(why); fix the config before enabling it"
            )
        }
        candidate = try manifest(named: name)

        try StatePaths.makeDirectory(request.directory, mode: 0o755)
        let existing = PluginCatalog.load(directory: request.directory).entries.filter { $0.name == name }
        if !existing.isEmpty && !request.replace {
            throw refuse(
                "a manifest for \(name) exists: \(existing.map(\.manifestPath).joined(separator: ", ")) (replace it with --force)"
            )
        }
        do {
            try writeFileAtomically(candidate.path, Array(candidate.serialized(pretty: true).utf8), mode: 0o644)
        } catch {
            throw refuse("cannot write \(candidate.path): \(error)")
        }
        for old in existing where old.manifestPath != candidate.path { try? FileSystem.remove(old.manifestPath) }
        let written = PluginCatalog.verify(candidate.path)
        if case .refused(let refusal) = written.state {
            try? FileSystem.remove(candidate.path)
            throw refuse("the written manifest does not verify: \(refusal)")
        }
        var installed = record
        installed.name = name
        installed.manifest = candidate.path
        installed.state = request.enabled ? .ready : .disabled
        return Installed(manifestPath: candidate.path, record: installed, warnings: warnings)
    }
}
