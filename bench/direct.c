/* Baselines for bench/core.sh, without pluginhost:
 *   direct spawn SCRIPT N        — posix_spawn + waitpid of SCRIPT, N times; prints ms per run
 *   direct freeze MOUNT CMD N    — FIFREEZE, spawn+wait CMD, FITHAW, N times; prints the window
 *                                  and the ioctl time in ms per run ("window ioctls command")
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int run(const char *path) {
    char *argv[] = {(char *)path, NULL};
    pid_t pid;
    if (posix_spawn(&pid, path, NULL, NULL, argv, environ) != 0) return -1;
    int status;
    waitpid(pid, &status, 0);
    return status;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "spawn") == 0) {
        for (int i = 0, n = atoi(argv[3]); i < n; i++) {
            double start = now_ms();
            run(argv[2]);
            printf("%.4f\n", now_ms() - start);
        }
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "freeze") == 0) {
        int fd = open(argv[2], O_RDONLY | O_DIRECTORY);
        if (fd < 0) { perror("open"); return 1; }
        for (int i = 0, n = atoi(argv[4]); i < n; i++) {
            syncfs(fd);
            double start = now_ms();
            if (ioctl(fd, FIFREEZE, 0) != 0) { perror("FIFREEZE"); return 1; }
            double frozen = now_ms();
            run(argv[3]);
            double done = now_ms();
            if (ioctl(fd, FITHAW, 0) != 0) { perror("FITHAW"); return 1; }
            double end = now_ms();
            printf("%.4f %.4f %.4f\n", end - start, (frozen - start) + (end - done), done - frozen);
        }
        return 0;
    }
    fprintf(stderr, "usage: direct spawn SCRIPT N | direct freeze MOUNT CMD N\n");
    return 2;
}
