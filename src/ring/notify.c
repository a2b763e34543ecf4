/* SPDX-License-Identifier: MIT */
/*
 * notify.c - readiness descriptors: a waiter that sleeps in the user's
 * event loop (epoll, libuv, asio, asyncio) instead of on the ring's futex.
 *
 * A descriptor is an AF_UNIX datagram socket bound to 16 random bytes in
 * the abstract namespace: no file to leave behind, and any process of the
 * machine (of its network namespace) can make it readable by sending it a
 * byte, which is what an ipc:// ring needs: the producer that makes a
 * consumer ready may live in another process.
 *
 * It takes part in waiting exactly as a futex sleeper does (wait.c): arming
 * adds PSY_ARMED_FD to the side's waiters word and sets the side's armed
 * word, then runs the sleeper's barrier; the caller looks at the ring once
 * more. A publisher tests the same word it tests today, so with nobody
 * armed the hot path is unchanged; one that takes the arming wakes futex
 * sleepers and sends to every armed descriptor of the side (each disarmed
 * by an exchange, so each gets one byte per arming, not one per message).
 *
 * The table slot of a descriptor (ring.h, struct psy_notify_slot) is taken
 * by its owner and given back at close; a slot whose owner died (its name
 * no longer answers) is reclaimed when the table is full. A slot may change
 * hands while a waker reads its name: then a descriptor gets a byte it did
 * not ask for, which a readiness descriptor allows (the user's call finds
 * nothing and arms again).
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ring.h"

#define DRAIN_EVERY 64 /* arms that find the descriptor still armed before one drains a stray byte */

/* One socket per process sends every wake-up. */
static int sender_fd = -1;
static pthread_once_t sender_once = PTHREAD_ONCE_INIT;

static void sender_open(void)
{
    sender_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
}

static socklen_t address_of(const uint64_t name[2], struct sockaddr_un *a)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX; /* sun_path[0] = 0: the abstract namespace */
    memcpy(a->sun_path + 1, name, PSY_NOTIFY_NAME);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + PSY_NOTIFY_NAME);
}

static int send_byte(int fd, const struct sockaddr_un *a, socklen_t len)
{
    char byte = 0;
    return sendto(fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)a, len) == 1 ? 0 : -errno;
}

/* Makes the descriptor named `name` readable. A datagram's memory counts
 * against its sender's buffer until it is read, so -EAGAIN from the shared
 * socket may mean that other descriptors hold many unread bytes: a socket
 * of our own then tells whether this one's queue is full (it is readable
 * already) or not (the byte goes). */
static void wake_name(const uint64_t name[2])
{
    pthread_once(&sender_once, sender_open);
    struct sockaddr_un a;
    socklen_t len = address_of(name, &a);
    if (sender_fd >= 0 && send_byte(sender_fd, &a, len) != -EAGAIN)
        return;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0) {
        send_byte(fd, &a, len);
        close(fd);
    }
}

/* Whether a descriptor answers to `name` (its process may have died). */
static bool name_alive(const uint64_t name[2])
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; /* cannot tell: never reclaim on a guess */
    struct sockaddr_un a;
    socklen_t len = address_of(name, &a);
    bool alive = connect(fd, (const struct sockaddr *)&a, len) == 0 || errno != ECONNREFUSED;
    close(fd);
    return alive;
}

static struct psy_notify_slot *slot_at(const struct psy_ring *r, int i)
{
    return &r->sh->notify.slots[i];
}

static psy_atomic32 *waiters_of(const struct psy_ring *r, enum psy_wait_side side)
{
    return side == PSY_WAIT_DATA ? &r->sh->wait.data_waiters : &r->sh->wait.space_waiters;
}

static psy_atomic32 *armed_word(const struct psy_ring *r, enum psy_wait_side side)
{
    return side == PSY_WAIT_DATA ? &r->sh->wait.data_armed : &r->sh->wait.space_armed;
}

static void read_name(const struct psy_notify_slot *s, uint64_t name[2])
{
    name[0] = atomic_load_explicit(&s->name[0], memory_order_relaxed);
    name[1] = atomic_load_explicit(&s->name[1], memory_order_relaxed);
}

/* Takes back the arming of slot s, if it holds one: 1 if it did. */
static bool disarm(const struct psy_ring *r, struct psy_notify_slot *s, enum psy_wait_side side)
{
    if (!atomic_load_explicit(&s->armed, memory_order_relaxed) || !atomic_exchange(&s->armed, 0))
        return false;
    atomic_fetch_sub(waiters_of(r, side), PSY_ARMED_FD);
    return true;
}

int psy_notifier_open(struct psy_notifier *n, enum psy_wait_side side)
{
    memset(n, 0, sizeof *n);
    n->side = side;
    n->slot = -1;
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n->fd < 0)
        return -errno;
    for (int tries = 0; tries < 8; tries++) {
        if (getrandom(n->name, sizeof n->name, 0) != (ssize_t)sizeof n->name)
            break;
        struct sockaddr_un a;
        socklen_t len = address_of(n->name, &a);
        if (bind(n->fd, (const struct sockaddr *)&a, len) == 0)
            return 0;
        if (errno != EADDRINUSE)
            break;
    }
    int rc = -errno;
    close(n->fd);
    n->fd = -1;
    return rc ? rc : -EIO;
}

