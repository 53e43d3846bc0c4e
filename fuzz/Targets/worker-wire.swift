// libFuzzer target: the plugin worker's wire, both ways (WorkerWire.decodeRequest, decodeMessage).
// Property: what decodes, encodes into bytes that decode to the same value.
import PluginHostWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWorkerWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    if let request = WorkerWire.decodeRequest(bytes) {
        precondition(WorkerWire.decodeRequest(WorkerWire.encode(request)) == request, "request round trip")
    }
    if let message = WorkerWire.decodeMessage(bytes) {
        precondition(WorkerWire.decodeMessage(WorkerWire.encode(message)) == message, "message round trip")
    }
    return 0
}
