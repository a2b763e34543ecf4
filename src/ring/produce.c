/* SPDX-License-Identifier: MIT */
/*
 * produce.c - claim, commit and abort: the producer side of the ring.
 *
 * SP (SPSC, SPMC, BROADCAST): one producer; the record is written, then the
 * tail is published (R1). No read-modify-write instruction.
 * MP (MPSC, MPMC): producers reserve space with one CAS on pub.tail and each
 * commits its own record by storing its header last (R2), so a producer that
 * is preempted between claim and commit never stops the others from claiming;
 * consumers simply see its header still zero and wait for that record.
 */
#include <errno.h>

#include "fastpath.h"

/* A3 (pairs with R3 in consume.c): the releasing side's stores, including
 * the zeroing of MP space, happen before we reuse the space. */
uint64_t psy_ring_refresh_head(struct psy_ring *r)
{
    struct psy_ring_shared *sh = r->sh;
    if (r->mode != PSYNE_MODE_BROADCAST)
        return atomic_load_explicit(&sh->rel.head, memory_order_acquire) & ~PSY_POS_FLAGS;

    /* BROADCAST: the slowest active subscriber, under the membership lock so
     * a joining subscriber (which starts at the floor) is never overtaken. */
    psy_bcast_lock(sh);
    uint64_t floor = atomic_load_explicit(&sh->bcast.floor, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_relaxed) & ~PSY_TAIL_CLAIMED;
    /* nobody subscribed: the floor stays, keeping everything for the first */
    uint64_t min = psy_bcast_slowest(r, floor, tail);
    atomic_store_explicit(&sh->bcast.floor, min, memory_order_release);
    pthread_mutex_unlock(&sh->bcast.lock);
    return min;
}

/* ThreadSanitizer: a reader of the counts walks headers the producer may
 * just be overwriting with its (plain) payload stores, a lap ahead; the
 * walk stops as soon as the sequence count moves and its result is thrown
 * away, so that read is a benign race of the seqlock kind, which
 * ThreadSanitizer is told to ignore. */
#if defined(__SANITIZE_THREAD__)
#define PSY_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PSY_TSAN 1
#endif
#endif
#ifdef PSY_TSAN
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
static void psy_tsan_ignore_reads(bool on)
{
    if (on)
        AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
    else
        AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
}
#else
static inline void psy_tsan_ignore_reads(bool on)
{
    (void)on;
}
#endif

/* Counts the records in [from, to) that the producer wrote: every record
 * but pads. Stops early at a header that cannot be (a corrupted shared
 * ring), and, for a reader other than the producer (seq not NULL), as soon
 * as the producer moves its checkpoint from `want`: from then on it may
 * overwrite what is left to read (its payload stores are not atomic, and
 * a look at them would be a data race, not only a wrong count). Returns
 * where it stopped. */
static uint64_t count_records(const struct psy_ring *r, uint64_t from, uint64_t to, const psy_atomic64 *seq,
                              uint64_t want, uint64_t *msgs, uint64_t *bytes)
{
    uint64_t n = 0, b = 0;
    while (from != to) {
        if (seq && atomic_load_explicit(seq, memory_order_acquire) != want)
            break;
        uint64_t w = atomic_load_explicit(psy_hdr_at(r, from), memory_order_relaxed); /* ordered by A7 / R1 */
        uint64_t size = PSYNE_RECORD_SIZE(psy_hdr_length(w));
        if (psy_hdr_type(w) == 0 || size > to - from)
            break;
        if (psy_hdr_type(w) != PSY_TYPE_PAD) {
            n++;
            b += psy_hdr_length(w);
        }
        from += size;
    }
    *msgs = n;
    *bytes = b;
    return from;
}

/* SP, walk_counts: moves the count checkpoint to `to`, adding the records
 * of [count_pos, walk_to), which it walks, and n messages of `bytes` in
 * [walk_to, to), which the caller counted (a batch it just published).
 * Runs on the producer before each refresh of its cached head (walk_to = to
 * = tail): nothing after the old checkpoint has been overwritten yet, as the
 * space the producer may reuse ends at the cached head it had (<= count_pos). */
