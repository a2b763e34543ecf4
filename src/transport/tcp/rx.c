/* SPDX-License-Identifier: MIT */
/*
 * rx.c - the receive side of a tcp:// link: recv() straight into the free
 * space of rx, every header checked (wire.c) before its records are
 * published, acknowledgements that arrive handed to the send side
 * (psy_tcp_acked), and users who read the socket inline while they wait
 * (link.h has the whole picture).
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

/* ---- receiving: the receiver thread, or a user waiting for messages ---- */

/*
 * Whoever holds rx_role reads the connection into rx. A user blocked in
 * psyne_receive on an empty ring reads it itself (psy_tcp_wait_data): it
 * sleeps in poll() on the socket and the kernel wakes it when bytes come, as
 * it wakes a program on a raw socket, instead of waking the receiver thread
 * that then wakes the user. While users read (inline_reads moves), the
 * receiver thread keeps out of their way and looks again every PARK_NS; when
 * no user waits, it reads again, so ACKs and messages keep flowing to an end
 * that only sends. A producer that waits for tx space, and a shutdown or
 * close, wake it at once (psy_tcp_acks_wanted): the ACKs that free the space
 * or end the stream must be read, and a user who stopped receiving does not
 * read them; so PARK_NS can be long (an idle link with a user blocked in
 * receive wakes its thread 20 times a second, not 500). A user who sees the
 * connection end leaves what it saw in inline_end for the receiver thread,
 * which decides what follows.
 */

enum { STEP_GOT = -1, STEP_QUIET = -2, STEP_FULL = -3 }; /* receive_step, besides an enum link_end */

struct space_try {
    struct psy_tcp_link *l;
    uint64_t need_head; /* a release position that gives us room */
};

static int space_once(void *ctx)
{
    struct space_try *t = ctx;
    if (atomic_load_explicit(&t->l->stop, memory_order_relaxed) || psy_ring_closed(&t->l->rx))
        return -EPIPE;
    uint64_t head = psy_ring_refresh_head(&t->l->rx);
    return head - t->need_head < (uint64_t)1 << 62 ? 0 : -EAGAIN;
}

/* Publishes the whole records at the frontier and keeps what follows them.
 * Control records (ACK, BYE) after the last data record are not published
 * when little follows them: those bytes are moved down over them instead.
 * Published, they would wait in the ring for a consumer, and an end that only
 * sends never receives: its ring would fill with the peer's ACKs, the
 * receiver would stop reading, and the ACKs that free the send ring with it. */
static void publish(struct psy_tcp_link *l, uint64_t first, const struct psy_wire_scan *s)
{
    struct psy_ring *r = &l->rx;
    uint64_t end = l->frontier + s->complete;
    uint64_t rest = l->have - s->complete;
    uint64_t keep = end; /* the end of what is published */
    if (s->data_end < s->complete && rest <= CONTROL_DROP_MAX_SHIFT)
        keep = l->frontier + s->data_end;
    l->stash = 0;
    memcpy(&l->stash, r->data + (end & r->mask), rest < 8 ? rest : 8); /* before the terminator store */
    if (keep != end && rest > 8) { /* the partial record's bytes after its header (in the stash) */
        /* Source and destination as one linear range of the mirror: taken
         * modulo cap separately, they could alias the same bytes through
         * different copies, and memmove would copy in the wrong direction. */
        uint8_t *to = r->data + ((keep + 8) & (r->cap - 1));
        memmove(to, to + (end - keep), rest - 8);
    }
    if (keep != l->frontier) { /* else the ring still ends at the frontier (a zero header) */
        psy_sp_publish(r, l->frontier, first, keep, s->msgs, s->payload);
        if (l->owner_poke) /* its consumer may wait on all peers at once */
            l->owner_poke(l->owner);
    }
    l->frontier = keep;
    l->have = rest;
    if (s->stream) {
        l->rx_stream += s->stream;
        atomic_store_explicit(&l->ack_due, l->rx_stream, memory_order_release);
        /* The ACK waits for a message of ours to ride on (ACK_DELAY_NS at
         * most), unless much is unacknowledged or the sender thread rests
         * (the fence: Dekker with sender_resting, as in wake_sender). */
        psy_wake_fence(l->sender_bell);
        if (l->rx_stream - atomic_load_explicit(&l->ack_sent, memory_order_relaxed) >= l->ack_eager)
            psy_tcp_ack_now(l);
        else if (atomic_load_explicit(&l->sender_resting, memory_order_relaxed))
            psy_tcp_wake_sender(l);
    }
}

