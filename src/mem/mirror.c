/*
 * mirror.c - maps a memfd or shared-memory file as [control | data | data again].
 *
 * Reserving the whole range first with PROT_NONE and then mapping the pieces
 * over it with MAP_FIXED is the only race-free way to get adjacent mappings:
 * a bare MAP_FIXED at a guessed address could clobber another thread's map.
 */
#include "mirror.h"

#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static int map_piece(uint8_t *at, size_t len, int fd, off_t off, int populate)
{
    void *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | (populate ? MAP_POPULATE : 0), fd, off);
    return p == MAP_FAILED ? -errno : 0;
}

int psy_mirror_map(struct psy_mirror *m, int fd, size_t ctl_len, size_t data_len, int prefault)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || ctl_len % (size_t)page || data_len % (size_t)page || data_len == 0)
        return -EINVAL;
    size_t map_len = ctl_len + 2 * data_len;
    uint8_t *base = mmap(NULL, map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return -errno;
    /* The second data mapping shares the first one's pages: populating the
     * first is enough to back both. */
    int rc;
    if ((rc = map_piece(base, ctl_len, fd, 0, 1)) != 0 ||
        (rc = map_piece(base + ctl_len, data_len, fd, (off_t)ctl_len, prefault)) != 0 ||
        (rc = map_piece(base + ctl_len + data_len, data_len, fd, (off_t)ctl_len, 0)) != 0) {
        munmap(base, map_len);
        return rc;
    }
    m->base = base;
    m->ctl_len = ctl_len;
    m->data_len = data_len;
    m->map_len = map_len;
    return 0;
}

int psy_mirror_create(struct psy_mirror *m, size_t ctl_len, size_t data_len, int prefault)
{
    int fd = memfd_create("psyne-ring", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = ftruncate(fd, (off_t)(ctl_len + data_len)) == 0 ? psy_mirror_map(m, fd, ctl_len, data_len, prefault)
                                                              : -errno;
    close(fd); /* the mappings keep the memory alive */
    return rc;
}

void psy_mirror_destroy(struct psy_mirror *m)
{
    if (m->base)
        munmap(m->base, m->map_len);
    m->base = NULL;
}
