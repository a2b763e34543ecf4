/* SPDX-License-Identifier: MIT */
/*
 * ipc.c - the ipc:// transport: a ring in a POSIX shared-memory segment
 * (/dev/shm/psyne.<name>) that processes of one machine map, mirrored.
 *
 * Who may remove a segment's name: every attachment (one per open handle)
 * holds a shared flock() on the segment file for as long as it is open.
 * Removing the name (last close, reclaiming a stale or half-made segment)
 * needs the exclusive flock, so a name is never removed under a live user.
 * The one who removes checks first, under that lock, that the name still
 * leads to its file; an opener checks the same after taking its shared
 * lock, and starts over if the file it locked lost its name meanwhile.
 *
 * Who is alive: a slot per attachment in the segment header, owned through
 * an OFD byte-range lock (ipc_segment.h). A waiting call looks at the slots
 * every peer_timeout_ns (wait.c) and reaps the dead: their roles are
 * uncounted (the last producer or consumer gone shuts the channel down, as
 * a close would), a BROADCAST subscription is dropped, and an MP claim in
 * progress becomes a pad record (recover.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../base/error.h"
#include "../base/uri.h"
#include "../mem/mirror.h"
#include "../ring/dynamic.h"
#include "ipc_dynamic.h"
#include "dynamic_source.h"
#include "ipc_segment.h"
#include "transport.h"

#define DEFAULT_OPEN_TIMEOUT_NS 5000000000ll
#define DEFAULT_PEER_TIMEOUT_NS 1000000000ll
#define DEFAULT_LINGER_NS 60000000000ll
#define RETRY_PAUSE_NS 1000000l

struct ipc_attachment {
    struct psy_ring ring; /* first: the ring pointer gives the attachment back */
    int fd;               /* holds the shared flock and the slot's byte lock */
    int slot;
    struct psy_ipc_header *hdr;
    char shm_name[PSY_NAME_MAX + 8]; /* "/psyne.<name>" */
    bool may_produce;                /* the handle's role: its last close may leave the segment lingering */
    int64_t linger_ns;               /* psyne_options.linger_ns */
};

static struct ipc_attachment *attachment_of(struct psy_ring *r)
{
    return (struct ipc_attachment *)r;
}

/* The channel's name, as in ipc://<name>. */
static const char *channel_name(const struct ipc_attachment *a)
{
    return a->shm_name + strlen("/psyne.");
}

static bool is_dynamic(struct psy_ring *r)
{
    return (attachment_of(r)->hdr->features & PSY_IPC_F_DYNAMIC) != 0;
}

static void pause_briefly(void)
{
    struct timespec ts = {0, RETRY_PAUSE_NS};
    nanosleep(&ts, NULL);
}

/* ---- names and locks ---- */

/* Removes the name of the file open as fd if we are its only user: drops our
 * shared lock, and removes only with the exclusive lock and the name still
 * ours. Returns whether it removed. Leaves fd without any flock. */
static bool remove_if_alone(int fd, const char *shm_name)
{
    flock(fd, LOCK_UN);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0)
        return false;
    bool removed = psy_ipc_still_named(fd, shm_name) && shm_unlink(shm_name) == 0;
    flock(fd, LOCK_UN);
    return removed;
}

/* Unmaps a's ring; if a was the last one attached, removes the segment's
 * name (and a dynamic ring's segment files), or, with linger_until, keeps
 * it and stamps the deadline in its header. Returns whether a was the last. */
static bool unmap_and_remove_if_alone(struct ipc_attachment *a, int64_t linger_until)
{
    bool dynamic = is_dynamic(&a->ring);
    struct psy_ipc_dyn_names names;
    if (dynamic)
        psy_ipc_dyn_names(&a->ring, &names);
    if (linger_until) { /* the stamp needs the mapping and the exclusive lock */
        flock(a->fd, LOCK_UN);
        bool alone = flock(a->fd, LOCK_EX | LOCK_NB) == 0 && psy_ipc_still_named(a->fd, a->shm_name);
        if (alone)
            atomic_store(&a->hdr->linger_until, linger_until);
        flock(a->fd, LOCK_UN);
        psy_ring_destroy(&a->ring);
        return alone;
    }
    psy_ring_destroy(&a->ring);
    bool removed = remove_if_alone(a->fd, a->shm_name);
    if (removed && dynamic)
        psy_ipc_dyn_remove_names(channel_name(a), &names);
    return removed;
}

