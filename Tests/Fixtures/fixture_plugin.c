/*
 * A test plugin whose misbehaviour is chosen at compile time (-DBEHAVIOUR_...), so the tests
 * can build every kind of broken plugin from one source with `cc -shared -fPIC`.
 * Config: {"log": "/path/calls.log", "sleep_ms": N}. Every call appends "<name> <call>" to the log.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pluginhost_plugin.h"

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "fixture"
#endif

struct ph_instance {
    const ph_host *host;
    char log[1024];
    int sleep_ms;
};

static void note(ph_instance *self, const char *what) {
    if (!self->log[0]) return;
    FILE *file = fopen(self->log, "a");
    if (!file) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    fprintf(file, "%s %s %lld\n", PLUGIN_NAME, what, (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    fclose(file);
}

static int32_t create(const char *config, const ph_host *host, ph_instance **out, ph_call *call) {
    ph_instance *self = calloc(1, sizeof *self);
    self->host = host;
    const char *log = strstr(config, "\"log\":\"");
    if (log) {
        log += 7;
        const char *end = strchr(log, '"');
        if (end && end - log < (long)sizeof self->log) memcpy(self->log, log, (size_t)(end - log));
    }
    const char *sleep = strstr(config, "\"sleep_ms\":");
    if (sleep) self->sleep_ms = atoi(sleep + 11);
    *out = self;
    note(self, "create");
    (void)call;
    return PH_OK;
}

static int32_t check(ph_instance *self, ph_call *call) {
    note(self, "check");
    snprintf(call->details, call->details_size, "fixture_version=1\n");
    return PH_OK;
}

static int32_t quiesce(ph_instance *self, ph_call *call) {
    note(self, "quiesce-start");
#ifdef BEHAVIOUR_SEGV_QUIESCE
    raise(SIGSEGV);
#endif
#ifdef BEHAVIOUR_HANG_QUIESCE
    for (;;) pause();
#endif
#ifdef BEHAVIOUR_LOG_FLOOD
    for (int i = 0; i < 20000; i++) self->host->log(self->host->context, PH_LOG_INFO, "flooding the log with a line that says nothing at all");
#endif
#ifdef BEHAVIOUR_GARBAGE
    static const char garbage[] = "\x01\x02 this is not a message";
    send(4, garbage, sizeof garbage, MSG_NOSIGNAL);
#endif
    if (self->sleep_ms) usleep((useconds_t)self->sleep_ms * 1000);
    note(self, "quiesce-end");
#ifdef BEHAVIOUR_FAIL_QUIESCE
    snprintf(call->message, call->message_size, "the application is busy: a long statement runs");
    return PH_BUSY;
#endif
    snprintf(call->details, call->details_size, "position=42\nlabel=%s\n", self->host->operation_id);
#ifdef BEHAVIOUR_DIE_AFTER_QUIESCE
    alarm(1); /* SIGALRM at its default: the worker dies during the hold, while nobody waits on it */
#endif
    return PH_OK;
}

static int32_t resume(ph_instance *self, ph_call *call) {
    note(self, "resume");
#ifdef BEHAVIOUR_HANG_RESUME
    for (;;) pause();
#endif
#ifdef BEHAVIOUR_LOST_RESUME
    snprintf(call->message, call->message_size, "the session holding the lock was killed");
    return PH_CONSISTENCY_LOST;
#endif
    (void)call;
    return PH_OK;
}

static void destroy(ph_instance *self) {
    note(self, "destroy");
    free(self);
}

static int32_t data_paths(ph_instance *self, ph_call *call) {
    (void)self;
#ifdef DATA_PATH
    snprintf(call->message, call->message_size, "%s\n", DATA_PATH);
#else
    (void)call;
#endif
    return PH_OK;
}

#ifdef BEHAVIOUR_TRAILING
struct extended { ph_plugin base; uint64_t future_field; };
static const struct extended extended = {
    .base = {.magic = PH_PLUGIN_MAGIC, .abi_major = PH_ABI_MAJOR, .abi_minor = PH_ABI_MINOR + 1,
             .struct_size = sizeof(struct extended), .name = PLUGIN_NAME, .version = "1.0",
             .create = create, .check = check, .quiesce = quiesce, .resume = resume, .destroy = destroy},
    .future_field = 7,
};
const ph_plugin *pluginhost_plugin_entry(void) { return &extended.base; }
#else
static const ph_plugin descriptor = {
#ifdef BEHAVIOUR_WRONG_MAGIC
    .magic = 0x12345678u,
#else
    .magic = PH_PLUGIN_MAGIC,
#endif
#ifdef BEHAVIOUR_WRONG_MAJOR
    .abi_major = PH_ABI_MAJOR + 1,
#else
    .abi_major = PH_ABI_MAJOR,
#endif
    .abi_minor = PH_ABI_MINOR,
#ifdef BEHAVIOUR_SMALL_STRUCT
    .struct_size = 64,
#else
    .struct_size = sizeof(ph_plugin),
#endif
    .name = PLUGIN_NAME,
    .version = "1.0",
    .description = "a test plugin",
    .create = create,
    .check = check,
#ifndef BEHAVIOUR_MISSING_QUIESCE
    .quiesce = quiesce,
#endif
    .resume = resume,
    .destroy = destroy,
    .data_paths = data_paths,
#ifdef BEHAVIOUR_RESERVED
    .reserved = {(void *)1},
#endif
};

#ifdef BEHAVIOUR_NO_ENTRY
const ph_plugin *some_other_name(void) { return &descriptor; }
#else
const ph_plugin *pluginhost_plugin_entry(void) { return &descriptor; }
#endif
#endif
