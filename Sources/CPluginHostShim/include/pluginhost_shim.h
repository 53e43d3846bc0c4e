/*
 * The few system calls Swift cannot import cleanly. Every function returns 0 (or a
 * descriptor / count) on success and -1 with errno set on failure, unless it says otherwise.
 * Nothing here allocates after setup, so the freeze guard can call it while filesystems
 * are frozen.
 */
#ifndef PLUGINHOST_SHIM_H
#define PLUGINHOST_SHIM_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Linked statically into the host and into every bundled plugin: never exported from either,
 * so a plugin's copy cannot interpose on the host's. */
#pragma GCC visibility push(hidden)

/* ioctl(fd, FIFREEZE) / ioctl(fd, FITHAW) on a descriptor of any file on the filesystem. */
int ph_fifreeze(int fd);
int ph_fithaw(int fd);

/* Kernel features used when present (ph_kernel_features), each with a fallback:
 * pidfd_open (Linux 5.3) -> SIGCHLD self-pipe and waitid(WNOWAIT) on our own child;
 * statx STATX_MNT_ID (5.8) -> mnt_id from /proc/self/fdinfo (3.15);
 * close_range (5.9) -> closing the numbers listed in /proc/self/fd;
 * clone3 CLONE_INTO_CGROUP (5.7, x86-64) -> the child writes itself into cgroup.procs. */
#define PH_FEATURE_PIDFD 1
#define PH_FEATURE_STATX_MNT_ID 2
#define PH_FEATURE_CLOSE_RANGE 4
#define PH_FEATURE_CLONE_INTO_CGROUP 8
/* Which of the features the running kernel has (probed, not guessed from the version). */
int ph_kernel_features(void);
/* 1 when PLUGINHOST_TEST_FORCE_FALLBACKS=1 (set only by the tests): every fallback is used. */
int ph_fallbacks_forced(void);

/* The id of the mount the descriptor is on, as in the first field of /proc/self/mountinfo:
 * statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID), else mnt_id in /proc/self/fdinfo/FD. */
int ph_mount_id(int fd, unsigned long long *_Nonnull mount_id);
/* The fallback alone: mnt_id from /proc/self/fdinfo/FD. */
int ph_mount_id_from_fdinfo(int fd, unsigned long long *_Nonnull mount_id);

/* syncfs(2): write back the whole filesystem the descriptor is on. */
int ph_syncfs(int fd);

/* memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING): an anonymous file in memory that can
 * be sealed. */
int ph_memfd_create_sealable(const char *_Nonnull name);
/* fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): from now on
 * nobody can change its contents or size, nor remove the seals. Fails (EBUSY) while a writable
 * shared mapping of it exists. */
int ph_memfd_seal(int fd);
/* 1 when fcntl(fd, F_GET_SEALS) has F_SEAL_WRITE, F_SEAL_SHRINK and F_SEAL_GROW, 0 when not
 * (or not a sealable file), -1 on error. */
int ph_memfd_is_sealed(int fd);

/* pidfd_open(2): a descriptor that becomes readable when the process exits (ENOSYS when the
 * kernel lacks it or the fallbacks are forced). */
int ph_pidfd_open(pid_t pid);

/* Without pidfd: installs a SIGCHLD handler (once) that writes a byte to a non-blocking,
 * close-on-exec pipe, and returns the pipe's read end: readable after any child exited. */
int ph_child_exit_pipe(void);
/* waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT): 1 when the child has exited (it stays a
 * zombie, so its pid cannot be reused until it is reaped), 0 when it runs, -1 on error. */
int ph_child_exited(pid_t pid);
/* pidfd_send_signal(2). */
int ph_pidfd_send_signal(int pidfd, int sig);

/* ph_spawn flags. */
#define PH_SPAWN_NEW_PROCESS_GROUP 1 /* setpgid(0, 0): a process group of its own */
#define PH_SPAWN_DIE_WITH_PARENT 2   /* PR_SET_PDEATHSIG SIGKILL: dies if the spawning thread's process dies */
#define PH_SPAWN_NEW_SESSION 4       /* setsid(): a session (and process group) of its own, no terminal */

/*
 * vfork + execve with the house rules: the child gets descriptors 0..<fd_count from
 * fd_map (fd_map[i] = parent descriptor that becomes child descriptor i; -1 opens
 * /dev/null there), every other descriptor closed, every signal at its default
 * disposition, an empty signal mask, the working directory `cwd` (NULL keeps it), and
 * what `flags` asks for. Returns 0 and stores the pid, or an errno value (not -1) when the
 * child could not be set up or execve failed (the child is reaped then).
 */
int ph_spawn(const char *_Nonnull path,
             char *_Nullable const *_Nonnull argv,
             char *_Nullable const *_Nonnull envp,
             const int *_Nonnull fd_map, int fd_count,
             const char *_Nullable cwd,
             int flags,
             pid_t *_Nonnull pid_out);

/*
 * fork without exec, with the same house rules as ph_spawn for descriptors, signals,
 * process group and parent death; the child runs entry(argument) and _exits with its result.
 * Only for a single-threaded caller (ph_thread_count() == 1): after fork the child would
 * otherwise inherit locks held by other threads. Returns 0 and stores the pid, or an errno.
 */
int ph_fork_call(const int *_Nonnull fd_map, int fd_count, int flags,
                 int (*_Nonnull entry)(void *_Nullable), void *_Nullable argument,
                 pid_t *_Nonnull pid_out);

