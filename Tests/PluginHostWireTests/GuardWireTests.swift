import PluginHostWire
import Testing

@Suite("Guard wire")
struct GuardWireTests {
    static let messages: [GuardMessage] =
        [
            .ready,
            .flushed,
            .frozen,
            .freezeFailed,
            .setupFailed("cannot open /mnt/é: No such file or directory (errno 2)"),
            .setupFailed(""),
        ] + ThawReason.allCases.map { .thawed($0) }

    @Test(arguments: messages) func roundTrip(_ message: GuardMessage) {
        #expect(GuardMessage.decode(message.encoded) == message)
    }

    @Test func aLongTextIsCutOnACharacterBoundary() {
        let text = String(repeating: "é", count: GuardMessage.maximumSize)
        let bytes = GuardMessage.setupFailed(text).encoded
        #expect(bytes.count <= GuardMessage.maximumSize)
        guard case .setupFailed(let decoded)? = GuardMessage.decode(bytes) else {
            Issue.record("not decoded")
            return
        }
        #expect(!decoded.isEmpty && text.hasPrefix(decoded))
    }

    @Test func requestsRoundTrip() {
        for request in GuardRequest.allCases {
            let decoded = request.encoded.withUnsafeBytes { GuardRequest.decode($0) }
            #expect(decoded == request)
        }
    }

    @Test(arguments: ["", "FREEZ", "FREEZE ", "freeze", "THAWED", "THAW\n", "\u{0}", "FLUSHED", "flush"])
    func malformedRequestsAreRefused(_ text: String) {
        #expect(Array(text.utf8).withUnsafeBytes { GuardRequest.decode($0) } == nil)
    }

    @Test func malformedMessagesAreRefused() {
        let frozen = GuardMessage.frozen.encoded
        let thawed = GuardMessage.thawed(.command).encoded
        let failed = GuardMessage.setupFailed("x").encoded
        var cases: [(String, [UInt8])] = [
            ("empty", []),
            ("short header", Array(frozen.prefix(GuardMessage.headerSize - 1))),
            ("trailing bytes", frozen + [0]),
            ("text on thawed", thawed + Array("x".utf8)),
            ("bad UTF-8", Array(failed.dropLast()) + [0xFF]),
            ("too long", failed + [UInt8](repeating: 0x41, count: GuardMessage.maximumSize)),
        ]
        var unknownKind = frozen
        unknownKind[0] = 0
        cases.append(("kind 0", unknownKind))
        unknownKind[0] = 99
        cases.append(("kind 99", unknownKind))
        var reasonless = thawed
        reasonless[1] = 0
        cases.append(("thawed without a reason", reasonless))
        var badReason = thawed
        badReason[1] = 77
        cases.append(("unknown reason", badReason))
        var reasonOnFrozen = frozen
        reasonOnFrozen[1] = 1
        cases.append(("reason on frozen", reasonOnFrozen))
        var reserved = frozen
        reserved[3] = 1
        cases.append(("reserved byte", reserved))
        for (name, bytes) in cases {
            #expect(GuardMessage.decode(bytes) == nil, "\(name) decoded")
        }
    }
}

@Suite("Freeze journal format")
struct FreezeJournalFormatTests {
    static func sample(states: [MountFreezeState] = [.frozen, .alreadyFrozen, .freezing]) -> FreezeJournalRecord {
        var record = FreezeJournalRecord(
            operationID: "20261201T101010Z-0a1b2c", hostPID: 4242, deadlineMilliseconds: 60_000,
            createdAtNanoseconds: 1_764_583_810_123_456_789,
            mounts: states.enumerated().map { index, state in
                var mount = FreezeJournalRecord.Mount(
                    mountPoint: "/mnt/é \(index)", fsType: index == 1 ? "xfs" : "ext4",
                    source: "/dev/loop\(index)", device: "7:\(index)", mountID: UInt64(100 + index),
                    wave: index == 2 ? 1 : 0, state: state, errno: index == 1 ? 16 : 0)
                mount.freezeStartNanoseconds = 1_000 + UInt64(index)
                mount.freezeEndNanoseconds = 2_000 + UInt64(index)
                mount.thawStartNanoseconds = index == 0 ? .max - 1 : 0
                mount.thawEndNanoseconds = index == 0 ? .max : 0
                return mount
            })
        record.guardPID = 4343
        record.thawCause = .deadline
        record.thawedAtNanoseconds = 1_764_583_811_000_000_000
        return record
    }

    @Test func roundTrip() throws {
        let record = Self.sample()
        #expect(try FreezeJournalRecord.decode(record.encoded()) == record)
        #expect(record.waveCount == 2)
        #expect(record.mayBeFrozenByUs)
    }

    @Test(arguments: MountFreezeState.allCases) func everyStateRoundTrips(_ state: MountFreezeState) throws {
        let record = Self.sample(states: [state])
        #expect(try FreezeJournalRecord.decode(record.encoded()).mounts.first?.state == state)
    }

