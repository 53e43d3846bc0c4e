/// The messages between the host and its freeze guard over a SOCK_SEQPACKET socketpair.
///
/// Host → guard: a `GuardRequest`, the ASCII word `FLUSH`, `FREEZE` or `THAW`. Closing the
/// socket (the host died) means THAW too.
/// Guard → host: a `GuardMessage`, a few fixed bytes encoded into memory allocated before
/// anything is frozen, so that the guard neither allocates nor formats text while frozen.
public enum GuardRequest: Sendable, Equatable, CaseIterable {
    /// syncfs every target, concurrently, before the freeze (answered with `flushed`).
    case flush
    case freeze
    case thaw

    /// The bytes on the wire.
    public var encoded: [UInt8] {
        switch self {
        case .flush: Array("FLUSH".utf8)
        case .freeze: Array("FREEZE".utf8)
        case .thaw: Array("THAW".utf8)
        }
    }

    /// Decodes a command without allocating (the guard calls this while frozen).
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> GuardRequest? {
        func matches(_ word: StaticString) -> Bool {
            guard bytes.count == word.utf8CodeUnitCount else { return false }
            for index in 0..<bytes.count where bytes[index] != word.utf8Start[index] { return false }
            return true
        }
        if matches("FLUSH") { return .flush }
        if matches("FREEZE") { return .freeze }
        if matches("THAW") { return .thaw }
        return nil
    }
}

/// What the guard tells its host. Per-mount results are not in the messages: they are in the
/// freeze journal (`FreezeJournalMapping`), which the guard updates as each ioctl returns.
///
/// On the wire: kind (1 byte), thaw reason (1 byte, 0 unless `thawed`), 2 zero bytes, then the
/// text of `setupFailed` (UTF-8), nothing for the others. Encoding a message without text
/// neither allocates nor formats anything (the guard sends them while frozen).
public enum GuardMessage: Sendable, Equatable {
    /// Every mount point is open and verified, the worker threads wait: ready for FREEZE.
    case ready
    /// Every wave is frozen (some filesystems possibly by someone else already: the journal says).
    case frozen
    /// A FIFREEZE failed; everything frozen so far was thawed at once (the journal names it).
    case freezeFailed
    /// Thawed (or, when this comes before `frozen`, the freeze was abandoned), and why.
    case thawed(ThawReason)
    /// Could not start: a mount point could not be opened or verified, or the journal is
    /// unusable. Nothing was frozen.
    case setupFailed(String)
    /// Every target's syncfs has returned (after `FLUSH`).
    case flushed

    public static let headerSize = 4
    public static let maximumSize = 4096

    enum Kind: UInt8 {
        case ready = 1, frozen = 2, freezeFailed = 3, thawed = 4, setupFailed = 5, flushed = 6
    }

    /// Writes the message into `buffer` (at least `maximumSize` bytes) and returns its length;
    /// a text longer than fits is cut.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let kind: Kind
        var reason: UInt8 = 0
        switch self {
        case .ready: kind = .ready
        case .frozen: kind = .frozen
        case .freezeFailed: kind = .freezeFailed
        case .thawed(let why):
            kind = .thawed
            reason = why.rawValue
        case .setupFailed: kind = .setupFailed
        case .flushed: kind = .flushed
        }
        buffer[0] = kind.rawValue
        buffer[1] = reason
        buffer[2] = 0
        buffer[3] = 0
        guard case .setupFailed(var text) = self else { return Self.headerSize }
        return text.withUTF8 { utf8 in
            var count = min(utf8.count, min(buffer.count, Self.maximumSize) - Self.headerSize)
            // Never cut inside a UTF-8 sequence.
            while count > 0 && count < utf8.count && utf8[count] & 0xC0 == 0x80 { count -= 1 }
            for index in 0..<count { buffer[Self.headerSize + index] = utf8[index] }
            return Self.headerSize + count
        }
    }

    /// The bytes on the wire (host side and tests).
    public var encoded: [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.maximumSize, alignment: 8)
        defer { buffer.deallocate() }
        return Array(buffer[0..<encode(into: buffer)])
    }

    /// Decodes a message; nil for anything malformed (unknown kind or reason, a reason where
    /// the kind has none, nonzero reserved bytes, text where the kind has none, bad UTF-8).
    public static func decode(_ bytes: [UInt8]) -> GuardMessage? {
        guard bytes.count >= headerSize, bytes.count <= maximumSize, let kind = Kind(rawValue: bytes[0]),
            bytes[2] == 0, bytes[3] == 0
        else { return nil }
        let reason = ThawReason(rawValue: bytes[1])
        guard (kind == .thawed) == (reason != nil), kind == .thawed || bytes[1] == 0 else { return nil }
        guard kind == .setupFailed || bytes.count == headerSize else { return nil }
        switch kind {
        case .ready: return .ready
        case .frozen: return .frozen
        case .freezeFailed: return .freezeFailed
        case .thawed: return reason.map { .thawed($0) }
        case .setupFailed: return String(validating: bytes[headerSize...], as: UTF8.self).map { .setupFailed($0) }
        case .flushed: return .flushed
        }
    }
}

/// Why the filesystems were thawed.
public enum ThawReason: UInt8, Sendable, CaseIterable {
    /// The host asked (`THAW`).
    case command = 1
    /// The guard's deadline passed.
    case deadline = 2
    /// The host died (its pidfd became readable, or its socket closed).
    case hostExited = 3
    /// The guard was lost (killed, stopped past the deadline): the host thawed by itself.
    case guardLost = 4
    /// `pluginhost recover` (or the next operation) thawed what a dead operation left.
    case recovery = 5

    public var name: String {
        switch self {
        case .command: "command"
        case .deadline: "deadline"
        case .hostExited: "host-exited"
        case .guardLost: "guard-lost"
        case .recovery: "recovery"
        }
    }
}
