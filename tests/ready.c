/* SPDX-License-Identifier: MIT */
/*
 * ready.c - readiness descriptors (psyne_channel_fd) and wait sets.
 *
 *   ready basics memory|ipc|tcp|server   the rule of psyne.h, step by step:
 *       starts readable, -EAGAIN clears it, a commit (a release) makes it
 *       readable again, shutdown too; errors
 *   ready handoff memory|ipc|tcp N [et]  N hand-offs through a ring that holds
 *       one message, both sides waiting only in poll() on their descriptors
 *       (et: the consumer in an edge-triggered epoll); ipc: the producer is
 *       another process. A lost wake-up leaves both asleep: every poll has a
 *       10 s limit and the test fails on it
 *   ready waitset N                       one thread serves memory://, ipc://,
 *       tcp:// (a link and a max_peers listener) and a timer through one
 *       wait set, N messages per channel from other threads and a process
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "free_port.h"
#include "psyne.h"

#define MSG 2048 /* two records do not fit a 4096-byte ring */
#define LIMIT_MS 10000

static char uri[96];

/* Whether fd polls readable within ms. */
static bool readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, ms);
    CHECK(n >= 0);
    CHECK(!(p.revents & (POLLERR | POLLNVAL)));
    return n == 1;
}

static void set_uri(const char *transport, const char *name)
{
    if (strcmp(transport, "tcp") == 0 || strcmp(transport, "server") == 0)
        snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", test_free_port());
    else
        snprintf(uri, sizeof uri, "%s://%s-%d", transport, name, (int)getpid());
}

static psyne_channel *open_end(const char *transport, int role, uint64_t capacity)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.role = role;
    o.capacity = capacity;
    bool tcp = strcmp(transport, "tcp") == 0 || strcmp(transport, "server") == 0;
    if (tcp && role == PSYNE_ROLE_CONSUMER) {
        o.flags = PSYNE_F_LISTEN;
        if (strcmp(transport, "server") == 0)
            o.max_peers = 4;
    }
    psyne_channel *ch;
    CHECK_RC(psyne_channel_open(&ch, uri, &o), 0);
    return ch;
}

static void send_one(psyne_channel *ch, uint64_t stamp, size_t len)
{
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(ch, len, &c, (int64_t)LIMIT_MS * 1000000), 0);
    memcpy(c.data, &stamp, sizeof stamp);
    CHECK_RC(psyne_commit(ch, &c, len, PSYNE_TYPE_USER_MIN), 0);
}

/* ---- basics ---- */

