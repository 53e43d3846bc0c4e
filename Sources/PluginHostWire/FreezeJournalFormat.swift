import CPluginHostShim

/// What one operation did to one filesystem, as its freeze journal records it, in order:
/// `pending` → `freezing` → `frozen` → `thawing` → `thawed`, or a side exit.
public enum MountFreezeState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Not attempted (yet).
    case pending = 1
    /// Our FIFREEZE was issued and has not returned: it may complete at any moment.
    case freezing = 2
    /// Our FIFREEZE returned 0: ours to thaw.
    case frozen = 3
    /// FIFREEZE returned EBUSY: someone else had frozen it. Never ours to thaw.
    case alreadyFrozen = 4
    /// FIFREEZE failed otherwise; not frozen.
    case freezeFailed = 5
    /// Our FITHAW was issued and has not returned.
    case thawing = 6
    /// Our FITHAW returned 0.
    case thawed = 7
    /// Our FITHAW returned EINVAL: it was not frozen any more (someone thawed it).
    case wasNotFrozen = 8
    /// Our FITHAW failed otherwise: it may still be frozen.
    case thawFailed = 9

    /// This operation may have left it frozen: recovery thaws exactly these, nothing else.
    public var mayBeFrozenByUs: Bool {
        switch self {
        case .freezing, .frozen, .thawing, .thawFailed: true
        case .pending, .alreadyFrozen, .freezeFailed, .thawed, .wasNotFrozen: false
        }
    }

    public var description: String {
        switch self {
        case .pending: "pending"
        case .freezing: "freezing"
        case .frozen: "frozen"
        case .alreadyFrozen: "already-frozen"
        case .freezeFailed: "freeze-failed"
        case .thawing: "thawing"
        case .thawed: "thawed"
        case .wasNotFrozen: "was-not-frozen"
        case .thawFailed: "thaw-failed"
        }
    }
}

/// The freeze journal: a fixed-layout binary file in the runtime directory, written whole by
/// the host before its guard starts, then updated in place — per mount, as each FIFREEZE and
/// FITHAW is issued and returns — through a shared mapping by the guard's threads (which must
/// not allocate while filesystems are frozen) or by the host when it takes over.
///
/// Layout (little-endian), version 2 (version 1 was a JSON file, `journal.json`):
///
///     header, 128 bytes
///       0  magic "PHFREEZE"           8  version UInt16        10 header size UInt16 (128)
///       12 entry size UInt16 (64)     14 mount count UInt16    16 host pid Int32
///       20 guard pid Int32            24 deadline ms UInt64    32 created, CLOCK_REALTIME ns
///       40 thawed, CLOCK_REALTIME ns  48 thaw cause UInt8      49 7 bytes zero
///       56 string area size UInt32    60 4 bytes zero          64 operation id, 64 bytes, NUL-padded
///     one entry of 64 bytes per mount, in freeze order
///       0  state UInt8                1  zero                  2  wave UInt16
///       4  errno Int32 (of the last ioctl)                     8  mount id UInt64
///       16 freeze start  24 freeze end  32 thaw start  40 thaw end (CLOCK_MONOTONIC ns)
///       48 string offset UInt32       52 string length UInt32  56 8 bytes zero
///     string area: per mount "mount point NUL fs type NUL source NUL device"
public struct FreezeJournalRecord: Sendable, Equatable {
    public static let magic: [UInt8] = Array("PHFREEZE".utf8)
    public static let version: UInt16 = 2
    public static let headerSize = 128
    public static let entrySize = 64
    public static let operationIDCapacity = 64
    public static let maximumMounts = Int(UInt16.max)

    public struct Mount: Sendable, Equatable {
        public var mountPoint: String
        public var fsType: String
        public var source: String
        public var device: String
        public var mountID: UInt64
        /// Dependency wave: every mount of wave n is frozen before any of wave n + 1.
        public var wave: Int
        public var state: MountFreezeState
        /// The errno of the last FIFREEZE or FITHAW (0: success).
        public var errno: Int32
        public var freezeStartNanoseconds: UInt64 = 0
        public var freezeEndNanoseconds: UInt64 = 0
        public var thawStartNanoseconds: UInt64 = 0
        public var thawEndNanoseconds: UInt64 = 0

        public init(
            mountPoint: String, fsType: String, source: String, device: String, mountID: UInt64, wave: Int,
            state: MountFreezeState = .pending, errno: Int32 = 0
        ) {
            self.mountPoint = mountPoint
            self.fsType = fsType
            self.source = source
            self.device = device
            self.mountID = mountID
            self.wave = wave
            self.state = state
            self.errno = errno
        }
    }

