public import PluginHostSupport

/// A manifest of kind `"ffi"`: functions of an existing vendor library, called by symbol
/// through libffi in the worker, for teams that have a C library with suspend/resume calls
/// and no wish to write a plugin around it. The library is verified exactly like a plugin.
///
///     "ffi": {
///       "quiesce": {"symbol": "vendor_suspend", "arguments": [
///                      {"type": "string", "value": "db1"},
///                      {"type": "int32", "from": "remainingMilliseconds"}],
///                   "returns": "int32", "success": 0},
///       "resume":  {"symbol": "vendor_resume", "arguments": [{"type": "string", "value": "db1"}]},
///       "check":   {"symbol": "vendor_ping"}
///     }
///
/// Argument types: int32, int64, uint32, uint64, bool, string. `from` takes a value from the
/// call instead: `remainingMilliseconds` (until the call's deadline) or `operationID`.
/// Return types: int32 (default), int64, uint32, uint64, bool, void; `success` is the value
/// that means success (default 0, or true for bool; void always succeeds).
public struct FFIBinding: Sendable, Equatable {
    public enum ValueType: String, Sendable, CaseIterable {
        case void, int32, int64, uint32, uint64, bool, string
    }

    public enum Source: String, Sendable {
        case remainingMilliseconds
        case operationID
    }

    public struct Argument: Sendable, Equatable {
        public var type: ValueType
        public var integer: Int64 = 0
        public var string: String?
        public var source: Source?
    }

    public struct Function: Sendable, Equatable {
        public var symbol: String
        public var arguments: [Argument]
        public var returns: ValueType
        public var success: Int64
    }

    public var check: Function?
    public var quiesce: Function
    public var resume: Function
    /// The spec as written, for serialising the manifest again.
    public var json: JSONValue

    public static func parse(_ spec: JSONValue) throws(ManifestError) -> FFIBinding {
        guard case .object(let members) = spec else { throw ManifestError("ffi: expected an object") }
        for member in members where !["check", "quiesce", "resume"].contains(member.key) {
            throw ManifestError("ffi: unknown key \"\(member.key)\" (expected check, quiesce, resume)")
        }
        guard let quiesce = spec["quiesce"] else { throw ManifestError("ffi.quiesce: required") }
        guard let resume = spec["resume"] else { throw ManifestError("ffi.resume: required") }
        return FFIBinding(
            check: try spec["check"].map { (value) throws(ManifestError) in try function(value, "ffi.check") },
            quiesce: try function(quiesce, "ffi.quiesce"),
            resume: try function(resume, "ffi.resume"),
            json: spec)
    }

    private static func function(_ value: JSONValue, _ key: String) throws(ManifestError) -> Function {
        guard case .object(let members) = value else { throw ManifestError("\(key): expected an object") }
        for member in members where !["symbol", "arguments", "returns", "success"].contains(member.key) {
            throw ManifestError("\(key): unknown key \"\(member.key)\"")
        }
        guard case .string(let symbol)? = value["symbol"], !symbol.isEmpty,
            symbol.utf8.allSatisfy({ $0.isASCIILetter || $0.isASCIIDigit || $0 == UInt8(ascii: "_") })
        else {
            throw ManifestError("\(key).symbol: expected a C identifier")
        }
        var returns = ValueType.int32
        if let found = value["returns"] {
            guard case .string(let name) = found, let type = ValueType(rawValue: name), type != .string else {
                throw ManifestError("\(key).returns: expected one of void, int32, int64, uint32, uint64, bool")
            }
            returns = type
        }
        var success: Int64 = returns == .bool ? 1 : 0
        switch value["success"] {
        case nil: break
        case .number(let number)? where number.integerValue != nil && returns != .bool && returns != .void:
            success = Int64(number.integerValue!)
        case .bool(let flag)? where returns == .bool:
            success = flag ? 1 : 0
        default:
            throw ManifestError("\(key).success: expected a value of the return type \(returns.rawValue)")
        }
        var arguments: [Argument] = []
        if let list = value["arguments"] {
            guard case .array(let items) = list, items.count <= 16 else {
                throw ManifestError("\(key).arguments: expected an array of at most 16 arguments")
            }
            for (index, item) in items.enumerated() {
                arguments.append(try argument(item, "\(key).arguments[\(index)]"))
            }
        }
        return Function(symbol: symbol, arguments: arguments, returns: returns, success: success)
    }

    private static func argument(_ value: JSONValue, _ key: String) throws(ManifestError) -> Argument {
        guard case .object(let members) = value else { throw ManifestError("\(key): expected an object") }
        for member in members where !["type", "value", "from"].contains(member.key) {
            throw ManifestError("\(key): unknown key \"\(member.key)\"")
        }
        guard case .string(let typeName)? = value["type"], let type = ValueType(rawValue: typeName), type != .void
        else {
            throw ManifestError("\(key).type: expected one of int32, int64, uint32, uint64, bool, string")
        }
        var argument = Argument(type: type)
        switch (value["value"], value["from"]) {
        case (.some, .some), (nil, nil):
            throw ManifestError("\(key): give either value or from")
        case (nil, .string(let name)?):
            guard let source = Source(rawValue: name) else {
                throw ManifestError("\(key).from: expected remainingMilliseconds or operationID")
            }
            guard (source == .operationID) == (type == .string) else {
                throw ManifestError("\(key).from: \(name) does not fit type \(type.rawValue)")
            }
            argument.source = source
        case (.string(let text)?, nil) where type == .string && !text.utf8.contains(0):
            argument.string = text
        case (.bool(let flag)?, nil) where type == .bool:
            argument.integer = flag ? 1 : 0
        case (.number(let number)?, nil) where number.isInteger && type != .string && type != .bool:
            guard let integer = Int64(number.text), fits(integer, type) else {
                throw ManifestError("\(key).value: \(number.text) does not fit type \(type.rawValue)")
            }
            argument.integer = integer
        default:
            throw ManifestError("\(key).value: expected a \(type.rawValue)")
        }
        return argument
    }

    private static func fits(_ value: Int64, _ type: ValueType) -> Bool {
        switch type {
        case .int32: Int64(Int32.min)...Int64(Int32.max) ~= value
        case .uint32: 0...Int64(UInt32.max) ~= value
        case .uint64: value >= 0
        default: true
        }
    }
}

/// A manifest (or a part of one, like an ffi spec) that breaks a rule; the message names the key.
public struct ManifestError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
