/* SPDX-License-Identifier: MIT */
/*
 * transport.h - what a URI scheme gives the channel layer: a table of
 * operations (struct psy_transport) and, per handle, a port (struct
 * psy_port) that says which rings the handle claims in and receives from.
 *
 * The channel layer (core/channel.c) checks arguments, takes the inline
 * fast paths on the port's rings, counts MP commits and waits; everything
 * that differs between transports goes through the port's table. It names
 * no transport: a scheme is found by name in the registry (transport.c).
 *
 * The tables (one file each, the table at the end):
 *   memory://  memory.c    rings of this process, found by name
 *   ipc://     ipc.c       a ring in a shared-memory segment per name
 *   tcp://     tcp/port.c  a link (one connection, tcp/link.h), or a
 *                          listening handle with max_peers (tcp/server.c)
 * and a dynamic ring, for memory:// and ipc:// alike, is a ring source
 * whose segments change under the handle (dynamic_source.c).
 *
 * A port's ring and tx are read by the fast paths without a call; the
 * flags say which of the table's optional steps a handle needs, so a
 * handle on a plain ring makes no indirect call on any path.
 *
 * Adding a transport: its files in src/transport/ (a folder when it has
 * several), ending in its `const struct psy_transport` with at least
 * scheme, check_options, open, shutdown and close; an extern line below and
 * its row in transport.c's registry; its sources in CMakeLists.txt; its line
 * in the table of tests/unit_api.c (the conformance suite) and its name in
 * unit_api's list in tests/CMakeLists.txt.
 */
#ifndef PSY_TRANSPORT_H
#define PSY_TRANSPORT_H

#include <limits.h>

#include "../ring/ring.h"

/* The port's rings change between calls (a dynamic ring): claims ask
 * producer(), receives sync() and follow(). */
#define PSY_PORT_MOVES 1u
/* After each commit (or MP abort) on tx the transport must hear of it
 * (committed()): the inline calls and the MP fast claim are off. */
#define PSY_PORT_NOTIFY 2u
/* The handle is its rings' only user (a tcp:// link): no open-handle
 * counts, no roles to record; close is the transport's alone. */
#define PSY_PORT_ALONE 4u
/* Many peers and no ring of its own (tcp:// with max_peers): claims name a
 * peer (psyne_claim_to), the transport receives and releases. */
#define PSY_PORT_PEERS 8u

struct psy_transport;

/* A process's counters segment, /dev/shm/psyne-stats.<pid> (core/publish.h);
 * psyne_ipc_cleanup removes those of dead processes. */
#define PSY_PUB_PREFIX "psyne-stats."

/* One peer of a tcp:// handle, as published for psyne-stat (core/publish.c):
 * plain bytes, the same in every process. */
#define PSY_PEER_ADDR 64
struct psy_peer_info {
    uint32_t peer;            /* psyne_msg.peer (listening with max_peers), else 0 */
    int32_t connected;        /* 1 while a connection is up */
    char addr[PSY_PEER_ADDR]; /* the other end, host:port */
    uint64_t msgs_in, bytes_in, msgs_out, bytes_out;
    uint64_t reconnects;
    uint64_t protocol_errors;
};

/* What a transport gives one channel handle. */
struct psy_port {
    const struct psy_transport *tp;  /* the handle's table: the scheme's, or a variant of it open() chose */
    struct psy_ring *ring;           /* consumer side: where receives read (NULL with PSY_PORT_PEERS) */
    struct psy_ring *tx;             /* producer side: the same ring, but for a tcp:// link */
    const struct psy_reader *reader; /* single-consumer state in ring (the channel's, or the source's) */
    struct psy_ring *home;           /* what the handle attached to: open-handle counts, shutdown */
    psy_atomic64 *counters;          /* MP counters other processes add up (ipc slot), NULL: the handle's */
    uint32_t flags;                  /* PSY_PORT_* */
    int role;                        /* the handle's psyne_role */
    void *priv;                      /* the transport's state for this handle */
};

struct psy_transport {
    const char *scheme; /* as in URIs, without "://" */

    /* Options this scheme refuses or must check before anything is made
     * under the name (the channel checked the generic ones). */
    int (*check_options)(const struct psyne_options *opt);
    /* Opens or joins `name` for a handle of p->role: fills the rest of p.
     * join_any: the caller gave no options, accept what exists. */
    int (*open)(struct psy_port *p, const char *name, const struct psyne_options *opt, bool join_any);
    /* Shuts the channel down for every handle (psyne_channel_shutdown). */
    void (*shutdown)(struct psy_port *p);
    /* Detaches the handle and frees p->priv; the channel has uncounted it.
     * Returns the committed messages nobody read if this was the ring's
     * last handle (psy_ring_unread, at most INT_MAX), else 0. */
    int (*close)(struct psy_port *p);
    /* Optional: records the roles (PSY_SLOT_*) and BROADCAST slot the
     * channel counted for the handle, where a survivor undoes them if the
     * process dies (ipc://); roles 0 before close. */
    void (*set_roles)(struct psy_port *p, unsigned roles, int sub);
    /* Optional: adds what the transport knows to the statistics; with
     * PSY_PORT_MOVES or _PEERS it fills the ring counters too. */
    void (*stats)(struct psy_port *p, struct psyne_stats *st);

