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
 */
#ifndef PSY_DYNAMIC_H
#define PSY_DYNAMIC_H

#include "fastpath.h"

#define PSY_SEG_OPEN UINT64_MAX /* end of the segment the producer still writes (positions are 8-aligned) */

struct psy_dyn_seg {
    struct psy_ring ring;
    struct psy_reader reader; /* the consumer's state in this segment */
    uint64_t start;           /* first position */
    psy_atomic64 end;         /* where the producer left it (release: next is set), or PSY_SEG_OPEN */
    struct psy_dyn_seg *next; /* the newer segment */
};

/* The statistics of a dynamic ring beyond those of its segments. */
struct psy_dyn_stats {
    psy_atomic64 resizes_up, resizes_down, resize_ns, failed_claims, window_high_water;
    /* counters of segments already unmapped */
    psy_atomic64 msgs_out, bytes_out, msgs_in, bytes_in, full_events, empty_events, waits, wakeups;
};
_Static_assert(sizeof(struct psy_dyn_stats) <= 200, "a dynamic ring's statistics stay small");

struct psy_dyn {
    struct psyne_options opt; /* for new segments */
    struct psyne_dynamic cfg; /* defaults filled in */
    uint64_t initial;
    pthread_mutex_t lock;
    struct psy_dyn_seg *oldest;    /* list by next; the consumer unlinks from here */
    _Atomic(struct psy_dyn_seg *) prod; /* the newest: where the producer writes */
    struct psy_dyn_seg *cons;      /* where the consumer reads (consumer only) */
    bool closed;                   /* under lock: no new segments */
    /* producer only: */
    uint32_t ops_left;     /* claims until the next look at the usage */
    uint32_t window_left;  /* claims until the window closes */
    uint64_t window_high;  /* most bytes in use seen in this window */
    struct psy_dyn_stats st;
};

/* Validates cfg against opt and creates the first segment. */
int psy_dyn_create(struct psy_dyn **out, const struct psyne_options *opt);
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
 * returns 1; else 0. Unmaps nothing: it runs inside waits on the segment. */
int psy_dyn_follow(struct psy_dyn *d);
/* Consumer, outside any wait: unmaps the segments it left and released. */
void psy_dyn_reap(struct psy_dyn *d);
/* Consumer: SC release up to position end, wherever it lies; unmaps the
 * segments that this releases completely. */
int psy_dyn_release(struct psy_dyn *d, uint64_t end);

/* Adds the ring's counters to st (psyne_channel_stats). */
void psy_dyn_stats(struct psy_dyn *d, struct psyne_stats *st);

#endif
