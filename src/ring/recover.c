/*
 * recover.c - what survivors do with a ring position a dead producer held.
 *
 * An MP producer (ipc://) that dies between its reserving CAS and its commit
 * leaves a zero header that every consumer would wait at forever. Its
 * intent (ring.h) says which bytes it reserved; this turns them into one pad
 * record, which consumers step over and release like any other.
 */
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
