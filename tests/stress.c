/* SPDX-License-Identifier: MIT */
/*
 * stress.c - one stress body, built once per ring mode (STRESS_MODE).
 *
 *   stress_<mode> PRODUCERS CONSUMERS MESSAGES_PER_PRODUCER CAPACITY [TRANSPORT]
 *
 * TRANSPORT: "memory" (default; producers and consumers are threads),
 * "ipc-fork" (each is a forked process on an ipc:// channel), "ipc-exec"
 * (each is this program started anew, finding the channel by name) or "tcp"
 * (a tcp:// connection on loopback: producer threads share the connecting
 * handle, consumer threads the listening one; not BROADCAST) or "tcp-peers"
 * (each producer thread a client of its own, the consumer threads sharing
 * one listening handle with max_peers) or "memory-slabs" (as memory, the ring
 * carved from slabs whose memory held other bytes before: it must start out
 * zero all the same) or "memory-leases" (as memory, with PSYNE_F_LEASES:
 * MP producers claim from leases, and a message of another producer may come
 * before one claimed earlier; each producer's order is still checked).
 *
 * Every message is stamped with producer id, sequence number and a checksum
 * of a payload of random length (24 bytes of stamp + 0..4000 bytes). Producers
 * claim more than they commit now and then (pads in MP modes) and abort some
 * claims. Consumers use every receive form (single, held views, batch, drain)
 * and check that nothing is lost, duplicated, reordered per producer or
 * corrupted. BROADCAST: every subscriber must see every message in order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "free_port.h"
#include "psyne.h"

#ifndef STRESS_MODE
#error "build with -DSTRESS_MODE=PSYNE_MODE_..."
#endif

#define MAX_THREADS 8
#define MAX_EXTRA 4000
#define T_STAMPED (PSYNE_TYPE_USER_MIN + 7)

struct stamp {
    uint32_t producer;
    uint32_t extra; /* payload bytes after the stamp */
    uint64_t seq;
    uint64_t checksum;
};

static char uri[128] = "memory://stress";
static unsigned n_prod, n_cons;
static uint64_t per_producer;
static uint64_t capacity;
/* tcp: the two ends of one connection, shared by the threads of each side */
static psyne_channel *tcp_send_end, *tcp_receive_end;
static _Atomic unsigned tcp_producers_left;

/* What every consumer records, in memory shared by all processes (a memfd
 * that forked and exec'd children map too). */
struct book {
    _Atomic uint64_t total_received;
    _Atomic uint32_t producers_open; /* the start gate: see producer() */
    _Atomic uint64_t seen[];         /* MC modes: one bit per message, per producer */
};
static struct book *book;
static _Atomic uint64_t *seen[MAX_THREADS];

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* The payload is a function of (producer, seq) so the checksum also proves
 * the bytes are the ones that producer wrote for that message. */
static uint64_t fill_or_check(uint8_t *p, uint32_t n, uint32_t producer, uint64_t seq, int fill)
{
    uint64_t s = (seq + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)producer << 56), sum = 0;
    for (uint32_t i = 0; i < n; i += 8) {
        uint64_t v = xorshift(&s);
        uint32_t k = n - i < 8 ? n - i : 8;
        if (fill)
            memcpy(p + i, &v, k);
        uint64_t got = 0;
        memcpy(&got, p + i, k);
        sum = (sum ^ got) * 0x100000001b3ull;
    }
    return sum;
}

static psyne_slabs *slabs; /* memory-slabs */
static bool leases;        /* memory-leases */

static struct psyne_options options(int role)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.slabs = slabs;
    o.flags = leases ? PSYNE_F_LEASES : 0;
    o.mode = STRESS_MODE;
    o.capacity = capacity;
    o.role = role;
    /* short spin so the futex path is exercised on this loaded 2-core box */
    o.spin_ns = 2000;
    o.yield_ns = 20000;
    return o;
}

