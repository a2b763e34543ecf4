/* SPDX-License-Identifier: MIT */
/*
 * mirror.c - maps a memfd or shared-memory file as [control | data | data again].
 *
 * Reserving the whole range first with PROT_NONE and then mapping the pieces
 * over it with MAP_FIXED is the only race-free way to get adjacent mappings:
 * a bare MAP_FIXED at a guessed address could clobber another thread's map.
 * The reservation is aligned to the page size the pieces need (a huge page
 * when huge pages are asked for, so the kernel can map them whole).
 */
#include "mirror.h"

#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "psyne.h"

static int map_piece(uint8_t *at, size_t len, int fd, off_t off)
{
    void *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, off);
    return p == MAP_FAILED ? -errno : 0;
}

/* A PROT_NONE range of len bytes starting at a multiple of align. */
static uint8_t *reserve_aligned(size_t len, size_t align)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t extra = align > page ? align - page : 0;
    uint8_t *raw = mmap(NULL, len + extra, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uint8_t *base = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
    if (base > raw)
        munmap(raw, (size_t)(base - raw));
    if (raw + len + extra > base + len)
        munmap(base + len, (size_t)(raw + len + extra - (base + len)));
    return base;
}

/* Maps [off, off + ctl_len + data_len) of fd as control, data, data. */
static int map_mirror(struct psy_mirror *m, int fd, off_t off, size_t ctl_len, size_t data_len, size_t page,
                      const struct psy_place_request *req)
{
    if (ctl_len % page || data_len % page || data_len == 0)
        return -EINVAL;
    size_t map_len = ctl_len + 2 * data_len;
    size_t hpage = psy_huge_page_size();
    uint8_t *base = reserve_aligned(map_len, req->huge && hpage > page ? hpage : page);
    if (!base)
        return -errno;
    int rc;
    off_t data_off = off + (off_t)ctl_len;
    if ((rc = map_piece(base, ctl_len, fd, off)) != 0 ||
        (rc = map_piece(base + ctl_len, data_len, fd, data_off)) != 0 ||
        (rc = map_piece(base + ctl_len + data_len, data_len, fd, data_off)) != 0 ||
        (rc = psy_place_before_fault(base, ctl_len + data_len, req, &m->got)) != 0 ||
        (rc = psy_place_after_map(base, map_len, req, &m->got)) != 0) {
        munmap(base, map_len);
        return rc;
    }
    m->base = base;
    m->ctl_len = ctl_len;
    m->data_len = data_len;
    m->map_len = map_len;
    return 0;
}

static void normal_pages(struct psy_mirror *m)
{
    m->got = (struct psy_placement){
        .pages = PSYNE_PAGES_NORMAL, .page_size = (uint64_t)sysconf(_SC_PAGESIZE), .numa_node = -1};
}

int psy_mirror_map(struct psy_mirror *m, int fd, size_t ctl_len, size_t data_len, const struct psy_place_request *req)
{
    normal_pages(m);
    return map_mirror(m, fd, 0, ctl_len, data_len, (size_t)sysconf(_SC_PAGESIZE), req);
}

/* Explicit huge pages: a hugetlb memfd. The control area takes a whole huge
 * page. Fails (and the caller falls back) when too few pages are reserved in
 * /proc/sys/vm/nr_hugepages: shared hugetlb mappings reserve at mmap time, so
 * a shortage shows here and never as SIGBUS later. */
static int create_explicit(struct psy_mirror *m, size_t data_len, const struct psy_place_request *req)
{
    size_t hpage = psy_huge_page_size();
    if (!hpage || data_len % hpage)
        return -EINVAL;
    int fd = memfd_create("psyne-ring", MFD_CLOEXEC | MFD_HUGETLB);
    if (fd < 0)
        return -errno;
    m->got = (struct psy_placement){.pages = PSYNE_PAGES_EXPLICIT, .page_size = hpage, .numa_node = -1};
    int rc = ftruncate(fd, (off_t)(hpage + data_len)) == 0 ? map_mirror(m, fd, 0, hpage, data_len, hpage, req) : -errno;
    close(fd);
    return rc;
}

int psy_mirror_create(struct psy_mirror *m, size_t ctl_len, size_t data_len, const struct psy_place_request *req)
{
    if (req->huge && req->explicit_ok && create_explicit(m, data_len, req) == 0)
        return 0;
    normal_pages(m);
    int fd = memfd_create("psyne-ring", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = ftruncate(fd, (off_t)(ctl_len + data_len)) == 0
                 ? map_mirror(m, fd, 0, ctl_len, data_len, (size_t)sysconf(_SC_PAGESIZE), req)
                 : -errno;
    close(fd); /* the mappings keep the memory alive */
    return rc;
}

int psy_mirror_map_at(struct psy_mirror *m, int fd, off_t off, size_t ctl_len, size_t data_len, size_t page,
                      const struct psy_place_request *req)
{
    return map_mirror(m, fd, off, ctl_len, data_len, page, req);
}

void psy_mirror_destroy(struct psy_mirror *m)
{
    if (m->base)
        munmap(m->base, m->map_len);
    m->base = NULL;
}
