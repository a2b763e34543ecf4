/* SPDX-License-Identifier: MIT */
/*
 * ipc_inspect.c - psy_ipc_inspect: a channel's counters, handles and
 * descriptors read from its segment without taking part in it (the rules
 * are in ipc_inspect.h).
 *
 * The counters are summed as psyne_channel_stats sums them for a handle of
 * the channel (core/stats.c, ipc.c's ipc_stats, dynamic.c's psy_dyn_stats),
 * through a process-local ring view (psy_ring_view) over a read-only
 * mapping: the ring's own readers (psy_ring_in_use, psy_ring_produced)
 * only load, and the view's data pointer is a single mapping, which is
 * enough because they read record headers only, and a header never wraps.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc_dynamic.h"
#include "ipc_inspect.h"
#include "ipc_segment.h"
#include "transport.h"

#define ANCHOR_PREFIX "psyne."

/* A segment file mapped read-only, validated. */
struct ro_segment {
    int fd;
    void *base;
    size_t len;
    struct stat st;
    struct psy_ipc_layout l;
    const struct psy_ipc_header *hdr;
    struct psy_ring ring; /* the view: loads only */
};

static void unmap_segment(struct ro_segment *s)
{
    if (s->base)
        munmap(s->base, s->len);
    if (s->fd >= 0)
        close(s->fd);
    s->base = NULL;
    s->fd = -1;
}

/* Opens and maps /dev/shm<shm_name> read-only. Returns 0, -EAGAIN (not made
 * yet), -EPROTO (why filled in), or -errno. */
static int map_segment(const char *shm_name, struct ro_segment *s, char *why, size_t why_len)
{
    memset(s, 0, sizeof *s);
    s->fd = shm_open(shm_name, O_RDONLY | O_CLOEXEC, 0);
    if (s->fd < 0)
        return -errno;
    struct psy_ipc_header h;
    const char *reason = "";
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (fstat(s->fd, &s->st) != 0) {
        int err = -errno;
        unmap_segment(s);
        return err;
    }
    ssize_t got = pread(s->fd, &h, sizeof h, 0);
    int rc = psy_ipc_validate(&h, got > 0 ? (size_t)got : 0, (uint64_t)s->st.st_size, page, &s->l, &reason);
    if (rc == 0) {
        s->len = (size_t)s->l.file_size;
        s->base = mmap(NULL, s->len, PROT_READ, MAP_SHARED, s->fd, 0);
        if (s->base == MAP_FAILED) {
            s->base = NULL;
            rc = -errno;
        } else {
            s->hdr = s->base;
            struct psy_ring_shared *sh = (struct psy_ring_shared *)((uint8_t *)s->base + s->l.ring_offset);
            rc = psy_ipc_validate_ring(sh, &s->l, &reason);
            if (rc == 0) {
                struct psyne_options opt;
                psyne_options_init(&opt);
                psy_ring_view(&s->ring, sh, (uint8_t *)s->base + s->l.data_offset, s->l.capacity, s->l.mode, &opt);
            }
        }
    }
    if (rc == -EPROTO && why)
        snprintf(why, why_len, "%s", reason);
    if (rc) {
        if (rc != -EPROTO && rc != -EAGAIN)
            unmap_segment(s);
        /* invalid or unfinished: the fd stays for the caller's fstat */
    }
    return rc;
}

