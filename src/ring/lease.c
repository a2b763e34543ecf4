/* SPDX-License-Identifier: MIT */
/*
 * lease.c - MP claim leases: a producer handle of an in-process MP ring
 * reserves a run of bytes with one CAS on pub.tail and claims its next
 * messages from that run without touching the tail again.
 *
 * Why: with two producers on two cores, the CAS on pub.tail moves the tail's
 * line between them on every message, and that transfer is what bounds MPMC
 * throughput (ring.h, MP producers). A lease makes it one transfer per run
 * (the gain: the guide, *Many producers: leases*).
 *
 * One thread owns a handle's lease (channel.c: the handle's first producing
 * thread); other threads of the handle claim one message per CAS. The owner
 * stops its lease before it claims outside it, so its messages stay in the
 * order it claimed them.
 *
 * Records still follow each other in position order, so a lease whose owner
 * stops claiming holds back the records reserved after it. Such a lease is
 * closed by whoever finds it in the way: its owner, when the next message
 * does not fit, or a consumer that finds nothing to read (psy_lease_unblock).
 * The owner's state word decides who may write the lease's remaining bytes:
 *
 *   0                    no lease (closed or used up)
 *   pos | LEASE_IDLE     the owner's next claim starts at pos (< end)
 *   pos | LEASE_CLAIMING a claim at pos is open: only the owner moves on
 *   LEASE_BUSY           the owner is closing the lease or reserving anew
 *
 * Transitions out of IDLE are CASes: the owner's claim (IDLE -> CLAIMING),
 * the owner's close (IDLE -> BUSY) and a consumer's close (IDLE -> 0).
 * Whoever wins a close writes one pad over [pos, end) (R2 of ring.h), or,
 * the owner, hands the bytes back if nobody reserved after them. Nobody else
 * writes there, and nothing has: free space is zero in MP rings, and the
 * owner only ever writes inside claims. Positions never repeat, so the CAS
 * cannot take an old lease for a new one. Consumers never touch a CLAIMING
 * state: a claim in progress is waited for, as any MP claim is.
 *
 * A commit turns the slack of a shorter message into a pad (the caller may
 * have written up to its capacity), and an abort pads the whole claim: the
 * bytes a lease hands out next must be zero.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

#define LEASE_CLAIMING 1ull
#define LEASE_IDLE 2ull
#define LEASE_BUSY 4ull
#define LEASE_FLAGS 7ull

int psy_lease_init(struct psy_ring *r)
{
    r->leases = aligned_alloc(PSY_CACHE_BLOCK, sizeof(struct psy_lease) * PSY_MAX_LEASES);
    if (!r->leases)
        return -ENOMEM;
    memset(r->leases, 0, sizeof(struct psy_lease) * PSY_MAX_LEASES);
    /* never more than a 16th of the ring: leases must not make it look full */
    r->lease_bytes = r->cap / 16 < PSY_LEASE_BYTES ? r->cap / 16 : PSY_LEASE_BYTES;
    return 0;
}

void psy_lease_fini(struct psy_ring *r)
{
    free(r->leases);
    r->leases = NULL;
}

struct psy_lease *psy_lease_take(struct psy_ring *r)
{
    if (!r->leases)
        return NULL;
    _Static_assert(PSY_MAX_LEASES <= 32, "one bit of lease_slots per slot");
    uint32_t used = atomic_load_explicit(&r->lease_slots, memory_order_relaxed);
    while (~used) {
        unsigned i = (unsigned)__builtin_ctz(~used);
        if (i >= PSY_MAX_LEASES)
            break;
        if (atomic_compare_exchange_weak_explicit(&r->lease_slots, &used, used | 1u << i, memory_order_acquire,
                                                  memory_order_relaxed))
            return &r->leases[i];
    }
    return NULL; /* more producer handles than slots: the rest claim one message per CAS */
}

/* The one pad over [pos, end), by whoever closed the lease. */
static void pad(struct psy_ring *r, uint64_t pos, uint64_t end)
{
    psy_mp_publish(r, pos, end - pos, (uint32_t)(end - pos - PSYNE_RECORD_HEADER), PSY_TYPE_PAD);
}

/* Closes l, seen idle at the state s with its end: whoever's CAS takes it
 * from IDLE pads the rest (the owner's claim is the other CAS from IDLE).
 * True if this call closed it. */
