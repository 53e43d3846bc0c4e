/* A "vendor library" with suspend/resume calls and no plugin ABI, for the libffi binding. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

static void note(const char *log, const char *what, const char *name, long long value) {
    FILE *file = fopen(log, "a");
    if (!file) return;
    fprintf(file, "%s %s %lld\n", what, name, value);
    fclose(file);
}

int vendor_suspend(const char *log, const char *name, int32_t timeout_ms, bool flush) {
    note(log, flush ? "suspend+flush" : "suspend", name, timeout_ms > 0 ? 1 : 0);
    return 0;
}

int64_t vendor_resume(const char *log, const char *name) {
    note(log, "resume", name, 0);
    return 0;
}

bool vendor_ping(void) { return true; }

int vendor_refuse(const char *log) {
    note(log, "refuse", "-", 0);
    return 17;
}
