import MySQLQuiesce
import PluginKit

/// The one symbol the library exports (`PH_PLUGIN_ENTRY_SYMBOL`): the descriptor of
/// `pluginhost_plugin.h` for `MySQLPlugin`. Kept apart from the plugin's logic because every
/// plugin exports this same name and all test targets link into one test bundle.
@_cdecl("pluginhost_plugin_entry")
public func pluginhostPluginEntry() -> UnsafeRawPointer {
    PluginExport.descriptor(for: MySQLPlugin.self)
}