void psy_notifier_signal(struct psy_notifier *n)
{
    wake_name(n->name);
}

/* Reads what wakers sent: the descriptor is no longer readable. */
static void drain(struct psy_notifier *n)
{
    char buf[16];
    for (int i = 0; i < 64 && recv(n->fd, buf, sizeof buf, MSG_DONTWAIT) >= 0; i++) {
    }
    n->quiet_arms = 0;
}

static bool registered(const struct psy_notifier *n, const struct psy_ring *r)
{
    if (n->ring != r || n->slot < 0)
        return false;
    const struct psy_notify_slot *s = slot_at(r, n->slot);
    uint64_t name[2];
    if (atomic_load_explicit(&s->state, memory_order_acquire) != (uint32_t)n->side + 1)
        return false;
    read_name(s, name);
    return name[0] == n->name[0] && name[1] == n->name[1];
}

/* Slots whose owners' descriptors are gone (their processes died). */
static void reclaim_dead(struct psy_ring *r)
{
    for (int i = 0; i < PSY_NOTIFY_SLOTS; i++) {
        struct psy_notify_slot *s = slot_at(r, i);
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st == PSY_NOTIFY_FREE || st == PSY_NOTIFY_BUSY)
            continue;
        uint64_t name[2];
        read_name(s, name);
        if (name_alive(name) || !atomic_compare_exchange_strong(&s->state, &st, PSY_NOTIFY_BUSY))
            continue;
        disarm(r, s, (enum psy_wait_side)(st - 1));
        atomic_store_explicit(&s->state, PSY_NOTIFY_FREE, memory_order_release);
    }
}

static int take_slot(struct psy_notifier *n, struct psy_ring *r)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < PSY_NOTIFY_SLOTS; i++) {
            struct psy_notify_slot *s = slot_at(r, i);
            uint32_t st = PSY_NOTIFY_FREE;
            if (atomic_load_explicit(&s->state, memory_order_relaxed) != PSY_NOTIFY_FREE ||
                !atomic_compare_exchange_strong(&s->state, &st, PSY_NOTIFY_BUSY))
                continue;
            atomic_store_explicit(&s->armed, 0, memory_order_relaxed);
            atomic_store_explicit(&s->pid, (uint32_t)getpid(), memory_order_relaxed);
            atomic_store_explicit(&s->name[0], n->name[0], memory_order_relaxed);
            atomic_store_explicit(&s->name[1], n->name[1], memory_order_relaxed);
            atomic_store_explicit(&s->state, (uint32_t)n->side + 1, memory_order_release);
            n->ring = r;
            n->slot = i;
            return 0;
        }
        if (pass == 0)
            reclaim_dead(r);
    }
    return -ENOSPC;
}

int psy_notifier_arm(struct psy_notifier *n, struct psy_ring *r)
{
    /* A ring it left (a dynamic ring's old segment) may be unmapped: its
     * slot there is abandoned, never touched again. */
    if (!registered(n, r)) {
        drain(n);
        int rc = take_slot(n, r);
        if (rc)
            return rc;
    }
    struct psy_notify_slot *s = slot_at(r, n->slot);
    if (atomic_load_explicit(&s->armed, memory_order_relaxed)) {
        /* Nothing was sent since the last arming. A byte that came anyway
         * (a slot that changed hands under a waker) would keep an event
         * loop spinning: drain now and then. */
        if (++n->quiet_arms % DRAIN_EVERY == 0)
            drain(n);
        return 0;
    }
    drain(n); /* before arming: a byte sent after it must stay */
    if (atomic_exchange(&s->armed, 1) == 0)
        atomic_fetch_add(waiters_of(r, n->side), PSY_ARMED_FD);
    atomic_store(armed_word(r, n->side), 1);
    psy_wait_barrier(r);
    return 0;
}

void psy_notifier_close(struct psy_notifier *n, struct psy_ring *current)
{
    if (n->fd < 0)
        return;
    if (current && registered(n, current)) {
        struct psy_notify_slot *s = slot_at(current, n->slot);
        uint32_t st = (uint32_t)n->side + 1;
        if (atomic_compare_exchange_strong(&s->state, &st, PSY_NOTIFY_BUSY)) {
            disarm(current, s, n->side);
            atomic_store_explicit(&s->state, PSY_NOTIFY_FREE, memory_order_release);
        }
    }
    close(n->fd);
    n->fd = -1;
}

void psy_notify_wake(struct psy_ring *r, enum psy_wait_side side)
{
    for (int i = 0; i < PSY_NOTIFY_SLOTS; i++) {
        struct psy_notify_slot *s = slot_at(r, i);
        if (atomic_load_explicit(&s->state, memory_order_acquire) != (uint32_t)side + 1 || !disarm(r, s, side))
            continue;
        uint64_t name[2];
        read_name(s, name);
        wake_name(name);
    }
}
