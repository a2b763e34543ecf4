/* SPDX-License-Identifier: MIT */
/*
 * dynamic.c - dynamic rings (psyne_options.dynamic): options, growth to fit
 * and on full, the limit at the largest size, shutdown draining across
 * segments, and a bursty stress that forces many grow and shrink steps while
 * the consumer checks every message (sequence, length, checksum) and holds
 * several views across segment changes. Dynamic rings are SPSC only: one
 * producer chains segments and one consumer follows them (documented in
 * psyne.h; MP/MC modes and tcp:// are refused with -EINVAL here).
 *
 * Every part runs on memory:// and, named ipc-<part>, on ipc://, where each
 * segment is a shared-memory file: there the stress's producer is a
 * process of its own (fork), "ipc-crash" kills a producer in the middle of
 * a stream, and every part checks that no segment file is left behind.
 *
 * usage: test_dynamic [[ipc-]options|limits|shutdown|rejoin|stress [messages]|ipc-crash]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define T_MSG PSYNE_TYPE_USER_MIN
#define KIB 1024u

static struct psyne_options dyn_options(uint64_t capacity, const struct psyne_dynamic *d)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.capacity = capacity;
    o.dynamic = d;
    return o;
}

static const char *scheme = "memory"; /* or "ipc" */
static int test_pid;                  /* in every name: ctest runs tests side by side (forked children keep it) */

/* The URI of a test's channel on this run's transport. */
static const char *uri(const char *name)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "%s://%s-%d", scheme, name, test_pid);
    return buf;
}

/* Mapped psyne rings of this process: memory:// memfds, ipc:// segment
 * and segment files (each ring maps its file once or twice). */
static int ring_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, "memfd:psyne-ring") != NULL || strstr(line, "/dev/shm/psyne") != NULL;
    fclose(f);
    return n;
}

/* ipc://: files of the channel uri(name) in /dev/shm (the channel's
 * segment and its segment files), printed if report. */
static int shm_files(const char *name, bool report)
{
    if (strcmp(scheme, "ipc") != 0)
        return 0;
    char mine[128], segs[128];
    snprintf(mine, sizeof mine, "psyne.%s-%d", name, test_pid);
    snprintf(segs, sizeof segs, "psyne-seg.%s-%d.", name, test_pid);
    DIR *dir = opendir("/dev/shm");
    CHECK(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));)
        if (!strcmp(e->d_name, mine) || !strncmp(e->d_name, segs, strlen(segs))) {
            if (report)
                fprintf(stderr, "left in /dev/shm: %s\n", e->d_name);
            n++;
        }
    closedir(dir);
    return n;
}

/* What a closed channel must not leave behind. */
static int shm_leftovers(const char *name)
{
    return shm_files(name, true);
}

static void send_one(psyne_channel *ch, size_t len, uint64_t seq)
{
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(ch, len, &c, PSYNE_NONBLOCK), 0);
    memset(c.data, (int)(seq & 0xff), len);
    CHECK_RC(psyne_commit(ch, &c, len, T_MSG), 0);
}

static void test_options(void)
{
    struct psyne_dynamic d = {0};
    psyne_channel *ch;
    struct psyne_options o = dyn_options(64 * KIB, &d);
    o.mode = PSYNE_MODE_MPSC;
    CHECK_RC(psyne_channel_open(&ch, uri("dyn-opt"), &o), -EINVAL);
    CHECK(strstr(psyne_last_error(), "SPSC") != NULL);
    o = dyn_options(64 * KIB, &d);
    CHECK_RC(psyne_channel_open(&ch, "tcp://127.0.0.1:1", &o), -EINVAL);
    d.factor = 3;
    CHECK_RC(psyne_channel_open(&ch, uri("dyn-opt"), &o), -EINVAL);
    d = (struct psyne_dynamic){.grow_at = 0.5, .shrink_at = 0.4}; /* a shrink would call for a grow */
    CHECK_RC(psyne_channel_open(&ch, uri("dyn-opt"), &o), -EINVAL);
    d = (struct psyne_dynamic){.max_capacity = 16 * KIB}; /* below the initial capacity */
    CHECK_RC(psyne_channel_open(&ch, uri("dyn-opt"), &o), -EINVAL);
    d = (struct psyne_dynamic){.max_capacity = UINT64_MAX}; /* refused, not rounded forever */
    CHECK_RC(psyne_channel_open(&ch, uri("dyn-opt"), &o), -EINVAL);
    d = (struct psyne_dynamic){.reserved = 1};
    CHECK_RC(psyne_channel_open(&ch, uri("dyn-opt"), &o), -EINVAL);

    /* Joining: a static open of a dynamic ring's name is refused, and the reverse. */
    d = (struct psyne_dynamic){0};
    CHECK_RC(psyne_channel_open(&ch, uri("dyn-opt"), &o), 0);
    struct psyne_options st;
    psyne_options_init(&st);
    psyne_channel *other;
    CHECK_RC(psyne_channel_open(&other, uri("dyn-opt"), &st), -EINVAL);
    CHECK_RC(psyne_channel_open(&other, uri("dyn-opt"), NULL), 0); /* NULL joins what exists */
    struct psyne_stats s;
    CHECK_RC(psyne_channel_stats(other, &s), 0);
    CHECK(s.capacity == 64 * KIB && s.segments == 1 && s.resizes_up == 0);
    psyne_channel_close(other);
    psyne_channel_close(ch);
    CHECK(shm_leftovers("dyn-opt") == 0);
    /* and the reverse: a dynamic open of a static ring's name */
    CHECK_RC(psyne_channel_open(&ch, uri("dyn-opt"), &st), 0);
    CHECK_RC(psyne_channel_open(&other, uri("dyn-opt"), &o), -EINVAL);
    psyne_channel_close(ch);
    CHECK(shm_leftovers("dyn-opt") == 0);
    printf("options: ok\n");
}

