/* SPDX-License-Identifier: MIT */
/*
 * tcp_workloads.h - tcp-tput and tcp-pingpong on psyne's tcp:// channels,
 * and the raw TCP socket pair they are compared with in the same run
 * (tcp_workloads.c).
 */
#ifndef PSY_BENCH_TCP_WORKLOADS_H
#define PSY_BENCH_TCP_WORKLOADS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench_util.h"
#include "psyne.h"

struct tcp_tput_result {
    double mps;           /* messages per second */
    double gbps;          /* payload GB/s */
    double msgs_per_send; /* psyne: messages per sendmsg call (batching) */
};

/* The options of every psyne tcp:// end the benchmarks open: a 4 MiB ring,
 * --tcp-wait, the run's placement flags; PSYNE_F_LISTEN for the listening end. */
void bench_tcp_options(struct psyne_options *o, int listen);

/* A TCP port of 127.0.0.1 that is free now. */
int bench_free_tcp_port(void);

/* One sender thread -> one receiver over 127.0.0.1, count messages of size bytes. */
void psyne_tcp_tput(size_t size, uint64_t count, struct tcp_tput_result *out);
void raw_tcp_tput(size_t size, uint64_t count, struct tcp_tput_result *out);

/* Round trips over 127.0.0.1 (TCP_NODELAY), the ponger a thread of this process.
 * The raw pair blocks in recv(), or with busy_poll spins on recv(MSG_DONTWAIT)
 * and never sleeps (the fastest a raw socket can answer, at a core each). */
void psyne_tcp_pingpong(size_t size, uint64_t trips, struct lat_result *out);
void raw_tcp_pingpong(size_t size, uint64_t trips, bool busy_poll, struct lat_result *out);

/* The same two psyne workloads with the sender (ponger) a process of its
 * own, forked before either end opens its channel: how the peers' tcp runs
 * of psyne_compare_sockets are made, and how users run tcp://. */
void psyne_tcp_tput_procs(size_t size, uint64_t count, struct tcp_tput_result *out);
void psyne_tcp_pingpong_procs(size_t size, uint64_t trips, struct lat_result *out);

#endif
