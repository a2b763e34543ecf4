/* SPDX-License-Identifier: MIT */
/*
 * bench_perf.c - see bench_perf.h.
 */
#define _GNU_SOURCE
#include "bench_perf.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static const struct {
    uint32_t type;
    uint64_t config;
    const char *key; /* "<key>_per_<unit>" */
} counters[BENCH_PERF_COUNTERS] = {
    [BENCH_PERF_INSTRUCTIONS] = {PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS, "instr"},
    [BENCH_PERF_CYCLES] = {PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES, "cycles"},
    [BENCH_PERF_CACHE_MISSES] = {PERF_TYPE_HARDWARE, PERF_COUNT_HW_CACHE_MISSES, "cache_misses"},
    [BENCH_PERF_CPU_NS] = {PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK, "cpu_ns"},
    [BENCH_PERF_CTX_SWITCHES] = {PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES, "ctx_switches"},
    [BENCH_PERF_PAGE_FAULTS] = {PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS, "page_faults"},
};

static int open_counter(int which)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = counters[which].type;
    a.config = counters[which].config;
    a.inherit = 1; /* threads and processes the run starts */
    /* With perf_event_paranoid 2 (Debian's default) a process may count
     * itself in user space only: fall back to that rather than nothing. */
    int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0 && (errno == EACCES || errno == EPERM)) {
        a.exclude_kernel = a.exclude_hv = 1;
        fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    }
    return fd;
}

void bench_perf_init(struct bench_perf *p)
{
    memset(p, 0, sizeof *p);
    for (int i = 0; i < BENCH_PERF_COUNTERS; i++)
        p->fd[i] = -1;
}

void bench_perf_start(struct bench_perf *p)
{
    for (int i = 0; i < BENCH_PERF_COUNTERS; i++)
        p->fd[i] = open_counter(i);
}

void bench_perf_stop(struct bench_perf *p, uint64_t units)
{
    for (int i = 0; i < BENCH_PERF_COUNTERS; i++) {
        if (p->fd[i] < 0)
            continue;
        uint64_t v;
        /* counts of threads that ended are folded into the parent's counter */
        if (read(p->fd[i], &v, sizeof v) == sizeof v) {
            p->sum[i] += v;
            p->counted[i] = 1;
        }
        close(p->fd[i]);
        p->fd[i] = -1;
    }
    p->units += units;
}

int bench_perf_format(const struct bench_perf *p, const char *per_what, char *buf, int len)
{
    int n = 0;
    for (int i = 0; i < BENCH_PERF_COUNTERS && n < len; i++) {
        if (!p->counted[i] || !p->units)
            continue;
        double per = (double)p->sum[i] / (double)p->units;
        n += snprintf(buf + n, (size_t)(len - n), per < 10 ? " %s_per_%s=%.4f" : " %s_per_%s=%.1f", counters[i].key,
                      per_what, per);
    }
    return n < len ? n : len - 1;
}

int bench_perf_hardware(const char **why)
{
    int fd = open_counter(BENCH_PERF_INSTRUCTIONS);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    *why = errno == ENOENT || errno == EOPNOTSUPP ? "the CPU (or hypervisor) exposes no hardware counters"
           : errno == EACCES || errno == EPERM    ? "not permitted (kernel.perf_event_paranoid)"
                                                  : strerror(errno);
    return 0;
}