/* The peer acknowledged more of tx: frees it now if the send role is free,
 * else its holder does when it lets go (give_tx_role, the sender's loop).
 * An ACK of bytes we never handed to send() is a lie (a forged or broken
 * peer): -EPROTO, and peer_acked keeps its value. Taken as true, it would
 * stay ahead of everything sent, and the sender would look for the work it
 * promises for ever (send_work_left). tx_offered is stored before the
 * send() whose bytes the peer acknowledges, and the system calls between
 * order it before this load. */
static int ack_arrived(struct psy_tcp_link *l, uint64_t acked)
{
    uint64_t prev = atomic_load_explicit(&l->peer_acked, memory_order_relaxed);
    if (acked - prev >= (uint64_t)1 << 62 || acked == prev)
        return 0;
    if (acked - prev > atomic_load_explicit(&l->tx_offered, memory_order_acquire) - prev)
        return -EPROTO;
    atomic_store_explicit(&l->peer_acked, acked, memory_order_release);
    psy_tcp_acked(l);
    return 0;
}

/* Server: is a client waiting to be accepted? Only one client is served at a
 * time, so a new connection while the current one is quiet means the client
 * came back on a new connection and the current one is dead, though no reset
 * said so (the client's host crashed, or its reset was lost on the way). Its
 * handshake decides: the same session resumes where it stopped. */
