/* SPDX-License-Identifier: MIT */
/*
 * publish.c - the process's counters segment (layout in publish.h): handles
 * opened with PSYNE_F_PUBLISH, or every handle when PSYNE_PUBLISH=1 is in the
 * environment, get an entry there, and a library thread copies each one's
 * psyne_channel_stats into it every PSYNE_PUBLISH_INTERVAL_MS (default 100).
 *
 * Why a thread that samples, rather than counters that live in the segment:
 * the counters a handle has are spread over its rings (and a tcp:// link's
 * threads), written where the hot paths need them; moving them would cost
 * those paths, and psyne_channel_stats already knows how to add them up.
 * The thread runs only while a published handle is open; its reads of the
 * counters' lines every interval are what publishing costs (psyne_bench
 * measures it: the guide).
 *
 * Locking: pub.lock guards everything here; the thread holds it while it
 * samples, so a handle's close (psy_publish_closing, before anything is torn
 * down) waits for a sample in progress and is never sampled after.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "handle.h"
#include "publish.h"

struct sampler {
    pthread_t tid;
    pthread_cond_t wake;
    bool stop;
};

static struct {
    pthread_mutex_t lock;
    pid_t pid; /* whose segment this is: a forked child starts over */
    int fd;    /* holds the shared flock while the process lives */
    char shm_name[48];
    struct psy_pub_header *hdr; /* NULL: no segment (yet, or it could not be made) */
    struct psy_pub_entry *entries;
    psyne_channel *handles[PSY_PUB_ENTRIES];
    unsigned count;
    uint64_t next_handle;
    struct sampler *sampler; /* the running thread, NULL if none */
    unsigned interval_ms;
    int every_handle; /* PSYNE_PUBLISH=1: -1 not read yet */
    bool hooks_set;   /* atexit and pthread_atfork */
} pub = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1, .every_handle = -1};

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void read_environment(void)
{
    const char *all = getenv("PSYNE_PUBLISH");
    pub.every_handle = all && all[0] && strcmp(all, "0") != 0;
    const char *ms = getenv("PSYNE_PUBLISH_INTERVAL_MS");
    long v = ms ? strtol(ms, NULL, 10) : 0;
    pub.interval_ms = v >= 1 && v <= 60000 ? (unsigned)v : PSY_PUB_DEFAULT_INTERVAL_MS;
}

/* ---- the entry of one handle ---- */

