import PluginHostSupport

/// Messages between the host and a plugin worker, one JSON object per SOCK_SEQPACKET message,
/// `{"op": …}` one way and `{"msg": …}` the other. Both ends are this binary; anything that
/// does not decode is a worker gone wrong, and the host kills it. Encoded with the package's
/// own JSON (not Foundation's Codable), which a freshly forked worker starts in microseconds.
public enum WorkerRequest: Equatable, Sendable {
    /// Load the library on descriptor 3 and check its descriptor (or, for an ffi binding, resolve
    /// the symbols of the spec, given as JSON); answers `loaded` or `refused`.
    case load(kind: PluginKind, ffiSpec: String?)
    case create(config: String, operationID: String, freezeMounts: [String], deadline: UInt64)
    /// check, quiesce, resume or dataPaths.
    case call(function: PluginFunction, deadline: UInt64, holdUntil: UInt64)
    /// Destroy the instance and exit.
    case destroy
}

/// What a manifest's library is.
public enum PluginKind: String, Sendable, Equatable, CaseIterable {
    /// A library exporting `pluginhost_plugin_entry` (pluginhost_plugin.h).
    case plugin
    /// A vendor library whose functions are called through libffi.
    case ffi
}

/// The plugin functions the host calls after create.
public enum PluginFunction: String, Sendable, CaseIterable {
    case check, quiesce, resume, dataPaths
}

/// The checks a plugin passes before it is used, in the order they run (the host's on the
/// manifest and library file, then the worker's on the loaded library and its descriptor).
public enum PluginCheck: String, Sendable, Codable, CaseIterable {
    case manifest, library, checksum, elf, load, entry, magic
    case abiMajor = "abi-major"
    case structSize = "struct-size"
    case trailingFields = "trailing-fields"
    case flags, reserved, function, identity, symbol
}

/// Why a plugin is refused: the check that failed and what it found.
public struct PluginRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public var check: PluginCheck
    public var message: String

    public init(_ check: PluginCheck, _ message: String) {
        self.check = check
        self.message = message
    }

    public var description: String { "\(check.rawValue): \(message)" }
}

public enum WorkerMessage: Equatable, Sendable {
    case log(level: Int32, message: String)
    case loaded(PluginIdentity)
    case refused(check: PluginCheck, message: String)
    case result(status: Int32, message: String, details: String)
}

/// What a plugin says about itself, checked against the ABI.
public struct PluginIdentity: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    public var description: String
    /// "1.0", or "ffi" for a libffi binding.
    public var abi: String

    public init(name: String, version: String, description: String, abi: String) {
        self.name = name
        self.version = version
        self.description = description
        self.abi = abi
    }

    /// Plugin names: letters, digits, `.`, `_`, `-`; 1 to 64 characters.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy {
                $0.isASCIIDigit || $0.isASCIILetter || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_")
                    || $0 == UInt8(ascii: "-")
            }
    }
}

extension UInt8 {
    public var isASCIIDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    public var isASCIILetter: Bool { (self | 0x20) >= UInt8(ascii: "a") && (self | 0x20) <= UInt8(ascii: "z") }
}

public enum WorkerWire {
    public static let maximumMessage = 256 * 1024
    /// Plugin-provided text is cut to these sizes (the ABI's host-owned buffers).
    public static let messageSize = 4096
    public static let detailsSize = 16384
    public static let logLineSize = 2048

    public static func encode(_ request: WorkerRequest) -> [UInt8] {
        var members: [(key: String, value: JSONValue)]
        switch request {
        case .load(let kind, let spec):
            members = [("op", .string("load")), ("kind", .string(kind.rawValue))]
            if let spec { members.append(("ffiSpec", .string(spec))) }
        case .create(let config, let operationID, let mounts, let deadline):
            members = [
                ("op", .string("create")), ("config", .string(config)), ("operationID", .string(operationID)),
                ("freezeMounts", .array(mounts.map(JSONValue.string))), ("deadline", number(deadline)),
            ]
        case .call(let function, let deadline, let holdUntil):
            members = [
                ("op", .string(function.rawValue)), ("deadline", number(deadline)), ("holdUntil", number(holdUntil)),
            ]
        case .destroy:
            members = [("op", .string("destroy"))]
        }
        return Array(JSONValue.object(members).serialized().utf8)
    }

