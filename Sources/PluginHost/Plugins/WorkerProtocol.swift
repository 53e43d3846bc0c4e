import FoundationEssentials

/// Messages between the host and a plugin worker, one JSON document per SOCK_SEQPACKET
/// message. The worker is the host binary itself, so both ends are ours; anything that does not
/// decode is a worker gone wrong, and the host kills it.
enum WorkerRequest: Codable, Equatable {
    /// Load the library on descriptor 3 and check its descriptor (or, for an ffi binding, resolve
    /// the symbols of the spec, given as JSON); answers `loaded` or `refused`.
    case load(kind: String, ffiSpec: String?)
    case create(config: String, operationID: String, freezeMounts: [String], deadline: UInt64)
    /// check, quiesce, resume or dataPaths.
    case call(function: PluginFunction, deadline: UInt64, holdUntil: UInt64)
    /// Destroy the instance and exit.
    case destroy
}

enum PluginFunction: String, Codable, Sendable {
    case check, quiesce, resume, dataPaths
}

enum WorkerMessage: Codable, Equatable {
    case log(level: Int32, message: String)
    case loaded(PluginIdentity)
    case refused(check: String, message: String)
    case result(status: Int32, message: String, details: String)
}

/// What a plugin says about itself, checked against the ABI.
public struct PluginIdentity: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    public var description: String
    /// "1.0", or "ffi" for a libffi binding.
    public var abi: String
}

enum WorkerWire {
    static let maximumMessage = 256 * 1024
    /// Plugin-provided text is cut to these sizes (the ABI's host-owned buffers).
    static let messageSize = 4096
    static let detailsSize = 16384
    static let logLineSize = 2048

    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        (try? JSONEncoder().encode(value)).map(Array.init) ?? []
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: some Collection<UInt8>) -> T? {
        try? JSONDecoder().decode(type, from: Data(bytes))
    }
}
