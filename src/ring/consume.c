/* SPDX-License-Identifier: MIT */
/*
 * consume.c - receive and release: the consumer side of the ring.
 *
 * SC (SPSC, MPSC) and each BROADCAST subscriber: one reader per position
 * set; release stores the new position (R3) and, in MP modes, first zeroes
 * the released bytes so free space stays zero.
 * MC (SPMC, MPMC): consumers take records under the lock bit of read_pos and
 * release each span by turning its header into a marker (R4); whoever holds
 * the lock bit of rel.head sweeps consecutive markers and advances it. A
 * consumer that holds a view for long delays reuse of the space, never other
 * consumers.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "fastpath.h"

/*
 * Walks committed records from pos up to the first zero header (A2), but
 * never past limit, the release position plus the capacity: the bytes there
 * are the oldest held record, not new data, so the walk must stop even
 * though they are non-zero.
 * Pads are folded into the span of the message after them. Returns the count
 * and sets *end past the last record walked, or -EPROTO on a header that
 * cannot be valid.
 */
static int walk(struct psy_ring *r, uint64_t pos, uint64_t limit, struct psyne_msg *msgs, unsigned max, uint64_t *end,
                uint64_t *bytes)
{
    uint8_t *data = r->data;
    const uint64_t mask = r->mask;
    uint64_t begin = pos, total = 0;
    unsigned n = 0;
    int rc = limit - pos > r->cap ? -EPROTO : 0; /* positions of a corrupted (shared) ring */
    while (rc == 0 && n < max && pos != limit) {
        uint64_t w = atomic_load_explicit((psy_atomic64 *)(data + (pos & mask)), memory_order_acquire); /* A2 */
        if (w == 0)
            break;
        uint32_t type = psy_hdr_type(w);
        uint32_t length = psy_hdr_length(w);
        uint64_t size = PSYNE_RECORD_SIZE(length);
        if (psy_unlikely(size > limit - pos) && r->mc) {
            /* MC's limit came from a rel.head that may be stale; the producer
             * of this record saw a newer one (A2 orders this re-read). */
            limit = (atomic_load_explicit(&r->sh->rel.head, memory_order_acquire) & ~PSY_POS_FLAGS) + r->cap;
        }
        if (psy_unlikely(type == 0 || (w & PSY_MARKER_BIT) || size > limit - pos || limit - pos > r->cap)) {
            rc = -EPROTO;
            break;
        }
        if (psy_likely(type != PSY_TYPE_PAD)) {
            msgs[n].data = data + (pos & mask) + PSYNE_RECORD_HEADER;
            msgs[n].length = length;
            msgs[n].type = type;
            msgs[n].peer = 0;
            msgs[n].psy_flags = 0;
            msgs[n].psy_begin = begin;
            msgs[n].psy_end = pos + size;
            begin = pos + size;
            total += length;
            n++;
        }
        pos += size;
    }
    *end = pos;
    *bytes = total;
    return rc ? rc : (int)n;
}

/* Counts delivered messages; the caller is the counters' only writer. */
static void count_received(psy_atomic64 *msgs_ctr, psy_atomic64 *bytes_ctr, int n, uint64_t bytes)
{
    psy_count(msgs_ctr, (uint64_t)n);
    psy_count(bytes_ctr, bytes);
}

/* Nothing to hand out. `closed` must have been read before the walk that
 * found nothing: shutdown comes after the producers' last commits, so a
 * closed flag seen first means the walk saw every commit. Read after the
 * walk, it could belong to a shutdown that followed a commit the walk
 * missed, and that message would be lost. */
static int empty_result(bool closed)
{
    return closed ? -EPIPE : -EAGAIN;
}

void psy_ring_count_empty(struct psy_ring *r, int sub)
{
    if (sub >= 0)
        psy_count(&r->sh->subs[sub].empty_events, 1);
    else if (r->mc)
        atomic_fetch_add_explicit(&r->sh->cons.empty_events, 1, memory_order_relaxed);
    else
        psy_count(&r->sh->cons.empty_events, 1);
}

