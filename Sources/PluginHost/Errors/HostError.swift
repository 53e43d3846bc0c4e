import PluginHostSupport
/// An error as the report carries it: a code, a message that names what went wrong and what
/// was expected, and where it happened.
public struct HostError: Error, Sendable, Codable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    /// The step it happened in ("checks", "pre-script", "freeze", …), when known.
    public var step: String?

    public init(_ code: ErrorCode, _ message: String, step: String? = nil) {
        self.code = code
        self.message = message
        self.step = step
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
