/* SPDX-License-Identifier: MIT */
/*
 * server.c - a listening tcp:// channel that serves many clients at once
 * (psyne_options.max_peers > 0).
 *
 * Every client is a peer: a link of its own (link.h) with its own two rings
 * and threads, numbered from 1 in the order clients first came. The acceptor
 * thread accepts each connection, reads the client's hello and hands the
 * connection to the link of that session: a new session gets a new link, a
 * client that reconnects gets its own link back and resumes there (nothing
 * lost, nothing twice), so peers never share a stream.
 *
 * The user receives from all peers through one handle: a receive takes the
 * records of one peer (round robin, so a busy peer cannot starve the others)
 * and says whose they are (psyne_msg.peer); a reply goes to the peer named
 * (psyne_claim_to). A consumer that waits for any peer sleeps on `bell`, a
 * ring used only for its wait block: every link rings it when it publishes
 * records or ends (poke, a callback it was given), which costs a load when
 * nobody waits.
 *
 * Peer table: `lock` guards the slots. Receives and releases run under it,
 * so a link is only freed (by the acceptor, once it has ended, its records
 * are all released and no claim on it is open) when no call is using it.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../base/error.h"
#include "peer.h"
#include "wire.h"

#define ACCEPT_POLL_MS 50 /* how often the acceptor looks at `stop` and frees ended peers */

struct peer_slot {
    struct psy_tcp_link *link; /* NULL: free */
    uint64_t session;          /* the client's session id: where its reconnects go */
    uint32_t id;               /* psyne_msg.peer */
};

struct psy_tcp_server {
    struct psy_ring bell; /* wait block for "some peer has records" */
    char where[300];
    struct psyne_options opt; /* for the peers' links */
    uint64_t cap;             /* of every peer's rings: a client must receive PSYNE_MAX_MESSAGE(cap) */
    int listen_fd;
    pthread_t acceptor;
    bool acceptor_started;
    _Atomic int stop;

    pthread_mutex_t lock;
    struct peer_slot *slots;
    uint32_t n_slots;
    uint32_t next_id;   /* ids handed out so far */
    uint32_t next_slot; /* where the next receive starts looking */
    bool shut;          /* psyne_channel_shutdown: no new peers; receive ends once drained */

    /* Totals of freed peers (under lock), so statistics do not go backwards. */
    struct psyne_stats gone;
    _Atomic uint64_t refused; /* connections dropped: a bad hello, too many peers */
};

/* A link's callback: it published records or ended (peer.h). */
static void poke(struct psy_tcp_server *s)
{
    psy_wake_if_waiting(&s->bell, PSY_WAIT_DATA);
}

/* ---- the peer table (under lock) ---- */

static struct peer_slot *slot_of(struct psy_tcp_server *s, uint32_t id)
{
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].link && s->slots[i].id == id)
            return &s->slots[i];
    return NULL;
}

/* Adds what a link counted to *to (statistics of the channel). */
static void add_link_stats(struct psy_tcp_link *l, struct psyne_stats *to)
{
    struct psy_ring *rx = psy_tcp_rx(l), *tx = psy_tcp_tx(l);
    struct psyne_stats st = {0};
    psy_tcp_stats(l, &st);
    to->tcp_reconnects += st.tcp_reconnects;
    to->tcp_protocol_errors += st.tcp_protocol_errors;
    to->tcp_send_calls += st.tcp_send_calls;
    to->tcp_recv_calls += st.tcp_recv_calls;
    to->tcp_peers += st.tcp_connected;
    to->msgs_in += atomic_load_explicit(&rx->sh->cons.msgs, memory_order_relaxed);
    to->bytes_in += atomic_load_explicit(&rx->sh->cons.bytes, memory_order_relaxed);
    to->empty_events += atomic_load_explicit(&rx->sh->cons.empty_events, memory_order_relaxed);
    uint64_t msgs, bytes;
    psy_ring_produced(tx, &msgs, &bytes);
    to->msgs_out += msgs;
    to->bytes_out += bytes;
    to->full_events += atomic_load_explicit(&tx->sh->prod.full_events, memory_order_relaxed);
    to->waits += atomic_load_explicit(&tx->sh->slow.waits, memory_order_relaxed);
    to->wakeups += atomic_load_explicit(&tx->sh->slow.wakeups, memory_order_relaxed);
    to->in_use += psy_ring_in_use(rx);
}

/* Takes ended peers with nothing held out of the table; the caller closes
 * them after unlocking (closing joins their threads). Returns how many. */