static void test_limits(void)
{
    int maps_before = ring_mappings();
    struct psyne_dynamic d = {.max_capacity = 256 * KIB};
    struct psyne_options o = dyn_options(16 * KIB, &d);
    psyne_channel *ch;
    CHECK_RC(psyne_channel_open(&ch, uri("dyn-limits"), &o), 0);
    struct psyne_claimed c;
    /* Larger than the segment, within the largest: a segment that fits is chained. */
    CHECK_RC(psyne_claim(ch, 100 * KIB, &c, PSYNE_NONBLOCK), 0);
    CHECK(c.capacity == 100 * KIB);
    memset(c.data, 7, 100 * KIB);
    CHECK_RC(psyne_commit(ch, &c, 100 * KIB, T_MSG), 0);
    struct psyne_stats s;
    CHECK_RC(psyne_channel_stats(ch, &s), 0);
    CHECK(s.capacity == 128 * KIB && s.resizes_up == 1 && s.segments == 2);
    /* Beyond the largest size: never fits. */
    CHECK_RC(psyne_claim(ch, 256 * KIB, &c, PSYNE_NONBLOCK), -EMSGSIZE);
    /* Fill up to the largest size: the claim that finds it full there fails. */
    uint64_t seq = 1;
    int rc;
    while ((rc = psyne_claim(ch, 4000, &c, PSYNE_NONBLOCK)) == 0) {
        memset(c.data, (int)(seq++ & 0xff), 4000);
        CHECK_RC(psyne_commit(ch, &c, 4000, T_MSG), 0);
    }
    CHECK_RC(rc, -EAGAIN);
    CHECK_RC(psyne_channel_stats(ch, &s), 0);
    CHECK(s.capacity == 256 * KIB && s.failed_claims == 1 && s.segments >= 3);
    CHECK(s.msgs_out == seq && s.in_use > 256 * KIB);
    /* The consumer walks every segment, and each is unmapped once released. */
    struct psyne_msg m;
    CHECK_RC(psyne_receive(ch, &m, PSYNE_NONBLOCK), 0);
    CHECK(m.length == 100 * KIB && ((unsigned char *)m.data)[100 * KIB - 1] == 7);
    CHECK_RC(psyne_release(ch, &m), 0);
    for (uint64_t i = 1; i < seq; i++) {
        CHECK_RC(psyne_receive(ch, &m, PSYNE_NONBLOCK), 0);
        CHECK(m.length == 4000 && ((unsigned char *)m.data)[3999] == (unsigned char)i);
        CHECK_RC(psyne_release(ch, &m), 0);
    }
    CHECK_RC(psyne_receive(ch, &m, PSYNE_NONBLOCK), -EAGAIN);
    CHECK_RC(psyne_channel_stats(ch, &s), 0);
    CHECK(s.segments == 1 && s.in_use == 0 && s.msgs_in == seq);
    psyne_channel_close(ch);
    CHECK(ring_mappings() == maps_before); /* every segment and the anchor unmapped */
    CHECK(shm_leftovers("dyn-limits") == 0);
    printf("limits: ok\n");
}

