import PluginKit
import ShellQuiesce

/// The one symbol the host looks for (pluginhost_plugin.h).
@_cdecl("pluginhost_plugin_entry")
public func pluginhostPluginEntry() -> UnsafeRawPointer {
    PluginExport.descriptor(for: ShellPlugin.self)
}
