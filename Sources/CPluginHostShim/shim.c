#define _GNU_SOURCE
#include "pluginhost_shim.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <linux/sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int ph_fifreeze(int fd) { return ioctl(fd, FIFREEZE, 0); }

int ph_fithaw(int fd) { return ioctl(fd, FITHAW, 0); }

/* A macro's value as a string literal. */
#define PH_STRINGIFY2(x) #x
#define PH_STRINGIFY(x) PH_STRINGIFY2(x)

/* ---- Kernel features and their fallbacks ----
 * pidfd_open (Linux 5.3), statx's STATX_MNT_ID (5.8) and close_range (5.9) are used when the
 * kernel has them; otherwise (or when PLUGINHOST_TEST_FORCE_FALLBACKS=1, which only the tests
 * set) the fallbacks below do the same work. The switch is read once, in the parent, before
 * any vfork child could need it. */

static int forced_state = -1;
static int clone3_into_cgroup_available(void);

int ph_fallbacks_forced(void) {
    if (forced_state < 0) {
        const char *value = getenv("PLUGINHOST_TEST_FORCE_FALLBACKS");
        forced_state = value != NULL && strcmp(value, "1") == 0;
    }
    return forced_state;
}

int ph_kernel_features(void) {
    int features = 0;
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd >= 0) { close(pidfd); features |= PH_FEATURE_PIDFD; }
    struct statx sx;
    if (statx(AT_FDCWD, "/", 0, STATX_MNT_ID, &sx) == 0 && (sx.stx_mask & STATX_MNT_ID)) features |= PH_FEATURE_STATX_MNT_ID;
    /* A range past any open descriptor: closes nothing, fails only with ENOSYS (or EINVAL). */
    if (syscall(SYS_close_range, ~0U - 1, ~0U, 0) == 0) features |= PH_FEATURE_CLOSE_RANGE;
    if (clone3_into_cgroup_available()) features |= PH_FEATURE_CLONE_INTO_CGROUP;
    return features;
}

/* mnt_id from /proc/self/fdinfo/FD (Linux 3.15): the same number as statx's stx_mnt_id and
 * the first field of /proc/self/mountinfo. No allocation. */
int ph_mount_id_from_fdinfo(int fd, unsigned long long *mount_id) {
    char path[64], buffer[4096];
    int length = snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    if (length < 0 || (size_t)length >= sizeof path) { errno = EINVAL; return -1; }
    int info = open(path, O_RDONLY | O_CLOEXEC);
    if (info < 0) return -1;
    ssize_t count = read(info, buffer, sizeof buffer - 1);
    int saved = errno;
    close(info);
    if (count <= 0) { errno = count < 0 ? saved : ENODATA; return -1; }
    buffer[count] = '\0';
    const char *line = strstr(buffer, "mnt_id:");
    if (line == NULL) { errno = ENOSYS; return -1; }
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(line + 7, &end, 10);
    if (end == line + 7 || errno != 0) { errno = ENODATA; return -1; }
    *mount_id = value;
    return 0;
}

int ph_mount_id(int fd, unsigned long long *mount_id) {
    if (!ph_fallbacks_forced()) {
        struct statx sx;
        if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) == 0 && (sx.stx_mask & STATX_MNT_ID)) {
            *mount_id = sx.stx_mnt_id;
            return 0;
        }
        if (errno == EBADF) return -1;
    }
    return ph_mount_id_from_fdinfo(fd, mount_id);
}

int ph_syncfs(int fd) { return syncfs(fd); }

int ph_memfd_create_sealable(const char *name) { return memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING); }

int ph_memfd_seal(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

int ph_memfd_is_sealed(int fd) {
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) return errno == EINVAL ? 0 : -1;
    int needed = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW;
    return (seals & needed) == needed ? 1 : 0;
}