static void sp_checkpoint(struct psy_ring *r, uint64_t walk_to, uint64_t to, uint64_t n, uint64_t bytes)
{
    struct psy_prod *p = &r->sh->prod;
    uint64_t from = atomic_load_explicit(&p->count_pos, memory_order_relaxed), wn = 0, wb = 0;
    if (from == to)
        return;
    if (from != walk_to)
        count_records(r, from, walk_to, NULL, 0, &wn, &wb);
    n += wn;
    uint64_t b = bytes + wb;
    uint64_t seq = atomic_load_explicit(&p->count_seq, memory_order_relaxed);
    atomic_store_explicit(&p->count_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release); /* R7: odd before the new counts and any reuse of space */
    psy_count(&p->msgs, n);
    psy_count(&p->bytes, b);
    atomic_store_explicit(&p->count_pos, to, memory_order_relaxed);      /* past a corrupted header too */
    atomic_store_explicit(&p->count_seq, seq + 2, memory_order_release); /* even: counts and position agree */
}

uint64_t psy_ring_refresh_cached_head(struct psy_ring *r, uint64_t tail)
{
    if (r->walk_counts)
        sp_checkpoint(r, tail, tail, 0, 0);
    uint64_t head = psy_ring_refresh_head(r);
    /* Stored only when it moved: MP producers that wait for space refresh on
     * every poll, and each store would take the line from the others. */
    if (atomic_load_explicit(&r->sh->prod.cached_head, memory_order_relaxed) != head)
        atomic_store_explicit(&r->sh->prod.cached_head, head, memory_order_release); /* R5 */
    if (tail - head <= r->cap) /* MP: tail may be stale, and consumers already past it */
        psy_ring_note_usage(r, tail - head);
    return head;
}

void psy_ring_produced(const struct psy_ring *r, uint64_t *msgs, uint64_t *bytes)
{
    const struct psy_prod *p = &r->sh->prod;
    /* A producer process that died while moving the checkpoint leaves the
     * count odd: after this many tries the counts are taken as they are. */
    for (int tries = 0;; tries++) {
        uint64_t seq = atomic_load_explicit(&p->count_seq, memory_order_acquire);
        uint64_t m = atomic_load_explicit(&p->msgs, memory_order_relaxed);
        uint64_t b = atomic_load_explicit(&p->bytes, memory_order_relaxed);
        if (r->walk_counts) {
            uint64_t from = atomic_load_explicit(&p->count_pos, memory_order_relaxed), n = 0, nb = 0;
            /* pairs with the release of pub.tail in psy_sp_publish: the headers before it are written */
            uint64_t tail = atomic_load_explicit(&r->sh->pub.tail, memory_order_acquire) & ~PSY_TAIL_CLAIMED;
            if (!(seq & 1) && tail - from <= r->cap) { /* a corrupted shared ring may say anything */
                psy_tsan_ignore_reads(true);
                count_records(r, from, tail, &p->count_seq, seq, &n, &nb);
                psy_tsan_ignore_reads(false);
            }
            m += n;
            b += nb;
            atomic_thread_fence(memory_order_acquire); /* A7: the reads above before the second read of seq */
            if ((seq & 1 || atomic_load_explicit(&p->count_seq, memory_order_relaxed) != seq) && tries < 100000) {
                psy_cpu_relax();
                continue;
            }
        }
        *msgs = m;
        *bytes = b;
        return;
    }
}

/* ipc MP: records what this producer is about to reserve (or that it holds
 * nothing: pos PSY_INTENT_NONE). Plain stores to the handle's own slot; a
 * survivor reads them only after this process is dead. */
static inline void intent_note(struct psy_ring *r, uint64_t pos, uint64_t end)
{
    if (r->intent) {
        atomic_store_explicit(&r->intent->end, end, memory_order_relaxed);
        atomic_store_explicit(&r->intent->pos, pos, memory_order_relaxed);
    }
}

static inline void intent_clear(struct psy_ring *r)
{
    if (r->intent)
        atomic_store_explicit(&r->intent->pos, PSY_INTENT_NONE, memory_order_release); /* after R2 */
}

