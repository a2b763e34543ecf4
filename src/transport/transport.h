/* SPDX-License-Identifier: MIT */
/*
 * transport.h - what a URI scheme provides to the channel layer: a ring to
 * attach to by name, and the release of that attachment.
 */
#ifndef PSY_TRANSPORT_H
#define PSY_TRANSPORT_H

#include "../ring/ring.h"

/* memory://name: rings of this process, found by name (memory.c). */
/* join_any: accept the existing ring whatever its mode and capacity. */
int psy_memory_attach(const char *name, const struct psyne_options *opt, bool join_any, struct psy_ring **out);
void psy_memory_detach(struct psy_ring *r);
/* The segments of a dynamic memory:// ring whose anchor is r, or NULL. */
struct psy_dyn;
struct psy_dyn *psy_memory_dynamic(struct psy_ring *r);

/* Roles of an ipc handle, as counted in the ring's wait block. */
#define PSY_SLOT_PRODUCER 1u /* counted in wait.producers */
#define PSY_SLOT_CONSUMER 2u /* counted in wait.consumers */

/* ipc://name: a ring in a shared-memory segment (ipc.c). Each attach is
 * one handle's own mapping and slot. */
int psy_ipc_attach(const char *name, const struct psyne_options *opt, bool join_any, struct psy_ring **out);
void psy_ipc_detach(struct psy_ring *r);
/* The handle's roles (PSY_SLOT_*) after the channel counted them, and its
 * BROADCAST subscriber slot (-1: none): what a survivor undoes if we die. */
void psy_ipc_set_roles(struct psy_ring *r, unsigned roles, int sub);
/* Before the channel uncounts the roles at close. */
void psy_ipc_clear_roles(struct psy_ring *r);
/* Whether the segment is a dynamic ring's anchor (ipc_dynamic.h). */
bool psy_ipc_is_dynamic(struct psy_ring *r);
/* The handle's MP counters {msgs, bytes, own msgs, own bytes} in its slot,
 * visible to every process (channel.c, count_mp). */
psy_atomic64 *psy_ipc_counters(struct psy_ring *r);
/* Messages (i = 0) or bytes (i = 1) that a handle's four MP counters hold:
 * other threads' count plus the owner thread's. */
static inline uint64_t psy_mp_counted(const psy_atomic64 *c, int i)
{
    return atomic_load_explicit(&c[i], memory_order_relaxed) + atomic_load_explicit(&c[i + 2], memory_order_relaxed);
}
/* Adds the open handles' MP counters; the segment's crash counters. */
void psy_ipc_stats(struct psy_ring *r, uint64_t *msgs, uint64_t *bytes, uint64_t *peers_lost,
                   uint64_t *claims_recovered, uint64_t *views_recovered);

/* tcp://host:port: a connection with a send ring (tx) and a receive ring
 * (rx) of this process, and the two threads that move them (tcp/link.h). */
struct psy_tcp_link;
int psy_tcp_open(const char *name, const struct psyne_options *opt, struct psy_tcp_link **out);
struct psy_ring *psy_tcp_rx(struct psy_tcp_link *l);
struct psy_ring *psy_tcp_tx(struct psy_tcp_link *l);
/* After each commit (or MP abort) on tx: writes the records from this
 * thread when the sender thread sleeps and nothing is in flight, or little
 * and the peer answered (never blocks), else wakes the sender thread if it
 * sleeps. */
void psy_tcp_committed(struct psy_tcp_link *l);
/* A consumer's wait for rx to have records (psyne_receive's blocking wait):
 * reads the connection from this thread, sleeping in poll() on the socket,
 * when no one else reads it; else waits as psy_wait_loop does. */
int psy_tcp_wait_data(struct psy_tcp_link *l, psy_try_fn try_once, void *ctx, int64_t timeout_ns);
/* ACKs are needed (a producer is about to wait for tx space): the receiver
 * thread, if it keeps out of the way of users who read inline, reads now.
 * Costs a lock only when the thread waits. Never blocks otherwise. */
void psy_tcp_acks_wanted(struct psy_tcp_link *l);
/* Shuts both rings down; the sender still finishes what was committed. */
void psy_tcp_shutdown(struct psy_tcp_link *l);
/* Sends what is committed, waits up to the link timeout (PSYNE_FOREVER: no
 * limit) for the peer to acknowledge it, says BYE, stops the threads, frees l. */
void psy_tcp_close(struct psy_tcp_link *l);
void psy_tcp_stats(struct psy_tcp_link *l, struct psyne_stats *st);

/* tcp:// listening with max_peers: many clients, each a peer with a link of
 * its own (tcp/server.c). */
struct psy_tcp_server;
int psy_tcp_server_open(const char *name, const struct psyne_options *opt, struct psy_tcp_server **out);
/* Records of one peer (msgs[i].peer set). Errors as psy_ring_receive's,
 * -EPIPE only after psy_tcp_server_shutdown once every peer is drained. */
int psy_tcp_server_receive(struct psy_tcp_server *s, struct psyne_msg *msgs, unsigned max, int64_t timeout_ns);
/* Releases msgs[0..n) (one receive's, of one peer). Returns 0 or -EINVAL. */
int psy_tcp_server_release(struct psy_tcp_server *s, const struct psyne_msg *msgs, unsigned n);
/* The send ring of a peer, pinned (not freed until unpinned), or NULL. */
struct psy_ring *psy_tcp_server_pin(struct psy_tcp_server *s, uint32_t peer);
/* The send ring of a pinned peer. */
struct psy_ring *psy_tcp_server_tx(struct psy_tcp_server *s, uint32_t peer);
void psy_tcp_server_unpin(struct psy_tcp_server *s, uint32_t peer);
void psy_tcp_server_shutdown(struct psy_tcp_server *s);
void psy_tcp_server_close(struct psy_tcp_server *s);
/* Fills the counters of st that a server has (capacity, traffic, tcp_*). */
void psy_tcp_server_stats(struct psy_tcp_server *s, struct psyne_stats *st);

#endif