/* The owner of slot i holds byte i of the file (OFD lock: per open file,
 * released by the kernel when the process dies). */
static int lock_slot_byte(int fd, int i)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = i, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
}

/* ---- slots ---- */

static int take_slot(struct ipc_attachment *a)
{
    for (int i = 0; i < PSYNE_IPC_MAX_HANDLES; i++) {
        struct psy_ipc_slot *s = &a->hdr->slots[i];
        if (atomic_load_explicit(&s->state, memory_order_relaxed) != PSY_SLOT_FREE)
            continue;
        /* lock first: from the moment the slot is ours, it is seen alive */
        if (lock_slot_byte(a->fd, i) != 0)
            continue;
        uint32_t expected = PSY_SLOT_FREE;
        if (!atomic_compare_exchange_strong(&s->state, &expected, PSY_SLOT_TAKEN)) {
            struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = i, .l_len = 1};
            fcntl(a->fd, F_OFD_SETLK, &fl);
            continue;
        }
        atomic_store(&s->roles, 0);
        atomic_store(&s->pid, (uint32_t)getpid());
        atomic_store(&s->sub, 0);
        atomic_store(&s->intent.pos, PSY_INTENT_NONE);
        atomic_store(&s->msgs, 0);
        atomic_store(&s->bytes, 0);
        atomic_store(&s->own_msgs, 0);
        atomic_store(&s->own_bytes, 0);
        atomic_store_explicit(&s->state, PSY_SLOT_LIVE, memory_order_release);
        a->slot = i;
        return 0;
    }
    return -EBUSY;
}

/* Whether a producer other than `dead` (alive, or dead but with a confirmed
 * reservation) claims position pos: then the bytes there are not dead's. */
static bool someone_else_claims(struct ipc_attachment *a, int dead, uint64_t pos, bool dead_confirmed)
{
    for (int i = 0; i < PSYNE_IPC_MAX_HANDLES; i++) {
        struct psy_ipc_slot *s = &a->hdr->slots[i];
        if (i == dead || atomic_load_explicit(&s->state, memory_order_acquire) == PSY_SLOT_FREE)
            continue;
        uint64_t p = atomic_load_explicit(&s->intent.pos, memory_order_acquire);
        if (p == PSY_INTENT_NONE || (p & ~PSY_POS_FLAGS) != pos)
            continue;
        bool alive = i == a->slot || psy_ipc_slot_owner_alive(a->fd, i);
        if (alive || (!dead_confirmed && !(p & PSY_INTENT_TENTATIVE)))
            return true;
    }
    return false;
}

/* A handle's MP counts stay in the ring's totals when its slot goes. */
static void fold_counters(struct psy_ring *r, struct psy_ipc_slot *s)
{
    atomic_fetch_add_explicit(&r->sh->prod.msgs, psy_mp_counted(&s->msgs, 0), memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sh->prod.bytes, psy_mp_counted(&s->msgs, 1), memory_order_relaxed);
}