static int sc_receive(struct psy_ring *r, const struct psy_reader *rd, struct psyne_msg *msgs, unsigned max)
{
    bool closed = psy_ring_closed(r); /* before the walk: see empty_result */
    uint64_t pos = atomic_load_explicit(rd->read_pos, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(rd->released, memory_order_relaxed);
    uint64_t end, bytes;
    int n = walk(r, pos, head + r->cap, msgs, max, &end, &bytes);
    if (n < 0)
        return n;
    psy_ring_note_usage(r, end - head);
    if (n == 0) {
        /* Only pads: if nothing earlier is held, give their space back now,
         * or a producer waiting for exactly those bytes could wait for a
         * release that never comes. Otherwise read them again next time. */
        if (end != pos && head == pos) {
            atomic_store_explicit(rd->read_pos, end, memory_order_relaxed);
            psy_sc_release(r, rd, end);
        }
        return empty_result(closed);
    }
    /* Trailing pads stay unread, so read_pos never passes space that no
     * held message covers. */
    atomic_store_explicit(rd->read_pos, msgs[n - 1].psy_end, memory_order_relaxed);
    count_received(rd->msgs, rd->bytes, n, bytes);
    return n;
}

/* MC: takes the lock bit of read_pos. Gives up (-EBUSY) only after
 * yielding, so a preempted holder gets the CPU back. -EBUSY is not "empty":
 * callers retry it and never sleep on it. */
static int mc_lock_read(struct psy_ring *r, uint64_t *pos)
{
    psy_atomic64 *word = &r->sh->cons.read_pos;
    for (unsigned spins = 0;;) {
        uint64_t v = atomic_load_explicit(word, memory_order_relaxed);
        if (!(v & PSY_LOCK_BIT)) {
            if (atomic_compare_exchange_weak_explicit(word, &v, v | PSY_LOCK_BIT, memory_order_acquire,
                                                      memory_order_relaxed)) {
                if (r->taken_tag) /* ipc: who holds it, if we die holding it */
                    atomic_store_explicit(&r->sh->cons.read_owner, r->taken_tag, memory_order_relaxed);
                *pos = v;
                return 0;
            }
            continue; /* the position moved (or a spurious failure): look again */
        }
        if (++spins < 128) {
            psy_cpu_relax();
        } else {
            sched_yield(); /* the holder may be preempted: let it run */
            if (spins > 256)
                return -EBUSY;
        }
    }
}

/*
 * MC: frees released spans at rel.head. Either we take the sweep lock and
 * sweep, or the lock is held and we set PENDING so its holder sweeps again;
 * nobody waits for anybody, and no header is read outside the lock.
 */
void psy_mc_sweep(struct psy_ring *r)
{
    struct psy_ring_shared *sh = r->sh;
    uint64_t v = atomic_load_explicit(&sh->rel.head, memory_order_relaxed);
    for (;;) {
        if (v & PSY_LOCK_BIT) {
            /* An RMW even when PENDING is already set: a plain load that saw
             * it could run before our marker (R4) is visible (store-load
             * reordering), the holder could clear PENDING, miss the marker
             * and unlock, and the span would never be swept. */
            if (atomic_compare_exchange_weak_explicit(&sh->rel.head, &v, v | PSY_PENDING_BIT, memory_order_release,
                                                      memory_order_relaxed)) /* R6 */
                return;
        } else if (atomic_compare_exchange_weak_explicit(&sh->rel.head, &v, v | PSY_LOCK_BIT, memory_order_acquire,
                                                         memory_order_relaxed)) {
            break;
        }
    }
    if (r->taken_tag) /* ipc: who holds it, if we die holding it */
        atomic_store_explicit(&sh->rel.sweep_owner, r->taken_tag, memory_order_relaxed);
    uint64_t start = v, head = v;
    for (;;) {
        uint64_t read = atomic_load_explicit(&sh->cons.read_pos, memory_order_acquire) & ~PSY_POS_FLAGS;
        uint64_t from = head;
        while (head != read && read - head <= r->cap) {
            uint64_t w = atomic_load_explicit(psy_hdr_at(r, head), memory_order_acquire); /* A4 */
            uint64_t span = psy_hdr_length(w);
            /* a span that cannot be (a corrupted shared ring) stops the sweep */
            if (!(w & PSY_MARKER_BIT) || !psy_span_valid(span, read - head))
                break;
            head += span;
        }
        if (r->mp && head != from) {
            /* Free space is zero: clear the markers' headers (their payloads
             * were zeroed at release). The target goes first, so whoever
             * finishes a sweep whose holder died can zero the whole span. */
            atomic_store_explicit(&sh->rel.sweep_to, head, memory_order_relaxed);
            atomic_thread_fence(memory_order_release); /* sweep_to before the zeroing stores */
            for (uint64_t p = from; p != head;) {
                uint64_t span = psy_hdr_length(atomic_load_explicit(psy_hdr_at(r, p), memory_order_relaxed));
                atomic_store_explicit(psy_hdr_at(r, p), 0, memory_order_relaxed); /* published by R3 */
                p += span;
            }
        }
        uint64_t expected = start | PSY_LOCK_BIT;
        if (atomic_compare_exchange_strong_explicit(&sh->rel.head, &expected, head, memory_order_release,
                                                    memory_order_acquire)) /* R3, and unlock */
            break;
        /* A6: PENDING was set; publish progress, keep the lock, look again.
         * An exchange, not a store: it reads the last R6 before it, so the
         * walk sees every marker whose PENDING it clears; R6s after it see
         * PENDING clear and set it again, and the unlock CAS fails on them. */
        atomic_exchange_explicit(&sh->rel.head, head | PSY_LOCK_BIT, memory_order_acq_rel);
        start = head;
    }
    if (head != v)
        psy_wake_if_waiting(r, PSY_WAIT_SPACE);
}

void psy_mc_mark_released(struct psy_ring *r, uint64_t begin, uint64_t span)
{
    if (r->mp) /* free space stays zero */
        memset(r->data + (begin & r->mask) + PSYNE_RECORD_HEADER, 0, span - PSYNE_RECORD_HEADER);
    atomic_store_explicit(psy_hdr_at(r, begin), PSY_MARKER_BIT | span, memory_order_release); /* R4 */
}

int psy_mc_release(struct psy_ring *r, uint64_t begin, uint64_t end)
{
    uint64_t span = end - begin;
    if (span < PSYNE_RECORD_HEADER || span > r->cap)
        return -EINVAL;
    psy_mc_mark_released(r, begin, span);
    psy_mc_sweep(r);
    return 0;
}

/* ipc MC, under the read lock: retags the header of every span taken from
 * [pos, end) as ours: the n messages, then trailing pads (released just
 * after the unlock, and not to be left behind if we die in between). */
static void tag_taken(struct psy_ring *r, const struct psyne_msg *msgs, int n, uint64_t pos, uint64_t end)
{
    for (int i = 0; i < n; i++) {
        atomic_store_explicit(psy_hdr_at(r, msgs[i].psy_begin),
                              psy_hdr_make((uint32_t)(msgs[i].psy_end - msgs[i].psy_begin), r->taken_tag),
                              memory_order_relaxed);
        pos = msgs[i].psy_end;
    }
    if (pos != end)
        atomic_store_explicit(psy_hdr_at(r, pos), psy_hdr_make((uint32_t)(end - pos), r->taken_tag),
                              memory_order_relaxed);
}

static int mc_receive(struct psy_ring *r, struct psyne_msg *msgs, unsigned max)
{
    struct psy_ring_shared *sh = r->sh;
    for (;;) {
        bool closed = psy_ring_closed(r); /* before the walk: see empty_result */
        uint64_t pos;
        if (mc_lock_read(r, &pos))
            return -EBUSY;
        /* rel.head only grows: a stale value only shortens the walk */
        uint64_t head = atomic_load_explicit(&sh->rel.head, memory_order_acquire) & ~PSY_POS_FLAGS;
        uint64_t end, bytes;
        int n = walk(r, pos, head + r->cap, msgs, max, &end, &bytes);
        if (n > 0)
            psy_ring_note_usage(r, end - head);
        if (n < 0) {
            atomic_store_explicit(&sh->cons.read_pos, pos, memory_order_release); /* unlock */
            return n;
        }
        if (n > 0) /* counted under the lock: one writer at a time, no RMW */
            count_received(&sh->cons.msgs, &sh->cons.bytes, n, bytes);
        if (r->taken_tag) /* ipc: whose they are, for crash recovery (trailing pads too) */
            tag_taken(r, msgs, n, pos, end);
        atomic_store_explicit(&sh->cons.read_pos, end, memory_order_release); /* unlock */
        uint64_t taken_end = n ? msgs[n - 1].psy_end : pos;
        if (taken_end != end) /* trailing pads nobody will release: release them now */
            psy_mc_release(r, taken_end, end);
        if (n == 0)
            return empty_result(closed);
        return n;
    }
}

void psy_ring_reader_init(struct psy_ring *r, int sub, struct psy_reader *rd)
{
    struct psy_ring_shared *sh = r->sh;
    if (sub >= 0) {
        struct psy_sub *s = &sh->subs[sub];
        *rd = (struct psy_reader){&s->read_pos, &s->head, &s->released, &s->msgs, &s->bytes};
    } else {
        *rd =
            (struct psy_reader){&sh->cons.read_pos, &sh->rel.head, &sh->cons.released, &sh->cons.msgs, &sh->cons.bytes};
    }
}

void psy_ring_reader_attach(const struct psy_reader *rd)
{
    atomic_store_explicit(rd->released, atomic_load_explicit(rd->head, memory_order_relaxed), memory_order_relaxed);
}

int psy_ring_receive(struct psy_ring *r, const struct psy_reader *rd, struct psyne_msg *msgs, unsigned max)
{
    return rd ? sc_receive(r, rd, msgs, max) : mc_receive(r, msgs, max);
}

/*
 * MC: whether [first->psy_begin, end) is a span this ring handed out (one
 * message, or a batch whose first message is first) that nobody released
 * yet. Consumers release in any order by rewriting the span's first header,
 * so a release that trusted the span would mark whatever lies there: a
 * message another consumer holds, or space producers already reuse.
 * - The view points into this ring at its record (not another channel's).
 * - The first header is still the one the receive left: the record's own
 *   header or a pad's (ipc: this handle's taken tag), never a marker or
 *   zero (released already).
 * - The span lies between the release and the read positions: handed out,
 *   not swept. Read after the header (A8 pairs with the producer's R1/R2 of
 *   a record that reuses the space, which it wrote after it saw the sweep's
 *   R3): if that header belongs to a newer record, the release position
 *   read next is already past begin.
 * Only a second release of the same view racing the first from another
 * thread is not caught: that is the caller's data race.
 */
static bool mc_view_held(struct psy_ring *r, const struct psyne_msg *first, uint64_t end)
{
    uint64_t begin = first->psy_begin, first_span = first->psy_end - begin, span = end - begin;
    uint64_t rec_size = PSYNE_RECORD_SIZE(first->length);
    if (((begin | end) & 7) || first_span > span || rec_size > first_span || span > r->cap)
        return false;
    uint64_t rec = first->psy_end - rec_size;
    if ((uint8_t *)first->data != r->data + (rec & r->mask) + PSYNE_RECORD_HEADER)
        return false;
    uint64_t w = atomic_load_explicit(psy_hdr_at(r, begin), memory_order_acquire); /* A8 */
    uint64_t own = psy_hdr_make(first->length, first->type);
    bool header_ok;
    if (r->taken_tag)
        header_ok = w == psy_hdr_make((uint32_t)first_span, r->taken_tag);
    else if (rec == begin)
        header_ok = w == own;
    else /* pads before the message: folded into its span */
        header_ok = psy_hdr_type(w) == PSY_TYPE_PAD && !(w & PSY_MARKER_BIT) &&
                    atomic_load_explicit(psy_hdr_at(r, rec), memory_order_relaxed) == own;
    if (!header_ok)
        return false;
    uint64_t read = atomic_load_explicit(&r->sh->cons.read_pos, memory_order_acquire) & ~PSY_POS_FLAGS;
    uint64_t head = atomic_load_explicit(&r->sh->rel.head, memory_order_acquire) & ~PSY_POS_FLAGS;
    return begin - head < read - head && end - head <= read - head;
}

int psy_ring_release(struct psy_ring *r, const struct psy_reader *rd, const struct psyne_msg *msgs, unsigned n)
{
    uint64_t end = msgs[n - 1].psy_end;
    if (rd)
        return psy_sc_release(r, rd, end);
    return mc_view_held(r, &msgs[0], end) ? psy_mc_release(r, msgs[0].psy_begin, end) : -EINVAL;
}

int psy_ring_subscribe(struct psy_ring *r)
{
    struct psy_ring_shared *sh = r->sh;
    int slot = -EBUSY;
    psy_bcast_lock(sh);
    for (int i = 0; i < PSYNE_MAX_SUBSCRIBERS; i++) {
        struct psy_sub *s = &sh->subs[i];
        if (atomic_load_explicit(&s->active, memory_order_relaxed))
            continue;
        /* Start at the oldest message the producer still keeps. */
        uint64_t floor = atomic_load_explicit(&sh->bcast.floor, memory_order_relaxed);
        atomic_store_explicit(&s->head, floor, memory_order_relaxed);
        atomic_store_explicit(&s->released, floor, memory_order_relaxed);
        atomic_store_explicit(&s->read_pos, floor, memory_order_relaxed);
        atomic_store_explicit(&s->active, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&sh->bcast.count, 1, memory_order_relaxed);
        slot = i;
        break;
    }
    pthread_mutex_unlock(&sh->bcast.lock);
    return slot;
}

void psy_ring_unsubscribe(struct psy_ring *r, int sub)
{
    struct psy_ring_shared *sh = r->sh;
    psy_bcast_lock(sh);
    atomic_store_explicit(&sh->subs[sub].active, 0, memory_order_relaxed);
    atomic_fetch_sub_explicit(&sh->bcast.count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&sh->bcast.lock);
    psy_wake_if_waiting(r, PSY_WAIT_SPACE); /* the slowest may have left */
}
