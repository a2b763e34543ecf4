/* SPDX-License-Identifier: MIT */
/*
 * ready.c - a handle's readiness descriptors (psyne_channel_fd): made on
 * request, armed by the calls that find nothing (receive.c, send.c), closed
 * with the handle. How a descriptor is woken is the ring's (ring/notify.c).
 */
#include <errno.h>
#include <stdlib.h>

#include "handle.h"

/* The ring whose wait block tells that a receive may succeed. */
static struct psy_ring *data_ring(psyne_channel *ch)
{
    struct psy_port *p = &ch->port;
    return port_is(ch, PSY_PORT_PEERS) ? p->tp->ready_ring(p) : p->ring;
}

static struct psy_ready *ready_of(psyne_channel *ch)
{
    struct psy_ready *rd = atomic_load_explicit(&ch->ready, memory_order_acquire);
    if (rd)
        return rd;
    struct psy_ready *fresh = calloc(1, sizeof *fresh);
    if (!fresh)
        return NULL;
    pthread_mutex_init(&fresh->lock, NULL);
    fresh->n[0].fd = fresh->n[1].fd = -1;
    if (atomic_compare_exchange_strong(&ch->ready, &rd, fresh))
        return fresh;
    pthread_mutex_destroy(&fresh->lock); /* another thread made it first */
    free(fresh);
    return rd;
}

int psyne_channel_fd(psyne_channel *ch, int event)
{
    CHECK_NULL(ch);
    struct psy_port *p = &ch->port;
    if (event != PSYNE_READY_RECV && event != PSYNE_READY_SEND)
        return psy_fail(-EINVAL, "psyne_channel_fd: event %d is neither PSYNE_READY_RECV nor PSYNE_READY_SEND", event);
    enum psy_wait_side side = event == PSYNE_READY_RECV ? PSY_WAIT_DATA : PSY_WAIT_SPACE;
    if (side == PSY_WAIT_SPACE && port_is(ch, PSY_PORT_PEERS))
        return psy_fail(-EOPNOTSUPP, "a handle with max_peers claims for one peer (psyne_claim_to waits in the call): "
                                     "no send descriptor");
    if (side == PSY_WAIT_DATA && p->role == PSYNE_ROLE_PRODUCER)
        return psy_fail(-EPERM, "a receive descriptor on a producer handle");
    if (side == PSY_WAIT_SPACE && p->role == PSYNE_ROLE_CONSUMER)
        return psy_fail(-EPERM, "a send descriptor on a consumer handle");
    struct psy_ready *rd = ready_of(ch);
    if (!rd)
        return psy_fail(-ENOMEM, "out of memory");
    int rc = 0;
    pthread_mutex_lock(&rd->lock);
    if (!atomic_load(&rd->open[side])) {
        rc = psy_notifier_open(&rd->n[side], side);
        if (rc == 0) {
            psy_notifier_signal(&rd->n[side]); /* starts readable: the user looks first, and that arms it */
            atomic_store_explicit(&rd->open[side], true, memory_order_release);
        }
    }
    int fd = rd->n[side].fd;
    pthread_mutex_unlock(&rd->lock);
    return rc ? psy_fail(rc, "cannot make a readiness descriptor") : fd;
}

int psy_ready_arm(psyne_channel *ch, enum psy_wait_side side, struct psy_ring *r)
{
    struct psy_port *p = &ch->port;
    struct psy_ready *rd = atomic_load_explicit(&ch->ready, memory_order_acquire);
    if (side == PSY_WAIT_DATA && port_is(ch, PSY_PORT_PEERS))
        r = p->tp->ready_ring(p);
    if (p->tp->arming)
        p->tp->arming(p, side);
    /* Callers of one handle may arm at once (an MPMC handle shared by
     * threads): the slot's atomics keep the count right, the lock keeps
     * two registrations of one descriptor apart. */
    pthread_mutex_lock(&rd->lock);
    int rc = psy_notifier_arm(&rd->n[side], r);
    pthread_mutex_unlock(&rd->lock);
    if (rc)
        psy_fail(rc, "no room to arm the readiness descriptor: %d descriptors wait on this ring", PSY_NOTIFY_SLOTS);
    return rc;
}

void psy_ready_kick(psyne_channel *ch, enum psy_wait_side side)
{
    struct psy_ready *rd = atomic_load_explicit(&ch->ready, memory_order_acquire);
    psy_notifier_signal(&rd->n[side]);
}

void psy_ready_close(psyne_channel *ch)
{
    struct psy_ready *rd = atomic_load_explicit(&ch->ready, memory_order_acquire);
    if (!rd)
        return;
    struct psy_port *p = &ch->port;
    if (atomic_load(&rd->open[PSY_WAIT_DATA])) {
        if (port_is(ch, PSY_PORT_MOVES))
            p->tp->sync(p); /* the segment it reads now: older ones may be unmapped */
        psy_notifier_close(&rd->n[PSY_WAIT_DATA], data_ring(ch));
    }
    if (atomic_load(&rd->open[PSY_WAIT_SPACE]))
        psy_notifier_close(&rd->n[PSY_WAIT_SPACE], p->tx);
    pthread_mutex_destroy(&rd->lock);
    free(rd);
}