static int mp_claim(struct psy_ring *r, uint64_t need, struct psyne_claimed *c)
{
    struct psy_ring_shared *sh = r->sh;
    uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_relaxed);
    for (;;) {
        /* A5 pairs with R5 (psy_ring_refresh_cached_head): carries A3's view
         * of the zeroed space from the producer that refreshed it to us. */
        uint64_t head = atomic_load_explicit(&sh->prod.cached_head, memory_order_acquire);
        if (tail + need + PSY_TERMINATOR - head > r->cap) { /* same limit as SP, see psyne/inline.h */
            head = psy_ring_refresh_cached_head(r, tail);
            if (tail + need + PSY_TERMINATOR - head > r->cap) {
                uint64_t now = atomic_load_explicit(&sh->pub.tail, memory_order_relaxed);
                if (now != tail) { /* another producer moved on: look again */
                    tail = now;
                    continue;
                }
                return -EAGAIN;
            }
        }
        intent_note(r, tail | PSY_INTENT_TENTATIVE, tail + need);
        /* release: the intent is stored before the reservation exists */
        if (atomic_compare_exchange_weak_explicit(&sh->pub.tail, &tail, tail + need, memory_order_release,
                                                  memory_order_relaxed))
            break;
    }
    intent_note(r, tail, tail + need); /* confirmed: this reservation is ours */
    c->data = r->data + (tail & r->mask) + PSYNE_RECORD_HEADER;
    c->psy_pos = tail;
    c->psy_reserved = (uint32_t)need;
    return 0;
}

int psy_ring_claim(struct psy_ring *r, uint64_t need, struct psyne_claimed *c)
{
    return r->mp ? mp_claim(r, need, c) : psy_sp_claim(r, need, c);
}

void psy_mp_publish(struct psy_ring *r, uint64_t pos, uint64_t reserved, uint32_t length, uint32_t type)
{
    uint64_t used = PSYNE_RECORD_SIZE(length);
    if (used < reserved) /* consumers reach the pad only after the header below (R2) */
        atomic_store_explicit(psy_hdr_at(r, pos + used),
                              psy_hdr_make((uint32_t)(reserved - used - PSYNE_RECORD_HEADER), PSY_TYPE_PAD),
                              memory_order_relaxed);
    atomic_store_explicit(psy_hdr_at(r, pos), psy_hdr_make(length, type), memory_order_release); /* R2 */
}

int psy_ring_commit(struct psy_ring *r, struct psyne_claimed *c, uint32_t length, uint32_t type)
{
    struct psy_ring_shared *sh = r->sh;
    if (!r->mp) {
        /* the tail says which claim is open (psy_reserved stays set after
         * an inline commit, psyne/inline.h) */
        if (atomic_load_explicit(&sh->pub.tail, memory_order_relaxed) != (c->psy_pos | PSY_TAIL_CLAIMED))
            return -EINVAL;
        psy_sp_commit(r, c, length, type);
        return 0;
    }
    psy_mp_publish(r, c->psy_pos, c->psy_reserved, length, type); /* MP counts: per handle, channel.c */
    intent_clear(r);
    c->psy_reserved = 0;
    psy_wake_if_waiting(r, PSY_WAIT_DATA);
    return 0;
}

int psy_ring_abort(struct psy_ring *r, struct psyne_claimed *c)
{
    if (r->mp) {
        /* Others may have claimed after us: the space cannot be handed back,
         * so it becomes one pad record that consumers skip. */
        psy_mp_publish(r, c->psy_pos, c->psy_reserved, c->psy_reserved - PSYNE_RECORD_HEADER, PSY_TYPE_PAD);
        intent_clear(r);
        psy_wake_if_waiting(r, PSY_WAIT_DATA);
    } else {
        uint64_t tail = atomic_load_explicit(&r->sh->pub.tail, memory_order_relaxed);
        if (tail != (c->psy_pos | PSY_TAIL_CLAIMED))
            return -EINVAL;
        atomic_store_explicit(&r->sh->pub.tail, tail & ~PSY_TAIL_CLAIMED, memory_order_relaxed);
    }
    c->psy_reserved = 0;
    return 0;
}

void psy_ring_count_full(struct psy_ring *r)
{
    if (r->mp)
        atomic_fetch_add_explicit(&r->sh->prod.full_events, 1, memory_order_relaxed);
    else
        psy_count(&r->sh->prod.full_events, 1);
}

/* How many records of `need` bytes fit between tail and head + capacity
 * (keeping the terminator's 8 bytes), at most n. */
static unsigned fitting(struct psy_ring *r, uint64_t tail, uint64_t head, uint64_t need, unsigned n)
{
    uint64_t room = head + r->cap - tail;
    if (room < need + PSY_TERMINATOR)
        return 0;
    uint64_t k = (room - PSY_TERMINATOR) / need;
    return k < n ? (unsigned)k : n;
}

