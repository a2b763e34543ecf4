/* SPDX-License-Identifier: MIT */
/*
 * slab.h - the inside of psyne_slabs (psyne.h): large memfd regions mapped
 * once, carved into rings (mirrored from the slab's memfd) and into plain
 * ranges for the caller.
 */
#ifndef PSY_SLAB_H
#define PSY_SLAB_H

#include <stdbool.h>
#include <stddef.h>

#include "mirror.h"

struct psyne_slabs;

/* Carves a ring of ctl_len + data_len bytes out of the pool and maps it as a
 * mirror (mirror.h) from the slab's memfd: the control block zeroed, and the
 * data all zeroed (zero_data: MP rings) or its first header. ctl_len grows to the
 * slabs' page size. req: the channel's prefault and lock wishes for the new
 * mapping (its huge page and NUMA wishes are the pool's business). On success
 * *block is what psy_slabs_unmap_ring takes back. Returns 0 or -errno
 * (-EINVAL: data_len is not a multiple of the slabs' page size). */
int psy_slabs_map_ring(struct psyne_slabs *s, size_t ctl_len, size_t data_len, bool zero_data,
                       const struct psy_place_request *req, struct psy_mirror *m, void **block);
/* Unmaps the ring's mirror and returns its range to the pool. */
void psy_slabs_unmap_ring(struct psyne_slabs *s, struct psy_mirror *m, void *block);

#endif