static void test_shutdown(void)
{
    struct psyne_dynamic d = {0};
    struct psyne_options o = dyn_options(16 * KIB, &d);
    psyne_channel *ch;
    CHECK_RC(psyne_channel_open(&ch, uri("dyn-shut"), &o), 0);
    for (uint64_t i = 0; i < 200; i++) /* 200 x 1 KiB: several segments */
        send_one(ch, 1000, i);
    struct psyne_stats s;
    CHECK_RC(psyne_channel_stats(ch, &s), 0);
    CHECK(s.segments >= 3);
    CHECK_RC(psyne_channel_shutdown(ch), 0);
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(ch, 8, &c, PSYNE_NONBLOCK), -EPIPE);
    struct psyne_msg m;
    for (uint64_t i = 0; i < 200; i++) { /* drained across every segment */
        CHECK_RC(psyne_receive(ch, &m, PSYNE_FOREVER), 0);
        CHECK(m.length == 1000 && ((unsigned char *)m.data)[0] == (unsigned char)i);
        CHECK_RC(psyne_release(ch, &m), 0);
    }
    CHECK_RC(psyne_receive(ch, &m, PSYNE_FOREVER), -EPIPE);
    psyne_channel_close(ch);
    CHECK(shm_leftovers("dyn-shut") == 0);
    printf("shutdown: ok\n");
}

/* Files of uri(name)'s segments in /dev/shm (ipc://), 0 on memory://. */
static int segment_files(const char *name)
{
    return shm_files(name, false) - (strcmp(scheme, "ipc") == 0); /* less the channel's own segment */
}

/* Handles that come and go: a second consumer takes over in the middle of
 * a ring that grew (it starts in the oldest unfinished segment, where the
 * first one stopped), then a second producer (it writes in the newest). */
static void test_rejoin(void)
{
    struct psyne_dynamic d = {.max_capacity = 1024 * KIB};
    struct psyne_options o = dyn_options(16 * KIB, &d);
    psyne_channel *p1, *p2, *c1, *c2;
    o.role = PSYNE_ROLE_PRODUCER;
    CHECK_RC(psyne_channel_open(&p1, uri("dyn-rejoin"), &o), 0);
    o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(&c1, uri("dyn-rejoin"), &o), 0);
    for (uint64_t i = 0; i < 200; i++) /* 200 x 1 KiB unread: grows from 16 KiB */
        send_one(p1, 1000, i);
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(p1, &st), 0);
    CHECK(st.resizes_up >= 3);
    struct psyne_msg m;
    uint64_t next = 0;
    for (; next < 50; next++) { /* the first segment (16 KiB) is finished, and let go */
        CHECK_RC(psyne_receive(c1, &m, PSYNE_NONBLOCK), 0);
        CHECK(m.length == 1000 && ((unsigned char *)m.data)[999] == (unsigned char)next);
        CHECK_RC(psyne_release(c1, &m), 0);
    }
    o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(&c2, uri("dyn-rejoin"), &o), 0);
    psyne_channel_close(c1);
    o.role = PSYNE_ROLE_PRODUCER;
    CHECK_RC(psyne_channel_open(&p2, uri("dyn-rejoin"), &o), 0);
    psyne_channel_close(p1);
    for (uint64_t i = 200; i < 300; i++)
        send_one(p2, 1000, i);
    for (; next < 300; next++) {
        CHECK_RC(psyne_receive(c2, &m, PSYNE_NONBLOCK), 0);
        CHECK(m.length == 1000 && ((unsigned char *)m.data)[999] == (unsigned char)next);
        CHECK_RC(psyne_release(c2, &m), 0);
    }
    CHECK_RC(psyne_receive(c2, &m, PSYNE_NONBLOCK), -EAGAIN);
    CHECK_RC(psyne_channel_stats(c2, &st), 0);
    CHECK(st.msgs_in == 300 && st.in_use == 0 && st.segments == 1);
    struct psyne_claimed c; /* the producer lets go of what the consumer finished */
    for (int i = 0; i < 64; i++) {
        CHECK_RC(psyne_claim(p2, 8, &c, PSYNE_NONBLOCK), 0);
        CHECK_RC(psyne_abort(p2, &c), 0);
    }
    CHECK(strcmp(scheme, "ipc") != 0 || segment_files("dyn-rejoin") == 1); /* only the newest is named */
    psyne_channel_close(p2);
    psyne_channel_close(c2);
    CHECK(shm_leftovers("dyn-rejoin") == 0);
    printf("rejoin: ok\n");
}

/* ---- the bursty stress ---- */

struct stamp {
    uint64_t seq;
    uint32_t len;
    uint32_t sum;
};

