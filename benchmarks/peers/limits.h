/* SPDX-License-Identifier: MIT */
/*
 * limits.h - what the machine allows, measured the way psyne's workloads
 * are (every payload byte written and read, sequence numbers checked), for
 * the comparison programs to set psyne against:
 *  - the fixed-slot ring (slot_ring.h) between two threads, or between two
 *    processes in shared memory (the limit of any ipc ring);
 *  - two threads bouncing one cache line (the floor of any hand-off);
 *  - memcpy bandwidth: one thread copying message-sized blocks around
 *    ring-sized buffers, what a library that copies pays once per copy.
 * pin: the producer (pinger) on bench_cpu_producer, the consumer (ponger)
 * on bench_cpu_consumer.
 */
#ifndef PSY_BENCH_LIMITS_H
#define PSY_BENCH_LIMITS_H

#include <stddef.h>
#include <stdint.h>

struct lat_result; /* bench_util.h */

/* Messages per second through the fixed-slot ring moving size-byte
 * messages in slots of stride bytes (0: size rounded up to 64 bytes):
 * `slots` slots (a power of two), or with 0 as many as fit psyne's ring
 * bytes (workload_capacity), a power of two. A stride of size + 8 lays
 * messages out as psyne's records do (8-byte header, then the payload): the
 * limit of that layout. */
double slot_tput_run(size_t size, size_t stride, unsigned slots, uint64_t count, int pin, int as_process);
/* Round trips (percentiles in ns) over two fixed-slot rings of 64-byte
 * slots. */
void slot_pingpong_run(uint64_t trips, int pin, int as_process, struct lat_result *out);
/* Round trips (percentiles in ns) of one cache line bounced between two
 * threads; line_pingpong_p50 is its median. */
void line_pingpong_run(uint64_t trips, int pin, struct lat_result *out);
double line_pingpong_p50(uint64_t trips, int pin);
/* Copies per second of size bytes, one thread, from a ring-sized source to
 * a ring-sized destination (workload_capacity), block after block. */
double memcpy_tput_run(size_t size, uint64_t count, int pin);

#endif