int ph_pidfd_open(pid_t pid) {
    if (ph_fallbacks_forced()) { errno = ENOSYS; return -1; }
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int child_exit_pipe[2] = {-1, -1};

static void on_child_exit(int sig) {
    (void)sig;
    int saved = errno;
    unsigned char byte = 1;
    ssize_t ignored = write(child_exit_pipe[1], &byte, 1); /* a full pipe already says "a child exited" */
    (void)ignored;
    errno = saved;
}

int ph_child_exit_pipe(void) {
    if (child_exit_pipe[0] >= 0) return child_exit_pipe[0];
    if (pipe2(child_exit_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_child_exit;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) != 0) return -1;
    return child_exit_pipe[0];
}

int ph_child_exited(pid_t pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        if (errno != EINTR) return -1;
    }
    return info.si_pid == pid ? 1 : 0;
}

int ph_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static void unstage(int *staged, int count) {
    for (int i = 0; i < count; i++)
        if (staged[i] >= 0) close(staged[i]);
}

enum { MAX_FDS = 64 };

/* Copies every source descriptor above the target range first, so that mapping 5->3 and 3->5
 * in one call cannot clobber a source before it is duplicated. The copies are close-on-exec
 * and closed again by unstage. Returns 0 or an errno. */
static int stage(const int *fd_map, int fd_count, int *staged) {
    if (fd_count < 0 || fd_count > MAX_FDS) return EINVAL;
    for (int i = 0; i < fd_count; i++) staged[i] = -1;
    for (int i = 0; i < fd_count; i++) {
        if (fd_map[i] < 0) continue;
        staged[i] = fcntl(fd_map[i], F_DUPFD_CLOEXEC, fd_count);
        if (staged[i] < 0) {
            int error = errno;
            unstage(staged, i);
            return error;
        }
    }
    return 0;
}

/* Closes every descriptor from `low` up, in a vfork child: system calls only. close_range
 * (Linux 5.9) when there; else the numbers listed in /proc/self/fd, read with getdents64 into
 * a stack buffer; else every number up to the descriptor limit. */
struct ph_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static void close_from(int low, int use_close_range) {
    if (use_close_range && syscall(SYS_close_range, (unsigned)low, ~0U, 0) == 0) return;
    int directory = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (directory >= 0) {
        char buffer[4096] __attribute__((aligned(8)));
        long count;
        while ((count = syscall(SYS_getdents64, directory, buffer, sizeof buffer)) > 0) {
            for (long offset = 0; offset < count;) {
                struct ph_dirent64 *entry = (struct ph_dirent64 *)(buffer + offset);
                offset += entry->d_reclen;
                int fd = 0;
                const char *digit = entry->d_name;
                if (*digit < '0' || *digit > '9') continue;
                for (; *digit >= '0' && *digit <= '9'; digit++) fd = fd * 10 + (*digit - '0');
                if (fd >= low && fd != directory) close(fd);
            }
        }
        close(directory);
        return;
    }
    struct rlimit limit;
    long highest = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY ? (long)limit.rlim_cur : 65536;
    for (long fd = low; fd < highest; fd++) close((int)fd);
}

/* The child side of ph_spawn and ph_fork_call: cgroup, process group, the warden's order,
 * parent death, default signals, descriptors. Returns 0, or -1 with errno set; *join_error gets
 * the errno of a failed cgroup join (not fatal). System calls only. */
