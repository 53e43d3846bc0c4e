// libFuzzer target: /etc/pluginhost/pluginhost.json, as HostConfig reads it.
import PluginHost

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHostConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard case .success(let config) = HostConfig.parse(bytes, path: "/etc/pluginhost/pluginhost.json") else { return 0 }
    precondition(config.mounts.allSatisfy { $0.hasPrefix("/") } && config.skipMounts.allSatisfy { $0.hasPrefix("/") })
    if let seconds = config.maxOperationSeconds { precondition(HostConfig.operationSecondsRange.contains(seconds)) }
    if let seconds = config.maxFrozenSeconds { precondition(seconds >= 1 && seconds <= 600) }
    return 0
}
