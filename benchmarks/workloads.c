/* SPDX-License-Identifier: MIT */
/*
 * workloads.c - psyne's runs of the workloads of WORKLOADS.md (in-process
 * and, for ipc://, with the peer side in a second process):
 * every payload byte written in place and read in place, every sequence
 * number checked.
 */
#define _GNU_SOURCE
#include "workloads.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "psyne.h"

#define T_BENCH PSYNE_TYPE_USER_MIN

static void must(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "psyne_bench: %s: %s (%s)\n", what, psyne_strerror(rc), psyne_last_error());
        abort();
    }
}

/* Ring bytes in flight beyond which large messages run slower: a producer
 * that writes far ahead of its consumer writes lines that left the cache
 * (docs/benchmarks/history.md, "Large messages and the ring size"). */
#define LARGE_MESSAGE_RING (8u << 20)

uint64_t workload_capacity(size_t size)
{
    if (bench_capacity) /* --capacity */
        return bench_capacity;
    uint64_t record = PSYNE_RECORD_SIZE(size), want = 16 * record, cap = 256 * 1024;
    if (want > LARGE_MESSAGE_RING) /* a few large messages, not 16 */
        want = 4 * record > LARGE_MESSAGE_RING ? 4 * record : LARGE_MESSAGE_RING;
    if (bench_channel_flags & PSYNE_F_HUGEPAGES) /* smaller rings cannot have explicit huge pages */
        cap = 2 * 1024 * 1024;
    while (cap < want)
        cap <<= 1;
    return cap;
}

static psyne_channel *open_channel(const char *uri, int mode, int role, uint64_t capacity, int wait)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.mode = mode;
    o.role = role;
    o.capacity = capacity;
    o.wait = wait == PSYNE_WAIT_SPIN ? PSYNE_WAIT_SPIN : PSYNE_WAIT_ADAPTIVE;
    if (wait == BENCH_WAIT_SLEEP)
        o.spin_ns = o.yield_ns = 0;
    o.flags |= bench_channel_flags;
    o.numa_node = bench_numa_node;
    struct psyne_dynamic fixed;
    if (bench_dynamic && mode == PSYNE_MODE_SPSC && !strncmp(uri, "memory://", 9)) {
        o.dynamic = bench_dynamic;
        if (bench_dynamic_fixed) {
            fixed = *bench_dynamic;
            fixed.min_capacity = fixed.max_capacity = capacity ? capacity : PSYNE_DEFAULT_CAPACITY;
            o.dynamic = &fixed;
        }
    }
    /* More threads than cores: a waiting thread holds a core another thread
     * needs, so spin briefly before yielding (the peers get the same). */
    if (mode == PSYNE_MODE_MPMC)
        o.spin_ns = 2000;
    psyne_channel *ch;
    must(psyne_channel_open(&ch, uri, &o), uri);
    return ch;
}

/* "memory://what" or "ipc://what-<pid>" (ipc names are machine-wide). */
static void channel_uri(char *buf, size_t len, enum bench_transport t, const char *what)
{
    if (t == BENCH_MEMORY)
        snprintf(buf, len, "memory://%s", what);
    else
        snprintf(buf, len, "ipc://%s-%d", what, (int)getpid());
    bench_segment_made(buf);
}

/* ---- inproc-spsc-tput / ipc-spsc-tput ---- */

struct spsc_run {
    char uri[64];
    psyne_channel *tx; /* memory://: opened by the caller; ipc://: by the producer process */
    enum bench_transport transport;
    size_t size;
    uint64_t count, capacity;
    int batch, pin, typed, array;
    int copy_check; /* --no-copy-check, in process only: addresses are per process */
    struct bench_gate gate;
    int64_t start, end;
    uint64_t sink;
};

