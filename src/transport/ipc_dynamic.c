/* SPDX-License-Identifier: MIT */
/*
 * ipc_dynamic.c - dynamic rings over ipc:// (layout in ipc_segment.h).
 *
 * The channel's segment is an anchor: it holds the handle slots (who is
 * alive, with which roles), the shutdown flag and a directory of the ring.
 * The records live in segment files, one per generation, that the producer
 * makes when it resizes and the consumer opens by name when it follows:
 *
 *   producer: make file gen+1 (formatted, start = where gen stops), publish
 *             seg_end in gen (release), then dir.prod_gen = gen+1
 *   consumer: finds seg_end in gen, has read up to it, opens gen+1
 *
 * Every handle keeps its own list of the segments it maps (dynamic.c, with
 * these ops). A segment is finished when the consumer has released up to
 * its end; whoever lets go of it first (the consumer, or the producer that
 * still maps it) folds its counters into the directory once, removes its
 * name and moves dir.cons_gen past it. The newest segment is never
 * finished, so a producer or consumer that opens later always finds the
 * files it needs; the last handle to close the anchor removes the names
 * that are left (ipc.c).
 *
 * Shutdown reaches segments nobody maps here: the side that shuts down
 * sets the anchor's flag, then shuts every generation up to dir.prod_gen;
 * a producer that chains sets dir.prod_gen, then looks at the flag (both
 * with full fences), so one of the two always shuts the newest segment.
 * Waits on a segment look for dead peers in the anchor's slots.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../base/error.h"
#include "../mem/mirror.h"
#include "ipc_dynamic.h"

/* Segment names left behind by a crash are removed at most this many
 * generations back: the directory is shared memory, never trusted. */
#define MAX_NAMES_REMOVED 4096

struct ipc_dyn {
    struct psy_ring *anchor;
    struct psy_ipc_dyn_dir *dir;
    uint64_t id;
    mode_t perm;
    char name[PSY_NAME_MAX + 1];
};

static struct psy_ipc_dyn_dir *dir_of(struct psy_ring *anchor)
{
    return (struct psy_ipc_dyn_dir *)anchor->data;
}

void psy_ipc_segment_name(char *buf, size_t n, const char *name, uint64_t id, uint64_t gen)
{
    snprintf(buf, n, "/psyne-seg.%s.%016llx.%llu", name, (unsigned long long)id, (unsigned long long)gen);
}

/* r->check_peers of a segment: the slots are the anchor's. A dead last
 * producer or consumer shuts the anchor down; the segments follow. */
static void segment_check_peers(struct psy_ring *r)
{
    struct psy_dyn_seg *s = (struct psy_dyn_seg *)((uint8_t *)r - offsetof(struct psy_dyn_seg, ring));
    struct psy_dyn *d = s->dyn;
    struct ipc_dyn *x = d->ctx;
    x->anchor->check_peers(x->anchor);
    if (!psy_ring_closed(x->anchor))
        return;
    pthread_mutex_lock(&d->lock);
    bool done = d->closed;
    pthread_mutex_unlock(&d->lock);
    if (!done)
        psy_dyn_shutdown(d);
}

/* This process's view of a mapped segment file. */
static void view_segment(struct psy_dyn *d, struct psy_dyn_seg *s, struct psy_mirror *m, const struct psy_ipc_layout *l,
                         uint64_t gen, uint64_t start)
{
    struct ipc_dyn *x = d->ctx;
    struct psy_ipc_header *h = m->base;
    psy_ipc_view(&s->ring, m, l, &d->opt, x->anchor->peer_timeout_ns, segment_check_peers);
    s->retired = &h->seg_retired;
    psy_dyn_seg_init(d, s, gen, start, &h->seg_end);
}

/* Gives the new file its size. The first segment gets its tmpfs pages now
 * (posix_fallocate), as a static ring does, so a full /dev/shm is an error
 * at open rather than a SIGBUS later. A resize must not stall the producer
 * that long (fallocate clears every page),
 * so a chained segment only checks that /dev/shm has the room and lets its
 * pages fault in as they are written, like a memory:// segment: if
 * something else fills /dev/shm in between, a write there is a SIGBUS. */
