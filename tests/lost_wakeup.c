/* SPDX-License-Identifier: MIT */
/*
 * lost_wakeup.c - a producer and a consumer that both block, handing a ring
 * that holds one message back and forth, with no spinning or yielding, so
 * nearly every hand-off goes through the futex sleep and wake path. A lost
 * wake-up leaves one side asleep: every wait has a 10 s timeout and the test
 * fails on it (it never relies on the other side to poke it again).
 *
 *   lost_wakeup [HANDOFFS] [ipc|tcp]
 *
 * With "ipc" the producer is a forked process on an ipc:// channel: the
 * sleeper's barrier must then reach the other process (GLOBAL_EXPEDITED).
 * With "tcp" the consumer listens and the producer connects over loopback:
 * every hand-off then also passes an acknowledgement back, and the threads
 * and roles of both ends (the consumer reads the socket itself while it
 * waits, in poll(); the producer writes inline when nothing is in flight,
 * else wakes the sender thread), each of which sleeps and is woken.
 *
 * In memory://, the multi-party modes also run with two producers and two
 * consumers (one of each where the mode has one), so several callers sleep
 * on the same side at once and one wake-up must reach them all (a publisher
 * makes the system call only for sleepers that registered since the last
 * one, wait.c). There a caller's timeout alone proves nothing (the other
 * consumer may have taken every message meanwhile): the test fails when no
 * message moved at all for a whole timeout. MPMC and MPSC run once more with
 * PSYNE_F_LEASES and small messages (8 to a lease): a consumer must close an
 * idle lease before it sleeps, or it may sleep in front of messages whose
 * wake-up came before it registered.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "free_port.h"
#include "psyne.h"

#define MSG 2048 /* two records do not fit a 4096-byte ring */
#define TIMEOUT_NS (10LL * 1000000000LL)

static uint64_t handoffs;
static char uri[64] = "memory://lost-wakeup";
static const char *transport = "memory";
static bool leases;           /* run_many: PSYNE_F_LEASES */
static size_t many_msg = MSG; /* run_many's message size */

static psyne_channel *open_side(int mode, int role)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.mode = mode;
    o.capacity = 4096;
    o.role = role;
    o.spin_ns = 0; /* straight to the futex */
    o.yield_ns = 0;
    o.flags = leases ? PSYNE_F_LEASES : 0;
    if (strcmp(transport, "tcp") == 0 && role == PSYNE_ROLE_CONSUMER)
        o.flags = PSYNE_F_LISTEN; /* opened first: the producer connects to it */
    psyne_channel *ch;
    CHECK_RC(psyne_channel_open(&ch, uri, &o), 0);
    return ch;
}

static void *producer(void *arg)
{
    psyne_channel *ch = arg;
    for (uint64_t i = 0; i < handoffs; i++) {
        struct psyne_claimed c;
        CHECK_RC(psyne_claim(ch, MSG, &c, TIMEOUT_NS), 0);
        memcpy(c.data, &i, sizeof i);
        CHECK_RC(psyne_commit(ch, &c, MSG, PSYNE_TYPE_USER_MIN), 0);
    }
    return NULL;
}

static void run(int mode, int ipc)
{
    if (strcmp(transport, "tcp") == 0) /* a fresh port per mode: the last one may linger */
        snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", test_free_port());
    psyne_channel *rx = open_side(mode, PSYNE_ROLE_CONSUMER);
    psyne_channel *tx = NULL;
    pthread_t t;
    pid_t pid = -1;
    if (ipc) {
        fflush(NULL);
        if ((pid = fork()) == 0) {
            tx = open_side(mode, PSYNE_ROLE_PRODUCER);
            producer(tx);
            psyne_channel_close(tx);
            _exit(0);
        }
    } else {
        tx = open_side(mode, PSYNE_ROLE_PRODUCER);
        pthread_create(&t, NULL, producer, tx);
    }
    for (uint64_t i = 0; i < handoffs; i++) {
        struct psyne_msg m;
        CHECK_RC(psyne_receive(rx, &m, TIMEOUT_NS), 0);
        uint64_t got;
        memcpy(&got, m.data, sizeof got);
        CHECK(got == i);
        CHECK_RC(psyne_release(rx, &m), 0);
    }
    if (ipc) {
        int status;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    } else {
        pthread_join(t, NULL);
    }
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(rx, &st), 0);
    printf("lost_wakeup mode=%d transport=%s handoffs=%llu sleeps=%llu wakeups=%llu\n", mode, transport,
           (unsigned long long)handoffs, (unsigned long long)st.waits, (unsigned long long)st.wakeups);
    CHECK(st.waits > 0); /* the test really exercised sleeping */
    if (tx)
        psyne_channel_close(tx);
    psyne_channel_close(rx);
}

/* ---- several sleepers on each side (memory://) ---- */

struct party {
    psyne_channel *ch;
    int id;
    uint64_t count; /* producer: messages to send */
    uint64_t got;   /* consumer: messages received */
};

static _Atomic uint64_t moved; /* messages received by anyone: progress */

