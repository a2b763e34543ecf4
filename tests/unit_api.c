/* SPDX-License-Identifier: MIT */
/*
 * unit_api.c - every public call of psyne.h, its success path and each error
 * it documents (usage: unit_api [TRANSPORT], default memory).
 *
 * The conformance suite: the tests of the calls a channel's two ends make
 * (claims, commits, batches, receives, releases, timeouts, full and empty
 * rings, shutdown) run over each transport of the table `transports`
 * below; a new transport passes them by adding its line there (and its
 * name to unit_api's list in tests/CMakeLists.txt). The tests of the rest
 * of the API (options, URIs, NULL arguments, roles, statistics) run on the
 * first line, memory://.
 *
 * Over a linked transport (tcp:// on loopback) the producing end is a
 * client connected to the consuming end, a listening handle of this
 * process, each end with rings and threads of its own. What the tests wait
 * for differs only in time: a message committed on one end is on the other
 * once it has crossed the socket, and space comes back once the peer
 * acknowledged it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "free_port.h"
#include "psyne.h"

/* unit_api runs the inline psyne_claim/psyne_commit of psyne/inline.h;
 * unit_api_calls (PSYNE_NO_INLINE) the exported symbols */
#if defined(PSYNE_NO_INLINE) == defined(PSYNE_INLINE_CALLS)
#error "psyne.h: PSYNE_INLINE_CALLS must be set exactly when PSYNE_NO_INLINE is not"
#endif

#define T_MSG PSYNE_TYPE_USER_MIN

/* A transport the two-ended tests run over. */
struct transport {
    const char *name;
    /* the URI of the channel `name` of this run */
    void (*uri)(char *buf, size_t size, const char *name);
    /* the two ends are two handles joined by a connection: what one
     * commits reaches the other later, the consuming end listens */
    bool linked;
};

static void memory_uri(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "memory://%s", name);
}

static void ipc_uri(char *buf, size_t size, const char *name) /* one process, a shared-memory segment */
{
    snprintf(buf, size, "ipc://unit-api-%d-%s", (int)getpid(), name);
}

static void tcp_uri(char *buf, size_t size, const char *name)
{
    (void)name;
    snprintf(buf, size, "tcp://127.0.0.1:%d", test_free_port());
}

static const struct transport transports[] = {
    {"memory", memory_uri, false},
    {"ipc", ipc_uri, false},
    {"tcp", tcp_uri, true},
};

static const struct transport *tr; /* this run's */

/* How long a call may wait for what is already on its way: nothing on
 * memory:// (a commit is visible at once, a release frees space at once);
 * over tcp:// the crossing of the socket and the peer's acknowledgement
 * (generous: a loaded machine stalls). */
static int64_t settle_ns(void)
{
    return tr->linked ? 20 * 1000000000ll : PSYNE_NONBLOCK;
}

static struct psyne_options opts(int mode, uint64_t capacity)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.mode = mode;
    o.capacity = capacity;
    return o;
}

static psyne_channel *open_ch(const char *uri, int mode, uint64_t capacity)
{
    struct psyne_options o = opts(mode, capacity);
    psyne_channel *ch = NULL;
    CHECK_RC(psyne_channel_open(&ch, uri, &o), 0);
    CHECK(ch != NULL);
    return ch;
}

static void send_bytes(psyne_channel *ch, const void *p, size_t n, uint32_t type)
{
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(ch, n, &c, settle_ns()), 0);
    CHECK(c.capacity == n);
    CHECK(((uintptr_t)c.data & 7) == 0);
    memcpy(c.data, p, n);
    CHECK_RC(psyne_commit(ch, &c, n, type), 0);
}

/* The two ends of a channel: tx produces, rx consumes. One handle is both
 * (or, with roles, two handles of the same name); over a linked transport
 * tx is a client connected to rx, which listens on loopback. */
struct ends {
    psyne_channel *tx, *rx;
};

static struct ends open_ends(const char *name, int mode, uint64_t capacity, int with_roles)
{
    struct ends e = {NULL, NULL};
    struct psyne_options o = opts(mode, capacity);
    char uri[96];
    tr->uri(uri, sizeof uri, name);
    if (tr->linked) {
        o.link_timeout_ns = 30 * 1000000000ll; /* a loaded machine may stall a while */
        o.flags = PSYNE_F_LISTEN;
    }
    if (with_roles)
        o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(&e.rx, uri, &o), 0); /* listening: returns at once */
    if (!tr->linked && !with_roles) {
        e.tx = e.rx;
        return e;
    }
    o.flags = 0;
    if (with_roles)
        o.role = PSYNE_ROLE_PRODUCER;
    CHECK_RC(psyne_channel_open(&e.tx, uri, &o), 0); /* tcp: returns once connected */
    return e;
}

/* tcp://: the producing end first, which waits until the consuming end
 * acknowledged everything (the tests release all they receive). */
static void close_ends(struct ends *e)
{
    /* >= 0: the last one says how many messages a test left unread */
    CHECK(psyne_channel_close(e->tx) >= 0);
    if (e->rx != e->tx)
        CHECK(psyne_channel_close(e->rx) >= 0);
}

static struct psyne_stats stats_of(psyne_channel *ch)
{
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(ch, &st), 0);
    return st;
}

/* Waits (tcp://) until the consuming end holds `bytes` of records nobody
 * took yet, all that was committed, and checks it holds that, plus at most
 * `padding` bytes of MP padding a receive may not have walked yet; on
 * memory:// they are there at once. */
static void await_arrival(psyne_channel *rx, uint64_t bytes, uint64_t padding)
{
    for (int i = 0; tr->linked && i < 20000 && stats_of(rx).in_use < bytes; i++)
        usleep(1000);
    uint64_t in_use = stats_of(rx).in_use;
    if (in_use < bytes || in_use > bytes + padding)
        fprintf(stderr, "await_arrival: %llu bytes in the ring, expected %llu (+ %llu of padding)\n",
                (unsigned long long)in_use, (unsigned long long)bytes, (unsigned long long)padding);
    CHECK(in_use >= bytes && in_use <= bytes + padding);
}

/* Commits messages of len bytes until a claim finds no room: on memory://
 * when the ring is full; over tcp:// when the send ring, both socket buffers
 * and the peer's receive ring are (the peer acknowledges what reached its
 * ring, and a full ring stops it reading: TCP holds the sender back). There,
 * a claim that waited a second in vain says the stream stands still. Returns
 * how many went in. */
static int fill_until_full(psyne_channel *tx, uint32_t len)
{
    struct psyne_claimed c;
    int sent = 0, rc;
    while ((rc = psyne_claim(tx, len, &c, tr->linked ? 1000000000ll : PSYNE_NONBLOCK)) == 0) {
        memset(c.data, (uint8_t)sent, len);
        CHECK_RC(psyne_commit(tx, &c, len, T_MSG), 0);
        CHECK(++sent < 1000000);
    }
    CHECK_RC(rc, tr->linked ? -ETIMEDOUT : -EAGAIN); /* full, not broken */
    return sent;
}

