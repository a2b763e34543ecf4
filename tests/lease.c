/* SPDX-License-Identifier: MIT */
/*
 * lease.c - MP claim leases (src/ring/lease.c) seen through the public API:
 * a producer of an MPSC/MPMC memory:// ring claims its messages from a run
 * of bytes it reserved at once, and that run must never hold anything back
 * or reorder anything:
 *
 *   idle      a producer that stops after one message does not hide the
 *             messages other producers commit after it, from non-blocking
 *             and from blocking receives;
 *   full      nor the space a blocked producer waits for: the ring fills up
 *             behind an idle lease and drains through it;
 *   order     the owner's claims outside its lease (a second open claim, a
 *             batch) come after what it claimed from the lease;
 *   shutdown  a shut-down channel hands out what was committed behind an
 *             idle lease before it reports -EPIPE;
 *   shared    threads sharing one producer handle (one of them uses the
 *             lease, the others claim without it) each keep their order;
 *   stats     in_use does not count bytes a lease reserved and did not use;
 *   flags     every opener of an MP ring passes the creator's flag (or NULL
 *             options); SP rings ignore it.
 *
 *   lease [idle|full|order|shutdown|stats]   (no argument: all)
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "psyne.h"

#define T_MSG 1024
#define SECOND (1000LL * 1000000LL)

struct ends {
    psyne_channel *a, *b, *rx;
};

static struct ends open_ends(const char *uri, int mode, uint64_t capacity)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.mode = mode;
    o.capacity = capacity;
    o.flags = PSYNE_F_LEASES;
    struct ends e;
    o.role = PSYNE_ROLE_PRODUCER;
    CHECK_RC(psyne_channel_open(&e.a, uri, &o), 0);
    CHECK_RC(psyne_channel_open(&e.b, uri, &o), 0);
    o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(&e.rx, uri, &o), 0);
    return e;
}

static void close_ends(struct ends *e)
{
    CHECK_RC(psyne_channel_close(e->a), 0);
    CHECK_RC(psyne_channel_close(e->b), 0);
    CHECK(psyne_channel_close(e->rx) >= 0); /* the last: how many messages a test left unread */
}

static void send(psyne_channel *tx, uint32_t value, size_t len, int64_t timeout)
{
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(tx, len, &c, timeout), 0);
    memset(c.data, 0, len);
    memcpy(c.data, &value, sizeof value);
    CHECK_RC(psyne_commit(tx, &c, len, T_MSG), 0);
}

static uint32_t take(psyne_channel *rx, int64_t timeout)
{
    struct psyne_msg m;
    CHECK_RC(psyne_receive(rx, &m, timeout), 0);
    uint32_t v;
    memcpy(&v, m.data, sizeof v);
    CHECK_RC(psyne_release(rx, &m), 0);
    return v;
}

/* Takes n messages; values of producer A are below B_BASE, B's above: each
 * producer's must come in the order sent (*next_a, *next_b: the next value
 * expected of each), whatever the order between the two. */
#define B_BASE 1000000u
static void take_in_order(psyne_channel *rx, unsigned n, int64_t timeout, uint32_t *next_a, uint32_t *next_b)
{
    for (unsigned i = 0; i < n; i++) {
        uint32_t v = take(rx, timeout);
        uint32_t *next = v < B_BASE ? next_a : next_b;
        if (v != *next)
            fprintf(stderr, "lease: got %u, expected %u next from that producer\n", v, *next);
        CHECK(v == *next);
        (*next)++;
    }
}

/* A sends one message and stops; B's messages after it arrive anyway. */
static void idle(int mode, int64_t timeout)
{
    struct ends e = open_ends("memory://lease-idle", mode, 65536);
    uint32_t next_a = 0, next_b = B_BASE;
    for (uint32_t round = 0; round < 50; round++) {
        send(e.a, round, 16, PSYNE_NONBLOCK);
        for (uint32_t i = 0; i < 5; i++)
            send(e.b, B_BASE + round * 5 + i, 16, PSYNE_NONBLOCK);
        take_in_order(e.rx, 6, timeout, &next_a, &next_b);
        struct psyne_msg m;
        CHECK_RC(psyne_receive(e.rx, &m, PSYNE_NONBLOCK), -EAGAIN);
    }
    close_ends(&e);
}

struct filler {
    psyne_channel *tx;
    uint32_t count;
};

static void *fill(void *arg)
{
    struct filler *f = arg;
    for (uint32_t i = 0; i < f->count; i++)
        send(f->tx, i, 200, 10 * SECOND);
    return NULL;
}