static void *producer(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    struct psyne_options o = options(PSYNE_ROLE_PRODUCER);
    o.open_timeout_ns = 60 * 1000000000ll; /* tcp-peers: connects */
    psyne_channel *ch = tcp_send_end;
    if (!ch)
        CHECK_RC(psyne_channel_open(&ch, uri, &o), 0);
    /* The last producer to close ends the stream, so none may finish before
     * every one has opened (a slow start on a loaded machine would otherwise
     * shut the channel down under a producer that has yet to open it). */
    atomic_fetch_add(&book->producers_open, 1);
    while (atomic_load(&book->producers_open) < n_prod)
        usleep(100);
    uint64_t rnd = 0x1234567ull + id * 7919;
    uint32_t max_extra = (uint32_t)(capacity / 4 < MAX_EXTRA ? capacity / 4 : MAX_EXTRA);
    for (uint64_t seq = 0; seq < per_producer;) {
        if ((xorshift(&rnd) & 7) == 0) { /* now and then a batch of claims */
            struct psyne_claimed c[4];
            uint32_t lengths[4];
            uint32_t room = (uint32_t)(sizeof(struct stamp) + max_extra / 4);
            int k = psyne_claim_batch(ch, room, c, 4, PSYNE_FOREVER);
            CHECK(k >= 1 && k <= 4);
            unsigned n = (unsigned)(xorshift(&rnd) % (unsigned)(k + 1)); /* the rest is given up */
            if (n > per_producer - seq)
                n = (unsigned)(per_producer - seq);
            for (unsigned i = 0; i < n; i++, seq++) {
                struct stamp *st = c[i].data;
                st->producer = id;
                st->extra = (uint32_t)(xorshift(&rnd) % (max_extra / 4 + 1));
                st->seq = seq;
                st->checksum = fill_or_check((uint8_t *)(st + 1), st->extra, id, seq, 1);
                lengths[i] = (uint32_t)sizeof *st + st->extra;
            }
            CHECK_RC(psyne_commit_batch(ch, c, n, lengths, T_STAMPED), 0);
            continue;
        }
        uint32_t extra = (uint32_t)(xorshift(&rnd) % (max_extra + 1));
        uint32_t slack = (xorshift(&rnd) & 3) == 0 ? (uint32_t)(xorshift(&rnd) % 64) : 0;
        struct psyne_claimed c;
        CHECK_RC(psyne_claim(ch, sizeof(struct stamp) + extra + slack, &c, PSYNE_FOREVER), 0);
        if ((xorshift(&rnd) & 63) == 0) { /* give some claims up */
            CHECK_RC(psyne_abort(ch, &c), 0);
            continue;
        }
        struct stamp *st = c.data;
        st->producer = id;
        st->extra = extra;
        st->seq = seq;
        st->checksum = fill_or_check((uint8_t *)(st + 1), extra, id, seq, 1);
        CHECK_RC(psyne_commit(ch, &c, sizeof *st + extra, T_STAMPED), 0);
        seq++;
    }
    /* The last producer to close ends the stream (tcp: once the receiving
     * end has acknowledged everything). */
    if (!tcp_send_end || atomic_fetch_sub(&tcp_producers_left, 1) == 1)
        psyne_channel_close(ch);
    return NULL;
}

struct consumer_state {
    unsigned id;
    uint64_t next[MAX_THREADS]; /* per producer: next expected (exact) or floor (MC) */
    uint64_t count;
};