/* Cleans up after the dead owner of slot i (we hold it in REAPING). */
static void reap(struct ipc_attachment *a, int i)
{
    struct psy_ring *r = &a->ring;
    struct psy_ipc_slot *s = &a->hdr->slots[i];
    struct psy_ring_shared *sh = r->sh;

    uint64_t p = atomic_load_explicit(&s->intent.pos, memory_order_acquire);
    if (r->mp && p != PSY_INTENT_NONE) {
        uint64_t pos = p & ~PSY_POS_FLAGS;
        uint64_t end = atomic_load_explicit(&s->intent.end, memory_order_relaxed);
        bool confirmed = !(p & PSY_INTENT_TENTATIVE);
        /* Re-read the header only after the intents (recover.c does): a live
         * producer commits its header before it clears its intent. */
        if (!someone_else_claims(a, i, pos, confirmed) && psy_ring_recover_claim(r, pos, end))
            atomic_fetch_add(&a->hdr->claims_recovered, 1);
    }
    if (r->mc) { /* the views it held: released on its behalf */
        unsigned n = psy_ring_recover_consumer(r, PSY_TYPE_TAKEN + (uint32_t)i);
        if (n)
            atomic_fetch_add(&a->hdr->views_recovered, n);
    }
    uint32_t sub = atomic_load(&s->sub);
    if (sub && sub <= PSYNE_MAX_SUBSCRIBERS)
        psy_ring_unsubscribe(r, (int)sub - 1);
    fold_counters(r, s);
    uint32_t roles = atomic_exchange(&s->roles, 0);
    bool last = false;
    if (roles & PSY_SLOT_PRODUCER)
        last |= atomic_fetch_sub(&sh->wait.producers, 1) == 1;
    if ((roles & PSY_SLOT_CONSUMER) && atomic_fetch_sub(&sh->wait.consumers, 1) == 1) {
        atomic_store(&sh->wait.consumers_left, 1);
        last = true;
    }
    if (last) /* as if it had closed: the other side learns nobody is left */
        psy_ring_shutdown(r);
    atomic_fetch_add(&a->hdr->peers_lost, 1);
    atomic_store_explicit(&s->state, PSY_SLOT_FREE, memory_order_release);
}

/* r->check_peers: reaps every slot whose owner died. */
static void check_peers(struct psy_ring *r)
{
    struct ipc_attachment *a = attachment_of(r);
    for (int i = 0; i < PSYNE_IPC_MAX_HANDLES; i++) {
        struct psy_ipc_slot *s = &a->hdr->slots[i];
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (i == a->slot || (st != PSY_SLOT_LIVE && st != PSY_SLOT_TAKEN) || psy_ipc_slot_owner_alive(a->fd, i))
            continue;
        if (atomic_compare_exchange_strong(&s->state, &st, PSY_SLOT_REAPING))
            reap(a, i);
    }
}

/* Any slot whose owner is alive (ours excluded)? */
static bool any_live_slot(struct ipc_attachment *a, int except)
{
    for (int i = 0; i < PSYNE_IPC_MAX_HANDLES; i++) {
        uint32_t st = atomic_load_explicit(&a->hdr->slots[i].state, memory_order_acquire);
        if (i != except && st != PSY_SLOT_FREE && psy_ipc_slot_owner_alive(a->fd, i))
            return true;
    }
    return false;
}

/* ---- opening ---- */

static void view_ring(struct ipc_attachment *a, struct psy_mirror *m, const struct psy_ipc_layout *l,
                      const struct psyne_options *opt)
{
    a->hdr = m->base;
    psy_ipc_view(&a->ring, m, l, opt, opt->peer_timeout_ns > 0 ? opt->peer_timeout_ns : DEFAULT_PEER_TIMEOUT_NS,
                 check_peers);
}

/* Attaches to the segment now mapped: a slot, and the claim intent in it. */
static int attach_slot(struct ipc_attachment *a)
{
    int rc = take_slot(a);
    if (rc == -EBUSY) { /* slots of dead handles may be waiting to be reaped */
        check_peers(&a->ring);
        rc = take_slot(a);
    }
    if (rc)
        return rc;
    if (a->ring.mp)
        a->ring.intent = &a->hdr->slots[a->slot].intent;
    if (a->ring.mc)
        a->ring.taken_tag = PSY_TYPE_TAKEN + (uint32_t)a->slot;
    return 0;
}

static void release_slot(struct ipc_attachment *a)
{
    struct psy_ipc_slot *s = &a->hdr->slots[a->slot];
    atomic_store_explicit(&s->state, PSY_SLOT_FREE, memory_order_release);
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = a->slot, .l_len = 1};
    fcntl(a->fd, F_OFD_SETLK, &fl);
}

