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
 */
#include <errno.h>
#include <pthread.h>
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

static psyne_channel *open_side(int mode, int role)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.mode = mode;
    o.capacity = 4096;
    o.role = role;
    o.spin_ns = 0; /* straight to the futex */
    o.yield_ns = 0;
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
    return 0;
}
