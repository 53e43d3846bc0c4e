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
    precondition(config.preScript.location.hasPrefix("/") && config.postScript.location.hasPrefix("/"))
    return 0
}
