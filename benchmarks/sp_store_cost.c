/* SPDX-License-Identifier: MIT */
/*
 * sp_store_cost.c - what each store of the SP claim/commit path costs a
 * stream of 64 B messages. It found why psyne's 64 B single messages ran
 * well behind a fixed-slot ring (figures: docs/benchmarks/history.md): on x86
 * every store queues behind the payload stores whose lines the consumer
 * holds, and the claim-open flag's two stores, the producer's per-message
 * counters and the call's register saves each cost the stream. The library
 * now keeps the flag in bit 0 of the tail, counts from the headers, and
 * inlines the SP path (psyne/inline.h).
 *
 * The producer writes each message through one of several paths, in
 * alternating rounds in one process; the consumer always uses the public
 * calls, checks every sequence number and reads every byte
 * (../shared/WORKLOADS.md). Paths:
 *   call        psyne_claim + psyne_commit (what users get: inline in C)
 *   inline      the library's own psy_sp_claim/psy_sp_commit inlined here
 *   inline-...  copies of that path with stores added back or left out: the
 *               old flag word, per-message counters: experiments, not
 *               correct paths (stats go wrong)
 * Each ratio is the median over rounds of path / call in the same round.
 *
 *   psyne_sp_store_cost [rounds]      (default 7; pins producer 0, consumer 1)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psyne.h"
#include "ring/fastpath.h"
#include "core/channel.h"

#include "bench_util.h"
#include "workloads.h"

#define COUNT 4000000
#define MAX_ROUNDS 64

enum { KEEP_FLAG = 1, KEEP_COUNTS = 2, FLAG_IN_TAIL = 4, KEEP_MSGS = 8 };

static psyne_channel *tx, *rx;
static int path;      /* 0: call; 1..: index into variants */
static uint64_t sink; /* what the consumer read, kept */
/* the claim-open flag the ring kept in its producer block until the flag
 * moved into bit 0 of the tail: a word of the producer's own */
static alignas(64) psy_atomic32 claim_open_word;

/* Named as in RESULT lines; the producer's switch picks each one's stores. */
static const char *const variants[] = {"call",
                                       "inline",
                                       "inline-no-counters",
                                       "inline-no-flag",
                                       "inline-no-flag-no-counters",
                                       "inline-flag-in-tail-no-counters",
                                       "inline-flag-in-tail",
                                       "inline-flag-in-tail-msgs-only"};
#define N_VARIANTS (int)(sizeof variants / sizeof variants[0])

/* psy_sp_claim with the claim-open flag kept as `keep` says. */
static inline __attribute__((always_inline)) int claim_as(struct psy_ring *r, uint64_t need, struct psyne_claimed *c,
                                                          int keep)
{
    struct psy_ring_shared *sh = r->sh;
    if ((keep & KEEP_FLAG) && atomic_load_explicit(&claim_open_word, memory_order_relaxed))
        return -EBUSY;
    uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&sh->prod.cached_head, memory_order_relaxed);
    if (tail + need + PSY_TERMINATOR - head > r->cap) {
        head = psy_ring_refresh_head(r);
        atomic_store_explicit(&sh->prod.cached_head, head, memory_order_relaxed);
        if (tail + need + PSY_TERMINATOR - head > r->cap)
            return -EAGAIN;
    }
    if (keep & KEEP_FLAG)
        atomic_store_explicit(&claim_open_word, 1, memory_order_relaxed);
    if (keep & FLAG_IN_TAIL)
        atomic_store_explicit(&sh->pub.tail, tail | 1, memory_order_relaxed);
    c->data = r->data + (tail & r->mask) + PSYNE_RECORD_HEADER;
    c->psy_pos = tail;
    return 0;
}

