/* SPDX-License-Identifier: MIT */
/*
 * dynamic.c - growing and shrinking a dynamic ring by chaining segments
 * (dynamic.h), and following and unmapping them on the consumer's side.
 */
#include "dynamic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/error.h"

static int fill_config(struct psy_dyn *d, const struct psyne_options *opt)
{
    struct psyne_dynamic *c = &d->cfg;
    *c = *opt->dynamic;
    if (opt->mode != PSYNE_MODE_SPSC)
        return psy_fail(-EINVAL, "dynamic rings are SPSC only (one producer chains segments, one consumer "
                                 "follows them)");
    if (c->reserved)
        return psy_fail(-EINVAL, "psyne_dynamic.reserved must be zero");
    if (psy_ring_capacity(opt, &d->initial))
        return -EINVAL;
    if (!c->factor)
        c->factor = 2;
    if (c->factor < 2 || (c->factor & (c->factor - 1)))
        return psy_fail(-EINVAL, "psyne_dynamic.factor %u is not a power of two >= 2", c->factor);
    if (c->min_capacity > PSYNE_MAX_CAPACITY || c->max_capacity > PSYNE_MAX_CAPACITY)
        return psy_fail(-EINVAL, "dynamic ring sizes must be <= PSYNE_MAX_CAPACITY");
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE); /* the smallest ring there is */
    if (!c->min_capacity)
        c->min_capacity = d->initial;
    c->min_capacity = psy_round_up_pow2(c->min_capacity < page ? page : c->min_capacity);
    if (!c->max_capacity)
        c->max_capacity = d->initial * 64 < PSYNE_MAX_CAPACITY ? d->initial * 64 : PSYNE_MAX_CAPACITY;
    c->max_capacity = psy_round_up_pow2(c->max_capacity);
    if (c->min_capacity > d->initial || c->max_capacity < d->initial)
        return psy_fail(-EINVAL, "dynamic ring sizes must be min_capacity <= capacity <= max_capacity <= "
                                 "PSYNE_MAX_CAPACITY");
    if (c->grow_at == 0)
        c->grow_at = 0.75;
    if (c->shrink_at == 0)
        c->shrink_at = 0.2;
    if (!(c->grow_at > 0 && c->grow_at <= 1 && c->shrink_at > 0 && c->shrink_at < c->grow_at / c->factor))
        return psy_fail(-EINVAL, "dynamic ring thresholds need 0 < shrink_at < grow_at / factor <= 1 "
                                 "(else a shrink would at once call for a grow)");
    if (!c->window_ops)
        c->window_ops = 5000;
    if (!c->check_interval)
        c->check_interval = 64;
    if (c->check_interval > c->window_ops)
        return psy_fail(-EINVAL, "check_interval %u is longer than window_ops %u", c->check_interval, c->window_ops);
    return 0;
}

int psy_dyn_check_options(const struct psyne_options *opt)
{
    struct psy_dyn d;
    return fill_config(&d, opt);
}

void psy_dyn_seg_init(struct psy_dyn *d, struct psy_dyn_seg *s, uint64_t gen, uint64_t start, psy_atomic64 *end)
{
    psy_ring_reader_init(&s->ring, -1, &s->reader);
    s->start = start;
    s->gen = gen;
    s->end = end ? end : &s->own_end;
    s->dyn = d;
    if (!end)
        atomic_store_explicit(&s->own_end, PSY_SEG_OPEN, memory_order_relaxed);
}

/* A new segment of cap bytes starting at position start. chained: made by
 * a resize, not at open. */
static int new_segment(struct psy_dyn *d, uint64_t gen, uint64_t cap, uint64_t start, bool chained,
                       struct psy_dyn_seg **out)
{
    if (d->ops)
        return d->ops->make(d, gen, cap, start, chained, out);
    struct psy_dyn_seg *s = calloc(1, sizeof *s);
    if (!s)
        return psy_fail(-ENOMEM, "out of memory");
    struct psyne_options o = d->opt;
    o.capacity = cap;
    if (chained) /* by a resize: prefaulting here would stall the producer for
                       every page; the pages fault in as it writes them */
        o.flags |= PSYNE_F_NO_PREFAULT;
    int rc = psy_ring_create(&s->ring, &o);
    if (rc) {
        free(s);
        return rc;
    }
    psy_ring_set_start(&s->ring, start);
    psy_dyn_seg_init(d, s, gen, start, NULL);
    atomic_store_explicit(&s->ring.sh->wait.producers, 1, memory_order_relaxed); /* the channel counts handles */
    atomic_store_explicit(&s->ring.sh->wait.consumers, 1, memory_order_relaxed);
    *out = s;
    return 0;
}

