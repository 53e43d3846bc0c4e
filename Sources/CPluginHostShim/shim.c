#define _GNU_SOURCE
#include "pluginhost_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
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

int ph_mount_id(int fd, unsigned long long *mount_id) {
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) != 0) return -1;
    if (!(sx.stx_mask & STATX_MNT_ID)) { errno = ENOSYS; return -1; }
    *mount_id = sx.stx_mnt_id;
    return 0;
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

int ph_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

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

/* The child side of ph_spawn and ph_fork_call: process group, parent death, default signals,
 * descriptors. Returns 0, or -1 with errno set. System calls only. */
static int prepare_child(const int *staged, int fd_count, int flags, pid_t parent) {
    if (flags & PH_SPAWN_NEW_SESSION) setsid();
    else if (flags & PH_SPAWN_NEW_PROCESS_GROUP) setpgid(0, 0);
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
    syscall(SYS_close_range, (unsigned)fd_count, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    return 0;
}

int ph_spawn(const char *path, char *const *argv, char *const *envp,
             const int *fd_map, int fd_count, const char *cwd,
             int flags, pid_t *pid_out) {
    int staged[MAX_FDS];
    int rc = stage(fd_map, fd_count, staged);
    if (rc != 0) return rc;

    /* No signal handler of ours may run in the child before it has reset them all. */
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t parent = getpid();
    volatile int child_error = 0;

    pid_t pid = vfork();
    if (pid == 0) {
        /* The child, sharing the parent's memory until execve: system calls only. */
        if (prepare_child(staged, fd_count, flags, parent) != 0) goto child_fail;
        if (cwd != NULL && chdir(cwd) != 0) goto child_fail;
        execve(path, argv, envp);
    child_fail:
        child_error = errno;
        _exit(127);
    }
    if (pid < 0) {
        rc = errno;
    } else if (child_error != 0) {
        rc = child_error;
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    } else {
        *pid_out = pid;
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    unstage(staged, fd_count);
    return rc;
}

int ph_fork_call(const int *fd_map, int fd_count, int flags, int (*entry)(void *), void *argument,
                 pid_t *pid_out) {
    int staged[MAX_FDS];
    int rc = stage(fd_map, fd_count, staged);
    if (rc != 0) return rc;
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        if (prepare_child(staged, fd_count, flags, parent) != 0) _exit(127);
        _exit(entry(argument));
    }
    if (pid < 0) rc = errno;
    else *pid_out = pid;
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