/* Creates the segment. -EAGAIN: lost a race, start over. */
static int create_segment(struct ipc_attachment *a, const struct psyne_options *opt, const char *uri)
{
    uint64_t cap = 0;
    int rc = psy_ring_capacity(opt, &cap);
    if (rc)
        return rc;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (opt->dynamic) /* an anchor: the records live in segment files (ipc_dynamic.c) */
        cap = page;
    mode_t perm = opt->ipc_perm ? (mode_t)(opt->ipc_perm & 0777) : 0600;
    int fd = shm_open(a->shm_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, perm);
    if (fd < 0)
        return errno == EEXIST ? -EAGAIN : psy_fail(-errno, "%s: cannot create the segment", uri);
    a->fd = fd;
    /* Exclusive while we build it: openers wait, and nobody can remove it
     * unless it is still empty (then our name check below sees that). */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || !psy_ipc_still_named(fd, a->shm_name)) {
        close(fd);
        return -EAGAIN;
    }
    struct psy_ipc_layout l;
    psy_ipc_layout_for(cap, opt->mode, page, &l);
    struct psy_mirror m = {0};
    struct psy_place_request req;
    psy_place_request_make(opt->flags, opt->numa_node, false, &req); /* cannot fail: open checked the node */
    if (fchmod(fd, perm) != 0)                                       /* shm_open applied the umask */
        rc = psy_fail(-errno, "%s: cannot set mode %o", uri, (unsigned)perm);
    else if ((rc = -posix_fallocate(fd, 0, (off_t)l.file_size)) != 0) /* tmpfs space now, not SIGBUS later */
        rc = psy_fail(rc, "%s: cannot allocate %llu bytes of shared memory", uri, (unsigned long long)l.file_size);
    else if ((rc = psy_mirror_map(&m, fd, l.data_offset, cap, &req)) != 0)
        rc = psy_fail(rc, "%s: cannot map the segment (or place it as asked)", uri);
    if (rc) {
        shm_unlink(a->shm_name); /* ours: exclusive lock, name checked */
        close(fd);
        return rc;
    }
    struct psy_ipc_header *h = m.base;
    psy_ipc_format(m.base, &l, opt->dynamic ? PSY_IPC_F_DYNAMIC : 0, page);
    view_ring(a, &m, &l, opt);
    if (opt->dynamic && (rc = psy_ipc_dyn_format(&a->ring, channel_name(a), opt, perm)) != 0) {
        shm_unlink(a->shm_name);
        psy_ring_destroy(&a->ring);
        close(fd);
        return rc;
    }
    if ((rc = attach_slot(a)) != 0) {
        if (opt->dynamic) {
            struct psy_ipc_dyn_names names;
            psy_ipc_dyn_names(&a->ring, &names);
            psy_ipc_dyn_remove_names(channel_name(a), &names);
        }
        shm_unlink(a->shm_name);
        psy_ring_destroy(&a->ring);
        close(fd);
        return psy_fail(rc, "%s: no handle slot in a new segment", uri);
    }
    atomic_store_explicit(&h->version, PSY_IPC_VERSION, memory_order_release); /* ready */
    /* Exclusive to shared. Linux converts a flock by dropping the old lock
     * first, so somebody may have taken it in between and removed our fresh
     * segment (only if it saw no live slot, but be sure): check the name. */
    if (flock(fd, LOCK_SH) != 0 || !psy_ipc_still_named(fd, a->shm_name)) {
        release_slot(a);
        psy_ring_destroy(&a->ring);
        close(fd);
        return -EAGAIN;
    }
    return 0;
}

/* Opens an existing segment. -EAGAIN: not ready, being removed, or lost a
 * race: try again (after a pause if *pause). -ENOENT: there is none. */
