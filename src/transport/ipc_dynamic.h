/* SPDX-License-Identifier: MIT */
/*
 * ipc_dynamic.h - dynamic rings over ipc:// (ipc_dynamic.c): the directory
 * in the anchor segment, and one psy_dyn per handle whose segments are
 * shared-memory files.
 */
#ifndef PSY_IPC_DYNAMIC_H
#define PSY_IPC_DYNAMIC_H

#include "../base/uri.h"
#include "ipc_segment.h"

/* The shm name of segment gen of the dynamic ring `name` whose directory
 * has this id: "/psyne-seg.<name>.<id in 16 hex digits>.<gen>". */
void psy_ipc_segment_name(char *buf, size_t n, const char *name, uint64_t id, uint64_t gen);

/* The creator of an anchor, before it is marked ready: writes the
 * directory and makes segment 0 (opt->dynamic, opt->capacity). perm: the
 * mode bits of the segment files. */
int psy_ipc_dyn_format(struct psy_ring *anchor, const char *name, const struct psyne_options *opt, unsigned perm);

/* A handle's view of the ring: the segments its role needs, mapped. */
int psy_ipc_dyn_open(struct psy_ring *anchor, const char *name, const struct psyne_options *opt, int role,
                     struct psy_dyn **out);
/* Unmaps the handle's segments (their names stay for the next opener). */
void psy_ipc_dyn_close(struct psy_dyn *d);

/* What names a ring's segment files may have: read from the anchor before
 * it is unmapped, used after its name is removed by the last one out. */
struct psy_ipc_dyn_names {
    uint64_t id, oldest, newest;
};
void psy_ipc_dyn_names(struct psy_ring *anchor, struct psy_ipc_dyn_names *out);
void psy_ipc_dyn_remove_names(const char *name, const struct psy_ipc_dyn_names *n);

#endif
