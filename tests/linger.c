/* SPDX-License-Identifier: MIT */
/*
 * linger.c - nothing lost at close, nothing left behind by accident.
 *
 *   linger producer-first  a producer process commits and exits before any
 *                          consumer exists; a consumer process started after
 *                          it receives every message, then -EPIPE; the
 *                          segment is gone after the consumer's close
 *   linger revive          a second producer opens the kept segment and goes
 *                          on after the unread messages
 *   linger timeout         linger_ns runs out: the next open starts afresh
 *   linger none            PSYNE_NO_LINGER, a consumer's last close, and
 *                          memory://: the count is returned, nothing kept
 *   linger cleanup         psyne_ipc_cleanup removes a SIGKILLed process's
 *                          segment, never a live one's or a kept one
 *   linger cleanup-race    sweeps in a loop never take a segment file of a
 *                          dynamic ring that is being made
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "psyne.h"

static char name[64];
static char uri[96];

static bool segment_exists(void)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "/dev/shm/psyne.%s", name);
    return stat(path, &st) == 0;
}

static psyne_channel *open_role(int role, int64_t linger_ns)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.role = role;
    o.capacity = 1 << 16;
    o.linger_ns = linger_ns;
    psyne_channel *ch;
    CHECK_RC(psyne_channel_open(&ch, uri, &o), 0);
    return ch;
}

static void send_range(psyne_channel *tx, uint64_t from, uint64_t to)
{
    for (uint64_t i = from; i < to; i++) {
        struct psyne_claimed c;
        CHECK_RC(psyne_claim(tx, 100, &c, PSYNE_NONBLOCK), 0);
        memcpy(c.data, &i, sizeof i);
        CHECK_RC(psyne_commit(tx, &c, 100, PSYNE_TYPE_USER_MIN), 0);
    }
}

/* In a process of its own: opens, sends [from, to), closes, and checks
 * what close said. */
static void producer_process(uint64_t from, uint64_t to, int64_t linger_ns, int close_says)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        psyne_channel *tx = open_role(PSYNE_ROLE_PRODUCER, linger_ns);
        send_range(tx, from, to);
        CHECK_RC(psyne_channel_close(tx), close_says);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Receives [from, to) in order, then expects `end` (-EPIPE, -EAGAIN; 0:
 * nothing checked). */
static void receive_range(psyne_channel *rx, uint64_t from, uint64_t to, int end)
{
    for (uint64_t i = from; i < to; i++) {
        struct psyne_msg m;
        CHECK_RC(psyne_receive(rx, &m, 5000000000LL), 0);
        uint64_t got;
        memcpy(&got, m.data, sizeof got);
        CHECK(got == i);
        CHECK_RC(psyne_release(rx, &m), 0);
    }
    struct psyne_msg m;
    if (end)
        CHECK_RC(psyne_receive(rx, &m, end == -EPIPE ? 5000000000LL : PSYNE_NONBLOCK), end);
}

static void producer_first(void)
{
    producer_process(0, 10, 0, 10); /* close says: 10 messages nobody read, kept */
    CHECK(segment_exists());
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) { /* the consumer, a process started after the producer left */
        psyne_channel *rx = open_role(PSYNE_ROLE_CONSUMER, 0);
        receive_range(rx, 0, 10, -EPIPE);
        CHECK_RC(psyne_channel_close(rx), 0);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(!segment_exists());
    printf("linger producer-first: 10 messages committed by a process that left, received by a later one\n");
}

static void revive(void)
{
    producer_process(0, 3, 0, 3);
    producer_process(3, 5, 0, 5); /* opens the kept segment and writes after what is there */
    psyne_channel *rx = open_role(PSYNE_ROLE_CONSUMER, 0);
    receive_range(rx, 0, 5, -EPIPE);
    CHECK_RC(psyne_channel_close(rx), 0);
    CHECK(!segment_exists());
    printf("linger revive: a second producer went on after the kept messages\n");
}

static void timeout(void)
{
    producer_process(0, 3, 200000000, 3); /* 200 ms */
    CHECK(segment_exists());
    struct timespec ts = {0, 400000000};
    nanosleep(&ts, NULL);
    psyne_channel *rx = open_role(PSYNE_ROLE_CONSUMER, 0); /* too late: a fresh ring */
    receive_range(rx, 0, 0, -EAGAIN);
    CHECK_RC(psyne_channel_close(rx), 0);
    CHECK(!segment_exists());
    printf("linger timeout: kept 200 ms, then the next open started afresh\n");
}

static void none(void)
{
    producer_process(0, 4, PSYNE_NO_LINGER, 4); /* still counted, but not kept */
    CHECK(!segment_exists());

    /* A consumer that closes last leaves unread messages behind on purpose. */
    psyne_channel *tx = open_role(PSYNE_ROLE_PRODUCER, 0);
    psyne_channel *rx = open_role(PSYNE_ROLE_CONSUMER, 0);
    send_range(tx, 0, 6);
    CHECK_RC(psyne_channel_close(tx), 0); /* not the last handle */
    receive_range(rx, 0, 2, 0);
    CHECK_RC(psyne_channel_close(rx), 4);
    CHECK(!segment_exists());

    /* memory://: the ring goes with its last handle; close counts the loss. */
    struct psyne_options o;
    psyne_options_init(&o);
    o.role = PSYNE_ROLE_PRODUCER;
    CHECK_RC(psyne_channel_open(&tx, "memory://linger-none", &o), 0);
    send_range(tx, 0, 7);
    CHECK_RC(psyne_channel_close(tx), 7);
    printf("linger none: PSYNE_NO_LINGER, a consumer's last close and memory:// count and keep nothing\n");
}

