/*
 * dynamic.c - dynamic rings (psyne_options.dynamic): options, growth to fit
 * and on full, the limit at the largest size, shutdown draining across
 * segments, and a bursty stress that forces many grow and shrink steps while
 * the consumer checks every message (sequence, length, checksum) and holds
 * several views across segment changes. Dynamic rings are SPSC only: one
 * producer chains segments and one consumer follows them (documented in
 * psyne.h; MP/MC modes and ipc://, tcp:// are refused with -EINVAL here).
 *
 * usage: test_dynamic [options|limits|shutdown|stress [messages]]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
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

/* Mapped psyne ring memfds of this process (each ring maps its memfd once or twice). */
static int ring_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, "memfd:psyne-ring") != NULL;
    fclose(f);
    return n;
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
    CHECK_RC(psyne_channel_open(&ch, "memory://dyn-opt", &o), -EINVAL);
    CHECK(strstr(psyne_last_error(), "SPSC") != NULL);
    o = dyn_options(64 * KIB, &d);
    CHECK_RC(psyne_channel_open(&ch, "ipc://dyn-opt", &o), -EINVAL);
    d.factor = 3;
    CHECK_RC(psyne_channel_open(&ch, "memory://dyn-opt", &o), -EINVAL);
    d = (struct psyne_dynamic){.grow_at = 0.5, .shrink_at = 0.4}; /* a shrink would call for a grow */
    CHECK_RC(psyne_channel_open(&ch, "memory://dyn-opt", &o), -EINVAL);
    d = (struct psyne_dynamic){.max_capacity = 16 * KIB}; /* below the initial capacity */
    CHECK_RC(psyne_channel_open(&ch, "memory://dyn-opt", &o), -EINVAL);
    d = (struct psyne_dynamic){.max_capacity = UINT64_MAX}; /* refused, not rounded forever */
    CHECK_RC(psyne_channel_open(&ch, "memory://dyn-opt", &o), -EINVAL);
    d = (struct psyne_dynamic){.reserved = 1};
    CHECK_RC(psyne_channel_open(&ch, "memory://dyn-opt", &o), -EINVAL);

    /* Joining: a static open of a dynamic ring's name is refused, and the reverse. */
    d = (struct psyne_dynamic){0};
    CHECK_RC(psyne_channel_open(&ch, "memory://dyn-opt", &o), 0);
    struct psyne_options st;
    psyne_options_init(&st);
    psyne_channel *other;
    CHECK_RC(psyne_channel_open(&other, "memory://dyn-opt", &st), -EINVAL);
    CHECK_RC(psyne_channel_open(&other, "memory://dyn-opt", NULL), 0); /* NULL joins what exists */
    struct psyne_stats s;
    CHECK_RC(psyne_channel_stats(other, &s), 0);
    CHECK(s.capacity == 64 * KIB && s.segments == 1 && s.resizes_up == 0);
    psyne_channel_close(other);
    psyne_channel_close(ch);
    printf("options: ok\n");
}

static void test_limits(void)
{
    int maps_before = ring_mappings();
    struct psyne_dynamic d = {.max_capacity = 256 * KIB};
    struct psyne_options o = dyn_options(16 * KIB, &d);
    psyne_channel *ch;
    CHECK_RC(psyne_channel_open(&ch, "memory://dyn-limits", &o), 0);
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
    printf("limits: ok\n");
}

static void test_shutdown(void)
{
    struct psyne_dynamic d = {0};
    struct psyne_options o = dyn_options(16 * KIB, &d);
    psyne_channel *ch;
    CHECK_RC(psyne_channel_open(&ch, "memory://dyn-shut", &o), 0);
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
    printf("shutdown: ok\n");
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
    o.role = PSYNE_ROLE_PRODUCER;
    struct stress s = {.messages = messages};
    CHECK_RC(psyne_channel_open(&s.tx, "memory://dyn-stress", &o), 0);
    o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(&s.rx, "memory://dyn-stress", &o), 0);
    pthread_t p, c;
    CHECK(pthread_create(&c, NULL, consumer, &s) == 0);
    CHECK(pthread_create(&p, NULL, producer, &s) == 0);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
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
    psyne_channel_close(s.tx);
    psyne_channel_close(s.rx);
    CHECK(ring_mappings() == maps_before);
}

int main(int argc, char **argv)
{
    const char *part = argc > 1 ? argv[1] : "all";
    int all = !strcmp(part, "all");
    if (all || !strcmp(part, "options"))
        test_options();
    if (all || !strcmp(part, "limits"))
        test_limits();
    if (all || !strcmp(part, "shutdown"))
        test_shutdown();
    if (all || !strcmp(part, "stress"))
        test_stress(test_scale(argc > 2 ? strtoull(argv[2], NULL, 10) : 2000000));
    printf("dynamic %s: ok\n", part);
    return 0;
}