int psy_ring_claim_batch(struct psy_ring *r, uint64_t need, struct psyne_claimed *c, unsigned n)
{
    struct psy_ring_shared *sh = r->sh;
    uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_relaxed);
    if (!r->mp && (tail & PSY_TAIL_CLAIMED))
        return -EBUSY;
    uint64_t head = atomic_load_explicit(&sh->prod.cached_head, memory_order_acquire); /* A5 */
    unsigned k = fitting(r, tail, head, need, n);
    if (k < n) {
        head = psy_ring_refresh_cached_head(r, tail);
        k = fitting(r, tail, head, need, n);
    }
    if (k == 0)
        return -EAGAIN;
    /* One reservation of k records; the single claim paths check the space
     * again (MP: against producers that came in between). */
    int rc = psy_ring_claim(r, need * k, c);
    if (rc == -EAGAIN && k > 1)
        rc = psy_ring_claim(r, need * (k = 1), c);
    if (rc)
        return rc;
    uint64_t pos = c->psy_pos;
    uint32_t capacity = c->capacity;
    for (unsigned i = 0; i < k; i++) {
        c[i].data = r->data + ((pos + i * need) & r->mask) + PSYNE_RECORD_HEADER;
        c[i].capacity = capacity;
        c[i].psy_pos = pos + i * need;
        c[i].psy_reserved = (uint32_t)need;
        c[i].psy_batch = i ? 0 : k;
    }
    return (int)k;
}

/* Writes the headers of records 1..n-1 of a batch, and a pad in the slack
 * after each record that is followed by another; returns the end of the
 * last record. Record 0's header is written last by the caller (R1/R2). */
static uint64_t batch_headers(struct psy_ring *r, struct psyne_claimed *c, unsigned n, const uint32_t *lengths,
                              uint32_t type)
{
    uint64_t need = c[0].psy_reserved;
    for (unsigned i = 0; i < n; i++) {
        uint64_t used = PSYNE_RECORD_SIZE(lengths[i]);
        if (i)
            atomic_store_explicit(psy_hdr_at(r, c[i].psy_pos), psy_hdr_make(lengths[i], type), memory_order_relaxed);
        if (i + 1 < n && used < need)
            atomic_store_explicit(psy_hdr_at(r, c[i].psy_pos + used),
                                  psy_hdr_make((uint32_t)(need - used - PSYNE_RECORD_HEADER), PSY_TYPE_PAD),
                                  memory_order_relaxed);
    }
    return c[n - 1].psy_pos + PSYNE_RECORD_SIZE(lengths[n - 1]);
}

void psy_ring_commit_batch(struct psy_ring *r, struct psyne_claimed *c, unsigned n, const uint32_t *lengths,
                           uint32_t type, uint64_t bytes)
{
    unsigned k = c[0].psy_batch;
    if (n == 0) {
        struct psyne_claimed all = c[0];
        all.psy_reserved = c[0].psy_reserved * k;
        psy_ring_abort(r, &all);
    } else if (!r->mp) {
        uint64_t end = batch_headers(r, c, n, lengths, type);
        psy_sp_publish(r, c[0].psy_pos, psy_hdr_make(lengths[0], type), end, n, bytes);
        /* A batch is counted as it is published: a few stores per batch
         * cost less than walking its headers again once per lap (measured:
         * docs/benchmarks/history.md). The records before it are
         * walked now, so the checkpoint stays at the tail. */
        if (r->walk_counts)
            sp_checkpoint(r, c[0].psy_pos, end, n, bytes);
    } else {
        uint64_t end = batch_headers(r, c, n, lengths, type);
        uint64_t reserved_end = c[0].psy_pos + c[0].psy_reserved * (uint64_t)k;
        if (end < reserved_end) /* the rest of the reservation: one pad */
            atomic_store_explicit(psy_hdr_at(r, end),
                                  psy_hdr_make((uint32_t)(reserved_end - end - PSYNE_RECORD_HEADER), PSY_TYPE_PAD),
                                  memory_order_relaxed);
        atomic_store_explicit(psy_hdr_at(r, c[0].psy_pos), psy_hdr_make(lengths[0], type),
                              memory_order_release); /* R2 */
        intent_clear(r);
        psy_wake_if_waiting(r, PSY_WAIT_DATA); /* MP counts: per handle, channel.c */
    }
    c[0].psy_reserved = 0;
}
