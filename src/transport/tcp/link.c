/* SPDX-License-Identifier: MIT */
/*
 * link.c - a tcp:// link over its life: its rings and threads, the
 * connections the receiver thread makes or accepts and hands to the sender
 * (go_live, go_dead), what follows when one ends (reconnect and resume,
 * or the end), and open, shutdown and close (link.h has the whole picture).
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

/* rx is shut down: a user polling the socket in read_inline returns. */
static void wake_inline_readers(struct psy_tcp_link *l)
{
    uint64_t one = 1;
    if (write(l->stop_efd, &one, sizeof one) < 0) { /* the counter is full: it is readable already */
    }
}

/* Shuts tx down (claims return -EPIPE) and rings the sender's bell: a
 * channel link's sender sleeps on its own bell, not on tx. The sender still
 * writes what was committed. */
static void stop_sending(struct psy_tcp_link *l)
{
    psy_ring_shutdown(&l->tx);
    psy_wake_slow(l->sender_bell, PSY_WAIT_DATA);
}

/* Ends the link (under l->lock): no more connections; both rings shut down
 * so the user's calls return -EPIPE once the received messages are drained. */
static void end_link(struct psy_tcp_link *l, int failure, const char *why)
{
    if (!l->ended) {
        l->ended = true;
        l->failure = failure;
        if (failure && why && strncmp(why, "tcp://", 6) == 0) /* a psy_fail message: says where already */
            psy_log(PSYNE_LOG_ERROR, "%s", why);
        else if (failure && why)
            psy_log(PSYNE_LOG_ERROR, "tcp://%s: %s", l->where, why);
    }
    /* tx first: a user who sees rx end (-EPIPE) then finds claims failing too */
    stop_sending(l);
    psy_ring_shutdown(&l->rx);
    wake_inline_readers(l);
    pthread_cond_broadcast(&l->cond);
}

/* Hands a new connection to the sender and to inline readers (under l->lock). */
static void go_live(struct psy_tcp_link *l, int fd)
{
    l->fd = fd;
    l->gen++;
    l->retry_ms = 0; /* the next break retries at once */
    l->have = 0;     /* a partial record of the old connection comes again */
    l->stash = 0;
    atomic_store(&l->inline_end, 0);
    atomic_store_explicit(&l->ack_due, l->hello_rx, memory_order_relaxed);
    atomic_store_explicit(&l->peer_acked, l->resume_tx, memory_order_relaxed);
    atomic_store(&l->rx_fd, fd);
    atomic_store_explicit(&l->live, l->gen, memory_order_release);
    pthread_cond_broadcast(&l->cond);
    psy_wake_slow(l->sender_bell, PSY_WAIT_DATA);
}

/* Takes the connection away from inline readers and the sender, and closes it. */
static void go_dead(struct psy_tcp_link *l, int fd)
{
    /* Dekker with read_inline: it takes the role, then reads rx_fd; we
     * clear rx_fd, then wait for the role (both seq_cst) */
    atomic_store(&l->rx_fd, -1);
    shutdown(fd, SHUT_RDWR); /* a sender blocked in sendmsg returns, a user's poll too */
    take_role_waiting(&l->rx_role);
    atomic_store(&l->inline_end, 0);
    give_role(&l->rx_role);
    pthread_mutex_lock(&l->lock);
    atomic_store_explicit(&l->live, 0, memory_order_release); /* the sender cannot take it any more */
    psy_wake_slow(l->sender_bell, PSY_WAIT_DATA);
    while (l->sender_using == l->gen) /* it writes to fd: wait until it lets go */
        wait_until(l, psy_now_ns() + POLL_MS * 1000000ll);
    l->fd = -1;
    pthread_mutex_unlock(&l->lock);
    close(fd);
}

/* Ends the link from the receiver thread, which then exits. A server stops
 * listening: a client that comes now is refused rather than left hanging. */
