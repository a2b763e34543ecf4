/* SPDX-License-Identifier: MIT */
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
#include <time.h>

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
        if (!(v & PSY_LOCK_BIT) && atomic_compare_exchange_weak_explicit(word, &v, v | PSY_LOCK_BIT,
                                                                         memory_order_acquire, memory_order_relaxed)) {
            *head = v & ~PSY_POS_FLAGS;
            return true;
        }
        sched_yield();
    }
    return false;
}

/* The span of a header tagged `tag` at pos, or 0 if it is not one. */
static uint64_t tagged_span(struct psy_ring *r, uint64_t pos, uint64_t room, uint32_t tag)
{
    uint64_t w = atomic_load_explicit(psy_hdr_at(r, pos), memory_order_acquire);
    uint64_t span = psy_hdr_length(w);
    if ((w & PSY_MARKER_BIT) || psy_hdr_type(w) != tag || !psy_span_valid(span, room))
        return 0;
    return span;
}

/* Whether `word` holds the lock noted as `tag`'s and keeps holding it: a
 * live consumer that has just taken the lock notes itself a few
 * instructions later, so look again after a millisecond before stealing. */
static bool held_by(psy_atomic64 *word, psy_atomic32 *owner, uint32_t tag, uint64_t *v)
{
    *v = atomic_load_explicit(word, memory_order_acquire);
    if (!(*v & PSY_LOCK_BIT) || atomic_load_explicit(owner, memory_order_acquire) != tag)
        return false;
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
    return atomic_load_explicit(word, memory_order_acquire) == *v &&
           atomic_load_explicit(owner, memory_order_acquire) == tag;
}

/* The dead consumer held the read lock: the records it had taken and
 * tagged, but not yet handed out past read_pos, went with it; release them
 * and let go of the lock. (If it died between taking the lock and noting
 * itself as the holder, a few instructions, the lock stays taken.) */
static unsigned finish_read(struct psy_ring *r, uint32_t tag)
{
    struct psy_ring_shared *sh = r->sh;
    uint64_t v;
    if (!held_by(&sh->cons.read_pos, &sh->cons.read_owner, tag, &v))
        return 0;
    uint64_t pos = v & ~PSY_POS_FLAGS, head = atomic_load(&sh->rel.head) & ~PSY_POS_FLAGS;
    unsigned released = 0;
    for (uint64_t span; (span = tagged_span(r, pos, head + r->cap - pos, tag)) != 0; pos += span) {
        psy_mc_mark_released(r, pos, span); /* on its taker's behalf */
        released++;
    }
    atomic_store_explicit(&sh->cons.read_pos, pos, memory_order_release); /* unlock */
    return released;
}

/* The dead consumer held the sweep lock: finish its sweep. In MP rings it
 * may have zeroed part of [head, sweep_to): everything there is released,
 * so zero all of it and move on; else the markers are intact. */
static void finish_sweep(struct psy_ring *r, uint32_t tag)
{
    struct psy_ring_shared *sh = r->sh;
    uint64_t v;
    if (!held_by(&sh->rel.head, &sh->rel.sweep_owner, tag, &v))
        return;
    uint64_t head = v & ~PSY_POS_FLAGS;
    uint64_t to = atomic_load_explicit(&sh->rel.sweep_to, memory_order_acquire);
    if (r->mp && to - head - 1 < r->cap) { /* head < to <= head + cap: this sweep's target */
        memset(r->data + (head & r->mask), 0, to - head);
        head = to;
    }
    /* R3, unlock; an exchange so that what R6 releasers marked is seen by
     * whoever takes the lock next (the caller sweeps) */
    atomic_exchange_explicit(&sh->rel.head, head, memory_order_acq_rel);
}

unsigned psy_ring_recover_consumer(struct psy_ring *r, uint32_t taken_tag)
{
    uint64_t head;
    if (!r->mc || !taken_tag)
        return 0;
    unsigned released = finish_read(r, taken_tag);
    finish_sweep(r, taken_tag);
    if (!take_sweep_lock(r, &head))
        return released;
    /* Under the sweep lock no header between head and read_pos is recycled,
     * and every one there starts a span: a marker, or a taken record's tag. */
    uint64_t read = atomic_load_explicit(&r->sh->cons.read_pos, memory_order_acquire) & ~PSY_POS_FLAGS;
    for (uint64_t pos = head; pos != read && read - pos <= r->cap;) {
        uint64_t w = atomic_load_explicit(psy_hdr_at(r, pos), memory_order_acquire);
        uint64_t span = psy_hdr_length(w);
        if (!psy_span_valid(span, read - pos))
            break; /* not a span (a corrupted ring): stop */
        if (!(w & PSY_MARKER_BIT) && psy_hdr_type(w) == taken_tag) {
            psy_mc_mark_released(r, pos, span); /* on its taker's behalf */
            released++;
        }
        pos += span;
    }
    /* Unlock (dropping any PENDING: the sweep below looks at everything). */
    atomic_exchange_explicit(&r->sh->rel.head, head, memory_order_acq_rel); /* see finish_sweep */
    psy_mc_sweep(r);
    return released;
}
