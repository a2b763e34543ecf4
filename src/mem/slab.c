/* SPDX-License-Identifier: MIT */
/*
 * slab.c - psyne_slabs: large memfd regions mapped once and carved into
 * rings and plain ranges.
 *
 * Each slab is a memfd mapped once, linearly, placed (NUMA policy, huge page
 * advice) and prefaulted or locked as the pool asks. A ring carved from it is
 * a second, mirrored mapping of its range of the same memfd, so the ring
 * shares the slab's pages and placement and costs no new memory object. The
 * free space of each slab is a list of extents sorted by offset and merged
 * with its neighbours on free; a request takes the first extent it fits in
 * (first fit keeps the low offsets busy and the high ones whole). Carving is
 * rare (channel opens, dynamic ring resizes), so one mutex per pool and
 * linear scans are enough.
 *
 * Rings must start out zero where they will read headers before writing
 * them (a zero header means "nothing committed here"). A fresh memfd is
 * zero; a slab remembers how far it was ever handed out (touched), and only
 * that part of a range carved again is cleared (for SP rings, only their
 * control block and first header: see psy_slabs_map_ring).
 */
#include "slab.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../base/error.h"
#include "placement.h"
#include "psyne.h"

#define DEFAULT_SLAB_SIZE ((uint64_t)64 << 20)
#define ALLOC_ALIGN 64 /* psyne_slab_alloc: a cache line */
#define SLAB_FLAGS (PSYNE_F_HUGEPAGES | PSYNE_F_NUMA_BIND | PSYNE_F_MLOCK | PSYNE_F_NO_PREFAULT)

struct extent {
    size_t off, len;
};

struct slab {
    int fd;
    uint8_t *base; /* the linear mapping of the whole slab */
    size_t len;
    size_t touched;      /* [0, touched) was handed out before and may hold old bytes */
    struct extent *free; /* sorted by offset, no two adjacent */
    size_t n_free, cap_free;
};

struct carved { /* a range in use */
    uint8_t *addr;
    size_t len;
    unsigned slab;
    bool ring; /* a ring's (psy_slabs_unmap_ring returns it), else psyne_slab_alloc's */
};

struct psyne_slabs {
    pthread_mutex_t lock;
    size_t slab_size, max_bytes;
    size_t page; /* of the slabs' memory: a huge page for hugetlb slabs */
    bool hugetlb;
    struct psy_place_request req;
    struct psy_placement got;
    struct slab *slabs;
    size_t n_slabs, cap_slabs;
    struct carved *carved; /* sorted by address */
    size_t n_carved, cap_carved;
    struct psyne_slab_stats st;
};

static size_t round_up(size_t v, size_t to)
{
    return (v + to - 1) / to * to;
}

/* Room for need elements of elem bytes in *v (capacity *cap). */
static int reserve(void **v, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 8;
    while (n < need)
        n *= 2;
    void *p = realloc(*v, n * elem);
    if (!p)
        return -ENOMEM;
    *v = p;
    *cap = n;
    return 0;
}

/* ---- one slab ---- */

static void unmap_slab(struct slab *sl)
{
    munmap(sl->base, sl->len);
    close(sl->fd);
    free(sl->free);
}

/* Maps a slab of len bytes (a multiple of s->page) as the pool asks. */
static int map_slab(struct psyne_slabs *s, size_t len, struct slab *sl)
{
    memset(sl, 0, sizeof *sl);
    int fd = memfd_create("psyne-slab", MFD_CLOEXEC | (s->hugetlb ? MFD_HUGETLB : 0));
    if (fd < 0)
        return -errno;
    /* A shared hugetlb mapping reserves its pages at mmap: a shortage fails
     * here, never as SIGBUS later. */
    uint8_t *base =
        ftruncate(fd, (off_t)len) == 0 ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (base == MAP_FAILED) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    struct psy_placement got = s->got;
    int rc = psy_place_before_fault(base, len, &s->req, &got);
    if (!rc)
        rc = psy_place_after_map(base, len, &s->req, &got);
    if (rc || !(sl->free = malloc(8 * sizeof *sl->free))) {
        munmap(base, len);
        close(fd);
        return rc ? rc : -ENOMEM;
    }
    s->got = got;
    sl->fd = fd;
    sl->base = base;
    sl->len = len;
    sl->free[0] = (struct extent){0, len};
    sl->n_free = 1;
    sl->cap_free = 8;
    return 0;
}

/* Adds a slab of slab_size bytes, or of min_len if larger, within
 * max_bytes. Returns its index, or -errno. Called with the lock held (or
 * before the pool is shared). */