static void basics(const char *transport)
{
    bool server = strcmp(transport, "server") == 0;
    set_uri(transport, "ready-basics");
    psyne_channel *rx = open_end(transport, PSYNE_ROLE_CONSUMER, 4096);
    psyne_channel *tx = open_end(transport, PSYNE_ROLE_PRODUCER, 4096);

    CHECK_RC(psyne_channel_fd(NULL, PSYNE_READY_RECV), -EINVAL);
    CHECK_RC(psyne_channel_fd(rx, 0), -EINVAL);
    CHECK_RC(psyne_channel_fd(rx, PSYNE_READY_RECV | PSYNE_READY_SEND), -EINVAL);
    CHECK_RC(psyne_channel_fd(tx, PSYNE_READY_RECV), -EPERM);
    CHECK_RC(psyne_channel_fd(rx, PSYNE_READY_SEND), server ? -EOPNOTSUPP : -EPERM);

    int rfd = psyne_channel_fd(rx, PSYNE_READY_RECV);
    CHECK(rfd >= 0);
    CHECK_RC(psyne_channel_fd(rx, PSYNE_READY_RECV), rfd); /* the same one */
    CHECK(readable(rfd, 0));                               /* starts readable */
    struct psyne_msg m;
    CHECK_RC(psyne_receive(rx, &m, PSYNE_NONBLOCK), -EAGAIN);
    CHECK(!readable(rfd, 0)); /* -EAGAIN armed it */
    CHECK_RC(psyne_receive(rx, &m, PSYNE_NONBLOCK), -EAGAIN);
    CHECK(!readable(rfd, 0));

    send_one(tx, 1, 100);
    CHECK(readable(rfd, LIMIT_MS)); /* a commit made it readable */
    CHECK_RC(psyne_receive(rx, &m, PSYNE_NONBLOCK), 0);
    CHECK_RC(psyne_release(rx, &m), 0);
    CHECK(readable(rfd, 0)); /* until a call finds nothing */
    CHECK_RC(psyne_receive(rx, &m, PSYNE_NONBLOCK), -EAGAIN);
    CHECK(!readable(rfd, 0));
    /* a timed receive that times out arms it too */
    CHECK_RC(psyne_receive(rx, &m, 1000000), -ETIMEDOUT);
    CHECK(!readable(rfd, 0));
    send_one(tx, 2, 100);
    send_one(tx, 3, 100);
    CHECK(readable(rfd, LIMIT_MS));
    for (uint64_t want = 2; want <= 3; want++) {
        int rc;
        while ((rc = psyne_receive(rx, &m, PSYNE_NONBLOCK)) == -EAGAIN) /* tcp: the second may still travel */
            CHECK(readable(rfd, LIMIT_MS));
        CHECK_RC(rc, 0);
        uint64_t got;
        memcpy(&got, m.data, sizeof got);
        CHECK(got == want);
        CHECK_RC(psyne_release(rx, &m), 0);
    }

    /* Room to claim: fill the ring (tcp: and what the link carries). */
    int sfd = psyne_channel_fd(tx, PSYNE_READY_SEND);
    CHECK(sfd >= 0 && sfd != rfd);
    CHECK(readable(sfd, 0));
    struct psyne_claimed c;
    unsigned sent = 0;
    int rc;
    while ((rc = psyne_claim(tx, MSG, &c, PSYNE_NONBLOCK)) == 0) {
        CHECK_RC(psyne_commit(tx, &c, MSG, PSYNE_TYPE_USER_MIN), 0);
        if (++sent % 4 == 0)
            usleep(1000); /* tcp: let the link move what it can, so tx ends full */
        CHECK(sent < 100000);
    }
    CHECK_RC(rc, -EAGAIN);
    CHECK(!readable(sfd, 0));
    while ((rc = psyne_receive(rx, &m, PSYNE_NONBLOCK)) == -EAGAIN)
        CHECK(readable(rfd, LIMIT_MS));
    CHECK_RC(rc, 0);
    CHECK_RC(psyne_release(rx, &m), 0);
    CHECK(readable(sfd, LIMIT_MS)); /* a release made room */

    /* Shutdown makes it readable; receives drain, then -EPIPE. */
    unsigned drained = 1;
    while ((rc = psyne_receive(rx, &m, PSYNE_NONBLOCK)) == 0 || (rc == -EAGAIN && drained < sent)) {
        if (rc == 0) {
            CHECK_RC(psyne_release(rx, &m), 0);
            drained++;
        } else {
            CHECK(readable(rfd, LIMIT_MS));
        }
    }
    CHECK_RC(rc, -EAGAIN);
    CHECK(drained == sent);
    CHECK(!readable(rfd, 0));
    if (server) { /* the listener ends only when it is shut down itself and its peers are drained */
        psyne_channel_close(tx);
        tx = NULL;
        CHECK_RC(psyne_channel_shutdown(rx), 0);
    } else {
        CHECK_RC(psyne_channel_shutdown(tx), 0);
    }
    CHECK(readable(rfd, LIMIT_MS));
    while ((rc = psyne_receive(rx, &m, PSYNE_NONBLOCK)) == -EAGAIN)
        CHECK(readable(rfd, LIMIT_MS));
    CHECK_RC(rc, -EPIPE);
    psyne_channel_close(tx);
    psyne_channel_close(rx);
    printf("ready basics %s: ok\n", transport);
}

/* ---- hand-offs ---- */

static uint64_t sleeps; /* polls that blocked (found the descriptor not readable) */

static void wait_fd(int fd)
{
    if (readable(fd, 0))
        return;
    sleeps++;
    if (!readable(fd, LIMIT_MS)) {
        fprintf(stderr, "ready: descriptor %d not readable for %d ms: a wake-up was lost\n", fd, LIMIT_MS);
        abort();
    }
}

