/*
 * flagfile — an example pluginhost plugin in plain C, and the template for your own.
 *
 * The application it quiesces is any program that pauses its writes while a flag file exists
 * (a common pattern for batch jobs and home-grown services). quiesce creates the flag and
 * waits until the application acknowledges it by creating "<flag>.ack"; resume removes both.
 *
 * Build:   cc -shared -fPIC -O2 -I path/to/Sources/PluginABI/include -o libflagfile.so flagfile.c
 * Install: pluginhost plugin add /usr/local/lib/pluginhost/libflagfile.so \
 *              --config '{"flag": "/run/myapp/pause", "dataDirectory": "/srv/myapp"}'
 *
 * Config (the manifest's "config" object): "flag" (required, absolute path), "dataDirectory"
 * (optional, reported as the application's data path), "requireAck" (optional, true/false,
 * default true). The parser below is deliberately small: a real plugin should use a JSON
 * library.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pluginhost_plugin.h"

struct ph_instance {
    const ph_host *host;
    char flag[4096];
    char ack[4100];
    char data_directory[4096];
    int require_ack;
    int flag_created; /* what quiesce did, so that resume undoes exactly that */
};

/* Copies the string value of "key" in a flat JSON object into out; 0 if found. */
static int json_string(const char *json, const char *key, char *out, size_t size) {
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *at = strstr(json, pattern);
    if (!at) return -1;
    at = strchr(at + strlen(pattern), ':');
    if (!at) return -1;
    at = strchr(at, '"');
    if (!at) return -1;
    const char *end = strchr(at + 1, '"');
    if (!end || (size_t)(end - at - 1) >= size) return -1;
    memcpy(out, at + 1, (size_t)(end - at - 1));
    out[end - at - 1] = '\0';
    return 0;
}

static void say(ph_call *call, const char *format, const char *argument) {
    snprintf(call->message, call->message_size, format, argument);
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int32_t create(const char *config, const ph_host *host, ph_instance **out, ph_call *call) {
    ph_instance *self = calloc(1, sizeof *self);
    if (!self) return PH_FAILED;
    self->host = host;
    if (json_string(config, "flag", self->flag, sizeof self->flag) != 0 || self->flag[0] != '/') {
        say(call, "config: \"flag\" must be an absolute path%s", "");
        free(self);
        return PH_INVALID_CONFIG;
    }
    snprintf(self->ack, sizeof self->ack, "%s.ack", self->flag);
    json_string(config, "dataDirectory", self->data_directory, sizeof self->data_directory);
    self->require_ack = strstr(config, "\"requireAck\":false") == NULL;
    *out = self;
    return PH_OK;
}

static int32_t check(ph_instance *self, ph_call *call) {
    char directory[4096];
    snprintf(directory, sizeof directory, "%s", self->flag);
    char *slash = strrchr(directory, '/');
    if (slash && slash != directory) *slash = '\0';
    struct stat info;
    if (stat(directory, &info) != 0 || !S_ISDIR(info.st_mode)) {
        say(call, "the flag's directory %s does not exist: is the application installed?", directory);
        return PH_UNREACHABLE;
    }
    snprintf(call->details, call->details_size, "flag=%s\nrequire_ack=%s\n", self->flag, self->require_ack ? "true" : "false");
    return PH_OK;
}

static int32_t quiesce(ph_instance *self, ph_call *call) {
    int fd = open(self->flag, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        say(call, errno == EEXIST ? "%s exists already: another backup is running, or an earlier one left it"
                                  : "cannot create %s", self->flag);
        return errno == EEXIST ? PH_BUSY : PH_FAILED;
    }
    close(fd);
    self->flag_created = 1;
    if (self->host->log) self->host->log(self->host->context, PH_LOG_INFO, "flag created; waiting for the application");
    uint64_t started = now_ns();
    while (self->require_ack && access(self->ack, F_OK) != 0) {
        if (now_ns() + 10000000u >= call->deadline_ns) {
            say(call, "the application did not acknowledge %s in time", self->flag);
            return PH_TIMEOUT; /* resume will remove the flag */
        }
        usleep(1000);
    }
    snprintf(call->details, call->details_size, "ack_ms=%llu\n", (unsigned long long)((now_ns() - started) / 1000000u));
    return PH_OK;
}

static int32_t resume(ph_instance *self, ph_call *call) {
    /* Idempotent and safe after a failed quiesce: remove only what quiesce created. */
    if (self->flag_created && unlink(self->flag) != 0 && errno != ENOENT) {
        say(call, "cannot remove %s: the application stays paused", self->flag);
        return PH_FAILED;
    }
    self->flag_created = 0;
    unlink(self->ack);
    return PH_OK;
}

static void destroy(ph_instance *self) { free(self); }

static int32_t data_paths(ph_instance *self, ph_call *call) {
    if (self->data_directory[0]) snprintf(call->message, call->message_size, "%s\n", self->data_directory);
    return PH_OK;
}

static const ph_plugin descriptor = {
    .magic = PH_PLUGIN_MAGIC,
    .abi_major = PH_ABI_MAJOR,
    .abi_minor = PH_ABI_MINOR,
    .struct_size = sizeof(ph_plugin),
    .name = "flagfile",
    .version = "1.0.0",
    .description = "pauses an application through a flag file it watches",
    .create = create,
    .check = check,
    .quiesce = quiesce,
    .resume = resume,
    .destroy = destroy,
    .data_paths = data_paths,
};

const ph_plugin *pluginhost_plugin_entry(void) { return &descriptor; }