    /* ---- producer side ---- */
    /* PSY_PORT_MOVES: the ring claims go to now (also sets p->tx). */
    struct psy_ring *(*producer)(struct psy_port *p);
    /* Optional: make room for a record of `need` bytes that does not fit
     * (chain a larger segment): 0, then producer() is where it fits. */
    int (*grow)(struct psy_port *p, uint64_t need);
    /* Optional: the largest record span the handle can ever take, when it
     * is not tx->cap (error messages). */
    uint64_t (*max_capacity)(struct psy_port *p);
    /* PSY_PORT_NOTIFY: records were committed (or an MP claim aborted). */
    void (*committed)(struct psy_port *p);
    /* Optional: a producer found tx full and is about to wait for space. */
    void (*space_wanted)(struct psy_port *p);
    /* PSY_PORT_PEERS: the send ring of a peer, pinned until unpinned (NULL:
     * no such peer); the ring of a pinned peer; the unpin. */
    struct psy_ring *(*peer_pin)(struct psy_port *p, uint32_t peer);
    struct psy_ring *(*peer_ring)(struct psy_port *p, uint32_t peer);
    void (*peer_unpin)(struct psy_port *p, uint32_t peer);

    /* ---- consumer side ---- */
    /* PSY_PORT_MOVES: ring and reader are the consumer's segment. */
    void (*sync)(struct psy_port *p);
    /* PSY_PORT_MOVES: inside a wait, moves on to the next segment if the
     * current one is finished: 1 (synced), 0, or < 0. */
    int (*follow)(struct psy_port *p);
    /* PSY_PORT_MOVES: outside any wait, frees the segments left behind. */
    void (*reap)(struct psy_port *p);
    /* Optional: a blocking receive's wait for data (default psy_wait_loop
     * on ring): a tcp:// link reads its socket from the waiting thread. */
    int (*wait_data)(struct psy_port *p, psy_try_fn try_once, void *ctx, int64_t timeout_ns);
    /* PSY_PORT_PEERS: receives records of one peer (msgs[i].peer set). */
    int (*receive)(struct psy_port *p, struct psyne_msg *msgs, unsigned max, int64_t timeout_ns);
    /* PSY_PORT_PEERS and _MOVES: releases msgs[0..n), one receive's. 0 or
     * -EINVAL. */
    int (*release)(struct psy_port *p, const struct psyne_msg *msgs, unsigned n);

    /* ---- readiness descriptors (core/ready.c, ring/notify.c) ---- */
    /* PSY_PORT_PEERS: the ring whose data side is woken when some peer
     * has records (a descriptor for receives is armed there). */
    struct psy_ring *(*ready_ring)(struct psy_port *p);
    /* Optional: a descriptor of side is being armed; the transport makes
     * sure that what it waits for comes without the user's calls (tcp://:
     * the receiver thread reads the socket). */
    void (*arming)(struct psy_port *p, enum psy_wait_side side);

    /* Optional (tcp://): fills out[0..max) with the handle's peers and
     * returns how many it has (which may exceed max). Never blocks for long
     * (statistics' locks only). */
    unsigned (*peers)(struct psy_port *p, struct psy_peer_info *out, unsigned max);
};

/* The table of a scheme ("memory", "ipc", "tcp"), NULL if none. */
const struct psy_transport *psy_transport_find(const char *scheme);

extern const struct psy_transport psy_memory_transport;
extern const struct psy_transport psy_ipc_transport;
extern const struct psy_transport psy_tcp_transport;

/* Roles of a handle, as counted in the ring's wait block (set_roles). */
#define PSY_SLOT_PRODUCER 1u /* counted in wait.producers */
#define PSY_SLOT_CONSUMER 2u /* counted in wait.consumers */

/* Messages (i = 0) or bytes (i = 1) that a handle's four MP counters hold:
 * other threads' count plus the owner thread's (channel.c, count_mp). */
static inline uint64_t psy_mp_counted(const psy_atomic64 *c, int i)
{
    return atomic_load_explicit(&c[i], memory_order_relaxed) + atomic_load_explicit(&c[i + 2], memory_order_relaxed);
}

/* The shutdown of a port with one ring of its own (memory://, ipc://):
 * the flag every handle of the ring sees. */
void psy_transport_shutdown_home(struct psy_port *p);

/* An unread count as close returns it. */
static inline int psy_close_count(uint64_t unread)
{
    return unread > INT_MAX ? INT_MAX : (int)unread;
}

/* Options that only tcp:// takes, refused by the other schemes (-EINVAL). */
int psy_transport_refuse_tcp_options(const struct psyne_options *opt, const char *scheme);

#endif
