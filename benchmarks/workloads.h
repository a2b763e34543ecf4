/* SPDX-License-Identifier: MIT */
/*
 * workloads.h - psyne's side of the WORKLOADS.md in-process workloads, shared
 * by psyne_bench and the peer comparison (peers/compare_inproc.c) so both run
 * exactly the same code.
 */
#ifndef PSY_BENCH_WORKLOADS_H
#define PSY_BENCH_WORKLOADS_H

#include <stddef.h>
#include <stdint.h>

#include "bench_util.h"

struct tput_result {
    double mps;       /* messages per second */
    double gbps;      /* payload GB/s (1e9 bytes) */
    uint64_t sleeps;  /* inproc-mpmc-tput: futex sleeps of the run (psyne_stats.waits) */
    uint64_t wakeups; /* and wake-up system calls (psyne_stats.wakeups) */
};

/* Ring bytes used for a message size: the same byte budget is given to the
 * fixed-slot reference ring. */
uint64_t workload_capacity(size_t size);

/* Where the two sides of a workload run. */
enum bench_transport {
    BENCH_MEMORY, /* inproc-*: two threads, memory:// channels */
    BENCH_IPC,    /* ipc-*: two processes (the peer is forked), ipc:// channels */
};

/* inproc-spsc-tput / ipc-spsc-tput: one producer -> one consumer.
 * batch: the producer claims and commits up to 32 messages per call and the
 * consumer takes up to 32 per call, each side with one position update. pin: producer on CPU 0, consumer on CPU 1. */
void psyne_spsc_tput(enum bench_transport transport, size_t size, uint64_t count, int batch, int pin,
                     struct tput_result *out);

/* The calls a producer and consumer use. */
enum bench_api {
    BENCH_SINGLE, /* claim/commit, receive/release */
    BENCH_BATCH,  /* claim_batch/commit_batch, receive_batch/release_batch (32) */
    BENCH_TYPED,  /* a float vector of the same bytes: claim_tensor/commit_tensor, tensor_view */
    BENCH_ARRAY,  /* 32 payloads side by side in one message: claim/commit, receive/release per 32 */
};
void psyne_spsc_tput_as(enum bench_transport transport, size_t size, uint64_t count, enum bench_api api, int pin,
                        struct tput_result *out);

/* inproc-pingpong / ipc-pingpong: round trips over two SPSC channels, busy-polling. */
/* wait: as bench_pingpong_wait says. */
void psyne_pingpong(enum bench_transport transport, size_t size, uint64_t round_trips, int pin, int wait,
                    struct lat_result *out);

/* inproc-mpmc-tput: producers -> consumers on one MPMC channel (count in all). */
void psyne_mpmc_tput(size_t size, uint64_t count, int producers, int consumers, struct tput_result *out);
/* The same on a channel of any mode (PSYNE_MODE_*); producers and consumers
 * must fit it (one producer in SPSC, SPMC and BROADCAST, one consumer in
 * SPSC and MPSC). In BROADCAST every consumer receives and checks every
 * message; mps counts messages published. */
void psyne_many_tput(size_t size, uint64_t count, int mode, int producers, int consumers, struct tput_result *out);

#endif
