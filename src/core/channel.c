/* SPDX-License-Identifier: MIT */
/*
 * channel.c - opening, shutting down and closing channel handles: option
 * checks, the transport's open, and the handle's part of the rings (roles,
 * counts, readers, which fast paths it may take). handle.h lists the other
 * files of the API.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../base/uri.h"
#include "channel.h"
#include "handle.h"
#include "publish.h"

struct psy_ring *psy_channel_ring(psyne_channel *ch)
{
    return ch->port.ring;
}

void psyne_options_init(struct psyne_options *opt)
{
    if (!opt)
        return;
    memset(opt, 0, sizeof *opt);
    opt->capacity = 0; /* PSYNE_DEFAULT_CAPACITY when creating; any size when joining */
    opt->mode = PSYNE_MODE_SPSC;
    opt->role = PSYNE_ROLE_ANY;
    opt->wait = PSYNE_WAIT_ADAPTIVE;
    opt->spin_ns = -1;
    opt->yield_ns = -1;
}

static int check_options(const struct psyne_options *o)
{
    if (o->mode < PSYNE_MODE_SPSC || o->mode > PSYNE_MODE_BROADCAST)
        return psy_fail(-EINVAL, "mode %d is not a psyne_mode", o->mode);
    if (o->role < PSYNE_ROLE_ANY || o->role > PSYNE_ROLE_CONSUMER)
        return psy_fail(-EINVAL, "role %d is not a psyne_role", o->role);
    if (o->mode == PSYNE_MODE_BROADCAST && o->role == PSYNE_ROLE_ANY)
        return psy_fail(-EINVAL, "a BROADCAST handle must be PSYNE_ROLE_PRODUCER or PSYNE_ROLE_CONSUMER");
    if (o->wait != PSYNE_WAIT_ADAPTIVE && o->wait != PSYNE_WAIT_SPIN)
        return psy_fail(-EINVAL, "wait %d is not a psyne_wait", o->wait);
    const uint32_t known = PSYNE_F_NO_PREFAULT | PSYNE_F_LISTEN | PSYNE_F_HUGEPAGES | PSYNE_F_MLOCK |
                           PSYNE_F_NUMA_BIND | PSYNE_F_LEASES | PSYNE_F_IPC_OTHER_OWNER | PSYNE_F_PUBLISH;
    if (o->flags & ~known)
        return psy_fail(-EINVAL, "unknown option flags 0x%x", o->flags & ~known);
    if (o->capacity > PSYNE_MAX_CAPACITY)
        return psy_fail(-EINVAL, "capacity %llu is above PSYNE_MAX_CAPACITY (%llu)", (unsigned long long)o->capacity,
                        (unsigned long long)PSYNE_MAX_CAPACITY);
    if (o->numa_node && !(o->flags & PSYNE_F_NUMA_BIND))
        return psy_fail(-EINVAL, "numa_node is set but PSYNE_F_NUMA_BIND is not");
    struct psy_place_request req;
    int rc = psy_place_request_make(o->flags, o->numa_node, false, &req); /* a node that is not online */
    if (rc)
        return rc;
    if (o->link_timeout_ns < 0 && o->link_timeout_ns != PSYNE_FOREVER)
        return psy_fail(-EINVAL, "link_timeout_ns must be > 0, 0 (default) or PSYNE_FOREVER");
    if (o->open_timeout_ns < 0 && o->open_timeout_ns != PSYNE_FOREVER)
        return psy_fail(-EINVAL, "open_timeout_ns must be > 0, 0 (default) or PSYNE_FOREVER");
    if (o->peer_timeout_ns < 0)
        return psy_fail(-EINVAL, "peer_timeout_ns must be >= 0");
    if (o->linger_ns < 0 && o->linger_ns != PSYNE_FOREVER && o->linger_ns != PSYNE_NO_LINGER)
        return psy_fail(-EINVAL, "linger_ns must be > 0, 0 (default), PSYNE_FOREVER or PSYNE_NO_LINGER");
    for (size_t i = 0; i < sizeof o->reserved / sizeof o->reserved[0]; i++)
        if (o->reserved[i])
            return psy_fail(-EINVAL,
                            "psyne_options.reserved[%zu] is set: an option of a later psyne version "
                            "(or options not made with psyne_options_init)",
                            i);
    return 0;
}