int psy_dyn_create_with(struct psy_dyn **out, const struct psyne_options *opt, const struct psy_dyn_ops *ops, void *ctx,
                        struct psy_dyn_stats *st, bool consumes)
{
    struct psy_dyn *d = calloc(1, sizeof *d);
    if (!d)
        return psy_fail(-ENOMEM, "out of memory");
    d->opt = *opt;
    d->opt.dynamic = NULL;
    int rc = fill_config(d, opt);
    if (rc) {
        free(d);
        return rc;
    }
    d->ops = ops;
    d->ctx = ctx;
    d->st = st ? st : &d->own_st;
    d->consumes = consumes;
    pthread_mutex_init(&d->lock, NULL);
    d->ops_left = d->cfg.check_interval;
    d->window_left = d->cfg.window_ops;
    *out = d;
    return 0;
}

void psy_dyn_append(struct psy_dyn *d, struct psy_dyn_seg *s)
{
    pthread_mutex_lock(&d->lock);
    struct psy_dyn_seg *last = atomic_load_explicit(&d->prod, memory_order_relaxed);
    if (last)
        last->next = s;
    else
        d->oldest = d->cons = s;
    atomic_store_explicit(&d->prod, s, memory_order_relaxed);
    pthread_mutex_unlock(&d->lock);
}

int psy_dyn_create(struct psy_dyn **out, const struct psyne_options *opt)
{
    struct psy_dyn *d = NULL; /* set on success; gcc cannot see that psy_fail never returns 0 */
    int rc = psy_dyn_create_with(&d, opt, NULL, NULL, NULL, true);
    if (rc)
        return rc;
    struct psy_dyn_seg *first;
    if ((rc = new_segment(d, 0, d->initial, 0, false, &first)) != 0) {
        psy_dyn_destroy(d);
        return rc;
    }
    psy_dyn_append(d, first);
    *out = d;
    return 0;
}

/* Adds a segment's counters to the totals of unmapped ones. */
static void keep_counts(struct psy_dyn *d, struct psy_dyn_seg *s)
{
    struct psy_ring_shared *sh = s->ring.sh;
    struct psy_dyn_stats *t = d->st;
    uint64_t msgs, bytes;
    psy_ring_produced(&s->ring, &msgs, &bytes);
    atomic_fetch_add_explicit(&t->msgs_out, msgs, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->bytes_out, bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->msgs_in, atomic_load(&sh->cons.msgs), memory_order_relaxed);
    atomic_fetch_add_explicit(&t->bytes_in, atomic_load(&sh->cons.bytes), memory_order_relaxed);
    atomic_fetch_add_explicit(&t->full_events, atomic_load(&sh->prod.full_events), memory_order_relaxed);
    atomic_fetch_add_explicit(&t->empty_events, atomic_load(&sh->cons.empty_events), memory_order_relaxed);
    atomic_fetch_add_explicit(&t->waits, atomic_load(&sh->slow.waits), memory_order_relaxed);
    atomic_fetch_add_explicit(&t->wakeups, atomic_load(&sh->slow.wakeups), memory_order_relaxed);
}

void psy_dyn_destroy(struct psy_dyn *d)
{
    if (!d)
        return;
    for (struct psy_dyn_seg *s = d->oldest, *next; s; s = next) {
        next = s->next;
        psy_ring_destroy(&s->ring);
        free(s);
    }
    pthread_mutex_destroy(&d->lock);
    free(d);
}

void psy_dyn_shutdown(struct psy_dyn *d)
{
    pthread_mutex_lock(&d->lock);
    d->closed = true;
    for (struct psy_dyn_seg *s = d->oldest; s; s = s->next)
        psy_ring_shutdown(&s->ring);
    pthread_mutex_unlock(&d->lock);
    if (d->ops)
        d->ops->shutdown(d);
}

uint64_t psy_dyn_max_capacity(const struct psy_dyn *d)
{
    return d->cfg.max_capacity;
}

/* Producer: chains a segment of cap bytes after the current one and moves
 * there. The old segment's end is published after next (release), and the
 * consumer, who may sleep on the old segment, is woken to follow. */