static void *spsc_producer(void *arg)
{
    struct spsc_run *s = arg;
    psyne_channel *tx = s->tx;
    if (!tx)
        tx = open_channel(s->uri, PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER, 0, PSYNE_WAIT_ADAPTIVE);
    bench_pin(s->pin ? bench_cpu_producer : -1);
    bench_gate_arrive(&s->gate, 2);
    s->start = bench_now_ns();
    if (s->array) { /* up to 32 payloads of size bytes, side by side, per message */
        for (uint64_t i = 0; i < s->count;) {
            unsigned want = s->count - i < 32 ? (unsigned)(s->count - i) : 32;
            struct psyne_claimed c;
            must(psyne_claim(tx, want * s->size, &c, PSYNE_FOREVER), "claim");
            for (unsigned k = 0; k < want; k++, i++) {
                bench_write_payload((uint8_t *)c.data + k * s->size, s->size, i);
                if (s->copy_check)
                    bench_note_address(i, (uint8_t *)c.data + k * s->size);
            }
            must(psyne_commit(tx, &c, want * s->size, T_BENCH), "commit");
        }
    } else if (s->batch) { /* up to 32 messages per claim and per commit */
        struct psyne_claimed c[32];
        uint32_t lengths[32];
        for (uint64_t i = 0; i < s->count;) {
            unsigned want = s->count - i < 32 ? (unsigned)(s->count - i) : 32;
            int n = psyne_claim_batch(tx, s->size, c, want, PSYNE_FOREVER);
            must(n, "claim_batch");
            for (int k = 0; k < n; k++, i++) {
                bench_write_payload(c[k].data, s->size, i);
                if (s->copy_check)
                    bench_note_address(i, c[k].data);
                lengths[k] = (uint32_t)s->size;
            }
            must(psyne_commit_batch(tx, c, (unsigned)n, lengths, T_BENCH), "commit_batch");
        }
    } else if (s->typed) { /* a float vector of the same bytes, built in place */
        for (uint64_t i = 0; i < s->count; i++) {
            struct psyne_tensor t;
            must(psyne_claim_tensor(tx, PSYNE_F32, 1, s->size / sizeof(float), &t, PSYNE_FOREVER), "claim_tensor");
            bench_write_payload(t.data, s->size, i);
            if (s->copy_check)
                bench_note_address(i, t.data);
            must(psyne_commit_tensor(tx, &t), "commit_tensor");
        }
    } else {
        for (uint64_t i = 0; i < s->count; i++) {
            struct psyne_claimed c;
            must(psyne_claim(tx, s->size, &c, PSYNE_FOREVER), "claim");
            bench_write_payload(c.data, s->size, i);
            if (s->copy_check)
                bench_note_address(i, c.data);
            must(psyne_commit(tx, &c, s->size, T_BENCH), "commit");
        }
    }
    if (!s->tx) /* ipc: its own handle; the consumer still drains after the close */
        psyne_channel_close(tx);
    return NULL;
}

static void spsc_consume(struct spsc_run *s, psyne_channel *rx)
{
    uint64_t sum = 0;
    if (s->array) {
        for (uint64_t i = 0; i < s->count;) {
            struct psyne_msg m;
            must(psyne_receive(rx, &m, PSYNE_FOREVER), "receive");
            must(m.length % s->size == 0 && m.length / s->size <= 32, "array message length");
            for (size_t k = 0; k < m.length / s->size; k++, i++) {
                const uint8_t *e = (const uint8_t *)m.data + k * s->size;
                sum += bench_read_payload(e, s->size, i, "psyne-array");
                if (s->copy_check)
                    bench_check_address(i, e, "psyne-array");
            }
            must(psyne_release(rx, &m), "release");
        }
    } else if (s->batch) {
        struct psyne_msg m[32];
        for (uint64_t i = 0; i < s->count;) {
            int n = psyne_receive_batch(rx, m, 32, PSYNE_FOREVER);
            must(n, "receive_batch");
            for (int k = 0; k < n; k++, i++) {
                sum += bench_read_payload(m[k].data, m[k].length, i, "psyne");
                if (s->copy_check)
                    bench_check_address(i, m[k].data, "psyne");
            }
            must(psyne_release_batch(rx, m, (unsigned)n), "release_batch");
        }
    } else if (s->typed) { /* a checked typed view, read in place */
        for (uint64_t i = 0; i < s->count; i++) {
            struct psyne_msg m;
            struct psyne_tensor t;
            must(psyne_receive(rx, &m, PSYNE_FOREVER), "receive");
            must(psyne_tensor_view(&m, PSYNE_F32, 1, &t), "tensor_view");
            sum += bench_read_payload(t.data, t.shape[0] * sizeof(float), i, "psyne-typed");
            if (s->copy_check)
                bench_check_address(i, t.data, "psyne-typed");
            must(psyne_release(rx, &m), "release");
        }
    } else {
        static char copy[64];
        for (uint64_t i = 0; i < s->count; i++) {
            struct psyne_msg m;
            must(psyne_receive(rx, &m, PSYNE_FOREVER), "receive");
            if (__builtin_expect(i == bench_inject_copy_at, 0) && m.length <= sizeof copy)
                m.data = memcpy(copy, m.data, m.length); /* the self-test's copying "library" */
            sum += bench_read_payload(m.data, m.length, i, "psyne");
            if (s->copy_check)
                bench_check_address(i, m.data, "psyne");
            must(psyne_release(rx, &m), "release");
        }
    }
    s->end = bench_now_ns();
    s->sink = sum;
}