static unsigned take_finished(struct psy_tcp_server *s, struct psy_tcp_link **out, unsigned max)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < s->n_slots && n < max; i++) {
        struct psy_tcp_link *l = s->slots[i].link;
        if (l && psy_tcp_link_ended(l) && psy_tcp_peer_idle(l)) {
            add_link_stats(l, &s->gone); /* ended and idle: adds no peer, nothing in use */
            s->slots[i].link = NULL;
            out[n++] = l;
        }
    }
    return n;
}

static void free_finished(struct psy_tcp_server *s)
{
    struct psy_tcp_link *done[16];
    unsigned n;
    do {
        pthread_mutex_lock(&s->lock);
        n = take_finished(s, done, 16);
        pthread_mutex_unlock(&s->lock);
        for (unsigned i = 0; i < n; i++)
            psy_tcp_close(done[i]); /* ended: returns once its threads are joined */
    } while (n == 16);
}

/* ---- accepting ---- */

static void refuse(struct psy_tcp_server *s, int fd, const char *why)
{
    atomic_fetch_add_explicit(&s->refused, 1, memory_order_relaxed);
    psy_log(PSYNE_LOG_WARN, "tcp://%s: client refused: %s", s->where, why);
    close(fd);
}

/* A connection whose hello was read: to the link of its session, or to a
 * new peer. Takes fd over. */
static void route(struct psy_tcp_server *s, int fd, const uint8_t *hello)
{
    struct psy_wire_hello h;
    const char *why;
    if (psy_wire_hello_decode(hello, PSYNE_MAX_MESSAGE(s->cap), &h, &why)) {
        refuse(s, fd, why);
        return;
    }
    pthread_mutex_lock(&s->lock);
    struct peer_slot *own = NULL, *free_slot = NULL;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        struct peer_slot *p = &s->slots[i];
        if (p->link && p->session == h.session && !psy_tcp_link_ended(p->link))
            own = p;
        else if (!p->link && !free_slot)
            free_slot = p;
    }
    if (own) { /* a client coming back (or retrying its first handshake) */
        psy_tcp_peer_connect(own->link, fd, hello);
    } else if (h.flags & PSY_WIRE_F_RESUME) {
        /* it resumes a stream we do not have (it ended, or we restarted):
         * answer without RESUME, so the client reports the lost session */
        uint8_t out[PSY_WIRE_HELLO_SIZE];
        psy_wire_hello_encode(out, PSYNE_MAX_MESSAGE(s->cap), h.session, 0, 0);
        (void)!send(fd, out, sizeof out, MSG_NOSIGNAL | MSG_DONTWAIT);
        refuse(s, fd, "it resumes a session this server does not have");
    } else if (s->shut) {
        refuse(s, fd, "the channel is shut down");
    } else if (!free_slot) {
        refuse(s, fd, "max_peers clients are connected already");
    } else {
        struct psy_tcp_link *l;
        uint32_t id = s->next_id + 1;
        if (psy_tcp_peer_open(s->where, &s->opt, s, poke, &l)) {
            refuse(s, fd, psyne_last_error());
        } else {
            s->next_id = id;
            *free_slot = (struct peer_slot){l, h.session, id};
            psy_tcp_peer_connect(l, fd, hello);
        }
    }
    pthread_mutex_unlock(&s->lock);
}

/* A connection whose hello is still coming. */
struct pending {
    int fd;
    int64_t until;
    size_t got;
    uint8_t hello[PSY_WIRE_HELLO_SIZE];
};
#define PENDING_MAX 32 /* hellos awaited at once; a new connection beyond drops the oldest */

/* Reads what came of p's hello; true when it is done with p (routed or
 * refused), whose slot is then free. */
static bool read_hello(struct psy_tcp_server *s, struct pending *p, bool readable, int64_t now)
{
    if (readable) {
        ssize_t n = recv(p->fd, p->hello + p->got, sizeof p->hello - p->got, MSG_DONTWAIT);
        if (n > 0 && (p->got += (size_t)n) == sizeof p->hello) {
            route(s, p->fd, p->hello);
            return true;
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            refuse(s, p->fd, "the connection ended before its hello");
            return true;
        }
    }
    if (now > p->until) {
        refuse(s, p->fd, "no hello in time");
        return true;
    }
    return false;
}

/*
 * Accepts connections and reads their hellos side by side, each with its
 * own deadline: a client that is slow to say hello (or never does) holds
 * up nobody else, and PENDING_MAX silent connections only push each other
 * out. A real client sends its hello as soon as it connects.
 */
