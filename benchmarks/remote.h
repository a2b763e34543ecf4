/* SPDX-License-Identifier: MIT */
/*
 * remote.h - psyne_bench across two machines, as ZeroMQ's local_thr /
 * remote_thr and Aeron's ping / pong run: `--listen ADDR:PORT` on one
 * machine waits for `--connect ADDR:PORT` from the other, which says what to
 * run (tcp-tput, tcp-pingpong; sizes, messages and runs) over the one
 * psyne tcp:// channel they share.
 *
 *   tcp-tput      the connecting side sends, the listening side receives,
 *                 times each run from its first message to its last (its own
 *                 clock only) and reports every run back
 *   tcp-pingpong  the connecting side pings and times the round trips, the
 *                 listening side answers; the connector sends its figures
 *                 over at the end
 * Both sides print the RESULT lines (the listening side's are the ones a
 * receiver-side measurement gives), with two_host=1 and the other side's
 * address. A warm-up run comes first and is not reported.
 */
#ifndef PSY_BENCH_REMOTE_H
#define PSY_BENCH_REMOTE_H

#include <stddef.h>
#include <stdint.h>

struct remote_plan {
    const char *workloads; /* comma list of tcp-tput, tcp-pingpong; NULL: both */
    const size_t *sizes;   /* n_sizes of them; 0: 64 */
    int n_sizes;
    uint64_t iterations; /* messages (round trips) per run; 0: by size */
    int runs;
};

/* Serves one connecting psyne_bench on addr ("host:port"): runs what it
 * asks, prints the results, returns 0 when it says goodbye (or 1). */
int bench_remote_listen(const char *addr);
/* Connects to a listening psyne_bench at addr and runs plan there. */
int bench_remote_connect(const char *addr, const struct remote_plan *plan);

#endif