void psyne_spsc_tput(enum bench_transport transport, size_t size, uint64_t count, int batch, int pin,
                     struct tput_result *out)
{
    psyne_spsc_tput_as(transport, size, count, batch ? BENCH_BATCH : BENCH_SINGLE, pin, out);
}

void psyne_spsc_tput_as(enum bench_transport transport, size_t size, uint64_t count, enum bench_api api, int pin,
                        struct tput_result *out)
{
    struct spsc_run *s = bench_shared_alloc(sizeof *s);
    *s = (struct spsc_run){.transport = transport,
                           .size = size,
                           .count = count,
                           .batch = api == BENCH_BATCH,
                           .typed = api == BENCH_TYPED,
                           .array = api == BENCH_ARRAY,
                           .pin = pin,
                           .copy_check = bench_copy_check && transport == BENCH_MEMORY};
    channel_uri(s->uri, sizeof s->uri, transport, "bench-spsc");
    uint64_t cap = workload_capacity(size + (s->typed ? 256 : 0)); /* room for the typed header */
    while (s->array && cap < 4 * PSYNE_RECORD_SIZE(32 * size))     /* a few whole arrays in flight */
        cap <<= 1;
    psyne_channel *rx = open_channel(s->uri, PSYNE_MODE_SPSC, PSYNE_ROLE_CONSUMER, cap, PSYNE_WAIT_ADAPTIVE);
    if (transport == BENCH_MEMORY)
        s->tx = open_channel(s->uri, PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER, cap, PSYNE_WAIT_ADAPTIVE);
    struct bench_peer producer;
    bench_peer_start(&producer, transport == BENCH_IPC, spsc_producer, s);
    bench_pin(pin ? bench_cpu_consumer : -1);
    bench_gate_arrive(&s->gate, 2);
    spsc_consume(s, rx);
    bench_peer_join(&producer);
    if (s->tx)
        psyne_channel_close(s->tx);
    psyne_channel_close(rx);
    double secs = (double)(s->end - s->start) / 1e9; /* CLOCK_MONOTONIC: one clock for both processes */
    out->mps = (double)count / secs;
    out->gbps = (double)count * (double)size / secs / 1e9;
    munmap(s, sizeof *s);
}

/* ---- inproc-pingpong / ipc-pingpong ---- */

struct pingpong_run {
    char ping_uri[64], pong_uri[64];
    psyne_channel *ping_rx, *pong_tx; /* memory://: opened by the caller */
    size_t size;
    uint64_t total;
    int pin;
    int wait; /* bench_pingpong_wait's kinds */
    struct bench_gate gate;
};

/* BENCH_WAIT_EPOLL: an epoll set over rx's readiness descriptor; else -1. */
static int pingpong_epoll(psyne_channel *rx, int wait)
{
    if (wait != BENCH_WAIT_EPOLL)
        return -1;
    int ep = epoll_create1(EPOLL_CLOEXEC), fd = psyne_channel_fd(rx, PSYNE_READY_RECV);
    must(fd, "psyne_channel_fd");
    struct epoll_event ev = {.events = EPOLLIN};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        must(-errno, "epoll");
    return ep;
}