static int chain(struct psy_dyn *d, uint64_t cap)
{
    int64_t t0 = psy_now_ns();
    struct psy_dyn_seg *old = atomic_load_explicit(&d->prod, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&old->ring.sh->pub.tail, memory_order_relaxed) & ~PSY_TAIL_CLAIMED; /* ours */
    struct psy_dyn_seg *s;
    int rc = new_segment(d, old->gen + 1, cap, tail, true, &s);
    if (rc)
        return rc;
    pthread_mutex_lock(&d->lock);
    if (d->closed) {
        pthread_mutex_unlock(&d->lock);
        psy_ring_destroy(&s->ring);
        free(s);
        return -EPIPE;
    }
    bool up = cap > old->ring.cap;
    old->next = s;
    atomic_store_explicit(old->end, tail, memory_order_release);
    atomic_store_explicit(&d->prod, s, memory_order_relaxed);
    /* Woken under the lock: the consumer may follow at once, and it
     * unmaps the old segment only after taking the lock. */
    psy_wake_if_waiting(&old->ring, PSY_WAIT_DATA);
    pthread_mutex_unlock(&d->lock);
    if (d->ops)
        d->ops->chained(d, s);
    atomic_fetch_add_explicit(up ? &d->st->resizes_up : &d->st->resizes_down, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->st->resize_ns, (uint64_t)(psy_now_ns() - t0), memory_order_relaxed);
    /* a new segment starts a new window: its own usage decides the next shrink */
    d->window_left = d->cfg.window_ops;
    d->window_high = 0;
    return 0;
}

/* Unlinks and unmaps the oldest segment, which the consumer has released
 * up to its end. */
static void unmap_oldest(struct psy_dyn *d)
{
    pthread_mutex_lock(&d->lock);
    struct psy_dyn_seg *s = d->oldest;
    d->oldest = s->next;
    if (d->cons == s) /* a producer's handle (ipc): cons only marks the oldest it keeps */
        d->cons = s->next;
    if (!d->ops || d->ops->retire(d, s))
        keep_counts(d, s);
    pthread_mutex_unlock(&d->lock);
    psy_ring_destroy(&s->ring);
    free(s);
}

static bool all_released(const struct psy_dyn_seg *s)
{
    return atomic_load_explicit(s->reader.head, memory_order_acquire) ==
           atomic_load_explicit(s->end, memory_order_acquire);
}

int psy_dyn_follow(struct psy_dyn *d)
{
    struct psy_dyn_seg *s = d->cons;
    uint64_t end = atomic_load_explicit(s->end, memory_order_acquire); /* pairs with chain(): next exists */
    if (end == PSY_SEG_OPEN || atomic_load_explicit(s->reader.read_pos, memory_order_relaxed) != end)
        return 0;
    if (!s->next) { /* ipc: made by the producer's process; open it */
        struct psy_dyn_seg *next;
        int rc = d->ops ? d->ops->open_next(d, s, &next) : -EPROTO;
        if (rc)
            return rc;
        psy_dyn_append(d, next);
    }
    /* The segment left behind is unmapped later (psy_dyn_reap, release):
     * the caller may be inside a wait on it. */
    d->cons = s->next;
    return 1;
}

void psy_dyn_reap(struct psy_dyn *d)
{
    while (d->oldest != d->cons && all_released(d->oldest))
        unmap_oldest(d);
}

/* ipc, producer's handle: lets go of the segments the consumer finished. */
static void reap_behind_producer(struct psy_dyn *d)
{
    while (d->oldest != atomic_load_explicit(&d->prod, memory_order_relaxed) &&
           (!d->consumes || d->oldest != d->cons) && all_released(d->oldest))
        unmap_oldest(d);
}

void psy_dyn_check(struct psy_dyn *d)
{
    const struct psyne_dynamic *c = &d->cfg;
    d->ops_left = c->check_interval;
    if (d->ops)
        reap_behind_producer(d);
    struct psy_ring *r = &atomic_load_explicit(&d->prod, memory_order_relaxed)->ring;
    uint64_t used = psy_ring_in_use(r); /* one read of the consumer's line per interval */
    if (used > d->window_high)
        d->window_high = used;
    if ((double)used >= c->grow_at * (double)r->cap && r->cap < c->max_capacity) {
        uint64_t cap = r->cap * c->factor;
        chain(d, cap < c->max_capacity ? cap : c->max_capacity);
        return;
    }
    if (d->window_left > c->check_interval) {
        d->window_left -= c->check_interval;
        return;
    }
    uint64_t high = d->window_high;
    atomic_store_explicit(&d->st->window_high_water, high, memory_order_relaxed);
    d->window_left = c->window_ops;
    d->window_high = 0;
    if ((double)high < c->shrink_at * (double)r->cap && r->cap > c->min_capacity) {
        uint64_t cap = r->cap / c->factor;
        chain(d, cap > c->min_capacity ? cap : c->min_capacity);
    }
}

