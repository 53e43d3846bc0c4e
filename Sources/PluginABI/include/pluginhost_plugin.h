/*
 * pluginhost_plugin.h — the whole contract between pluginhost and an application quiesce
 * plugin. A plugin is a shared library that includes this header and nothing else of
 * pluginhost's; from C it builds with
 *
 *     cc -shared -fPIC -o libmyplugin.so myplugin.c
 *
 * HOW A PLUGIN IS USED
 *
 * pluginhost runs every plugin in a worker process of its own (a crash or a hang there
 * kills only the worker), after verifying the library file (owner, mode, SHA-256 from its
 * manifest). In the worker it calls, in this order:
 *
 *     entry = pluginhost_plugin_entry();        the descriptor below; checked before use
 *     entry->create(config, host, &instance, call)
 *     entry->check(instance, call)              only for `pluginhost check` / `list`
 *     entry->data_paths(instance, call)         optional; where the application keeps data
 *     entry->quiesce(instance, call)            just before the filesystems are frozen
 *     entry->resume(instance, call)             after the thaw; ALWAYS if quiesce was called
 *     entry->destroy(instance)
 *
 * Every call runs on one thread of the worker. The host enforces every deadline: a call
 * that overruns is not waited for — the worker is killed, and with it every connection it
 * holds (a database lock taken in a session dies with the session). So keep the state that
 * must not outlive the snapshot in connections the worker owns.
 *
 * RESUME IS IDEMPOTENT AND SAFE AFTER A FAILED OR PARTIAL QUIESCE. It may be called when
 * quiesce failed halfway, and must then undo whatever half of it was done.
 *
 * RESULTS
 *
 * Every call returns a status from the list below and may write into `call`:
 *   - `call->message`: on failure, what went wrong and what to do (shown to the admin as
 *     is); on success, an optional one-line summary. NUL-terminated, truncated to
 *     `message_size`.
 *   - `call->details`: optional facts for the report, one `key=value` per line (for example
 *     `binlog_file=mysql-bin.000042`). Keys: letters, digits, `_` and `.`.
 * Both buffers belong to the host; never keep their pointers after the call returns.
 *
 * VERSIONING
 *
 * The descriptor starts with a magic number, the ABI major and minor version this header
 * defines, and its own size. The host refuses a plugin with another magic or major version
 * (naming both values), or a size smaller than the first version's. Structures only ever
 * grow at the end; a plugin built against a newer minor version works with an older host
 * as long as the fields the older host does not know are zero. The `reserved` slots must be
 * NULL. Status codes are only ever appended.
 */
#ifndef PLUGINHOST_PLUGIN_H
#define PLUGINHOST_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 'P' 'H' 'Q' 'P': "pluginhost quiesce plugin". */
#define PH_PLUGIN_MAGIC 0x50485150u
#define PH_ABI_MAJOR 1
#define PH_ABI_MINOR 0

/* The one symbol a plugin exports. */
#define PH_PLUGIN_ENTRY_SYMBOL "pluginhost_plugin_entry"

/* Status codes: an append-only list. Unknown values are treated as PH_FAILED. */
typedef enum ph_status {
    PH_OK = 0,
    PH_FAILED = 1,            /* anything not listed below */
    PH_INVALID_CONFIG = 2,    /* the manifest's config is wrong: say which key and why */
    PH_UNREACHABLE = 3,       /* cannot connect to the application */
    PH_NOT_AUTHORIZED = 4,    /* connected, but lacks a privilege: name it */
    PH_TIMEOUT = 5,           /* the deadline passed (the plugin gave up in time) */
    PH_BUSY = 6,              /* the application cannot quiesce now (a long statement, another backup) */
    PH_CONSISTENCY_LOST = 7,  /* resume: the quiesce did not hold until now (session lost) */
    PH_UNSUPPORTED = 8,       /* application version or mode not supported */
} ph_status;