static int reserve(int fd, uint64_t size, bool chained)
{
    if (!chained)
        return -posix_fallocate(fd, 0, (off_t)size);
    struct statvfs fs;
    if (fstatvfs(fd, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < size)
        return -ENOSPC;
    return ftruncate(fd, (off_t)size) == 0 ? 0 : -errno;
}

/* Creates, formats and maps segment file gen. A file of that name can only
 * be the unpublished leftover of a producer that died making it: replaced. */
static int make_segment(struct psy_dyn *d, uint64_t gen, uint64_t cap, uint64_t start, bool chained,
                        struct psy_dyn_seg **out)
{
    struct ipc_dyn *x = d->ctx;
    char path[PSY_NAME_MAX + 64];
    psy_ipc_segment_name(path, sizeof path, x->name, x->id, gen);
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, x->perm);
    if (fd < 0 && errno == EEXIST && shm_unlink(path) == 0)
        fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, x->perm);
    if (fd < 0)
        return psy_fail(-errno, "ipc://%s: cannot create segment %llu of the dynamic ring", x->name,
                        (unsigned long long)gen);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    struct psy_ipc_layout l;
    psy_ipc_layout_for(cap, PSYNE_MODE_SPSC, page, &l);
    struct psyne_options o = d->opt;
    if (chained) /* by a resize: the pages fault in as the producer writes them (dynamic.c) */
        o.flags |= PSYNE_F_NO_PREFAULT;
    struct psy_place_request req;
    struct psy_mirror m = {0};
    struct psy_dyn_seg *s = calloc(1, sizeof *s);
    int rc = s ? 0 : -ENOMEM;
    if (!rc && fchmod(fd, x->perm) != 0) /* shm_open applied the umask */
        rc = -errno;
    if (!rc)
        rc = reserve(fd, l.file_size, chained);
    if (!rc && !(rc = psy_place_request_make(o.flags, o.numa_node, false, &req)))
        rc = psy_mirror_map(&m, fd, l.data_offset, cap, &req);
    close(fd);
    if (rc) {
        shm_unlink(path);
        free(s);
        return psy_fail(rc, "ipc://%s: cannot make a segment of %llu bytes for the dynamic ring", x->name,
                        (unsigned long long)cap);
    }
    struct psy_ipc_header *h = m.base;
    psy_ipc_format(m.base, &l, PSY_IPC_F_SEGMENT, page);
    h->dyn_id = x->id;
    h->seg_gen = gen;
    h->seg_start = start;
    atomic_store_explicit(&h->seg_end, PSY_SEG_OPEN, memory_order_relaxed);
    view_segment(d, s, &m, &l, gen, start);
    psy_ring_set_start(&s->ring, start);
    /* the channel counts its handles in the anchor */
    atomic_store_explicit(&s->ring.sh->wait.producers, 1, memory_order_relaxed);
    atomic_store_explicit(&s->ring.sh->wait.consumers, 1, memory_order_relaxed);
    atomic_store_explicit(&h->version, PSY_IPC_VERSION, memory_order_release); /* ready */
    *out = s;
    return 0;
}

/* Opens segment file gen: -ENOENT if it has no name (finished and gone). */
static int open_segment_gen(struct psy_dyn *d, uint64_t gen, struct psy_dyn_seg **out)
{
    struct ipc_dyn *x = d->ctx;
    char path[PSY_NAME_MAX + 64];
    psy_ipc_segment_name(path, sizeof path, x->name, x->id, gen);
    int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT
                               : psy_fail(-errno, "ipc://%s: cannot open segment %llu of the dynamic ring", x->name,
                                          (unsigned long long)gen);
    struct stat st;
    struct psy_ipc_header copy;
    struct psy_ipc_layout l;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const char *why = "it cannot be read";
    int rc = -EPROTO;
    if (fstat(fd, &st) == 0 && st.st_uid != geteuid() && !(d->opt.flags & PSYNE_F_IPC_OTHER_OWNER)) {
        why = "it belongs to another user (PSYNE_F_IPC_OTHER_OWNER joins such segments)";
        rc = -EACCES;
    } else if (fstat(fd, &st) == 0) {
        ssize_t got = pread(fd, &copy, sizeof copy, 0);
        rc = psy_ipc_validate(&copy, got > 0 ? (size_t)got : 0, (uint64_t)st.st_size, page, &l, &why);
        if (rc == -EAGAIN) { /* published only once ready: never half made */
            rc = -EPROTO;
            why = "it is not finished";
        }
        if (!rc)
            rc = psy_ipc_check_segment(&copy, x->id, gen, &why);
    }
    struct psy_mirror m = {0};
    struct psy_place_request req;
    if (!rc && !(rc = psy_place_request_make(d->opt.flags, d->opt.numa_node, false, &req)) &&
        (rc = psy_mirror_map(&m, fd, l.data_offset, l.capacity, &req)) != 0)
        why = "it cannot be mapped";
    close(fd);
    if (!rc &&
        (rc = psy_ipc_validate_ring((struct psy_ring_shared *)((uint8_t *)m.base + l.ring_offset), &l, &why)) != 0)
        psy_mirror_destroy(&m);
    struct psy_dyn_seg *s = NULL;
    if (!rc && !(s = calloc(1, sizeof *s))) {
        psy_mirror_destroy(&m);
        rc = -ENOMEM;
        why = "out of memory";
    }
    if (rc)
        return psy_fail(rc, "ipc://%s: segment %llu of the dynamic ring: %s", x->name, (unsigned long long)gen, why);
    view_segment(d, s, &m, &l, gen, copy.seg_start);
    if (psy_ring_closed(x->anchor)) /* its producer may have died before it could say so */
        psy_ring_shutdown(&s->ring);
    *out = s;
    return 0;
}

