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

#endif