static bool close_idle(struct psy_ring *r, struct psy_lease *l, uint64_t s, uint64_t end)
{
    if (!atomic_compare_exchange_strong_explicit(&l->state, &s, 0, memory_order_acquire, memory_order_relaxed))
        return false;
    pad(r, s & ~LEASE_FLAGS, end);
    return true;
}

/* Bytes a reservation at tail may take: the limit of mp_claim (produce.c),
 * 0 when another producer's tail is already past what head allows. */
static uint64_t room_at(const struct psy_ring *r, uint64_t tail, uint64_t head)
{
    uint64_t used = tail - head;
    return used + PSY_TERMINATOR <= r->cap ? r->cap - PSY_TERMINATOR - used : 0;
}

static void claimed_at(struct psy_ring *r, uint64_t pos, uint64_t need, struct psyne_claimed *c)
{
    c->data = r->data + (pos & r->mask) + PSYNE_RECORD_HEADER;
    c->psy_pos = pos;
    c->psy_reserved = (uint32_t)need;
}

/*
 * The owner, holding the lease BUSY: reserves a new lease that starts with a
 * claim of need bytes, up to lease_bytes (less if the ring has less room,
 * never less than need). [from, old_end) is what is left of the old lease
 * (empty: none): if the tail is still at its end, the new lease starts at
 * from instead (one CAS takes the rest back and reserves); if not, it
 * becomes a pad.
 */
static int reserve(struct psy_ring *r, struct psy_lease *l, uint64_t need, uint64_t from, uint64_t old_end,
                   struct psyne_claimed *c)
{
    struct psy_ring_shared *sh = r->sh;
    uint64_t want = need > r->lease_bytes ? need : r->lease_bytes;
    uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_relaxed), start, take;
    for (;;) {
        bool reuse = from != old_end && tail == old_end;
        if (!reuse && from != old_end) { /* someone reserved after it */
            pad(r, from, old_end);
            psy_wake_if_waiting(r, PSY_WAIT_DATA);
            from = old_end;
        }
        start = reuse ? from : tail;
        uint64_t head = atomic_load_explicit(&sh->prod.cached_head, memory_order_acquire); /* A5 */
        uint64_t room = room_at(r, start, head);
        if (room < want)
            room = room_at(r, start, psy_ring_refresh_cached_head(r, tail));
        if (room < need) {
            uint64_t now = atomic_load_explicit(&sh->pub.tail, memory_order_relaxed);
            if (now != tail) { /* another producer moved on: look again */
                tail = now;
                continue;
            }
            if (reuse) { /* the caller waits for space outside the lease (psy_lease_stop would pad it) */
                pad(r, from, old_end);
                psy_wake_if_waiting(r, PSY_WAIT_DATA);
            }
            atomic_store_explicit(&l->state, 0, memory_order_release);
            return -EAGAIN;
        }
        take = room < want ? room & ~(uint64_t)7 : want;
        if (atomic_compare_exchange_weak_explicit(&sh->pub.tail, &tail, start + take, memory_order_release,
                                                  memory_order_relaxed))
            break;
    }
    atomic_store_explicit(&l->end, start + take, memory_order_relaxed);
    atomic_store_explicit(&l->state, start | LEASE_CLAIMING, memory_order_release); /* end before any IDLE */
    claimed_at(r, start, need, c);
    return 0;
}

int psy_lease_claim(struct psy_ring *r, struct psy_lease *l, uint64_t need, struct psyne_claimed *c)
{
    uint64_t s = atomic_load_explicit(&l->state, memory_order_relaxed);
    if (s & LEASE_IDLE) {
        uint64_t pos = s & ~LEASE_FLAGS, end = atomic_load_explicit(&l->end, memory_order_relaxed);
        /* acquire: a consumer's close (IDLE -> 0) and this claim are one CAS
         * apart; the winner alone writes at pos */
        bool fits = need <= end - pos; /* positions wrap: compare distances */
        if (atomic_compare_exchange_strong_explicit(&l->state, &s, fits ? pos | LEASE_CLAIMING : LEASE_BUSY,
                                                    memory_order_acquire, memory_order_relaxed)) {
            if (fits) {
                claimed_at(r, pos, need, c);
                return 0;
            }
            return reserve(r, l, need, pos, end, c); /* the rest is too short */
        }
    }
    if (s & LEASE_CLAIMING) { /* our own claim is still open: this one goes after it */
        atomic_store_explicit(&l->close_after, true, memory_order_relaxed);
        return 1;
    }
    /* 0 (also after a consumer's close) */
    atomic_store_explicit(&l->state, LEASE_BUSY, memory_order_relaxed);
    return reserve(r, l, need, 0, 0, c);
}