static int open_next(struct psy_dyn *d, const struct psy_dyn_seg *s, struct psy_dyn_seg **out)
{
    int rc = open_segment_gen(d, s->gen + 1, out);
    if (rc == 0 && (*out)->start != atomic_load_explicit(s->end, memory_order_relaxed)) {
        struct psy_dyn_seg *n = *out;
        psy_ring_destroy(&n->ring);
        free(n);
        return psy_fail(-EPROTO, "ipc://%s: segment %llu does not start where %llu ended",
                        ((struct ipc_dyn *)d->ctx)->name, (unsigned long long)s->gen + 1, (unsigned long long)s->gen);
    }
    return rc == -ENOENT ? psy_fail(-EPROTO, "ipc://%s: segment %llu of the dynamic ring is missing",
                                    ((struct ipc_dyn *)d->ctx)->name, (unsigned long long)s->gen + 1)
                         : rc;
}

static void chained(struct psy_dyn *d, struct psy_dyn_seg *s)
{
    struct ipc_dyn *x = d->ctx;
    atomic_store(&x->dir->capacity, s->ring.cap);
    atomic_store(&x->dir->prod_gen, s->gen); /* seq_cst: then the flag (see the top) */
    atomic_thread_fence(memory_order_seq_cst);
    if (psy_ring_closed(x->anchor))
        psy_ring_shutdown(&s->ring);
}

static bool retire(struct psy_dyn *d, struct psy_dyn_seg *s)
{
    struct ipc_dyn *x = d->ctx;
    uint32_t no = 0;
    if (!atomic_compare_exchange_strong(s->retired, &no, 1))
        return false; /* the other side did */
    char path[PSY_NAME_MAX + 64];
    psy_ipc_segment_name(path, sizeof path, x->name, x->id, s->gen);
    shm_unlink(path);
    uint64_t past = s->gen + 1, seen = atomic_load(&x->dir->cons_gen);
    while (seen < past && !atomic_compare_exchange_weak(&x->dir->cons_gen, &seen, past)) {
    }
    return true;
}

static void shutdown_unmapped(struct psy_dyn *d)
{
    struct ipc_dyn *x = d->ctx;
    atomic_thread_fence(memory_order_seq_cst); /* the anchor's flag is set: see the top */
    uint64_t newest = atomic_load(&x->dir->prod_gen);
    pthread_mutex_lock(&d->lock);
    struct psy_dyn_seg *last = atomic_load_explicit(&d->prod, memory_order_relaxed);
    uint64_t from = last ? last->gen + 1 : atomic_load(&x->dir->cons_gen);
    pthread_mutex_unlock(&d->lock);
    for (uint64_t gen = from; gen <= newest && gen - from < MAX_NAMES_REMOVED; gen++) {
        struct psy_dyn_seg *s;
        if (open_segment_gen(d, gen, &s) != 0)
            continue;
        psy_ring_shutdown(&s->ring);
        psy_ring_destroy(&s->ring);
        free(s);
    }
    psy_clear_error(); /* a missing generation is no error of the caller's */
}

static uint64_t capacity(struct psy_dyn *d)
{
    return atomic_load_explicit(&((struct ipc_dyn *)d->ctx)->dir->capacity, memory_order_relaxed);
}

static const struct psy_dyn_ops ipc_dyn_ops = {make_segment, open_next, chained, retire, shutdown_unmapped, capacity};