/* A's idle lease sits in a small ring that B keeps full; the consumer
 * (blocking, or polling) drains it. */
static void full(int mode, bool polling)
{
    struct ends e = open_ends("memory://lease-full", mode, 4096);
    send(e.a, 7, 16, PSYNE_NONBLOCK);
    struct filler f = {e.b, test_scale(20000)};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fill, &f) == 0);
    CHECK(take(e.rx, 10 * SECOND) == 7);
    for (uint32_t i = 0; i < f.count; i++) {
        if (!polling) {
            CHECK(take(e.rx, 10 * SECOND) == i);
            continue;
        }
        struct psyne_msg m;
        int rc;
        while ((rc = psyne_receive(e.rx, &m, PSYNE_NONBLOCK)) == -EAGAIN) {
        }
        CHECK_RC(rc, 0);
        uint32_t v;
        memcpy(&v, m.data, sizeof v);
        CHECK(v == i);
        CHECK_RC(psyne_release(e.rx, &m), 0);
    }
    CHECK(pthread_join(t, NULL) == 0);
    close_ends(&e);
}

/* The owner's claims in the order it made them, whichever path each took. */
static void order(int mode)
{
    struct ends e = open_ends("memory://lease-order", mode, 65536);
    uint32_t next_a = 0, next_b = B_BASE;
    for (uint32_t round = 0; round < 20; round++) {
        uint32_t base = round * 9;
        send(e.a, base + 0, 16, PSYNE_NONBLOCK); /* opens a lease */
        struct psyne_claimed first, second;
        CHECK_RC(psyne_claim(e.a, 16, &first, PSYNE_NONBLOCK), 0);  /* from the lease */
        CHECK_RC(psyne_claim(e.a, 16, &second, PSYNE_NONBLOCK), 0); /* while it is open: outside */
        memcpy(second.data, &(uint32_t){base + 2}, 4);
        CHECK_RC(psyne_commit(e.a, &second, 16, T_MSG), 0);
        memcpy(first.data, &(uint32_t){base + 1}, 4);
        CHECK_RC(psyne_commit(e.a, &first, 16, T_MSG), 0);
        send(e.a, base + 3, 16, PSYNE_NONBLOCK); /* after both */
        struct psyne_claimed batch[3];
        CHECK_RC(psyne_claim_batch(e.a, 16, batch, 3, PSYNE_NONBLOCK), 3);
        for (uint32_t i = 0; i < 3; i++)
            memcpy(batch[i].data, &(uint32_t){base + 4 + i}, 4);
        CHECK_RC(psyne_commit_batch(e.a, batch, 3, (uint32_t[]){16, 16, 16}, T_MSG), 0);
        send(e.a, base + 7, 16, PSYNE_NONBLOCK); /* a new lease after the batch */
        struct psyne_claimed dropped;
        CHECK_RC(psyne_claim(e.a, 16, &dropped, PSYNE_NONBLOCK), 0);
        CHECK_RC(psyne_abort(e.a, &dropped), 0);
        send(e.a, base + 8, 8, PSYNE_NONBLOCK); /* in the aborted claim's place, or after it */
        send(e.b, B_BASE + round, 16, PSYNE_NONBLOCK);
        take_in_order(e.rx, 10, PSYNE_NONBLOCK, &next_a, &next_b);
    }
    close_ends(&e);
}

/* What was committed behind an idle lease outlives a shutdown. */
static void shutdown_behind(int mode)
{
    struct ends e = open_ends("memory://lease-shutdown", mode, 65536);
    send(e.a, 0, 16, PSYNE_NONBLOCK);
    send(e.b, B_BASE, 16, PSYNE_NONBLOCK);
    send(e.b, B_BASE + 1, 16, PSYNE_NONBLOCK);
    CHECK_RC(psyne_channel_shutdown(e.a), 0);
    uint32_t next_a = 0, next_b = B_BASE;
    take_in_order(e.rx, 3, SECOND, &next_a, &next_b);
    struct psyne_msg m;
    CHECK_RC(psyne_receive(e.rx, &m, SECOND), -EPIPE);
    close_ends(&e);
}

struct sharer {
    psyne_channel *tx;
    uint32_t id, count;
};

static void *share(void *arg)
{
    struct sharer *s = arg;
    for (uint32_t i = 0; i < s->count; i++)
        send(s->tx, s->id * B_BASE + i, 8 + i % 200, 10 * SECOND);
    return NULL;
}

