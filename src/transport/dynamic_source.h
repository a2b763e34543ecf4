/* SPDX-License-Identifier: MIT */
/*
 * dynamic_source.h - a dynamic ring (ring/dynamic.h) as the ring source of
 * a port: the steps of a psy_transport that every scheme with dynamic rings
 * shares (memory://, ipc://). The port's priv is the handle's psy_dyn, its
 * home the anchor ring; the scheme's table adds its own open and close.
 */
#ifndef PSY_DYNAMIC_SOURCE_H
#define PSY_DYNAMIC_SOURCE_H

#include "transport.h"

void psy_dynsrc_shutdown(struct psy_port *p);
void psy_dynsrc_stats(struct psy_port *p, struct psyne_stats *st);
struct psy_ring *psy_dynsrc_producer(struct psy_port *p);
int psy_dynsrc_grow(struct psy_port *p, uint64_t need);
uint64_t psy_dynsrc_max_capacity(struct psy_port *p);
void psy_dynsrc_sync(struct psy_port *p);
int psy_dynsrc_follow(struct psy_port *p);
void psy_dynsrc_reap(struct psy_port *p);
int psy_dynsrc_release(struct psy_port *p, const struct psyne_msg *msgs, unsigned n);

/* The shared steps, for a table's designated initializers. */
#define PSY_DYNAMIC_SOURCE_OPS                                                                                         \
    .shutdown = psy_dynsrc_shutdown, .stats = psy_dynsrc_stats, .producer = psy_dynsrc_producer,                       \
    .grow = psy_dynsrc_grow, .max_capacity = psy_dynsrc_max_capacity, .sync = psy_dynsrc_sync,                         \
    .follow = psy_dynsrc_follow, .reap = psy_dynsrc_reap, .release = psy_dynsrc_release

#endif
