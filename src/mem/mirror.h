/* SPDX-License-Identifier: MIT */
/*
 * mirror.h - the mirrored ("magic") ring mapping: one memfd holding a control
 * area and a data area, with the data area mapped twice back to back so that
 * any range of up to `data_len` bytes starting inside it is contiguous.
 */
#ifndef PSY_MIRROR_H
#define PSY_MIRROR_H

#include <stddef.h>
#include <sys/types.h>

#include "placement.h"

struct psy_mirror {
    void *base; /* control area; data follows at base + ctl_len */
    size_t ctl_len;
    size_t data_len;
    size_t map_len;           /* ctl_len + 2 * data_len, the whole mapping */
    struct psy_placement got; /* what the memory is backed by */
};

/* Maps a new zero-filled mirror. ctl_len and data_len must be page multiples.
 * With req->huge and req->explicit_ok it first tries explicit huge pages
 * (a hugetlb memfd; ctl_len then grows to one huge page, and data_len must be
 * a multiple of one), then transparent ones, then normal pages.
 * Returns 0 or -errno. */
int psy_mirror_create(struct psy_mirror *m, size_t ctl_len, size_t data_len, const struct psy_place_request *req);
/* Maps an existing file of ctl_len + data_len bytes the same way (ipc://:
 * transparent huge pages at most). */
int psy_mirror_map(struct psy_mirror *m, int fd, size_t ctl_len, size_t data_len, const struct psy_place_request *req);
/* Maps [off, off + ctl_len + data_len) of fd (a slab) the same way; off,
 * ctl_len and data_len are multiples of page, the page size of fd. m->got is
 * left to the caller (what the slab got). */
int psy_mirror_map_at(struct psy_mirror *m, int fd, off_t off, size_t ctl_len, size_t data_len, size_t page,
                      const struct psy_place_request *req);
void psy_mirror_destroy(struct psy_mirror *m);

#endif