    public static func encode(_ message: WorkerMessage) -> [UInt8] {
        let members: [(key: String, value: JSONValue)]
        switch message {
        case .log(let level, let text):
            members = [("msg", .string("log")), ("level", number(level)), ("text", .string(text))]
        case .loaded(let identity):
            members = [
                ("msg", .string("loaded")), ("name", .string(identity.name)), ("version", .string(identity.version)),
                ("description", .string(identity.description)), ("abi", .string(identity.abi)),
            ]
        case .refused(let check, let text):
            members = [("msg", .string("refused")), ("check", .string(check.rawValue)), ("text", .string(text))]
        case .result(let status, let text, let details):
            members = [
                ("msg", .string("result")), ("status", number(status)), ("text", .string(text)),
                ("details", .string(details)),
            ]
        }
        return Array(JSONValue.object(members).serialized().utf8)
    }

    public static func decodeRequest(_ bytes: some Collection<UInt8>) -> WorkerRequest? {
        guard let value = try? JSONParser.parse(Array(bytes)), case .string(let op)? = value["op"] else { return nil }
        switch op {
        case "load":
            guard let kind = string(value, "kind").flatMap(PluginKind.init(rawValue:)) else { return nil }
            return .load(kind: kind, ffiSpec: string(value, "ffiSpec"))
        case "create":
            guard let config = string(value, "config"), let id = string(value, "operationID"),
                case .array(let items)? = value["freezeMounts"], let deadline = unsigned(value, "deadline")
            else { return nil }
            let mounts = items.compactMap { item -> String? in
                if case .string(let text) = item { return text }
                return nil
            }
            guard mounts.count == items.count else { return nil }
            return .create(config: config, operationID: id, freezeMounts: mounts, deadline: deadline)
        case "destroy":
            return .destroy
        default:
            guard let function = PluginFunction(rawValue: op), let deadline = unsigned(value, "deadline"),
                let holdUntil = unsigned(value, "holdUntil")
            else { return nil }
            return .call(function: function, deadline: deadline, holdUntil: holdUntil)
        }
    }

    public static func decodeMessage(_ bytes: some Collection<UInt8>) -> WorkerMessage? {
        guard let value = try? JSONParser.parse(Array(bytes)), case .string(let kind)? = value["msg"] else {
            return nil
        }
        switch kind {
        case "log":
            guard let level = signed(value, "level"), let text = string(value, "text") else { return nil }
            return .log(level: level, message: text)
        case "loaded":
            guard let name = string(value, "name"), let version = string(value, "version"),
                let description = string(value, "description"), let abi = string(value, "abi")
            else { return nil }
            return .loaded(PluginIdentity(name: name, version: version, description: description, abi: abi))
        case "refused":
            guard let check = string(value, "check").flatMap(PluginCheck.init(rawValue:)),
                let text = string(value, "text")
            else { return nil }
            return .refused(check: check, message: text)
        case "result":
            guard let status = signed(value, "status"), let text = string(value, "text"),
                let details = string(value, "details")
            else { return nil }
            return .result(status: status, message: text, details: details)
        default:
            return nil
        }
    }

    private static func number(_ value: some BinaryInteger) -> JSONValue {
        .number(JSONNumber(text: String(value), isInteger: true))
    }

    private static func string(_ object: JSONValue, _ key: String) -> String? {
        if case .string(let text)? = object[key] { return text }
        return nil
    }

    private static func unsigned(_ object: JSONValue, _ key: String) -> UInt64? {
        if case .number(let number)? = object[key], number.isInteger { return UInt64(number.text) }
        return nil
    }

    private static func signed(_ object: JSONValue, _ key: String) -> Int32? {
        if case .number(let number)? = object[key], number.isInteger { return Int32(number.text) }
        return nil
    }
}

/// The status a plugin call returns: `ph_status` of pluginhost_plugin.h, the one source of
/// this list (append-only; PluginStatusTests compare the two).
public enum PluginStatus: Int32, Sendable, CaseIterable {
    case ok = 0
    case failed = 1
    case invalidConfig = 2
    case unreachable = 3
    case notAuthorized = 4
    case timeout = 5
    case busy = 6
    case consistencyLost = 7
    case unsupported = 8

    /// The name reports use (`PH_INVALID_CONFIG` → `invalid-config`).
    public var name: String {
        switch self {
        case .ok: "ok"
        case .failed: "failed"
        case .invalidConfig: "invalid-config"
        case .unreachable: "unreachable"
        case .notAuthorized: "not-authorized"
        case .timeout: "timeout"
        case .busy: "busy"
        case .consistencyLost: "consistency-lost"
        case .unsupported: "unsupported"
        }
    }
}