static void verify(struct consumer_state *cs, const struct psyne_msg *m)
{
    CHECK(m->type == T_STAMPED);
    CHECK(m->length >= sizeof(struct stamp));
    const struct stamp *st = m->data;
    CHECK(st->producer < n_prod);
    CHECK(m->length == sizeof *st + st->extra);
    CHECK(st->checksum == fill_or_check((uint8_t *)(st + 1), st->extra, st->producer, st->seq, 0));
    uint64_t *next = &cs->next[st->producer];
    int competing = STRESS_MODE == PSYNE_MODE_SPMC || STRESS_MODE == PSYNE_MODE_MPMC;
    if (competing) {
        CHECK(st->seq >= *next); /* per producer, each consumer sees increasing sequences */
        uint64_t bit = 1ull << (st->seq & 63);
        uint64_t old = atomic_fetch_or(&seen[st->producer][st->seq >> 6], bit);
        if (old & bit)
            fprintf(stderr, "consumer %u: producer %u seq %llu delivered twice\n", cs->id, st->producer,
                    (unsigned long long)st->seq);
        CHECK(!(old & bit)); /* never delivered twice */
    } else {
        if (st->seq != *next)
            fprintf(stderr, "consumer %u: producer %u seq %llu, expected %llu\n", cs->id, st->producer,
                    (unsigned long long)st->seq, (unsigned long long)*next);
        CHECK(st->seq == *next); /* exactly the next one: nothing lost or reordered */
    }
    *next = st->seq + 1;
    cs->count++;
}

static void drain_cb(void *arg, const struct psyne_msg *m)
{
    verify(arg, m);
}

static void *consumer(void *arg)
{
    struct consumer_state *cs = arg;
    struct psyne_options o = options(PSYNE_ROLE_CONSUMER);
    psyne_channel *ch = tcp_receive_end;
    if (!ch)
        CHECK_RC(psyne_channel_open(&ch, uri, &o), 0);
    int single_consumer = STRESS_MODE != PSYNE_MODE_SPMC && STRESS_MODE != PSYNE_MODE_MPMC;
    for (uint64_t round = 0;; round++) {
        int rc;
        switch (round % 4) {
        case 0: { /* one at a time */
            struct psyne_msg m;
            rc = psyne_receive(ch, &m, PSYNE_FOREVER);
            if (rc == 0) {
                verify(cs, &m);
                CHECK_RC(psyne_release(ch, &m), 0);
            }
            break;
        }
        case 1: { /* hold up to three views, then release them */
            struct psyne_msg m[3];
            int held = 0;
            rc = 0;
            while (held < 3 && (rc = psyne_receive(ch, &m[held], held ? PSYNE_NONBLOCK : PSYNE_FOREVER)) == 0)
                verify(cs, &m[held++]);
            if (held) {
                if (single_consumer) {
                    /* the last view of each peer frees the earlier ones of
                     * that peer (tcp-peers: each client is a ring of its own) */
                    for (int i = held - 1; i >= 0; i--) {
                        bool later_of_same_peer = false;
                        for (int j = i + 1; j < held; j++)
                            later_of_same_peer |= m[j].peer == m[i].peer;
                        if (!later_of_same_peer)
                            CHECK_RC(psyne_release(ch, &m[i]), 0);
                    }
                } else {
                    for (int i = held - 1; i >= 0; i--) /* out of order on purpose */
                        CHECK_RC(psyne_release(ch, &m[i]), 0);
                }
                rc = 0;
            }
            break;
        }
        case 2: { /* batch */
            struct psyne_msg m[32];
            rc = psyne_receive_batch(ch, m, 32, PSYNE_FOREVER);
            if (rc > 0) {
                for (int i = 0; i < rc; i++)
                    verify(cs, &m[i]);
                CHECK_RC(psyne_release_batch(ch, m, (unsigned)rc), 0);
                rc = 0;
            }
            break;
        }
        default:
            rc = psyne_drain(ch, drain_cb, cs, 100, PSYNE_FOREVER);
            if (rc > 0)
                rc = 0;
            break;
        }
        if (rc == -EPIPE)
            break;
        CHECK_RC(rc, 0);
    }
    atomic_fetch_add(&book->total_received, cs->count);
    int competing = STRESS_MODE == PSYNE_MODE_SPMC || STRESS_MODE == PSYNE_MODE_MPMC;
    for (unsigned p = 0; p < n_prod && !competing; p++)
        CHECK(cs->next[p] == per_producer); /* every sequence, in order */
    if (!tcp_receive_end)
        psyne_channel_close(ch);
    return NULL;
}