static uint32_t checksum(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

struct stress {
    psyne_channel *tx, *rx;
    uint64_t messages;
};

/* Bursts and lulls: a burst of up to 3000 messages as fast as the ring
 * takes them, then a lull of trickled messages, so the ring grows during
 * bursts and shrinks during lulls. */
static void *producer(void *arg)
{
    struct stress *s = arg;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    uint64_t seq = 0;
    while (seq < s->messages) {
        uint64_t burst = rng_next(&rng) % 3000 + 1, lull = rng_next(&rng) % 40000;
        for (uint64_t i = 0; i < burst + lull && seq < s->messages; i++, seq++) {
            size_t len = sizeof(struct stamp) + (size_t)(rng_next(&rng) % 4096);
            struct psyne_claimed c;
            CHECK_RC(psyne_claim(s->tx, len, &c, PSYNE_FOREVER), 0);
            unsigned char *p = c.data;
            for (size_t k = sizeof(struct stamp); k < len; k++)
                p[k] = (unsigned char)(seq * 31 + k);
            struct stamp st = {seq, (uint32_t)len, checksum(p + sizeof st, len - sizeof st)};
            memcpy(p, &st, sizeof st);
            CHECK_RC(psyne_commit(s->tx, &c, len, T_MSG), 0);
            if (i >= burst && i % 8 == 0) /* the lull: the consumer catches up */
                sched_yield();
        }
    }
    return NULL;
}

static void check_message(const struct psyne_msg *m, uint64_t expect)
{
    struct stamp st;
    CHECK(m->type == T_MSG && m->length >= sizeof st);
    memcpy(&st, m->data, sizeof st);
    if (st.seq != expect || st.len != m->length ||
        st.sum != checksum((const unsigned char *)m->data + sizeof st, m->length - sizeof st)) {
        fprintf(stderr, "message %llu: got seq %llu len %u/%u\n", (unsigned long long)expect,
                (unsigned long long)st.seq, st.len, m->length);
        abort();
    }
}

/* Holds up to 7 views before releasing the newest (which releases them all,
 * across segment changes), and now and then stalls so the ring fills. */
static void *consumer(void *arg)
{
    struct stress *s = arg;
    uint64_t rng = 12345;
    struct psyne_msg held[8];
    unsigned n_held = 0;
    for (uint64_t seq = 0; seq < s->messages; seq++) {
        CHECK_RC(psyne_receive(s->rx, &held[n_held], 5000000000ll), 0);
        check_message(&held[n_held], seq);
        n_held++;
        uint64_t r = rng_next(&rng);
        if (n_held == 8 || r % 4 == 0) {
            CHECK_RC(psyne_release(s->rx, &held[n_held - 1]), 0);
            n_held = 0;
        }
        if (r % 20000 == 0) { /* a stall: the producer's burst fills the ring */
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
    }
    if (n_held)
        CHECK_RC(psyne_release(s->rx, &held[n_held - 1]), 0);
    return NULL;
}

static void test_stress(uint64_t messages)
{
    int maps_before = ring_mappings();
    struct psyne_dynamic d = {.max_capacity = 4 * 1024 * KIB, .window_ops = 2000, .check_interval = 32};
    struct psyne_options o = dyn_options(32 * KIB, &d);
    struct stress s = {.messages = messages};
    bool ipc = !strcmp(scheme, "ipc");
    pid_t child = -1;
    if (ipc) { /* the producer is a process of its own, forked before either opens */
        fflush(NULL);
        CHECK((child = fork()) >= 0);
        if (child == 0) {
            o.role = PSYNE_ROLE_PRODUCER;
            CHECK_RC(psyne_channel_open(&s.tx, uri("dyn-stress"), &o), 0);
            producer(&s);
            psyne_channel_close(s.tx);
            _exit(0);
        }
    } else {
        o.role = PSYNE_ROLE_PRODUCER;
        CHECK_RC(psyne_channel_open(&s.tx, uri("dyn-stress"), &o), 0);
    }
    o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(&s.rx, uri("dyn-stress"), &o), 0);
    pthread_t p, c;
    CHECK(pthread_create(&c, NULL, consumer, &s) == 0);
    if (!ipc)
        CHECK(pthread_create(&p, NULL, producer, &s) == 0);
    pthread_join(c, NULL);
    if (ipc) {
        int status;
        CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    } else {
        pthread_join(p, NULL);
    }
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(s.rx, &st), 0);
    printf("stress: %llu messages, %llu grows, %llu shrinks, %.1f us per resize, capacity now %llu, "
           "%d segment(s), window high-water %llu, failed claims %llu\n",
           (unsigned long long)st.msgs_in, (unsigned long long)st.resizes_up, (unsigned long long)st.resizes_down,
           st.resizes_up + st.resizes_down ? st.resize_ns / 1e3 / (double)(st.resizes_up + st.resizes_down) : 0.0,
           (unsigned long long)st.capacity, st.segments, (unsigned long long)st.window_high_water,
           (unsigned long long)st.failed_claims);
    CHECK(st.msgs_in == messages && st.msgs_out == messages && st.in_use == 0);
    CHECK(st.resizes_up >= 3 && st.resizes_down >= 3); /* the load really moved the size both ways */
    CHECK(st.segments == 1);
    psyne_channel_close(s.tx); /* NULL for ipc: the child closed its own */
    psyne_channel_close(s.rx);
    CHECK(ring_mappings() == maps_before);
    CHECK(shm_leftovers("dyn-stress") == 0);
}