static int add_slab(struct psyne_slabs *s, size_t min_len)
{
    size_t size = round_up(min_len > s->slab_size ? min_len : s->slab_size, s->page);
    if (s->max_bytes && s->st.bytes + size > s->max_bytes)
        return -ENOMEM;
    if (reserve((void **)&s->slabs, &s->cap_slabs, s->n_slabs + 1, sizeof *s->slabs))
        return -ENOMEM;
    int rc = map_slab(s, size, &s->slabs[s->n_slabs]);
    if (rc)
        return rc;
    s->st.slabs++;
    s->st.bytes += size;
    s->st.growths += s->n_slabs > 0;
    return (int)s->n_slabs++;
}

/* Takes len bytes at a multiple of align from the first free extent they
 * fit in. Returns the offset, or SIZE_MAX. */
static size_t take(struct slab *sl, size_t len, size_t align)
{
    for (size_t i = 0; i < sl->n_free; i++) {
        struct extent e = sl->free[i];
        size_t at = round_up(e.off, align), end = at + len, e_end = e.off + e.len;
        if (at < e.off || end > e_end || end < at)
            continue;
        bool left = at > e.off, right = end < e_end;
        if (left && right) { /* split in two: one more extent */
            if (reserve((void **)&sl->free, &sl->cap_free, sl->n_free + 1, sizeof *sl->free))
                return SIZE_MAX;
            memmove(&sl->free[i + 2], &sl->free[i + 1], (sl->n_free - i - 1) * sizeof *sl->free);
            sl->n_free++;
            sl->free[i] = (struct extent){e.off, at - e.off};
            sl->free[i + 1] = (struct extent){end, e_end - end};
        } else if (left) {
            sl->free[i].len = at - e.off;
        } else if (right) {
            sl->free[i] = (struct extent){end, e_end - end};
        } else {
            memmove(&sl->free[i], &sl->free[i + 1], (sl->n_free - i - 1) * sizeof *sl->free);
            sl->n_free--;
        }
        return at;
    }
    return SIZE_MAX;
}

/* Gives [off, off + len) back, merged with the free neighbours. Never
 * fails: a merge needs no room, and an extent that merges with neither
 * neighbour finds its slot reserved at carving (see carve). */
static void give_back(struct slab *sl, size_t off, size_t len)
{
    size_t i = 0;
    while (i < sl->n_free && sl->free[i].off < off)
        i++;
    bool with_prev = i > 0 && sl->free[i - 1].off + sl->free[i - 1].len == off;
    bool with_next = i < sl->n_free && off + len == sl->free[i].off;
    if (with_prev && with_next) {
        sl->free[i - 1].len += len + sl->free[i].len;
        memmove(&sl->free[i], &sl->free[i + 1], (sl->n_free - i - 1) * sizeof *sl->free);
        sl->n_free--;
    } else if (with_prev) {
        sl->free[i - 1].len += len;
    } else if (with_next) {
        sl->free[i].off = off;
        sl->free[i].len += len;
    } else {
        memmove(&sl->free[i + 1], &sl->free[i], (sl->n_free - i) * sizeof *sl->free);
        sl->free[i] = (struct extent){off, len};
        sl->n_free++;
    }
}

/* ---- the pool ---- */

