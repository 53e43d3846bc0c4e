// libFuzzer target: plugins.d manifests, as PluginManifest reads them.
// Properties: an accepted manifest respects the limits, and what `plugin add` would write for it
// (serialized()) reads back as the same manifest.
import PluginHost

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzManifest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let path = "/etc/pluginhost/plugins.d/10-fuzz.json"
    guard let manifest = try? PluginManifest.parse(bytes, path: path) else { return 0 }
    precondition(manifest.config.utf8.count <= PluginManifest.maximumConfigBytes)
    precondition(
        PluginManifest.orderRange.contains(manifest.order)
            && PluginManifest.timeoutRange.contains(manifest.timeoutSeconds))
    precondition(PluginManifest.isValidName(manifest.name) && manifest.library.hasPrefix("/"))
    let written = try? PluginManifest.parse(Array(manifest.serialized().utf8), path: path)
    precondition(written == manifest, "serialized() does not read back as the same manifest")
    return 0
}
