// libFuzzer target: Azure's VMSnapshotScriptPluginConfig.json, as ScriptConfig reads it.
// Property: an accepted config is within the documented caps.
import PluginHost

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAzureConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let (config, _) = try? ScriptConfig.parse(bytes) else { return 0 }
    precondition((1...ScriptConfig.maximumTimeoutSeconds).contains(config.timeoutSeconds))
    precondition((0...ScriptConfig.maximumRetries).contains(config.preScript.retries))
    precondition((0...ScriptConfig.maximumRetries).contains(config.postScript.retries))
    precondition(ScriptConfig.pollSecondsRange.contains(config.pollSeconds))
    // Any string is a location, as in Azure (one that is not an absolute path is reported as
    // not found by the checks), but never one with a NUL byte or over 4095 bytes.
    for location in [config.preScript.location, config.postScript.location] {
        precondition(!location.utf8.contains(0) && location.utf8.count < 4096)
    }
    return 0
}
