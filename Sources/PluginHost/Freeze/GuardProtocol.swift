import PluginHostSupport
/// The messages between the host and its freeze guard over a SOCK_SEQPACKET socketpair.
///
/// Host → guard: the ASCII commands `FREEZE` and `THAW`. Closing the socket (the host died)
/// means THAW too.
/// Guard → host: fixed-layout binary records, encoded into memory allocated before anything is
/// frozen, so that the guard neither allocates nor formats text while filesystems are frozen.
enum GuardWire {
    static let freezeCommand: [UInt8] = Array("FREEZE".utf8)
    static let thawCommand: [UInt8] = Array("THAW".utf8)

    enum Kind: UInt8 {
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

    static let headerSize = 8
    static let entrySize = 24
    static let maximumMessage = 65536

    /// header: kind, reason, first count (UInt16), second count (UInt16), 2 bytes zero;
    /// entries: errno (Int32), attempted (UInt32), start ns (UInt64), end ns (UInt64).
    static func encode(kind: Kind, reason: ThawReason? = nil,
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

    struct Message: Equatable {
        var kind: Kind
        var reason: ThawReason?
        var first: [IoctlResult]
        var second: [IoctlResult]
        var text: String
    }

    static func decode(_ bytes: [UInt8]) -> Message? {
        guard bytes.count >= headerSize, let kind = Kind(rawValue: bytes[0]) else { return nil }
        return bytes.withUnsafeBytes { raw -> Message? in
            let firstCount = Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            let secondCount = Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
            let entriesEnd = headerSize + (firstCount + secondCount) * entrySize
            guard raw.count >= entriesEnd else { return nil }
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
                reason: ThawReason(rawValue: raw[1]),
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