static void produce_polling(psyne_channel *tx, uint64_t n)
{
    int sfd = psyne_channel_fd(tx, PSYNE_READY_SEND);
    CHECK(sfd >= 0);
    for (uint64_t i = 0; i < n; i++) {
        struct psyne_claimed c;
        int rc;
        while ((rc = psyne_claim(tx, MSG, &c, PSYNE_NONBLOCK)) == -EAGAIN)
            wait_fd(sfd);
        CHECK_RC(rc, 0);
        memcpy(c.data, &i, sizeof i);
        CHECK_RC(psyne_commit(tx, &c, MSG, PSYNE_TYPE_USER_MIN), 0);
    }
}

static void *producer_thread(void *arg)
{
    uint64_t *n = arg;
    psyne_channel *tx = open_end(strstr(uri, "tcp") == uri ? "tcp" : "memory", PSYNE_ROLE_PRODUCER, 4096);
    produce_polling(tx, *n);
    psyne_channel_close(tx);
    return NULL;
}

static void handoff(const char *transport, uint64_t n, bool edge)
{
    set_uri(transport, "ready-handoff");
    psyne_channel *rx = open_end(transport, PSYNE_ROLE_CONSUMER, 4096);
    pthread_t t;
    pid_t pid = -1;
    if (strcmp(transport, "ipc") == 0) {
        fflush(NULL);
        if ((pid = fork()) == 0) {
            psyne_channel *tx = open_end(transport, PSYNE_ROLE_PRODUCER, 4096);
            produce_polling(tx, n);
            psyne_channel_close(tx);
            _exit(0);
        }
    } else {
        pthread_create(&t, NULL, producer_thread, &n);
    }
    int rfd = psyne_channel_fd(rx, PSYNE_READY_RECV);
    CHECK(rfd >= 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | (edge ? EPOLLET : 0)};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, rfd, &ev) == 0);
    uint64_t epoll_sleeps = 0;
    for (uint64_t i = 0; i < n; i++) {
        struct psyne_msg m;
        int rc;
        while ((rc = psyne_receive(rx, &m, PSYNE_NONBLOCK)) == -EAGAIN) {
            /* the documented loop: drained until -EAGAIN, then wait */
            epoll_sleeps++;
            if (epoll_wait(ep, &ev, 1, LIMIT_MS) != 1) {
                fprintf(stderr, "ready: nothing for %d ms at message %llu: a wake-up was lost\n", LIMIT_MS,
                        (unsigned long long)i);
                abort();
            }
        }
        CHECK_RC(rc, 0);
        uint64_t got;
        memcpy(&got, m.data, sizeof got);
        CHECK(got == i);
        CHECK_RC(psyne_release(rx, &m), 0);
    }
    if (pid > 0) {
        int status;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    } else {
        pthread_join(t, NULL);
    }
    close(ep);
    printf("ready handoff %s%s: %llu hand-offs, the consumer waited in epoll %llu times\n", transport,
           edge ? " (edge-triggered)" : "", (unsigned long long)n, (unsigned long long)epoll_sleeps);
    CHECK(epoll_sleeps > 0); /* the descriptors were really waited on */
    psyne_channel_close(rx);
}

/* ---- a wait set over every transport ---- */

enum { CH_MEMORY, CH_IPC, CH_TCP, CH_SERVER, CH_COUNT };
static const char *const ch_names[CH_COUNT] = {"memory", "ipc", "tcp", "server"};
static char ch_uris[CH_COUNT][96];

struct sender {
    int which;
    uint64_t n;
};

static void send_paced(int which, uint64_t n)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.role = PSYNE_ROLE_PRODUCER;
    o.capacity = 1 << 16;
    psyne_channel *tx;
    CHECK_RC(psyne_channel_open(&tx, ch_uris[which], &o), 0);
    for (uint64_t i = 0; i < n; i++) {
        send_one(tx, i, 64 + (i % 7) * 100);
        if (i % 64 == 0)
            usleep(500); /* now and then the consumer finds everything empty */
    }
    psyne_channel_close(tx);
}

static void *sender_thread(void *arg)
{
    const struct sender *s = arg;
    send_paced(s->which, s->n);
    return NULL;
}

