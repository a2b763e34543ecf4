/* SPDX-License-Identifier: MIT */
/*
 * tcp.h - what the tcp:// transport's table (port.c) calls: a link
 * (link.h) and a listening handle with max_peers (server.c). Internal to
 * src/transport/tcp/.
 */
#ifndef PSY_TCP_H
#define PSY_TCP_H

#include "../transport.h"

/* tcp://host:port: a connection with a send ring (tx) and a receive ring
 * (rx) of this process, and the two threads that move them (link.h). */
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
/* The link's other end and what went each way (published statistics). */
void psy_tcp_peer_info(struct psy_tcp_link *l, uint32_t peer, struct psy_peer_info *out);

/* tcp:// listening with max_peers: many clients, each a peer with a link of
 * its own (server.c). */
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
/* The ring whose data side is woken when some peer has records. */
struct psy_ring *psy_tcp_server_bell(struct psy_tcp_server *s);
void psy_tcp_server_shutdown(struct psy_tcp_server *s);
void psy_tcp_server_close(struct psy_tcp_server *s);
/* Fills the counters of st that a server has (capacity, traffic, tcp_*). */
void psy_tcp_server_stats(struct psy_tcp_server *s, struct psyne_stats *st);
/* Each peer's psy_tcp_peer_info, up to max; returns how many peers there are. */
unsigned psy_tcp_server_peers(struct psy_tcp_server *s, struct psy_peer_info *out, unsigned max);

#endif
