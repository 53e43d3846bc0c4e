import PluginHostWire
import Testing

@Suite("Guard wire")
struct GuardWireTests {
    static func encode(_ message: GuardWire.Message) -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: GuardWire.maximumMessage, alignment: 8)
        defer { buffer.deallocate() }
        let length = message.first.withUnsafeBufferPointer { first in
            message.second.withUnsafeBufferPointer { second in
                var text = message.text
                return text.withUTF8 { utf8 in
                    GuardWire.encode(kind: message.kind, reason: message.reason, first: first, second: second,
                                     text: utf8.isEmpty ? nil : UnsafeRawBufferPointer(utf8), into: buffer)
                }
            }
        }
        return Array(buffer[0..<length])
    }

    static let results = [
        IoctlResult(errno: 0, attempted: true, startNanoseconds: 1_000, endNanoseconds: 2_000),
        IoctlResult(errno: 16, attempted: true, startNanoseconds: .max - 1, endNanoseconds: .max),
        .notAttempted,
    ]

    static let messages: [GuardWire.Message] = [
        .init(kind: .ready),
        .init(kind: .frozen, first: results),
        .init(kind: .freezeFailed, first: results, second: Array(results.reversed())),
        .init(kind: .thawed, reason: .command, first: results),
        .init(kind: .thawed, reason: .deadline, first: []),
        .init(kind: .thawed, reason: .hostExited, first: results),
        .init(kind: .setupFailed, text: "cannot open /mnt/é: No such file or directory (errno 2)"),
    ]

    @Test(arguments: messages) func roundTrip(_ message: GuardWire.Message) {
        #expect(GuardWire.decode(Self.encode(message)) == message)
    }

    @Test func requestsRoundTrip() {
        for request in GuardRequest.allCases {
            let decoded = request.encoded.withUnsafeBytes { GuardRequest.decode($0) }
            #expect(decoded == request)
        }
    }

    @Test(arguments: ["", "FREEZ", "FREEZE ", "freeze", "THAWED", "THAW\n", "\u{0}"])
    func malformedRequestsAreRefused(_ text: String) {
        #expect(Array(text.utf8).withUnsafeBytes { GuardRequest.decode($0) } == nil)
    }

    @Test func malformedMessagesAreRefused() {
        let frozen = Self.encode(.init(kind: .frozen, first: Self.results))
        let thawed = Self.encode(.init(kind: .thawed, reason: .command, first: Self.results))
        var cases: [(String, [UInt8])] = [
            ("empty", []),
            ("short header", Array(frozen.prefix(GuardWire.headerSize - 1))),
            ("cut entry", Array(frozen.dropLast())),
            ("trailing bytes", frozen + [0]),
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
        reserved[7] = 1
        cases.append(("reserved byte", reserved))
        var huge = frozen
        huge[2] = 0xFF
        huge[3] = 0xFF
        cases.append(("count past the end", huge))
        for (name, bytes) in cases {
            #expect(GuardWire.decode(bytes) == nil, "\(name) decoded")
        }
    }
}