int psy_dyn_grow(struct psy_dyn *d, uint64_t need)
{
    struct psy_ring *r = &atomic_load_explicit(&d->prod, memory_order_relaxed)->ring;
    uint64_t fit = psy_round_up_pow2(need + PSY_TERMINATOR);
    if (fit > d->cfg.max_capacity)
        return -EMSGSIZE;
    if (r->cap >= d->cfg.max_capacity) {
        atomic_fetch_add_explicit(&d->st->failed_claims, 1, memory_order_relaxed);
        return -EAGAIN;
    }
    uint64_t cap = r->cap * d->cfg.factor;
    while (cap < fit)
        cap *= d->cfg.factor;
    return chain(d, cap < d->cfg.max_capacity ? cap : d->cfg.max_capacity);
}

/* Whether position end lies in (s->start, s->end]. */
static bool ends_in(const struct psy_dyn_seg *s, uint64_t end, uint64_t seg_end)
{
    return end - s->start - 1 < seg_end - s->start;
}

int psy_dyn_release(struct psy_dyn *d, uint64_t end)
{
    /* Releasing is cumulative for a single consumer: a message in a newer
     * segment releases the rest of every older one. */
    while (d->oldest != d->cons) {
        struct psy_dyn_seg *s = d->oldest;
        uint64_t seg_end = atomic_load_explicit(s->end, memory_order_relaxed); /* published: we followed */
        uint64_t head = atomic_load_explicit(s->reader.head, memory_order_relaxed);
        if (ends_in(s, end, seg_end)) {
            int rc = psy_sc_release(&s->ring, &s->reader, end);
            if (rc == 0 && end == seg_end)
                unmap_oldest(d);
            return rc;
        }
        if (head != seg_end && psy_sc_release(&s->ring, &s->reader, seg_end) != 0)
            return -EINVAL;
        unmap_oldest(d);
    }
    return psy_sc_release(&d->cons->ring, &d->cons->reader, end);
}

void psy_dyn_stats(struct psy_dyn *d, struct psyne_stats *st)
{
    struct psy_dyn_stats *t = d->st;
    pthread_mutex_lock(&d->lock);
    st->capacity = d->ops ? d->ops->capacity(d) : atomic_load_explicit(&d->prod, memory_order_relaxed)->ring.cap;
    st->msgs_out = atomic_load(&t->msgs_out);
    st->bytes_out = atomic_load(&t->bytes_out);
    st->msgs_in = atomic_load(&t->msgs_in);
    st->bytes_in = atomic_load(&t->bytes_in);
    st->full_events = atomic_load(&t->full_events);
    st->empty_events = atomic_load(&t->empty_events);
    st->waits = atomic_load(&t->waits);
    st->wakeups = atomic_load(&t->wakeups);
    st->in_use = st->high_water = 0;
    for (struct psy_dyn_seg *s = d->oldest; s; s = s->next) {
        struct psy_ring_shared *sh = s->ring.sh;
        if (s->retired && atomic_load_explicit(s->retired, memory_order_acquire))
            continue; /* ipc: the other side folded its counters already */
        st->segments++;
        st->in_use += psy_ring_in_use(&s->ring);
        uint64_t hw = atomic_load_explicit(&sh->slow.high_water, memory_order_relaxed);
        st->high_water = hw > st->high_water ? hw : st->high_water;
        uint64_t msgs, bytes;
        psy_ring_produced(&s->ring, &msgs, &bytes);
        st->msgs_out += msgs;
        st->bytes_out += bytes;
        st->msgs_in += atomic_load_explicit(&sh->cons.msgs, memory_order_relaxed);
        st->bytes_in += atomic_load_explicit(&sh->cons.bytes, memory_order_relaxed);
        st->full_events += atomic_load_explicit(&sh->prod.full_events, memory_order_relaxed);
        st->empty_events += atomic_load_explicit(&sh->cons.empty_events, memory_order_relaxed);
        st->waits += atomic_load_explicit(&sh->slow.waits, memory_order_relaxed);
        st->wakeups += atomic_load_explicit(&sh->slow.wakeups, memory_order_relaxed);
        st->pages = s->ring.place.pages;
        st->page_size = s->ring.place.page_size;
        st->numa_node = s->ring.place.numa_node;
        st->locked = s->ring.place.locked;
    }
    pthread_mutex_unlock(&d->lock);
    if (st->in_use > st->high_water)
        st->high_water = st->in_use;
    st->resizes_up = atomic_load(&t->resizes_up);
    st->resizes_down = atomic_load(&t->resizes_down);
    st->resize_ns = atomic_load(&t->resize_ns);
    st->failed_claims = atomic_load(&t->failed_claims);
    st->window_high_water = atomic_load(&t->window_high_water);
}
