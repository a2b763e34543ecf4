/*
 * lost_wakeup.c - a producer and a consumer that both block, handing a ring
 * that holds one message back and forth, with no spinning or yielding, so
 * nearly every hand-off goes through the futex sleep and wake path. A lost
 * wake-up leaves one side asleep: every wait has a 10 s timeout and the test
 * fails on it (it never relies on the other side to poke it again).
 *
 *   lost_wakeup [HANDOFFS]
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "psyne.h"

#define MSG 2048 /* two records do not fit a 4096-byte ring */
#define TIMEOUT_NS (10LL * 1000000000LL)

static uint64_t handoffs;

static psyne_channel *open_side(int mode, int role)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.mode = mode;
    o.capacity = 4096;
    o.role = role;
    o.spin_ns = 0; /* straight to the futex */
    o.yield_ns = 0;
    psyne_channel *ch;
    CHECK_RC(psyne_channel_open(&ch, "memory://lost-wakeup", &o), 0);
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

static void run(int mode)
{
    psyne_channel *rx = open_side(mode, PSYNE_ROLE_CONSUMER);
    psyne_channel *tx = open_side(mode, PSYNE_ROLE_PRODUCER);
    pthread_t t;
    pthread_create(&t, NULL, producer, tx);
    for (uint64_t i = 0; i < handoffs; i++) {
        struct psyne_msg m;
        CHECK_RC(psyne_receive(rx, &m, TIMEOUT_NS), 0);
        uint64_t got;
        memcpy(&got, m.data, sizeof got);
        CHECK(got == i);
        CHECK_RC(psyne_release(rx, &m), 0);
    }
    pthread_join(t, NULL);
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(rx, &st), 0);
    printf("lost_wakeup mode=%d handoffs=%llu sleeps=%llu wakeups=%llu\n", mode, (unsigned long long)handoffs,
           (unsigned long long)st.waits, (unsigned long long)st.wakeups);
    CHECK(st.waits > 0); /* the test really exercised sleeping */
    psyne_channel_close(tx);
    psyne_channel_close(rx);
}

int main(int argc, char **argv)
{
    handoffs = test_scale(argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000);
    run(PSYNE_MODE_SPSC);
    run(PSYNE_MODE_MPMC);
    run(PSYNE_MODE_MPSC);
    run(PSYNE_MODE_SPMC);
    return 0;
}