static bool newer_client_waiting(struct psy_tcp_link *l)
{
    if (l->owner) {
        pthread_mutex_lock(&l->lock);
        bool waiting = l->handoff_fd >= 0;
        pthread_mutex_unlock(&l->lock);
        return waiting;
    }
    if (!l->server || l->listen_fd < 0)
        return false;
    struct pollfd p = {.fd = l->listen_fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Receives without blocking into iov[0..n): recv() when there is one
 * buffer, which costs less than recvmsg() (no message header and vector to
 * copy in). */
static ssize_t receive_into(int fd, struct iovec *iov, int n)
{
    if (n == 1)
        return recv(fd, iov[0].iov_base, iov[0].iov_len, MSG_DONTWAIT);
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    return recvmsg(fd, &mh, MSG_DONTWAIT);
}

/* One non-blocking receive into the free space of rx (under rx_role), and
 * the whole records it completes published. Returns STEP_GOT (bytes came),
 * STEP_QUIET (none yet), STEP_FULL (no room: the consumer must release), or
 * how the connection ended (enum link_end).
 *
 * The first record's header is kept out of the ring (in the stash) until the
 * record is whole and valid: consumers stop at the zero header there. With
 * sole_reader (the caller is rx's only consumer: a user reading inline on a
 * single-consumer ring) no one looks at the ring meanwhile, so the header
 * may land where it stands and the receive takes one buffer; it is moved to
 * the stash at once, before anything else looks at it. */
static int receive_step(struct psy_tcp_link *l, int fd, bool sole_reader)
{
    struct psy_ring *r = &l->rx;
    uint64_t head = psy_ring_refresh_head(r);
    uint64_t limit = head + r->cap - PSY_TERMINATOR; /* the terminator after the last record fits */
    uint64_t from = l->frontier + (l->have > 8 ? l->have : 8);
    struct iovec iov[2];
    int n = 0;
    bool header_in_ring = sole_reader && l->have == 0 && limit >= from;
    if (header_in_ring) {
        iov[n++] = (struct iovec){r->data + (l->frontier & (r->cap - 1)), limit - l->frontier};
    } else {
        /* The stash takes bytes only while the header could be published
         * where it stands: a record of header alone (an empty message, a
         * pad of 0) is whole in the stash, and its terminator goes after it. */
        if (l->have < 8 && limit >= from)
            iov[n++] = (struct iovec){(uint8_t *)&l->stash + l->have, 8 - l->have};
        if (limit > from) /* from may be any byte: r->mask keeps only 8-aligned offsets */
            iov[n++] = (struct iovec){r->data + (from & (r->cap - 1)), limit - from};
    }
    if (n == 0)
        return STEP_FULL; /* TCP holds the peer back meanwhile */
    ssize_t got = receive_into(fd, iov, n);
    atomic_fetch_add_explicit(&l->recv_calls, 1, memory_order_relaxed);
    if (got <= 0) {
        if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            return STEP_QUIET;
        return got == 0 ? LINK_EOF : LINK_BROKEN; /* EOF: the peer closed in order */
    }
    if (header_in_ring) { /* to the stash, and the ring ends at the frontier again */
        psy_atomic64 *slot = psy_hdr_at(r, l->frontier);
        uint64_t bytes =
            atomic_load_explicit(slot, memory_order_relaxed); /* in memory order, as the stash keeps them */
        if (got < 8) /* the rest of the slot is the terminator's zeros anyway */
            memset((uint8_t *)&bytes + got, 0, 8 - (size_t)got);
        l->stash = bytes;
        atomic_store_explicit(slot, 0, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&l->heard, (uint64_t)got, memory_order_relaxed);
    l->have += (uint64_t)got;
    if (l->have < 8)
        return STEP_GOT;
    uint64_t first = l->stash;
    struct psy_wire_scan s;
    const char *why;
    int rc = psy_wire_scan(&first, r->data + (l->frontier & r->mask), l->have, l->max_recv, &s, &why);
    if (s.complete)
        publish(l, first, &s);
    if (rc == 0 && s.has_ack && ack_arrived(l, l->tx_base + s.ack)) {
        rc = -EPROTO;
        why = "an ACK of bytes never sent";
    }
    if (rc) {
        atomic_fetch_add_explicit(&l->protocol_errors, 1, memory_order_relaxed);
        psy_fail(rc, "tcp://%s: %s: connection dropped", l->where, why);
        psy_log(PSYNE_LOG_WARN, "tcp://%s: %s: connection dropped", l->where, why);
        return LINK_INVALID;
    }
    return s.bye ? LINK_BYE : STEP_GOT;
}

/* The receiver thread stays out of the way of a user who reads inline, and
 * listens for one who saw the connection end. */
static void park(struct psy_tcp_link *l)
{
    pthread_mutex_lock(&l->lock);
    atomic_store(&l->parked, true); /* Dekker with psy_tcp_acks_wanted (both seq_cst) */
    if (!atomic_load(&l->inline_end) && !atomic_load(&l->stop) && !atomic_load(&l->read_wanted))
        wait_until(l, psy_now_ns() + PARK_NS);
    atomic_store_explicit(&l->parked, false, memory_order_relaxed);
    pthread_mutex_unlock(&l->lock);
}

void psy_tcp_acks_wanted(struct psy_tcp_link *l)
{
    atomic_store(&l->read_wanted, true);
    if (atomic_load(&l->parked)) {
        pthread_mutex_lock(&l->lock);
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
    }
}

enum link_end psy_tcp_receive_loop(struct psy_tcp_link *l, int fd)
{
    struct psy_ring *r = &l->rx;
    uint64_t reads_seen = atomic_load_explicit(&l->inline_reads, memory_order_relaxed);
    uint64_t heard_seen = atomic_load_explicit(&l->heard, memory_order_relaxed);
    int64_t quiet_since = psy_now_ns();
    for (;;) {
        if (atomic_load_explicit(&l->stop, memory_order_relaxed))
            return LINK_STOP;
        int seen_end = atomic_load(&l->inline_end);
        if (seen_end)
            return (enum link_end)(seen_end - 1);
        /* A user reads the connection. Waiting for single messages (a
         * request, a reply), it wants the socket to itself: the thread
         * parks. Taking a stream in bulk, it leaves the socket to the
         * thread again, which reads while the user consumes. */
        uint64_t reads = atomic_load_explicit(&l->inline_reads, memory_order_relaxed);
        bool small = atomic_load_explicit(&l->inline_small, memory_order_relaxed);
        bool user_reads = reads != reads_seen && small && !atomic_exchange(&l->read_wanted, false);
        reads_seen = reads;
        if (user_reads || !take_role(&l->rx_role)) {
            park(l); /* never a yield loop: a user may hold the role in poll() */
            /* the user's read of a dead connection ends when a client that
             * came back shows it dead (as below, after IDLE_CHECK_MS of quiet) */
            uint64_t heard = atomic_load_explicit(&l->heard, memory_order_relaxed);
            int64_t now = psy_now_ns();
            if (heard != heard_seen) {
                heard_seen = heard;
                quiet_since = now;
            } else if (now - quiet_since >= IDLE_CHECK_MS * 1000000ll) {
                if (newer_client_waiting(l))
                    return LINK_SUPERSEDED;
                quiet_since = now;
            }
            continue;
        }
        int step;
        while ((step = receive_step(l, fd, false)) == STEP_GOT) {
        }
        give_role(&l->rx_role);
        if (step >= 0)
            return (enum link_end)step;
        if (step == STEP_FULL) { /* wait for the consumer */
            struct space_try t = {l, psy_ring_refresh_head(r) + 1};
            int rc = psy_wait_loop_helper(r, PSY_WAIT_SPACE, space_once, &t, POLL_MS * 1000000ll);
            if (rc == -EPIPE)
                return LINK_STOP;
            if (rc == -ETIMEDOUT && newer_client_waiting(l))
                return LINK_SUPERSEDED;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, IDLE_CHECK_MS) == 0 && newer_client_waiting(l))
            return LINK_SUPERSEDED;
    }
}

/* How a user's turn at reading inline goes. */
enum inline_read {
    READ_NOW,      /* one non-blocking receive: the user spins on the socket */
    READ_OR_SLEEP, /* a receive, and if nothing was there, a poll() and a receive */
};

/* One turn of a user's inline read (under the deadline `until`, INT64_MAX:
 * none): a non-blocking receive, and with READ_OR_SLEEP, if nothing was there,
 * a poll() of the socket (and of stop_efd, which close and shutdown make
 * readable) and a receive after it; in request/reply the poll() comes first.
 * Returns 0 (look at the ring again) or -EAGAIN: reading inline is not
 * possible now (another reads, the connection is down, rx is full or shut),
 * wait for the one who reads to publish. */
static int read_inline(struct psy_tcp_link *l, int64_t until, enum inline_read how)
{
    if (psy_ring_closed(&l->rx) || !take_role(&l->rx_role))
        return -EAGAIN;
    int fd = atomic_load(&l->rx_fd); /* seq_cst after the role: see go_dead */
    if (fd < 0 || atomic_load(&l->inline_end)) {
        give_role(&l->rx_role);
        return -EAGAIN;
    }
    /* Request and reply (the last wait that read inline brought little):
     * what we wait for is rarely here yet, so sleep in poll() before the
     * first recv, two system calls instead of recv, poll, recv. A stream's
     * data usually is here: recv at once. */
    bool poll_first = how == READ_OR_SLEEP && atomic_load_explicit(&l->inline_small, memory_order_relaxed);
    bool sole_reader = !l->rx.mc; /* psyne_receive in an SC mode: one consumer thread at a time, this one */
    int step = poll_first ? STEP_QUIET : receive_step(l, fd, sole_reader);
    if (step == STEP_QUIET)
        atomic_fetch_add_explicit(&l->inline_reads, 1, memory_order_relaxed); /* the receiver thread parks */
    if (step == STEP_QUIET && how == READ_OR_SLEEP) {
        int64_t left_ms = until == INT64_MAX ? POLL_MS : (until - psy_now_ns() + 999999) / 1000000;
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = l->stop_efd, .events = POLLIN}};
        atomic_fetch_add_explicit(&l->rx.sh->slow.waits, 1, memory_order_relaxed); /* a sleep, as a futex wait */
        if (poll(p, 2, (int)(left_ms < 0 ? 0 : left_ms > POLL_MS ? POLL_MS : left_ms)) > 0 && !p[1].revents)
            step = receive_step(l, fd, sole_reader);
    }
    if (step >= 0) { /* the connection ended: the receiver thread takes it from here */
        atomic_store(&l->inline_end, step + 1);
        give_role(&l->rx_role);
        pthread_mutex_lock(&l->lock);
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
        return -EAGAIN;
    }
    give_role(&l->rx_role);
    return step == STEP_FULL ? -EAGAIN : 0;
}

