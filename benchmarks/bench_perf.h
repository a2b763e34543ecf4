/* SPDX-License-Identifier: MIT */
/*
 * bench_perf.h - counters of a measured run (psyne_bench --perf), read
 * through perf_event_open(2) as `perf stat` does: the process and every
 * thread or child process it starts during the run (inherit), user and
 * kernel time, so the system calls a channel makes are counted too.
 *
 * Hardware counters (instructions, cycles, cache misses) where the CPU or
 * hypervisor exposes them; software counters (CPU time, context switches,
 * page faults) always. Runs are summed: open, run, bench_perf_add, repeat.
 *
 * Thread-safety: one bench_perf per measuring thread.
 */
#ifndef PSY_BENCH_PERF_H
#define PSY_BENCH_PERF_H

#include <stdint.h>

enum bench_perf_counter {
    BENCH_PERF_INSTRUCTIONS,
    BENCH_PERF_CYCLES,
    BENCH_PERF_CACHE_MISSES,
    BENCH_PERF_CPU_NS,       /* task-clock: CPU time of all threads */
    BENCH_PERF_CTX_SWITCHES, /* a sleep and wake-up is two */
    BENCH_PERF_PAGE_FAULTS,
    BENCH_PERF_COUNTERS
};

struct bench_perf {
    int fd[BENCH_PERF_COUNTERS]; /* -1: not open (not supported here) */
    uint64_t sum[BENCH_PERF_COUNTERS];
    int counted[BENCH_PERF_COUNTERS]; /* read at least once */
    uint64_t units;                   /* messages (round trips) the sums are over */
};

void bench_perf_init(struct bench_perf *p);
/* Starts counting the calling process and what it starts from now on. */
void bench_perf_start(struct bench_perf *p);
/* Stops, adds the counts to the sums with the units the run moved. */
void bench_perf_stop(struct bench_perf *p, uint64_t units);
/* Writes " key=value" pairs per unit (instr_per_msg, cpu_ns_per_msg, ...;
 * per_what is "msg" or "rtt") for the counters that counted. Returns the
 * length written. */
int bench_perf_format(const struct bench_perf *p, const char *per_what, char *buf, int len);
/* Whether the machine gives hardware counters; if not, why (for a note). */
int bench_perf_hardware(const char **why);

#endif