static void *acceptor_main(void *arg)
{
    struct psy_tcp_server *s = arg;
    struct pending pend[PENDING_MAX];
    unsigned n = 0;
    while (!atomic_load(&s->stop)) {
        free_finished(s); /* before routing: an ended peer's slot is free */
        struct pollfd p[1 + PENDING_MAX];
        p[0] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
        for (unsigned i = 0; i < n; i++)
            p[1 + i] = (struct pollfd){.fd = pend[i].fd, .events = POLLIN};
        if (poll(p, 1 + n, ACCEPT_POLL_MS) < 0 && errno != EINTR)
            continue;
        int64_t now = psy_now_ns();
        for (unsigned i = n; i-- > 0;) /* from the end: the last one moves into a freed slot */
            if (read_hello(s, &pend[i], p[1 + i].revents != 0, now))
                pend[i] = pend[--n];
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        if (n == PENDING_MAX) { /* the one waiting longest goes */
            unsigned oldest = 0;
            for (unsigned i = 1; i < n; i++)
                if (pend[i].until < pend[oldest].until)
                    oldest = i;
            refuse(s, pend[oldest].fd, "too many connections without a hello");
            pend[oldest] = pend[--n];
        }
        pend[n++] = (struct pending){.fd = fd, .until = now + PSY_TCP_HELLO_TIMEOUT_MS * 1000000ll};
    }
    for (unsigned i = 0; i < n; i++)
        close(pend[i].fd);
    return NULL;
}

/* ---- the channel's calls ---- */

