#define _GNU_SOURCE
#include "pluginhost_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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

int ph_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int ph_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int ph_spawn(const char *path, char *const *argv, char *const *envp,
             const int *fd_map, int fd_count, const char *cwd,
             int new_process_group, pid_t *pid_out) {
    enum { MAX_FDS = 64 };
    if (fd_count < 0 || fd_count > MAX_FDS) return EINVAL;

    /* Move every source above the target range first, so that mapping 5->3 and 3->5 in
     * one call cannot clobber a source before it is duplicated. The copies are
     * close-on-exec and closed again below. */
    int staged[MAX_FDS];
    int rc = 0;
    for (int i = 0; i < fd_count; i++) staged[i] = -1;
    for (int i = 0; i < fd_count; i++) {
        if (fd_map[i] < 0) continue;
        staged[i] = fcntl(fd_map[i], F_DUPFD_CLOEXEC, fd_count);
        if (staged[i] < 0) { rc = errno; goto out_staged; }
    }

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    if ((rc = posix_spawn_file_actions_init(&actions)) != 0) goto out_staged;
    if ((rc = posix_spawnattr_init(&attr)) != 0) goto out_actions;

    for (int i = 0; i < fd_count && rc == 0; i++) {
        if (staged[i] >= 0)
            rc = posix_spawn_file_actions_adddup2(&actions, staged[i], i);
        else
            rc = posix_spawn_file_actions_addopen(&actions, i, "/dev/null", O_RDWR, 0);
    }
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, fd_count);
    if (rc == 0 && cwd != NULL) rc = posix_spawn_file_actions_addchdir_np(&actions, cwd);

    sigset_t all, none;
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    sigemptyset(&none);
    short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
    if (new_process_group) flags |= POSIX_SPAWN_SETPGROUP;
    if (rc == 0) rc = posix_spawnattr_setflags(&attr, flags);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0 && new_process_group) rc = posix_spawnattr_setpgroup(&attr, 0);

    if (rc == 0) rc = posix_spawn(pid_out, path, &actions, &attr, argv, envp);

    posix_spawnattr_destroy(&attr);
out_actions:
    posix_spawn_file_actions_destroy(&actions);
out_staged:
    for (int i = 0; i < fd_count; i++)
        if (staged[i] >= 0) close(staged[i]);
    return rc;
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

int ph_signal_default(int sig) { return signal(sig, SIG_DFL) == SIG_ERR ? -1 : 0; }

int ph_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

int ph_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int ph_memfd_create(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int ph_errno(void) { return errno; }
