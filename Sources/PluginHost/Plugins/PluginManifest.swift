import PluginHostSupport
public import PluginHostWire

/// A drop-in manifest, `plugins.d/NN-name.json` (README, "Plugins"):
///
///     {
///       "name": "mysql",
///       "library": "/usr/local/lib/pluginhost/libpluginhost-mysql.so",
///       "sha256": "…64 hex digits…",
///       "enabled": true,
///       "order": 10,
///       "timeoutSeconds": 30,
///       "config": { … handed to the plugin as JSON … }
///     }
///
/// `"kind": "ffi"` binds functions of an existing vendor library instead (see `FFIBinding`).
public struct PluginManifest: Sendable, Equatable {
    public static let defaultPluginsDirectory = "/etc/pluginhost/plugins.d"
    public static let defaultTimeoutSeconds = 30
    public static let timeoutRange = 1...600
    public static let orderRange = 0...99
    /// The largest `config` (and `ffi` spec), as compact JSON: each is sent to the plugin's
    /// worker in one message (`WorkerWire.maximumMessage`), escaped. Checked with the manifest,
    /// so a larger one is refused up front (`IncorrectPluginhostFile`), never met by a worker.
    /// Plugins read bulky data from files named in their config.
    public static let maximumConfigBytes = 64 << 10
    /// Larger manifest files are refused before they are parsed.
    public static let maximumFileBytes = 1 << 20

    public typealias Kind = PluginKind

    /// The manifest file (real path).
    public var path: String
    public var name: String
    public var kind: Kind
    /// Absolute (relative paths in the file are resolved against the manifest's directory).
    public var library: String
    /// Lower-case hex.
    public var sha256: String
    public var enabled: Bool
    public var order: Int
    public var timeoutSeconds: Int
    /// The `config` object as compact JSON text (`{}` when absent).
    public var config: String
    public var ffi: FFIBinding?

    /// A manifest's file name: two digits, a dash, a name, `.json`.
    public static func isManifestName(_ file: String) -> Bool {
        let utf8 = Array(file.utf8)
        guard utf8.count > 8, file.hasSuffix(".json"), utf8[0].isASCIIDigit, utf8[1].isASCIIDigit,
            utf8[2] == UInt8(ascii: "-")
        else {
            return false
        }
        return isValidName(String(decoding: utf8[3..<(utf8.count - 5)], as: UTF8.self))
    }

    /// Plugin names: letters, digits, `.`, `_`, `-`; 1 to 64 characters.
    public static func isValidName(_ name: String) -> Bool { PluginIdentity.isValidName(name) }

