/*
 * An LD_PRELOAD shim for benches/slow_sync.sh: every fsync, fdatasync and
 * sync_file_range first sleeps SLOW_SYNC_US microseconds (default 1000),
 * then does the real call. It stands in for a disk whose sync takes that
 * long, so that the issuance benchmark can show how the store's group
 * commit behaves where syncing, not CPU, is the limit.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void slow_down(void) {
    static long us = -1;
    if (us < 0) {
        const char *set = getenv("SLOW_SYNC_US");
        us = set ? atol(set) : 1000;
    }
    struct timespec pause = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&pause, &pause) != 0) {
    }
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow_down();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow_down();
    return real(fd);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    static int (*real)(int, off64_t, off64_t, unsigned int);
    if (!real) real = (int (*)(int, off64_t, off64_t, unsigned int))dlsym(RTLD_NEXT, "sync_file_range");
    slow_down();
    return real(fd, offset, nbytes, flags);
}
