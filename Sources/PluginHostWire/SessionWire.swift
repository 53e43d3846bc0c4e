import PluginHostSupport

/// What a client asks a two-phase session: one line over the session's unix socket.
/// The session answers a thaw with the final report, a status request with its status (both
/// JSON documents of the engine), and anything it refuses with a `SessionRefusal`.
public enum SessionRequest: Sendable, Equatable {
    /// The agent has its snapshot (`snapshotTaken`), or reports that it failed. `operationID`
    /// nil means whichever operation is active.
    case thaw(operationID: String?, snapshotTaken: Bool)
    /// What the session holds, for `pluginhost status`.
    case status

    /// The request line, newline included: `THAW ID`, `THAW-FAILED -`, `STATUS`.
    public var line: String {
        switch self {
        case .thaw(let operationID, let snapshotTaken):
            "\(snapshotTaken ? "THAW" : "THAW-FAILED") \(operationID ?? "-")\n"
        case .status:
            "STATUS\n"
        }
    }

    /// Parses a request line (without its newline); nil for anything else.
    public static func decode(line: some StringProtocol) -> SessionRequest? {
        let words = line.split(separator: " ", omittingEmptySubsequences: false)
        switch (words.first, words.count) {
        case ("STATUS"?, 1):
            return .status
        case ("THAW"?, 1...2), ("THAW-FAILED"?, 1...2):
            let id = words.count == 2 ? String(words[1]) : "-"
            guard !id.isEmpty, id.utf8.count <= 128, id.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
            return .thaw(operationID: id == "-" ? nil : id, snapshotTaken: words[0] == "THAW")
        default:
            return nil
        }
    }
}

/// A session's answer when it refuses a request: `{"error": "…"}` on one line.
public struct SessionRefusal: Sendable, Equatable {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var encoded: String {
        JSONValue.object([("error", .string(message))]).serialized() + "\n"
    }

    public static func decode(_ text: String) -> SessionRefusal? {
        guard let value = try? JSONParser.parse(text), case .object(let members) = value, members.count == 1,
            case .string(let message)? = value["error"]
        else { return nil }
        return SessionRefusal(message)
    }
}