/* A user's wait that read inline ended: a wait that brought little was a
 * request or a reply, and the next sleep polls before it receives, while the
 * receiver thread keeps out of the way (receive_loop). */
static void inline_wait_ended(struct psy_tcp_link *l, uint64_t heard_before)
{
    bool small = atomic_load_explicit(&l->heard, memory_order_relaxed) - heard_before < INLINE_SMALL;
    if (atomic_load_explicit(&l->inline_small, memory_order_relaxed) != small)
        atomic_store_explicit(&l->inline_small, small, memory_order_relaxed);
}

/* The ring's wait, on the socket: for the rx ring's spin_ns + yield_ns the
 * user receives without blocking (bytes that come meanwhile are taken without
 * a wake-up, which costs more than the round trip of a small request over
 * loopback), then it sleeps in poll(). Like the ring's
 * wait it yields from the start, every RECVS_PER_YIELD receives: when
 * the peer shares the CPU (both ends pinned to one, or in one process on a
 * busy machine), it could answer only after our spin (a round trip on one
 * CPU then took a whole spin; on two CPUs the yields cost nothing).
 * PSYNE_WAIT_SPIN never yields nor sleeps while it reads the socket; when the
 * receiver thread holds the socket, the ring's wait yields every 64 polls
 * so that thread can run (rx.spin_yields, make_rings). */