static int open_segment(struct ipc_attachment *a, const struct psyne_options *opt, bool join_any, const char *uri,
                        bool *pause, const char **waiting_for)
{
    int fd = shm_open(a->shm_name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == ENOENT)
            return -ENOENT;
        if (errno == EACCES)
            return psy_fail(-EACCES, "%s: permission denied (the segment belongs to another user or mode)", uri);
        return psy_fail(-errno, "%s: cannot open the segment", uri);
    }
    a->fd = fd;
    *pause = true;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) { /* being created or removed */
        *waiting_for = "its creator to finish";
        close(fd);
        return -EAGAIN;
    }
    if (!psy_ipc_still_named(fd, a->shm_name)) {
        close(fd);
        *pause = false;
        return -EAGAIN;
    }
    struct stat st;
    struct psy_ipc_header copy;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    struct psy_ipc_layout l;
    const char *why = "";
    int rc;
    if (fstat(fd, &st) != 0) {
        rc = psy_fail(-errno, "%s: cannot stat the segment", uri);
        close(fd);
        return rc;
    }
    if (st.st_uid != geteuid() && !(opt->flags & PSYNE_F_IPC_OTHER_OWNER)) {
        close(fd);
        return psy_fail(-EACCES,
                        "%s: the segment belongs to user %u, not to this process's user %u (set "
                        "PSYNE_F_IPC_OTHER_OWNER to join it); left untouched",
                        uri, (unsigned)st.st_uid, (unsigned)geteuid());
    }
    ssize_t got = pread(fd, &copy, sizeof copy, 0);
    rc = psy_ipc_validate(&copy, got > 0 ? (size_t)got : 0, (uint64_t)st.st_size, page, &l, &why);
    if (rc == -EAGAIN) {
        /* Not ready, and nobody is building it (we could take the exclusive
         * lock): its creator died. Remove it and start over. */
        *waiting_for = "its creator to finish";
        *pause = !remove_if_alone(fd, a->shm_name);
        close(fd);
        return -EAGAIN;
    }
    if (rc) {
        close(fd);
        return psy_fail(rc, "%s: %s; left untouched", uri, why);
    }
    bool dynamic = (l.features & PSY_IPC_F_DYNAMIC) != 0;
    if (l.features & PSY_IPC_F_SEGMENT) {
        close(fd);
        return psy_fail(-EINVAL, "%s is a segment file of a dynamic ring, not a channel", uri);
    }
    if (!join_any && dynamic != (opt->dynamic != NULL)) {
        close(fd);
        return psy_fail(-EINVAL, "%s exists as a %s ring; asked for a %s one", uri, dynamic ? "dynamic" : "static",
                        opt->dynamic ? "dynamic" : "static");
    }
    if (!join_any && !dynamic && (l.mode != opt->mode || (opt->capacity && opt->capacity > l.capacity))) {
        close(fd);
        return psy_fail(-EINVAL, "%s exists with mode %d and capacity %llu; asked for mode %d, capacity %llu", uri,
                        l.mode, (unsigned long long)l.capacity, opt->mode, (unsigned long long)opt->capacity);
    }
    struct psy_mirror m = {0};
    struct psy_place_request req;
    if ((rc = psy_place_request_make(opt->flags, opt->numa_node, false, &req)) != 0 ||
        (rc = psy_mirror_map(&m, fd, l.data_offset, l.capacity, &req)) != 0) {
        close(fd);
        return psy_fail(rc, "%s: cannot map the segment (or place it as asked)", uri);
    }
    if ((rc = psy_ipc_validate_ring((struct psy_ring_shared *)((uint8_t *)m.base + l.ring_offset), &l, &why))) {
        psy_mirror_destroy(&m);
        close(fd);
        return psy_fail(rc, "%s: %s; left untouched", uri, why);
    }
    view_ring(a, &m, &l, opt);
    bool stale = !any_live_slot(a, -1);
    int64_t linger_until = (int64_t)atomic_load(&a->hdr->linger_until);
    bool lingering = stale && linger_until && psy_now_ns() < linger_until;
    if (!lingering && (stale || psy_ring_closed(&a->ring))) {
        /* Left by processes that all died (or kept by a close for longer
         * than its linger): reclaim it. Shut down with handles still open:
         * wait for them to close it. */
        *waiting_for = "the handles of the shut-down channel to close";
        *pause = !(unmap_and_remove_if_alone(a, 0) && stale);
        close(fd);
        return -EAGAIN;
    }
    if ((rc = attach_slot(a)) != 0) {
        psy_ring_destroy(&a->ring);
        close(fd);
        return psy_fail(rc, "%s: all %d handle slots are in use", uri, PSYNE_IPC_MAX_HANDLES);
    }
    if (lingering) {
        /* Kept by a producer's last close. The first opener takes it over:
         * a consumer drains it (then -EPIPE: that stream ended), a producer
         * opens the channel again and writes after what is there. Any other
         * opener meanwhile is a handle of whatever the first one made. */
        uint64_t expected = (uint64_t)linger_until;
        if (atomic_compare_exchange_strong(&a->hdr->linger_until, &expected, 0)) {
            if (a->may_produce) /* nobody is attached who saw the shutdown */
                atomic_store(&a->ring.sh->wait.closed, 0);
        } else if (a->may_produce && psy_ring_closed(&a->ring)) {
            release_slot(a); /* a consumer took it over: wait until it is done */
            psy_ring_destroy(&a->ring);
            close(fd);
            *waiting_for = "the consumer of the kept messages to finish";
            return -EAGAIN;
        }
    }
    return 0;
}

