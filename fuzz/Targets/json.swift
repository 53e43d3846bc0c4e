// libFuzzer target: the strict JSON parser every config, manifest and wire message goes through.
// Property: what parses, serializes (compact and pretty) into text that parses to the same value.
import PluginHostSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let value = try? JSONParser.parse(bytes) else { return 0 }
    precondition((try? JSONParser.parse(value.serialized())) == value, "serialized() does not read back")
    precondition((try? JSONParser.parse(value.prettySerialized())) == value, "prettySerialized() does not read back")
    _ = value.kindDescription
    return 0
}
