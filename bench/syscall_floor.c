/* The floor under pyroscope's CPU per sample on this machine: a sampler that makes exactly the
 * system calls pyroscope makes per sample in the steady state, and does nothing else.
 *
 * Attached to PID at RATE Hz until it exits, each tick it: waits in ppoll (a signal fd and a
 * pidfd, as pyroscope's loop does); preads each thread's schedstat, and the stat of a thread
 * whose CPU time grew by less than a quarter of a period; fstat()s /proc/PID/task (new threads)
 * only after a tick where no thread ran (pyroscope's stack reader vouches for the thread list
 * otherwise); when a thread ran, reads PAGES pages of the target's heap in one
 * process_vm_readv, one iovec per page (pyroscope reads the pages its last sample used: 10 on
 * the 10-deep benchmark target). No stack is walked, nothing is aggregated.
 * Prints "Samples: N" at the end, as py-spy does, for scripts/bench.py.
 *
 * Usage: syscall_floor PID [RATE] [PAGES]   (built by scripts/bench.py with cc -O2) */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_PAGES 64

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PID [RATE] [PAGES]\n", argv[0]);
        return 2;
    }
    int pid = atoi(argv[1]);
    int rate = argc > 2 ? atoi(argv[2]) : 100;
    int npages = argc > 3 ? atoi(argv[3]) : 10;
    if (npages > MAX_PAGES) npages = MAX_PAGES;
    char path[512], buf[1024];

    /* The target's heap: the pages read every tick. */
    unsigned long heap = 0;
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "r");
    if (!maps) { perror(path); return 1; }
    char line[512];
    while (fgets(line, sizeof line, maps))
        if (strstr(line, "[heap]")) { heap = strtoul(line, NULL, 16); break; }
    fclose(maps);
    if (!heap) { fprintf(stderr, "no [heap] in %s\n", path); return 1; }
    static char copy[MAX_PAGES * 4096];
    struct iovec local[MAX_PAGES], remote[MAX_PAGES];
    for (int i = 0; i < npages; i++) {
        local[i].iov_base = copy + i * 4096;
        local[i].iov_len = 4096;
        remote[i].iov_base = (void *)(heap + (unsigned long)i * 2 * 4096);
        remote[i].iov_len = 4096;
    }

    /* Threads: their files stay open and are re-read in place, as pyroscope's are. */
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    int taskdir = open(path, O_RDONLY | O_DIRECTORY);
    DIR *dir = fdopendir(dup(taskdir));
    int n = 0, schedstat[MAX_THREADS], stat[MAX_THREADS];
    unsigned long long cpu[MAX_THREADS];
    struct dirent *e;
    while (dir && (e = readdir(dir)) && n < MAX_THREADS) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/%d/task/%s/schedstat", pid, e->d_name);
        schedstat[n] = open(path, O_RDONLY);
        snprintf(path, sizeof path, "/proc/%d/task/%s/stat", pid, e->d_name);
        stat[n] = open(path, O_RDONLY);
        cpu[n] = 0;
        n++;
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    struct pollfd fds[2] = {
        {.fd = signalfd(-1, &mask, SFD_CLOEXEC), .events = POLLIN},
        {.fd = (int)syscall(SYS_pidfd_open, pid, 0), .events = POLLIN},
    };
    long period = 1000000000L / rate;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long samples = 0;
    int ran = 0; /* whether a thread ran at the previous tick */
    for (;;) {
        struct timespec now, timeout = {0, 0};
        clock_gettime(CLOCK_MONOTONIC, &now);
        long wait = (next.tv_sec - now.tv_sec) * 1000000000L + (next.tv_nsec - now.tv_nsec);
        if (wait > 0) { timeout.tv_sec = wait / 1000000000L; timeout.tv_nsec = wait % 1000000000L; }
        ppoll(fds, 2, &timeout, NULL);
        if (fds[0].revents || fds[1].revents) break;
        next.tv_nsec += period;
        while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        if (!ran) {
            struct stat st;
            fstat(taskdir, &st);
        }
        ran = 0;
        for (int i = 0; i < n; i++) {
            ssize_t r = pread(schedstat[i], buf, sizeof buf - 1, 0);
            if (r <= 0) continue;
            buf[r] = 0;
            unsigned long long c = strtoull(buf, NULL, 10);
            if (c > cpu[i]) ran = 1;
            if (c > cpu[i] && c - cpu[i] < (unsigned long long)period / 4) pread(stat[i], buf, sizeof buf, 0);
            cpu[i] = c;
        }
        if (ran && process_vm_readv(pid, local, npages, remote, npages, 0) < 0) break;
        samples++;
    }
    printf("Samples: %ld\n", samples);
    return 0;
}
