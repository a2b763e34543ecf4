/* SPDX-License-Identifier: MIT */
/*
 * tx.c - the send side of a tcp:// link: whole ranges of committed records
 * written straight from tx to the socket, ACKs in front of them, tx freed
 * as the peer acknowledges it, BYE when closing; users who write inline
 * when they commit (link.h has the whole picture).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../../base/error.h"
#include "link.h"

/* ---- sending: the sender thread, or a user's thread inline ---- */

/*
 * Whoever holds tx_role writes to the connection. A user who commits while
 * the sender thread sleeps and nothing is in flight (the first message after
 * a pause), or little (at most INLINE_INFLIGHT_MAX unacknowledged) and the
 * peer sent data since our last write (a request after its reply), writes
 * the records itself, without blocking (psy_tcp_committed): the message
 * leaves from the committing thread. The end of a one-way stream that sends
 * hears only ACKs, so its messages go inline only when all are acknowledged.
 * Otherwise the sender thread writes: it batches what was committed
 * meanwhile into one sendmsg and blocks when the socket is full. It is
 * Nagle's rule with its sign turned: the first message goes at once, the
 * ones behind it wait for the thread that batches them.
 *
 * The ACK of what we received rides in front of our records once
 * ACK_RIDE_MIN is unacknowledged, not on every message: a range with no ACK
 * is one buffer, written with send(), not sendmsg(), which costs less.
 * ACK_RIDE_MIN <= INLINE_INFLIGHT_MAX keeps
 * request and reply inline on both ends: a reply without an ACK leaves the
 * requester less than ACK_RIDE_MIN in flight. An ACK with no message to
 * ride on waits at most ACK_DELAY_NS, or until a quarter of the smaller ring
 * is unacknowledged.
 *
 * A non-blocking write may stop anywhere, even inside a record or the ACK in
 * front: send_pos then lies inside [.., send_end) and the next write, by
 * whoever holds the role, finishes that range first.
 */

/* The end of the committed records from pos, at most SEND_MAX bytes on. */
static uint64_t committed_end(const struct psy_ring *r, uint64_t pos)
{
    uint64_t end = pos;
    while (end - pos < SEND_MAX) {
        uint64_t w = atomic_load_explicit(psy_hdr_at(r, end), memory_order_acquire); /* A2 */
        if (w == 0)
            break;
        end += PSYNE_RECORD_SIZE(psy_hdr_length(w));
    }
    return end;
}

/* Whether the peer has every committed record of tx (nothing to resend). */
bool psy_tcp_all_acked(struct psy_tcp_link *l)
{
    uint64_t head = atomic_load_explicit(l->tx_reader.head, memory_order_relaxed);
    return committed_end(&l->tx, head) == head;
}

/* Frees what the peer acknowledged (under tx_role). */
static void free_acked(struct psy_tcp_link *l)
{
    uint64_t acked = atomic_load_explicit(&l->peer_acked, memory_order_acquire);
    uint64_t head = atomic_load_explicit(l->tx_reader.head, memory_order_relaxed);
    uint64_t sent = atomic_load_explicit(&l->send_pos, memory_order_relaxed);
    if (acked - head > sent - head) /* not written on this connection yet: after send_on resumes */
        return;
    if (acked != head)
        psy_sc_release(&l->tx, &l->tx_reader, acked);
    atomic_store_explicit(&l->freed, acked, memory_order_relaxed);
}

/* Whether the send role's holder left work behind: a range half written,
 * records committed since it last looked (counted, not read from the ring:
 * without the role, send_pos may be stale and its memory reused), ACKs to
 * act on. */
static bool send_work_left(struct psy_tcp_link *l)
{
    return atomic_load_explicit(&l->send_partial, memory_order_relaxed) ||
           atomic_load_explicit(&l->commits, memory_order_acquire) !=
               atomic_load_explicit(&l->commits_seen, memory_order_relaxed) ||
           atomic_load_explicit(&l->peer_acked, memory_order_acquire) !=
               atomic_load_explicit(&l->freed, memory_order_relaxed);
}

/* A user lets go of the send role: what it could not do, the thread does.
 * Dekker with the thread's sleep (psy_wake_if_waiting): the role is free
 * before we look at its waiter count, and the thread looks at the role
 * after registering. */
static void give_tx_role(struct psy_tcp_link *l)
{
    give_role(&l->tx_role);
    if (send_work_left(l))
        psy_tcp_wake_sender(l);
}