static void test_options_and_uris(void)
{
    struct psyne_options o;
    psyne_options_init(&o);
    CHECK(o.capacity == 0 && o.mode == PSYNE_MODE_SPSC && o.role == PSYNE_ROLE_ANY);
    CHECK(o.wait == PSYNE_WAIT_ADAPTIVE && o.spin_ns < 0 && o.yield_ns < 0 && o.flags == 0);

    psyne_channel *ch = (psyne_channel *)&o; /* must be overwritten with NULL on failure */
    CHECK_RC(psyne_channel_open(NULL, "memory://x", NULL), -EINVAL);
    CHECK_RC(psyne_channel_open(&ch, NULL, NULL), -EINVAL);
    CHECK(ch == NULL);
    const char *bad[] = {"", "memory:/x", "memory://", "foo://x", "memory://a b", "memory://tab\there", "x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_RC(psyne_channel_open(&ch, bad[i], NULL), -EINVAL);
        CHECK(strlen(psyne_last_error()) > 0);
    }
    char longname[300] = "memory://";
    memset(longname + 9, 'n', 280);
    longname[289] = 0;
    CHECK_RC(psyne_channel_open(&ch, longname, NULL), -EINVAL);

    struct psyne_options quick = opts(PSYNE_MODE_SPSC, 0);
    quick.open_timeout_ns = 200 * 1000000ll; /* nobody listens on port 1: refused, retried, given up */
    CHECK_RC(psyne_channel_open(&ch, "tcp://127.0.0.1:1", &quick), -ECONNREFUSED);
    CHECK_RC(psyne_channel_open(&ch, "tcp://127.0.0.1", &quick), -EINVAL);
    CHECK_RC(psyne_channel_open(&ch, "tcp://127.0.0.1:http", &quick), -EINVAL);
    /* Malformed tcp:// addresses fail before any lookup or connection, at
     * either end: ports that would wrap, brackets that do not close, an
     * IPv6 address without them, signs, spaces' neighbours, empty parts. */
    const char *bad_tcp[] = {"tcp://127.0.0.1:65536",
                             "tcp://127.0.0.1:70000",
                             "tcp://127.0.0.1:4294967297",
                             "tcp://127.0.0.1:000065535",
                             "tcp://127.0.0.1:-1",
                             "tcp://127.0.0.1:+80",
                             "tcp://127.0.0.1:",
                             "tcp://127.0.0.1:80:80",
                             "tcp://[::1",
                             "tcp://[::1]",
                             "tcp://[::1]80",
                             "tcp://[]:80",
                             "tcp://[::1]]:80",
                             "tcp://::1:80",
                             "tcp://a]b:80",
                             "tcp://a[b:80",
                             "tcp://:",
                             "tcp://[::1]:0x50",
                             "tcp://127.0.0.1:8O"};
    for (int listen = 0; listen < 2; listen++) {
        quick.flags = listen ? PSYNE_F_LISTEN : 0;
        for (size_t i = 0; i < sizeof bad_tcp / sizeof bad_tcp[0]; i++) {
            int rc = psyne_channel_open(&ch, bad_tcp[i], &quick);
            if (rc != -EINVAL)
                fprintf(stderr, "%s (listen %d): %d\n", bad_tcp[i], listen, rc);
            CHECK(rc == -EINVAL && ch == NULL);
        }
    }
    quick.flags = 0;
    CHECK_RC(psyne_channel_open(&ch, "tcp://127.0.0.1:0", &quick), -EINVAL); /* port 0 only listens */
    CHECK_RC(psyne_channel_open(&ch, "tcp://:9", &quick), -EINVAL);          /* no host to connect to */
    quick.flags = PSYNE_F_LISTEN;
    CHECK_RC(psyne_channel_open(&ch, "memory://listen", &quick), -EINVAL);
    quick.max_peers = PSYNE_MAX_PEERS + 1;
    CHECK_RC(psyne_channel_open(&ch, "tcp://127.0.0.1:0", &quick), -EINVAL);
    CHECK(strstr(psyne_last_error(), "PSYNE_MAX_PEERS") != NULL);
    quick.flags = 0;
    quick.max_peers = 2; /* peers are a listening end's */
    CHECK_RC(psyne_channel_open(&ch, "tcp://127.0.0.1:1", &quick), -EINVAL);
    quick.max_peers = 0;

    struct psyne_options b = opts(7, 0);
    CHECK_RC(psyne_channel_open(&ch, "memory://o", &b), -EINVAL);
    b = opts(-1, 0);
    CHECK_RC(psyne_channel_open(&ch, "memory://o", &b), -EINVAL);
    b = opts(PSYNE_MODE_SPSC, 0);
    b.role = 9;
    CHECK_RC(psyne_channel_open(&ch, "memory://o", &b), -EINVAL);
    b = opts(PSYNE_MODE_BROADCAST, 0); /* role ANY is ambiguous for BROADCAST */
    CHECK_RC(psyne_channel_open(&ch, "memory://o", &b), -EINVAL);
    b = opts(PSYNE_MODE_SPSC, 0);
    b.wait = 5;
    CHECK_RC(psyne_channel_open(&ch, "memory://o", &b), -EINVAL);
    b = opts(PSYNE_MODE_SPSC, 0);
    b.flags = 0x100;
    CHECK_RC(psyne_channel_open(&ch, "memory://o", &b), -EINVAL);
    b = opts(PSYNE_MODE_SPSC, PSYNE_MAX_CAPACITY * 2);
    CHECK_RC(psyne_channel_open(&ch, "memory://o", &b), -EINVAL);
    CHECK(strstr(psyne_last_error(), "PSYNE_MAX_CAPACITY") != NULL);
    b = opts(PSYNE_MODE_SPSC, 0);
    b.numa_node = 1; /* without PSYNE_F_NUMA_BIND */
    CHECK_RC(psyne_channel_open(&ch, "memory://o", &b), -EINVAL);
    b.flags = PSYNE_F_NUMA_BIND;
    b.numa_node = 4000; /* no such node */
    CHECK_RC(psyne_channel_open(&ch, "memory://o", &b), -EINVAL);
    CHECK(strstr(psyne_last_error(), "NUMA node 4000") != NULL);
    CHECK(ch == NULL);

    /* psyne_strerror accepts both signs and knows every documented code. */
    int codes[] = {0, EINVAL, EAGAIN, ETIMEDOUT, EPIPE, EMSGSIZE, EPROTO, EPROTONOSUPPORT, EBUSY, EPERM, ENOMEM};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        CHECK(strlen(psyne_strerror(-codes[i])) > 0);
        CHECK(strcmp(psyne_strerror(-codes[i]), psyne_strerror(codes[i])) == 0);
    }
    CHECK(strlen(psyne_strerror(-ENOENT)) > 0);
    CHECK(strlen(psyne_strerror(INT_MIN)) > 0 && strlen(psyne_strerror(INT_MAX)) > 0); /* UBSan: no -INT_MIN */
    CHECK_RC(psyne_channel_close(NULL), 0);
    CHECK_RC(psyne_channel_shutdown(NULL), -EINVAL);
    CHECK_RC(psyne_channel_stats(NULL, NULL), -EINVAL);
}

/* Every length from 0 to 299, each with a type of its own, arrives intact
 * and 8-byte aligned, and a view is released once only. */
static void check_lengths(psyne_channel *tx, psyne_channel *rx)
{
    for (uint32_t len = 0; len < 300; len++) {
        uint8_t buf[300];
        for (uint32_t i = 0; i < len; i++)
            buf[i] = (uint8_t)(len + i);
        send_bytes(tx, buf, len, T_MSG + len);
        struct psyne_msg m;
        CHECK_RC(psyne_receive(rx, &m, settle_ns()), 0);
        CHECK(m.length == len && m.type == T_MSG + len);
        CHECK(((uintptr_t)m.data & 7) == 0);
        CHECK(memcmp(m.data, buf, len) == 0);
        CHECK_RC(psyne_release(rx, &m), 0);
        CHECK_RC(psyne_release(rx, &m), -EINVAL); /* already released */
    }
}

/* A NULL handle or pointer is -EINVAL from every call (the inline claim and
 * commit too), never a crash: bindings pass on what their users give. */