static void *receiver_exit(struct psy_tcp_link *l, int failure, const char *why)
{
    pthread_mutex_lock(&l->lock);
    end_link(l, failure, why);
    if (l->listen_fd >= 0) {
        close(l->listen_fd);
        l->listen_fd = -1;
    }
    pthread_mutex_unlock(&l->lock);
    if (l->owner_poke) /* its consumer sees this peer end */
        l->owner_poke(l->owner);
    return NULL;
}

/* Owned link: the next connection the owner hands us, or -ETIMEDOUT after
 * `until`, -ECANCELED on stop. */
static int handoff_until(struct psy_tcp_link *l, int64_t until)
{
    pthread_mutex_lock(&l->lock);
    while (l->handoff_fd < 0 && !atomic_load(&l->stop) && psy_now_ns() <= until) {
        int64_t next = psy_now_ns() + POLL_MS * 1000000ll;
        wait_until(l, until < next ? until : next);
    }
    int fd = l->handoff_fd;
    l->handoff_fd = -1;
    pthread_mutex_unlock(&l->lock);
    if (fd >= 0 && atomic_load(&l->stop)) {
        close(fd);
        return -ECANCELED;
    }
    return fd >= 0 ? fd : atomic_load(&l->stop) ? -ECANCELED : -ETIMEDOUT;
}

