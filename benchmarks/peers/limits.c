/* SPDX-License-Identifier: MIT */
/*
 * limits.c - see limits.h.
 */
#define _GNU_SOURCE
#include "limits.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench_util.h"
#include "slot_ring.h"
#include "workloads.h"

static struct slot_ring *new_ring(uint64_t n_slots, size_t slot_size, int shared)
{
    struct slot_ring *r = shared ? slot_ring_new_shared(n_slots, slot_size) : slot_ring_new(n_slots, slot_size);
    if (!r) {
        perror("limits: slot ring");
        abort();
    }
    return r;
}

/* ---- the fixed-slot ring: throughput ---- */

struct slot_tput { /* shared with a forked producer */
    struct slot_ring *r;
    size_t size;
    uint64_t count;
    int pin;
    struct bench_gate gate;
    int64_t start, end;
};

static void *slot_producer(void *arg)
{
    struct slot_tput *s = arg;
    bench_pin(s->pin ? bench_cpu_producer : -1);
    bench_gate_arrive(&s->gate, 2);
    s->start = bench_now_ns();
    for (uint64_t i = 0; i < s->count; i++) {
        bench_write_payload(slot_ring_claim(s->r), s->size, i);
        slot_ring_publish(s->r);
    }
    return NULL;
}

double slot_tput_run(size_t size, size_t stride, unsigned slots, uint64_t count, int pin, int as_process)
{
    size_t slot = stride ? stride : (size + 63) & ~(size_t)63;
    uint64_t n_slots = slots;
    if (!n_slots) /* a power of two, at most psyne's ring bytes */
        for (n_slots = 1; 2 * n_slots * slot <= workload_capacity(size);)
            n_slots *= 2;
    struct slot_tput *s = bench_shared_alloc(sizeof *s);
    *s = (struct slot_tput){.r = new_ring(n_slots, slot, as_process), .size = size, .count = count, .pin = pin};
    struct bench_peer producer;
    bench_peer_start(&producer, as_process, slot_producer, s);
    bench_pin(pin ? bench_cpu_consumer : -1);
    bench_gate_arrive(&s->gate, 2);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < count; i++) {
        sum += bench_read_payload(slot_ring_peek(s->r), size, i, "slot ring");
        slot_ring_release(s->r);
    }
    s->end = bench_now_ns(); /* CLOCK_MONOTONIC: one clock for both processes */
    bench_peer_join(&producer);
    slot_ring_free(s->r);
    __asm__ volatile("" : : "r"(sum));
    double mps = (double)count / ((double)(s->end - s->start) / 1e9);
    munmap(s, sizeof *s);
    return mps;
}

/* ---- the fixed-slot ring: ping-pong ---- */

struct slot_pp { /* shared with a forked ponger */
    struct slot_ring *ping, *pong;
    uint64_t total;
    int pin;
    struct bench_gate gate;
};

static void *slot_ponger(void *arg)
{
    struct slot_pp *p = arg;
    bench_pin(p->pin ? bench_cpu_consumer : -1);
    bench_gate_arrive(&p->gate, 2);
    for (uint64_t i = 0; i < p->total; i++) {
        bench_read_payload(slot_ring_peek(p->ping), 64, i, "slot pong");
        bench_write_payload(slot_ring_claim(p->pong), 64, i);
        slot_ring_publish(p->pong);
        slot_ring_release(p->ping);
    }
    return NULL;
}

static void slot_ping(void *ctx, uint64_t i)
{
    struct slot_pp *p = ctx;
    bench_write_payload(slot_ring_claim(p->ping), 64, i);
    slot_ring_publish(p->ping);
    bench_read_payload(slot_ring_peek(p->pong), 64, i, "slot ping");
    slot_ring_release(p->pong);
}

void slot_pingpong_run(uint64_t trips, int pin, int as_process, struct lat_result *out)
{
    struct slot_pp *p = bench_shared_alloc(sizeof *p);
    *p = (struct slot_pp){.ping = new_ring(4096, 64, as_process),
                          .pong = new_ring(4096, 64, as_process),
                          .total = bench_warmup_trips(trips) + trips,
                          .pin = pin};
    struct bench_peer ponger;
    bench_peer_start(&ponger, as_process, slot_ponger, p);
    bench_pin(pin ? bench_cpu_producer : -1);
    bench_gate_arrive(&p->gate, 2);
    bench_time_round_trips(trips, slot_ping, p, out);
    bench_peer_join(&ponger);
    slot_ring_free(p->ping);
    slot_ring_free(p->pong);
    munmap(p, sizeof *p);
}

/* ---- two threads bouncing one cache line ---- */

struct line_pp {
    alignas(128) _Atomic uint64_t ball;
    uint64_t total;
    int pin;
    struct bench_gate gate;
};

static void *line_ponger(void *arg)
{
    struct line_pp *l = arg;
    bench_pin(l->pin ? bench_cpu_consumer : -1);
    bench_gate_arrive(&l->gate, 2);
    for (uint64_t i = 0; i < l->total; i++) {
        while (atomic_load_explicit(&l->ball, memory_order_acquire) != 2 * i + 1)
            slot_pause();
        atomic_store_explicit(&l->ball, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

static void line_ping(void *ctx, uint64_t i)
{
    struct line_pp *l = ctx;
    atomic_store_explicit(&l->ball, 2 * i + 1, memory_order_release);
    while (atomic_load_explicit(&l->ball, memory_order_acquire) != 2 * i + 2)
        slot_pause();
}

void line_pingpong_run(uint64_t trips, int pin, struct lat_result *out)
{
    struct line_pp *l = aligned_alloc(128, sizeof *l);
    memset(l, 0, sizeof *l);
    l->total = bench_warmup_trips(trips) + trips;
    l->pin = pin;
    struct bench_peer ponger;
    bench_peer_start(&ponger, 0, line_ponger, l);
    bench_pin(pin ? bench_cpu_producer : -1);
    bench_gate_arrive(&l->gate, 2);
    bench_time_round_trips(trips, line_ping, l, out);
    bench_peer_join(&ponger);
    free(l);
}

double line_pingpong_p50(uint64_t trips, int pin)
{
    struct lat_result lat;
    line_pingpong_run(trips, pin, &lat);
    return (double)lat.p50;
}

/* ---- memcpy bandwidth ---- */

double memcpy_tput_run(size_t size, uint64_t count, int pin)
{
    uint64_t cap = workload_capacity(size), slots = cap / size ? cap / size : 1;
    uint8_t *src = aligned_alloc(4096, cap), *dst = aligned_alloc(4096, cap);
    if (!src || !dst)
        abort();
    memset(src, 1, cap);
    memset(dst, 0, cap);
    bench_pin(pin ? bench_cpu_producer : -1);
    int64_t start = bench_now_ns();
    for (uint64_t i = 0; i < count; i++) {
        size_t at = (size_t)(i % slots) * size;
        memcpy(dst + at, src + at, size);
        __asm__ volatile("" : : "r"(dst) : "memory"); /* the copy must happen */
    }
    int64_t end = bench_now_ns();
    free(src);
    free(dst);
    return (double)count / ((double)(end - start) / 1e9);
}