static int prepare_child(const int *staged, int fd_count, int flags, pid_t parent, int use_close_range,
                         int cgroup_procs_fd, volatile int *join_error, int warden_fd,
                         const ph_warden_order *watch) {
    /* First of all: whatever it starts from here on is born in the cgroup, and cannot leave
     * it by setsid or double fork. "0" is the writing process. */
    if (cgroup_procs_fd >= 0 && write(cgroup_procs_fd, "0", 1) != 1 && join_error) *join_error = errno;
    if (flags & PH_SPAWN_NEW_SESSION) setsid();
    else if (flags & PH_SPAWN_NEW_PROCESS_GROUP) setpgid(0, 0);
    /* Then the warden learns of this process (group) from the process itself, before it runs
     * anything: a parent killed at any instant cannot leave it unknown. */
    if (watch != NULL && warden_fd >= 0) {
        ph_warden_order order = *watch;
        pid_t self = getpid();
        if (order.pid < 0) order.pid = self;
        if (order.group < 0) order.group = self;
        ssize_t sent = send(warden_fd, &order, sizeof order, MSG_NOSIGNAL);
        (void)sent; /* a warden that is gone has nothing to be told */
    }
    if (flags & PH_SPAWN_DIE_WITH_PARENT) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent) _exit(127); /* the parent died before prctl */
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
    for (int i = 0; i < fd_count; i++) {
        int fd = staged[i];
        if (fd < 0) {
            fd = open("/dev/null", O_RDWR);
            if (fd < 0) return -1;
        }
        if (fd == i) {
            if (fcntl(fd, F_SETFD, 0) != 0) return -1;
        } else if (dup2(fd, i) < 0) {
            return -1;
        }
        if (staged[i] < 0 && fd != i) close(fd);
    }
    close_from(fd_count, use_close_range);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    return 0;
}

int ph_spawn(const char *path, char *const *argv, char *const *envp,
             const int *fd_map, int fd_count, const char *cwd,
             int flags, pid_t *pid_out) {
    return ph_spawn_in(path, argv, envp, fd_map, fd_count, cwd, flags, -1, -1, NULL, NULL, pid_out);
}

/* What the child of ph_spawn_in needs: it runs on its own stack (clone3) or on ours (vfork),
 * shares our memory until execve in both cases, and reports a failure through `error`. */
struct spawn_child {
    const char *path;
    char *const *argv;
    char *const *envp;
    const int *staged;
    int fd_count;
    const char *cwd;
    int flags;
    pid_t parent;
    int use_close_range;
    int cgroup_procs_fd;
    int warden_fd;
    const ph_warden_order *watch;
    volatile int error;
    volatile int join_error;
};

static int spawn_child_main(void *raw) __attribute__((noreturn));

static int spawn_child_main(void *raw) {
    struct spawn_child *child = raw;
    if (prepare_child(child->staged, child->fd_count, child->flags, child->parent, child->use_close_range,
                      child->cgroup_procs_fd, &child->join_error, child->warden_fd, child->watch) == 0
        && (child->cwd == NULL || chdir(child->cwd) == 0))
        execve(child->path, child->argv, child->envp);
    child->error = errno;
    _exit(127);
}

/* ---- clone3 into a cgroup ----
 * Moving a running process into a cgroup (a write to cgroup.procs) takes the kernel's cgroup
 * threadgroup lock for writing, which waits for an RCU grace period unless another move happened
 * just before: the first script of an operation paid 10-15 ms for it. clone3 with
 * CLONE_INTO_CGROUP (Linux 5.7) creates the child in its cgroup instead, under the read side of
 * that lock. The child shares our memory as a vfork child does (CLONE_VM | CLONE_VFORK: we sleep
 * until it has exec'd or exited), but starts on a stack of its own, so it needs a few
 * instructions of assembly: ph_clone3_run(args, size, fn, arg) makes the system call and, in
 * the child, calls fn(arg) on the new stack and exits with its result. It returns the child's
 * pid or -errno. Only x86-64 has it; elsewhere the child moves itself (the fallback). */
#if defined(__x86_64__) && defined(SYS_clone3)
#define PH_HAVE_CLONE3 1
long ph_clone3_run(struct clone_args *args, size_t size, int (*fn)(void *), void *arg);
__asm__(".text\n"
        ".globl ph_clone3_run\n"
        ".hidden ph_clone3_run\n"
        ".type ph_clone3_run,@function\n"
        "ph_clone3_run:\n"
        "    mov %rdx, %r8\n"          /* fn and arg: the system call keeps r8 and r9 */
        "    mov %rcx, %r9\n"
        "    mov $" PH_STRINGIFY(SYS_clone3) ", %eax\n"
        "    syscall\n"
        "    test %rax, %rax\n"
        "    jz 1f\n"
        "    ret\n"                    /* the parent (or a failure): pid or -errno */
        "1:  xor %ebp, %ebp\n"         /* the child, on its own stack: no frame above this one */
        "    and $-16, %rsp\n"
        "    mov %r9, %rdi\n"
        "    call *%r8\n"
        "    mov %eax, %edi\n"
        "    mov $" PH_STRINGIFY(SYS_exit) ", %eax\n"
        "    syscall\n"
        "    hlt\n"
        ".size ph_clone3_run, .-ph_clone3_run\n");

