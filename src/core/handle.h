/* SPDX-License-Identifier: MIT */
/*
 * handle.h - the channel handle, shared by the files of the public channel
 * API (internal to src/core/):
 *   channel.c  options, open, shutdown, close
 *   send.c     claims, commits, aborts; MP counting
 *   receive.c  receives, releases, drain
 *   stats.c    psyne_channel_stats
 * What differs between transports is asked of the handle's port
 * (transport/transport.h); none of these files names a transport.
 */
#ifndef PSY_HANDLE_H
#define PSY_HANDLE_H

#include "../base/error.h"
#include "../ring/fastpath.h"
#include "../transport/transport.h"

struct psyne_channel {
    /* First, where the inline psyne_claim/psyne_commit find it: a copy of
     * tx->lane for SP producer handles that may use it, else tail NULL. */
    struct psy_lane lane;
    /* MP producers count here, each handle on its own line, instead of
     * all producers incrementing one shared counter on every commit:
     * {msgs, bytes} of any thread, then {msgs, bytes} of the owner (see
     * count_mp). */
    alignas(PSY_CACHE_BLOCK) psy_atomic64 mp_msgs;
    psy_atomic64 mp_bytes;
    psy_atomic64 mp_own_msgs;
    psy_atomic64 mp_own_bytes;
    _Atomic(uintptr_t) mp_owner; /* the thread that counts without a locked add (count_mp) and uses the
                                    lease, 0: none yet */
    /* The transport's: the rings we claim in (tx) and receive from (ring),
     * the single-consumer reader (NULL in MC modes), the role, the table. */
    alignas(PSY_CACHE_BLOCK) struct psy_port port;
    psy_atomic64 *mp_counts;    /* {msgs, bytes, own msgs, own bytes}: mp_msgs here, or the port's counters */
    struct psyne_channel *next; /* in tx->handles */
    bool sp_fast;               /* may take the inline SP claim/commit */
    bool mp_fast;               /* MP producer on a plain ring: psyne_claim goes straight to the ring */
    bool sc_fast;               /* may take the inline SC receive */
    struct psy_lease *lease;    /* mp_fast on an in-process ring: claims come from a lease (lease.c) */
    int sub;                    /* BROADCAST subscriber slot, else -1 */
    struct psy_reader reader_state;
    _Atomic(struct psy_ready *) ready; /* readiness descriptors (ready.c), NULL until asked for */
};

/* Whether the port asks for a step of its table on this path. */
static inline bool port_is(const psyne_channel *ch, uint32_t flag)
{
    return (ch->port.flags & flag) != 0;
}

_Static_assert(offsetof(struct psyne_channel, lane) == 0, "psyne/inline.h reads the lane at the handle's address");
_Static_assert(offsetof(struct psyne_channel, mp_own_bytes) == offsetof(struct psyne_channel, mp_msgs) + 24,
               "count_mp's four counters in a row");

/* A NULL handle or argument is -EINVAL everywhere (bindings pass what
 * their users give them); what kind of NULL, the detail says. */
#define CHECK_NULL(p)                                                                                                  \
    do {                                                                                                               \
        if (psy_unlikely((p) == NULL))                                                                                 \
            return psy_fail(-EINVAL, "%s: %s is NULL", __func__, #p);                                                  \
    } while (0)

/* A function of a rare path: kept out of line, so that it adds nothing to
 * the code of the calls it is reached from (the compiler inlines across
 * files under LTO). */
#define PSY_COLD __attribute__((cold, noinline))

/* Readiness descriptors of a handle (ready.c). */
struct psy_ready {
    pthread_mutex_t lock;     /* making and closing them */
    _Atomic bool open[2];     /* [side]: the descriptor exists */
    struct psy_notifier n[2]; /* [PSY_WAIT_DATA]: receives, [PSY_WAIT_SPACE]: claims */
};

/* Whether a descriptor for side exists: a call that finds nothing arms it. */
static inline bool psy_ready_wanted(const psyne_channel *ch, enum psy_wait_side side)
{
    struct psy_ready *rd = atomic_load_explicit(&ch->ready, memory_order_acquire);
    return psy_unlikely(rd != NULL) && atomic_load_explicit(&rd->open[side], memory_order_acquire);
}
/* Arms the side's descriptor on r (the ring that call found empty or
 * full): 0, then the caller must look once more. */
PSY_COLD int psy_ready_arm(psyne_channel *ch, enum psy_wait_side side, struct psy_ring *r);
/* Makes the side's descriptor readable (a look that could not finish). */
PSY_COLD void psy_ready_kick(psyne_channel *ch, enum psy_wait_side side);
/* Closes the handle's descriptors (channel close, before the transport's). */
void psy_ready_close(psyne_channel *ch);

/* ipc: a caller that polls without ever waiting must also notice dead
 * peers (channel.c). */
void psy_channel_poll_peers(struct psy_ring *r);

#endif
