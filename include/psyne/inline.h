/* SPDX-License-Identifier: MIT */
/*
 * psyne/inline.h - included by psyne.h; private: nothing here is API.
 *
 * psyne_claim and psyne_commit of single-producer channels as inline
 * functions, so that a 64 B message costs the producer the stores it needs
 * (payload, header, terminator, tail) and no call: on x86 every store queues
 * behind the payload stores whose lines the consumer holds, and the call's
 * register saves and the claim struct written to memory were what kept
 * psyne's 64 B stream well behind a fixed-slot ring
 * (benchmarks/sp_store_cost.c measures it). The same holds for C++, whose
 * claim objects (psyne.hpp) keep their channel and status beside the claim:
 * through a call, all of it is stored for every message. So the code uses
 * the compilers' __atomic builtins, not <stdatomic.h>, and serves C and C++
 * alike (GCC and Clang). As liburing does, the same functions are also
 * exported as symbols (src/core/inline_symbols.c) for bindings, other
 * compilers, and code built with -DPSYNE_NO_INLINE.
 *
 * The handle starts with a struct psy_lane: a read-only copy of what the
 * fast path needs of the ring, filled when the handle opens. Its tail is
 * NULL where the fast path does not apply (MP modes, MC consumers of an SP
 * ring, tcp://, dynamic rings, consumer handles); then, and whenever the
 * ring is full, closed or anything is wrong, the inline code calls the
 * library (psy_claim_slow, psy_commit_slow), which reports errors.
 * The ordering labels are those of src/ring/ring.h.
 */
#ifndef PSYNE_INLINE_H
#define PSYNE_INLINE_H

#if defined(__cplusplus)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast" /* one text for C and C++ */
#endif

#include <errno.h>
#ifndef __cplusplus
#include <stdbool.h>
#endif

#if defined(__GNUC__)
#define psy_likely(x) __builtin_expect(!!(x), 1)
#define psy_unlikely(x) __builtin_expect(!!(x), 0)
#else
#define psy_likely(x) (x)
#define psy_unlikely(x) (x)
#endif

#define PSY_TAIL_CLAIMED 1ull /* SP: bit 0 of the ring's tail, a claim is open */

/* What the SP fast path reads; written once, before the handle is used.
 * The words pointed to are the ring's atomics, read and written here only
 * through __atomic builtins (the library's C11 atomics share their layout). */
struct psy_lane {
    uint64_t *tail;         /* the ring's published position (pub.tail); NULL: no fast path */
    uint64_t *cached_head;  /* the producer's copy of the release position */
    uint32_t *data_waiters; /* consumers asleep on the ring */
    uint32_t *closed;       /* set once by shutdown */
    uint8_t *data;          /* first of the two mirrored mappings */
    uint64_t mask;          /* header offsets: (capacity - 1) & ~7 */
    uint64_t cap;
    bool wake_fence; /* fence before reading data_waiters (no membarrier here) */
};

/* Every claim keeps this much free space after the record for the SP
 * terminator, so the largest message is capacity - 16 bytes in every mode. */
#define PSY_TERMINATOR PSYNE_RECORD_HEADER

/* Claims need bytes at the tail: 0 (*pos: the record's position), -EBUSY
 * (a claim is open) or -EAGAIN (no room as far as the cached head says). */
static inline int psy_lane_claim(const struct psy_lane *l, uint64_t need, uint64_t *pos)
{
    uint64_t tail = __atomic_load_n(l->tail, __ATOMIC_RELAXED); /* the producer is its only writer */
    *pos = tail & ~PSY_TAIL_CLAIMED;
    if (psy_unlikely(tail & PSY_TAIL_CLAIMED))
        return -EBUSY;
    if (psy_unlikely(tail + need + PSY_TERMINATOR - __atomic_load_n(l->cached_head, __ATOMIC_RELAXED) > l->cap))
        return -EAGAIN;
    __atomic_store_n(l->tail, tail | PSY_TAIL_CLAIMED, __ATOMIC_RELAXED);
    return 0;
}

/* Publishes the records in [pos, end), whose later headers are written:
 * the terminator at end, then the first header (R1), which makes them all
 * visible at once; the tail store closes the claim. Returns whether a
 * consumer sleeps and must be woken. */
