#define _GNU_SOURCE
#include "pluginhost_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* The warden (see pluginhost_shim.h). Everything after fork is a system call on memory of its
 * own stack: no allocation, no stdio, no lock that a thread of the parent could have held. */

_Static_assert(sizeof(ph_warden_order) == 64, "orders are written whole");
_Static_assert(sizeof(ph_warden_note) == 72 && sizeof(ph_warden_note) <= PIPE_BUF, "notes are written whole");

enum { MAX_WATCHED = 256, ORDERS_FD = 3, NOTES_FD = 4, CGROUP_FD = 5 };

struct watch {
    int pidfd;      /* -1 once handled (or not watched) */
    pid_t group;
    char cell[52];
};

static struct watch watched[MAX_WATCHED];
static int watched_count;

/* Appends `text` to `buffer` (of `size`) at *length, truncating; keeps it NUL-terminated. */
static void append(char *buffer, size_t size, size_t *length, const char *text) {
    while (*text && *length + 1 < size) buffer[(*length)++] = *text++;
    buffer[*length] = '\0';
}

static void append_number(char *buffer, size_t size, size_t *length, long value) {
    char digits[24];
    int count = 0;
    if (value == 0) digits[count++] = '0';
    while (value > 0 && count < (int)sizeof digits) {
        digits[count++] = (char)('0' + value % 10);
        value /= 10;
    }
    char text[24];
    for (int i = 0; i < count; i++) text[i] = digits[count - 1 - i];
    text[count] = '\0';
    append(buffer, size, length, text);
}

static void copy_name(char *target, size_t size, const char *source) {
    size_t length = 0;
    target[0] = '\0';
    append(target, size, &length, source);
}

static long monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Writes "1" to `name` (cgroup.kill) under `dirfd`: every process in that cgroup and below gets
 * SIGKILL, also those that fork meanwhile. */
static int write_one(int dirfd, const char *name) {
    int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t written = write(fd, "1", 1);
    close(fd);
    return written == 1 ? 0 : -1;
}

/* Notes, then kills, every process of the cell `cell` (a cgroup under dirfd). */
static void kill_cell(int dirfd, const char *cell, int notes) {
    char path[128];
    size_t length = 0;
    append(path, sizeof path, &length, cell);
    append(path, sizeof path, &length, "/cgroup.procs");
    int procs = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    pid_t members[256];
    int count = 0;
    if (procs >= 0) {
        char text[4096];
        ssize_t got = read(procs, text, sizeof text - 1);
        close(procs);
        long value = -1;
        for (ssize_t i = 0; i < got; i++) {
            if (text[i] >= '0' && text[i] <= '9') {
                value = (value < 0 ? 0 : value * 10) + (text[i] - '0');
            } else {
                if (value > 0 && count < 256) members[count++] = (pid_t)value;
                value = -1;
            }
        }
    }
    for (int i = 0; i < count; i++) {
        ph_warden_note note;
        memset(&note, 0, sizeof note);
        note.pid = members[i];
        copy_name(note.cell, sizeof note.cell, cell);
        char comm_path[48];
        size_t comm_length = 0;
        append(comm_path, sizeof comm_path, &comm_length, "/proc/");
        append_number(comm_path, sizeof comm_path, &comm_length, members[i]);
        append(comm_path, sizeof comm_path, &comm_length, "/comm");
        int comm = open(comm_path, O_RDONLY | O_CLOEXEC);
        if (comm >= 0) {
            ssize_t got = read(comm, note.comm, sizeof note.comm - 1);
            close(comm);
            if (got > 0 && note.comm[got - 1] == '\n') note.comm[got - 1] = '\0';
        }
        ssize_t ignored = write(notes, &note, sizeof note); /* a full pipe loses the note, not the kill */
        (void)ignored;
    }
    length = 0;
    append(path, sizeof path, &length, cell);
    append(path, sizeof path, &length, "/cgroup.kill");
    if (write_one(dirfd, path) != 0) {
        for (int i = 0; i < count; i++) kill(members[i], SIGKILL);
    }
}

/* Waits until the cgroup under dirfd is empty (cgroup.events says "populated 0"), at most
 * `limit_ms`. A process asleep in a write to a frozen filesystem dies only once it is thawed. */
