// libFuzzer target: the freeze guard's wire, both ways (GuardMessage.decode, GuardRequest.decode),
// and the freeze journal it shares with the host (FreezeJournalRecord.decode).
// Property: whatever decodes encodes back into bytes that decode to the same value.
import PluginHostWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGuardWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let request = bytes.withUnsafeBytes({ GuardRequest.decode($0) }) {
        precondition(request.encoded.withUnsafeBytes { GuardRequest.decode($0) } == request)
    }
    if let message = GuardMessage.decode(bytes) {
        precondition(GuardMessage.decode(message.encoded) == message, "message encode/decode round trip")
    }
    if let record = try? FreezeJournalRecord.decode(bytes) {
        precondition((try? FreezeJournalRecord.decode(record.encoded())) == record, "journal encode/decode round trip")
    }
    return 0
}