static uint64_t ld64(const psy_atomic64 *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static uint32_t ld32(const psy_atomic32 *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* The counters of one ring, as core/stats.c's ring_stats adds them. */
static void add_ring(const struct psy_ring *r, struct psyne_stats *st)
{
    const struct psy_ring_shared *sh = r->sh;
    uint64_t msgs, bytes;
    psy_ring_produced(r, &msgs, &bytes);
    st->msgs_out += msgs;
    st->bytes_out += bytes;
    st->in_use += psy_ring_in_use(r);
    uint64_t hw = ld64(&sh->slow.high_water);
    st->high_water = hw > st->high_water ? hw : st->high_water;
    st->full_events += ld64(&sh->prod.full_events);
    st->msgs_in += ld64(&sh->cons.msgs);
    st->bytes_in += ld64(&sh->cons.bytes);
    st->empty_events += ld64(&sh->cons.empty_events);
    for (int i = 0; i < PSYNE_MAX_SUBSCRIBERS; i++) {
        st->msgs_in += ld64(&sh->subs[i].msgs);
        st->bytes_in += ld64(&sh->subs[i].bytes);
        st->empty_events += ld64(&sh->subs[i].empty_events);
    }
    st->waits += ld64(&sh->slow.waits);
    st->wakeups += ld64(&sh->slow.wakeups);
}

/* The handle slots in use, and what MP producers among them counted. */
static void read_slots(const struct ro_segment *a, struct psy_inspect *in)
{
    for (int i = 0; i < PSYNE_IPC_MAX_HANDLES; i++) {
        const struct psy_ipc_slot *s = &a->hdr->slots[i];
        uint32_t state = atomic_load_explicit(&s->state, memory_order_acquire);
        if (state == PSY_SLOT_FREE || state > PSY_SLOT_REAPING)
            continue;
        struct psy_inspect_handle *h = &in->handles[in->n_handles++];
        uint32_t sub = ld32(&s->sub);
        *h = (struct psy_inspect_handle){
            .slot = i,
            .state = (int)state,
            .roles = ld32(&s->roles) & (PSY_SLOT_PRODUCER | PSY_SLOT_CONSUMER),
            .pid = (int)ld32(&s->pid),
            .alive = psy_ipc_slot_owner_alive(a->fd, i),
            .subscriber = sub >= 1 && sub <= PSYNE_MAX_SUBSCRIBERS ? (int)sub - 1 : -1,
        };
        if (state == PSY_SLOT_LIVE) { /* as ipc_stats: a reaped slot's counts were folded */
            h->msgs_out = psy_mp_counted(&s->msgs, 0);
            h->bytes_out = psy_mp_counted(&s->msgs, 1);
            in->stats.msgs_out += h->msgs_out;
            in->stats.bytes_out += h->bytes_out;
        }
        if (h->alive)
            in->live_handles++;
        else
            in->dead_handles++;
    }
}

/* What each consumer has not released yet. */
static void consumer_lag(const struct ro_segment *a, struct psy_inspect *in)
{
    const struct psy_ring_shared *sh = a->ring.sh;
    uint64_t tail = atomic_load_explicit(&sh->pub.tail, memory_order_acquire) & ~PSY_TAIL_CLAIMED;
    for (int i = 0; i < in->n_handles; i++) {
        struct psy_inspect_handle *h = &in->handles[i];
        if (!(h->roles & PSY_SLOT_CONSUMER))
            continue;
        uint64_t got = in->stats.msgs_in, head;
        if (in->dynamic) { /* one consumer, over every segment */
            head = tail - in->stats.in_use;
        } else if (h->subscriber >= 0) {
            got = ld64(&sh->subs[h->subscriber].msgs);
            head = ld64(&sh->subs[h->subscriber].head);
        } else {
            head = ld64(&sh->rel.head) & ~PSY_POS_FLAGS;
        }
        h->lag_msgs = in->stats.msgs_out > got ? in->stats.msgs_out - got : 0;
        h->lag_bytes = in->dynamic ? in->stats.in_use : tail - head <= a->ring.cap ? tail - head : 0;
    }
}

static void read_notify(const struct psy_ring_shared *sh, struct psy_inspect *in)
{
    for (int i = 0; i < PSY_NOTIFY_SLOTS; i++) {
        const struct psy_notify_slot *n = &sh->notify.slots[i];
        uint32_t state = atomic_load_explicit(&n->state, memory_order_acquire);
        if (state != PSY_WAIT_DATA + 1 && state != PSY_WAIT_SPACE + 1)
            continue;
        in->notify[in->n_notify++] = (struct psy_inspect_notify){
            .side = (int)state - 1,
            .armed = ld32(&n->armed) != 0,
            .pid = (int)ld32(&n->pid),
        };
    }
}

/* A dynamic ring: the directory's folded counters and every live segment's. */
static void read_dynamic(const struct ro_segment *a, struct psy_inspect *in)
{
    const struct psy_ipc_dyn_dir *dir = (const struct psy_ipc_dyn_dir *)a->ring.data;
    struct psyne_stats *st = &in->stats;
    const struct psy_dyn_stats *t = &dir->st;
    st->capacity = ld64(&dir->capacity);
    st->msgs_out += ld64(&t->msgs_out);
    st->bytes_out += ld64(&t->bytes_out);
    st->msgs_in = ld64(&t->msgs_in);
    st->bytes_in = ld64(&t->bytes_in);
    st->full_events = ld64(&t->full_events);
    st->empty_events = ld64(&t->empty_events);
    st->waits = ld64(&t->waits);
    st->wakeups = ld64(&t->wakeups);
    st->resizes_up = ld64(&t->resizes_up);
    st->resizes_down = ld64(&t->resizes_down);
    st->resize_ns = ld64(&t->resize_ns);
    st->failed_claims = ld64(&t->failed_claims);
    st->window_high_water = ld64(&t->window_high_water);
    st->in_use = st->high_water = 0;
    uint64_t id = dir->id, oldest = ld64(&dir->cons_gen), newest = ld64(&dir->prod_gen);
    if (newest - oldest >= PSY_INSPECT_MAX_SEGMENTS) /* the directory is not trusted */
        oldest = newest - (PSY_INSPECT_MAX_SEGMENTS - 1);
    for (uint64_t gen = oldest; gen - oldest <= newest - oldest; gen++) {
        char shm_name[PSY_NAME_MAX + 64];
        psy_ipc_segment_name(shm_name, sizeof shm_name, in->name, id, gen);
        struct ro_segment s;
        const char *why;
        if (map_segment(shm_name, &s, NULL, 0) != 0) {
            unmap_segment(&s);
            continue; /* finished and removed meanwhile, or not ours */
        }
        if (psy_ipc_check_segment(s.hdr, id, gen, &why) == 0 &&
            !atomic_load_explicit(&s.hdr->seg_retired, memory_order_acquire)) {
            in->file_size += (uint64_t)s.st.st_size;
            uint64_t in_use_before = st->in_use;
            add_ring(&s.ring, st);
            in->segments[in->n_segments++] = (struct psy_inspect_segment){
                .generation = gen, .capacity = s.ring.cap, .in_use = st->in_use - in_use_before};
            if (!in->closed)
                in->closed = psy_ring_closed(&s.ring);
        }
        unmap_segment(&s);
    }
    st->segments = in->n_segments;
    if (st->in_use > st->high_water)
        st->high_water = st->in_use;
}

int psy_ipc_inspect(const char *name, struct psy_inspect *out)
{
    memset(out, 0, sizeof *out);
    if (strlen(name) > PSY_NAME_MAX || strchr(name, '/'))
        return -EINVAL;
    snprintf(out->name, sizeof out->name, "%s", name);
    char shm_name[PSY_NAME_MAX + 8];
    snprintf(shm_name, sizeof shm_name, "/" ANCHOR_PREFIX "%s", name);
    struct ro_segment a;
    int rc = map_segment(shm_name, &a, out->why, sizeof out->why);
    if (rc != 0 && rc != -EAGAIN && rc != -EPROTO)
        return rc;
    out->uid = a.st.st_uid;
    out->perm = a.st.st_mode & 0777;
    out->file_size = (uint64_t)a.st.st_size;
    if (rc) {
        out->state = rc == -EAGAIN ? PSY_INSPECT_MAKING : PSY_INSPECT_INVALID;
        for (int i = 0; i < PSYNE_IPC_MAX_HANDLES; i++) /* who holds it, if anyone */
            out->live_handles += psy_ipc_slot_owner_alive(a.fd, i);
        unmap_segment(&a);
        return 0;
    }
    if (a.l.features & PSY_IPC_F_SEGMENT) { /* a segment file under a channel's name */
        out->state = PSY_INSPECT_INVALID;
        snprintf(out->why, sizeof out->why, "a dynamic ring's segment file, not a channel");
        unmap_segment(&a);
        return 0;
    }
    const struct psy_ring_shared *sh = a.ring.sh;
    struct psyne_stats *st = &out->stats;
    out->dynamic = (a.l.features & PSY_IPC_F_DYNAMIC) != 0;
    out->creator_pid = a.hdr->creator_pid;
    out->closed = psy_ring_closed(&a.ring);
    out->consumers_left = ld32(&sh->wait.consumers_left) != 0;
    int64_t until = (int64_t)ld64(&a.hdr->linger_until);
    if (until) {
        int64_t now = psy_now_ns();
        out->linger_left_ns = until == INT64_MAX ? INT64_MAX : until > now ? until - now : 0;
    }
    st->mode = a.l.mode;
    st->capacity = a.l.capacity;
    if (out->dynamic)
        read_dynamic(&a, out);
    else
        add_ring(&a.ring, st);
    if (!out->dynamic && st->in_use > st->high_water)
        st->high_water = st->in_use;
    read_slots(&a, out);
    consumer_lag(&a, out);
    read_notify(sh, out);
    st->subscribers = (int)ld32(&sh->bcast.count);
    st->producers = (int)ld32(&sh->wait.producers);
    st->consumers = (int)ld32(&sh->wait.consumers);
    st->peers_lost = ld64(&a.hdr->peers_lost);
    st->claims_recovered = ld64(&a.hdr->claims_recovered);
    st->views_recovered = ld64(&a.hdr->views_recovered);
    out->state = PSY_INSPECT_OK;
    unmap_segment(&a);
    return 0;
}

bool psy_inspect_dead(const struct psy_inspect *in)
{
    return in->live_handles == 0 && in->linger_left_ns == 0;
}

static int by_name(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

int psy_ipc_names(char ***names)
{
    *names = NULL;
    DIR *d = opendir("/dev/shm");
    if (!d)
        return -errno;
    size_t n = 0, cap = 16;
    char **v = malloc(cap * sizeof *v);
    struct dirent *e;
    uid_t me = geteuid();
    while (v && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ANCHOR_PREFIX, strlen(ANCHOR_PREFIX)) != 0 || !e->d_name[strlen(ANCHOR_PREFIX)])
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            (st.st_uid != me && me != 0))
            continue;
        if (n + 1 == cap) {
            char **grown = realloc(v, 2 * cap * sizeof *v);
            if (!grown)
                break;
            v = grown;
            cap *= 2;
        }
        if ((v[n] = strdup(e->d_name + strlen(ANCHOR_PREFIX))) != NULL)
            n++;
    }
    closedir(d);
    if (!v)
        return -ENOMEM;
    v[n] = NULL;
    qsort(v, n, sizeof *v, by_name);
    *names = v;
    return (int)n;
}

void psy_ipc_names_free(char **names)
{
    for (char **p = names; p && *p; p++)
        free(*p);
    free(names);
}