/* psy_sp_commit (psy_sp_publish) with stores kept as `keep` says. */
static inline __attribute__((always_inline)) void commit_as(struct psy_ring *r, struct psyne_claimed *c,
                                                            uint32_t length, int keep)
{
    struct psy_ring_shared *sh = r->sh;
    uint64_t pos = c->psy_pos, end = pos + PSYNE_RECORD_SIZE(length);
    atomic_store_explicit(psy_hdr_at(r, end), 0, memory_order_relaxed);
    atomic_store_explicit(psy_hdr_at(r, pos), psy_hdr_make(length, PSYNE_TYPE_USER_MIN), memory_order_release);
    atomic_store_explicit(&sh->pub.tail, end, memory_order_release);
    if (keep & KEEP_FLAG)
        atomic_store_explicit(&claim_open_word, 0, memory_order_relaxed);
    if (keep & KEEP_COUNTS) {
        psy_count(&sh->prod.msgs, 1);
        psy_count(&sh->prod.bytes, length);
    }
    if (keep & KEEP_MSGS)
        psy_count(&sh->prod.msgs, 1);
    psy_wake_if_waiting(r, PSY_WAIT_DATA);
}

#define VARIANT_LOOP(keep)                                                                                             \
    for (uint64_t i = 0; i < COUNT; i++) {                                                                             \
        while (claim_as(r, PSYNE_RECORD_SIZE(64), &c, (keep)))                                                         \
            psy_cpu_relax();                                                                                           \
        bench_write_payload(c.data, 64, i);                                                                            \
        commit_as(r, &c, 64, (keep));                                                                                  \
    }

static void *producer(void *arg)
{
    (void)arg;
    bench_pin(bench_cpu_producer);
    struct psy_ring *r = psy_channel_ring(tx);
    struct psyne_claimed c;
    switch (path) {
    case 0:
        for (uint64_t i = 0; i < COUNT; i++) {
            if (psyne_claim(tx, 64, &c, PSYNE_FOREVER))
                abort();
            bench_write_payload(c.data, 64, i);
            psyne_commit(tx, &c, 64, PSYNE_TYPE_USER_MIN);
        }
        break;
    case 1:
        for (uint64_t i = 0; i < COUNT; i++) {
            while (psy_sp_claim(r, PSYNE_RECORD_SIZE(64), &c))
                psy_cpu_relax();
            bench_write_payload(c.data, 64, i);
            psy_sp_commit(r, &c, 64, PSYNE_TYPE_USER_MIN);
        }
        break;
    case 2: VARIANT_LOOP(KEEP_FLAG) break;
    case 3: VARIANT_LOOP(KEEP_COUNTS) break;
    case 4: VARIANT_LOOP(0) break;
    case 5: VARIANT_LOOP(FLAG_IN_TAIL) break;
    case 6: VARIANT_LOOP(FLAG_IN_TAIL | KEEP_COUNTS) break;
    default: VARIANT_LOOP(FLAG_IN_TAIL | KEEP_MSGS) break;
    }
    return NULL;
}

static double run(int p)
{
    path = p;
    struct psyne_options o;
    psyne_options_init(&o);
    o.capacity = workload_capacity(64);
    if (psyne_channel_open(&rx, "memory://sp-store-cost", &o) || psyne_channel_open(&tx, "memory://sp-store-cost", &o))
        abort();
    pthread_t t;
    int64_t t0 = bench_now_ns();
    pthread_create(&t, NULL, producer, NULL);
    bench_pin(bench_cpu_consumer);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < COUNT; i++) {
        struct psyne_msg m;
        if (psyne_receive(rx, &m, PSYNE_FOREVER))
            abort();
        sum += bench_read_payload(m.data, m.length, i, variants[p]);
        psyne_release(rx, &m);
    }
    pthread_join(t, NULL);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    psyne_channel_close(tx);
    psyne_channel_close(rx);
    sink += sum;
    return (double)COUNT / secs;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 7;
    if (rounds < 1 || rounds > MAX_ROUNDS)
        return 2;
    static double mps[N_VARIANTS][MAX_ROUNDS];
    for (int k = 0; k < rounds; k++)
        for (int v = 0; v < N_VARIANTS; v++)
            mps[v][k] = run(v);
    for (int v = 0; v < N_VARIANTS; v++) {
        double ratio[MAX_ROUNDS];
        for (int k = 0; k < rounds; k++)
            ratio[k] = mps[v][k] / mps[0][k];
        printf("RESULT system=psyne-%s workload=inproc-spsc-tput size=64 mps=%.0f vs_call=%.3f min=%.3f max=%.3f "
               "rounds=%d\n",
               variants[v], bench_median(mps[v], rounds), bench_median(ratio, rounds), bench_min(ratio, rounds),
               bench_max(ratio, rounds), rounds);
    }
    return 0;
}
