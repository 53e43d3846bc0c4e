/* The ABI's layout on LP64 Linux, checked at build time: the header is a contract, and a
 * field moved by accident would break every plugin built before. */
#include "pluginhost_plugin.h"

_Static_assert(offsetof(ph_plugin, magic) == 0, "magic comes first");
_Static_assert(offsetof(ph_plugin, struct_size) == 8, "ph_plugin.struct_size moved");
_Static_assert(offsetof(ph_plugin, name) == 16, "ph_plugin.name moved");
_Static_assert(offsetof(ph_plugin, create) == 40, "ph_plugin.create moved");
_Static_assert(offsetof(ph_plugin, data_paths) == 80, "ph_plugin.data_paths moved");
_Static_assert(sizeof(ph_plugin) == 152, "ph_plugin 1.0 is 152 bytes");
_Static_assert(PH_PLUGIN_MIN_SIZE == 152, "the first version's size");
_Static_assert(offsetof(ph_host, log) == 16, "ph_host.log moved");
_Static_assert(sizeof(ph_host) == 112, "ph_host 1.0 is 112 bytes");
_Static_assert(offsetof(ph_call, deadline_ns) == 8, "ph_call.deadline_ns moved");
_Static_assert(offsetof(ph_call, hold_until_ns) == 16, "ph_call.hold_until_ns moved");
_Static_assert(sizeof(ph_call) == 88, "ph_call 1.0 is 88 bytes");
