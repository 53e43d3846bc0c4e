// libFuzzer target: the two-phase session's wire (SessionRequest.decode, SessionRefusal.decode).
// Property: what decodes, encodes into text that decodes to the same value.
import PluginHostWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSessionWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let request = SessionRequest.decode(line: text) {
        precondition(SessionRequest.decode(line: request.line.dropLast()) == request, "request round trip")
    }
    if let refusal = SessionRefusal.decode(text) {
        precondition(SessionRefusal.decode(refusal.encoded) == refusal, "refusal round trip")
    }
    return 0
}