/* A blocking receive, or (ep >= 0) an event loop's: non-blocking receives
 * until one succeeds, epoll_wait whenever one finds nothing. */
static int pingpong_receive(psyne_channel *rx, struct psyne_msg *m, int ep)
{
    if (ep < 0)
        return psyne_receive(rx, m, PSYNE_FOREVER);
    int rc;
    while ((rc = psyne_receive(rx, m, PSYNE_NONBLOCK)) == -EAGAIN) {
        struct epoll_event ev;
        epoll_wait(ep, &ev, 1, -1);
    }
    return rc;
}

static void *ponger(void *arg)
{
    struct pingpong_run *p = arg;
    psyne_channel *ping_rx = p->ping_rx, *pong_tx = p->pong_tx;
    if (!ping_rx) {
        ping_rx = open_channel(p->ping_uri, PSYNE_MODE_SPSC, PSYNE_ROLE_CONSUMER, 0, p->wait);
        pong_tx = open_channel(p->pong_uri, PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER, 0, p->wait);
    }
    int ep = pingpong_epoll(ping_rx, p->wait);
    bench_pin(p->pin ? bench_cpu_consumer : -1);
    bench_gate_arrive(&p->gate, 2);
    for (uint64_t i = 0; i < p->total; i++) {
        struct psyne_msg m;
        must(pingpong_receive(ping_rx, &m, ep), "receive ping");
        bench_read_payload(m.data, m.length, i, "psyne pong");
        struct psyne_claimed c;
        must(psyne_claim(pong_tx, p->size, &c, PSYNE_FOREVER), "claim pong");
        bench_write_payload(c.data, p->size, i);
        must(psyne_commit(pong_tx, &c, p->size, T_BENCH), "commit pong");
        must(psyne_release(ping_rx, &m), "release ping");
    }
    if (ep >= 0)
        close(ep);
    if (!p->ping_rx) {
        psyne_channel_close(pong_tx);
        psyne_channel_close(ping_rx);
    }
    return NULL;
}

struct pinger {
    psyne_channel *ping_tx, *pong_rx;
    size_t size;
    int ep; /* pingpong_epoll's */
};

static void psyne_ping(void *ctx, uint64_t i)
{
    struct pinger *g = ctx;
    struct psyne_claimed c;
    must(psyne_claim(g->ping_tx, g->size, &c, PSYNE_FOREVER), "claim ping");
    bench_write_payload(c.data, g->size, i);
    must(psyne_commit(g->ping_tx, &c, g->size, T_BENCH), "commit ping");
    struct psyne_msg m;
    must(pingpong_receive(g->pong_rx, &m, g->ep), "receive pong");
    bench_read_payload(m.data, m.length, i, "psyne ping");
    must(psyne_release(g->pong_rx, &m), "release pong");
}

void psyne_pingpong(enum bench_transport transport, size_t size, uint64_t round_trips, int pin, int wait,
                    struct lat_result *out)
{
    struct pingpong_run *p = bench_shared_alloc(sizeof *p);
    *p = (struct pingpong_run){
        .size = size, .total = bench_warmup_trips(round_trips) + round_trips, .pin = pin, .wait = wait};
    channel_uri(p->ping_uri, sizeof p->ping_uri, transport, "bench-ping");
    channel_uri(p->pong_uri, sizeof p->pong_uri, transport, "bench-pong");
    uint64_t cap = workload_capacity(size);
    psyne_channel *ping_tx = open_channel(p->ping_uri, PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER, cap, wait);
    psyne_channel *pong_rx = open_channel(p->pong_uri, PSYNE_MODE_SPSC, PSYNE_ROLE_CONSUMER, cap, wait);
    if (transport == BENCH_MEMORY) {
        p->ping_rx = open_channel(p->ping_uri, PSYNE_MODE_SPSC, PSYNE_ROLE_CONSUMER, cap, wait);
        p->pong_tx = open_channel(p->pong_uri, PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER, cap, wait);
    }
    struct bench_peer ponger_side;
    bench_peer_start(&ponger_side, transport == BENCH_IPC, ponger, p);
    bench_pin(pin ? bench_cpu_producer : -1);
    bench_gate_arrive(&p->gate, 2);
    struct pinger g = {ping_tx, pong_rx, size, pingpong_epoll(pong_rx, wait)};
    bench_time_round_trips(round_trips, psyne_ping, &g, out);
    bench_peer_join(&ponger_side);
    if (g.ep >= 0)
        close(g.ep);
    psyne_channel_close(ping_tx);
    psyne_channel_close(pong_rx);
    if (p->ping_rx) {
        psyne_channel_close(p->ping_rx);
        psyne_channel_close(p->pong_tx);
    }
    munmap(p, sizeof *p);
}