static void wait_empty(int dirfd, long limit_ms) {
    int events = openat(dirfd, "cgroup.events", O_RDONLY | O_CLOEXEC);
    if (events < 0) return;
    long end = monotonic_ms() + limit_ms;
    for (;;) {
        char text[256];
        ssize_t got = pread(events, text, sizeof text - 1, 0);
        if (got < 0) break;
        text[got] = '\0';
        if (strstr(text, "populated 0")) break;
        long left = end - monotonic_ms();
        if (left <= 0) break;
        struct pollfd event = {.fd = events, .events = POLLPRI};
        poll(&event, 1, left < 100 ? (int)left : 100);
    }
    close(events);
}

/* Removes every (empty) cgroup below dirfd, deepest first. */
static void remove_children(int dirfd, int depth) {
    if (depth > 16) return;
    for (int pass = 0; pass < 4; pass++) {
        int listing = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (listing < 0) return;
        int removed = 0;
        char buffer[4096];
        for (;;) {
            long got = syscall(SYS_getdents64, listing, buffer, sizeof buffer);
            if (got <= 0) break;
            for (long offset = 0; offset < got;) {
                struct {
                    unsigned long long ino;
                    long long off;
                    unsigned short reclen;
                    unsigned char type;
                    char name[];
                } *entry = (void *)(buffer + offset);
                offset += entry->reclen;
                if (entry->type != 4 /* DT_DIR */ || strcmp(entry->name, ".") == 0 || strcmp(entry->name, "..") == 0) continue;
                int child = openat(dirfd, entry->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (child >= 0) {
                    remove_children(child, depth + 1);
                    close(child);
                }
                if (unlinkat(dirfd, entry->name, AT_REMOVEDIR) == 0) removed++;
            }
        }
        close(listing);
        if (!removed) return;
    }
}

static void finish(const char *cgroup_path, int kill_everything) __attribute__((noreturn));

static void finish(const char *cgroup_path, int kill_everything) {
    int dirfd = cgroup_path ? CGROUP_FD : -1;
    if (kill_everything) {
        if (dirfd >= 0) {
            if (write_one(dirfd, "cgroup.kill") == 0) wait_empty(dirfd, 120000);
        } else {
            for (int i = 0; i < watched_count; i++)
                if (watched[i].group > 0) kill(-watched[i].group, SIGKILL);
        }
    }
    if (dirfd >= 0) {
        remove_children(dirfd, 0);
        rmdir(cgroup_path);
    }
    _exit(0);
}

/* The owner of watched[index] exited (or could not be watched): kill what it owned. */
static void owner_gone(int index, const char *cgroup_path) {
    struct watch *entry = &watched[index];
    if (entry->pidfd >= 0) close(entry->pidfd);
    entry->pidfd = -1;
    if (cgroup_path) {
        if (entry->cell[0]) kill_cell(CGROUP_FD, entry->cell, NOTES_FD);
    } else if (entry->group > 0) {
        kill(-entry->group, SIGKILL);
        entry->group = 0;
    }
}

/* A WATCH order: remember the owner (and its cell or group). */
static void take(ph_warden_order *order, const char *cgroup_path) {
    if (order->kind != PH_WARDEN_WATCH || watched_count >= MAX_WATCHED) return;
    struct watch *entry = &watched[watched_count++];
    order->cell[sizeof order->cell - 1] = '\0';
    copy_name(entry->cell, sizeof entry->cell, order->cell);
    entry->group = order->group;
    entry->pidfd = -1;
    if (order->pid > 0) {
        entry->pidfd = (int)syscall(SYS_pidfd_open, order->pid, 0);
        if (entry->pidfd < 0) owner_gone(watched_count - 1, cgroup_path); /* already gone */
    }
}

static void warden_main(pid_t parent, const char *cgroup_path) __attribute__((noreturn));

static void warden_main(pid_t parent, const char *cgroup_path) {
    static const int ignored[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM,
                                  SIGTSTP, SIGTTIN, SIGTTOU};
    struct sigaction action;
    memset(&action, 0, sizeof action);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        action.sa_handler = SIG_DFL;
        for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
            if (ignored[i] == sig) action.sa_handler = SIG_IGN;
        sigaction(sig, &action, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    setpgid(0, 0); /* a kill of the host's process group must leave the warden to do its work */
    prctl(PR_SET_NAME, "pluginhost-ward", 0, 0, 0); /* what ps shows (at most 15 characters) */

    int host = (int)syscall(SYS_pidfd_open, parent, 0);
    if (host < 0 || getppid() != parent) finish(cgroup_path, 1);

    for (;;) {
        struct pollfd fds[2 + MAX_WATCHED];
        int map[2 + MAX_WATCHED];
        int count = 0;
        fds[count++] = (struct pollfd){.fd = ORDERS_FD, .events = POLLIN};
        fds[count++] = (struct pollfd){.fd = host, .events = POLLIN};
        for (int i = 0; i < watched_count; i++) {
            if (watched[i].pidfd < 0) continue;
            map[count] = i;
            fds[count++] = (struct pollfd){.fd = watched[i].pidfd, .events = POLLIN};
        }
        if (poll(fds, (nfds_t)count, -1) < 0) {
            if (errno == EINTR) continue;
            finish(cgroup_path, 1);
        }
        for (int i = 2; i < count; i++)
            if (fds[i].revents) owner_gone(map[i], cgroup_path);
        /* Every order sent so far, also those sent just before the host died: a group it
         * named must not be missed. */
        if (fds[0].revents || fds[1].revents) {
            for (;;) {
                ph_warden_order order;
                ssize_t got = recv(ORDERS_FD, &order, sizeof order, MSG_DONTWAIT);
                if (got < 0 && errno == EINTR) continue;
                if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (got != (ssize_t)sizeof order) finish(cgroup_path, 1); /* closed without DONE */
                if (order.kind == PH_WARDEN_DONE) {
                    /* Only the end of the orders now; then tidy up without killing. */
                    while (read(ORDERS_FD, &order, sizeof order) > 0) {}
                    finish(cgroup_path, 0);
                }
                take(&order, cgroup_path);
            }
        }
        if (fds[1].revents) finish(cgroup_path, 1); /* the host is gone */
    }
}

int ph_warden_start(const char *cgroup_path, pid_t *pid_out, int *orders_out, int *notes_out) {
    int orders[2], notes[2];
    /* Orders on a socket: a host whose warden died gets EPIPE from send(MSG_NOSIGNAL), never
     * SIGPIPE, and every order arrives whole. */
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, orders) != 0) return errno;
    if (pipe2(notes, O_CLOEXEC | O_NONBLOCK) != 0) {
        int error = errno;
        close(orders[0]);
        close(orders[1]);
        return error;
    }
    int dirfd = -1;
    if (cgroup_path) {
        dirfd = open(cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
            int error = errno;
            close(orders[0]); close(orders[1]); close(notes[0]); close(notes[1]);
            return error;
        }
    }
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Its descriptors: /dev/null on 0-2 (it must hold no pipe a reader waits on), orders
         * on 3, notes on 4, the cgroup on 5; nothing else. */
        int keep[3] = {orders[0], notes[1], dirfd};
        int high[3] = {-1, -1, -1};
        for (int i = 0; i < 3; i++)
            if (keep[i] >= 0) high[i] = fcntl(keep[i], F_DUPFD_CLOEXEC, 16);
        int null = open("/dev/null", O_RDWR);
        for (int fd = 0; fd < 3; fd++) dup2(null, fd);
        for (int i = 0; i < 3; i++)
            if (high[i] >= 0) dup2(high[i], ORDERS_FD + i);
        if (!cgroup_path) close(CGROUP_FD);
        syscall(SYS_close_range, (unsigned)(CGROUP_FD + 1), ~0U, 0);
        if (high[0] < 0 || high[1] < 0 || (cgroup_path && high[2] < 0)) _exit(127);
        warden_main(parent, cgroup_path);
    }
    int error = pid < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    close(orders[0]);
    close(notes[1]);
    if (dirfd >= 0) close(dirfd);
    if (error) {
        close(orders[1]);
        close(notes[0]);
        return error;
    }
    *pid_out = pid;
    *orders_out = orders[1];
    *notes_out = notes[0];
    return 0;
}