/* A timeout is a failure only if nothing moved during it: then every caller
 * slept through data or space that was there (a lost wake-up). */
static void check_progress(int rc, uint64_t before)
{
    if (rc == -ETIMEDOUT && atomic_load(&moved) == before) {
        fprintf(stderr, "lost_wakeup: nothing moved for %lld s: a wake-up was lost\n", TIMEOUT_NS / 1000000000);
        abort();
    }
}

static void *many_producer(void *arg)
{
    struct party *p = arg;
    for (uint64_t i = 0; i < p->count;) {
        struct psyne_claimed c;
        uint64_t before = atomic_load(&moved);
        int rc = psyne_claim(p->ch, many_msg, &c, TIMEOUT_NS);
        if (rc == -ETIMEDOUT) {
            check_progress(rc, before);
            continue;
        }
        CHECK_RC(rc, 0);
        uint64_t stamp = (uint64_t)p->id << 56 | i;
        memcpy(c.data, &stamp, sizeof stamp);
        CHECK_RC(psyne_commit(p->ch, &c, many_msg, PSYNE_TYPE_USER_MIN), 0);
        i++;
    }
    return NULL;
}

static void *many_consumer(void *arg)
{
    struct party *p = arg;
    uint64_t next[2] = {0, 0}; /* per producer: sequences only grow */
    for (;;) {
        struct psyne_msg m;
        uint64_t before = atomic_load(&moved);
        int rc = psyne_receive(p->ch, &m, TIMEOUT_NS);
        if (rc == -EPIPE)
            return NULL;
        if (rc == -ETIMEDOUT) {
            check_progress(rc, before);
            continue;
        }
        CHECK_RC(rc, 0);
        uint64_t stamp;
        memcpy(&stamp, m.data, sizeof stamp);
        unsigned id = (unsigned)(stamp >> 56);
        CHECK(id < 2 && (stamp & ((1ull << 56) - 1)) >= next[id]);
        next[id] = (stamp & ((1ull << 56) - 1)) + 1;
        CHECK_RC(psyne_release(p->ch, &m), 0);
        p->got++;
        atomic_fetch_add(&moved, 1);
    }
}

static void run_many(int mode, int producers, int consumers)
{
    snprintf(uri, sizeof uri, "memory://lost-wakeup-many");
    struct party pp[2], cp[2];
    pthread_t pt[2], ct[2];
    for (int i = 0; i < consumers; i++) {
        cp[i] = (struct party){.ch = open_side(mode, PSYNE_ROLE_CONSUMER), .id = i};
        pthread_create(&ct[i], NULL, many_consumer, &cp[i]);
    }
    for (int i = 0; i < producers; i++) {
        pp[i] = (struct party){.ch = open_side(mode, PSYNE_ROLE_PRODUCER), .id = i, .count = handoffs / 2};
        pthread_create(&pt[i], NULL, many_producer, &pp[i]);
    }
    for (int i = 0; i < producers; i++) {
        pthread_join(pt[i], NULL);
        psyne_channel_close(pp[i].ch); /* the last producer's close ends the stream */
    }
    uint64_t got = 0;
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(cp[0].ch, &st), 0);
    for (int i = 0; i < consumers; i++) {
        pthread_join(ct[i], NULL);
        got += cp[i].got;
        psyne_channel_close(cp[i].ch);
    }
    printf("lost_wakeup mode=%d producers=%d consumers=%d%s handoffs=%llu sleeps=%llu wakeups=%llu\n", mode, producers,
           consumers, leases ? " leases" : "", (unsigned long long)got, (unsigned long long)st.waits,
           (unsigned long long)st.wakeups);
    CHECK(got == (handoffs / 2) * (uint64_t)producers);
    CHECK(st.waits > 0);
}

int main(int argc, char **argv)
{
    handoffs = test_scale(argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000);
    if (argc > 2)
        transport = argv[2];
    CHECK(strcmp(transport, "memory") == 0 || strcmp(transport, "ipc") == 0 || strcmp(transport, "tcp") == 0);
    int ipc = strcmp(transport, "ipc") == 0;
    if (ipc) /* a name of its own: ctest runs tests side by side */
        snprintf(uri, sizeof uri, "ipc://lost-wakeup-%d", (int)getpid());
    alarm(1200);
    run(PSYNE_MODE_SPSC, ipc);
    run(PSYNE_MODE_MPMC, ipc);
    run(PSYNE_MODE_MPSC, ipc);
    run(PSYNE_MODE_SPMC, ipc);
    if (strcmp(transport, "memory") == 0) {
        run_many(PSYNE_MODE_MPMC, 2, 2);
        run_many(PSYNE_MODE_MPSC, 2, 1);
        run_many(PSYNE_MODE_SPMC, 1, 2);
        leases = true;
        many_msg = 24; /* 32-byte records, 8 to a lease of a 4096-byte ring */
        run_many(PSYNE_MODE_MPMC, 2, 2);
        run_many(PSYNE_MODE_MPSC, 2, 1);
    }
    return 0;
}
