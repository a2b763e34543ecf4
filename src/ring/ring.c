/* SPDX-License-Identifier: MIT */
/*
 * ring.c - creating, shutting down and measuring a ring; the produce and
 * consume paths live in produce.c and consume.c.
 */
#include "ring.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../base/error.h"
#include "../mem/mirror.h"
#include "../mem/slab.h"

uint64_t psy_round_up_pow2(uint64_t v)
{
    uint64_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

int psy_ring_capacity(const struct psyne_options *opt, uint64_t *cap)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t want = opt->capacity ? opt->capacity : PSYNE_DEFAULT_CAPACITY;
    if (want > PSYNE_MAX_CAPACITY)
        return psy_fail(-EINVAL, "capacity %llu is above PSYNE_MAX_CAPACITY (%llu)", (unsigned long long)want,
                        (unsigned long long)PSYNE_MAX_CAPACITY);
    *cap = psy_round_up_pow2(want < page ? page : want);
    return 0;
}

size_t psy_ring_control_size(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (sizeof(struct psy_ring_shared) + page - 1) / page * page;
}

void psy_ring_format(struct psy_ring_shared *sh, int mode, uint64_t cap, uint64_t data_offset)
{
    /* The memory is zero-filled: every counter and position starts at 0.
     * The mutex is robust: a process that dies holding it (ipc://) hands it
     * to the next locker instead of wedging everyone (psy_bcast_lock). */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&sh->bcast.lock, &ma);
    pthread_mutexattr_destroy(&ma);
    sh->ident.mode = (uint32_t)mode;
    sh->ident.capacity = cap;
    sh->ident.data_offset = data_offset;
    sh->ident.magic = PSY_RING_MAGIC;
    sh->ident.version = PSY_RING_VERSION;
}

void psy_ring_view(struct psy_ring *r, struct psy_ring_shared *sh, uint8_t *data, uint64_t cap, int mode,
                   const struct psyne_options *opt)
{
    memset(r, 0, sizeof *r);
    r->sh = sh;
    r->data = data;
    r->cap = cap;
    r->mask = (cap - 1) & ~(uint64_t)7; /* header accesses stay aligned even at a corrupted position */
    r->mode = mode;
    r->mp = mode == PSYNE_MODE_MPSC || mode == PSYNE_MODE_MPMC;
    r->mc = mode == PSYNE_MODE_SPMC || mode == PSYNE_MODE_MPMC;
    r->walk_counts = !r->mp && !r->mc; /* MC consumers rewrite headers: those count every commit */
    r->wait_kind = opt->wait;
    r->spin_ns = opt->spin_ns < 0 ? 50000 : opt->spin_ns;
    r->yield_ns = opt->yield_ns < 0 ? 200000 : opt->yield_ns;
    r->lane = (struct psy_lane){
        /* the lane's plain pointers: psyne/inline.h serves C++ too, which has no _Atomic */
        .tail = (uint64_t *)&sh->pub.tail,
        .cached_head = (uint64_t *)&sh->prod.cached_head,
        .data_waiters = (uint32_t *)&sh->wait.data_waiters,
        .closed = (uint32_t *)&sh->wait.closed,
        .data = data,
        .mask = r->mask,
        .cap = cap,
        .wake_fence = psy_wake_needs_fence,
    };
    pthread_mutex_init(&r->handles_lock, NULL);
}

int psy_ring_create(struct psy_ring *r, const struct psyne_options *opt)
{
    uint64_t cap = 0;
    int rc = psy_ring_capacity(opt, &cap);
    if (rc)
        return rc;
    struct psy_place_request req;
    if ((rc = psy_place_request_make(opt->flags, opt->numa_node, true, &req)) != 0)
        return rc;
    struct psy_mirror m = {0};
    void *slab_block = NULL;
    if (opt->slabs) /* its own error message */
        rc = psy_slabs_map_ring(opt->slabs, psy_ring_control_size(), cap,
                                opt->mode == PSYNE_MODE_MPSC || opt->mode == PSYNE_MODE_MPMC, &req, &m, &slab_block);
    else if ((rc = psy_mirror_create(&m, psy_ring_control_size(), cap, &req)) != 0)
        psy_fail(rc, "cannot map a mirrored ring of %llu bytes%s", (unsigned long long)cap,
                 rc == -ENOMEM || rc == -EPERM ? " (or lock it: RLIMIT_MEMLOCK)" : "");
    if (rc)
        return rc;
    psy_ring_format(m.base, opt->mode, cap, m.ctl_len);
    psy_ring_view(r, m.base, (uint8_t *)m.base + m.ctl_len, cap, opt->mode, opt);
    r->slabs = opt->slabs;
    r->slab_block = slab_block;
    r->map_base = m.base;
    r->map_len = m.map_len;
    r->place = m.got;
    return 0;
}