int psy_tcp_wait_data(struct psy_tcp_link *l, psy_try_fn try_once, void *ctx, int64_t timeout_ns)
{
    const struct psy_ring *r = &l->rx;
    int64_t until = timeout_ns > 0 ? psy_now_ns() + timeout_ns : INT64_MAX;
    int64_t began = 0; /* the first inline read of this wait */
    uint64_t heard_before = 0;
    unsigned polls = 0;
    for (;;) {
        int rc = try_once(ctx);
        if (rc != -EAGAIN && rc != -EBUSY) {
            if (began)
                inline_wait_ended(l, heard_before);
            return rc;
        }
        int64_t now = psy_now_ns();
        if (until != INT64_MAX && now >= until)
            return -ETIMEDOUT;
        if (!began) {
            began = now;
            heard_before = atomic_load_explicit(&l->heard, memory_order_relaxed);
        }
        int64_t waited = now - began;
        bool spin = r->wait_kind == PSYNE_WAIT_SPIN || waited < r->spin_ns + r->yield_ns;
        if (read_inline(l, until, spin ? READ_NOW : READ_OR_SLEEP) == -EAGAIN)
            return psy_wait_loop(&l->rx, PSY_WAIT_DATA, try_once, ctx,
                                 until == INT64_MAX         ? PSYNE_FOREVER
                                 : until - psy_now_ns() > 0 ? until - psy_now_ns()
                                                            : 1);
        if (spin && r->wait_kind != PSYNE_WAIT_SPIN && ++polls % RECVS_PER_YIELD == 0)
            sched_yield();
    }
}