void psy_lease_stop(struct psy_ring *r, struct psy_lease *l)
{
    uint64_t s = atomic_load_explicit(&l->state, memory_order_relaxed);
    if (s & LEASE_CLAIMING) {
        atomic_store_explicit(&l->close_after, true, memory_order_relaxed); /* its commit closes it */
    } else if ((s & LEASE_IDLE) && close_idle(r, l, s, atomic_load_explicit(&l->end, memory_order_relaxed))) {
        psy_wake_if_waiting(r, PSY_WAIT_DATA);
    }
}

void psy_lease_give_back(struct psy_ring *r, struct psy_lease *l)
{
    if (!l)
        return;
    psy_lease_stop(r, l);
    atomic_store_explicit(&l->state, 0, memory_order_relaxed);
    atomic_store_explicit(&l->close_after, false, memory_order_relaxed);
    atomic_fetch_and_explicit(&r->lease_slots, ~(1u << (l - r->leases)), memory_order_release);
}

bool psy_lease_commit(struct psy_ring *r, struct psy_lease *l, struct psyne_claimed *c, uint32_t length, uint32_t type,
                      bool abort)
{
    if (!l || atomic_load_explicit(&l->state, memory_order_relaxed) != (c->psy_pos | LEASE_CLAIMING))
        return false; /* a claim of the one-CAS path */
    uint64_t pos = c->psy_pos, next = pos + c->psy_reserved;
    uint64_t end = atomic_load_explicit(&l->end, memory_order_relaxed);
    bool close = atomic_load_explicit(&l->close_after, memory_order_relaxed);
    if (close) { /* a claim came after this one: no message may follow in the lease */
        atomic_store_explicit(&l->close_after, false, memory_order_relaxed);
        next = end;
    }
    /* the slack of a shorter message is padded: the caller may have written there */
    if (abort)
        pad(r, pos, next);
    else
        psy_mp_publish(r, pos, next - pos, length, type);
    atomic_store_explicit(&l->state, next != end ? next | LEASE_IDLE : 0, memory_order_release);
    c->psy_reserved = 0;
    psy_wake_if_waiting(r, PSY_WAIT_DATA);
    return true;
}

uint64_t psy_lease_unused(const struct psy_ring *r)
{
    uint64_t unused = 0;
    for (uint32_t m = atomic_load_explicit(&r->lease_slots, memory_order_relaxed); m; m &= m - 1) {
        struct psy_lease *l = &r->leases[__builtin_ctz(m)];
        uint64_t s = atomic_load_explicit(&l->state, memory_order_acquire);
        if (s & LEASE_IDLE)
            unused += atomic_load_explicit(&l->end, memory_order_relaxed) - (s & ~LEASE_FLAGS);
    }
    return unused;
}

bool psy_lease_unblock(struct psy_ring *r, bool force)
{
    if (!r->leases)
        return false;
    bool closed = false;
    uint64_t tail = atomic_load_explicit(&r->sh->pub.tail, memory_order_relaxed);
    for (uint32_t m = atomic_load_explicit(&r->lease_slots, memory_order_relaxed); m; m &= m - 1) {
        struct psy_lease *l = &r->leases[__builtin_ctz(m)];
        uint64_t s = atomic_load_explicit(&l->state, memory_order_acquire);
        if (!(s & LEASE_IDLE))
            continue;
        uint64_t end = atomic_load_explicit(&l->end, memory_order_relaxed); /* fixed while the state is s */
        /* Unforced, only a lease with a reservation after it holds anything
         * back (the tail moved past it; the header at its end would say
         * whether that is committed, but it may be a payload by now, as the
         * lease may be gone); forced, any idle lease may hold the space a
         * waiting producer needs. A tail older than the state can only close
         * a lease with nothing after it yet, which costs its owner a CAS. */
        if (!force && tail == end)
            continue;
        closed |= close_idle(r, l, s, end);
    }
    if (closed)
        psy_wake_if_waiting(r, PSY_WAIT_DATA); /* other consumers: what was behind the lease */
    return closed;
}
