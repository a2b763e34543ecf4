/* SPDX-License-Identifier: MIT */
/*
 * stats.c - psyne_channel_stats: the counters of the handle's rings, and
 * what its transport adds.
 */
#include <string.h>

#include "handle.h"

static uint64_t rd(psy_atomic64 *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* The counters of the handle's rings: ring (consumer side) and tx. */
static void ring_stats(psyne_channel *ch, struct psyne_stats *st)
{
    struct psy_ring *r = ch->port.ring, *t = ch->port.tx;
    struct psy_ring_shared *sh = r->sh, *tsh = t->sh;
    st->capacity = r->cap;
    st->mode = r->mode;
    st->in_use = psy_ring_in_use(r);
    st->high_water = rd(&sh->slow.high_water);
    if (st->in_use > st->high_water)
        st->high_water = st->in_use;
    pthread_mutex_lock(&t->handles_lock);
    psy_ring_produced(t, &st->msgs_out, &st->bytes_out);
    for (psyne_channel *h = t->handles; h; h = h->next) {
        st->msgs_out += psy_mp_counted(&h->mp_msgs, 0);
        st->bytes_out += psy_mp_counted(&h->mp_msgs, 1);
    }
    pthread_mutex_unlock(&t->handles_lock);
    st->full_events = rd(&tsh->prod.full_events);
    st->msgs_in = rd(&sh->cons.msgs);
    st->bytes_in = rd(&sh->cons.bytes);
    st->empty_events = rd(&sh->cons.empty_events);
    for (int i = 0; i < PSYNE_MAX_SUBSCRIBERS; i++) {
        st->msgs_in += rd(&sh->subs[i].msgs);
        st->bytes_in += rd(&sh->subs[i].bytes);
        st->empty_events += rd(&sh->subs[i].empty_events);
    }
    st->waits = rd(&sh->slow.waits);
    st->wakeups = rd(&sh->slow.wakeups);
    st->subscribers = (int)atomic_load_explicit(&sh->bcast.count, memory_order_relaxed);
    st->producers = (int)atomic_load_explicit(&sh->wait.producers, memory_order_relaxed);
    st->consumers = (int)atomic_load_explicit(&sh->wait.consumers, memory_order_relaxed);
    st->pages = r->place.pages;
    st->page_size = r->place.page_size;
    st->numa_node = r->place.numa_node;
    st->locked = r->place.locked;
}

int psyne_channel_stats(psyne_channel *ch, struct psyne_stats *st)
{
    if (!ch || !st)
        return psy_fail(-EINVAL, "NULL argument");
    memset(st, 0, sizeof *st);
    struct psy_port *p = &ch->port;
    if (!port_is(ch, PSY_PORT_PEERS | PSY_PORT_MOVES)) /* those fill the ring counters themselves */
        ring_stats(ch, st);
    if (p->tp->stats)
        p->tp->stats(p, st);
    if (port_is(ch, PSY_PORT_PEERS)) { /* MP peers' send rings count per handle */
        st->msgs_out += psy_mp_counted(&ch->mp_msgs, 0);
        st->bytes_out += psy_mp_counted(&ch->mp_msgs, 1);
    }
    if (port_is(ch, PSY_PORT_ALONE | PSY_PORT_PEERS)) { /* one handle: it produces and consumes as its role says */
        st->producers = p->role != PSYNE_ROLE_CONSUMER;
        st->consumers = p->role != PSYNE_ROLE_PRODUCER;
    }
    return 0;
}