/* A process that opens uri, sends, and is SIGKILLed with the handle open. */
static void killed_producer(void)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        psyne_channel *tx = open_role(PSYNE_ROLE_PRODUCER, 0);
        send_range(tx, 0, 3);
        CHECK(write(fds[1], "x", 1) == 1);
        pause(); /* killed here */
        _exit(1);
    }
    char c;
    CHECK(read(fds[0], &c, 1) == 1);
    kill(pid, SIGKILL);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
    close(fds[0]);
    close(fds[1]);
    CHECK(segment_exists());
}

static void use_name(const char *what)
{
    snprintf(name, sizeof name, "linger-%s-%d", what, (int)getpid());
    snprintf(uri, sizeof uri, "ipc://%s", name);
}

static void cleanup(void)
{
    /* 1. the explicit call (this process has opened no ipc:// channel yet) */
    use_name("dead1");
    killed_producer();
    CHECK(psyne_ipc_cleanup(0) >= 0); /* >= 1, unless another program's first open swept it first */
    CHECK(!segment_exists());

    /* 2. the first ipc:// open of a process, of any name */
    use_name("dead2");
    killed_producer();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        use_name("other");
        psyne_channel_close(open_role(PSYNE_ROLE_CONSUMER, 0));
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    use_name("dead2");
    CHECK(!segment_exists());

    /* 3. never a live segment, nor a kept one unless asked */
    use_name("live");
    psyne_channel *live = open_role(PSYNE_ROLE_CONSUMER, 0);
    use_name("kept");
    producer_process(0, 2, PSYNE_FOREVER, 2);
    CHECK(psyne_ipc_cleanup(0) >= 0);
    CHECK(segment_exists());
    use_name("live");
    CHECK(segment_exists());
    CHECK_RC(psyne_channel_close(live), 0);
    CHECK(!segment_exists());
    use_name("kept");
    CHECK(psyne_ipc_cleanup(PSYNE_CLEAN_LINGERING) >= 1);
    CHECK(!segment_exists());
    CHECK_RC(psyne_ipc_cleanup(4), -EINVAL);
    printf("linger cleanup: SIGKILLed processes' segments removed (explicitly, and by a first open), a live one "
           "and a kept one left\n");
}

/* Sweeps in a loop (another process) while dynamic rings are made and
 * opened: a sweep must never take a segment file whose anchor is still
 * being made (its first segment exists before the anchor is ready). */
static void cleanup_race(void)
{
    fflush(NULL);
    pid_t sweeper = fork();
    if (sweeper == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a failed test */
        for (;;)
            psyne_ipc_cleanup(0);
    }
    struct psyne_dynamic dyn;
    memset(&dyn, 0, sizeof dyn);
    int rounds = (int)test_scale(300);
    for (int i = 0; i < rounds; i++) {
        char what[32];
        snprintf(what, sizeof what, "race%d", i);
        use_name(what);
        struct psyne_options o;
        psyne_options_init(&o);
        o.role = PSYNE_ROLE_PRODUCER;
        o.capacity = 1 << 16;
        o.dynamic = &dyn;
        psyne_channel *tx, *rx;
        CHECK_RC(psyne_channel_open(&tx, uri, &o), 0);
        o.role = PSYNE_ROLE_CONSUMER;
        CHECK_RC(psyne_channel_open(&rx, uri, &o), 0); /* -EPROTO "a segment ... is missing" if one was swept */
        send_range(tx, 0, 1);
        receive_range(rx, 0, 1, 0);
        CHECK_RC(psyne_channel_close(rx), 0);
        CHECK_RC(psyne_channel_close(tx), 0);
        /* the last close removes it, or (if the sweeper held the lock that
         * moment) the sweeper does */
        for (int wait = 0; wait < 1000 && segment_exists(); wait++)
            usleep(1000);
        CHECK(!segment_exists());
    }
    kill(sweeper, SIGKILL);
    int status;
    CHECK(waitpid(sweeper, &status, 0) == sweeper);
    printf("linger cleanup-race: %d dynamic rings made and opened while another process swept\n", rounds);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    snprintf(name, sizeof name, "linger-%s-%d", what, (int)getpid());
    snprintf(uri, sizeof uri, "ipc://%s", name);
    if (strcmp(what, "producer-first") == 0)
        producer_first();
    else if (strcmp(what, "revive") == 0)
        revive();
    else if (strcmp(what, "timeout") == 0)
        timeout();
    else if (strcmp(what, "none") == 0)
        none();
    else if (strcmp(what, "cleanup") == 0)
        cleanup();
    else if (strcmp(what, "cleanup-race") == 0)
        cleanup_race();
    else {
        fprintf(stderr, "usage: linger producer-first|revive|timeout|none|cleanup|cleanup-race\n");
        return 2;
    }
    return 0;
}
