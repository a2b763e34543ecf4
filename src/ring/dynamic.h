/* SPDX-License-Identifier: MIT */
/*
 * dynamic.h - a ring that sizes itself by load: a chain of SPSC segments.
 *
 * Positions continue from one segment to the next (a new segment starts at
 * the position where the producer left the old one), so a message's
 * position says which segment holds it. The producer chains a segment and
 * publishes `end` in the old one; the consumer, finding the old one empty at
 * `end`, follows `next`. A segment is unmapped when the consumer has
 * released everything in it. No record is copied and no link record is
 * needed, so even a full segment can be left.
 *
 * Threads: psy_dyn_producer/psy_dyn_grow run on the producer's thread,
 * psy_dyn_follow/psy_dyn_release on the consumer's; `lock` guards the
 * segment list against each other and against stats and shutdown.
 *
 * Where segments live: memory:// keeps one psy_dyn for the whole channel
 * (ops NULL: segments are private rings, the list is shared by the two
 * handles). ipc:// gives every handle a psy_dyn of its own (ops from
 * ipc_dynamic.c): segments are shared-memory files that the producer makes
 * and the consumer opens by generation, and what both sides must agree on
 * (`end`, statistics) lives in shared memory.
 */
#ifndef PSY_DYNAMIC_H
#define PSY_DYNAMIC_H

#include "fastpath.h"

#define PSY_SEG_OPEN UINT64_MAX /* end of the segment the producer still writes (positions are 8-aligned) */

struct psy_dyn;

struct psy_dyn_seg {
    struct psy_ring ring;
    struct psy_reader reader; /* the consumer's state in this segment */
    uint64_t start;           /* first position */
    uint64_t gen;             /* 0 for the first segment, +1 per resize */
    psy_atomic64 *end;        /* where the producer left it (release: next exists), or PSY_SEG_OPEN;
                                 own_end, or in the segment's shared header (ipc) */
    psy_atomic64 own_end;
    psy_atomic32 *retired;    /* ipc: set once by whoever folds its counters; NULL: memory:// */
    struct psy_dyn_seg *next; /* the newer segment */
    struct psy_dyn *dyn;      /* its ring */
};

/* The statistics of a dynamic ring beyond those of its segments. */
struct psy_dyn_stats {
    psy_atomic64 resizes_up, resizes_down, resize_ns, failed_claims, window_high_water;
    /* counters of segments already unmapped */
    psy_atomic64 msgs_out, bytes_out, msgs_in, bytes_in, full_events, empty_events, waits, wakeups;
};
_Static_assert(sizeof(struct psy_dyn_stats) <= 200, "a dynamic ring's statistics stay small");

/* Segments that live outside this process's list (ipc_dynamic.c). */
struct psy_dyn_ops {
    /* Makes the segment of generation gen: cap bytes from position start.
     * chained: by a resize, not at open. */
    int (*make)(struct psy_dyn *d, uint64_t gen, uint64_t cap, uint64_t start, bool chained, struct psy_dyn_seg **out);
    /* Consumer: opens the segment after s, which its producer made. */
    int (*open_next)(struct psy_dyn *d, const struct psy_dyn_seg *s, struct psy_dyn_seg **out);
    /* Producer: s, just chained, is where producers write from now on. */
    void (*chained)(struct psy_dyn *d, struct psy_dyn_seg *s);
    /* s is finished (released up to its end): whether this caller is the
     * one who folds its counters (each segment is folded once). */
    bool (*retire)(struct psy_dyn *d, struct psy_dyn_seg *s);
    /* Shutdown: shuts the segments this handle has not mapped. */
    void (*shutdown)(struct psy_dyn *d);
    /* The producer's current capacity (statistics). */
    uint64_t (*capacity)(struct psy_dyn *d);
};

struct psy_dyn {
    struct psyne_options opt; /* for new segments */
    struct psyne_dynamic cfg; /* defaults filled in */
    uint64_t initial;
    const struct psy_dyn_ops *ops; /* NULL: memory:// */
    void *ctx;                     /* the ops' */
    bool consumes;                 /* this handle receives (ipc: each handle has its own psy_dyn) */
    pthread_mutex_t lock;
    struct psy_dyn_seg *oldest;         /* list by next; the consumer unlinks from here */
    _Atomic(struct psy_dyn_seg *) prod; /* the newest: where the producer writes */
    struct psy_dyn_seg *cons;           /* where the consumer reads (consumer only) */
    bool closed;                        /* under lock: no new segments */
    /* producer only: */
    uint32_t ops_left;        /* claims until the next look at the usage */
    uint32_t window_left;     /* claims until the window closes */
    uint64_t window_high;     /* most bytes in use seen in this window */
    struct psy_dyn_stats *st; /* own_st, or shared (ipc) */
    struct psy_dyn_stats own_st;
};

/* Checks opt->dynamic against opt (-EINVAL with a message), making nothing. */
int psy_dyn_check_options(const struct psyne_options *opt);
/* Validates cfg against opt and creates the first segment. */
int psy_dyn_create(struct psy_dyn **out, const struct psyne_options *opt);
/* ipc: validates as psy_dyn_create but makes no segment; psy_dyn_append
 * adds those the handle opens, oldest first. st: shared statistics. */
int psy_dyn_create_with(struct psy_dyn **out, const struct psyne_options *opt, const struct psy_dyn_ops *ops, void *ctx,
                        struct psy_dyn_stats *st, bool consumes);
void psy_dyn_append(struct psy_dyn *d, struct psy_dyn_seg *s);
/* Fills in what every segment has: reader, start, end, owner. */
void psy_dyn_seg_init(struct psy_dyn *d, struct psy_dyn_seg *s, uint64_t gen, uint64_t start, psy_atomic64 *end);
void psy_dyn_destroy(struct psy_dyn *d);
/* Shuts every segment down; no segment is chained after it. */
void psy_dyn_shutdown(struct psy_dyn *d);

/* Producer: looks at the usage every check_interval claims and resizes as
 * it says; returns the segment to claim in. */
void psy_dyn_check(struct psy_dyn *d);
static inline struct psy_ring *psy_dyn_producer(struct psy_dyn *d)
{
    if (psy_unlikely(--d->ops_left == 0))
        psy_dyn_check(d);
    return &atomic_load_explicit(&d->prod, memory_order_relaxed)->ring;
}
/* Producer: a claim of `need` bytes found the segment full (or too small):
 * chains a larger one that fits it. 0, or -EAGAIN at the largest size
 * (counted as a failed claim), -EMSGSIZE if it can never fit, -EPIPE. */
int psy_dyn_grow(struct psy_dyn *d, uint64_t need);
/* The largest record span the ring can ever take. */
uint64_t psy_dyn_max_capacity(const struct psy_dyn *d);

/* Consumer: if the current segment is finished (the producer left it and
 * the consumer has read up to where it left), moves to the next one and
 * returns 1; else 0; < 0 if the next one cannot be opened (ipc). Unmaps
 * nothing: it runs inside waits on the segment. */
int psy_dyn_follow(struct psy_dyn *d);
/* Consumer, outside any wait: unmaps the segments it left and released. */
void psy_dyn_reap(struct psy_dyn *d);
/* Consumer: SC release up to position end, wherever it lies; unmaps the
 * segments that this releases completely. */
int psy_dyn_release(struct psy_dyn *d, uint64_t end);

/* Adds the ring's counters to st (psyne_channel_stats). */
void psy_dyn_stats(struct psy_dyn *d, struct psyne_stats *st);

#endif