enum { CHILD_STACK_SIZE = 64 * 1024 };

/* 0: not tried yet; 1: works; -1: this kernel (or a seccomp filter) refuses it. */
static int clone3_state = 0;

/* clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP) of a child that runs fn(arg) on `stack`,
 * in the cgroup `cgroup_fd`. Returns its pid (once it has exec'd or exited), or -errno. */
static long clone3_into(int cgroup_fd, void *stack, size_t stack_size, int (*fn)(void *), void *arg) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.stack = (unsigned long long)(uintptr_t)stack;
    args.stack_size = stack_size;
    args.cgroup = (unsigned long long)cgroup_fd;
    return ph_clone3_run(&args, sizeof args, fn, arg);
}

/* Starts `child` in the cgroup `cgroup_fd` with clone3, on a stack of its own. Returns its pid,
 * or -errno. */
static long clone3_spawn(int cgroup_fd, struct spawn_child *child) {
    void *stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -errno;
    long pid = clone3_into(cgroup_fd, stack, CHILD_STACK_SIZE, spawn_child_main, child);
    munmap(stack, CHILD_STACK_SIZE);
    return pid;
}

static int probe_child_main(void *unused) {
    (void)unused;
    _exit(0);
}

/* Whether clone3 accepts CLONE_INTO_CGROUP: asked with a descriptor that cannot be open, which
 * a kernel that has it refuses with EBADF (one without it, or a seccomp filter, otherwise). */
static int clone3_into_cgroup_available(void) {
    static char stack[4096] __attribute__((aligned(16)));
    long pid = clone3_into(INT_MAX, stack, sizeof stack, probe_child_main, NULL);
    if (pid > 0) { /* cannot happen; should it, the child has exited */
        int status;
        while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {}
        return 1;
    }
    return pid == -EBADF;
}
#else
static int clone3_into_cgroup_available(void) { return 0; }
#endif

