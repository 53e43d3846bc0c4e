import PluginHostSupport

/// An error as the report carries it: a code, a message that names what went wrong and what
/// was expected, and where it happened.
public struct HostError: Error, Sendable, Codable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    /// The step it happened in ("checks", "pre-script", "freeze", …), when known.
    public var step: String?

    /// For Azure's ten codes the message begins with Azure's documented sentence
    /// (`ErrorCode.azureMessage`), once, whatever `message` already holds.
    public init(_ code: ErrorCode, _ message: String, step: String? = nil) {
        self.code = code
        self.message = Self.prefixed(message, with: code.azureMessage)
        self.step = step
    }

    static func prefixed(_ message: String, with sentence: String?) -> String {
        guard let sentence else { return message }
        // A message built from another error's message carries the sentence inside it: drop it there.
        var body = Array(message.utf8)
        let needle = Array(sentence.utf8)
        var index = 0
        while index + needle.count <= body.count {
            if body[index..<index + needle.count].elementsEqual(needle) {
                var end = index + needle.count
                if end < body.count, body[end] == 0x20 { end += 1 }
                body.removeSubrange(index..<end)
            } else {
                index += 1
            }
        }
        let rest = String(decoding: body, as: UTF8.self)
        return rest.isEmpty ? sentence : sentence + " " + rest
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
