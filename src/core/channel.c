/* SPDX-License-Identifier: MIT */
/*
 * channel.c - the public channel API: argument and option checks, roles,
 * blocking with timeouts on top of the ring's non-blocking calls, MP
 * counting and statistics. What differs between transports is asked of the
 * handle's port (transport/transport.h); this file names none of them.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../ring/fastpath.h"
#include "../transport/transport.h"
#include "channel.h"
#include "../base/error.h"
#include "../base/uri.h"

struct psyne_channel {
    /* First, where the inline psyne_claim/psyne_commit find it: a copy of
     * tx->lane for SP producer handles that may use it, else tail NULL. */
    struct psy_lane lane;
    /* MP producers count here, each handle on its own line, instead of
     * all producers incrementing one shared counter on every commit:
     * {msgs, bytes} of any thread, then {msgs, bytes} of the owner (see
     * count_mp). */
    alignas(PSY_CACHE_BLOCK) psy_atomic64 mp_msgs;
    psy_atomic64 mp_bytes;
    psy_atomic64 mp_own_msgs;
    psy_atomic64 mp_own_bytes;
    _Atomic(uintptr_t) mp_owner; /* the thread that counts without a locked add (count_mp) and uses the
                                    lease, 0: none yet */
    /* The transport's: the rings we claim in (tx) and receive from (ring),
     * the single-consumer reader (NULL in MC modes), the role, the table. */
    alignas(PSY_CACHE_BLOCK) struct psy_port port;
    psy_atomic64 *mp_counts;    /* {msgs, bytes, own msgs, own bytes}: mp_msgs here, or the port's counters */
    struct psyne_channel *next; /* in tx->handles */
    bool sp_fast;               /* may take the inline SP claim/commit */
    bool mp_fast;               /* MP producer on a plain ring: psyne_claim goes straight to the ring */
    bool sc_fast;               /* may take the inline SC receive */
    struct psy_lease *lease;    /* mp_fast on an in-process ring: claims come from a lease (lease.c) */
    int sub;                    /* BROADCAST subscriber slot, else -1 */
    struct psy_reader reader_state;
};

/* Whether the port asks for a step of its table on this path. */
static inline bool port_is(const psyne_channel *ch, uint32_t flag)
{
    return (ch->port.flags & flag) != 0;
}

/*
 * Counts n messages of `bytes` committed on an MP handle. One thread, the
 * first to claim or commit on the handle, owns counts[2..3] (and the
 * handle's lease, lease.c) and adds to them with a plain load and store;
 * other threads sharing the handle add atomically to counts[0..1]. A locked
 * add after a commit waits for every store before it, the message's among
 * them, to reach lines the consumers hold. A thread that exits leaves
 * nothing pending, so a new thread whose thread_tag lands at its address
 * may own the counts after it.
 */
static __thread char thread_tag __attribute__((tls_model("initial-exec"))); /* its address names the thread */

static bool owns_handle(psyne_channel *ch)
{
    uintptr_t self = (uintptr_t)&thread_tag, owner = atomic_load_explicit(&ch->mp_owner, memory_order_relaxed);
    return psy_likely(owner == self) ||
           (owner == 0 && atomic_compare_exchange_strong_explicit(&ch->mp_owner, &owner, self, memory_order_relaxed,
                                                                  memory_order_relaxed));
}

