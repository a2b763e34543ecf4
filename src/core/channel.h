/* SPDX-License-Identifier: MIT */
/*
 * channel.h - internal access to a channel's ring, for the library's own
 * tests and tools (not part of the public API).
 */
#ifndef PSY_CHANNEL_H
#define PSY_CHANNEL_H

#include "psyne.h"

struct psy_ring;
struct psy_ring *psy_channel_ring(psyne_channel *ch);

/* psyne_commit without the user type range check: psyne's own record types
 * (typed messages, tensor.c). */
int psy_channel_commit(psyne_channel *ch, struct psyne_claimed *c, size_t length, uint32_t type);

#endif
