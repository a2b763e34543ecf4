/* SPDX-License-Identifier: MIT */
/*
 * bench_util.h - what every psyne benchmark program shares: clocks, thread
 * pinning, payload writing/checking by the WORKLOADS.md rules, medians and
 * latency percentiles, and the RESULT line format.
 */
#ifndef PSY_BENCH_UTIL_H
#define PSY_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

int64_t bench_now_ns(void);
/* ipc:// channels this run opens ("ipc://name"): their segments are removed
 * if SIGINT, SIGTERM or SIGHUP stops the run (bench_remove_on_signals
 * installs the handler; a dynamic ring's segment files, whose names the
 * handler cannot know, go with the next psyne_ipc_cleanup). */
void bench_segment_made(const char *uri);
void bench_remove_on_signals(void);
/* Pins the calling thread to cpu (modulo the CPUs present); no-op if cpu < 0. */
void bench_pin(int cpu);
/* Lets the calling thread run on every CPU the program was started with
 * again (after bench_pin; threads it creates inherit that). */
void bench_unpin(void);
/* Where two-sided workloads pin their sides (psyne_bench --pin P,C). */
extern int bench_cpu_producer, bench_cpu_consumer;
/* How the ping-pong workloads' psyne channels wait (psyne_bench --pingpong-wait):
 * PSYNE_WAIT_SPIN (default), PSYNE_WAIT_ADAPTIVE, BENCH_WAIT_EPOLL (non-blocking
 * receives, and epoll_wait on the readiness descriptor when they find nothing)
 * or BENCH_WAIT_SLEEP (adaptive with no spin: straight to the futex). */
#define BENCH_WAIT_EPOLL 100
#define BENCH_WAIT_SLEEP 101
extern int bench_pingpong_wait;
/* tcp-tput and tcp-pingpong: how psyne's tcp:// handles wait (psyne_bench
 * --tcp-wait; default PSYNE_WAIT_ADAPTIVE), and the listening end's
 * max_peers (--max-peers; 0: a plain channel link; else the ponger replies
 * with psyne_claim_to to the request's peer). */
extern int bench_tcp_wait;
extern uint32_t bench_tcp_max_peers;
/* Placement options every psyne channel of a run is opened with
 * (psyne_bench --hugepages, --mlock, --numa-node N): PSYNE_F_* and the node. */
extern uint32_t bench_channel_flags, bench_numa_node;
/* --capacity: ring bytes of the in-process and ipc workloads (0: by message size). */
extern uint64_t bench_capacity;
/* --publish: spsc-tput runs compare publishing handles with plain ones. */
extern int bench_publish;
/* psyne_bench --no-copy-check: in-process SPSC runs prove that the consumer
 * reads each message at the very address the producer wrote it (no copy in
 * between): the producer notes the address of message seq, the consumer
 * compares and aborts on a difference. */
extern int bench_copy_check; /* set by bench_copy_check_enable() */
void bench_copy_check_enable(void);
/* Self-test of the check (psyne_bench --inject-copy N): the consumer reads
 * message N from a copy, as a library that copied would hand it over.
 * UINT64_MAX (the default): off. */
extern uint64_t bench_inject_copy_at;
void bench_note_address(uint64_t seq, const void *p);
void bench_check_address(uint64_t seq, const void *p, const char *who);

/* psyne_bench --dynamic: inproc SPSC channels are dynamic rings configured so (NULL: static). */
struct psyne_dynamic;
extern const struct psyne_dynamic *bench_dynamic;
/* --dynamic=fixed: min and max capacity are the initial one (never resizes). */
extern int bench_dynamic_fixed;

/* The sender writes every payload byte: the sequence number at offset 0 and
 * the rest filled. The receiver checks the sequence (abort on mismatch) and
 * reads every byte; the returned sum keeps the compiler from skipping it. */
void bench_write_payload(void *p, size_t size, uint64_t seq);
/* Self-test of the checking (psyne_bench --inject-loss N): from sequence N
 * on, writers stamp every message one number ahead, as if message N had
 * been lost. UINT64_MAX (the default): off. */
extern uint64_t bench_inject_loss_at;
uint64_t bench_read_payload(const void *p, size_t size, uint64_t expect_seq, const char *who);

double bench_median(double *v, int n); /* sorts v */
double bench_min(const double *v, int n);
double bench_max(const double *v, int n);

/* Round-trip percentiles, read from a histogram of the samples (bench_hist.h). */
struct lat_result {
    uint64_t p50, p99, p999, p9999, max; /* ns */
    uint64_t samples;                    /* round trips timed (of several runs: the fewest of one run) */
};
struct bench_hist;

/* The pinger's side of a ping-pong: runs bench_warmup_trips(trips) untimed
 * round trips and then `trips` timed ones of one_trip(ctx, i), i counting
 * from 0 over all of them, records the timed ones in a histogram and
 * summarizes it. The ponger must answer bench_warmup_trips(trips) + trips
 * times. */
uint64_t bench_warmup_trips(uint64_t trips);
void bench_time_round_trips(uint64_t trips, void (*one_trip)(void *ctx, uint64_t i), void *ctx, struct lat_result *out);
/* The histogram of the calling thread's last bench_time_round_trips (valid
 * until its next one; NULL before the first). */
const struct bench_hist *bench_last_round_trips(void);
/* Each percentile's median over n runs (p99 the median of the runs' p99s,
 * and so on): what a RESULT line of several runs reports. */
void bench_lat_median(const struct lat_result *runs, int n, struct lat_result *out);
/* The RTT metrics of a RESULT line, as WORKLOADS.md names them:
 * "rtt_p50_ns=.. rtt_p99_ns=.. rtt_p999_ns=.. oneway_p50_ns=..
 * [rtt_p9999_ns=..] rtt_max_ns=..", p99.99 only when r->samples is at least
 * BENCH_P9999_SAMPLES (with fewer it is among the last ten samples: the
 * maximum, not a percentile). Returns buf. */
#define BENCH_RTT_FIELDS_LEN 192
#define BENCH_P9999_SAMPLES 100000
const char *bench_rtt_fields(const struct lat_result *r, char buf[BENCH_RTT_FIELDS_LEN]);

/* A run of a two-sided workload: start both sides together. */
struct bench_gate {
    _Atomic int ready;
    _Atomic int go;
};
void bench_gate_arrive(struct bench_gate *g, int parties);

/* The other side of a two-sided run: a thread, or a forked child process
 * (ipc workloads; the child opens its own channel handles, which do not
 * cross fork). A run's shared state (gate, timestamps, checksums) goes
 * in bench_shared_alloc memory, which a forked child shares; zeroed. */
struct bench_peer {
    pthread_t thread;
    pid_t pid;
    int as_process;
};
void *bench_shared_alloc(size_t len);
void bench_peer_start(struct bench_peer *p, int as_process, void *(*fn)(void *), void *arg);
/* Joins the thread or waits for the child; aborts if the child failed. */
void bench_peer_join(struct bench_peer *p);

#endif