/* ipc://: a producer process killed in the middle of a stream, after it
 * grew the ring: the consumer gets every message it committed, then
 * -EPIPE (it finds the dead producer in the anchor's slots while waiting
 * on a segment), and the last close removes every file. */
static void test_crash(void)
{
    enum { SENT = 20000, LEN = 3000 };
    struct psyne_dynamic d = {.max_capacity = 1024 * KIB};
    struct psyne_options o = dyn_options(16 * KIB, &d);
    o.peer_timeout_ns = 20000000; /* look for the dead every 20 ms */
    fflush(NULL);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        psyne_channel *tx;
        o.role = PSYNE_ROLE_PRODUCER;
        CHECK_RC(psyne_channel_open(&tx, uri("dyn-crash"), &o), 0);
        for (uint64_t i = 0; i < SENT; i++) {
            struct psyne_claimed c;
            CHECK_RC(psyne_claim(tx, LEN, &c, PSYNE_FOREVER), 0);
            memset(c.data, (int)(i & 0xff), LEN);
            memcpy(c.data, &i, sizeof i);
            CHECK_RC(psyne_commit(tx, &c, LEN, T_MSG), 0);
        }
        struct psyne_claimed c; /* dies holding a claim, as a crash would */
        CHECK_RC(psyne_claim(tx, LEN, &c, PSYNE_FOREVER), 0);
        raise(SIGKILL);
    }
    psyne_channel *rx;
    o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(&rx, uri("dyn-crash"), &o), 0);
    struct psyne_msg m;
    uint64_t got = 0;
    int rc;
    while ((rc = psyne_receive(rx, &m, 30 * 1000000000ll)) == 0) {
        uint64_t seq;
        memcpy(&seq, m.data, sizeof seq);
        CHECK(seq == got && m.length == LEN && ((unsigned char *)m.data)[LEN - 1] == (unsigned char)(got & 0xff));
        got++;
        CHECK_RC(psyne_release(rx, &m), 0);
        if (got == 100) { /* let the producer run ahead: the ring grows */
            struct timespec ts = {0, 50000000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK_RC(rc, -EPIPE);
    CHECK(got == SENT);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(rx, &st), 0);
    CHECK(st.peers_lost == 0 || st.peers_lost == 1); /* counted by the anchor, where the slots are */
    CHECK(st.resizes_up >= 1 && st.msgs_in == SENT);
    psyne_channel_close(rx);
    CHECK(shm_leftovers("dyn-crash") == 0);
    printf("crash: %llu messages after the producer died, %llu grows: ok\n", (unsigned long long)got,
           (unsigned long long)st.resizes_up);
}

int main(int argc, char **argv)
{
    const char *part = argc > 1 ? argv[1] : "all";
    test_pid = (int)getpid();
    if (!strncmp(part, "ipc-", 4)) {
        scheme = "ipc";
        part += 4;
    }
    int all = !strcmp(part, "all");
    if (all || !strcmp(part, "options"))
        test_options();
    if (all || !strcmp(part, "limits"))
        test_limits();
    if (all || !strcmp(part, "shutdown"))
        test_shutdown();
    if (all || !strcmp(part, "rejoin"))
        test_rejoin();
    if (all || !strcmp(part, "stress"))
        test_stress(test_scale(argc > 2 ? strtoull(argv[2], NULL, 10) : 2000000));
    if (!strcmp(scheme, "ipc") && (all || !strcmp(part, "crash")))
        test_crash();
    printf("dynamic %s: ok\n", part);
    return 0;
}