    public var operationID: String
    public var hostPID: Int32
    /// 0 until the guard has started and written its own.
    public var guardPID: Int32 = 0
    public var deadlineMilliseconds: UInt64
    /// CLOCK_REALTIME ns.
    public var createdAtNanoseconds: UInt64
    /// When the thaw finished (CLOCK_REALTIME ns), 0 before.
    public var thawedAtNanoseconds: UInt64 = 0
    /// Who thawed, once thawed.
    public var thawCause: ThawReason?
    public var mounts: [Mount]

    public init(
        operationID: String, hostPID: Int32, deadlineMilliseconds: UInt64, createdAtNanoseconds: UInt64, mounts: [Mount]
    ) {
        self.operationID = operationID
        self.hostPID = hostPID
        self.deadlineMilliseconds = deadlineMilliseconds
        self.createdAtNanoseconds = createdAtNanoseconds
        self.mounts = mounts
    }

    /// True while this operation may have left a filesystem frozen.
    public var mayBeFrozenByUs: Bool { mounts.contains { $0.state.mayBeFrozenByUs } }

    /// The number of dependency waves.
    public var waveCount: Int { (mounts.map(\.wave).max() ?? -1) + 1 }

    public enum DecodingError: Error, Sendable, Equatable, CustomStringConvertible {
        case notAJournal
        case unsupportedVersion(UInt16)
        case malformed(String)

        public var description: String {
            switch self {
            case .notAJournal: "not a freeze journal (no PHFREEZE magic)"
            case .unsupportedVersion(let version):
                "freeze journal version \(version), this pluginhost reads version \(FreezeJournalRecord.version)"
            case .malformed(let what): "malformed freeze journal: \(what)"
            }
        }
    }

    // MARK: - Encoding

    /// The whole file. Strings too long for the layout (an operation id over 64 bytes) are
    /// refused with a precondition: the engine makes both.
    public func encoded() -> [UInt8] {
        precondition(mounts.count <= Self.maximumMounts && operationID.utf8.count <= Self.operationIDCapacity)
        var strings: [UInt8] = []
        var slices: [(offset: Int, length: Int)] = []
        for mount in mounts {
            let bytes = Array(
                [mount.mountPoint, mount.fsType, mount.source, mount.device].joined(separator: "\0").utf8)
            slices.append((strings.count, bytes.count))
            strings += bytes
        }
        var bytes = [UInt8](repeating: 0, count: Self.headerSize + mounts.count * Self.entrySize + strings.count)
        bytes.withUnsafeMutableBytes { raw in
            for (index, byte) in Self.magic.enumerated() { raw[index] = byte }
            raw.storeBytes(of: Self.version.littleEndian, toByteOffset: 8, as: UInt16.self)
            raw.storeBytes(of: UInt16(Self.headerSize).littleEndian, toByteOffset: 10, as: UInt16.self)
            raw.storeBytes(of: UInt16(Self.entrySize).littleEndian, toByteOffset: 12, as: UInt16.self)
            raw.storeBytes(of: UInt16(mounts.count).littleEndian, toByteOffset: 14, as: UInt16.self)
            raw.storeBytes(of: hostPID.littleEndian, toByteOffset: 16, as: Int32.self)
            raw.storeBytes(of: guardPID.littleEndian, toByteOffset: 20, as: Int32.self)
            raw.storeBytes(of: deadlineMilliseconds.littleEndian, toByteOffset: 24, as: UInt64.self)
            raw.storeBytes(of: createdAtNanoseconds.littleEndian, toByteOffset: 32, as: UInt64.self)
            raw.storeBytes(of: thawedAtNanoseconds.littleEndian, toByteOffset: 40, as: UInt64.self)
            raw[48] = thawCause?.rawValue ?? 0
            raw.storeBytes(of: UInt32(strings.count).littleEndian, toByteOffset: 56, as: UInt32.self)
            for (index, byte) in operationID.utf8.enumerated() { raw[64 + index] = byte }
            for (index, mount) in mounts.enumerated() {
                let entry = Self.headerSize + index * Self.entrySize
                raw[entry] = mount.state.rawValue
                raw.storeBytes(of: UInt16(clamping: mount.wave).littleEndian, toByteOffset: entry + 2, as: UInt16.self)
                raw.storeBytes(of: mount.errno.littleEndian, toByteOffset: entry + 4, as: Int32.self)
                raw.storeBytes(of: mount.mountID.littleEndian, toByteOffset: entry + 8, as: UInt64.self)
                raw.storeBytes(of: mount.freezeStartNanoseconds.littleEndian, toByteOffset: entry + 16, as: UInt64.self)
                raw.storeBytes(of: mount.freezeEndNanoseconds.littleEndian, toByteOffset: entry + 24, as: UInt64.self)
                raw.storeBytes(of: mount.thawStartNanoseconds.littleEndian, toByteOffset: entry + 32, as: UInt64.self)
                raw.storeBytes(of: mount.thawEndNanoseconds.littleEndian, toByteOffset: entry + 40, as: UInt64.self)
                raw.storeBytes(of: UInt32(slices[index].offset).littleEndian, toByteOffset: entry + 48, as: UInt32.self)
                raw.storeBytes(of: UInt32(slices[index].length).littleEndian, toByteOffset: entry + 52, as: UInt32.self)
            }
            let area = Self.headerSize + mounts.count * Self.entrySize
            for (index, byte) in strings.enumerated() { raw[area + index] = byte }
        }
        return bytes
    }