/* Seqlock write: odd while the entry changes (publish.h). */
static void entry_begin(struct psy_pub_entry *e)
{
    uint64_t s = atomic_load_explicit(&e->seq, memory_order_relaxed);
    atomic_store_explicit(&e->seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void entry_end(struct psy_pub_entry *e)
{
    uint64_t s = atomic_load_explicit(&e->seq, memory_order_relaxed);
    atomic_store_explicit(&e->seq, s + 1, memory_order_release);
}

static void sample(unsigned i)
{
    psyne_channel *ch = pub.handles[i];
    struct psy_pub_entry *e = &pub.entries[i];
    struct psyne_stats st;
    struct psy_peer_info peers[PSY_PUB_PEERS];
    unsigned n_peers = 0;
    if (psyne_channel_stats(ch, &st) != 0)
        return;
    if (ch->port.tp->peers)
        n_peers = ch->port.tp->peers(&ch->port, peers, PSY_PUB_PEERS);
    entry_begin(e);
    e->stats = st;
    e->sampled_ns = realtime_ns();
    e->n_peers = n_peers;
    memcpy(e->peers, peers, (n_peers < PSY_PUB_PEERS ? n_peers : PSY_PUB_PEERS) * sizeof peers[0]);
    entry_end(e);
}

/* ---- the thread ---- */

static void *sampler_main(void *arg)
{
    struct sampler *me = arg;
    pthread_mutex_lock(&pub.lock);
    while (!me->stop) {
        for (unsigned i = 0; i < PSY_PUB_ENTRIES; i++)
            if (pub.handles[i])
                sample(i);
        atomic_store_explicit(&pub.hdr->updated_ns, realtime_ns(), memory_order_relaxed);
        atomic_fetch_add_explicit(&pub.hdr->samples, 1, memory_order_relaxed);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + pub.interval_ms * 1000000ull;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        while (!me->stop && pthread_cond_timedwait(&me->wake, &pub.lock, &until) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&pub.lock);
    return NULL;
}

static int start_sampler(void)
{
    struct sampler *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    /* the thread must not take the user's signals (Ctrl-C goes to their threads) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->tid, NULL, sampler_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        pthread_cond_destroy(&s->wake);
        free(s);
        return -rc;
    }
    pub.sampler = s;
    return 0;
}

/* ---- the segment ---- */

static void remove_segment_at_exit(void)
{
    if (pub.hdr && pub.pid == getpid())
        shm_unlink(pub.shm_name);
}

/* fork: the child has none of the parent's handles, threads or segment. */
static void before_fork(void)
{
    pthread_mutex_lock(&pub.lock);
}

static void after_fork_parent(void)
{
    pthread_mutex_unlock(&pub.lock);
}

static void after_fork_child(void)
{
    if (pub.hdr)
        munmap(pub.hdr, PSY_PUB_SIZE);
    if (pub.fd >= 0)
        close(pub.fd);
    pub.hdr = NULL;
    pub.entries = NULL;
    pub.fd = -1;
    memset(pub.handles, 0, sizeof pub.handles);
    pub.count = 0;
    pub.sampler = NULL; /* the thread was the parent's */
    pthread_mutex_unlock(&pub.lock);
}

static void process_name(char *out, size_t n)
{
    FILE *f = fopen("/proc/self/comm", "re");
    out[0] = 0;
    if (f) {
        if (fgets(out, (int)n, f))
            out[strcspn(out, "\n")] = 0;
        fclose(f);
    }
}

static int make_segment(void)
{
    size_t size = PSY_PUB_SIZE;
    pub.pid = getpid();
    snprintf(pub.shm_name, sizeof pub.shm_name, "/" PSY_PUB_PREFIX "%d", (int)pub.pid);
    int fd = shm_open(pub.shm_name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return psy_fail(-errno, "%s: cannot make the counters segment", pub.shm_name);
    /* A file of this pid is a dead process's (pids are reused): ours now. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)size) != 0) {
        int err = -errno;
        close(fd);
        return psy_fail(err, "%s: cannot make the counters segment", pub.shm_name);
    }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int err = -errno;
        shm_unlink(pub.shm_name);
        close(fd);
        return psy_fail(err, "%s: cannot map the counters segment", pub.shm_name);
    }
    struct psy_pub_header *h = base;
    h->magic = PSY_PUB_MAGIC;
    h->entries = PSY_PUB_ENTRIES;
    h->entry_size = sizeof(struct psy_pub_entry);
    h->pid = (int32_t)pub.pid;
    h->interval_ms = pub.interval_ms;
    process_name(h->comm, sizeof h->comm);
    atomic_thread_fence(memory_order_release);
    h->version = PSY_PUB_VERSION; /* readers look at version last */
    flock(fd, LOCK_SH);           /* held while we live; readers who get LOCK_EX know we are gone */
    pub.fd = fd;
    pub.hdr = h;
    pub.entries = (struct psy_pub_entry *)(h + 1);
    if (!pub.hooks_set) {
        atexit(remove_segment_at_exit);
        pthread_atfork(before_fork, after_fork_parent, after_fork_child);
        pub.hooks_set = true;
    }
    return 0;
}

_Static_assert(sizeof(struct psy_pub_header) == PSY_CACHE_BLOCK, "entries start on their own block");

/* ---- what channel.c calls ---- */

void psy_publish_opened(psyne_channel *ch, const char *uri, const struct psyne_options *opt)
{
    pthread_mutex_lock(&pub.lock);
    if (pub.every_handle < 0)
        read_environment();
    bool wanted = (opt->flags & PSYNE_F_PUBLISH) || pub.every_handle;
    if (!wanted || (!pub.hdr && make_segment() != 0)) {
        pthread_mutex_unlock(&pub.lock);
        return; /* statistics only: the channel works without them (the detail is in psyne_last_error) */
    }
    for (unsigned i = 0; i < PSY_PUB_ENTRIES; i++) {
        if (pub.handles[i])
            continue;
        struct psy_pub_entry *e = &pub.entries[i];
        entry_begin(e);
        memset(&e->stats, 0, sizeof e->stats);
        e->in_use = 1;
        e->role = ch->port.role;
        e->handle = ++pub.next_handle;
        e->opened_ns = realtime_ns();
        e->sampled_ns = 0;
        e->n_peers = 0;
        snprintf(e->uri, sizeof e->uri, "%s", uri);
        entry_end(e);
        pub.handles[i] = ch;
        pub.count++;
        if (!pub.sampler)
            start_sampler();
        else
            pthread_cond_signal(&pub.sampler->wake); /* a first sample soon */
        break;
    }
    pthread_mutex_unlock(&pub.lock);
}

void psy_publish_closing(psyne_channel *ch)
{
    struct sampler *done = NULL;
    pthread_mutex_lock(&pub.lock);
    for (unsigned i = 0; pub.count && i < PSY_PUB_ENTRIES; i++) {
        if (pub.handles[i] != ch)
            continue;
        struct psy_pub_entry *e = &pub.entries[i];
        entry_begin(e);
        e->in_use = 0;
        entry_end(e);
        pub.handles[i] = NULL;
        if (--pub.count == 0 && pub.sampler) {
            done = pub.sampler;
            pub.sampler = NULL;
            done->stop = true;
            pthread_cond_signal(&done->wake);
        }
        break;
    }
    pthread_mutex_unlock(&pub.lock);
    if (done) {
        pthread_join(done->tid, NULL);
        pthread_cond_destroy(&done->wake);
        free(done);
    }
}