/* ---- inproc-mpmc-tput, on any ring mode (psyne_bench --mode) ---- */

#define MAX_SIDE 16

struct mpmc_run {
    size_t size;
    uint64_t per_producer;
    int producers, consumers, mode;
    struct bench_gate gate;
    _Atomic uint64_t received;          /* deliveries: in BROADCAST every consumer gets every message */
    _Atomic uint64_t seq_sum[MAX_SIDE]; /* per producer: every sequence once adds up to n(n-1)/2 */
    uint64_t total;                     /* deliveries expected */
    _Atomic int64_t start;              /* the first producer's start (the main thread may come later) */
    _Atomic int64_t end;
};

struct mpmc_thread {
    struct mpmc_run *run;
    psyne_channel *ch;
    int id;
};

static void *mpmc_producer(void *arg)
{
    struct mpmc_thread *t = arg;
    struct mpmc_run *r = t->run;
    bench_pin(t->id); /* producer i and consumer i+1 share CPU i: a fixed placement */
    bench_gate_arrive(&r->gate, r->producers + r->consumers);
    int64_t now = bench_now_ns(), first = atomic_load(&r->start);
    while (now < first && !atomic_compare_exchange_weak(&r->start, &first, now))
        ;
    for (uint64_t i = 0; i < r->per_producer; i++) {
        struct psyne_claimed c;
        must(psyne_claim(t->ch, r->size, &c, PSYNE_FOREVER), "claim");
        bench_write_payload(c.data, r->size, i);
        ((uint8_t *)c.data)[r->size - 1] = (uint8_t)t->id; /* producer id in the last byte */
        must(psyne_commit(t->ch, &c, r->size, T_BENCH), "commit");
    }
    return NULL;
}

static void *mpmc_consumer(void *arg)
{
    struct mpmc_thread *t = arg;
    struct mpmc_run *r = t->run;
    /* A single consumer (SC modes, each BROADCAST subscriber) sees every
     * message of each producer in order; competing consumers see each
     * producer's sequence increasing with gaps. */
    int sees_all = r->consumers == 1 || r->mode == PSYNE_MODE_BROADCAST;
    uint64_t next[MAX_SIDE] = {0}, sum[MAX_SIDE] = {0};
    bench_pin(t->id + 1);
    bench_gate_arrive(&r->gate, r->producers + r->consumers);
    for (;;) {
        struct psyne_msg m[32];
        int n = psyne_receive_batch(t->ch, m, 32, PSYNE_FOREVER);
        if (n == -EPIPE)
            break;
        must(n, "receive");
        for (int k = 0; k < n; k++) {
            const uint8_t *p = m[k].data;
            int id = p[m[k].length - 1];
            uint64_t seq;
            memcpy(&seq, p, 8);
            if (id >= r->producers || seq < next[id] || (sees_all && seq != next[id])) {
                fprintf(stderr,
                        "psyne mpmc: producer %d sequence %llu after %llu: a message was lost, duplicated "
                        "or reordered\n",
                        id, (unsigned long long)seq, (unsigned long long)next[id]);
                abort();
            }
            next[id] = seq + 1;
            sum[id] += seq;
            bench_read_payload(p, m[k].length, seq, "psyne mpmc");
        }
        must(psyne_release_batch(t->ch, m, (unsigned)n), "release");
        if (atomic_fetch_add(&r->received, (uint64_t)n) + (uint64_t)n == r->total)
            atomic_store(&r->end, bench_now_ns());
    }
    for (int id = 0; id < r->producers; id++)
        atomic_fetch_add(&r->seq_sum[id], sum[id]);
    return NULL;
}