/* A psy_dyn with these ops and no segments yet. */
static int new_dyn(struct psy_ring *anchor, const char *name, const struct psyne_options *opt, bool consumes,
                   struct psy_dyn **out)
{
    struct ipc_dyn *x = calloc(1, sizeof *x);
    if (!x)
        return psy_fail(-ENOMEM, "out of memory");
    struct psy_ipc_dyn_dir *dir = dir_of(anchor);
    x->anchor = anchor;
    x->dir = dir;
    x->id = dir->id;
    x->perm = (mode_t)(dir->perm & 0777);
    snprintf(x->name, sizeof x->name, "%s", name);
    struct psyne_dynamic zero = {0};
    struct psyne_options o = *opt;
    o.mode = PSYNE_MODE_SPSC;
    if (!o.dynamic) /* joined with NULL options: the defaults, from the capacity asked */
        o.dynamic = &zero;
    int rc = psy_dyn_create_with(out, &o, &ipc_dyn_ops, x, &dir->st, consumes);
    if (rc)
        free(x);
    return rc;
}

int psy_ipc_dyn_format(struct psy_ring *anchor, const char *name, const struct psyne_options *opt, unsigned perm)
{
    struct psy_ipc_dyn_dir *dir = dir_of(anchor);
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, 0) != sizeof id)
        id = (uint64_t)psy_now_ns() ^ ((uint64_t)getpid() << 32);
    dir->id = id;
    dir->perm = perm & 0777;
    struct psy_dyn *d;
    int rc = new_dyn(anchor, name, opt, false, &d);
    if (rc)
        return rc;
    struct psy_dyn_seg *first;
    if ((rc = make_segment(d, 0, d->initial, 0, false, &first)) == 0) {
        atomic_store(&dir->capacity, first->ring.cap);
        psy_ring_destroy(&first->ring); /* each handle maps it again (psy_ipc_dyn_open) */
        free(first);
    }
    psy_ipc_dyn_close(d);
    return rc;
}

int psy_ipc_dyn_open(struct psy_ring *anchor, const char *name, const struct psyne_options *opt, int role,
                     struct psy_dyn **out)
{
    bool consumes = role != PSYNE_ROLE_PRODUCER, produces = role != PSYNE_ROLE_CONSUMER;
    struct psy_dyn *d;
    int rc = new_dyn(anchor, name, opt, consumes, &d);
    if (rc)
        return rc;
    struct ipc_dyn *x = d->ctx;
    /* A consumer starts at the oldest unfinished segment (one finished
     * meanwhile has no name: the next one); a producer maps the newest. */
    uint64_t gen = consumes ? atomic_load(&x->dir->cons_gen) : atomic_load(&x->dir->prod_gen);
    bool any = false;
    for (uint64_t tries = 0; tries < MAX_NAMES_REMOVED; tries++, gen++) {
        uint64_t newest = atomic_load(&x->dir->prod_gen);
        if (gen > newest)
            break;
        struct psy_dyn_seg *s;
        rc = open_segment_gen(d, gen, &s);
        if (rc == -ENOENT && !any && gen < newest)
            continue;
        if (rc)
            break;
        psy_dyn_append(d, s);
        any = true;
        if (!produces) /* it follows the rest when it gets there */
            break;
    }
    if (!rc && !any)
        rc = psy_fail(-EPROTO, "ipc://%s: the dynamic ring has no segment to open", name);
    if (rc == -ENOENT)
        rc = psy_fail(-EPROTO, "ipc://%s: a segment of the dynamic ring is missing", name);
    if (rc) {
        psy_ipc_dyn_close(d);
        return rc;
    }
    *out = d;
    return 0;
}

void psy_ipc_dyn_close(struct psy_dyn *d)
{
    if (!d)
        return;
    void *x = d->ctx;
    psy_dyn_destroy(d); /* unmaps; names stay for whoever opens next */
    free(x);
}

void psy_ipc_dyn_names(struct psy_ring *anchor, struct psy_ipc_dyn_names *out)
{
    struct psy_ipc_dyn_dir *dir = dir_of(anchor);
    out->id = dir->id;
    out->oldest = atomic_load(&dir->cons_gen);
    out->newest = atomic_load(&dir->prod_gen);
}

void psy_ipc_dyn_remove_names(const char *name, const struct psy_ipc_dyn_names *n)
{
    /* newest + 1: a producer may have died making it */
    for (uint64_t gen = n->oldest; gen <= n->newest + 1 && gen - n->oldest < MAX_NAMES_REMOVED; gen++) {
        char path[PSY_NAME_MAX + 64];
        psy_ipc_segment_name(path, sizeof path, name, n->id, gen);
        shm_unlink(path);
    }
}