    // MARK: - Decoding

    /// Decodes a whole file; every field is checked (unknown states, nonzero reserved bytes,
    /// strings out of range, a size that does not match the counts).
    public static func decode(_ bytes: [UInt8]) throws(DecodingError) -> FreezeJournalRecord {
        guard bytes.count >= 16, Array(bytes[0..<8]) == magic else { throw .notAJournal }
        let result: Result<FreezeJournalRecord, DecodingError> = bytes.withUnsafeBytes { raw in
            func u16(_ offset: Int) -> UInt16 {
                UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            }
            func u32(_ offset: Int) -> UInt32 {
                UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            }
            func i32(_ offset: Int) -> Int32 {
                Int32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int32.self))
            }
            func u64(_ offset: Int) -> UInt64 {
                UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            }
            func zero(_ range: Range<Int>) -> Bool { range.allSatisfy { raw[$0] == 0 } }

            let version = u16(8)
            guard version == Self.version else { return .failure(.unsupportedVersion(version)) }
            guard raw.count >= headerSize else {
                return .failure(.malformed("\(raw.count) bytes, shorter than the header"))
            }
            guard Int(u16(10)) == headerSize, Int(u16(12)) == entrySize else {
                return .failure(.malformed("header size \(u16(10)) / entry size \(u16(12))"))
            }
            let count = Int(u16(14))
            let stringsSize = Int(u32(56))
            let area = headerSize + count * entrySize
            guard raw.count == area + stringsSize else {
                return .failure(
                    .malformed("\(raw.count) bytes for \(count) mounts and \(stringsSize) bytes of strings"))
            }
            guard zero(49..<56), zero(60..<64) else {
                return .failure(.malformed("reserved header bytes are not zero"))
            }
            let cause: ThawReason?
            if raw[48] == 0 {
                cause = nil
            } else if let known = ThawReason(rawValue: raw[48]) {
                cause = known
            } else {
                return .failure(.malformed("unknown thaw cause \(raw[48])"))
            }
            let idBytes = Array(raw[64..<128].prefix { $0 != 0 })
            guard zero((64 + idBytes.count)..<128), let operationID = String(validating: idBytes, as: UTF8.self) else {
                return .failure(.malformed("operation id"))
            }
            var mounts: [Mount] = []
            for index in 0..<count {
                let entry = headerSize + index * entrySize
                guard let state = MountFreezeState(rawValue: raw[entry]) else {
                    return .failure(.malformed("mount \(index): unknown state \(raw[entry])"))
                }
                guard raw[entry + 1] == 0, zero((entry + 56)..<(entry + 64)) else {
                    return .failure(.malformed("mount \(index): reserved bytes are not zero"))
                }
                let offset = Int(u32(entry + 48))
                let length = Int(u32(entry + 52))
                guard offset <= stringsSize, length <= stringsSize - offset else {
                    return .failure(.malformed("mount \(index): strings out of range"))
                }
                let parts = raw[(area + offset)..<(area + offset + length)].split(
                    separator: 0, omittingEmptySubsequences: false)
                guard parts.count == 4, let mountPoint = String(validating: Array(parts[0]), as: UTF8.self),
                    mountPoint.hasPrefix("/"),
                    let fsType = String(validating: Array(parts[1]), as: UTF8.self),
                    let source = String(validating: Array(parts[2]), as: UTF8.self),
                    let device = String(validating: Array(parts[3]), as: UTF8.self)
                else {
                    return .failure(.malformed("mount \(index): strings"))
                }
                var mount = Mount(
                    mountPoint: mountPoint, fsType: fsType, source: source, device: device, mountID: u64(entry + 8),
                    wave: Int(u16(entry + 2)), state: state, errno: i32(entry + 4))
                mount.freezeStartNanoseconds = u64(entry + 16)
                mount.freezeEndNanoseconds = u64(entry + 24)
                mount.thawStartNanoseconds = u64(entry + 32)
                mount.thawEndNanoseconds = u64(entry + 40)
                mounts.append(mount)
            }
            var record = FreezeJournalRecord(
                operationID: operationID, hostPID: i32(16), deadlineMilliseconds: u64(24),
                createdAtNanoseconds: u64(32), mounts: mounts)
            record.guardPID = i32(20)
            record.thawedAtNanoseconds = u64(40)
            record.thawCause = cause
            return .success(record)
        }
        return try result.get()
    }
}