/* The open-handle counts a handle of this role is in (PSY_SLOT_*). */
static unsigned role_bits(int role)
{
    return (role != PSYNE_ROLE_CONSUMER ? PSY_SLOT_PRODUCER : 0) |
           (role != PSYNE_ROLE_PRODUCER ? PSY_SLOT_CONSUMER : 0);
}

/* After the transport opened the port: the handle's part of its rings. A
 * handle that is not its rings' only user is counted in them. */
static int join_rings(psyne_channel *ch, const char *uri)
{
    struct psy_port *p = &ch->port;
    struct psy_ring *r = p->ring;
    if (r->mode == PSYNE_MODE_BROADCAST && p->role == PSYNE_ROLE_ANY) /* joined with NULL options */
        return psy_fail(-EINVAL, "%s is a BROADCAST channel: open it with PSYNE_ROLE_PRODUCER or _CONSUMER", uri);
    if (r->mode == PSYNE_MODE_BROADCAST && p->role == PSYNE_ROLE_CONSUMER) {
        ch->sub = psy_ring_subscribe(r);
        if (ch->sub < 0)
            return psy_fail(-EBUSY, "%s already has %d subscribers", uri, PSYNE_MAX_SUBSCRIBERS);
    }
    ch->mp_counts = p->counters ? p->counters : &ch->mp_msgs;
    if (!r->mc) {
        psy_ring_reader_init(r, ch->sub, &ch->reader_state);
        p->reader = &ch->reader_state;
        if (p->role != PSYNE_ROLE_PRODUCER)
            psy_ring_reader_attach(p->reader);
    }
    /* A plain ring: one that neither moves nor has a transport to tell of
     * commits, where claims may go straight to the ring */
    bool plain = !port_is(ch, PSY_PORT_MOVES | PSY_PORT_NOTIFY);
    ch->sp_fast = !p->tx->mp && p->role != PSYNE_ROLE_CONSUMER;
    ch->mp_fast = p->tx->mp && p->role != PSYNE_ROLE_CONSUMER && plain;
    ch->sc_fast = p->reader && p->role != PSYNE_ROLE_PRODUCER;
    if (ch->mp_fast)
        ch->lease = psy_lease_take(p->tx);
    /* The inline calls: plain rings whose producer does not count */
    if (ch->sp_fast && plain && p->tx->walk_counts)
        ch->lane = p->tx->lane;
    pthread_mutex_lock(&p->tx->handles_lock);
    ch->next = p->tx->handles;
    p->tx->handles = ch;
    pthread_mutex_unlock(&p->tx->handles_lock);
    if (port_is(ch, PSY_PORT_ALONE)) /* the handle is the rings' only user: no counts to keep */
        return 0;
    struct psy_wait_block *w = &r->sh->wait;
    if (p->role != PSYNE_ROLE_CONSUMER)
        atomic_fetch_add_explicit(&w->producers, 1, memory_order_relaxed);
    if (p->role != PSYNE_ROLE_PRODUCER)
        atomic_fetch_add_explicit(&w->consumers, 1, memory_order_relaxed);
    if (p->tp->set_roles)
        p->tp->set_roles(p, role_bits(p->role), ch->sub);
    return 0;
}