static void waitset(uint64_t n)
{
    psyne_channel *rx[CH_COUNT];
    for (int i = 0; i < CH_COUNT; i++) {
        set_uri(ch_names[i], "ready-waitset");
        snprintf(ch_uris[i], sizeof ch_uris[i], "%s", uri);
        rx[i] = open_end(ch_names[i], PSYNE_ROLE_CONSUMER, 1 << 16);
    }
    psyne_waitset *ws;
    CHECK_RC(psyne_waitset_create(&ws), 0);
    for (int i = 0; i < CH_COUNT; i++)
        CHECK_RC(psyne_waitset_add(ws, rx[i], PSYNE_READY_RECV, (void *)(intptr_t)i), 0);
    CHECK_RC(psyne_waitset_add(ws, rx[0], PSYNE_READY_RECV, NULL), -EEXIST);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = {.it_interval = {0, 10000000}, .it_value = {0, 10000000}};
    CHECK(tfd >= 0 && timerfd_settime(tfd, 0, &its, NULL) == 0);
    CHECK_RC(psyne_waitset_add_fd(ws, tfd, (void *)(intptr_t)CH_COUNT), 0);

    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        send_paced(CH_IPC, n);
        _exit(0);
    }
    pthread_t t[CH_COUNT];
    struct sender s[CH_COUNT];
    for (int i = 0; i < CH_COUNT; i++) {
        s[i] = (struct sender){i, n};
        if (i != CH_IPC)
            pthread_create(&t[i], NULL, sender_thread, &s[i]);
    }
    uint64_t next[CH_COUNT] = {0}, ticks = 0, waits = 0;
    uint64_t total = 0;
    while (total < (uint64_t)CH_COUNT * n) {
        struct psyne_ready r[8];
        int k = psyne_waitset_wait(ws, r, 8, (int64_t)LIMIT_MS * 1000000);
        if (k == -ETIMEDOUT) {
            fprintf(stderr, "ready waitset: nothing for %d ms after %llu messages: a wake-up was lost\n", LIMIT_MS,
                    (unsigned long long)total);
            abort();
        }
        CHECK(k > 0);
        waits++;
        for (int j = 0; j < k; j++) {
            int i = (int)(intptr_t)r[j].user;
            if (i == CH_COUNT) {
                CHECK(r[j].ch == NULL && r[j].fd == tfd);
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) == (ssize_t)sizeof expirations)
                    ticks += expirations;
                continue;
            }
            CHECK(r[j].ch == rx[i] && r[j].events == PSYNE_READY_RECV);
            struct psyne_msg m;
            int rc;
            while ((rc = psyne_receive(rx[i], &m, PSYNE_NONBLOCK)) == 0) {
                uint64_t got;
                memcpy(&got, m.data, sizeof got);
                CHECK(got == next[i]);
                CHECK(m.length == 64 + (got % 7) * 100);
                next[i]++;
                total++;
                CHECK_RC(psyne_release(rx[i], &m), 0);
            }
            CHECK(rc == -EAGAIN || (rc == -EPIPE && next[i] == n));
        }
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < CH_COUNT; i++)
        if (i != CH_IPC)
            pthread_join(t[i], NULL);
    CHECK(ticks > 0);
    CHECK_RC(psyne_waitset_remove(ws, rx[0]), 0);
    CHECK_RC(psyne_waitset_remove(ws, rx[0]), -ENOENT);
    CHECK_RC(psyne_waitset_remove_fd(ws, tfd), 0);
    CHECK_RC(psyne_waitset_wait(ws, NULL, 1, 0), -EINVAL);
    psyne_waitset_destroy(ws);
    close(tfd);
    for (int i = 0; i < CH_COUNT; i++)
        psyne_channel_close(rx[i]);
    printf("ready waitset: %llu messages on %d channels, %llu waits, %llu timer ticks\n", (unsigned long long)total,
           CH_COUNT, (unsigned long long)waits, (unsigned long long)ticks);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "basics") == 0) {
        basics(argv[2]);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "handoff") == 0) {
        handoff(argv[2], test_scale(strtoull(argv[3], NULL, 10)), argc >= 5 && strcmp(argv[4], "et") == 0);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "waitset") == 0) {
        waitset(test_scale(strtoull(argv[2], NULL, 10)));
        return 0;
    }
    fprintf(stderr, "usage: ready basics memory|ipc|tcp|server | handoff memory|ipc|tcp N [et] | waitset N\n");
    return 2;
}