/* Log levels for host->log. */
typedef enum ph_log_level {
    PH_LOG_DEBUG = 0,
    PH_LOG_INFO = 1,
    PH_LOG_WARNING = 2,
    PH_LOG_ERROR = 3,
} ph_log_level;

/* What the host offers a plugin. Read `struct_size` before any field added after the
 * first version. Valid from create() to destroy(). */
typedef struct ph_host {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    void *context; /* pass back to log() */
    /* One line to the host's log (kept in memory while filesystems are frozen). */
    void (*log)(void *context, int32_t level, const char *message);
    /* The operation's id, for labels (e.g. a database backup label). */
    const char *operation_id;
    /* The mount points this operation freezes, NULL-terminated. */
    const char *const *freeze_mounts;
    /* CLOCK_MONOTONIC now, in nanoseconds (the clock of every deadline). */
    uint64_t (*now_ns)(void);
    void *reserved[8];
} ph_host;

/* One call's deadline and result buffers. */
typedef struct ph_call {
    uint32_t struct_size;
    uint32_t flags;         /* zero in ABI 1.0 */
    uint64_t deadline_ns;   /* CLOCK_MONOTONIC; give up (PH_TIMEOUT) before it */
    /* quiesce only: resume will have been called by then at the latest (the freeze guard's
     * deadline plus margins). Use it for a server-side dead-man switch on a held session,
     * so that a lock cannot outlive a host that died. 0 when unknown. */
    uint64_t hold_until_ns;
    char *message;
    size_t message_size;
    char *details;
    size_t details_size;
    void *reserved[4];
} ph_call;

/* The plugin's state, whatever the plugin wants it to be. */
typedef struct ph_instance ph_instance;

typedef struct ph_plugin {
    uint32_t magic;       /* PH_PLUGIN_MAGIC */
    uint16_t abi_major;   /* PH_ABI_MAJOR */
    uint16_t abi_minor;   /* PH_ABI_MINOR */
    uint32_t struct_size; /* sizeof(ph_plugin) */
    uint32_t flags;       /* zero in ABI 1.0 */

    const char *name;        /* short, e.g. "mysql" */
    const char *version;     /* the plugin's own version, e.g. "1.2.0" */
    const char *description; /* one line */

    /* Parses `config_json` (the manifest's "config" object as compact JSON text) and
     * prepares; connects to nothing yet if it can avoid it. Required. */
    int32_t (*create)(const char *config_json, const ph_host *host, ph_instance **instance, ph_call *call);

    /* Validates the config and reaches the application WITHOUT quiescing it: connect, check
     * version and privileges. `details` may carry facts (server version, ...). Required. */
    int32_t (*check)(ph_instance *instance, ph_call *call);

    /* Makes the application's data on disk consistent and keeps it so until resume. Must
     * return before `call->deadline_ns`. Required. */
    int32_t (*quiesce)(ph_instance *instance, ph_call *call);

    /* Undoes quiesce. Idempotent; safe after a failed or partial quiesce. PH_CONSISTENCY_LOST
     * when the quiesce did not hold (the snapshot is not consistent for this application).
     * Required. */
    int32_t (*resume)(ph_instance *instance, ph_call *call);

    /* Frees everything. Required. */
    void (*destroy)(ph_instance *instance);

    /* Optional (may be NULL): the directories the application keeps data in, one absolute
     * path per line in `call->message`. The host warns when one lies outside the filesystems
     * it freezes: such a snapshot would not be consistent. */
    int32_t (*data_paths)(ph_instance *instance, ph_call *call);

    void *reserved[8];
} ph_plugin;

/* The first version's size: the host refuses anything smaller. */
#define PH_PLUGIN_MIN_SIZE (offsetof(ph_plugin, reserved) + 8 * sizeof(void *))

/* The one exported function. Returns a descriptor that stays valid while the library is
 * loaded (a static const object is the usual way). */
const ph_plugin *pluginhost_plugin_entry(void);

#ifdef __cplusplus
}
#endif
#endif
