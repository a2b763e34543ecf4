/* SPDX-License-Identifier: MIT */
/*
 * waitset.c - waiting for several channels (and the caller's descriptors)
 * in one call: an epoll instance over their readiness descriptors (ready.c),
 * each registration pointing at an entry that says what to report.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "handle.h"

struct ws_entry {
    psyne_channel *ch; /* NULL: a caller's descriptor */
    int fd;
    int events; /* PSYNE_READY_RECV or _SEND; 0 for a caller's descriptor */
    void *user;
    struct ws_entry *next;
};

struct psyne_waitset {
    int epfd;
    pthread_mutex_t lock; /* guards entries */
    struct ws_entry *entries;
};

int psyne_waitset_create(psyne_waitset **out)
{
    CHECK_NULL(out);
    psyne_waitset *ws = calloc(1, sizeof *ws);
    if (!ws)
        return psy_fail(-ENOMEM, "out of memory");
    ws->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ws->epfd < 0) {
        int rc = -errno;
        free(ws);
        return psy_fail(rc, "epoll_create1 failed");
    }
    pthread_mutex_init(&ws->lock, NULL);
    *out = ws;
    return 0;
}

static struct ws_entry *find(psyne_waitset *ws, psyne_channel *ch, int fd)
{
    for (struct ws_entry *e = ws->entries; e; e = e->next)
        if (ch ? e->ch == ch : (e->ch == NULL && e->fd == fd))
            return e;
    return NULL;
}

/* Adds one registration (under lock). */
static int add_entry(psyne_waitset *ws, psyne_channel *ch, int fd, int events, void *user)
{
    struct ws_entry *e = calloc(1, sizeof *e);
    if (!e)
        return psy_fail(-ENOMEM, "out of memory");
    *e = (struct ws_entry){ch, fd, events, user, ws->entries};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = e};
    if (epoll_ctl(ws->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int rc = -errno;
        free(e);
        return psy_fail(rc, "cannot add descriptor %d to the wait set", fd);
    }
    ws->entries = e;
    return 0;
}

/* Removes every registration of ch (or of the caller's fd), under lock. */
static int remove_entries(psyne_waitset *ws, psyne_channel *ch, int fd)
{
    int removed = 0;
    for (struct ws_entry **pe = &ws->entries; *pe;) {
        struct ws_entry *e = *pe;
        if (ch ? e->ch != ch : (e->ch != NULL || e->fd != fd)) {
            pe = &e->next;
            continue;
        }
        epoll_ctl(ws->epfd, EPOLL_CTL_DEL, e->fd, NULL);
        *pe = e->next;
        free(e);
        removed++;
    }
    return removed;
}

int psyne_waitset_add(psyne_waitset *ws, psyne_channel *ch, int events, void *user)
{
    CHECK_NULL(ws);
    CHECK_NULL(ch);
    if (events <= 0 || (events & ~(PSYNE_READY_RECV | PSYNE_READY_SEND)))
        return psy_fail(-EINVAL, "psyne_waitset_add: events %d is not PSYNE_READY_RECV and/or _SEND", events);
    pthread_mutex_lock(&ws->lock);
    if (find(ws, ch, -1)) {
        pthread_mutex_unlock(&ws->lock);
        return psy_fail(-EEXIST, "the channel is in the wait set already");
    }
    int rc = 0;
    for (int ev = PSYNE_READY_RECV; rc == 0 && ev <= PSYNE_READY_SEND; ev <<= 1) {
        if (!(events & ev))
            continue;
        int fd = psyne_channel_fd(ch, ev);
        rc = fd < 0 ? fd : add_entry(ws, ch, fd, ev, user);
    }
    if (rc) /* none of it: what this call added goes */
        remove_entries(ws, ch, -1);
    pthread_mutex_unlock(&ws->lock);
    return rc;
}

int psyne_waitset_add_fd(psyne_waitset *ws, int fd, void *user)
{
    CHECK_NULL(ws);
    if (fd < 0)
        return psy_fail(-EBADF, "psyne_waitset_add_fd: descriptor %d", fd);
    pthread_mutex_lock(&ws->lock);
    int rc = find(ws, NULL, fd) ? psy_fail(-EEXIST, "descriptor %d is in the wait set already", fd)
                                : add_entry(ws, NULL, fd, 0, user);
    pthread_mutex_unlock(&ws->lock);
    return rc;
}

int psyne_waitset_remove(psyne_waitset *ws, psyne_channel *ch)
{
    CHECK_NULL(ws);
    CHECK_NULL(ch);
    pthread_mutex_lock(&ws->lock);
    int n = remove_entries(ws, ch, -1);
    pthread_mutex_unlock(&ws->lock);
    return n ? 0 : psy_fail(-ENOENT, "the channel is not in the wait set");
}

int psyne_waitset_remove_fd(psyne_waitset *ws, int fd)
{
    CHECK_NULL(ws);
    pthread_mutex_lock(&ws->lock);
    int n = remove_entries(ws, NULL, fd);
    pthread_mutex_unlock(&ws->lock);
    return n ? 0 : psy_fail(-ENOENT, "descriptor %d is not in the wait set", fd);
}

/* epoll_wait's timeout in milliseconds, rounded up: never a busy loop. */
static int timeout_ms(int64_t timeout_ns)
{
    if (timeout_ns == PSYNE_FOREVER)
        return -1;
    int64_t ms = (timeout_ns + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

int psyne_waitset_wait(psyne_waitset *ws, struct psyne_ready *ready, unsigned max, int64_t timeout_ns)
{
    CHECK_NULL(ws);
    CHECK_NULL(ready);
    if (max == 0)
        return psy_fail(-EINVAL, "psyne_waitset_wait for 0 entries");
    if (timeout_ns < 0 && timeout_ns != PSYNE_FOREVER)
        return psy_fail(-EINVAL, "timeout_ns must be >= 0 or PSYNE_FOREVER");
    enum { BATCH = 64 };
    struct epoll_event evs[BATCH];
    int n = epoll_wait(ws->epfd, evs, max < BATCH ? (int)max : BATCH, timeout_ms(timeout_ns));
    if (n < 0)
        return errno == EINTR ? -EINTR : psy_fail(-errno, "epoll_wait failed");
    if (n == 0)
        return -ETIMEDOUT;
    /* Entries are freed only by remove and destroy, which the caller does
     * not run while it waits (the rule in psyne.h). */
    for (int i = 0; i < n; i++) {
        const struct ws_entry *e = evs[i].data.ptr;
        ready[i] = (struct psyne_ready){e->ch, e->fd, e->events, e->user};
    }
    return n;
}

void psyne_waitset_destroy(psyne_waitset *ws)
{
    if (!ws)
        return;
    while (ws->entries) {
        struct ws_entry *e = ws->entries;
        ws->entries = e->next;
        free(e);
    }
    close(ws->epfd);
    pthread_mutex_destroy(&ws->lock);
    free(ws);
}
