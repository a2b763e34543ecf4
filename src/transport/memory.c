/* SPDX-License-Identifier: MIT */
/*
 * memory.c - the memory:// transport: a registry of named rings in this
 * process. Every attach of a name returns the same ring until its last handle
 * detaches; a ring that was shut down is unlinked from the registry at once,
 * so the next attach of its name creates a fresh ring.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../base/error.h"
#include "../base/uri.h"
#include "../ring/dynamic.h"
#include "dynamic_source.h"
#include "transport.h"

struct memory_entry {
    struct psy_ring ring; /* first: detach gets the entry back from the ring. For a
                             dynamic ring only the anchor of the handle counts and
                             the shutdown flag; messages go through dyn's segments */
    struct psy_dyn *dyn;
    struct memory_entry *next;
    unsigned refs;
    bool linked;
    char name[PSY_NAME_MAX + 1];
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct memory_entry *registry;

static void unlink_entry(struct memory_entry *e)
{
    for (struct memory_entry **p = &registry; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }
    e->linked = false;
}

static int check_compatible(const struct memory_entry *e, const struct psyne_options *opt)
{
    if (!opt->dynamic != !e->dyn)
        return psy_fail(-EINVAL, "memory://%s exists as a %s ring, asked for a %s one", e->name,
                        e->dyn ? "dynamic" : "static", opt->dynamic ? "dynamic" : "static");
    if (e->dyn)
        return opt->mode == PSYNE_MODE_SPSC ? 0 : psy_fail(-EINVAL, "memory://%s is a dynamic SPSC ring", e->name);
    if (opt->mode != e->ring.mode)
        return psy_fail(-EINVAL, "memory://%s exists with mode %d, asked for mode %d", e->name, e->ring.mode,
                        opt->mode);
    if (e->ring.mp && !(opt->flags & PSYNE_F_LEASES) != !e->ring.leases)
        return psy_fail(-EINVAL, "memory://%s exists %s PSYNE_F_LEASES", e->name, e->ring.leases ? "with" : "without");
    if (opt->capacity && opt->capacity > e->ring.cap)
        return psy_fail(-EINVAL, "memory://%s exists with capacity %llu, asked for %llu", e->name,
                        (unsigned long long)e->ring.cap, (unsigned long long)opt->capacity);
    return 0;
}

/* A static ring, or a dynamic one: its segments and a one-page anchor ring
 * that holds what belongs to the channel rather than to a segment. */
static int create_ring(struct memory_entry *e, const struct psyne_options *opt)
{
    if (!opt->dynamic) {
        int rc = psy_ring_create(&e->ring, opt);
        if (rc == 0 && e->ring.mp && (opt->flags & PSYNE_F_LEASES) && (rc = psy_lease_init(&e->ring)) != 0) {
            psy_ring_destroy(&e->ring);
            rc = psy_fail(rc, "out of memory");
        }
        return rc;
    }
    int rc = psy_dyn_create(&e->dyn, opt);
    if (rc)
        return rc;
    struct psyne_options anchor = *opt;
    anchor.capacity = 1; /* rounded up to a page */
    anchor.flags &= ~(PSYNE_F_HUGEPAGES | PSYNE_F_MLOCK | PSYNE_F_NUMA_BIND);
    anchor.numa_node = 0;
    anchor.dynamic = NULL;
    anchor.slabs = NULL; /* one page of its own, whatever the slabs' page size */
    if ((rc = psy_ring_create(&e->ring, &anchor)) != 0)
        psy_dyn_destroy(e->dyn);
    return rc;
}

/* join_any: accept the existing ring whatever its mode and capacity. */
static int attach(const char *name, const struct psyne_options *opt, bool join_any, struct psy_ring **out)
{
    int rc = 0;
    pthread_mutex_lock(&registry_lock);
    struct memory_entry *e = registry;
    while (e && strcmp(e->name, name) != 0)
        e = e->next;
    if (e && psy_ring_closed(&e->ring)) {
        unlink_entry(e); /* its handles keep it alive; the name is free again */
        e = NULL;
    }
    if (e) {
        rc = join_any ? 0 : check_compatible(e, opt);
    } else {
        e = calloc(1, sizeof *e);
        if (!e) {
            rc = psy_fail(-ENOMEM, "out of memory");
        } else if ((rc = create_ring(e, opt)) != 0) {
            free(e);
            e = NULL;
        } else {
            strcpy(e->name, name); /* the URI parser bounded it */
            e->next = registry;
            e->linked = true;
            registry = e;
        }
    }
    if (rc == 0) {
        e->refs++;
        *out = &e->ring;
    }
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

/* Returns the messages nobody read, if this was the ring's last handle. */
static int detach(struct psy_ring *r)
{
    struct memory_entry *e = (struct memory_entry *)r;
    pthread_mutex_lock(&registry_lock);
    bool last = --e->refs == 0;
    if (last && e->linked)
        unlink_entry(e);
    pthread_mutex_unlock(&registry_lock);
    if (!last)
        return 0;
    uint64_t unread = e->dyn ? 0 : psy_ring_unread(&e->ring);
    psy_dyn_destroy(e->dyn);
    psy_ring_destroy(&e->ring);
    free(e);
    return psy_close_count(unread);
}

/* ---- the transport ---- */

static int memory_check_options(const struct psyne_options *opt)
{
    int rc = psy_transport_refuse_tcp_options(opt, "memory");
    if (rc == 0 && opt->dynamic) /* before anything is made under the name */
        rc = psy_dyn_check_options(opt);
    return rc;
}

static int memory_close(struct psy_port *p)
{
    return detach(p->home);
}

static const struct psy_transport memory_dynamic_transport;

/* One ring for every handle of the name; a dynamic ring's segments too, so
 * its handles share one psy_dyn. */
static int memory_open(struct psy_port *p, const char *name, const struct psyne_options *opt, bool join_any)
{
    struct psy_ring *r;
    int rc = attach(name, opt, join_any, &r);
    if (rc)
        return rc;
    p->ring = p->tx = p->home = r; /* a dynamic ring's until the first call */
    struct psy_dyn *dyn = ((struct memory_entry *)r)->dyn;
    if (dyn) {
        p->tp = &memory_dynamic_transport;
        p->priv = dyn;
        p->flags |= PSY_PORT_MOVES;
    }
    return 0;
}

const struct psy_transport psy_memory_transport = {
    .scheme = "memory",
    .check_options = memory_check_options,
    .open = memory_open,
    .shutdown = psy_transport_shutdown_home,
    .close = memory_close,
};

static const struct psy_transport memory_dynamic_transport = {
    .scheme = "memory",
    .check_options = memory_check_options,
    .open = memory_open,
    .close = memory_close,
    PSY_DYNAMIC_SOURCE_OPS,
};