/*
 * ph_spawn and ph_fork_call that start the child in a cgroup (v2) `cgroup_fd` (a descriptor of
 * its directory; -1: stay in the parent's cgroup), so that it and everything it
 * ever starts live there — setsid or a double fork does not leave a cgroup. ph_spawn_in creates
 * the child there (clone3 with CLONE_INTO_CGROUP, Linux 5.7); where that is refused, and always
 * in ph_fork_call_in, the child writes itself into cgroup.procs before anything else. A failed
 * join is not fatal: the child runs on in the parent's cgroup, and the errno is stored in
 * *join_error_out (0 when it joined; ph_fork_call_in knows only whether cgroup.procs could be
 * opened, the forked child's own write cannot be reported).
 *
 * `watch` (with `warden_fd`, the warden's orders socket): the child sends this order to the
 * warden itself, before the program runs, its pid in place of a `pid` or `group` of -1. Sent by
 * the parent after the spawn, it could come too late: a parent killed in between left the
 * child's process group unknown to the warden, and what the child started outlived it.
 */
struct ph_warden_order;
int ph_spawn_in(const char *_Nonnull path,
                char *_Nullable const *_Nonnull argv,
                char *_Nullable const *_Nonnull envp,
                const int *_Nonnull fd_map, int fd_count,
                const char *_Nullable cwd,
                int flags, int cgroup_fd, int warden_fd, const struct ph_warden_order *_Nullable watch,
                int *_Nullable join_error_out, pid_t *_Nonnull pid_out);
int ph_fork_call_in(const int *_Nonnull fd_map, int fd_count, int flags, int cgroup_fd, int warden_fd,
                    const struct ph_warden_order *_Nullable watch,
                    int (*_Nonnull entry)(void *_Nullable), void *_Nullable argument,
                    int *_Nullable join_error_out, pid_t *_Nonnull pid_out);

/*
 * The warden: a forked child that outlives its parent (the host) just long enough to kill what
 * the host started. It runs system calls only (so it may be forked from a threaded process),
 * ignores the signals a terminal or a service manager sends a job, and lives in a process group
 * of its own. It kills:
 *   - when an owner it watches exits (a plugin worker): that owner's cell (a cgroup named in the
 *     operation's cgroup) at once, and notes every process it killed;
 *   - when the host exits, or closes its orders without PH_WARDEN_DONE: the operation's whole
 *     cgroup (cgroup.kill), waits until it is empty and removes it;
 *   - without a cgroup (cgroup_path NULL): the process groups it was told, instead.
 * After PH_WARDEN_DONE and the end of the orders it only removes what is left of the (empty)
 * cgroups, and exits.
 */
#define PH_WARDEN_WATCH 1
#define PH_WARDEN_DONE 2

/* An order, sent whole on the orders socket (SOCK_SEQPACKET: send with MSG_NOSIGNAL). */
typedef struct ph_warden_order {
    int kind;      /* PH_WARDEN_WATCH or PH_WARDEN_DONE */
    pid_t pid;     /* WATCH: an owner; when it exits its cell/group is killed (0: only with the host) */
    pid_t group;   /* WATCH, without a cgroup: the process group to kill with its owner or the host */
    char cell[52]; /* WATCH: the owner's cell, a directory name in the operation's cgroup ("": none) */
} ph_warden_order;

/* A process the warden killed while the host lived (its owner died), read from the notes pipe. */
typedef struct {
    pid_t pid;
    char cell[52]; /* as in the order: the whole cell name, which names the owner in the report */
    char comm[16]; /* /proc/PID/comm: at most 15 characters (TASK_COMM_LEN) */
} ph_warden_note;

/* Starts the warden for the cgroup at `cgroup_path` (NULL: process groups only). Returns 0 and
 * stores its pid, the host's end of the orders socket (close-on-exec) and the non-blocking read
 * end of its notes pipe, or returns an errno. */
int ph_warden_start(const char *_Nullable cgroup_path, pid_t *_Nonnull pid_out, int *_Nonnull orders_out,
                    int *_Nonnull notes_out);

/* The number of threads of this process (from /proc/self/status), or -1. */
int ph_thread_count(void);

/*
 * Installs an async-signal-safe handler for each signal in `signals` that writes the
 * signal number as one byte to a non-blocking, close-on-exec pipe; returns the pipe's
 * read end (the same one on every call). Use it in poll() next to everything else.
 */
int ph_signal_pipe(const int *_Nonnull signals, int count);

/* signal(sig, SIG_IGN), from Swift without function pointers. */
int ph_signal_ignore(int sig);

/* pipe2(fds, O_CLOEXEC). */
int ph_pipe_cloexec(int fds[_Nonnull 2]);

/* accept4(fd, NULL, NULL, SOCK_CLOEXEC). */
int ph_accept(int fd);

/* epoll_create1(EPOLL_CLOEXEC): a descriptor that poll() reports readable while any descriptor
 * added to it is readable (level-triggered). */
int ph_epoll_create(void);
/* epoll_ctl(ADD) of fd for EPOLLIN, or epoll_ctl(DEL). */
int ph_epoll_add(int epoll_fd, int fd);
int ph_epoll_remove(int epoll_fd, int fd);

/* SO_PEERCRED of a connected unix socket: the peer's uid and pid. */
int ph_peer_credentials(int fd, uid_t *_Nonnull uid, pid_t *_Nonnull pid);

/* The errno value of the calling thread (Swift's `errno` is fine too; this reads it in C). */
int ph_errno(void);

/* The git commit the build was given (-DPLUGINHOST_GIT_COMMIT=<hex>), else "unknown". */
const char *_Nonnull ph_build_commit(void);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
