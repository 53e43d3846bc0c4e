import FoundationEssentials
import Glibc
public import PluginHostSupport

/// The record in the runtime directory of what an operation is about to freeze or has frozen.
/// Written before the first FIFREEZE and removed after the last FITHAW; if both the host and its
/// guard die in between, the next invocation (or `pluginhost recover`) finds it and thaws.
public struct FreezeJournal: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        /// Freezing or frozen.
        case frozen
        /// The host exited while frozen; its guard thawed. Nothing is frozen, but the operation
        /// never finished, which `recover` records.
        case thawedByGuard
        /// As above, but at least one thaw failed.
        case guardThawIncomplete
    }

    public var operationID: String
    public var hostPID: Int32
    public var guardPID: Int32
    public var state: State
    public var mounts: [FreezeTarget]
    public var frozenAt: String
    public var deadlineSeconds: Double
    public var thawedAt: String?

    public func write(to path: String) throws(SystemError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = (try? encoder.encode(self)) ?? Data()
        try writeFileAtomically(path, Array(data), mode: 0o600)
    }

    public static func read(from path: String) -> FreezeJournal? {
        guard let file = try? FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW),
              let bytes = try? file.readAll(limit: 1 << 20) else { return nil }
        return try? JSONDecoder().decode(FreezeJournal.self, from: Data(bytes))
    }

    /// Called by a guard whose host exited: nothing it froze is frozen any more.
    public static func markThawedByGuard(at path: String, guardPID: Int32, complete: Bool) {
        guard var journal = read(from: path), journal.guardPID == guardPID else { return }
        journal.state = complete ? .thawedByGuard : .guardThawIncomplete
        journal.thawedAt = isoTimestamp()
        try? journal.write(to: path)
    }
}