int psy_tcp_server_open(const char *name, const struct psyne_options *opt, struct psy_tcp_server **out)
{
    if (opt->mode == PSYNE_MODE_BROADCAST)
        return psy_fail(-EINVAL, "tcp://%s: BROADCAST is not available over tcp://", name);
    struct psy_tcp_server *s = calloc(1, sizeof *s);
    if (!s)
        return psy_fail(-ENOMEM, "out of memory");
    s->listen_fd = -1;
    snprintf(s->where, sizeof s->where, "%s", name);
    s->opt = *opt;
    s->opt.dynamic = NULL;
    s->n_slots = opt->max_peers;
    pthread_mutex_init(&s->lock, NULL);
    int rc = psy_ring_capacity(opt, &s->cap); /* max_peers was checked with the other options */
    if (!rc && !(s->slots = calloc(s->n_slots, sizeof *s->slots)))
        rc = psy_fail(-ENOMEM, "out of memory");
    if (!rc)
        rc = psy_ring_create_bell(&s->bell, opt); /* with the handle's waiting options */
    /* Messages come from the peers' receiver threads: a user who spins on
     * every CPU keeps them from running (with PSYNE_WAIT_SPIN on both ends
     * of a 2-CPU machine a ping-pong took milliseconds; a yield every 64
     * polls, which returns at once when no other thread is runnable, fixed
     * it). */
    s->bell.spin_yields = true;
    if (!rc)
        rc = psy_tcp_listen(name, &s->listen_fd);
    if (!rc && (rc = -pthread_create(&s->acceptor, NULL, acceptor_main, s)) == 0) {
        s->acceptor_started = true;
        pthread_setname_np(s->acceptor, "psyne-tcp-accpt");
    }
    if (rc) {
        psy_tcp_server_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

struct server_receive {
    struct psy_tcp_server *s;
    struct psyne_msg *msgs;
    unsigned max;
};

/* One look at every peer, starting after the one served last. */
static int receive_once(void *ctx)
{
    struct server_receive *t = ctx;
    struct psy_tcp_server *s = t->s;
    pthread_mutex_lock(&s->lock);
    int rc = -EAGAIN;
    bool live = false; /* some peer may still bring records */
    for (uint32_t k = 0; k < s->n_slots; k++) {
        uint32_t i = (s->next_slot + k) % s->n_slots;
        struct psy_tcp_link *l = s->slots[i].link;
        if (!l)
            continue;
        int n = psy_ring_receive(psy_tcp_rx(l), psy_tcp_peer_reader(l), t->msgs, t->max);
        if (n > 0) {
            for (int j = 0; j < n; j++)
                t->msgs[j].peer = s->slots[i].id;
            s->next_slot = (i + 1) % s->n_slots;
            rc = n;
            break;
        }
        if (n == -EPROTO) {
            rc = n;
            break;
        }
        live |= n != -EPIPE;
    }
    if (rc == -EAGAIN && s->shut && !live)
        rc = -EPIPE;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int psy_tcp_server_receive(struct psy_tcp_server *s, struct psyne_msg *msgs, unsigned max, int64_t timeout_ns)
{
    struct server_receive t = {s, msgs, max};
    int rc = receive_once(&t);
    if (rc != -EAGAIN || timeout_ns == PSYNE_NONBLOCK)
        return rc;
    return psy_wait_loop(&s->bell, PSY_WAIT_DATA, receive_once, &t, timeout_ns);
}

struct psy_ring *psy_tcp_server_bell(struct psy_tcp_server *s)
{
    return &s->bell;
}

int psy_tcp_server_release(struct psy_tcp_server *s, const struct psyne_msg *msgs, unsigned n)
{
    pthread_mutex_lock(&s->lock);
    struct peer_slot *p = slot_of(s, msgs[0].peer);
    int rc = -EINVAL;
    if (p) {
        struct psy_tcp_link *l = p->link;
        const struct psy_reader *rd = psy_tcp_peer_reader(l);
        rc = psy_ring_release(psy_tcp_rx(l), rd, msgs, n);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

struct psy_ring *psy_tcp_server_pin(struct psy_tcp_server *s, uint32_t peer)
{
    pthread_mutex_lock(&s->lock);
    struct peer_slot *p = slot_of(s, peer);
    if (p)
        psy_tcp_peer_pin(p->link, 1);
    pthread_mutex_unlock(&s->lock);
    return p ? psy_tcp_tx(p->link) : NULL;
}

struct psy_ring *psy_tcp_server_tx(struct psy_tcp_server *s, uint32_t peer)
{
    pthread_mutex_lock(&s->lock);
    struct peer_slot *p = slot_of(s, peer);
    pthread_mutex_unlock(&s->lock);
    return p ? psy_tcp_tx(p->link) : NULL; /* pinned: stays until unpinned */
}

void psy_tcp_server_unpin(struct psy_tcp_server *s, uint32_t peer)
{
    pthread_mutex_lock(&s->lock);
    struct peer_slot *p = slot_of(s, peer);
    if (p)
        psy_tcp_peer_pin(p->link, -1);
    pthread_mutex_unlock(&s->lock);
}

void psy_tcp_server_shutdown(struct psy_tcp_server *s)
{
    pthread_mutex_lock(&s->lock);
    s->shut = true;
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].link)
            psy_tcp_shutdown(s->slots[i].link);
    pthread_mutex_unlock(&s->lock);
    psy_ring_shutdown(&s->bell); /* a waiting receive looks again, and finds -EPIPE once drained */
}

void psy_tcp_server_close(struct psy_tcp_server *s)
{
    if (s->acceptor_started) {
        atomic_store(&s->stop, 1);
        pthread_join(s->acceptor, NULL);
    }
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    /* Every peer's sender drains and says BYE at once; then each is closed,
     * waiting (up to the link timeout) for its client's acknowledgements. */
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots && s->slots[i].link)
            psy_ring_shutdown(psy_tcp_tx(s->slots[i].link));
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots && s->slots[i].link)
            psy_tcp_peer_close(s->slots[i].link);
    if (s->bell.sh)
        psy_ring_destroy(&s->bell);
    pthread_mutex_destroy(&s->lock);
    free(s->slots);
    free(s);
}

unsigned psy_tcp_server_peers(struct psy_tcp_server *s, struct psy_peer_info *out, unsigned max)
{
    unsigned n = 0;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < s->n_slots; i++) {
        if (!s->slots[i].link)
            continue;
        if (n < max)
            psy_tcp_peer_info(s->slots[i].link, s->slots[i].id, &out[n]);
        n++;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

void psy_tcp_server_stats(struct psy_tcp_server *s, struct psyne_stats *st)
{
    pthread_mutex_lock(&s->lock);
    struct psyne_stats sum = s->gone;
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slots[i].link)
            add_link_stats(s->slots[i].link, &sum);
    pthread_mutex_unlock(&s->lock);
    st->capacity = s->cap;
    st->mode = s->opt.mode;
    st->in_use = sum.in_use;
    st->msgs_in = sum.msgs_in;
    st->bytes_in = sum.bytes_in;
    st->empty_events = sum.empty_events;
    st->msgs_out = sum.msgs_out;
    st->bytes_out = sum.bytes_out;
    st->full_events = sum.full_events;
    st->waits = sum.waits + atomic_load_explicit(&s->bell.sh->slow.waits, memory_order_relaxed);
    st->wakeups = sum.wakeups + atomic_load_explicit(&s->bell.sh->slow.wakeups, memory_order_relaxed);
    st->tcp_reconnects = sum.tcp_reconnects;
    st->tcp_protocol_errors = sum.tcp_protocol_errors + atomic_load_explicit(&s->refused, memory_order_relaxed);
    st->tcp_send_calls = sum.tcp_send_calls;
    st->tcp_recv_calls = sum.tcp_recv_calls;
    st->tcp_peers = sum.tcp_peers;
    st->tcp_connected = sum.tcp_peers > 0;
}