void psy_tcp_peer_connect(struct psy_tcp_link *l, int fd, const uint8_t *hello)
{
    pthread_mutex_lock(&l->lock);
    if (l->handoff_fd >= 0) /* an older one nobody took: the newest wins */
        close(l->handoff_fd);
    l->handoff_fd = fd;
    memcpy(l->handoff_hello, hello, PSY_WIRE_HELLO_SIZE);
    if (l->fd >= 0) /* the client came back: its old connection is dead, whatever it looks like */
        shutdown(l->fd, SHUT_RDWR);
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static bool bye_said(struct psy_tcp_link *l)
{
    pthread_mutex_lock(&l->lock);
    bool said = l->bye_sent;
    pthread_mutex_unlock(&l->lock);
    return said;
}

static void *receiver_main(void *arg)
{
    struct psy_tcp_link *l = arg;
    /* a server waits for its first client; a peer link was made for one that came */
    int64_t until = l->owner ? deadline_after(l->link_timeout_ns) : l->server ? INT64_MAX : l->open_until;
    for (;;) {
        int fd = l->owner    ? handoff_until(l, until)
                 : l->server ? psy_tcp_accept_until(l, until)
                             : psy_tcp_connect_until(l, until);
        if (fd < 0 && fd != -ECANCELED && bye_said(l)) /* the peer has everything: only our goodbye is lost */
            return receiver_exit(l, 0, NULL);
        if (fd < 0 && fd != -ECANCELED)
            return receiver_exit(l, fd, l->gen ? "the connection could not be restored in time" : "cannot connect");
        if (fd < 0)
            return receiver_exit(l, 0, NULL);
        bool fatal;
        int rc = psy_tcp_handshake(l, fd, &fatal);
        if (rc) {
            atomic_fetch_add_explicit(&l->protocol_errors, rc == -EPROTO || rc == -ECONNRESET, memory_order_relaxed);
            close(fd);
            if (fatal)
                return receiver_exit(l, rc, psyne_last_error());
            if (atomic_load(&l->stop))
                return receiver_exit(l, 0, NULL);
            if (!l->server && !l->owner) { /* refused (a full server) or cut: pause as after a refused connect */
                int why = rc == -ETIMEDOUT ? rc : -ECONNREFUSED;
                atomic_store_explicit(&l->last_attempt, why, memory_order_relaxed);
                if (until - psy_now_ns() <= 0)
                    return receiver_exit(l, why,
                                         "the server accepted the connection but did not complete the handshake "
                                         "(full: max_peers clients connected?)");
                psy_tcp_retry_pause(l, until);
            }
            continue; /* server: the next client; client: try again until `until` */
        }
        pthread_mutex_lock(&l->lock);
        if (l->gen)
            atomic_fetch_add_explicit(&l->reconnects, 1, memory_order_relaxed);
        go_live(l, fd);
        pthread_mutex_unlock(&l->lock);

        enum link_end how = psy_tcp_receive_loop(l, fd);
        go_dead(l, fd);
        pthread_mutex_lock(&l->lock);
        bool said_bye = l->bye_sent;
        int64_t linger_until = l->linger_until;
        pthread_mutex_unlock(&l->lock);
        static const char *const ends[] = {"broke",
                                           "was superseded by a newer one",
                                           "was closed by the peer",
                                           "ended with the peer's goodbye",
                                           "was closed here",
                                           "was dropped: the peer sent what no psyne peer sends"};
        psy_log(PSYNE_LOG_INFO, "tcp://%s: connection %llu %s%s", l->where, (unsigned long long)l->gen, ends[how],
                said_bye ? " (after our goodbye)" : "");
        /* BYE: the peer closed; STOP: we close; EOF after our BYE: the peer
         * has it. A break after our BYE: reconnect and say it again. */
        if (how == LINK_BYE || how == LINK_STOP || (said_bye && how == LINK_EOF) || atomic_load(&l->stop))
            return receiver_exit(l, 0, NULL);
        /* A client of a max_peers server that sent garbage is not waited
         * for: its slot is free at once (hostile clients that complete the
         * hello would otherwise hold every slot for link_timeout). A single
         * link waits for its peer to come back as after any break. */
        if (how == LINK_INVALID && l->owner)
            return receiver_exit(l, -EPROTO, "the client sent data no psyne peer sends: dropped");
        until = deadline_after(l->link_timeout_ns);
        /* After our BYE the peer had everything we sent: a break then (a
         * relay or NAT that resets, the peer's own close seen as a reset)
         * is restored only briefly, for a peer that missed the goodbye and
         * comes back to hear it. A peer that got it has ended and never
         * comes back, and waiting link_timeout for it would hold a close
         * for nothing. */
        if (said_bye && psy_now_ns() + BYE_RETRY_NS < until)
            until = psy_now_ns() + BYE_RETRY_NS;
        if (said_bye && linger_until < until)
            until = linger_until;
    }
}

/* ---- the link ---- */

static void link_close(struct psy_tcp_link *l, int64_t linger_ns);

static void link_free(struct psy_tcp_link *l)
{
    if (l->listen_fd >= 0)
        close(l->listen_fd);
    if (l->addr)
        freeaddrinfo(l->addr);
    psy_ring_destroy(&l->rx);
    psy_ring_destroy(&l->tx);
    if (l->sender_bell == &l->bell)
        psy_ring_destroy(&l->bell);
    if (l->stop_efd >= 0)
        close(l->stop_efd);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static int make_rings(struct psy_tcp_link *l, const struct psyne_options *opt)
{
    struct psyne_options o = *opt;
    bool mp = opt->mode == PSYNE_MODE_MPSC || opt->mode == PSYNE_MODE_MPMC;
    bool mc = opt->mode == PSYNE_MODE_SPMC || opt->mode == PSYNE_MODE_MPMC;
    o.mode = mp ? PSYNE_MODE_MPSC : PSYNE_MODE_SPSC; /* the sender thread is tx's one consumer */
    int rc = psy_ring_create(&l->tx, &o);
    if (rc)
        return rc;
    o.mode = mc ? PSYNE_MODE_SPMC : PSYNE_MODE_SPSC; /* the receiver thread is rx's one producer */
    if ((rc = psy_ring_create(&l->rx, &o))) {
        psy_ring_destroy(&l->tx);
        return rc;
    }
    l->rx.walk_counts = false; /* publish() counts what each recv completes; wire records are not messages */
    /* A user waiting on either ring waits for the link's threads: for data
     * the receiver thread reads (a socket read of the user's own does not
     * wait here), or for space the peer's ACKs free. With PSYNE_WAIT_SPIN
     * the wait yields every 64 polls so they can run (a stream with both
     * ends spinning went faster so, a ping-pong no slower). */
    l->tx.spin_yields = l->rx.spin_yields = true;
    psy_ring_reader_init(&l->tx, -1, &l->tx_reader);
    l->tx_base = atomic_load_explicit(l->tx_reader.head, memory_order_relaxed); /* stream offset 0 */
    atomic_store(&l->tx_sent, l->tx_base);
    atomic_store(&l->tx_offered, l->tx_base);
    atomic_store(&l->send_pos, l->tx_base);
    l->send_end = l->tx_base;
    l->max_send = PSYNE_MAX_MESSAGE(l->tx.cap);
    l->max_recv = PSYNE_MAX_MESSAGE(l->rx.cap);
    l->ack_eager = (l->rx.cap < l->tx.cap ? l->rx.cap : l->tx.cap) / 4;
    return 0;
}

/* A channel's link: its sender thread sleeps on a bell of its own, which
 * only work a user could not do rings, not on tx, which every commit would
 * ring (psy_tcp_committed). The bell is the smallest plain ring, for its
 * wait block; the thread sleeps at once (it is not the latency path), with
 * PSYNE_WAIT_SPIN too (psy_wait_loop_helper): a sender thread that spun on
 * its bell was awake whenever a user committed, so commits were left to it,
 * and with users spinning on every CPU it got a CPU only when the scheduler
 * took one from them (request/reply round trips took milliseconds). */
static int make_bell(struct psy_tcp_link *l, const struct psyne_options *opt)
{
    struct psyne_options sleep_at_once = *opt;
    sleep_at_once.spin_ns = 0;
    sleep_at_once.yield_ns = 0;
    int rc = psy_ring_create_bell(&l->bell, &sleep_at_once);
    if (rc == 0)
        l->sender_bell = &l->bell;
    return rc;
}

/* A link with its rings, no threads yet. */
static int link_new(const char *name, const struct psyne_options *opt, struct psy_tcp_link **out)
{
    if (opt->mode == PSYNE_MODE_BROADCAST)
        return psy_fail(-EINVAL, "tcp://%s: BROADCAST is not available over tcp://", name);
    struct psy_tcp_link *l = calloc(1, sizeof *l);
    if (!l)
        return psy_fail(-ENOMEM, "out of memory");
    l->fd = -1;
    l->listen_fd = -1;
    l->handoff_fd = -1;
    l->send_fd = -1;
    atomic_store(&l->rx_fd, -1);
    l->sender_bell = &l->tx;
    l->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    l->server = opt->flags & PSYNE_F_LISTEN;
    l->link_timeout_ns = opt->link_timeout_ns ? opt->link_timeout_ns : DEFAULT_LINK_TIMEOUT_NS;
    snprintf(l->where, sizeof l->where, "%s", name);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&l->lock, NULL);
    l->linger_until = INT64_MAX;
    int rc = l->stop_efd < 0 ? psy_fail(-errno, "tcp://%s: no eventfd", name) : make_rings(l, opt);
    if (rc) {
        link_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

static int start_threads(struct psy_tcp_link *l)
{
    int rc = -pthread_create(&l->sender, NULL, psy_tcp_sender_main, l);
    if (rc == 0) {
        l->sender_started = true;
        pthread_setname_np(l->sender, "psyne-tcp-send"); /* for top -H, perf, gdb; a failure is harmless */
    }
    if (rc == 0 && (rc = -pthread_create(&l->receiver, NULL, receiver_main, l)) == 0) {
        l->receiver_started = true;
        pthread_setname_np(l->receiver, "psyne-tcp-recv");
    }
    return rc;
}

int psy_tcp_peer_open(const char *where, const struct psyne_options *opt, struct psy_tcp_server *owner,
                      void (*poke)(struct psy_tcp_server *owner), struct psy_tcp_link **out)
{
    struct psy_tcp_link *l;
    int rc = link_new(where, opt, &l);
    if (rc)
        return rc;
    l->server = true;
    l->owner = owner;
    l->owner_poke = poke;
    if (!l->rx.mc)
        psy_ring_reader_init(&l->rx, -1, &l->rx_reader);
    if ((rc = start_threads(l))) {
        link_close(l, 0);
        return psy_fail(rc, "tcp://%s: cannot start the threads of a peer", where);
    }
    *out = l;
    return 0;
}

int psy_tcp_open(const char *name, const struct psyne_options *opt, struct psy_tcp_link **out)
{
    char host[256], port[32];
    int rc = psy_tcp_parse_address(name, opt->flags & PSYNE_F_LISTEN, host, sizeof host, port, sizeof port);
    if (rc)
        return rc;
    struct psy_tcp_link *l;
    if ((rc = link_new(name, opt, &l)))
        return rc;
    if ((rc = make_bell(l, opt))) {
        link_free(l);
        return rc;
    }
    int64_t open_ns = opt->open_timeout_ns ? opt->open_timeout_ns : DEFAULT_OPEN_TIMEOUT_NS;
    l->open_until = deadline_after(open_ns);
    if (l->server) {
        rc = psy_tcp_open_listener(name, host, port, &l->listen_fd);
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        int gai = getaddrinfo(host, port, &hints, &l->addr);
        if (gai)
            rc = psy_fail(gai == EAI_NONAME ? -EHOSTUNREACH : -EINVAL, "tcp://%s: %s", name, gai_strerror(gai));
        if (!rc && getrandom(&l->session, sizeof l->session, 0) != sizeof l->session)
            rc = psy_fail(-errno, "tcp://%s: no random session id", name);
        l->session |= 1; /* never 0 */
    }
    if (!rc)
        rc = start_threads(l);
    if (!rc && !l->server) { /* a client's open returns connected, or fails */
        pthread_mutex_lock(&l->lock);
        /* The receiver thread gives up at open_until and says why (ended);
         * its attempts never run past it, and open returns by then either
         * way (a handshake still under way then is abandoned by the close) */
        while (!l->gen && !l->ended && psy_now_ns() < l->open_until)
            wait_until(l, l->open_until);
        if (!l->gen) { /* why the thread gave up, or why its last attempt failed */
            int last = atomic_load_explicit(&l->last_attempt, memory_order_relaxed);
            rc = l->failure ? l->failure : last ? last : -ETIMEDOUT;
        }
        pthread_mutex_unlock(&l->lock);
        if (rc)
            psy_fail(rc, "tcp://%s: cannot connect: %s", name, strerror(-rc));
    }
    if (rc) {
        link_close(l, 0);
        return rc;
    }
    *out = l;
    return 0;
}

const struct psy_reader *psy_tcp_peer_reader(struct psy_tcp_link *l)
{
    return l->rx.mc ? NULL : &l->rx_reader;
}

bool psy_tcp_link_ended(struct psy_tcp_link *l)
{
    pthread_mutex_lock(&l->lock);
    bool ended = l->ended;
    pthread_mutex_unlock(&l->lock);
    return ended;
}

void psy_tcp_peer_pin(struct psy_tcp_link *l, int delta)
{
    atomic_fetch_add_explicit(&l->pins, delta, memory_order_acq_rel);
    if (delta < 0) { /* a claim ended (committed, aborted, failed): the sender looks (send_work_left) */
        atomic_fetch_add_explicit(&l->commits, 1, memory_order_release);
        psy_tcp_wake_sender(l);
    }
}

bool psy_tcp_peer_idle(struct psy_tcp_link *l)
{
    return atomic_load_explicit(&l->pins, memory_order_acquire) == 0 && psy_ring_in_use(&l->rx) == 0;
}

struct psy_ring *psy_tcp_rx(struct psy_tcp_link *l)
{
    return &l->rx;
}

struct psy_ring *psy_tcp_tx(struct psy_tcp_link *l)
{
    return &l->tx;
}

/* No more claims on tx; the sender thread (woken on its bell, which tx's
 * shutdown does not ring) finishes sending, waits for ACKs and says BYE. */
void psy_tcp_shutdown(struct psy_tcp_link *l)
{
    psy_ring_shutdown(&l->rx);
    wake_inline_readers(l);
    stop_sending(l);
    psy_tcp_acks_wanted(l); /* the sender finishes when the peer acknowledges everything */
}

/* Closes with linger_ns for the peer's acknowledgements (0: none). */
static void link_close(struct psy_tcp_link *l, int64_t linger_ns)
{
    pthread_mutex_lock(&l->lock);
    l->linger_until = deadline_after(linger_ns);
    pthread_mutex_unlock(&l->lock);
    stop_sending(l);
    psy_tcp_acks_wanted(l);
    /* The link ends when the peer has our BYE (or said its own), or fails;
     * a link that never connected and has nothing to send ends now. */
    pthread_mutex_lock(&l->lock);
    while (!l->ended && psy_now_ns() < l->linger_until && !(l->gen == 0 && psy_tcp_all_acked(l)))
        wait_until(l, psy_now_ns() + POLL_MS * 1000000ll);
    pthread_mutex_unlock(&l->lock);
    atomic_store(&l->stop, 1);
    pthread_mutex_lock(&l->lock);
    if (l->fd >= 0)
        shutdown(l->fd, SHUT_RDWR); /* the receiver's recv returns */
    end_link(l, 0, NULL);
    pthread_mutex_unlock(&l->lock);
    if (l->receiver_started)
        pthread_join(l->receiver, NULL);
    if (l->sender_started)
        pthread_join(l->sender, NULL);
    link_free(l);
}

void psy_tcp_close(struct psy_tcp_link *l)
{
    link_close(l, l->link_timeout_ns);
}

void psy_tcp_peer_close(struct psy_tcp_link *l)
{
    pthread_mutex_lock(&l->lock);
    bool down = l->fd < 0;
    pthread_mutex_unlock(&l->lock);
    /* a client away with nothing owed to it only misses the goodbye */
    link_close(l, down && psy_tcp_all_acked(l) ? 0 : l->link_timeout_ns);
}

void psy_tcp_peer_info(struct psy_tcp_link *l, uint32_t peer, struct psy_peer_info *out)
{
    memset(out, 0, sizeof *out);
    out->peer = peer;
    out->reconnects = atomic_load_explicit(&l->reconnects, memory_order_relaxed);
    out->protocol_errors = atomic_load_explicit(&l->protocol_errors, memory_order_relaxed);
    out->msgs_in = atomic_load_explicit(&l->rx.sh->cons.msgs, memory_order_relaxed);
    out->bytes_in = atomic_load_explicit(&l->rx.sh->cons.bytes, memory_order_relaxed);
    psy_ring_produced(&l->tx, &out->msgs_out, &out->bytes_out);
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    pthread_mutex_lock(&l->lock);
    out->connected = l->fd >= 0 && !l->ended;
    bool named = out->connected && getpeername(l->fd, (struct sockaddr *)&sa, &len) == 0;
    pthread_mutex_unlock(&l->lock);
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (named && getnameinfo((struct sockaddr *)&sa, len, host, sizeof host, port, sizeof port,
                             NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(out->addr, sizeof out->addr, sa.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
    else if (!l->server) /* a client names where it connects, connected or not */
        snprintf(out->addr, sizeof out->addr, "%.63s", l->where);
}

void psy_tcp_stats(struct psy_tcp_link *l, struct psyne_stats *st)
{
    st->tcp_reconnects = atomic_load_explicit(&l->reconnects, memory_order_relaxed);
    st->tcp_protocol_errors = atomic_load_explicit(&l->protocol_errors, memory_order_relaxed);
    st->tcp_send_calls = atomic_load_explicit(&l->send_calls, memory_order_relaxed);
    st->tcp_recv_calls = atomic_load_explicit(&l->recv_calls, memory_order_relaxed);
    pthread_mutex_lock(&l->lock);
    st->tcp_connected = l->fd >= 0 && !l->ended;
    pthread_mutex_unlock(&l->lock);
}