static void test_null_arguments(void)
{
    psyne_channel *ch = open_ch("memory://nulls", PSYNE_MODE_SPSC, 4096);
    struct psyne_claimed c;
    struct psyne_msg m;
    struct psyne_tensor t;
    uint32_t len = 0;
    psyne_options_init(NULL);
    CHECK_RC(psyne_claim(NULL, 8, &c, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_claim(ch, 8, NULL, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_claim_to(NULL, 0, 8, &c, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_claim_to(ch, 0, 8, NULL, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_claim_batch(NULL, 8, &c, 1, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_claim_batch(ch, 8, NULL, 1, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_claim_tensor(NULL, PSYNE_F32, 1, 4, &t, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_claim_tensor(ch, PSYNE_F32, 1, 4, NULL, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_claim(ch, 8, &c, PSYNE_NONBLOCK), 0); /* an open claim: NULLs must not touch it */
    CHECK_RC(psyne_commit(NULL, &c, 8, T_MSG), -EINVAL);
    CHECK_RC(psyne_commit(ch, NULL, 8, T_MSG), -EINVAL);
    CHECK_RC(psyne_commit_batch(NULL, &c, 1, &len, T_MSG), -EINVAL);
    CHECK_RC(psyne_commit_batch(ch, NULL, 1, &len, T_MSG), -EINVAL);
    CHECK_RC(psyne_abort(NULL, &c), -EINVAL);
    CHECK_RC(psyne_abort(ch, NULL), -EINVAL);
    CHECK_RC(psyne_commit_tensor(NULL, &t), -EINVAL);
    CHECK_RC(psyne_commit_tensor(ch, NULL), -EINVAL);
    CHECK_RC(psyne_tensor_reshape(NULL, 1, NULL, NULL), -EINVAL);
    memcpy(c.data, "12345678", 8);
    CHECK_RC(psyne_commit(ch, &c, 8, T_MSG), 0);
    CHECK_RC(psyne_receive(NULL, &m, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_receive(ch, NULL, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_receive_batch(NULL, &m, 1, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_receive_batch(ch, NULL, 1, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_drain(NULL, NULL, NULL, 1, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_drain(ch, NULL, NULL, 1, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_receive(ch, &m, PSYNE_NONBLOCK), 0); /* the message is still there */
    CHECK(m.length == 8 && memcmp(m.data, "12345678", 8) == 0);
    CHECK_RC(psyne_tensor_view(NULL, 0, -1, &t), -EINVAL);
    CHECK_RC(psyne_tensor_view(&m, 0, -1, NULL), -EINVAL);
    CHECK_RC(psyne_release(NULL, &m), -EINVAL);
    CHECK_RC(psyne_release(ch, NULL), -EINVAL);
    CHECK_RC(psyne_release_batch(NULL, &m, 1), -EINVAL);
    CHECK_RC(psyne_release_batch(ch, NULL, 1), -EINVAL);
    CHECK_RC(psyne_release(ch, &m), 0);
    CHECK_RC(psyne_channel_stats(ch, NULL), -EINVAL);
    CHECK_RC(psyne_set_log(NULL, NULL, 99), -EINVAL);
    CHECK_RC(psyne_channel_close(ch), 0);
}

static void test_round_trip_and_sharing(void)
{
    psyne_channel *tx = open_ch("memory://rt", PSYNE_MODE_SPSC, 5000);
    psyne_channel *rx = NULL;
    CHECK_RC(psyne_channel_open(&rx, "memory://rt", NULL), 0); /* same name, same ring */

    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(rx, &st), 0);
    CHECK(st.capacity == 8192); /* rounded up to a power of two */

    /* a second opener may not ask for another mode or a larger ring */
    struct psyne_options o = opts(PSYNE_MODE_MPMC, 0);
    psyne_channel *bad = NULL;
    CHECK_RC(psyne_channel_open(&bad, "memory://rt", &o), -EINVAL);
    o = opts(PSYNE_MODE_SPSC, 1 << 20);
    CHECK_RC(psyne_channel_open(&bad, "memory://rt", &o), -EINVAL);

    check_lengths(tx, rx);

    /* the receiver reads the bytes where the producer wrote them */
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(tx, 64, &c, PSYNE_NONBLOCK), 0);
    void *written_at = c.data;
    memset(c.data, 0xab, 64);
    CHECK_RC(psyne_commit(tx, &c, 64, T_MSG), 0);
    struct psyne_msg m;
    CHECK_RC(psyne_receive(rx, &m, PSYNE_NONBLOCK), 0);
    CHECK(m.data == written_at);
    CHECK_RC(psyne_release(rx, &m), 0);

    CHECK_RC(psyne_channel_stats(tx, &st), 0);
    CHECK(st.msgs_out == 301 && st.msgs_in == 301);
    CHECK(st.bytes_out == 299 * 300 / 2 + 64 && st.bytes_in == st.bytes_out);
    CHECK(st.in_use == 0 && st.high_water > 0 && st.mode == PSYNE_MODE_SPSC);
    psyne_channel_close(tx);
    psyne_channel_close(rx);
}

/* tcp://: the same over a connection, counted on each end. */
static void test_lengths_link(void)
{
    struct ends e = open_ends("lengths", PSYNE_MODE_SPSC, 8192, 0);
    check_lengths(e.tx, e.rx);
    struct psyne_stats out = stats_of(e.tx), in = stats_of(e.rx);
    CHECK(out.msgs_out == 300 && in.msgs_in == 300);
    CHECK(out.bytes_out == 299 * 300 / 2 && in.bytes_in == out.bytes_out);
    CHECK(in.in_use == 0 && in.capacity == 8192 && in.tcp_connected == 1 && out.tcp_connected == 1);
    close_ends(&e);
}

static void test_full_empty_timeouts(int mode)
{
    struct ends e = open_ends("full", mode, 4096, 0);
    struct psyne_claimed c;
    struct psyne_msg m;
    CHECK_RC(psyne_claim(e.tx, 4096, &c, PSYNE_NONBLOCK), -EMSGSIZE);
    CHECK_RC(psyne_claim(e.tx, (size_t)1 << 40, &c, PSYNE_NONBLOCK), -EMSGSIZE);
    CHECK_RC(psyne_receive(e.rx, &m, PSYNE_NONBLOCK), -EAGAIN);
    CHECK_RC(psyne_receive(e.rx, &m, 1000000), -ETIMEDOUT);

    /* the largest message that fits an empty ring (one fills it) */
    CHECK_RC(psyne_claim(e.tx, PSYNE_MAX_MESSAGE(4096) + 1, &c, PSYNE_NONBLOCK), -EMSGSIZE);
    int sent = fill_until_full(e.tx, PSYNE_MAX_MESSAGE(4096));
    CHECK(tr->linked ? sent >= 2 : sent == 1); /* tcp: one in each ring, more in the sockets */
    CHECK_RC(psyne_claim(e.tx, 0, &c, PSYNE_NONBLOCK), -EAGAIN);
    CHECK_RC(psyne_claim(e.tx, 0, &c, 2000000), -ETIMEDOUT);
    for (int i = 0; i < sent; i++) { /* nothing was dropped */
        CHECK_RC(psyne_receive(e.rx, &m, PSYNE_FOREVER), 0);
        CHECK(m.length == PSYNE_MAX_MESSAGE(4096) && ((uint8_t *)m.data)[m.length - 1] == (uint8_t)i);
        CHECK_RC(psyne_release(e.rx, &m), 0);
    }
    CHECK_RC(psyne_receive(e.rx, &m, PSYNE_NONBLOCK), -EAGAIN);
    CHECK_RC(psyne_claim(e.tx, PSYNE_MAX_MESSAGE(4096), &c, settle_ns()), 0); /* the space came back */
    CHECK_RC(psyne_commit(e.tx, &c, PSYNE_MAX_MESSAGE(4096), T_MSG), 0);
    CHECK_RC(psyne_receive(e.rx, &m, settle_ns()), 0);
    CHECK(m.length == PSYNE_MAX_MESSAGE(4096));
    CHECK_RC(psyne_release(e.rx, &m), 0);

    struct psyne_stats out = stats_of(e.tx), in = stats_of(e.rx);
    CHECK(out.full_events >= 2 && in.empty_events >= 2);
    CHECK(in.high_water == PSYNE_RECORD_SIZE(PSYNE_MAX_MESSAGE(4096)));
    close_ends(&e);
}

#ifndef PSYNE_INLINE_CALLS
int psy_claim_slow(psyne_channel *ch, size_t max_len, struct psyne_claimed *c, int64_t timeout_ns); /* exported */
#endif

/* Claims of every size class through the library's path (what the inline
 * psyne_claim calls when its fast path does not apply), each committed and
 * received: a successful single claim is one record of max_len, not a batch,
 * and leaves the peer as it was (0 in the inline claim's copy). psyne.hpp's
 * claim writes these same values again after every claim, so that the
 * compiler can fold the commit's checks of them. */
static void check_single_claims(psyne_channel *tx, psyne_channel *rx)
{
    static const size_t sizes[] = {0, 1, 8, 61, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct psyne_claimed c;
        memset(&c, 0xa5, sizeof c);
        c.psy_peer = 0; /* as the inline claim's copy: psyne_claim leaves it */
        CHECK_RC(psy_claim_slow(tx, sizes[i], &c, settle_ns()), 0);
        CHECK(c.capacity == sizes[i] && c.psy_reserved == PSYNE_RECORD_SIZE(sizes[i]));
        CHECK(c.psy_batch == 1 && c.psy_peer == 0);
        memset(c.data, (int)i, sizes[i]);
        CHECK_RC(psyne_commit(tx, &c, sizes[i], PSYNE_TYPE_USER_MIN), 0);
        struct psyne_msg m;
        CHECK_RC(psyne_receive(rx, &m, settle_ns()), 0);
        CHECK(m.length == sizes[i] && (sizes[i] == 0 || ((unsigned char *)m.data)[sizes[i] - 1] == i));
        CHECK_RC(psyne_release(rx, &m), 0);
    }
}

static void test_single_claim_fields(int mode)
{
    struct ends e = open_ends("claim-fields", mode, 4096, 0);
    check_single_claims(e.tx, e.rx);
    close_ends(&e);
    if (tr->linked)
        return;
    /* the other claim paths of one process: leases (MP) and a dynamic ring */
    char uri[96];
    tr->uri(uri, sizeof uri, "claim-fields-more");
    struct psyne_options o = opts(mode, 4096);
    if (mode == PSYNE_MODE_MPSC || mode == PSYNE_MODE_MPMC) {
        o.flags = PSYNE_F_LEASES;
        psyne_channel *ch;
        CHECK_RC(psyne_channel_open(&ch, uri, &o), 0);
        check_single_claims(ch, ch);
        CHECK(psyne_channel_close(ch) == 0);
    }
    if (mode != PSYNE_MODE_SPSC)
        return; /* dynamic rings are SPSC only */
    struct psyne_dynamic d;
    memset(&d, 0, sizeof d);
    o = opts(mode, 4096);
    o.dynamic = &d;
    psyne_channel *ch;
    CHECK_RC(psyne_channel_open(&ch, uri, &o), 0);
    check_single_claims(ch, ch);
    CHECK(psyne_channel_close(ch) == 0);
}

static void test_commit_abort_errors(int mode)
{
    struct ends e = open_ends("commit", mode, 8192, 0);
    struct psyne_claimed c;
    struct psyne_msg m;
    CHECK_RC(psyne_claim(e.tx, 100, &c, PSYNE_NONBLOCK), 0);
    CHECK_RC(psyne_commit(e.tx, &c, 101, T_MSG), -EINVAL);
    CHECK_RC(psyne_commit(e.tx, &c, 10, 0), -EINVAL);
    CHECK_RC(psyne_commit(e.tx, &c, 10, PSYNE_TYPE_USER_MIN - 1), -EINVAL);
    CHECK_RC(psyne_commit(e.tx, &c, 10, PSYNE_TYPE_USER_MAX + 1u), -EINVAL);
    if (mode == PSYNE_MODE_SPSC || mode == PSYNE_MODE_SPMC) {
        struct psyne_claimed c2;
        CHECK_RC(psyne_claim(e.tx, 8, &c2, PSYNE_NONBLOCK), -EBUSY); /* one open claim per SP producer */
    }
    memcpy(c.data, "hello", 5);
    CHECK_RC(psyne_commit(e.tx, &c, 5, PSYNE_TYPE_USER_MAX), 0); /* shorter than claimed */
    CHECK_RC(psyne_commit(e.tx, &c, 5, T_MSG), -EINVAL);         /* not open any more */
    CHECK_RC(psyne_abort(e.tx, &c), -EINVAL);

    CHECK_RC(psyne_claim(e.tx, 200, &c, PSYNE_NONBLOCK), 0);
    CHECK_RC(psyne_abort(e.tx, &c), 0); /* nothing is published */
    CHECK_RC(psyne_commit(e.tx, &c, 1, T_MSG), -EINVAL);

    CHECK_RC(psyne_claim_to(e.tx, 1, 16, &c, PSYNE_NONBLOCK), -EINVAL); /* no peers here */
    CHECK_RC(psyne_claim_to(e.tx, 0, 16, &c, PSYNE_NONBLOCK), 0);       /* peer 0: psyne_claim */
    memcpy(c.data, "world", 5);
    CHECK_RC(psyne_commit(e.tx, &c, 5, T_MSG + 1), 0);

    CHECK_RC(psyne_receive(e.rx, &m, settle_ns()), 0);
    CHECK(m.length == 5 && m.type == PSYNE_TYPE_USER_MAX && memcmp(m.data, "hello", 5) == 0);
    CHECK_RC(psyne_release(e.rx, &m), 0);
    CHECK_RC(psyne_receive(e.rx, &m, settle_ns()), 0);
    CHECK(m.length == 5 && m.type == T_MSG + 1 && memcmp(m.data, "world", 5) == 0 && m.peer == 0);
    CHECK_RC(psyne_release(e.rx, &m), 0);
    CHECK_RC(psyne_receive(e.rx, &m, PSYNE_NONBLOCK), -EAGAIN);

    /* fill past one lap with short commits of long claims (MP pads) */
    for (int i = 0; i < 500; i++) {
        CHECK_RC(psyne_claim(e.tx, 1000, &c, settle_ns()), 0);
        *(int *)c.data = i;
        CHECK_RC(psyne_commit(e.tx, &c, sizeof(int), T_MSG), 0);
        CHECK_RC(psyne_receive(e.rx, &m, settle_ns()), 0);
        CHECK(m.length == sizeof(int) && *(int *)m.data == i);
        CHECK_RC(psyne_release(e.rx, &m), 0);
    }
    close_ends(&e);
}

static void test_claim_batch(int mode)
{
    struct ends e = open_ends("claim-batch", mode, 8192, 0);
    struct psyne_claimed c[8];
    struct psyne_msg m;
    CHECK_RC(psyne_claim_batch(e.tx, 100, c, 0, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_claim_batch(e.tx, 8192, c, 2, PSYNE_NONBLOCK), -EMSGSIZE);
    CHECK_RC(psyne_claim_batch(e.tx, 100, c, 5, PSYNE_NONBLOCK), 5);
    CHECK_RC(psyne_commit(e.tx, &c[0], 1, T_MSG), -EINVAL); /* batches commit as one */
    CHECK_RC(psyne_abort(e.tx, &c[0]), -EINVAL);
    uint32_t lengths[5] = {100, 3, 0, 64, 7};
    for (int i = 0; i < 5; i++) {
        CHECK(c[i].capacity == 100 && ((uintptr_t)c[i].data & 7) == 0);
        memset(c[i].data, 'a' + i, lengths[i]);
    }
    uint32_t too_long[3] = {1, 101, 1};
    CHECK_RC(psyne_commit_batch(e.tx, c, 3, too_long, T_MSG), -EINVAL);
    CHECK_RC(psyne_commit_batch(e.tx, c, 6, lengths, T_MSG), -EINVAL);
    CHECK_RC(psyne_commit_batch(e.tx, c, 4, lengths, T_MSG + 9), 0); /* the fifth is given up */
    CHECK_RC(psyne_commit_batch(e.tx, c, 4, lengths, T_MSG + 9), -EINVAL);
    for (int i = 0; i < 4; i++) {
        CHECK_RC(psyne_receive(e.rx, &m, settle_ns()), 0);
        CHECK(m.length == lengths[i] && m.type == T_MSG + 9);
        for (uint32_t k = 0; k < m.length; k++)
            CHECK(((char *)m.data)[k] == 'a' + i);
        CHECK_RC(psyne_release(e.rx, &m), 0);
    }
    CHECK_RC(psyne_receive(e.rx, &m, PSYNE_NONBLOCK), -EAGAIN);
    /* a batch given up entirely, then one that only partly fits */
    CHECK_RC(psyne_claim_batch(e.tx, 16, c, 3, PSYNE_NONBLOCK), 3);
    CHECK_RC(psyne_commit_batch(e.tx, c, 0, NULL, T_MSG), 0);
    CHECK_RC(psyne_receive(e.rx, &m, PSYNE_NONBLOCK), -EAGAIN);
    int k = psyne_claim_batch(e.tx, 2000, c, 8, settle_ns());
    CHECK(k >= 1 && k < 8); /* as many as fit in 8 KiB (tcp: of what the peer acknowledged) */
    uint32_t len2000[8] = {2000, 2000, 2000, 2000, 2000, 2000, 2000, 2000};
    CHECK_RC(psyne_commit_batch(e.tx, c, (unsigned)k, len2000, T_MSG), 0);
    /* MP: the batch given up is padding, which the receive above walked if
     * it had arrived (tcp: it may not have) */
    int mp = mode == PSYNE_MODE_MPSC || mode == PSYNE_MODE_MPMC;
    await_arrival(e.rx, (uint64_t)k * PSYNE_RECORD_SIZE(2000), mp ? 3 * PSYNE_RECORD_SIZE(16) : 0);
    struct psyne_msg batch[8];
    CHECK_RC(psyne_receive_batch(e.rx, batch, 8, PSYNE_NONBLOCK), k);
    CHECK_RC(psyne_release_batch(e.rx, batch, (unsigned)k), 0);
    struct psyne_stats st = stats_of(e.rx);
    CHECK(st.in_use == 0 && st.msgs_in == 4 + (uint64_t)k);
    close_ends(&e);
}

/*
 * The producer's counts while it streams. In SP rings whose consumers leave
 * headers alone, psyne_channel_stats counts the records after the
 * producer's last checkpoint from their headers (src/ring/ring.h), racing
 * with the producer moving the checkpoint and the consumer releasing. The
 * counts must never go back, never pass what was committed, and end exact.
 * A small ring makes many checkpoints; batches with short commits leave pads.
 */
#define STREAM_MSGS 60000

struct stream {
    psyne_channel *tx, *rx;
    _Atomic uint64_t upto_msgs, upto_bytes; /* counts including the commit about to be made */
};

/* What the producer is about to have committed: stats may count it from
 * the moment the commit's header is out. */
static void stream_announce(struct stream *s, uint64_t msgs, uint64_t bytes)
{
    atomic_store_explicit(&s->upto_bytes, bytes, memory_order_relaxed);
    atomic_store_explicit(&s->upto_msgs, msgs, memory_order_release); /* before the commit's stores */
}

static void *stream_producer(void *arg)
{
    struct stream *s = arg;
    uint64_t msgs = 0, bytes = 0;
    for (uint32_t i = 0; msgs < STREAM_MSGS; i++) {
        struct psyne_claimed c[3];
        if (i % 5 == 0) {
            unsigned want = STREAM_MSGS - msgs < 3 ? (unsigned)(STREAM_MSGS - msgs) : 3;
            int k = psyne_claim_batch(s->tx, 40, c, want, PSYNE_FOREVER);
            CHECK(k >= 1 && k <= (int)want);
            uint32_t lengths[3] = {i % 41, 3, 17};
            for (int j = 0; j < k; j++) {
                memset(c[j].data, (uint8_t)j, lengths[j]);
                bytes += lengths[j];
            }
            msgs += (uint64_t)k;
            stream_announce(s, msgs, bytes);
            CHECK_RC(psyne_commit_batch(s->tx, c, (unsigned)k, lengths, T_MSG), 0);
        } else {
            uint32_t len = i % 97;
            CHECK_RC(psyne_claim(s->tx, 96, &c[0], PSYNE_FOREVER), 0);
            memset(c[0].data, 1, len);
            stream_announce(s, ++msgs, bytes += len);
            CHECK_RC(psyne_commit(s->tx, &c[0], len, T_MSG), 0);
        }
    }
    return NULL;
}

static void *stream_consumer(void *arg)
{
    struct stream *s = arg;
    for (uint64_t got = 0; got < STREAM_MSGS; got++) {
        struct psyne_msg m;
        CHECK_RC(psyne_receive(s->rx, &m, PSYNE_FOREVER), 0);
        CHECK_RC(psyne_release(s->rx, &m), 0);
    }
    return NULL;
}

static void test_stats_while_streaming(int mode)
{
    struct ends e = open_ends("stats-stream", mode, 4096, 1);
    struct stream s = {.tx = e.tx, .rx = e.rx};
    pthread_t p, c;
    CHECK(pthread_create(&p, NULL, stream_producer, &s) == 0);
    CHECK(pthread_create(&c, NULL, stream_consumer, &s) == 0);
    uint64_t last_msgs = 0, last_bytes = 0, polls = 0;
    while (last_msgs < STREAM_MSGS) {
        struct psyne_stats st = stats_of(e.tx);
        uint64_t msgs = atomic_load_explicit(&s.upto_msgs, memory_order_acquire);
        uint64_t bytes = atomic_load_explicit(&s.upto_bytes, memory_order_relaxed);
        if (st.msgs_out < last_msgs || st.bytes_out < last_bytes || st.msgs_out > msgs || st.bytes_out > bytes)
            fprintf(stderr,
                    "stats while streaming: %llu msgs %llu bytes, before %llu %llu, committed at most %llu %llu\n",
                    (unsigned long long)st.msgs_out, (unsigned long long)st.bytes_out, (unsigned long long)last_msgs,
                    (unsigned long long)last_bytes, (unsigned long long)msgs, (unsigned long long)bytes);
        CHECK(st.msgs_out >= last_msgs && st.bytes_out >= last_bytes);
        CHECK(st.msgs_out <= msgs && st.bytes_out <= bytes);
        last_msgs = st.msgs_out;
        last_bytes = st.bytes_out;
        polls++;
    }
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    struct psyne_stats st = stats_of(e.tx);
    CHECK(st.msgs_out == STREAM_MSGS && st.msgs_in == STREAM_MSGS);
    CHECK(st.bytes_out == atomic_load(&s.upto_bytes) && st.bytes_in == st.bytes_out);
    CHECK(polls > 1);
    close_ends(&e);
}

/* MP: a producer that holds a claim (as if preempted between claim and
 * commit) does not stop another producer claiming and committing; the
 * consumer gets the held message first once it is committed, then the rest. */
static void test_stalled_producer(int mode)
{
    struct psyne_options o = opts(mode, 8192);
    o.role = PSYNE_ROLE_PRODUCER;
    psyne_channel *slow, *fast, *rx;
    CHECK_RC(psyne_channel_open(&slow, "memory://stalled", &o), 0);
    CHECK_RC(psyne_channel_open(&fast, "memory://stalled", &o), 0);
    o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(&rx, "memory://stalled", &o), 0);
    struct psyne_claimed held, c;
    struct psyne_msg m;
    CHECK_RC(psyne_claim(slow, 16, &held, PSYNE_NONBLOCK), 0);
    for (int i = 0; i < 20; i++) { /* the other producer goes on claiming */
        CHECK_RC(psyne_claim(fast, 16, &c, PSYNE_NONBLOCK), 0);
        *(int *)c.data = i;
        CHECK_RC(psyne_commit(fast, &c, sizeof(int), T_MSG), 0);
    }
    CHECK_RC(psyne_receive(rx, &m, PSYNE_NONBLOCK), -EAGAIN); /* in order: the held one comes first */
    *(int *)held.data = -1;
    CHECK_RC(psyne_commit(slow, &held, sizeof(int), T_MSG), 0);
    for (int i = -1; i < 20; i++) {
        CHECK_RC(psyne_receive(rx, &m, PSYNE_NONBLOCK), 0);
        CHECK(*(int *)m.data == i);
        CHECK_RC(psyne_release(rx, &m), 0);
    }
    psyne_channel_close(slow);
    psyne_channel_close(fast);
    psyne_channel_close(rx);
}

/* MP modes: threads that share one producer handle. Each commit is counted
 * once, by the thread that owns the handle's counters or atomically by any
 * other (channel.c, count_mp), and msgs_out/bytes_out must add up both,
 * before and after the handle closes (a sum that leaves out the owner's
 * counters fails here). A racy count by the other threads would lose
 * updates only when one is preempted mid-add: rarely, on two CPUs. */
#define SHARED_THREADS 4
#define SHARED_MSGS 20000

static void *commit_on_shared_handle(void *arg)
{
    psyne_channel *tx = arg;
    for (int i = 0; i < SHARED_MSGS; i++) {
        if (i % 2) {
            struct psyne_claimed c;
            CHECK_RC(psyne_claim(tx, 24, &c, PSYNE_FOREVER), 0);
            CHECK_RC(psyne_commit(tx, &c, 1 + i % 24, T_MSG), 0);
        } else {
            struct psyne_claimed c;
            uint32_t length = 1 + i % 24;
            CHECK_RC(psyne_claim_batch(tx, 24, &c, 1, PSYNE_FOREVER), 1);
            CHECK_RC(psyne_commit_batch(tx, &c, 1, &length, T_MSG), 0);
        }
    }
    return NULL;
}

static void test_shared_producer_counts(int mode)
{
    struct psyne_options o = opts(mode, 64 * 1024);
    o.role = PSYNE_ROLE_PRODUCER;
    psyne_channel *tx, *rx;
    CHECK_RC(psyne_channel_open(&tx, "memory://shared-counts", &o), 0);
    o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(&rx, "memory://shared-counts", &o), 0);
    pthread_t t[SHARED_THREADS];
    for (int i = 0; i < SHARED_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, commit_on_shared_handle, tx) == 0);
    uint64_t bytes = 0, want_bytes = 0;
    for (int i = 0; i < SHARED_MSGS; i++)
        want_bytes += SHARED_THREADS * (uint64_t)(1 + i % 24);
    for (int got = 0; got < SHARED_THREADS * SHARED_MSGS; got++) {
        struct psyne_msg m;
        CHECK_RC(psyne_receive(rx, &m, PSYNE_FOREVER), 0);
        bytes += m.length;
        CHECK_RC(psyne_release(rx, &m), 0);
    }
    for (int i = 0; i < SHARED_THREADS; i++)
        pthread_join(t[i], NULL);
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(tx, &st), 0);
    CHECK(bytes == want_bytes);
    CHECK(st.msgs_out == SHARED_THREADS * SHARED_MSGS && st.bytes_out == want_bytes);
    psyne_channel_close(tx); /* its counts stay in the ring's totals */
    CHECK_RC(psyne_channel_stats(rx, &st), 0);
    CHECK(st.msgs_out == SHARED_THREADS * SHARED_MSGS && st.bytes_out == want_bytes);
    psyne_channel_close(rx);
}

static void test_roles(void)
{
    struct psyne_options o = opts(PSYNE_MODE_SPSC, 0);
    o.role = PSYNE_ROLE_PRODUCER;
    psyne_channel *p = NULL, *c = NULL;
    CHECK_RC(psyne_channel_open(&p, "memory://roles", &o), 0);
    o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(&c, "memory://roles", &o), 0);
    struct psyne_claimed cl;
    struct psyne_msg m;
    CHECK_RC(psyne_receive(p, &m, PSYNE_NONBLOCK), -EPERM);
    CHECK_RC(psyne_claim(c, 8, &cl, PSYNE_NONBLOCK), -EPERM);
    psyne_channel_close(p);
    psyne_channel_close(c);
}

struct drain_ctx {
    int seen;
    int next;
};

static void drain_fn(void *arg, const struct psyne_msg *m)
{
    struct drain_ctx *d = arg;
    CHECK(m->length == sizeof(int) && *(const int *)m->data == d->next);
    d->next++;
    d->seen++;
}

static void test_batches(int mode)
{
    struct ends e = open_ends("batch", mode, 1 << 16, 0);
    /* MP modes publish what a short commit leaves of its claim as padding */
    int mp = mode == PSYNE_MODE_MPSC || mode == PSYNE_MODE_MPMC;
    struct psyne_claimed c;
    for (int i = 0; i < 100; i++) {
        CHECK_RC(psyne_claim(e.tx, 64, &c, settle_ns()), 0);
        *(int *)c.data = i;
        CHECK_RC(psyne_commit(e.tx, &c, sizeof(int), T_MSG), 0);
    }
    await_arrival(e.rx, 100 * PSYNE_RECORD_SIZE(mp ? 64 : sizeof(int)), 0);
    struct psyne_msg msgs[40];
    CHECK_RC(psyne_receive_batch(e.rx, msgs, 0, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_receive_batch(e.rx, msgs, 40, PSYNE_NONBLOCK), 40);
    for (int i = 0; i < 40; i++)
        CHECK(*(int *)msgs[i].data == i);
    struct psyne_msg gap[2] = {msgs[0], msgs[2]};
    CHECK_RC(psyne_release_batch(e.rx, gap, 2), -EINVAL);
    CHECK_RC(psyne_release_batch(e.rx, msgs, 0), -EINVAL);
    CHECK_RC(psyne_release_batch(e.rx, msgs, 40), 0);

    struct drain_ctx d = {0, 40};
    CHECK_RC(psyne_drain(e.rx, drain_fn, &d, 1, PSYNE_NONBLOCK), 1); /* a batch of one: counted, handled */
    CHECK(d.seen == 1 && d.next == 41);
    CHECK_RC(psyne_drain(e.rx, drain_fn, &d, 49, PSYNE_NONBLOCK), 49);
    CHECK_RC(psyne_drain(e.rx, drain_fn, &d, 1000, PSYNE_NONBLOCK), 10);
    CHECK(d.seen == 60 && d.next == 100);
    CHECK_RC(psyne_drain(e.rx, drain_fn, &d, 10, PSYNE_NONBLOCK), -EAGAIN);
    CHECK_RC(psyne_drain(e.rx, drain_fn, &d, 10, 1000000), -ETIMEDOUT);

    /* several views held at once, released individually */
    for (int i = 0; i < 3; i++) {
        CHECK_RC(psyne_claim(e.tx, 8, &c, settle_ns()), 0);
        *(int *)c.data = i;
        CHECK_RC(psyne_commit(e.tx, &c, sizeof(int), T_MSG), 0);
    }
    await_arrival(e.rx, 3 * PSYNE_RECORD_SIZE(mp ? 8 : sizeof(int)), 0);
    struct psyne_msg a, b, z;
    CHECK_RC(psyne_receive(e.rx, &a, PSYNE_NONBLOCK), 0);
    CHECK_RC(psyne_receive(e.rx, &b, PSYNE_NONBLOCK), 0);
    CHECK_RC(psyne_receive(e.rx, &z, PSYNE_NONBLOCK), 0);
    CHECK(*(int *)a.data == 0 && *(int *)b.data == 1 && *(int *)z.data == 2);
    CHECK_RC(psyne_release(e.rx, &a), 0);
    CHECK_RC(psyne_release(e.rx, &b), 0);
    CHECK_RC(psyne_release(e.rx, &z), 0);
    struct psyne_stats st = stats_of(e.rx);
    CHECK(st.in_use == 0 && st.msgs_in == 103);
    close_ends(&e);
}

/* Sends count messages of 64 bytes, each filled with the byte seed + i. */
static void send_pattern(psyne_channel *tx, int count, int seed)
{
    for (int i = 0; i < count; i++) {
        uint8_t p[64];
        memset(p, (uint8_t)(seed + i), sizeof p);
        send_bytes(tx, p, sizeof p, T_MSG);
    }
}

static int holds_pattern(const struct psyne_msg *m, int value)
{
    if (m->length != 64)
        return 0;
    for (uint32_t i = 0; i < m->length; i++)
        if (((const uint8_t *)m->data)[i] != (uint8_t)value)
            return 0;
    return 1;
}

/* A consumer's mistakes with views are -EINVAL and damage nothing: a view
 * released twice (at once, and after its space held another message), a
 * view of another channel, spans that were made up, a batch released twice.
 * In the multi-consumer modes each release marks its own span, so a release
 * that trusted the view would free a message someone else holds. */
static void test_release_misuse(int mode)
{
    int mc = mode == PSYNE_MODE_SPMC || mode == PSYNE_MODE_MPMC;
    struct ends e = open_ends("misuse", mode, 4096, 0);
    struct ends other = open_ends("misuse-other", mode, 4096, 0);
    send_pattern(e.tx, 8, 0);
    send_pattern(other.tx, 8, 100);
    struct psyne_msg a, b, f, fake, batch[4];
    CHECK_RC(psyne_receive(e.rx, &a, settle_ns()), 0);
    CHECK_RC(psyne_receive(e.rx, &b, settle_ns()), 0);
    CHECK_RC(psyne_receive(other.rx, &f, settle_ns()), 0);
    CHECK(holds_pattern(&a, 0) && holds_pattern(&b, 1) && holds_pattern(&f, 100));
    CHECK_RC(psyne_release(e.rx, &a), 0);
    CHECK_RC(psyne_release(e.rx, &a), -EINVAL);
    CHECK_RC(psyne_release(e.rx, &f), -EINVAL); /* the same positions in another ring */
    fake = b;
    fake.psy_end += 8;
    CHECK_RC(psyne_release(e.rx, &fake), -EINVAL);
    fake = b;
    fake.psy_end = fake.psy_begin + 1 + ((uint64_t)1 << 40);
    CHECK_RC(psyne_release(e.rx, &fake), -EINVAL);
    if (mc) { /* SC releases all up to an end */
        fake = b;
        fake.psy_begin += 8;
        CHECK_RC(psyne_release(e.rx, &fake), -EINVAL);
        fake = b;
        fake.data = (uint8_t *)fake.data + 8;
        CHECK_RC(psyne_release(e.rx, &fake), -EINVAL);
    }
    await_arrival(e.rx, 7 * PSYNE_RECORD_SIZE(64), 4096); /* tcp: b and the 6 not received, all here */
    CHECK_RC(psyne_receive_batch(e.rx, batch, 4, settle_ns()), 4);
    for (int i = 0; i < 4; i++)
        CHECK(holds_pattern(&batch[i], 2 + i));
    CHECK_RC(psyne_release_batch(e.rx, batch, 4), 0);
    CHECK_RC(psyne_release_batch(e.rx, batch, 4), -EINVAL);
    /* MC rings with one writer (SPMC; over tcp:// every receive ring, which
     * the link's receiver fills) leave the headers inside a released batch
     * as they were (MP rings zero them): a message of it released again is
     * not caught while an earlier one is held, and frees nothing that was
     * not free */
    int rc = psyne_release(e.rx, &batch[1]);
    CHECK(rc == -EINVAL || (mc && (mode == PSYNE_MODE_SPMC || tr->linked) && rc == 0));
    CHECK_RC(psyne_release(e.rx, &b), mc ? 0 : -EINVAL); /* SC: the batch's release freed b */
    CHECK_RC(psyne_release(e.rx, &b), -EINVAL);

    /* Lap the ring: a's space now holds other messages, one of them held. */
    struct psyne_msg rest;
    for (int i = 6; i < 8; i++) {
        CHECK_RC(psyne_receive(e.rx, &rest, settle_ns()), 0);
        CHECK(holds_pattern(&rest, i));
        CHECK_RC(psyne_release(e.rx, &rest), 0);
    }
    int lapped = 0;
    for (int round = 0; round < 3; round++) {
        send_pattern(e.tx, 20, 20 * round);
        for (int i = 0; i < 20; i++) {
            CHECK_RC(psyne_receive(e.rx, &rest, settle_ns()), 0);
            CHECK(holds_pattern(&rest, 20 * round + i));
            CHECK_RC(psyne_release(e.rx, &a), -EINVAL);
            CHECK_RC(psyne_release(e.rx, &batch[0]), -EINVAL);
            CHECK(holds_pattern(&rest, 20 * round + i)); /* untouched by the bad releases */
            lapped += (uint8_t *)rest.data < (uint8_t *)a.data + 64 && (uint8_t *)a.data < (uint8_t *)rest.data + 64;
            CHECK_RC(psyne_release(e.rx, &rest), 0);
        }
    }
    CHECK(tr->linked || lapped > 0);
    CHECK_RC(psyne_receive(e.rx, &rest, PSYNE_NONBLOCK), -EAGAIN);
    struct psyne_stats st = stats_of(e.rx);
    CHECK(st.in_use == 0 && st.msgs_in == 68);
    CHECK_RC(psyne_release(other.rx, &f), 0);
    close_ends(&other);
    close_ends(&e);
}

struct blocked {
    psyne_channel *ch;
    int rc;
    int is_producer;
};

static void *block_forever(void *arg)
{
    struct blocked *b = arg;
    if (b->is_producer) {
        struct psyne_claimed c;
        b->rc = psyne_claim(b->ch, 3000, &c, PSYNE_FOREVER);
    } else {
        struct psyne_msg m;
        b->rc = psyne_receive(b->ch, &m, PSYNE_FOREVER);
    }
    return NULL;
}

static void test_shutdown(int mode)
{
    /* a receiver and a producer asleep on the futex both wake with -EPIPE */
    psyne_channel *rx = open_ch("memory://shut-rx", mode, 4096);
    psyne_channel *tx = open_ch("memory://shut-tx", mode, 4096);
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(tx, 3000, &c, PSYNE_NONBLOCK), 0);
    CHECK_RC(psyne_commit(tx, &c, 3000, T_MSG), 0); /* now full for a 3000-byte claim */
    struct blocked br = {rx, 1, 0}, bt = {tx, 1, 1};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, block_forever, &br);
    pthread_create(&t2, NULL, block_forever, &bt);
    usleep(300000); /* long enough to pass spinning and yielding and sleep */
    CHECK_RC(psyne_channel_shutdown(rx), 0);
    CHECK_RC(psyne_channel_shutdown(rx), 0); /* idempotent */
    CHECK_RC(psyne_channel_shutdown(tx), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK_RC(br.rc, -EPIPE);
    CHECK_RC(bt.rc, -EPIPE);
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(rx, &st), 0);
    CHECK(st.waits >= 1 && st.wakeups >= 1);

    /* after shutdown: claims fail, receivers drain, then -EPIPE */
    struct psyne_msg m;
    CHECK_RC(psyne_claim(tx, 8, &c, PSYNE_NONBLOCK), -EPIPE);
    CHECK_RC(psyne_receive(tx, &m, PSYNE_FOREVER), 0);
    CHECK(m.length == 3000);
    CHECK_RC(psyne_release(tx, &m), 0);
    CHECK_RC(psyne_receive(tx, &m, PSYNE_FOREVER), -EPIPE);
    CHECK_RC(psyne_receive(tx, &m, PSYNE_NONBLOCK), -EPIPE);

    /* the name is free again: a new open gets a fresh ring */
    psyne_channel *again = open_ch("memory://shut-tx", mode, 4096);
    CHECK_RC(psyne_claim(again, 8, &c, PSYNE_NONBLOCK), 0);
    CHECK_RC(psyne_abort(again, &c), 0);
    psyne_channel_close(again);
    psyne_channel_close(rx);
    psyne_channel_close(tx);
}

/* tcp://: a receiver with nothing coming and a producer with no room (the
 * peer does not consume) both wake with -EPIPE when the handle shuts down;
 * the peer drains what was sent, then gets -EPIPE. */
static void test_shutdown_link(int mode)
{
    struct ends e = open_ends("shut", mode, 4096, 0);
    struct psyne_claimed c;
    int sent = fill_until_full(e.tx, 3000);
    CHECK(sent >= 2);
    struct blocked br = {e.tx, 1, 0}, bt = {e.tx, 1, 1};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, block_forever, &br);
    pthread_create(&t2, NULL, block_forever, &bt);
    usleep(300000); /* long enough to pass spinning and yielding and sleep */
    CHECK_RC(psyne_channel_shutdown(e.tx), 0);
    CHECK_RC(psyne_channel_shutdown(e.tx), 0); /* idempotent */
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK_RC(br.rc, -EPIPE);
    CHECK_RC(bt.rc, -EPIPE);
    CHECK(stats_of(e.tx).waits >= 2);

    struct psyne_msg m;
    CHECK_RC(psyne_claim(e.tx, 8, &c, PSYNE_NONBLOCK), -EPIPE);
    CHECK_RC(psyne_receive(e.tx, &m, PSYNE_NONBLOCK), -EPIPE);
    for (int i = 0; i < sent; i++) { /* the shut-down end finishes sending */
        CHECK_RC(psyne_receive(e.rx, &m, settle_ns()), 0);
        CHECK(m.length == 3000 && ((uint8_t *)m.data)[2999] == (uint8_t)i);
        CHECK_RC(psyne_release(e.rx, &m), 0);
    }
    CHECK_RC(psyne_receive(e.rx, &m, settle_ns()), -EPIPE); /* and says the stream ended */
    CHECK_RC(psyne_receive(e.rx, &m, PSYNE_NONBLOCK), -EPIPE);
    close_ends(&e);
}

struct late_sender {
    psyne_channel *ch;
};

static void *send_late(void *arg)
{
    struct late_sender *s = arg;
    usleep(100000);
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(s->ch, 8, &c, PSYNE_FOREVER), 0);
    CHECK_RC(psyne_commit(s->ch, &c, 8, T_MSG), 0);
    return NULL;
}

static void *commit_one_and_close(void *arg)
{
    psyne_channel *tx = arg;
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(tx, 8, &c, PSYNE_FOREVER), 0);
    CHECK_RC(psyne_commit(tx, &c, 8, T_MSG), 0);
    /* last producer: shuts the channel down right after the commit (tcp:
     * once the peer acknowledged the message, it says the stream ended) */
    CHECK_RC(psyne_channel_close(tx), 0);
    return NULL;
}

/* A commit followed at once by the shutdown must still be delivered before
 * -EPIPE: a receiver that checks "closed" after finding nothing (instead of
 * before) loses it when both land in between. */
static void test_last_message_before_epipe(int mode)
{
    int rounds = tr->linked ? 20 : 2000; /* tcp: a connection each */
    for (int i = 0; i < rounds; i++) {
        struct ends e = open_ends("last", mode, 4096, 1);
        pthread_t t;
        pthread_create(&t, NULL, commit_one_and_close, e.tx);
        struct psyne_msg m;
        int rc;
        if (tr->linked) /* a spinning receiver would starve the link's threads */
            rc = psyne_receive(e.rx, &m, settle_ns());
        else
            while ((rc = psyne_receive(e.rx, &m, PSYNE_NONBLOCK)) == -EAGAIN) {
            }
        CHECK_RC(rc, 0);
        CHECK_RC(psyne_release(e.rx, &m), 0);
        pthread_join(t, NULL);
        CHECK_RC(psyne_receive(e.rx, &m, PSYNE_FOREVER), -EPIPE);
        CHECK_RC(psyne_channel_close(e.rx), 0);
    }
}

static void test_sleep_and_wake(void)
{
    /* the receiver goes to sleep; the commit must wake it with one syscall
     * (tcp: the receiver sleeps in poll() on the socket, and the data wakes it) */
    struct ends e = open_ends("wake", PSYNE_MODE_SPSC, 4096, 0);
    struct late_sender s = {e.tx};
    pthread_t t;
    pthread_create(&t, NULL, send_late, &s);
    struct psyne_msg m;
    CHECK_RC(psyne_receive(e.rx, &m, 5000000000LL), 0);
    CHECK_RC(psyne_release(e.rx, &m), 0);
    pthread_join(t, NULL);
    struct psyne_stats st = stats_of(e.rx);
    CHECK(st.waits >= 1 && (tr->linked || st.wakeups >= 1));
    close_ends(&e);
}

static void test_corrupt_record(void)
{
    /* a header that cannot be valid is reported, never followed */
    psyne_channel *ch = open_ch("memory://corrupt", PSYNE_MODE_SPSC, 4096);
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(ch, 16, &c, PSYNE_NONBLOCK), 0);
    CHECK_RC(psyne_commit(ch, &c, 16, T_MSG), 0);
    uint64_t *hdr = (uint64_t *)c.data - 1;
    *hdr = 0xfffffff0u | ((uint64_t)T_MSG << 32); /* length beyond the ring */
    struct psyne_msg m;
    CHECK_RC(psyne_receive(ch, &m, PSYNE_NONBLOCK), -EPROTO);
    CHECK(strlen(psyne_last_error()) > 0);
    *hdr = 16; /* type 0 */
    CHECK_RC(psyne_receive(ch, &m, PSYNE_NONBLOCK), -EPROTO);
    *hdr = 16 | ((uint64_t)T_MSG << 32);
    CHECK_RC(psyne_receive(ch, &m, PSYNE_NONBLOCK), 0);
    CHECK_RC(psyne_release(ch, &m), 0);
    psyne_channel_close(ch);
}

static void test_broadcast(void)
{
    struct psyne_options o = opts(PSYNE_MODE_BROADCAST, 8192);
    o.role = PSYNE_ROLE_PRODUCER;
    psyne_channel *tx = NULL, *subs[PSYNE_MAX_SUBSCRIBERS], *extra = NULL;
    CHECK_RC(psyne_channel_open(&tx, "memory://bcast", &o), 0);
    o.role = PSYNE_ROLE_CONSUMER;
    for (int i = 0; i < PSYNE_MAX_SUBSCRIBERS; i++)
        CHECK_RC(psyne_channel_open(&subs[i], "memory://bcast", &o), 0);
    CHECK_RC(psyne_channel_open(&extra, "memory://bcast", &o), -EBUSY);
    CHECK_RC(psyne_channel_open(&extra, "memory://bcast", NULL), -EINVAL); /* joining needs a role here */
    for (int i = 2; i < PSYNE_MAX_SUBSCRIBERS; i++)
        CHECK_RC(psyne_channel_close(subs[i]), 0);

    struct psyne_claimed c;
    for (int i = 0; i < 3; i++) {
        CHECK_RC(psyne_claim(tx, 8, &c, PSYNE_NONBLOCK), 0);
        *(int *)c.data = i;
        CHECK_RC(psyne_commit(tx, &c, sizeof(int), T_MSG), 0);
    }
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 3; i++) {
            struct psyne_msg m;
            CHECK_RC(psyne_receive(subs[s], &m, PSYNE_NONBLOCK), 0);
            CHECK(*(int *)m.data == i);
            CHECK_RC(psyne_release(subs[s], &m), 0);
        }
    }
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(tx, &st), 0);
    CHECK(st.subscribers == 2 && st.msgs_out == 3 && st.msgs_in == 6);

    /* the producer is held back by the slowest subscriber */
    int sent = 0;
    while (psyne_claim(tx, 1000, &c, PSYNE_NONBLOCK) == 0) {
        CHECK_RC(psyne_commit(tx, &c, 1000, T_MSG), 0);
        struct psyne_msg m;
        CHECK_RC(psyne_receive(subs[0], &m, PSYNE_NONBLOCK), 0); /* subs[1] never reads */
        CHECK_RC(psyne_release(subs[0], &m), 0);
        sent++;
    }
    CHECK(sent > 0 && sent < 10);
    psyne_channel_close(tx);
    psyne_channel_close(subs[0]);
    psyne_channel_close(subs[1]);
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : transports[0].name;
    for (size_t i = 0; i < sizeof transports / sizeof transports[0] && !tr; i++)
        if (strcmp(transports[i].name, name) == 0)
            tr = &transports[i];
    if (!tr) {
        fprintf(stderr, "usage: unit_api [memory|ipc|tcp]\n");
        return 2;
    }
    int modes[] = {PSYNE_MODE_SPSC, PSYNE_MODE_SPMC, PSYNE_MODE_MPSC, PSYNE_MODE_MPMC};
    if (tr->linked) {
        test_lengths_link();
        test_sleep_and_wake();
    } else if (tr == &transports[0]) { /* the rest of the API, once */
        test_options_and_uris();
        test_null_arguments();
        test_round_trip_and_sharing();
        test_roles();
        test_sleep_and_wake();
        test_corrupt_record();
        test_broadcast();
        test_stalled_producer(PSYNE_MODE_MPSC);
        test_stalled_producer(PSYNE_MODE_MPMC);
        test_shared_producer_counts(PSYNE_MODE_MPSC);
        test_shared_producer_counts(PSYNE_MODE_MPMC);
        test_stats_while_streaming(PSYNE_MODE_SPSC);
        test_stats_while_streaming(PSYNE_MODE_SPMC);
        test_stats_while_streaming(PSYNE_MODE_MPSC);
    }
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        test_full_empty_timeouts(modes[i]);
        test_commit_abort_errors(modes[i]);
        test_single_claim_fields(modes[i]);
        test_batches(modes[i]);
        test_claim_batch(modes[i]);
        test_release_misuse(modes[i]);
        test_last_message_before_epipe(modes[i]);
        if (tr->linked)
            test_shutdown_link(modes[i]);
        else
            test_shutdown(modes[i]);
    }
    printf("unit_api over %s://: all checks passed\n", tr->name);
    return 0;
}
