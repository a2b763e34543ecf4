/*
 * mirror.h - the mirrored ("magic") ring mapping: one memfd holding a control
 * area and a data area, with the data area mapped twice back to back so that
 * any range of up to `data_len` bytes starting inside it is contiguous.
 */
#ifndef PSY_MIRROR_H
#define PSY_MIRROR_H

#include <stddef.h>

struct psy_mirror {
    void *base;       /* control area; data follows at base + ctl_len */
    size_t ctl_len;
    size_t data_len;
    size_t map_len;   /* ctl_len + 2 * data_len, the whole reservation */
};

/* Maps a new zero-filled mirror. ctl_len and data_len must be page multiples.
 * prefault touches every page now so the first lap takes no page faults.
 * Returns 0 or -errno. */
int psy_mirror_create(struct psy_mirror *m, size_t ctl_len, size_t data_len, int prefault);
/* Maps an existing file of ctl_len + data_len bytes the same way (ipc://). */
int psy_mirror_map(struct psy_mirror *m, int fd, size_t ctl_len, size_t data_len, int prefault);
void psy_mirror_destroy(struct psy_mirror *m);

#endif
