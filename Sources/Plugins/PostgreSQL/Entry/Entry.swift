import PluginKit
import PostgreSQLQuiesce

/// The one symbol pluginhost looks up in libpluginhost-postgresql.so (pluginhost_plugin.h).
@_cdecl("pluginhost_plugin_entry")
public func pluginhostPluginEntry() -> UnsafeRawPointer {
    PluginExport.descriptor(for: PostgreSQLPlugin.self)
}