int ph_spawn_in(const char *path, char *const *argv, char *const *envp,
                const int *fd_map, int fd_count, const char *cwd,
                int flags, int cgroup_fd, int warden_fd, const ph_warden_order *watch, int *join_error_out,
                pid_t *pid_out) {
    int staged[MAX_FDS];
    int use_close_range = !ph_fallbacks_forced();
    int rc = stage(fd_map, fd_count, staged);
    if (rc != 0) return rc;

    /* No signal handler of ours may run in the child before it has reset them all. */
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    struct spawn_child child = {
        .path = path, .argv = argv, .envp = envp, .staged = staged, .fd_count = fd_count, .cwd = cwd,
        .flags = flags, .parent = getpid(), .use_close_range = use_close_range, .cgroup_procs_fd = -1,
        .warden_fd = warden_fd, .watch = watch, .error = 0, .join_error = 0,
    };
    long pid = -1;
#ifdef PH_HAVE_CLONE3
    if (cgroup_fd >= 0 && !ph_fallbacks_forced() && clone3_state >= 0) {
        pid = clone3_spawn(cgroup_fd, &child);
        if (pid > 0) clone3_state = 1;
        else if (clone3_state == 0 && (pid == -ENOSYS || pid == -EPERM || pid == -EINVAL || pid == -E2BIG))
            clone3_state = -1;
    }
#endif
    if (pid <= 0) {
        /* The fallback: the child writes itself into cgroup.procs before anything else. */
        if (cgroup_fd >= 0) {
            child.cgroup_procs_fd = openat(cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
            if (child.cgroup_procs_fd < 0) child.join_error = errno;
        }
        pid = vfork();
        if (pid == 0) spawn_child_main(&child);
        if (pid < 0) pid = -errno;
        if (child.cgroup_procs_fd >= 0) close(child.cgroup_procs_fd);
    }
    if (pid < 0) {
        rc = (int)-pid;
    } else if (child.error != 0) {
        rc = child.error;
        int status;
        while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {}
    } else {
        *pid_out = (pid_t)pid;
        if (join_error_out) *join_error_out = child.join_error;
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    unstage(staged, fd_count);
    return rc;
}

int ph_fork_call(const int *fd_map, int fd_count, int flags, int (*entry)(void *), void *argument,
                 pid_t *pid_out) {
    return ph_fork_call_in(fd_map, fd_count, flags, -1, -1, NULL, entry, argument, NULL, pid_out);
}

int ph_fork_call_in(const int *fd_map, int fd_count, int flags, int cgroup_fd, int warden_fd,
                    const ph_warden_order *watch, int (*entry)(void *), void *argument, int *join_error_out,
                    pid_t *pid_out) {
    int staged[MAX_FDS];
    int use_close_range = !ph_fallbacks_forced();
    int rc = stage(fd_map, fd_count, staged);
    if (rc != 0) return rc;
    /* A forked child runs code of ours, so it must come from fork() (glibc resets its own state
     * there), not from clone3: it moves itself into the cgroup. */
    int cgroup_procs_fd = cgroup_fd >= 0 ? openat(cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC) : -1;
    int join_error = cgroup_fd >= 0 && cgroup_procs_fd < 0 ? errno : 0;
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        if (prepare_child(staged, fd_count, flags, parent, use_close_range, cgroup_procs_fd, NULL, warden_fd, watch) != 0)
            _exit(127);
        _exit(entry(argument));
    }
    if (pid < 0) {
        rc = errno;
    } else {
        *pid_out = pid;
        if (join_error_out) *join_error_out = join_error;
    }
    if (cgroup_procs_fd >= 0) close(cgroup_procs_fd);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    unstage(staged, fd_count);
    return rc;
}

int ph_thread_count(void) {
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buffer[4096];
    ssize_t count = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (count <= 0) return -1;
    buffer[count] = '\0';
    const char *line = strstr(buffer, "\nThreads:");
    return line ? atoi(line + 9) : -1;
}

static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    int saved = errno;
    unsigned char byte = (unsigned char)sig;
    ssize_t ignored = write(signal_pipe[1], &byte, 1); /* a full pipe already says "signalled" */
    (void)ignored;
    errno = saved;
}

int ph_signal_pipe(const int *signals, int count) {
    if (signal_pipe[0] < 0 && pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < count; i++)
        if (sigaction(signals[i], &sa, NULL) != 0) return -1;
    return signal_pipe[0];
}

int ph_signal_ignore(int sig) { return signal(sig, SIG_IGN) == SIG_ERR ? -1 : 0; }

int ph_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int ph_accept(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

int ph_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int ph_epoll_add(int epoll_fd, int fd) {
    struct epoll_event event = {.events = EPOLLIN, .data = {.fd = fd}};
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

int ph_epoll_remove(int epoll_fd, int fd) { return epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL); }

int ph_peer_credentials(int fd, uid_t *uid, pid_t *pid) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    *uid = credentials.uid;
    *pid = credentials.pid;
    return 0;
}

int ph_errno(void) { return errno; }

/* Package.swift defines PLUGINHOST_GIT_COMMIT for this file when the build environment has it
 * (scripts/package.sh sets it to the git commit). */
const char *ph_build_commit(void) {
#ifdef PLUGINHOST_GIT_COMMIT
    return PH_STRINGIFY(PLUGINHOST_GIT_COMMIT);
#else
    return "unknown";
#endif
}