static inline bool psy_lane_publish(const struct psy_lane *l, uint64_t pos, uint64_t first_header, uint64_t end)
{
    __atomic_store_n((uint64_t *)(void *)(l->data + (end & l->mask)), (uint64_t)0,
                     __ATOMIC_RELAXED); /* published by R1 */
    __atomic_store_n((uint64_t *)(void *)(l->data + (pos & l->mask)), first_header, __ATOMIC_RELEASE); /* R1 */
    __atomic_store_n(l->tail, end, __ATOMIC_RELEASE);
    /* A sleeper registers, then runs a process-wide barrier before its last
     * look (src/ring/wait.c), so a compiler barrier is enough here unless
     * that barrier is missing. */
    if (l->wake_fence)
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    else
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return __atomic_load_n(l->data_waiters, __ATOMIC_RELAXED) != 0;
}

/* The library's side of the inline calls (exported, not API). */
PSYNE_API int psy_claim_slow(psyne_channel *ch, size_t max_len, struct psyne_claimed *c, int64_t timeout_ns);
PSYNE_API int psy_commit_slow(psyne_channel *ch, struct psyne_claimed *c, size_t length, uint32_t type);
PSYNE_API void psy_lane_wake(psyne_channel *ch);

#ifdef PSYNE_EXPORT_INLINE_CALLS
#define PSYNE_INLINE PSYNE_API /* src/core/inline_symbols.c: the exported copies */
PSYNE_API int psyne_claim(psyne_channel *ch, size_t max_len, struct psyne_claimed *c, int64_t timeout_ns);
PSYNE_API int psyne_commit(psyne_channel *ch, struct psyne_claimed *c, size_t length, uint32_t type);
#else
#define PSYNE_INLINE static inline
#endif

/* The slow paths take a copy of the claim, so that the caller's claim does
 * not escape: where the caller keeps it local, the compiler keeps it in
 * registers and the fast path stores nothing to it. */
PSYNE_INLINE int psyne_claim(psyne_channel *ch, size_t max_len, struct psyne_claimed *c, int64_t timeout_ns)
{
    const struct psy_lane *l = (const struct psy_lane *)(const void *)ch; /* the handle's first member */
    uint64_t pos;
    /* NULL ch or c: -EINVAL from the library; c never passed on there (a
     * claim whose address escapes cannot stay in registers) */
    if (psy_likely(ch != NULL && c != NULL && l->tail != NULL && max_len < l->cap &&
                   !__atomic_load_n(l->closed, __ATOMIC_ACQUIRE)) &&
        psy_likely(psy_lane_claim(l, PSYNE_RECORD_SIZE(max_len), &pos) == 0)) {
        c->data = l->data + (pos & l->mask) + PSYNE_RECORD_HEADER;
        c->capacity = (uint32_t)max_len;
        c->psy_reserved = (uint32_t)PSYNE_RECORD_SIZE(max_len);
        c->psy_pos = pos;
        c->psy_batch = 1;
        c->psy_peer = 0;
        return 0;
    }
    if (psy_unlikely(c == NULL))
        return psy_claim_slow(ch, max_len, NULL, timeout_ns);
    struct psyne_claimed copy = {NULL, 0, 0, 0, 0, 0}; /* c is only written */
    int rc = psy_claim_slow(ch, max_len, &copy, timeout_ns);
    *c = copy;
    return rc;
}

PSYNE_INLINE int psyne_commit(psyne_channel *ch, struct psyne_claimed *c, size_t length, uint32_t type)
{
    const struct psy_lane *l = (const struct psy_lane *)(const void *)ch;
    if (psy_unlikely(c == NULL))                        /* where c is a local, the compiler drops the test */
        return psy_commit_slow(ch, NULL, length, type); /* -EINVAL */
    uint64_t pos = c->psy_pos;
    /* The tail says that this claim is the open one (a second commit of it
     * goes to the library and fails); psy_reserved is left as it is. A
     * NULL ch goes to the library too (-EINVAL). */
    if (psy_likely(ch != NULL && l->tail != NULL && length <= c->capacity && type >= PSYNE_TYPE_USER_MIN &&
                   type <= PSYNE_TYPE_USER_MAX && c->psy_batch == 1) &&
        psy_likely(__atomic_load_n(l->tail, __ATOMIC_RELAXED) == (pos | PSY_TAIL_CLAIMED))) {
        if (psy_unlikely(
                psy_lane_publish(l, pos, (uint64_t)length | ((uint64_t)type << 32), pos + PSYNE_RECORD_SIZE(length))))
            psy_lane_wake(ch);
        return 0;
    }
    struct psyne_claimed copy = *c;
    int rc = psy_commit_slow(ch, &copy, length, type);
    *c = copy;
    return rc;
}

#if defined(__cplusplus)
#pragma GCC diagnostic pop
#endif

#endif /* PSYNE_INLINE_H */