/* ---- roles as threads or as processes ---- */

static int book_fd = -1;
static char self_exe[4096];
static const char *transport = "memory";

static void map_book(int fd)
{
    size_t words = per_producer / 64 + 1;
    size_t len = sizeof(struct book) + n_prod * words * sizeof(uint64_t);
    if (fd < 0) {
        CHECK((fd = memfd_create("stress-book", 0)) >= 0); /* inherited by exec'd children */
        CHECK(ftruncate(fd, (off_t)len) == 0);
    }
    book_fd = fd;
    book = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(book != MAP_FAILED);
    for (unsigned p = 0; p < n_prod; p++)
        seen[p] = &book->seen[p * words];
}

static void run_role(int is_producer, unsigned id)
{
    if (is_producer) {
        producer((void *)(uintptr_t)id);
    } else {
        struct consumer_state cs;
        memset(&cs, 0, sizeof cs);
        cs.id = id;
        consumer(&cs);
    }
}

struct role {
    pthread_t thread;
    pid_t pid;
    int is_producer;
    struct consumer_state cs;
};

static void *consumer_thread(void *arg)
{
    return consumer(&((struct role *)arg)->cs);
}

/* memory and tcp run roles as threads of this process; ipc as processes */
static bool roles_are_threads(void)
{
    return strncmp(transport, "memory", 6) == 0 || strncmp(transport, "tcp", 3) == 0;
}

static void start_role(struct role *r, int is_producer, unsigned id)
{
    r->is_producer = is_producer;
    r->cs.id = id;
    if (roles_are_threads()) {
        if (is_producer)
            pthread_create(&r->thread, NULL, producer, (void *)(uintptr_t)id);
        else
            pthread_create(&r->thread, NULL, consumer_thread, r);
        return;
    }
    fflush(NULL);
    r->pid = fork();
    CHECK(r->pid >= 0);
    if (r->pid)
        return;
    if (strcmp(transport, "ipc-exec") == 0) { /* a program of its own, as a user would start it */
        char a[6][32];
        snprintf(a[0], 32, "%u", n_prod);
        snprintf(a[1], 32, "%u", n_cons);
        snprintf(a[2], 32, "%llu", (unsigned long long)per_producer);
        snprintf(a[3], 32, "%llu", (unsigned long long)capacity);
        snprintf(a[4], 32, "%u", id);
        snprintf(a[5], 32, "%d", book_fd);
        execl(self_exe, self_exe, a[0], a[1], a[2], a[3], "child", uri, is_producer ? "producer" : "consumer", a[4],
              a[5], (char *)NULL);
        perror("execl");
        _exit(127);
    }
    run_role(is_producer, id);
    _exit(0);
}

