/* SPDX-License-Identifier: MIT */
/*
 * peer.h - what a tcp:// link offers a listening handle with max_peers
 * (server.c): links it makes for its clients and hands connections to.
 * Internal to src/transport/tcp/.
 */
#ifndef PSY_TCP_PEER_H
#define PSY_TCP_PEER_H

#include <stdbool.h>
#include <stdint.h>

#include "../../ring/fastpath.h"
#include "tcp.h"

/* How long a new connection may take to send its hello. */
#define PSY_TCP_HELLO_TIMEOUT_MS 5000

/* Parses host:port and listens there (backlog 16, SO_REUSEADDR). */
int psy_tcp_listen(const char *name, int *fd);

/* A link of owner for one client: rings and threads, no connection until
 * the owner hands it one. The link calls poke(owner) when it publishes
 * records and when it ends, from its own threads. */
int psy_tcp_peer_open(const char *where, const struct psyne_options *opt, struct psy_tcp_server *owner,
                      void (*poke)(struct psy_tcp_server *owner), struct psy_tcp_link **out);
/* Hands the link a connection whose client hello (PSY_WIRE_HELLO_SIZE bytes)
 * the owner has read; a connection the link has now is dropped (the client
 * came back on this one). Takes fd over. */
void psy_tcp_peer_connect(struct psy_tcp_link *l, int fd, const uint8_t *hello);
/* The owner's single-consumer state of the link's rx, NULL in MC modes. */
const struct psy_reader *psy_tcp_peer_reader(struct psy_tcp_link *l);
/* Claims on tx in progress: a pinned link is not freed. Unpinning (-1)
 * after a commit also tells the sender thread there are records. */
void psy_tcp_peer_pin(struct psy_tcp_link *l, int delta);
/* No claim open and nothing received unreleased: safe to free once ended. */
bool psy_tcp_peer_idle(struct psy_tcp_link *l);
/* psy_tcp_close for a server's peer: a peer whose connection is down and
 * that has every message it was sent is not waited for. */
void psy_tcp_peer_close(struct psy_tcp_link *l);
/* The link is over (BYE, failure or close): its rings are shut down. */
bool psy_tcp_link_ended(struct psy_tcp_link *l);

#endif
