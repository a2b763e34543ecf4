/* SPDX-License-Identifier: MIT */
/*
 * dynamic_source.c - a dynamic ring as a port's ring source: claims go to
 * the producer's newest segment, receives read the consumer's segment and
 * follow the chain, statistics add up the segments (dynamic_source.h).
 */
#include <errno.h>

#include "../ring/dynamic.h"
#include "dynamic_source.h"

static struct psy_dyn *dyn_of(const struct psy_port *p)
{
    return p->priv;
}

/* The anchor's flag first: ipc segments made meanwhile look at it
 * (ipc_dynamic.c). */
void psy_dynsrc_shutdown(struct psy_port *p)
{
    psy_ring_shutdown(p->home);
    psy_dyn_shutdown(dyn_of(p));
}

void psy_dynsrc_stats(struct psy_port *p, struct psyne_stats *st)
{
    struct psy_wait_block *w = &p->home->sh->wait;
    st->mode = p->home->mode;
    st->producers = (int)atomic_load_explicit(&w->producers, memory_order_relaxed);
    st->consumers = (int)atomic_load_explicit(&w->consumers, memory_order_relaxed);
    psy_dyn_stats(dyn_of(p), st);
}

struct psy_ring *psy_dynsrc_producer(struct psy_port *p)
{
    return p->tx = psy_dyn_producer(dyn_of(p));
}

int psy_dynsrc_grow(struct psy_port *p, uint64_t need)
{
    return psy_dyn_grow(dyn_of(p), need);
}

uint64_t psy_dynsrc_max_capacity(struct psy_port *p)
{
    return psy_dyn_max_capacity(dyn_of(p));
}

void psy_dynsrc_sync(struct psy_port *p)
{
    struct psy_dyn_seg *s = dyn_of(p)->cons;
    p->ring = &s->ring;
    p->reader = &s->reader;
}

int psy_dynsrc_follow(struct psy_port *p)
{
    return psy_dyn_follow(dyn_of(p));
}

void psy_dynsrc_reap(struct psy_port *p)
{
    psy_dyn_reap(dyn_of(p));
}

int psy_dynsrc_release(struct psy_port *p, const struct psyne_msg *msgs, unsigned n)
{
    return p->role == PSYNE_ROLE_PRODUCER ? -EINVAL : psy_dyn_release(dyn_of(p), msgs[n - 1].psy_end);
}