/// The journal as a live, shared mapping: what the guard's threads and the host update while
/// the operation runs. Every access is a single atomic load or store on the mapped bytes — no
/// allocation, no system call — so it is safe while filesystems are frozen (the runtime
/// directory is never on a frozen filesystem: the engine refuses that before it starts).
/// The mapping must hold a journal that `FreezeJournalRecord.decode` accepted.
public struct FreezeJournalMapping: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let mountCount: Int

    public init(base: UnsafeMutableRawPointer, mountCount: Int) {
        self.base = base
        self.mountCount = mountCount
    }

    public enum Time: Int, Sendable {
        case freezeStart = 16, freezeEnd = 24, thawStart = 32, thawEnd = 40
    }

    private func entry(_ index: Int) -> UnsafeMutableRawPointer {
        base + FreezeJournalRecord.headerSize + index * FreezeJournalRecord.entrySize
    }

    /// nil only if the byte was overwritten with garbage by something else.
    public func state(_ index: Int) -> MountFreezeState? {
        MountFreezeState(rawValue: ph_atomic_load_u8(entry(index)))
    }

    public func setState(_ state: MountFreezeState, _ index: Int) {
        ph_atomic_store_u8(entry(index), state.rawValue)
    }

    /// Moves `index` from `expected` to `desired` if it is in `expected`; true if it did.
    public func exchangeState(_ index: Int, from expected: MountFreezeState, to desired: MountFreezeState) -> Bool {
        ph_atomic_exchange_u8(entry(index), expected.rawValue, desired.rawValue) != 0
    }

    public func wave(_ index: Int) -> Int {
        Int(UInt16(littleEndian: entry(index).loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
    }

    public func errno(_ index: Int) -> Int32 {
        Int32(littleEndian: ph_atomic_load_i32(entry(index) + 4))
    }

    public func setErrno(_ value: Int32, _ index: Int) {
        ph_atomic_store_i32(entry(index) + 4, value.littleEndian)
    }

    public func mountID(_ index: Int) -> UInt64 {
        UInt64(littleEndian: entry(index).loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }

    public func time(_ time: Time, _ index: Int) -> UInt64 {
        UInt64(littleEndian: ph_atomic_load_u64(entry(index) + time.rawValue))
    }

    public func setTime(_ time: Time, _ value: UInt64, _ index: Int) {
        ph_atomic_store_u64(entry(index) + time.rawValue, value.littleEndian)
    }

    public var guardPID: Int32 { Int32(littleEndian: ph_atomic_load_i32(base + 20)) }

    public func setGuardPID(_ pid: Int32) {
        ph_atomic_store_i32(base + 20, pid.littleEndian)
    }

    public var thawCause: ThawReason? { ThawReason(rawValue: ph_atomic_load_u8(base + 48)) }

    /// Records who thawed and when (CLOCK_REALTIME ns); the first cause recorded stays.
    public func recordThaw(_ cause: ThawReason, atNanoseconds: UInt64) {
        if ph_atomic_load_u8(base + 48) == 0 {
            ph_atomic_store_u64(base + 40, atNanoseconds.littleEndian)
            _ = ph_atomic_exchange_u8(base + 48, 0, cause.rawValue)
        }
    }

    /// True while any mount may still be frozen by this operation.
    public var mayBeFrozenByUs: Bool {
        (0..<mountCount).contains { state($0)?.mayBeFrozenByUs ?? true }
    }
}