void psy_bcast_lock(struct psy_ring_shared *sh)
{
    if (pthread_mutex_lock(&sh->bcast.lock) == EOWNERDEAD) /* its holder died: the state is a few stores */
        pthread_mutex_consistent(&sh->bcast.lock);
}

/* Starts the positions at `start` (tests use values near 2^64 to prove that
 * wrap-around of the counters is harmless). Only before any use. */
void psy_ring_set_start(struct psy_ring *r, uint64_t start)
{
    struct psy_ring_shared *sh = r->sh;
    start &= ~(uint64_t)7;
    atomic_store(psy_hdr_at(r, start), 0); /* a ring from a slab was zeroed at position 0 only */
    atomic_store(&sh->pub.tail, start);
    atomic_store(&sh->prod.cached_head, start);
    atomic_store(&sh->prod.count_pos, start);
    atomic_store(&sh->cons.read_pos, start);
    atomic_store(&sh->rel.head, start);
    atomic_store(&sh->cons.released, start);
    atomic_store(&sh->bcast.floor, start);
}

int psy_ring_create_bell(struct psy_ring *bell, const struct psyne_options *opt)
{
    struct psyne_options o = *opt;
    o.capacity = 4096;
    o.flags &= ~(uint32_t)(PSYNE_F_HUGEPAGES | PSYNE_F_MLOCK | PSYNE_F_NUMA_BIND);
    o.numa_node = 0;
    o.dynamic = NULL;
    o.slabs = NULL; /* internal: the user's slabs are for the channel's rings */
    o.mode = PSYNE_MODE_SPSC;
    return psy_ring_create(bell, &o);
}

/* Unmaps this process's view. The shared state needs no destruction: the
 * robust process-shared mutex holds no resources outside the ring. */
void psy_ring_destroy(struct psy_ring *r)
{
    if (!r->sh)
        return;
    pthread_mutex_destroy(&r->handles_lock);
    psy_lease_fini(r);
    struct psy_mirror m = {.base = r->map_base, .map_len = r->map_len};
    if (r->slabs)
        psy_slabs_unmap_ring(r->slabs, &m, r->slab_block);
    else
        psy_mirror_destroy(&m);
    r->sh = NULL;
}

void psy_ring_shutdown(struct psy_ring *r)
{
    struct psy_wait_block *w = &r->sh->wait;
    if (atomic_exchange_explicit(&w->closed, 1, memory_order_seq_cst))
        return;
    /* Wake unconditionally: a sleeper either sees `closed` in its re-check or
     * finds the sequence changed and does not sleep. */
    psy_wake_slow(r, PSY_WAIT_DATA);
    psy_wake_slow(r, PSY_WAIT_SPACE);
}

uint64_t psy_bcast_slowest(const struct psy_ring *r, uint64_t floor, uint64_t tail)
{
    uint64_t min = floor;
    bool any = false;
    for (int i = 0; i < PSYNE_MAX_SUBSCRIBERS; i++) {
        const struct psy_sub *s = &r->sh->subs[i];
        if (!atomic_load_explicit(&s->active, memory_order_relaxed))
            continue;
        uint64_t h = atomic_load_explicit(&s->head, memory_order_acquire); /* A3 */
        if (!any || h - floor < min - floor)
            min = h;
        any = true;
    }
    return any && min - floor <= tail - floor ? min : floor;
}

uint64_t psy_ring_in_use(const struct psy_ring *r)
{
    uint64_t tail = atomic_load_explicit(&r->sh->pub.tail, memory_order_acquire) & ~PSY_TAIL_CLAIMED;
    uint64_t head;
    if (r->mode == PSYNE_MODE_BROADCAST)
        head = psy_bcast_slowest(r, atomic_load_explicit(&r->sh->bcast.floor, memory_order_acquire), tail);
    else
        head = atomic_load_explicit(&r->sh->rel.head, memory_order_acquire) & ~PSY_POS_FLAGS;
    uint64_t used = tail - head <= r->cap ? tail - head : 0, unused = psy_lease_unused(r); /* reserved, not used */
    return used >= unused ? used - unused : 0;
}

uint64_t psy_ring_unread(const struct psy_ring *r)
{
    uint64_t out, bytes, in = atomic_load_explicit(&r->sh->cons.msgs, memory_order_relaxed);
    psy_ring_produced(r, &out, &bytes);
    for (int i = 0; i < PSYNE_MAX_SUBSCRIBERS; i++) {
        uint64_t sub = atomic_load_explicit(&r->sh->subs[i].msgs, memory_order_relaxed);
        in = sub > in ? sub : in;
    }
    return out > in ? out - in : 0;
}