static void join_role(struct role *r)
{
    if (roles_are_threads()) {
        pthread_join(r->thread, NULL);
        return;
    }
    int status;
    CHECK(waitpid(r->pid, &status, 0) == r->pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "%s %d ended with status 0x%x\n", r->is_producer ? "producer" : "consumer", r->pid, status);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* tcp: a listening end for the consumers and a connected end for the
 * producers, on a port the kernel picks. */
static void open_tcp_link(bool peers)
{
    CHECK(STRESS_MODE != PSYNE_MODE_BROADCAST); /* not offered over tcp:// */
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", test_free_port());
    struct psyne_options o = options(PSYNE_ROLE_ANY);
    o.flags = PSYNE_F_LISTEN;
    o.link_timeout_ns = 120 * 1000000000ll; /* a sanitized build on a loaded machine is slow */
    o.max_peers = peers ? n_prod : 0;
    CHECK_RC(psyne_channel_open(&tcp_receive_end, uri, &o), 0);
    if (peers) /* each producer connects on its own */
        return;
    o.flags = 0;
    o.max_peers = 0;
    o.open_timeout_ns = 60 * 1000000000ll;
    CHECK_RC(psyne_channel_open(&tcp_send_end, uri, &o), 0);
    atomic_store(&tcp_producers_left, n_prod);
}

int main(int argc, char **argv)
{
    if (argc == 10 && strcmp(argv[5], "child") == 0) { /* ipc-exec: one role of a run */
        n_prod = (unsigned)atoi(argv[1]);
        n_cons = (unsigned)atoi(argv[2]);
        per_producer = strtoull(argv[3], NULL, 10); /* already scaled */
        capacity = strtoull(argv[4], NULL, 10);
        snprintf(uri, sizeof uri, "%s", argv[6]);
        map_book(atoi(argv[9]));
        run_role(strcmp(argv[7], "producer") == 0, (unsigned)atoi(argv[8]));
        return 0;
    }
    if (argc != 5 && argc != 6) {
        fprintf(stderr,
                "usage: %s PRODUCERS CONSUMERS MESSAGES_PER_PRODUCER CAPACITY "
                "[memory|memory-slabs|memory-leases|ipc-fork|ipc-exec|tcp|tcp-peers]\n",
                argv[0]);
        return 2;
    }
    n_prod = (unsigned)atoi(argv[1]);
    n_cons = (unsigned)atoi(argv[2]);
    per_producer = test_scale(strtoull(argv[3], NULL, 10));
    capacity = strtoull(argv[4], NULL, 10);
    if (argc == 6)
        transport = argv[5];
    bool tcp_peers = strcmp(transport, "tcp-peers") == 0, tcp = strcmp(transport, "tcp") == 0 || tcp_peers;
    bool memory = strncmp(transport, "memory", 6) == 0;
    leases = strcmp(transport, "memory-leases") == 0;
    CHECK(strcmp(transport, "memory") == 0 || strcmp(transport, "memory-slabs") == 0 || leases ||
          strcmp(transport, "ipc-fork") == 0 || strcmp(transport, "ipc-exec") == 0 || tcp);
    if (strcmp(transport, "memory-slabs") == 0) {
        struct psyne_slab_options so;
        psyne_slab_options_init(&so);
        so.slab_size = 4 * capacity;
        CHECK_RC(psyne_slabs_create(&so, &slabs), 0);
        void *junk; /* where the ring will be carved: every byte nonzero first */
        CHECK_RC(psyne_slab_alloc(slabs, so.slab_size, &junk), 0);
        memset(junk, 0xff, so.slab_size);
        CHECK_RC(psyne_slab_free(slabs, junk), 0);
    }
    if (!memory && !tcp) /* a name of its own: ctest runs tests side by side */
        snprintf(uri, sizeof uri, "ipc://stress-%d-%d", STRESS_MODE, (int)getpid());
    CHECK(readlink("/proc/self/exe", self_exe, sizeof self_exe - 1) > 0);
    CHECK(n_prod >= 1 && n_prod <= MAX_THREADS && n_cons >= 1 && n_cons <= MAX_THREADS);
    alarm(600); /* a hang is a failure, not a stuck CI job */
    map_book(-1);

    /* Create the channel before any role runs, and open every consumer
     * before producers start (BROADCAST subscribers see what follows). */
    struct psyne_options o = options(PSYNE_ROLE_CONSUMER);
    psyne_channel *keep = NULL;
    if (tcp)
        open_tcp_link(tcp_peers);
    else
        CHECK_RC(psyne_channel_open(&keep, uri, &o), 0);
    struct role prod[MAX_THREADS], cons[MAX_THREADS];
    memset(prod, 0, sizeof prod);
    memset(cons, 0, sizeof cons);
    for (unsigned c = 0; c < n_cons; c++)
        start_role(&cons[c], 0, c);
    if (STRESS_MODE == PSYNE_MODE_BROADCAST) { /* subscribed before the first message is sent */
        struct psyne_stats st;
        /* subscribed, and counted as open consumers: closing `keep` must
         * not look like the last consumer leaving */
        for (int tries = 0; tries < 10000; tries++) {
            CHECK_RC(psyne_channel_stats(keep, &st), 0);
            if (st.subscribers == (int)n_cons + 1 && st.consumers == (int)n_cons + 1)
                break;
            usleep(1000);
        }
        CHECK(st.subscribers == (int)n_cons + 1 && st.consumers == (int)n_cons + 1);
    } else {
        usleep(20000);
    }
    if (STRESS_MODE == PSYNE_MODE_BROADCAST) { /* the extra subscriber must not hold the producer back */
        psyne_channel_close(keep);
        keep = NULL;
    }
    for (unsigned p = 0; p < n_prod; p++)
        start_role(&prod[p], 1, p);
    for (unsigned p = 0; p < n_prod; p++)
        join_role(&prod[p]);
    /* tcp-peers: clients come and go, so the listening handle's receives
     * end only when it is shut down; each client's close returned once
     * everything it sent was in the server's rings */
    if (tcp_peers)
        CHECK_RC(psyne_channel_shutdown(tcp_receive_end), 0);
    for (unsigned c = 0; c < n_cons; c++)
        join_role(&cons[c]);

    struct psyne_stats st;
    if (tcp) { /* every message left one end and arrived at the other */
        CHECK_RC(psyne_channel_stats(tcp_receive_end, &st), 0);
        if (st.msgs_in != per_producer * n_prod || st.in_use || st.tcp_protocol_errors)
            fprintf(stderr, "tcp receiving end: msgs_in %llu of %llu, in_use %llu, protocol errors %llu\n",
                    (unsigned long long)st.msgs_in, (unsigned long long)(per_producer * n_prod),
                    (unsigned long long)st.in_use, (unsigned long long)st.tcp_protocol_errors);
        CHECK(st.msgs_in == per_producer * n_prod && st.in_use == 0 && st.tcp_protocol_errors == 0);
        printf("tcp: %llu messages in %llu recvmsg calls\n", (unsigned long long)st.msgs_in,
               (unsigned long long)st.tcp_recv_calls);
        psyne_channel_close(tcp_receive_end);
    }
    if (keep) {
        CHECK_RC(psyne_channel_stats(keep, &st), 0);
        if (st.in_use)
            fprintf(stderr, "in_use %llu after the run (out %llu in %llu)\n", (unsigned long long)st.in_use,
                    (unsigned long long)st.msgs_out, (unsigned long long)st.msgs_in);
        CHECK(st.in_use == 0);
        CHECK(st.msgs_out == per_producer * n_prod && st.msgs_in == st.msgs_out);
        CHECK(st.bytes_in == st.bytes_out);
        CHECK(st.peers_lost == 0 && st.claims_recovered == 0);
    }
    uint64_t expect = per_producer * n_prod * (STRESS_MODE == PSYNE_MODE_BROADCAST ? n_cons : 1);
    CHECK(atomic_load(&book->total_received) == expect);
    if (STRESS_MODE == PSYNE_MODE_SPMC || STRESS_MODE == PSYNE_MODE_MPMC)
        for (unsigned p = 0; p < n_prod; p++)
            for (uint64_t s = 0; s < per_producer; s++)
                CHECK(atomic_load(&seen[p][s >> 6]) & (1ull << (s & 63))); /* every sequence, once */
    psyne_channel_close(keep);                                             /* NULL (tcp) is accepted */
    if (slabs) {                                                           /* every ring went back */
        struct psyne_slab_stats ss;
        CHECK_RC(psyne_slabs_stats(slabs, &ss), 0);
        CHECK(ss.allocations == 0 && ss.allocs_total >= 2 && ss.slabs == 1);
        CHECK_RC(psyne_slabs_destroy(slabs), 0);
    }
    printf("stress mode=%d producers=%u consumers=%u messages=%llu received=%llu transport=%s: ok\n", STRESS_MODE,
           n_prod, n_cons, (unsigned long long)(per_producer * n_prod), (unsigned long long)expect, transport);
    return 0;
}