    @Test func anEmptyJournalRoundTrips() throws {
        var record = Self.sample(states: [])
        record.thawCause = nil
        #expect(try FreezeJournalRecord.decode(record.encoded()) == record)
    }

    /// Recovery thaws exactly these: a mount we may have frozen, never one someone else had
    /// frozen (EBUSY) or one we never froze.
    @Test func onlyOurFreezesMayBeLeftFrozen() {
        let ours: Set<MountFreezeState> = [.freezing, .frozen, .thawing, .thawFailed]
        for state in MountFreezeState.allCases {
            #expect(state.mayBeFrozenByUs == ours.contains(state), "\(state)")
        }
    }

    @Test func malformedJournalsAreRefused() {
        let good = Self.sample().encoded()
        func changed(_ offset: Int, _ byte: UInt8) -> [UInt8] {
            var bytes = good
            bytes[offset] = byte
            return bytes
        }
        let entry = FreezeJournalRecord.headerSize
        let cases: [(String, [UInt8], FreezeJournalRecord.DecodingError)] = [
            ("empty", [], .notAJournal),
            ("JSON of version 1", Array(#"{"operationID": "x", "state": "frozen"}"#.utf8), .notAJournal),
            ("bad magic", changed(0, 0x41), .notAJournal),
            ("version 3", changed(8, 3), .unsupportedVersion(3)),
            ("header size", changed(10, 64), .malformed("header size 64 / entry size 64")),
            ("cut", Array(good.dropLast()), .malformed("")),
            ("trailing", good + [0], .malformed("")),
            ("mount count", changed(14, 9), .malformed("")),
            ("reserved header byte", changed(50, 1), .malformed("")),
            ("unknown thaw cause", changed(48, 99), .malformed("")),
            ("id not NUL-padded", changed(64 + 30, 0x41), .malformed("")),
            ("unknown state", changed(entry, 0), .malformed("")),
            ("state 10", changed(entry, 10), .malformed("")),
            ("reserved entry byte", changed(entry + 1, 1), .malformed("")),
            ("reserved entry tail", changed(entry + 60, 1), .malformed("")),
            ("strings out of range", changed(entry + 51, 0xFF), .malformed("")),
        ]
        for (name, bytes, expected) in cases {
            do {
                let record = try FreezeJournalRecord.decode(bytes)
                Issue.record("\(name) decoded: \(record)")
            } catch {
                switch (error, expected) {
                case (.malformed, .malformed): break
                default: #expect(error == expected, "\(name)")
                }
            }
        }
        // A mount point must be absolute, and every mount has exactly four strings.
        var relative = Self.sample(states: [.frozen])
        relative.mounts[0].mountPoint = "mnt"
        #expect(throws: FreezeJournalRecord.DecodingError.self) { try FreezeJournalRecord.decode(relative.encoded()) }
        var extra = Self.sample(states: [.frozen])
        extra.mounts[0].device = "7:0\u{0}more"
        #expect(throws: FreezeJournalRecord.DecodingError.self) { try FreezeJournalRecord.decode(extra.encoded()) }
    }

    /// The guard's view: states move only as the ioctls go, and what it writes is what the
    /// decoder reads back.
    @Test func theMappingUpdatesInPlace() throws {
        var bytes = Self.sample(states: [.pending, .pending]).encoded()
        try bytes.withUnsafeMutableBytes { raw in
            let mapping = FreezeJournalMapping(base: raw.baseAddress!, mountCount: 2)
            #expect(mapping.state(0) == .pending && mapping.wave(0) == 0 && mapping.mountID(1) == 101)
            #expect(mapping.exchangeState(0, from: .pending, to: .freezing))
            #expect(!mapping.exchangeState(0, from: .pending, to: .freezing))
            mapping.setTime(.freezeStart, 7, 0)
            mapping.setErrno(0, 0)
            mapping.setState(.frozen, 0)
            #expect(mapping.mayBeFrozenByUs)
            #expect(mapping.exchangeState(0, from: .frozen, to: .thawing))
            mapping.setState(.thawed, 0)
            mapping.setErrno(16, 1)
            mapping.setState(.alreadyFrozen, 1)
            #expect(!mapping.mayBeFrozenByUs)
            mapping.setGuardPID(99)
            mapping.recordThaw(.command, atNanoseconds: 5)
            mapping.recordThaw(.deadline, atNanoseconds: 6)  // the first cause stays
            let decoded = try FreezeJournalRecord.decode(Array(raw))
            #expect(decoded.mounts.map(\.state) == [.thawed, .alreadyFrozen])
            #expect(decoded.mounts[0].freezeStartNanoseconds == 7 && decoded.mounts[1].errno == 16)
            #expect(
                decoded.guardPID == 99 && decoded.thawCause == .deadline
                    && decoded.thawedAtNanoseconds == 1_764_583_811_000_000_000)
        }
    }
}