/* The first ipc:// open of a process removes what dead programs left. */
static pthread_once_t cleanup_once = PTHREAD_ONCE_INIT;

static void cleanup_dead_segments(void)
{
    psyne_ipc_cleanup(0);
}

static int attach(const char *name, const struct psyne_options *opt, bool join_any, bool may_produce,
                  struct psy_ring **out)
{
    char uri[PSY_NAME_MAX + 16];
    snprintf(uri, sizeof uri, "ipc://%s", name);
    if (strchr(name, '/'))
        return psy_fail(-EINVAL, "%s: an ipc name may not contain '/'", uri);
    if (strlen(name) > PSY_NAME_MAX - 6)
        return psy_fail(-EINVAL, "%s: an ipc name has at most %d characters", uri, PSY_NAME_MAX - 6);
    if (opt->ipc_perm & ~0777u)
        return psy_fail(-EINVAL, "%s: ipc_perm 0%o has bits beyond 0777", uri, opt->ipc_perm);
    struct ipc_attachment *a = calloc(1, sizeof *a);
    if (!a)
        return psy_fail(-ENOMEM, "out of memory");
    snprintf(a->shm_name, sizeof a->shm_name, "/psyne.%s", name);
    a->may_produce = may_produce;
    a->linger_ns = opt->linger_ns;

    pthread_once(&cleanup_once, cleanup_dead_segments);
    int64_t timeout = opt->open_timeout_ns ? opt->open_timeout_ns : DEFAULT_OPEN_TIMEOUT_NS;
    int64_t deadline = timeout > 0 ? psy_now_ns() + timeout : 0;
    const char *waiting_for = "the segment";
    int rc;
    for (;;) {
        bool pause = false;
        rc = open_segment(a, opt, join_any, uri, &pause, &waiting_for);
        if (rc == -ENOENT)
            rc = create_segment(a, opt, uri);
        if (rc != -EAGAIN)
            break;
        if (deadline && psy_now_ns() >= deadline) {
            rc = psy_fail(-ETIMEDOUT, "%s: gave up waiting for %s", uri, waiting_for);
            break;
        }
        if (pause)
            pause_briefly();
    }
    if (rc) {
        free(a);
        return rc;
    }
    *out = &a->ring;
    return 0;
}

/* This handle's slot. */
static struct psy_ipc_slot *own_slot(struct psy_ring *r)
{
    struct ipc_attachment *a = attachment_of(r);
    return &a->hdr->slots[a->slot];
}

static void set_roles(struct psy_ring *r, unsigned roles, int sub)
{
    struct psy_ipc_slot *s = own_slot(r);
    atomic_store(&s->sub, sub >= 0 ? (uint32_t)sub + 1 : 0);
    atomic_store(&s->roles, roles);
}

/* Before the channel uncounts the roles at close: roles first, so that a
 * survivor that still sees them sees the subscriber slot too. */
static void clear_roles(struct psy_ring *r)
{
    struct psy_ipc_slot *s = own_slot(r);
    atomic_store(&s->roles, 0);
    atomic_store(&s->sub, 0);
}

static psy_atomic64 *counters_of(struct psy_ring *r)
{
    return &own_slot(r)->msgs;
}

/* Adds the open handles' MP counters, every process's, and the segment's
 * crash counters. */