void psyne_many_tput(size_t size, uint64_t count, int mode, int producers, int consumers, struct tput_result *out)
{
    if (size < 9 || producers < 1 || consumers < 1 || producers > MAX_SIDE || consumers > MAX_SIDE ||
        (producers > 1 && (mode == PSYNE_MODE_SPSC || mode == PSYNE_MODE_SPMC || mode == PSYNE_MODE_BROADCAST)) ||
        (consumers > 1 && (mode == PSYNE_MODE_SPSC || mode == PSYNE_MODE_MPSC)))
        abort();
    int copies = mode == PSYNE_MODE_BROADCAST ? consumers : 1;
    struct mpmc_run r = {.size = size,
                         .per_producer = count / (uint64_t)producers,
                         .producers = producers,
                         .consumers = consumers,
                         .mode = mode,
                         .start = INT64_MAX};
    r.total = r.per_producer * (uint64_t)producers * (uint64_t)copies;
    uint64_t cap = workload_capacity(size);
    struct mpmc_thread pt[MAX_SIDE], ct[MAX_SIDE];
    pthread_t pth[MAX_SIDE], cth[MAX_SIDE];
    for (int i = 0; i < consumers; i++) { /* subscribers first: a BROADCAST subscriber sees what follows it */
        ct[i] = (struct mpmc_thread){
            &r, open_channel("memory://bench-mpmc", mode, PSYNE_ROLE_CONSUMER, cap, PSYNE_WAIT_ADAPTIVE), i};
        pthread_create(&cth[i], NULL, mpmc_consumer, &ct[i]);
    }
    for (int i = 0; i < producers; i++) {
        pt[i] = (struct mpmc_thread){
            &r, open_channel("memory://bench-mpmc", mode, PSYNE_ROLE_PRODUCER, cap, PSYNE_WAIT_ADAPTIVE), i};
        pthread_create(&pth[i], NULL, mpmc_producer, &pt[i]);
    }
    for (int i = 0; i < producers; i++) {
        pthread_join(pth[i], NULL);
        psyne_channel_close(pt[i].ch); /* the last producer ends the stream */
    }
    struct psyne_stats st = {0};
    for (int i = 0; i < consumers; i++) {
        pthread_join(cth[i], NULL);
        if (i == 0)
            must(psyne_channel_stats(ct[0].ch, &st), "stats"); /* the ring's: every handle's waits */
        psyne_channel_close(ct[i].ch);
    }
    /* competing consumers each see part of a sequence: check the whole */
    uint64_t n = r.per_producer, want = n * (n - 1) / 2 * (uint64_t)copies;
    for (int id = 0; id < producers; id++) {
        if (atomic_load(&r.received) != r.total || atomic_load(&r.seq_sum[id]) != want) {
            fprintf(stderr,
                    "psyne mpmc: producer %d: %llu of %llu messages, sequence sum %llu, expected %llu: a "
                    "message was lost, duplicated or reordered\n",
                    id, (unsigned long long)atomic_load(&r.received), (unsigned long long)r.total,
                    (unsigned long long)atomic_load(&r.seq_sum[id]), (unsigned long long)want);
            abort();
        }
    }
    double secs = (double)(atomic_load(&r.end) - r.start) / 1e9;
    uint64_t sent = r.per_producer * (uint64_t)producers; /* BROADCAST: messages published, not deliveries */
    out->mps = (double)sent / secs;
    out->gbps = (double)sent * (double)size / secs / 1e9;
    out->sleeps = st.waits;
    out->wakeups = st.wakeups;
}

void psyne_mpmc_tput(size_t size, uint64_t count, int producers, int consumers, struct tput_result *out)
{
    psyne_many_tput(size, count, PSYNE_MODE_MPMC, producers, consumers, out);
}
