import PluginHostSupport

/// The messages between the host and its freeze guard over a SOCK_SEQPACKET socketpair.
///
/// Host → guard: a `GuardRequest`, the ASCII word `FREEZE` or `THAW`. Closing the socket (the
/// host died) means THAW too.
/// Guard → host: fixed-layout binary records (`GuardWire.Message`), encoded into memory
/// allocated before anything is frozen, so that the guard neither allocates nor formats text
/// while filesystems are frozen.
public enum GuardRequest: Sendable, Equatable, CaseIterable {
    case freeze
    case thaw

    /// The bytes on the wire.
    public var encoded: [UInt8] {
        switch self {
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
        if matches("FREEZE") { return .freeze }
        if matches("THAW") { return .thaw }
        return nil
    }
}

public enum GuardWire {
    public enum Kind: UInt8, Sendable {
        /// Every mount point is open and verified; waiting for FREEZE.
        case ready = 1
        /// Every filesystem is frozen (or was already frozen by someone else).
        case frozen = 2
        /// A freeze failed; what had been frozen was thawed at once. Both lists follow.
        case freezeFailed = 3
        /// Thawed, with the reason.
        case thawed = 4
        /// Could not open or verify a mount point; nothing was frozen. Text follows.
        case setupFailed = 5
    }

    public static let headerSize = 8
    public static let entrySize = 24
    public static let maximumMessage = 65536

    /// header: kind, reason, first count (UInt16), second count (UInt16), 2 bytes zero;
    /// entries: errno (Int32), attempted (UInt32), start ns (UInt64), end ns (UInt64).
    public static func encode(kind: Kind, reason: ThawReason? = nil,
                       first: UnsafeBufferPointer<IoctlResult>, second: UnsafeBufferPointer<IoctlResult>,
                       text: UnsafeRawBufferPointer? = nil, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        buffer.storeBytes(of: kind.rawValue, toByteOffset: 0, as: UInt8.self)
        buffer.storeBytes(of: reason?.rawValue ?? 0, toByteOffset: 1, as: UInt8.self)
        buffer.storeBytes(of: UInt16(first.count).littleEndian, toByteOffset: 2, as: UInt16.self)
        buffer.storeBytes(of: UInt16(second.count).littleEndian, toByteOffset: 4, as: UInt16.self)
        buffer.storeBytes(of: 0, toByteOffset: 6, as: UInt16.self)
        var offset = headerSize
        for list in [first, second] {
            for entry in list {
                buffer.storeBytes(of: entry.errno.littleEndian, toByteOffset: offset, as: Int32.self)
                buffer.storeBytes(of: UInt32(entry.attempted ? 1 : 0).littleEndian, toByteOffset: offset + 4, as: UInt32.self)
                buffer.storeBytes(of: entry.startNanoseconds.littleEndian, toByteOffset: offset + 8, as: UInt64.self)
                buffer.storeBytes(of: entry.endNanoseconds.littleEndian, toByteOffset: offset + 16, as: UInt64.self)
                offset += entrySize
            }
        }
        if let text {
            let count = min(text.count, buffer.count - offset)
            buffer.baseAddress!.advanced(by: offset).copyMemory(from: text.baseAddress!, byteCount: count)
            offset += count
        }
        return offset
    }

    public struct Message: Equatable, Sendable {
        public var kind: Kind
        public var reason: ThawReason?
        public var first: [IoctlResult]
        public var second: [IoctlResult]
        public var text: String

        public init(kind: Kind, reason: ThawReason? = nil, first: [IoctlResult] = [], second: [IoctlResult] = [], text: String = "") {
            self.kind = kind
            self.reason = reason
            self.first = first
            self.second = second
            self.text = text
        }
    }

    /// Decodes a guard's message; nil for anything malformed (unknown kind or reason, nonzero
    /// reserved bytes, entries past the end, text where the kind has none).
    public static func decode(_ bytes: [UInt8]) -> Message? {
        guard bytes.count >= headerSize, let kind = Kind(rawValue: bytes[0]) else { return nil }
        let reason = bytes[1] == 0 ? nil : ThawReason(rawValue: bytes[1])
        guard bytes[1] == 0 || reason != nil, (kind == .thawed) == (reason != nil), bytes[6] == 0, bytes[7] == 0 else { return nil }
        return bytes.withUnsafeBytes { raw -> Message? in
            let firstCount = Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            let secondCount = Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
            let entriesEnd = headerSize + (firstCount + secondCount) * entrySize
            guard raw.count >= entriesEnd, kind == .setupFailed || raw.count == entriesEnd else { return nil }
            func entry(_ index: Int) -> IoctlResult {
                let offset = headerSize + index * entrySize
                return IoctlResult(
                    errno: Int32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)),
                    attempted: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)) != 0,
                    startNanoseconds: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)),
                    endNanoseconds: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self)))
            }
            return Message(
                kind: kind,
                reason: reason,
                first: (0..<firstCount).map(entry),
                second: (firstCount..<firstCount + secondCount).map(entry),
                text: String(decoding: raw[entriesEnd...], as: UTF8.self))
        }
    }
}

/// One FIFREEZE or FITHAW as the guard did it.
public struct IoctlResult: Sendable, Equatable {
    /// 0 on success, else the errno (EBUSY on freeze: already frozen; EINVAL on thaw: not frozen).
    public var errno: Int32
    public var attempted: Bool
    public var startNanoseconds: UInt64
    public var endNanoseconds: UInt64

    public init(errno: Int32, attempted: Bool, startNanoseconds: UInt64, endNanoseconds: UInt64) {
        self.errno = errno
        self.attempted = attempted
        self.startNanoseconds = startNanoseconds
        self.endNanoseconds = endNanoseconds
    }

    public static let notAttempted = IoctlResult(errno: 0, attempted: false, startNanoseconds: 0, endNanoseconds: 0)

    public var milliseconds: Double { Monotonic.milliseconds(from: startNanoseconds, to: endNanoseconds) }
}

/// Why the guard thawed.
public enum ThawReason: UInt8, Sendable, Codable {
    case command = 1
    case deadline = 2
    case hostExited = 3

    public var name: String {
        switch self {
        case .command: "command"
        case .deadline: "deadline"
        case .hostExited: "host-exited"
        }
    }
}
