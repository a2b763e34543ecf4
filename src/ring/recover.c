/*
 * recover.c - what survivors do with a ring position a dead producer held.
 *
 * An MP producer (ipc://) that dies between its reserving CAS and its commit
 * leaves a zero header that every consumer would wait at forever. Its
 * intent (ring.h) says which bytes it reserved; this turns them into one pad
 * record, which consumers step over and release like any other.
 *
 * An MC consumer that dies holding views would hold their space forever
 * (the sweep stops at the first record not released). Its records carry its
 * tag (ring.h); this releases them on its behalf.
 */
#include <sched.h>
#include <string.h>

#include "ring.h"

/* The position the consumers have reached: nothing before it may be touched. */
static uint64_t read_position(const struct psy_ring *r)
{
    return atomic_load_explicit(&r->sh->cons.read_pos, memory_order_acquire) & ~PSY_POS_FLAGS;
}

uint64_t psy_ring_recover_claim(struct psy_ring *r, uint64_t pos, uint64_t end)
{
    if (!r->mp || (pos & PSY_POS_FLAGS) || end - pos < PSYNE_RECORD_HEADER || end - pos > r->cap)
        return 0;
    uint64_t read = read_position(r);
    uint64_t tail = atomic_load_explicit(&r->sh->pub.tail, memory_order_acquire);
    /* Only a reservation that nobody has read yet, and that was made: before
     * read it may already be recycled, at or after tail it never happened. */
    if ((int64_t)(pos - read) < 0 || (int64_t)(tail - end) < 0)
        return 0;
    /* The header at pos is stored last by a commit (R2): non-zero means the
     * producer finished before it died, and nothing is missing. */
    psy_atomic64 *hdr = psy_hdr_at(r, pos);
    if (atomic_load_explicit(hdr, memory_order_acquire) != 0)
        return 0;
    atomic_store_explicit(hdr, psy_hdr_make((uint32_t)(end - pos - PSYNE_RECORD_HEADER), PSY_TYPE_PAD),
                          memory_order_release); /* R2 on the dead producer's behalf */
    psy_wake_if_waiting(r, PSY_WAIT_DATA);
    return end - pos;
}

/* Takes the sweep lock of rel.head, waiting for a live sweeper (a few
 * instructions) but not forever: a sweeper that died holding it never lets
 * go (a known limit). Returns false if it gave up. */
static bool take_sweep_lock(struct psy_ring *r, uint64_t *head)
{
    psy_atomic64 *word = &r->sh->rel.head;
    for (unsigned tries = 0; tries < 100000; tries++) {
        uint64_t v = atomic_load_explicit(word, memory_order_relaxed);
        if (!(v & PSY_LOCK_BIT) &&
            atomic_compare_exchange_weak_explicit(word, &v, v | PSY_LOCK_BIT, memory_order_acquire,
                                                  memory_order_relaxed)) {
            *head = v & ~PSY_POS_FLAGS;
            return true;
        }
        sched_yield();
    }
    return false;
}

unsigned psy_ring_recover_views(struct psy_ring *r, uint32_t taken_tag)
{
    uint64_t head;
    if (!r->mc || !taken_tag || !take_sweep_lock(r, &head))
        return 0;
    /* Under the sweep lock no header between head and read_pos is recycled,
     * and every one there starts a span: a marker, or a taken record's tag. */
    uint64_t read = atomic_load_explicit(&r->sh->cons.read_pos, memory_order_acquire) & ~PSY_POS_FLAGS;
    unsigned released = 0;
    for (uint64_t pos = head; pos != read && read - pos <= r->cap;) {
        uint64_t w = atomic_load_explicit(psy_hdr_at(r, pos), memory_order_acquire);
        uint64_t span = psy_hdr_length(w);
        if (span < PSYNE_RECORD_HEADER || span > read - pos || (span & 7))
            break; /* not a span (a corrupted ring): stop */
        if (!(w & PSY_MARKER_BIT) && psy_hdr_type(w) == taken_tag) {
            if (r->mp) /* as psy_mc_release: free space stays zero */
                memset(r->data + (pos & r->mask) + PSYNE_RECORD_HEADER, 0, span - PSYNE_RECORD_HEADER);
            atomic_store_explicit(psy_hdr_at(r, pos), PSY_MARKER_BIT | span, memory_order_release); /* R4 */
            released++;
        }
        pos += span;
    }
    /* Unlock (dropping any PENDING: the sweep below looks at everything). */
    atomic_store_explicit(&r->sh->rel.head, head, memory_order_release);
    psy_mc_sweep(r);
    return released;
}
