/* SPDX-License-Identifier: MIT */
/*
 * fastpath.h - the single-producer and single-consumer steps of the ring as
 * inline functions, so the public calls in channel.c run them without
 * layers of calls (the SPSC hot path is a handful of loads and stores).
 * produce.c and consume.c use the same functions: there is one
 * implementation of each step. Ordering labels are those of ring.h.
 */
#ifndef PSY_FASTPATH_H
#define PSY_FASTPATH_H

#include <errno.h>
#include <string.h>

#include "ring.h"

/* The state of one single consumer: the ring's consumer blocks, or one
 * BROADCAST subscriber's slot. */
struct psy_reader {
    psy_atomic64 *read_pos;
    psy_atomic64 *head;     /* R3: release position, which producers read */
    psy_atomic64 *released; /* the consumer's copy of *head that it reads (ring.h) */
    psy_atomic64 *msgs;
    psy_atomic64 *bytes;
};

/* SP claim: non-blocking, -EAGAIN when full, -EBUSY with a claim open. */
static inline int psy_sp_claim(struct psy_ring *r, uint64_t need, struct psyne_claimed *c)
{
    uint64_t pos;
    int rc = psy_lane_claim(&r->lane, need, &pos);
    if (psy_unlikely(rc == -EAGAIN)) {
        if (pos + need + PSY_TERMINATOR - psy_ring_refresh_cached_head(r, pos) > r->cap)
            return -EAGAIN;
        rc = psy_lane_claim(&r->lane, need, &pos);
    }
    if (psy_unlikely(rc))
        return rc;
    c->data = r->data + (pos & r->mask) + PSYNE_RECORD_HEADER;
    c->psy_pos = pos;
    c->psy_reserved = (uint32_t)need;
    return 0;
}

/* SP publication of the records in [pos, end) (psy_lane_publish), which
 * closes the producer's claim. msgs/bytes are counted here only in rings
 * that count commits. */
static inline void psy_sp_publish(struct psy_ring *r, uint64_t pos, uint64_t first_header, uint64_t end, uint64_t msgs,
                                  uint64_t bytes)
{
    if (!r->walk_counts) {
        psy_count(&r->sh->prod.msgs, msgs);
        psy_count(&r->sh->prod.bytes, bytes);
    }
    if (psy_lane_publish(&r->lane, pos, first_header, end))
        psy_wake_sleepers(r, PSY_WAIT_DATA);
}

/* SP commit of one claim. */
static inline void psy_sp_commit(struct psy_ring *r, struct psyne_claimed *c, uint32_t length, uint32_t type)
{
    psy_sp_publish(r, c->psy_pos, psy_hdr_make(length, type), c->psy_pos + PSYNE_RECORD_SIZE(length), 1, length);
    c->psy_reserved = 0;
}

/* Single consumer: the next record if it is an ordinary message.
 * Returns 0, -EAGAIN when nothing is committed yet, or 1 when the record
 * needs the general walk (a pad, or a header that must be reported). */
static inline int psy_sc_receive_one(struct psy_ring *r, const struct psy_reader *rd, struct psyne_msg *m)
{
    uint64_t pos = atomic_load_explicit(rd->read_pos, memory_order_relaxed);
    uint64_t w = atomic_load_explicit(psy_hdr_at(r, pos), memory_order_acquire); /* A2 */
    if (w == 0)
        return -EAGAIN;
    uint32_t type = psy_hdr_type(w);
    uint64_t size = PSYNE_RECORD_SIZE(psy_hdr_length(w));
    uint64_t head = atomic_load_explicit(rd->released, memory_order_relaxed);
    /* size <= cap too: positions from a shared segment may be corrupted,
     * and the view must stay inside the mapping whatever they say */
    if (psy_unlikely(type < PSYNE_TYPE_USER_MIN || type > PSYNE_TYPE_USER_MAX || size > head + r->cap - pos ||
                     size > r->cap) &&
        (type != PSYNE_TYPE_TENSOR || size > head + r->cap - pos || size > r->cap)) /* typed messages: fast too */
        return 1;
    psy_ring_note_usage(r, pos + size - head);
    m->data = r->data + (pos & r->mask) + PSYNE_RECORD_HEADER;
    m->length = psy_hdr_length(w);
    m->type = type;
    m->peer = 0;
    m->psy_flags = 0;
    m->psy_begin = pos;
    m->psy_end = pos + size;
    atomic_store_explicit(rd->read_pos, pos + size, memory_order_relaxed);
    psy_count(rd->msgs, 1);
    psy_count(rd->bytes, m->length);
    return 0;
}

/* SC release: frees [head, end). In MP modes the space is zeroed first, so
 * producers always claim zeroed memory. */
static inline int psy_sc_release(struct psy_ring *r, const struct psy_reader *rd, uint64_t end)
{
    uint64_t head = atomic_load_explicit(rd->released, memory_order_relaxed);
    uint64_t read = atomic_load_explicit(rd->read_pos, memory_order_relaxed);
    if (psy_unlikely(end - head == 0 || end - head > read - head || end - head > r->cap))
        return -EINVAL;
    if (r->mp)
        memset(r->data + (head & r->mask), 0, end - head);
    atomic_store_explicit(rd->released, end, memory_order_relaxed);
    atomic_store_explicit(rd->head, end, memory_order_release); /* R3 */
    psy_wake_if_waiting(r, PSY_WAIT_SPACE);
    return 0;
}

#endif
