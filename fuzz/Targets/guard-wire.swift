// libFuzzer target: the freeze guard's wire, both ways (GuardWire.decode, GuardRequest.decode).
// Property: a decoded message encodes back into bytes that decode to the same message.
import PluginHostWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGuardWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let request = bytes.withUnsafeBytes({ GuardRequest.decode($0) }) {
        precondition(request.encoded.withUnsafeBytes { GuardRequest.decode($0) } == request)
    }
    guard let message = GuardWire.decode(bytes) else { return 0 }
    var buffer = [UInt8](repeating: 0, count: GuardWire.maximumMessage)
    let text = Array(message.text.utf8)
    let count = message.first.withUnsafeBufferPointer { first in
        message.second.withUnsafeBufferPointer { second in
            text.withUnsafeBytes { text in
                buffer.withUnsafeMutableBytes { GuardWire.encode(kind: message.kind, reason: message.reason, first: first, second: second, text: text, into: $0) }
            }
        }
    }
    precondition(GuardWire.decode(Array(buffer[0..<count])) == message, "encode/decode round trip")
    return 0
}