/* Three threads on handle a, one on b; each thread's values in order. */
static void shared(int mode)
{
    struct ends e = open_ends("memory://lease-shared", mode, 16384);
    enum { THREADS = 4 };
    struct sharer s[THREADS];
    pthread_t t[THREADS];
    uint32_t count = test_scale(100000), next[THREADS];
    for (uint32_t i = 0; i < THREADS; i++) {
        s[i] = (struct sharer){i == THREADS - 1 ? e.b : e.a, i, count};
        next[i] = i * B_BASE;
        CHECK(pthread_create(&t[i], NULL, share, &s[i]) == 0);
    }
    for (uint32_t n = 0; n < THREADS * count; n++) {
        uint32_t v = take(e.rx, 10 * SECOND), id = v / B_BASE;
        CHECK(id < THREADS);
        if (v != next[id])
            fprintf(stderr, "lease: thread %u sent %u, expected %u next\n", id, v, next[id]);
        CHECK(v == next[id]);
        next[id]++;
    }
    for (uint32_t i = 0; i < THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    close_ends(&e);
}

/* in_use counts what was committed and not released, not what a lease holds. */
static void stats(int mode)
{
    struct ends e = open_ends("memory://lease-stats", mode, 65536);
    struct psyne_stats st;
    send(e.a, 1, 16, PSYNE_NONBLOCK);
    send(e.b, 2, 16, PSYNE_NONBLOCK);
    CHECK_RC(psyne_channel_stats(e.rx, &st), 0);
    CHECK(st.in_use == 2 * PSYNE_RECORD_SIZE(16));
    CHECK(take(e.rx, PSYNE_NONBLOCK) == 1); /* two fresh leases: A's comes first */
    CHECK(take(e.rx, PSYNE_NONBLOCK) == 2);
    CHECK_RC(psyne_channel_stats(e.rx, &st), 0);
    CHECK(st.in_use == 0);
    close_ends(&e);
}

static void flags(void)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.mode = PSYNE_MODE_MPMC;
    o.flags = PSYNE_F_LEASES;
    psyne_channel *a, *b, *c;
    CHECK_RC(psyne_channel_open(&a, "memory://lease-flags", &o), 0);
    o.flags = 0;
    CHECK_RC(psyne_channel_open(&b, "memory://lease-flags", &o), -EINVAL);
    CHECK_RC(psyne_channel_open(&b, "memory://lease-flags", NULL), 0);
    o.mode = PSYNE_MODE_SPSC;
    o.flags = PSYNE_F_LEASES; /* no effect on a single producer */
    CHECK_RC(psyne_channel_open(&c, "memory://lease-flags-sp", &o), 0);
    send(c, 1, 16, PSYNE_NONBLOCK);
    CHECK(take(c, PSYNE_NONBLOCK) == 1);
    CHECK_RC(psyne_channel_close(c), 0);
    /* more producer handles than lease slots: the rest claim without one */
    enum { HANDLES = 40 };
    psyne_channel *many[HANDLES];
    o.mode = PSYNE_MODE_MPMC;
    o.role = PSYNE_ROLE_PRODUCER;
    for (int round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < HANDLES; i++) {
            CHECK_RC(psyne_channel_open(&many[i], "memory://lease-flags", &o), 0);
            send(many[i], i, 16, PSYNE_NONBLOCK);
        }
        uint32_t seen = 0; /* any order across producers: each value once */
        uint64_t mask = 0;
        for (; seen < HANDLES; seen++) {
            uint32_t v = take(b, PSYNE_NONBLOCK);
            CHECK(v < HANDLES && !(mask >> v & 1));
            mask |= 1ull << v;
        }
        for (uint32_t i = 0; i < HANDLES; i++) /* slots come back with the handles */
            CHECK_RC(psyne_channel_close(many[i]), 0);
    }
    CHECK_RC(psyne_channel_close(b), 0);
    CHECK_RC(psyne_channel_close(a), 0);
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    int modes[] = {PSYNE_MODE_MPSC, PSYNE_MODE_MPMC};
    for (int i = 0; i < 2; i++) {
        int mode = modes[i];
        if (!only || !strcmp(only, "idle")) {
            idle(mode, PSYNE_NONBLOCK);
            idle(mode, 10 * SECOND);
        }
        if (!only || !strcmp(only, "full")) {
            full(mode, false);
            full(mode, true);
        }
        if (!only || !strcmp(only, "order"))
            order(mode);
        if (!only || !strcmp(only, "shutdown"))
            shutdown_behind(mode);
        if (!only || !strcmp(only, "shared"))
            shared(mode);
        if (!only || !strcmp(only, "stats"))
            stats(mode);
    }
    if (!only || !strcmp(only, "flags"))
        flags();
    printf("lease: %s ok\n", only ? only : "all");
    return 0;
}
