/* SPDX-License-Identifier: MIT */
/*
 * send.c - the producer side of the channel API: claims (waiting as the
 * timeout says), commits and aborts, on the port's ring or a peer's, and
 * the MP commit counts.
 */
#include <errno.h>
#include <string.h>

#include "channel.h"
#include "handle.h"

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

/* Whether a message of max_len bytes can ever fit the ring (PSYNE_MAX_MESSAGE). */
static bool message_fits(const struct psy_ring *r, size_t max_len)
{
    return max_len <= UINT32_MAX && PSYNE_RECORD_SIZE(max_len) + PSY_TERMINATOR <= r->cap;
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

/* A claim found no room and the handle has a readiness descriptor: armed on
 * the ring that is full, then one more look (room made before the arming
 * woke nobody). Returns what the look got, or `nothing`. */
PSY_COLD static int arm_and_claim(psyne_channel *ch, struct claim_batch_try *t, int nothing)
{
    if (psy_ready_arm(ch, PSY_WAIT_SPACE, t->ring) != 0)
        return nothing;
    int rc = claim_batch_once(t);
    return rc == -EAGAIN ? nothing : rc;
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
    if (timeout_ns != PSYNE_NONBLOCK)
        rc = psy_wait_loop(r, PSY_WAIT_SPACE, claim_batch_once, &t, timeout_ns);
    else
        psy_channel_poll_peers(r);
    if ((rc == -EAGAIN || rc == -ETIMEDOUT) && !port_is(ch, PSY_PORT_PEERS) && psy_ready_wanted(ch, PSY_WAIT_SPACE))
        rc = arm_and_claim(ch, &t, rc);
    return rc;
}

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