static void ipc_stats(struct psy_port *p, struct psyne_stats *st)
{
    struct psy_ipc_header *h = attachment_of(p->home)->hdr;
    for (int i = 0; i < PSYNE_IPC_MAX_HANDLES; i++) {
        if (atomic_load_explicit(&h->slots[i].state, memory_order_acquire) != PSY_SLOT_LIVE)
            continue;
        st->msgs_out += psy_mp_counted(&h->slots[i].msgs, 0);
        st->bytes_out += psy_mp_counted(&h->slots[i].msgs, 1);
    }
    st->peers_lost = atomic_load_explicit(&h->peers_lost, memory_order_relaxed);
    st->claims_recovered = atomic_load_explicit(&h->claims_recovered, memory_order_relaxed);
    st->views_recovered = atomic_load_explicit(&h->views_recovered, memory_order_relaxed);
}

/* Returns the messages nobody read if a was the last one attached. */
static int detach(struct psy_ring *r)
{
    struct ipc_attachment *a = attachment_of(r);
    struct psy_ipc_slot *s = &a->hdr->slots[a->slot];
    fold_counters(r, s);
    psy_ring_recover_consumer(r, r->taken_tag); /* MC views still held: given back, not kept forever */
    uint64_t unread = is_dynamic(r) ? 0 : psy_ring_unread(r);
    release_slot(a);
    /* The last one out removes the segment, unless a producer leaves
     * messages nobody read (and no consumer ended the stream first: then
     * they are for nobody): kept for linger_ns. */
    int64_t linger_until = 0;
    bool consumers_left = atomic_load(&r->sh->wait.consumers_left) != 0;
    if (unread && a->may_produce && !consumers_left && a->linger_ns != PSYNE_NO_LINGER)
        linger_until = a->linger_ns == PSYNE_FOREVER ? INT64_MAX
                                                     : psy_now_ns() + (a->linger_ns ? a->linger_ns : DEFAULT_LINGER_NS);
    bool last = unmap_and_remove_if_alone(a, linger_until);
    close(a->fd);
    free(a);
    return last ? psy_close_count(unread) : 0;
}

/* ---- the transport ---- */

static int ipc_check_options(const struct psyne_options *opt)
{
    int rc = psy_transport_refuse_tcp_options(opt, "ipc");
    if (rc == 0 && opt->dynamic) /* before anything is made under the name */
        rc = psy_dyn_check_options(opt);
    if (rc == 0 && opt->slabs) /* a slab is this process's memory */
        rc = psy_fail(-EINVAL, "ipc:// rings live in shared-memory segments of their own, not in slabs");
    return rc;
}

static void ipc_set_roles(struct psy_port *p, unsigned roles, int sub)
{
    if (roles)
        set_roles(p->home, roles, sub);
    else
        clear_roles(p->home);
}

static int ipc_close(struct psy_port *p)
{
    return detach(p->home);
}

static int ipc_dynamic_close(struct psy_port *p)
{
    psy_ipc_dyn_close(p->priv); /* the handle's own view of the segments */
    return detach(p->home);
}

static const struct psy_transport ipc_dynamic_transport;

/* Each handle its own mapping and slot; a dynamic ring, its own view of
 * the segments its role needs. */
static int ipc_open(struct psy_port *p, const char *name, const struct psyne_options *opt, bool join_any)
{
    struct psy_ring *r;
    int rc = attach(name, opt, join_any, p->role != PSYNE_ROLE_CONSUMER, &r);
    if (rc)
        return rc;
    p->ring = p->tx = p->home = r; /* a dynamic ring's until the first call */
    p->counters = counters_of(r);
    if (is_dynamic(r)) {
        struct psy_dyn *dyn;
        if ((rc = psy_ipc_dyn_open(r, name, opt, p->role, &dyn)) != 0) {
            detach(r);
            return rc;
        }
        p->tp = &ipc_dynamic_transport;
        p->priv = dyn;
        p->flags |= PSY_PORT_MOVES;
    }
    return 0;
}

const struct psy_transport psy_ipc_transport = {
    .scheme = "ipc",
    .check_options = ipc_check_options,
    .open = ipc_open,
    .shutdown = psy_transport_shutdown_home,
    .close = ipc_close,
    .set_roles = ipc_set_roles,
    .stats = ipc_stats,
};

static const struct psy_transport ipc_dynamic_transport = {
    .scheme = "ipc",
    .check_options = ipc_check_options,
    .open = ipc_open,
    .close = ipc_dynamic_close,
    .set_roles = ipc_set_roles,
    PSY_DYNAMIC_SOURCE_OPS,
};