int psyne_channel_open(psyne_channel **out, const char *uri, const struct psyne_options *opt)
{
    psy_clear_error();
    if (!out)
        return psy_fail(-EINVAL, "out is NULL");
    *out = NULL;
    struct psyne_options defaults;
    bool join_any = !opt; /* NULL: join whatever exists under the name */
    if (!opt) {
        psyne_options_init(&defaults);
        opt = &defaults;
    }
    int rc = check_options(opt);
    if (rc)
        return rc;
    struct psy_uri u;
    if ((rc = psy_uri_parse(uri, &u)) != 0)
        return rc;
    const struct psy_transport *tp = psy_transport_find(u.scheme);
    if (!tp)
        return psy_fail(-EINVAL, "URI \"%.64s\" does not start with memory://, ipc:// or tcp://", uri);
    if ((rc = tp->check_options(opt)) != 0)
        return rc;

    psy_wait_init();
    psyne_channel *ch = aligned_alloc(PSY_CACHE_BLOCK, sizeof *ch);
    if (!ch)
        return psy_fail(-ENOMEM, "out of memory");
    memset(ch, 0, sizeof *ch);
    ch->sub = -1;
    ch->mp_counts = &ch->mp_msgs;
    ch->port.tp = tp;
    ch->port.role = opt->role;
    if ((rc = tp->open(&ch->port, u.name, opt, join_any)) != 0) {
        free(ch);
        return rc;
    }
    if (!port_is(ch, PSY_PORT_PEERS) && (rc = join_rings(ch, uri)) != 0) { /* before it subscribed */
        ch->port.tp->close(&ch->port);
        free(ch);
        return rc;
    }
    psy_publish_opened(ch, uri, opt);
    *out = ch;
    return 0;
}

int psyne_channel_shutdown(psyne_channel *ch)
{
    if (!ch)
        return psy_fail(-EINVAL, "channel is NULL");
    ch->port.tp->shutdown(&ch->port);
    return 0;
}

int psyne_channel_close(psyne_channel *ch)
{
    if (!ch)
        return 0;
    struct psy_port *p = &ch->port;
    psy_publish_closing(ch); /* never sampled after this */
    psy_ready_close(ch);
    if (port_is(ch, PSY_PORT_ALONE | PSY_PORT_PEERS)) {
        int left = p->tp->close(p);
        free(ch);
        return left;
    }
    /* Like a pipe: when the last handle that could produce (or consume) goes,
     * nobody can make progress on the other side any more. */
    struct psy_ring *r = p->home;
    struct psy_wait_block *w = &r->sh->wait;
    bool last = false;
    if (p->tp->set_roles) /* a survivor must not uncount us again if we die now */
        p->tp->set_roles(p, 0, -1);
    psy_lease_give_back(r, ch->lease); /* before the count: the last producer's close shuts the ring down */
    if (p->role != PSYNE_ROLE_CONSUMER)
        last |= atomic_fetch_sub_explicit(&w->producers, 1, memory_order_acq_rel) == 1;
    if (p->role != PSYNE_ROLE_PRODUCER && atomic_fetch_sub_explicit(&w->consumers, 1, memory_order_acq_rel) == 1) {
        atomic_store_explicit(&w->consumers_left, 1, memory_order_relaxed); /* before the shutdown's release */
        last = true;
    }
    if (last)
        p->tp->shutdown(p);
    pthread_mutex_lock(&r->handles_lock); /* its counts stay in the ring's totals */
    for (psyne_channel **h = &r->handles; *h; h = &(*h)->next) {
        if (*h == ch) {
            *h = ch->next;
            break;
        }
    }
    atomic_fetch_add_explicit(&r->sh->prod.msgs, psy_mp_counted(&ch->mp_msgs, 0), memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sh->prod.bytes, psy_mp_counted(&ch->mp_msgs, 1), memory_order_relaxed);
    pthread_mutex_unlock(&r->handles_lock);
    if (ch->sub >= 0)
        psy_ring_unsubscribe(r, ch->sub);
    int left = p->tp->close(p);
    free(ch);
    return left;
}
/* ipc: a caller that polls without ever waiting must also notice dead
 * peers (or it would poll at a dead producer's claim forever): every 1024th
 * fruitless non-blocking call looks at the clock, and one call per
 * peer_timeout_ns runs the check. */
void psy_channel_poll_peers(struct psy_ring *r)
{
    if (!r->check_peers || atomic_fetch_add_explicit(&r->polls, 1, memory_order_relaxed) % 1024 != 1023)
        return;
    int64_t now = psy_now_ns();
    int64_t next = atomic_load_explicit(&r->next_peer_check, memory_order_relaxed);
    if (now >= next && atomic_compare_exchange_strong(&r->next_peer_check, &next, now + r->peer_timeout_ns))
        r->check_peers(r);
}