static void count_mp(psyne_channel *ch, uint64_t n, uint64_t bytes)
{
    psy_atomic64 *c = ch->mp_counts;
    if (owns_handle(ch)) {
        atomic_store_explicit(&c[2], atomic_load_explicit(&c[2], memory_order_relaxed) + n, memory_order_relaxed);
        atomic_store_explicit(&c[3], atomic_load_explicit(&c[3], memory_order_relaxed) + bytes, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&c[0], n, memory_order_relaxed);
    atomic_fetch_add_explicit(&c[1], bytes, memory_order_relaxed);
}

_Static_assert(offsetof(struct psyne_channel, lane) == 0, "psyne/inline.h reads the lane at the handle's address");
_Static_assert(offsetof(struct psyne_channel, mp_own_bytes) == offsetof(struct psyne_channel, mp_msgs) + 24,
               "count_mp's four counters in a row");

struct psy_ring *psy_channel_ring(psyne_channel *ch)
{
    return ch->port.ring;
}

void psyne_options_init(struct psyne_options *opt)
{
    if (!opt)
        return;
    memset(opt, 0, sizeof *opt);
    opt->capacity = 0; /* PSYNE_DEFAULT_CAPACITY when creating; any size when joining */
    opt->mode = PSYNE_MODE_SPSC;
    opt->role = PSYNE_ROLE_ANY;
    opt->wait = PSYNE_WAIT_ADAPTIVE;
    opt->spin_ns = -1;
    opt->yield_ns = -1;
}

static int check_options(const struct psyne_options *o)
{
    if (o->mode < PSYNE_MODE_SPSC || o->mode > PSYNE_MODE_BROADCAST)
        return psy_fail(-EINVAL, "mode %d is not a psyne_mode", o->mode);
    if (o->role < PSYNE_ROLE_ANY || o->role > PSYNE_ROLE_CONSUMER)
        return psy_fail(-EINVAL, "role %d is not a psyne_role", o->role);
    if (o->mode == PSYNE_MODE_BROADCAST && o->role == PSYNE_ROLE_ANY)
        return psy_fail(-EINVAL, "a BROADCAST handle must be PSYNE_ROLE_PRODUCER or PSYNE_ROLE_CONSUMER");
    if (o->wait != PSYNE_WAIT_ADAPTIVE && o->wait != PSYNE_WAIT_SPIN)
        return psy_fail(-EINVAL, "wait %d is not a psyne_wait", o->wait);
    const uint32_t known = PSYNE_F_NO_PREFAULT | PSYNE_F_LISTEN | PSYNE_F_HUGEPAGES | PSYNE_F_MLOCK |
                           PSYNE_F_NUMA_BIND | PSYNE_F_LEASES | PSYNE_F_IPC_OTHER_OWNER;
    if (o->flags & ~known)
        return psy_fail(-EINVAL, "unknown option flags 0x%x", o->flags & ~known);
    if (o->capacity > PSYNE_MAX_CAPACITY)
        return psy_fail(-EINVAL, "capacity %llu is above PSYNE_MAX_CAPACITY (%llu)", (unsigned long long)o->capacity,
                        (unsigned long long)PSYNE_MAX_CAPACITY);
    if (o->numa_node && !(o->flags & PSYNE_F_NUMA_BIND))
        return psy_fail(-EINVAL, "numa_node is set but PSYNE_F_NUMA_BIND is not");
    struct psy_place_request req;
    int rc = psy_place_request_make(o->flags, o->numa_node, false, &req); /* a node that is not online */
    if (rc)
        return rc;
    if (o->link_timeout_ns < 0 && o->link_timeout_ns != PSYNE_FOREVER)
        return psy_fail(-EINVAL, "link_timeout_ns must be > 0, 0 (default) or PSYNE_FOREVER");
    if (o->open_timeout_ns < 0 && o->open_timeout_ns != PSYNE_FOREVER)
        return psy_fail(-EINVAL, "open_timeout_ns must be > 0, 0 (default) or PSYNE_FOREVER");
    if (o->peer_timeout_ns < 0)
        return psy_fail(-EINVAL, "peer_timeout_ns must be >= 0");
    for (size_t i = 0; i < sizeof o->reserved / sizeof o->reserved[0]; i++)
        if (o->reserved[i])
            return psy_fail(-EINVAL,
                            "psyne_options.reserved[%zu] is set: an option of a later psyne version "
                            "(or options not made with psyne_options_init)",
                            i);
    return 0;
}

/* The open-handle counts a handle of this role is in (PSY_SLOT_*). */
static unsigned role_bits(int role)
{
    return (role != PSYNE_ROLE_CONSUMER ? PSY_SLOT_PRODUCER : 0) |
           (role != PSYNE_ROLE_PRODUCER ? PSY_SLOT_CONSUMER : 0);
}

/* After the transport opened the port: the handle's part of its rings. A
 * handle that is not its rings' only user is counted in them. */
static int join_rings(psyne_channel *ch, const char *uri)
{
    struct psy_port *p = &ch->port;
    struct psy_ring *r = p->ring;
    if (r->mode == PSYNE_MODE_BROADCAST && p->role == PSYNE_ROLE_ANY) /* joined with NULL options */
        return psy_fail(-EINVAL, "%s is a BROADCAST channel: open it with PSYNE_ROLE_PRODUCER or _CONSUMER", uri);
    if (r->mode == PSYNE_MODE_BROADCAST && p->role == PSYNE_ROLE_CONSUMER) {
        ch->sub = psy_ring_subscribe(r);
        if (ch->sub < 0)
            return psy_fail(-EBUSY, "%s already has %d subscribers", uri, PSYNE_MAX_SUBSCRIBERS);
    }
    ch->mp_counts = p->counters ? p->counters : &ch->mp_msgs;
    if (!r->mc) {
        psy_ring_reader_init(r, ch->sub, &ch->reader_state);
        p->reader = &ch->reader_state;
        if (p->role != PSYNE_ROLE_PRODUCER)
            psy_ring_reader_attach(p->reader);
    }
    /* A plain ring: one that neither moves nor has a transport to tell of
     * commits, where claims may go straight to the ring */
    bool plain = !port_is(ch, PSY_PORT_MOVES | PSY_PORT_NOTIFY);
    ch->sp_fast = !p->tx->mp && p->role != PSYNE_ROLE_CONSUMER;
    ch->mp_fast = p->tx->mp && p->role != PSYNE_ROLE_CONSUMER && plain;
    ch->sc_fast = p->reader && p->role != PSYNE_ROLE_PRODUCER;
    if (ch->mp_fast)
        ch->lease = psy_lease_take(p->tx);
    /* The inline calls: plain rings whose producer does not count */
    if (ch->sp_fast && plain && p->tx->walk_counts)
        ch->lane = p->tx->lane;
    pthread_mutex_lock(&p->tx->handles_lock);
    ch->next = p->tx->handles;
    p->tx->handles = ch;
    pthread_mutex_unlock(&p->tx->handles_lock);
    if (port_is(ch, PSY_PORT_ALONE)) /* the handle is the rings' only user: no counts to keep */
        return 0;
    struct psy_wait_block *w = &r->sh->wait;
    if (p->role != PSYNE_ROLE_CONSUMER)
        atomic_fetch_add_explicit(&w->producers, 1, memory_order_relaxed);
    if (p->role != PSYNE_ROLE_PRODUCER)
        atomic_fetch_add_explicit(&w->consumers, 1, memory_order_relaxed);
    if (p->tp->set_roles)
        p->tp->set_roles(p, role_bits(p->role), ch->sub);
    return 0;
}

int psyne_channel_open(psyne_channel **out, const char *uri, const struct psyne_options *opt)
{
    psy_clear_error();
    if (!out)
        return psy_fail(-EINVAL, "out is NULL");
    *out = NULL;
    struct psyne_options defaults;
    bool join_any = !opt; /* NULL: join whatever exists under the name */
    if (!opt) {
        psyne_options_init(&defaults);
        opt = &defaults;
    }
    int rc = check_options(opt);
    if (rc)
        return rc;
    struct psy_uri u;
    if ((rc = psy_uri_parse(uri, &u)) != 0)
        return rc;
    const struct psy_transport *tp = psy_transport_find(u.scheme);
    if (!tp)
        return psy_fail(-EINVAL, "URI \"%.64s\" does not start with memory://, ipc:// or tcp://", uri);
    if ((rc = tp->check_options(opt)) != 0)
        return rc;

    psy_wait_init();
    psyne_channel *ch = aligned_alloc(PSY_CACHE_BLOCK, sizeof *ch);
    if (!ch)
        return psy_fail(-ENOMEM, "out of memory");
    memset(ch, 0, sizeof *ch);
    ch->sub = -1;
    ch->mp_counts = &ch->mp_msgs;
    ch->port.tp = tp;
    ch->port.role = opt->role;
    if ((rc = tp->open(&ch->port, u.name, opt, join_any)) != 0) {
        free(ch);
        return rc;
    }
    if (!port_is(ch, PSY_PORT_PEERS) && (rc = join_rings(ch, uri)) != 0) {
        if (ch->sub >= 0)
            psy_ring_unsubscribe(ch->port.ring, ch->sub);
        ch->port.tp->close(&ch->port);
        free(ch);
        return rc;
    }
    *out = ch;
    return 0;
}

int psyne_channel_shutdown(psyne_channel *ch)
{
    if (!ch)
        return psy_fail(-EINVAL, "channel is NULL");
    ch->port.tp->shutdown(&ch->port);
    return 0;
}

int psyne_channel_close(psyne_channel *ch)
{
    if (!ch)
        return 0;
    struct psy_port *p = &ch->port;
    if (port_is(ch, PSY_PORT_ALONE | PSY_PORT_PEERS)) {
        p->tp->close(p);
        free(ch);
        return 0;
    }
    /* Like a pipe: when the last handle that could produce (or consume) goes,
     * nobody can make progress on the other side any more. */
    struct psy_ring *r = p->home;
    struct psy_wait_block *w = &r->sh->wait;
    bool last = false;
    if (p->tp->set_roles) /* a survivor must not uncount us again if we die now */
        p->tp->set_roles(p, 0, -1);
    psy_lease_give_back(r, ch->lease); /* before the count: the last producer's close shuts the ring down */
    if (p->role != PSYNE_ROLE_CONSUMER)
        last |= atomic_fetch_sub_explicit(&w->producers, 1, memory_order_acq_rel) == 1;
    if (p->role != PSYNE_ROLE_PRODUCER)
        last |= atomic_fetch_sub_explicit(&w->consumers, 1, memory_order_acq_rel) == 1;
    if (last)
        p->tp->shutdown(p);
    pthread_mutex_lock(&r->handles_lock); /* its counts stay in the ring's totals */
    for (psyne_channel **h = &r->handles; *h; h = &(*h)->next) {
        if (*h == ch) {
            *h = ch->next;
            break;
        }
    }
    atomic_fetch_add_explicit(&r->sh->prod.msgs, psy_mp_counted(&ch->mp_msgs, 0), memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sh->prod.bytes, psy_mp_counted(&ch->mp_msgs, 1), memory_order_relaxed);
    pthread_mutex_unlock(&r->handles_lock);
    if (ch->sub >= 0)
        psy_ring_unsubscribe(r, ch->sub);
    p->tp->close(p);
    free(ch);
    return 0;
}

/* ipc: a caller that polls without ever waiting must also notice dead
 * peers (or it would poll at a dead producer's claim forever): every 1024th
 * fruitless non-blocking call looks at the clock, and one call per
 * peer_timeout_ns runs the check. */
static void poll_peers(struct psy_ring *r)
{
    if (!r->check_peers || atomic_fetch_add_explicit(&r->polls, 1, memory_order_relaxed) % 1024 != 1023)
        return;
    int64_t now = psy_now_ns();
    int64_t next = atomic_load_explicit(&r->next_peer_check, memory_order_relaxed);
    if (now >= next && atomic_compare_exchange_strong(&r->next_peer_check, &next, now + r->peer_timeout_ns))
        r->check_peers(r);
}

/* ---- producer side ---- */

/* Whether a message of max_len bytes can ever fit the ring (PSYNE_MAX_MESSAGE). */
static bool message_fits(const struct psy_ring *r, size_t max_len)
{
    return max_len <= UINT32_MAX && PSYNE_RECORD_SIZE(max_len) + PSY_TERMINATOR <= r->cap;
}

/* A non-blocking receive that found nothing closes the idle leases that
 * other producers reserved space after (lease.c), so it sees every message
 * that no open claim comes before; every 1024th closes any idle lease (a
 * producer may be waiting for its space). True if it closed one: look again. */
static bool poll_leases(struct psy_ring *r)
{
    if (!r->leases)
        return false;
    uint32_t n = atomic_fetch_add_explicit(&r->lease_polls, 1, memory_order_relaxed);
    return psy_lease_unblock(r, n % 1024 == 1023);
}

struct claim_batch_try {
    struct psy_ring *ring;
    uint64_t need;
    struct psyne_claimed *claims;
    unsigned n;
};

static int claim_batch_once(void *ctx)
{
    struct claim_batch_try *t = ctx;
    if (psy_ring_closed(t->ring))
        return -EPIPE;
    return psy_ring_claim_batch(t->ring, t->need, t->claims, t->n);
}

/* Claims on ring r (the port's tx, or a peer's send ring), waiting as asked. */
static int claim_on(psyne_channel *ch, struct psy_ring *r, size_t max_len, struct psyne_claimed *c, unsigned n,
                    int64_t timeout_ns)
{
    struct psy_port *p = &ch->port;
    uint64_t need = PSYNE_RECORD_SIZE(max_len);
    if (!message_fits(r, max_len) && p->tp->grow && max_len <= UINT32_MAX && p->tp->grow(p, need) == 0)
        r = p->tp->producer(p); /* a segment chained large enough */
    if (!message_fits(r, max_len))
        return psy_fail(-EMSGSIZE, "a %zu-byte message needs %llu bytes; the ring has %llu%s", max_len,
                        (unsigned long long)need,
                        (unsigned long long)(p->tp->max_capacity ? p->tp->max_capacity(p) : r->cap),
                        p->tp->max_capacity ? " at most" : "");
    c[0].capacity = (uint32_t)max_len;
    struct claim_batch_try t = {r, need, c, n};
    int rc = claim_batch_once(&t);
    if (rc == -EAGAIN && p->tp->grow && p->tp->grow(p, need) == 0) { /* full: chain a larger segment */
        t.ring = r = p->tp->producer(p);
        rc = claim_batch_once(&t);
    }
    if (rc == -EBUSY)
        return psy_fail(rc, "this SP producer already holds an open claim (commit or abort it first)");
    if (rc != -EAGAIN)
        return rc;
    psy_ring_count_full(r);
    if (p->tp->space_wanted)
        p->tp->space_wanted(p);
    if (timeout_ns == PSYNE_NONBLOCK) {
        poll_peers(r);
        return -EAGAIN;
    }
    return psy_wait_loop(r, PSY_WAIT_SPACE, claim_batch_once, &t, timeout_ns);
}

/* A NULL handle or argument is -EINVAL everywhere (bindings pass what
 * their users give them); what kind of NULL, the detail says. */
#define CHECK_NULL(p)                                                                                                  \
    do {                                                                                                               \
        if (psy_unlikely((p) == NULL))                                                                                 \
            return psy_fail(-EINVAL, "%s: %s is NULL", __func__, #p);                                                  \
    } while (0)

int psyne_claim_batch(psyne_channel *ch, size_t max_len, struct psyne_claimed *c, unsigned n, int64_t timeout_ns)
{
    CHECK_NULL(ch);
    CHECK_NULL(c);
    if (ch->port.role == PSYNE_ROLE_CONSUMER)
        return psy_fail(-EPERM, "claim on a consumer handle");
    if (n == 0)
        return psy_fail(-EINVAL, "claim of 0 messages");
    if (port_is(ch, PSY_PORT_PEERS))
        return psy_fail(-EDESTADDRREQ, "a handle with max_peers sends to one peer: psyne_claim_to");
    if (ch->lease && owns_handle(ch)) /* what it claims now goes after what it claimed from the lease */
        psy_lease_stop(ch->port.tx, ch->lease);
    struct psy_ring *r = port_is(ch, PSY_PORT_MOVES) ? ch->port.tp->producer(&ch->port) : ch->port.tx;
    return claim_on(ch, r, max_len, c, n, timeout_ns);
}

int psyne_claim_to(psyne_channel *ch, uint32_t peer, size_t max_len, struct psyne_claimed *c, int64_t timeout_ns)
{
    CHECK_NULL(ch);
    CHECK_NULL(c);
    struct psy_port *p = &ch->port;
    if (!port_is(ch, PSY_PORT_PEERS))
        return peer == 0 ? psyne_claim(ch, max_len, c, timeout_ns)
                         : psy_fail(-EINVAL, "peer %u: only a tcp:// handle with max_peers has peers", peer);
    if (p->role == PSYNE_ROLE_CONSUMER)
        return psy_fail(-EPERM, "claim on a consumer handle");
    struct psy_ring *r = p->tp->peer_pin(p, peer);
    if (!r)
        return psy_fail(-ENOTCONN, "peer %u is not a client of this handle (any more)", peer);
    int rc = claim_on(ch, r, max_len, c, 1, timeout_ns);
    if (rc < 0) {
        p->tp->peer_unpin(p, peer);
        return rc;
    }
    c->psy_peer = peer;
    return 0;
}

int psy_claim_slow(psyne_channel *ch, size_t max_len, struct psyne_claimed *c, int64_t timeout_ns)
{
    CHECK_NULL(ch);
    CHECK_NULL(c);
    struct psy_ring *r = ch->port.tx;
    if (psy_unlikely(port_is(ch, PSY_PORT_MOVES)) && ch->sp_fast)
        r = ch->port.tp->producer(&ch->port);
    if (psy_likely((ch->sp_fast || ch->mp_fast) && message_fits(r, max_len) && !psy_ring_closed(r))) {
        c->capacity = (uint32_t)max_len;
        c->psy_batch = 1;
        uint64_t need = PSYNE_RECORD_SIZE(max_len);
        /* MP: one reservation, without the batch layer's second look at the
         * space (measurably faster), from the handle's lease where it has one */
        struct psy_lease *lease = ch->lease && owns_handle(ch) ? ch->lease : NULL;
        int rc = lease ? psy_lease_claim(r, lease, need, c) : 1;
        if (rc == 1)
            rc = ch->mp_fast ? psy_ring_claim(r, need, c) : psy_sp_claim(r, need, c);
        if (psy_likely(rc == 0))
            return 0;
    }
    /* everything else, waiting included: a batch of one */
    int rc = psyne_claim_batch(ch, max_len, c, 1, timeout_ns);
    return rc < 0 ? rc : 0;
}

int psyne_commit_batch(psyne_channel *ch, struct psyne_claimed *c, unsigned n, const uint32_t *lengths, uint32_t type)
{
    CHECK_NULL(ch);
    CHECK_NULL(c);
    if (n)
        CHECK_NULL(lengths);
    if (!c[0].psy_reserved || !c[0].psy_batch)
        return psy_fail(-EINVAL, "commit_batch of claims that are not one open psyne_claim_batch");
    if (n > c[0].psy_batch)
        return psy_fail(-EINVAL, "commit_batch of %u messages, the batch has %u", n, c[0].psy_batch);
    if (port_is(ch, PSY_PORT_PEERS))
        return psy_fail(-EINVAL, "a claim of psyne_claim_to is committed with psyne_commit");
    if (n && (type < PSYNE_TYPE_USER_MIN || type > PSYNE_TYPE_USER_MAX))
        return psy_fail(-EINVAL, "type %u is outside %u..%u", type, PSYNE_TYPE_USER_MIN, PSYNE_TYPE_USER_MAX);
    uint64_t bytes = 0;
    for (unsigned i = 0; i < n; i++) {
        if (lengths[i] > c[i].capacity)
            return psy_fail(-EINVAL, "message %u: %u bytes into a claim of %u", i, lengths[i], c[i].capacity);
        bytes += lengths[i];
    }
    psy_ring_commit_batch(ch->port.tx, c, n, lengths, type, bytes);
    if (port_is(ch, PSY_PORT_NOTIFY))
        ch->port.tp->committed(&ch->port);
    if (ch->port.tx->mp && n)
        count_mp(ch, n, bytes);
    return 0;
}

/* Commits (or aborts) a claim of psyne_claim_to on its peer's send ring. */
static int commit_to_peer(psyne_channel *ch, struct psyne_claimed *c, uint32_t length, uint32_t type, bool abort)
{
    struct psy_port *p = &ch->port;
    uint32_t peer = c->psy_peer;
    struct psy_ring *r = p->tp->peer_ring(p, peer);
    if (!r)
        return psy_fail(-EINVAL, "a claim for peer %u that is not open", peer);
    int rc = abort ? psy_ring_abort(r, c) : psy_ring_commit(r, c, length, type);
    if (rc == 0 && r->mp && !abort)
        count_mp(ch, 1, length);
    if (rc == 0)
        p->tp->peer_unpin(p, peer);
    return rc;
}

int psy_channel_commit(psyne_channel *ch, struct psyne_claimed *c, size_t length, uint32_t type)
{
    if (!c->psy_reserved)
        return psy_fail(-EINVAL, "commit of a claim that is not open");
    if (c->psy_batch != 1)
        return psy_fail(-EINVAL, "a claim of a batch is committed with psyne_commit_batch");
    if (length > c->capacity)
        return psy_fail(-EINVAL, "commit of %zu bytes into a claim of %u", length, c->capacity);
    if (psy_unlikely(port_is(ch, PSY_PORT_PEERS)))
        return commit_to_peer(ch, c, (uint32_t)length, type, false);
    struct psy_ring *tx = ch->port.tx;
    int rc = 0;
    if (!ch->lease || !psy_lease_commit(tx, ch->lease, c, (uint32_t)length, type, false))
        rc = psy_ring_commit(tx, c, (uint32_t)length, type);
    if (rc)
        return psy_fail(rc, "commit of a claim that is not open");
    if (port_is(ch, PSY_PORT_NOTIFY))
        ch->port.tp->committed(&ch->port);
    if (tx->mp)
        count_mp(ch, 1, length);
    return 0;
}

int psy_commit_slow(psyne_channel *ch, struct psyne_claimed *c, size_t length, uint32_t type)
{
    CHECK_NULL(ch);
    CHECK_NULL(c);
    if (type < PSYNE_TYPE_USER_MIN || type > PSYNE_TYPE_USER_MAX)
        return psy_fail(-EINVAL, "type %u is outside %u..%u", type, PSYNE_TYPE_USER_MIN, PSYNE_TYPE_USER_MAX);
    return psy_channel_commit(ch, c, length, type);
}

void psy_lane_wake(psyne_channel *ch)
{
    psy_wake_sleepers(ch->port.tx, PSY_WAIT_DATA);
}

int psyne_abort(psyne_channel *ch, struct psyne_claimed *c)
{
    CHECK_NULL(ch);
    CHECK_NULL(c);
    if (!c->psy_reserved)
        return psy_fail(-EINVAL, "abort of a claim that is not open");
    if (c->psy_batch != 1)
        return psy_fail(-EINVAL, "a batch is given up with psyne_commit_batch(..., 0, ...)");
    if (port_is(ch, PSY_PORT_PEERS))
        return commit_to_peer(ch, c, 0, 0, true);
    if (ch->lease && psy_lease_commit(ch->port.tx, ch->lease, c, 0, 0, true))
        return 0;
    int rc = psy_ring_abort(ch->port.tx, c);
    if (rc == 0 && port_is(ch, PSY_PORT_NOTIFY)) /* an MP abort leaves a pad to be sent */
        ch->port.tp->committed(&ch->port);
    return rc;
}

/* ---- consumer side ---- */

struct receive_try {
    psyne_channel *ch;
    struct psyne_msg *msgs;
    unsigned max;
};

/* receive_once: the consumer moved to the next segment of a ring that
 * moves (wait there instead). */
#define FOLLOWED INT_MIN /* never a count or an -errno */

static int receive_once(void *ctx)
{
    struct receive_try *t = ctx;
    psyne_channel *ch = t->ch;
    struct psy_port *p = &ch->port;
    int rc = -EAGAIN;
    if (t->max == 1 && ch->sc_fast) /* a poll as cheap as the fast path */
        rc = psy_sc_receive_one(p->ring, p->reader, t->msgs);
    if (rc != 0 && (rc != -EAGAIN || psy_ring_closed(p->ring) || t->max != 1 || !ch->sc_fast))
        rc = psy_ring_receive(p->ring, p->reader, t->msgs, t->max);
    if (rc == -EPIPE && psy_lease_unblock(p->ring, true)) /* shut down: nothing may stay behind an idle lease */
        rc = psy_ring_receive(p->ring, p->reader, t->msgs, t->max);
    if ((rc == -EAGAIN || rc == -EPIPE) && port_is(ch, PSY_PORT_MOVES) && p->tp->follow(p)) {
        p->tp->sync(p);
        return FOLLOWED;
    }
    return rc;
}

int psyne_receive_batch(psyne_channel *ch, struct psyne_msg *msgs, unsigned max, int64_t timeout_ns)
{
    CHECK_NULL(ch);
    CHECK_NULL(msgs);
    struct psy_port *p = &ch->port;
    if (p->role == PSYNE_ROLE_PRODUCER)
        return psy_fail(-EPERM, "receive on a producer handle");
    if (max == 0)
        return psy_fail(-EINVAL, "receive of 0 messages");
    if (port_is(ch, PSY_PORT_PEERS)) {
        int rc = p->tp->receive(p, msgs, max, timeout_ns);
        return rc == -EPROTO ? psy_fail(rc, "the ring holds a record with an impossible header") : rc;
    }
    bool moves = port_is(ch, PSY_PORT_MOVES);
    if (moves) {
        p->tp->reap(p);
        p->tp->sync(p);
    }
    struct receive_try t = {ch, msgs, max};
    int rc;
    while ((rc = receive_once(&t)) == FOLLOWED) {
    }
    if (rc == -EAGAIN && timeout_ns == PSYNE_NONBLOCK && poll_leases(p->ring))
        rc = receive_once(&t);
    if (rc == -EBUSY && timeout_ns == PSYNE_NONBLOCK) {
        poll_peers(p->ring);
        return -EAGAIN; /* other consumers hold the read lock: try again */
    }
    if (rc != -EAGAIN && rc != -EBUSY) {
        if (rc == -EPROTO)
            psy_fail(rc, "the ring holds a record with an impossible header");
        return rc;
    }
    psy_ring_count_empty(p->ring, ch->sub);
    if (timeout_ns == PSYNE_NONBLOCK) {
        poll_peers(p->ring);
        return -EAGAIN;
    }
    if (p->tp->wait_data)
        return p->tp->wait_data(p, receive_once, &t, timeout_ns);
    if (!moves)
        return psy_wait_loop(p->ring, PSY_WAIT_DATA, receive_once, &t, timeout_ns);
    /* Rings that move: wait on the consumer's segment; after following to
     * the next one, wait there for what is left of the timeout. */
    int64_t deadline = timeout_ns > 0 ? psy_now_ns() + timeout_ns : 0;
    while ((rc = psy_wait_loop(p->ring, PSY_WAIT_DATA, receive_once, &t, timeout_ns)) == FOLLOWED) {
        if (deadline && (timeout_ns = deadline - psy_now_ns()) <= 0)
            timeout_ns = 1;
    }
    return rc;
}

int psyne_receive(psyne_channel *ch, struct psyne_msg *m, int64_t timeout_ns)
{
    CHECK_NULL(ch);
    CHECK_NULL(m);
    struct psy_port *p = &ch->port;
    if (psy_unlikely(port_is(ch, PSY_PORT_MOVES)) && ch->sc_fast)
        p->tp->sync(p);
    if (psy_likely(ch->sc_fast) && psy_sc_receive_one(p->ring, p->reader, m) == 0)
        return 0;
    int rc = psyne_receive_batch(ch, m, 1, timeout_ns);
    return rc < 0 ? rc : 0;
}

/* Releases msgs[0..n), one receive's: the transport's release where it
 * keeps what was received (peers, rings that move), else the ring's; one
 * message of psyne_release on a single-consumer ring, the fast way. */
static int release_msgs(psyne_channel *ch, const struct psyne_msg *msgs, unsigned n, bool one)
{
    struct psy_port *p = &ch->port;
    if (psy_unlikely(port_is(ch, PSY_PORT_PEERS | PSY_PORT_MOVES)))
        return p->tp->release(p, msgs, n);
    if (one)
        return p->reader ? psy_sc_release(p->ring, p->reader, msgs[0].psy_end)
                         : psy_ring_release(p->ring, NULL, msgs, 1);
    return psy_ring_release(p->ring, p->reader, msgs, n);
}

int psyne_release(psyne_channel *ch, const struct psyne_msg *m)
{
    CHECK_NULL(ch);
    CHECK_NULL(m);
    int rc = release_msgs(ch, m, 1, true);
    return rc ? psy_fail(rc, "release of a message this consumer does not hold") : 0;
}

int psyne_release_batch(psyne_channel *ch, const struct psyne_msg *msgs, unsigned n)
{
    CHECK_NULL(ch);
    CHECK_NULL(msgs);
    if (n == 0)
        return psy_fail(-EINVAL, "release of 0 messages");
    for (unsigned i = 1; i < n; i++)
        if (msgs[i].psy_begin != msgs[i - 1].psy_end || msgs[i].peer != msgs[0].peer)
            return psy_fail(-EINVAL, "release_batch of messages that are not one receive_batch result");
    int rc = release_msgs(ch, msgs, n, false);
    return rc ? psy_fail(rc, "release of messages this consumer does not hold") : 0;
}

int psyne_drain(psyne_channel *ch, psyne_handler fn, void *arg, unsigned max, int64_t timeout_ns)
{
    CHECK_NULL(ch);
    CHECK_NULL(fn);
    enum { CHUNK = 64 };
    struct psyne_msg msgs[CHUNK];
    unsigned done = 0;
    while (done < max) {
        unsigned want = max - done < CHUNK ? max - done : CHUNK;
        int n = psyne_receive_batch(ch, msgs, want, done ? PSYNE_NONBLOCK : timeout_ns);
        if (n < 0)
            return done ? (int)done : n;
        for (int i = 0; i < n; i++)
            fn(arg, &msgs[i]);
        int rc = psyne_release_batch(ch, msgs, (unsigned)n);
        if (rc)
            return rc;
        done += (unsigned)n;
        if ((unsigned)n < want)
            break;
    }
    return (int)done;
}

/* ---- statistics ---- */

static uint64_t rd(psy_atomic64 *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* The counters of the handle's rings: ring (consumer side) and tx. */
static void ring_stats(psyne_channel *ch, struct psyne_stats *st)
{
    struct psy_ring *r = ch->port.ring, *t = ch->port.tx;
    struct psy_ring_shared *sh = r->sh, *tsh = t->sh;
    st->capacity = r->cap;
    st->mode = r->mode;
    st->in_use = psy_ring_in_use(r);
    st->high_water = rd(&sh->slow.high_water);
    if (st->in_use > st->high_water)
        st->high_water = st->in_use;
    pthread_mutex_lock(&t->handles_lock);
    psy_ring_produced(t, &st->msgs_out, &st->bytes_out);
    for (psyne_channel *h = t->handles; h; h = h->next) {
        st->msgs_out += psy_mp_counted(&h->mp_msgs, 0);
        st->bytes_out += psy_mp_counted(&h->mp_msgs, 1);
    }
    pthread_mutex_unlock(&t->handles_lock);
    st->full_events = rd(&tsh->prod.full_events);
    st->msgs_in = rd(&sh->cons.msgs);
    st->bytes_in = rd(&sh->cons.bytes);
    st->empty_events = rd(&sh->cons.empty_events);
    for (int i = 0; i < PSYNE_MAX_SUBSCRIBERS; i++) {
        st->msgs_in += rd(&sh->subs[i].msgs);
        st->bytes_in += rd(&sh->subs[i].bytes);
        st->empty_events += rd(&sh->subs[i].empty_events);
    }
    st->waits = rd(&sh->slow.waits);
    st->wakeups = rd(&sh->slow.wakeups);
    st->subscribers = (int)atomic_load_explicit(&sh->bcast.count, memory_order_relaxed);
    st->producers = (int)atomic_load_explicit(&sh->wait.producers, memory_order_relaxed);
    st->consumers = (int)atomic_load_explicit(&sh->wait.consumers, memory_order_relaxed);
    st->pages = r->place.pages;
    st->page_size = r->place.page_size;
    st->numa_node = r->place.numa_node;
    st->locked = r->place.locked;
}

int psyne_channel_stats(psyne_channel *ch, struct psyne_stats *st)
{
    if (!ch || !st)
        return psy_fail(-EINVAL, "NULL argument");
    memset(st, 0, sizeof *st);
    struct psy_port *p = &ch->port;
    if (!port_is(ch, PSY_PORT_PEERS | PSY_PORT_MOVES)) /* those fill the ring counters themselves */
        ring_stats(ch, st);
    if (p->tp->stats)
        p->tp->stats(p, st);
    if (port_is(ch, PSY_PORT_PEERS)) { /* MP peers' send rings count per handle */
        st->msgs_out += psy_mp_counted(&ch->mp_msgs, 0);
        st->bytes_out += psy_mp_counted(&ch->mp_msgs, 1);
    }
    if (port_is(ch, PSY_PORT_ALONE | PSY_PORT_PEERS)) { /* one handle: it produces and consumes as its role says */
        st->producers = p->role != PSYNE_ROLE_CONSUMER;
        st->consumers = p->role != PSYNE_ROLE_PRODUCER;
    }
    return 0;
}