/* Writes iov[0..n): send() when there is one buffer (records with no ACK in
 * front), which costs less than sendmsg(), as recv() does (receive_into). */
static ssize_t send_from(int fd, struct iovec *iov, int n, int flags)
{
    if (n == 1)
        return send(fd, iov[0].iov_base, iov[0].iov_len, flags);
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    return sendmsg(fd, &mh, flags);
}

/* Writes the next bytes due on the connection (under tx_role): what is left
 * of a half-written range first; at a record boundary, a new range of
 * committed records, with an ACK in front when at least ACK_RIDE_MIN is due
 * and there is data for it to ride on, or a quarter ring is unacknowledged,
 * or want_ack (any). flags: MSG_DONTWAIT for a user's thread.
 * Returns the bytes written, 0 when nothing is due or the socket is full,
 * -1 when the connection broke. */
static ssize_t send_some(struct psy_tcp_link *l, int flags, bool want_ack)
{
    struct psy_ring *r = &l->tx;
    uint64_t pos = atomic_load_explicit(&l->send_pos, memory_order_relaxed);
    if (pos == l->send_end && l->ack_off == l->ack_len) {
        /* every commit counted by now has its header stored (release, then acquire) */
        atomic_store_explicit(&l->commits_seen, atomic_load_explicit(&l->commits, memory_order_acquire),
                              memory_order_relaxed);
        l->send_end = committed_end(r, pos);
        atomic_store_explicit(l->tx_reader.read_pos, l->send_end, memory_order_relaxed);
        if (l->send_end - atomic_load_explicit(&l->tx_offered, memory_order_relaxed) - 1 < ((uint64_t)1 << 62) - 1)
            atomic_store_explicit(&l->tx_offered, l->send_end, memory_order_release); /* before the send() */
        uint64_t due = atomic_load_explicit(&l->ack_due, memory_order_acquire);
        uint64_t unacked = due - atomic_load_explicit(&l->ack_sent, memory_order_relaxed);
        if (l->send_end != pos)
            atomic_store_explicit(&l->due_at_send, due, memory_order_relaxed);
        bool rides = l->send_end != pos && unacked >= ACK_RIDE_MIN;
        if (unacked && (want_ack || rides || unacked >= l->ack_eager)) {
            uint64_t hdr = psy_hdr_make(8, PSY_TYPE_WIRE_ACK);
            memcpy(l->ack_out, &hdr, 8);
            memcpy(l->ack_out + 8, &due, 8);
            l->ack_off = 0;
            l->ack_len = sizeof l->ack_out;
            atomic_store_explicit(&l->ack_sent, due, memory_order_relaxed);
        }
    }
    struct iovec iov[2];
    int n = 0;
    if (l->ack_off < l->ack_len)
        iov[n++] = (struct iovec){l->ack_out + l->ack_off, l->ack_len - l->ack_off};
    if (pos != l->send_end) /* pos may be any byte: r->mask keeps only 8-aligned offsets */
        iov[n++] = (struct iovec){r->data + (pos & (r->cap - 1)), l->send_end - pos};
    if (n == 0)
        return 0;
    ssize_t w;
    do
        w = send_from(l->send_fd, iov, n, MSG_NOSIGNAL | flags);
    while (w < 0 && errno == EINTR);
    atomic_fetch_add_explicit(&l->send_calls, 1, memory_order_relaxed);
    if (w < 0) {
        atomic_store_explicit(&l->send_partial, true, memory_order_relaxed); /* the range waits for the thread */
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
    uint64_t left = (uint64_t)w, in_ack = l->ack_len - l->ack_off;
    uint64_t of_ack = left < in_ack ? left : in_ack;
    l->ack_off += (unsigned)of_ack;
    pos += left - of_ack;
    atomic_store_explicit(&l->send_pos, pos, memory_order_relaxed);
    atomic_store_explicit(&l->send_partial, pos != l->send_end || l->ack_off != l->ack_len, memory_order_relaxed);
    uint64_t sent = atomic_load_explicit(&l->tx_sent, memory_order_relaxed);
    if (pos - sent < (uint64_t)1 << 62)
        atomic_store_explicit(&l->tx_sent, pos, memory_order_release);
    return w;
}

/* Writes what is due without blocking, from a thread that took tx_role
 * (a user's commit, or the receiving thread's ACK), then lets the role go:
 * a write the socket did not take whole, or a connection down, is left to
 * the sender thread. */
static void send_inline(struct psy_tcp_link *l, bool want_ack)
{
    if (l->send_fd >= 0 && atomic_load_explicit(&l->live, memory_order_acquire) == l->send_gen) {
        free_acked(l);
        while (send_some(l, MSG_DONTWAIT, want_ack) > 0) {
        }
    }
    give_tx_role(l);
}

/* An ACK that cannot wait (much is unacknowledged: the peer's send ring
 * fills), written by whoever received (it holds rx_role) when the send role
 * is free, without blocking, with what was committed meanwhile: a stream's
 * receiving end does not wake its sender thread for every ACK, one thread
 * hand-off per ring quarter. When the socket does not take it all, or the
 * role is busy, the sender thread writes it. */
void psy_tcp_ack_now(struct psy_tcp_link *l)
{
    if (!take_role(&l->tx_role)) {
        /* its holder (the thread, or a user's commit that chose its range
         * before this ACK was due) may not send it */
        psy_tcp_wake_sender(l);
        return;
    }
    send_inline(l, true);
    if (atomic_load_explicit(&l->ack_due, memory_order_relaxed) !=
        atomic_load_explicit(&l->ack_sent, memory_order_relaxed))
        psy_tcp_wake_sender(l);
}

/* The peer acknowledged more of tx: frees it now if the send role is free,
 * else its holder does when it lets go (give_tx_role, the sender's loop). */
void psy_tcp_acked(struct psy_tcp_link *l)
{
    if (take_role(&l->tx_role)) {
        free_acked(l);
        give_tx_role(l);
    }
}

void psy_tcp_committed(struct psy_tcp_link *l)
{
    atomic_fetch_add_explicit(&l->commits, 1, memory_order_release); /* after the header: send_work_left */
    if (!psy_ring_has_sleepers(l->sender_bell, PSY_WAIT_DATA) ||
        atomic_load_explicit(&l->wake_pending, memory_order_relaxed))
        return; /* the sender thread is at work, or woken: it sees the records before it sleeps */
    uint64_t in_flight = atomic_load_explicit(&l->tx_sent, memory_order_acquire) -
                         atomic_load_explicit(&l->peer_acked, memory_order_acquire);
    bool answered = atomic_load_explicit(&l->ack_due, memory_order_relaxed) !=
                    atomic_load_explicit(&l->due_at_send, memory_order_relaxed); /* the peer sent data since we did */
    if ((in_flight == 0 || (answered && in_flight <= INLINE_INFLIGHT_MAX)) && take_role(&l->tx_role)) {
        send_inline(l, false);
        return;
    }
    psy_tcp_wake_sender(l);
}

struct sender_try {
    struct psy_tcp_link *l;
    uint64_t gen;
};

/* Something for the sender thread to do: what a user holding the send role
 * left, records, an ACK that cannot wait, or the connection went away. */
static int sender_once(void *ctx)
{
    struct sender_try *t = ctx;
    struct psy_tcp_link *l = t->l;
    /* taken back at every look, not only when the wait ends: a look that
     * finds nothing (a user holds the role) sleeps again, and wakers must
     * then ring again (wake_sender) */
    atomic_exchange(&l->wake_pending, false);
    if (atomic_load_explicit(&l->live, memory_order_acquire) != t->gen || atomic_load(&l->stop))
        return 0;
    if (atomic_load(&l->tx_role) == 0 && send_work_left(l))
        return 0;
    uint64_t unacked = atomic_load_explicit(&l->ack_due, memory_order_acquire) -
                       atomic_load_explicit(&l->ack_sent, memory_order_relaxed);
    if (unacked >= l->ack_eager || (unacked && atomic_load_explicit(&l->sender_resting, memory_order_relaxed)))
        return 0;
    return psy_ring_closed(&l->tx) ? -EPIPE : -EAGAIN;
}

/* Sends on one connection until it breaks, the link stops, or (after close)
 * everything is acknowledged and BYE is sent. Returns true after BYE. */
static bool send_on(struct psy_tcp_link *l, int fd, uint64_t gen, uint64_t resume, uint64_t hello_rx)
{
    struct psy_ring *r = &l->tx;
    take_role_waiting(&l->tx_role);
    l->send_fd = fd;
    l->send_gen = gen;
    atomic_store_explicit(&l->send_pos, resume, memory_order_relaxed);
    l->send_end = resume;
    l->ack_off = l->ack_len = 0;
    atomic_store_explicit(&l->send_partial, false, memory_order_relaxed);
    atomic_store_explicit(&l->ack_sent, hello_rx, memory_order_relaxed); /* our hello told the peer */
    atomic_store_explicit(l->tx_reader.read_pos, resume, memory_order_relaxed);
    give_role(&l->tx_role);
    struct sender_try t = {l, gen};
    uint64_t due_seen = atomic_load_explicit(&l->ack_due, memory_order_relaxed);
    bool want_ack = false, said_bye = false, broken = false;
    for (;;) {
        if (atomic_load_explicit(&l->live, memory_order_acquire) != gen || atomic_load(&l->stop))
            break;
        take_role_waiting(&l->tx_role);
        free_acked(l);
        ssize_t w = send_some(l, 0, want_ack);
        bool closing = w == 0 && psy_ring_closed(r);
        if (closing && atomic_load_explicit(l->tx_reader.head, memory_order_relaxed) == l->send_end &&
            committed_end(r, l->send_end) == l->send_end) {
            /* Closing: everything is sent and the peer has it: BYE. */
            pthread_mutex_lock(&l->lock);
            l->bye_sent = true; /* before it goes: the peer's close that follows is no break */
            pthread_mutex_unlock(&l->lock);
            uint64_t hdr = psy_hdr_make(0, PSY_TYPE_WIRE_BYE);
            struct iovec iov = {&hdr, sizeof hdr};
            broken = psy_tcp_send_all(l, fd, &iov, 1) != 0;
            said_bye = !broken;
        }
        give_role(&l->tx_role);
        if (w < 0 || broken || said_bye)
            break;
        if (w > 0) {
            want_ack = false;
            continue;
        }
        if (closing) { /* wait for the peer's ACKs, each wakes us */
            pthread_mutex_lock(&l->lock);
            bool give_up = psy_now_ns() > l->linger_until;
            if (!give_up)
                wait_until(l, psy_now_ns() + 1000000);
            pthread_mutex_unlock(&l->lock);
            if (give_up) {
                said_bye = true;
                break;
            }
            /* What we received is acknowledged at once, however little: a
             * peer that closes too waits for it before its BYE, as we wait
             * for its ACK before ours (after a reconnect both ends resend
             * the tail of their streams, and each held its ACK back for a
             * message to ride on, which never came: both closes waited
             * link_timeout) */
            want_ack = true;
            continue;
        }
        /* Nothing to write. An ACK due, or one moved lately: look again
         * within ACK_DELAY_NS. Else rest: a receive that makes an ACK due
         * wakes us (publish). */
        uint64_t due = atomic_load_explicit(&l->ack_due, memory_order_acquire);
        bool ack_waits = due != atomic_load_explicit(&l->ack_sent, memory_order_relaxed);
        bool lately = due != due_seen;
        due_seen = due;
        atomic_store(&l->sender_resting, !ack_waits && !lately);
        int rc = psy_wait_loop_helper(l->sender_bell, PSY_WAIT_DATA, sender_once, &t,
                                      ack_waits || lately ? ACK_DELAY_NS : POLL_MS * 1000000ll);
        atomic_store(&l->sender_resting, false);
        want_ack = rc == -ETIMEDOUT && ack_waits;
    }
    take_role_waiting(&l->tx_role); /* no user writes to fd after this */
    l->send_fd = -1;
    give_role(&l->tx_role);
    return said_bye;
}

void *psy_tcp_sender_main(void *arg)
{
    struct psy_tcp_link *l = arg;
    uint64_t done_gen = 0;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        /* the next connection, taken only while it is live (go_dead) */
        if (l->ended || atomic_load(&l->stop))
            break;
        if (l->fd >= 0 && l->gen != done_gen && atomic_load(&l->live) == l->gen) {
            uint64_t gen = l->gen, resume = l->resume_tx, hello_rx = l->hello_rx;
            int fd = l->fd;
            l->sender_using = gen;
            pthread_mutex_unlock(&l->lock);
            if (!send_on(l, fd, gen, resume, hello_rx))
                shutdown(fd, SHUT_RDWR); /* the receiver thread notices and reconnects */
            /* after BYE: the receiver ends the link when the peer closes, or
             * reconnects and we say BYE again */
            pthread_mutex_lock(&l->lock);
            l->sender_using = 0;
            done_gen = gen;
            pthread_cond_broadcast(&l->cond);
            continue;
        }
        wait_until(l, psy_now_ns() + POLL_MS * 1000000ll);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}