    /// Parses a manifest's bytes; `path` is its real path. Throws a message naming the key.
    public static func parse(_ bytes: [UInt8], path: String) throws(ManifestError) -> PluginManifest {
        let document: JSONValue
        do {
            document = try JSONParser.parse(bytes)
        } catch {
            throw ManifestError("not valid JSON: \(error)")
        }
        guard case .object(let members) = document else {
            throw ManifestError("the top level must be an object, found \(document.kindDescription)")
        }
        let known: Set<String> = [
            "name", "kind", "library", "sha256", "enabled", "order", "timeoutSeconds", "config", "ffi",
        ]
        if let unknown = members.first(where: { member in !known.contains { $0.utf8.elementsEqual(member.key.utf8) } })
        {
            throw ManifestError("unknown key \"\(unknown.key)\" (expected \(known.sorted().joined(separator: ", ")))")
        }
        func value(_ key: String) -> JSONValue? { document[key] }
        func string(_ key: String) throws(ManifestError) -> String? {
            guard let found = value(key) else { return nil }
            guard case .string(let text) = found, !text.isEmpty, !text.utf8.contains(0) else {
                throw ManifestError("\(key): expected a non-empty string, found \(found.kindDescription)")
            }
            return text
        }
        func integer(_ key: String, _ range: ClosedRange<Int>, default fallback: Int) throws(ManifestError) -> Int {
            guard let found = value(key) else { return fallback }
            guard case .number(let number) = found, let integer = number.integerValue, range.contains(integer) else {
                throw ManifestError(
                    "\(key): expected an integer from \(range.lowerBound) to \(range.upperBound), found \(found.kindDescription)"
                )
            }
            return integer
        }

        guard let name = try string("name") else { throw ManifestError("name: required") }
        guard isValidName(name) else {
            throw ManifestError("name: use letters, digits, '.', '_' and '-' (at most 64), found \"\(name)\"")
        }
        let kindText = try string("kind") ?? "plugin"
        guard let kind = Kind(rawValue: kindText) else {
            throw ManifestError("kind: expected \"plugin\" or \"ffi\", found \"\(kindText)\"")
        }
        guard var library = try string("library") else {
            throw ManifestError("library: required (a path to the shared library)")
        }
        if !library.hasPrefix("/") { library = FileTrust.parent(of: path) + "/" + library }
        guard let digest = try string("sha256") else {
            throw ManifestError("sha256: required (write manifests with `pluginhost plugin add`)")
        }
        let sha256 = digest.lowercased()
        guard sha256.utf8.count == 64,
            sha256.utf8.allSatisfy({ $0.isASCIIDigit || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) })
        else {
            throw ManifestError("sha256: expected 64 hexadecimal digits, found \"\(digest)\"")
        }
        var enabled = true
        if let found = value("enabled") {
            guard case .bool(let flag) = found else {
                throw ManifestError("enabled: expected true or false, found \(found.kindDescription)")
            }
            enabled = flag
        }
        let fileName = path.split(separator: "/").last.map(String.init) ?? ""
        let defaultOrder = Int(fileName.prefix(2)) ?? 50
        let order = try integer("order", orderRange, default: defaultOrder)
        let timeout = try integer("timeoutSeconds", timeoutRange, default: defaultTimeoutSeconds)
        var config = "{}"
        if let found = value("config") {
            guard case .object = found else {
                throw ManifestError("config: expected an object, found \(found.kindDescription)")
            }
            config = found.serialized()
            if config.utf8.count > maximumConfigBytes {
                throw ManifestError(
                    """
                    config: \(config.utf8.count) bytes as compact JSON; at most \(maximumConfigBytes) \
                    (\(maximumConfigBytes >> 10) KiB) are allowed: keep bulky data in a file the plugin reads
                    """
                )
            }
        }
        var ffi: FFIBinding?
        switch (kind, value("ffi")) {
        case (.ffi, .some(let spec)):
            let size = spec.serialized().utf8.count
            if size > maximumConfigBytes {
                throw ManifestError(
                    "ffi: \(size) bytes as compact JSON; at most \(maximumConfigBytes) (\(maximumConfigBytes >> 10) KiB) are allowed"
                )
            }
            ffi = try FFIBinding.parse(spec)
        case (.ffi, nil):
            throw ManifestError("ffi: required when kind is \"ffi\" (the functions to call)")
        case (.plugin, .some):
            throw ManifestError("ffi: only for kind \"ffi\"")
        case (.plugin, nil):
            break
        }
        return PluginManifest(
            path: path, name: name, kind: kind, library: library, sha256: sha256, enabled: enabled,
            order: order, timeoutSeconds: timeout, config: config, ffi: ffi)
    }

    /// The manifest as JSON text, as `pluginhost plugin add` writes it.
    public func serialized(pretty: Bool = false) -> String {
        var members: [(key: String, value: JSONValue)] = [
            ("name", .string(name))
        ]
        if kind != .plugin { members.append(("kind", .string(kind.rawValue))) }
        members += [
            ("library", .string(library)),
            ("sha256", .string(sha256)),
            ("enabled", .bool(enabled)),
            ("order", .number(JSONNumber(order))),
            ("timeoutSeconds", .number(JSONNumber(timeoutSeconds))),
        ]
        if let parsed = try? JSONParser.parse(config) { members.append(("config", parsed)) }
        if let ffi { members.append(("ffi", ffi.json)) }
        return pretty ? JSONValue.object(members).prettySerialized() : JSONValue.object(members).serialized()
    }
}