/* Index of the carved range at addr, or n_carved. */
static size_t find_carved(const struct psyne_slabs *s, const void *addr)
{
    size_t lo = 0, hi = s->n_carved;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((const uint8_t *)s->carved[mid].addr < (const uint8_t *)addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n_carved && s->carved[lo].addr == addr ? lo : s->n_carved;
}

/* Carves len bytes at a multiple of align, adding a slab if none has room.
 * *clear is set to how many bytes from the start may hold old contents.
 * Called with the lock held. */
static int carve(struct psyne_slabs *s, size_t len, size_t align, bool ring, struct carved *out, size_t *clear)
{
    if (reserve((void **)&s->carved, &s->cap_carved, s->n_carved + 1, sizeof *s->carved))
        return -ENOMEM;
    size_t off = SIZE_MAX;
    unsigned i = 0;
    for (; i < s->n_slabs && off == SIZE_MAX; i++)
        off = take(&s->slabs[i], len, align);
    if (off == SIZE_MAX) { /* a new slab: at least slab_size, at least this request */
        int k = add_slab(s, len);
        if (k < 0)
            return k;
        i = (unsigned)k;
        off = take(&s->slabs[i], len, align);
    } else {
        i--;
    }
    struct slab *sl = &s->slabs[i];
    /* A slab has at most one free extent more than ranges carved from it:
     * room for that now, so that giving a range back never fails. */
    if (reserve((void **)&sl->free, &sl->cap_free, s->n_carved + 2, sizeof *sl->free)) {
        give_back(sl, off, len);
        return -ENOMEM;
    }
    *clear = sl->touched > off ? (sl->touched - off < len ? sl->touched - off : len) : 0;
    if (off + len > sl->touched)
        sl->touched = off + len;
    *out = (struct carved){sl->base + off, len, i, ring};
    size_t at = 0;
    while (at < s->n_carved && s->carved[at].addr < out->addr)
        at++;
    memmove(&s->carved[at + 1], &s->carved[at], (s->n_carved - at) * sizeof *s->carved);
    s->carved[at] = *out;
    s->n_carved++;
    s->st.allocations++;
    s->st.allocs_total++;
    s->st.bytes_in_use += len;
    if (s->st.bytes_in_use > s->st.high_water)
        s->st.high_water = s->st.bytes_in_use;
    return 0;
}

/* Returns the carved range at index k. Called with the lock held. */
static void uncarve(struct psyne_slabs *s, size_t k)
{
    struct carved c = s->carved[k];
    struct slab *sl = &s->slabs[c.slab];
    give_back(sl, (size_t)(c.addr - sl->base), c.len);
    memmove(&s->carved[k], &s->carved[k + 1], (s->n_carved - k - 1) * sizeof *s->carved);
    s->n_carved--;
    s->st.allocations--;
    s->st.bytes_in_use -= c.len;
}

void psyne_slab_options_init(struct psyne_slab_options *opt)
{
    if (!opt)
        return;
    memset(opt, 0, sizeof *opt);
    opt->slab_size = DEFAULT_SLAB_SIZE;
}

int psyne_slabs_create(const struct psyne_slab_options *opt, psyne_slabs **out)
{
    if (!opt || !out)
        return psy_fail(-EINVAL, "slab options or result pointer is NULL");
    if (opt->flags & ~(uint32_t)SLAB_FLAGS)
        return psy_fail(-EINVAL, "slab flags 0x%x: only HUGEPAGES, NUMA_BIND, MLOCK and NO_PREFAULT apply to slabs",
                        opt->flags);
    uint64_t size = opt->slab_size ? opt->slab_size : DEFAULT_SLAB_SIZE;
    if (size > PSYNE_MAX_CAPACITY * 4)
        return psy_fail(-EINVAL, "slab size %llu is above %llu", (unsigned long long)size,
                        (unsigned long long)PSYNE_MAX_CAPACITY * 4);
    if (opt->max_bytes && opt->max_bytes < size)
        return psy_fail(-EINVAL, "max_bytes %llu is below the slab size %llu", (unsigned long long)opt->max_bytes,
                        (unsigned long long)size);
    struct psyne_slabs *s = calloc(1, sizeof *s);
    if (!s)
        return psy_fail(-ENOMEM, "out of memory");
    int rc = psy_place_request_make(opt->flags, opt->numa_node, true, &s->req);
    if (rc) {
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->max_bytes = opt->max_bytes;
    size_t hpage = psy_huge_page_size();
    /* Explicit huge pages when asked and reserved, else what the request
     * gets from normal memfd pages (transparent huge pages where allowed). */
    s->hugetlb = s->req.huge && hpage;
    for (;;) {
        s->page = s->hugetlb ? hpage : (size_t)sysconf(_SC_PAGESIZE);
        s->slab_size = round_up(size, s->page);
        s->got = (struct psy_placement){
            .pages = s->hugetlb ? PSYNE_PAGES_EXPLICIT : PSYNE_PAGES_NORMAL, .page_size = s->page, .numa_node = -1};
        rc = add_slab(s, 0);
        if (rc >= 0)
            break;
        if (!s->hugetlb || (rc != -ENOMEM && rc != -EINVAL && rc != -ENOSPC)) {
            psyne_slabs_destroy(s);
            return psy_fail(rc, "cannot map a slab of %llu bytes%s", (unsigned long long)s->slab_size,
                            rc == -ENOMEM || rc == -EPERM ? " (or lock it: RLIMIT_MEMLOCK)" : "");
        }
        s->hugetlb = false; /* too few huge pages reserved: fall back */
    }
    *out = s;
    return 0;
}

int psyne_slabs_destroy(psyne_slabs *s)
{
    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    size_t live = s->n_carved;
    pthread_mutex_unlock(&s->lock);
    if (live)
        return psy_fail(-EBUSY, "%zu ranges carved from these slabs are still in use (close their channels first)",
                        live);
    for (size_t i = 0; i < s->n_slabs; i++)
        unmap_slab(&s->slabs[i]);
    free(s->slabs);
    free(s->carved);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return 0;
}

int psyne_slab_alloc(psyne_slabs *s, size_t len, void **out)
{
    if (!s || !out || len == 0 || len > PSYNE_MAX_CAPACITY * 4)
        return psy_fail(-EINVAL, "slab allocation of %zu bytes: pool or result NULL, or size 0 or too large", len);
    struct carved c;
    size_t clear;
    pthread_mutex_lock(&s->lock);
    int rc = carve(s, round_up(len, ALLOC_ALIGN), ALLOC_ALIGN, false, &c, &clear);
    if (rc)
        s->st.failed++;
    pthread_mutex_unlock(&s->lock);
    if (rc)
        return psy_fail(rc, "no room for %zu bytes in the slabs%s", len, s->max_bytes ? " within max_bytes" : "");
    *out = c.addr;
    return 0;
}

int psyne_slab_free(psyne_slabs *s, void *p)
{
    if (!s || !p)
        return psy_fail(-EINVAL, "slab pool or pointer is NULL");
    pthread_mutex_lock(&s->lock);
    size_t k = find_carved(s, p);
    bool ok = k < s->n_carved && !s->carved[k].ring;
    if (ok)
        uncarve(s, k);
    pthread_mutex_unlock(&s->lock);
    return ok ? 0 : psy_fail(-EINVAL, "%p was not given by psyne_slab_alloc of this pool (or was freed)", p);
}

int psyne_slabs_stats(psyne_slabs *s, struct psyne_slab_stats *st)
{
    if (!s || !st)
        return psy_fail(-EINVAL, "slab pool or stats pointer is NULL");
    pthread_mutex_lock(&s->lock);
    *st = s->st;
    st->pages = s->got.pages;
    st->page_size = s->got.page_size;
    st->numa_node = s->got.numa_node;
    st->locked = s->got.locked;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* ---- rings ---- */

/* Gives a ring's range back to the pool. */
static void return_ring_block(struct psyne_slabs *s, void *block)
{
    pthread_mutex_lock(&s->lock);
    size_t k = find_carved(s, block);
    if (k < s->n_carved)
        uncarve(s, k);
    pthread_mutex_unlock(&s->lock);
}

int psy_slabs_map_ring(struct psyne_slabs *s, size_t ctl_len, size_t data_len, bool zero_data,
                       const struct psy_place_request *req, struct psy_mirror *m, void **block)
{
    ctl_len = round_up(ctl_len, s->page);
    if (data_len % s->page)
        return psy_fail(-EINVAL,
                        "a ring carved from slabs of %zu-byte pages needs a capacity that is a multiple "
                        "of it (asked: %zu bytes)",
                        s->page, data_len);
    struct carved c;
    size_t clear;
    pthread_mutex_lock(&s->lock);
    int rc = carve(s, ctl_len + data_len, s->page, true, &c, &clear);
    if (rc)
        s->st.failed++;
    int fd = rc ? -1 : s->slabs[c.slab].fd;
    off_t off = rc ? 0 : (off_t)(c.addr - s->slabs[c.slab].base);
    struct psy_placement got = s->got;
    pthread_mutex_unlock(&s->lock);
    if (rc)
        return psy_fail(rc, "no room for a ring of %zu bytes in the slabs", data_len);
    /* The range is ours: no lock needed. An SP ring writes a zero header
     * after every record before publishing it, so only its first header must
     * be zero (psy_ring_set_start clears the one at a later start); MP rings
     * rely on zero space beyond the tail and need all of it cleared. */
    memset(c.addr, 0, clear < ctl_len ? clear : ctl_len);
    if (clear > ctl_len)
        memset(c.addr + ctl_len, 0, zero_data ? clear - ctl_len : PSYNE_RECORD_HEADER);
    /* The pages were placed with the slab: the mirror only maps them in
     * (prefault) and locks its own mapping, as the channel asks. */
    struct psy_place_request mirror_req = {.prefault = req->prefault, .lock = req->lock, .numa_node = -1};
    m->got = (struct psy_placement){.pages = PSYNE_PAGES_NORMAL, .numa_node = -1};
    rc = psy_mirror_map_at(m, fd, off, ctl_len, data_len, s->page, &mirror_req);
    if (rc) {
        return_ring_block(s, c.addr);
        return psy_fail(rc, "cannot map a ring of %zu bytes from a slab", data_len);
    }
    got.locked = got.locked || m->got.locked; /* the mirror's own mlock, or the slab's */
    m->got = got;
    *block = c.addr;
    return 0;
}

void psy_slabs_unmap_ring(struct psyne_slabs *s, struct psy_mirror *m, void *block)
{
    psy_mirror_destroy(m);
    return_ring_block(s, block);
}
