/* SPDX-License-Identifier: MIT */
/*
 * receive.c - the consumer side of the channel API: receives (waiting as
 * the timeout says, following a ring that moves), releases and drain.
 */
#include <errno.h>
#include <limits.h>

#include "handle.h"

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
    if (t->max == 1 && ch->sc_fast && (rc = psy_sc_receive_one(p->ring, p->reader, t->msgs)) == 0)
        return 1; /* a poll as cheap as the fast path; a count, as psy_ring_receive's */
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

/* A receive found nothing and the handle has a readiness descriptor: arm
 * it on the ring we read, then look once more (what came before the arming
 * woke nobody). A ring that moves is followed, and the arming with it.
 * Returns what the look found, or `nothing` (-EAGAIN, -ETIMEDOUT). */
PSY_COLD static int arm_and_look(struct receive_try *t, int nothing)
{
    psyne_channel *ch = t->ch;
    struct psy_port *p = &ch->port;
    int rc;
    do {
        if (psy_ready_arm(ch, PSY_WAIT_DATA, p->ring) != 0)
            return nothing;
        if (p->ring->leases)
            psy_lease_unblock(p->ring, true); /* records behind an idle lease woke nobody (wait.c does the same) */
    } while ((rc = receive_once(t)) == FOLLOWED);
    if (rc == -EBUSY) { /* another consumer holds the lock and may leave records: come back */
        psy_ready_kick(ch, PSY_WAIT_DATA);
        return nothing;
    }
    return rc == -EAGAIN ? nothing : rc;
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
        if ((rc == -EAGAIN || rc == -ETIMEDOUT) && psy_ready_wanted(ch, PSY_WAIT_DATA) &&
            psy_ready_arm(ch, PSY_WAIT_DATA, NULL) == 0) {
            int again = p->tp->receive(p, msgs, max, PSYNE_NONBLOCK);
            rc = again == -EAGAIN ? rc : again;
        }
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
        psy_channel_poll_peers(p->ring);
        if (psy_ready_wanted(ch, PSY_WAIT_DATA))
            psy_ready_kick(ch, PSY_WAIT_DATA); /* never armed on contention: come back */
        return -EAGAIN;                        /* other consumers hold the read lock: try again */
    }
    if (rc != -EAGAIN && rc != -EBUSY) {
        if (rc == -EPROTO)
            psy_fail(rc, "the ring holds a record with an impossible header");
        return rc;
    }
    psy_ring_count_empty(p->ring, ch->sub);
    if (timeout_ns == PSYNE_NONBLOCK) {
        psy_channel_poll_peers(p->ring);
        return psy_ready_wanted(ch, PSY_WAIT_DATA) ? arm_and_look(&t, -EAGAIN) : -EAGAIN;
    }
    if (p->tp->wait_data)
        rc = p->tp->wait_data(p, receive_once, &t, timeout_ns);
    else if (!moves)
        rc = psy_wait_loop(p->ring, PSY_WAIT_DATA, receive_once, &t, timeout_ns);
    else {
        /* Rings that move: wait on the consumer's segment; after following
         * to the next one, wait there for what is left of the timeout. */
        int64_t deadline = timeout_ns > 0 ? psy_now_ns() + timeout_ns : 0;
        while ((rc = psy_wait_loop(p->ring, PSY_WAIT_DATA, receive_once, &t, timeout_ns)) == FOLLOWED) {
            if (deadline && (timeout_ns = deadline - psy_now_ns()) <= 0)
                timeout_ns = 1;
        }
    }
    return rc == -ETIMEDOUT && psy_ready_wanted(ch, PSY_WAIT_DATA) ? arm_and_look(&t, rc) : rc;
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
