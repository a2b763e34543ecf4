/*
 * tcp.c - the tcp:// transport: one TCP connection per channel handle,
 * carrying messages both ways with nothing lost across reconnects.
 *
 * A link has two rings of this process and two threads:
 *   tx  the user produces into it; the sender thread writes whole ranges of
 *       committed records to the socket straight from ring memory (one
 *       sendmsg per range, an ACK record in front when one is due), and frees
 *       them only when the peer acknowledges them.
 *   rx  the receiver thread recv()s straight into its free space (contiguous
 *       thanks to the mirror), checks every header (tcp_wire.c) and publishes
 *       whole records as the ring's single producer; the user consumes.
 *
 * Receiving in place: a record becomes visible to the ring's consumers when
 * its header is stored (ring.h), but recv() writes headers as bytes arrive.
 * So the header of the first record not yet published (at `frontier`) is
 * never received into the ring: its bytes go into `stash` (the first iovec of
 * recvmsg), the rest of the stream into the ring after it. When records are
 * whole, the bytes at the end of the last whole one are moved to the stash,
 * and psy_sp_publish() zeroes them (the terminator) and stores the first
 * header with release: the records appear all at once, a partial one never.
 *
 * Connections: the receiver thread owns them. A client connects (retrying
 * with backoff), a server accepts; both exchange hellos (tcp_wire.h) that
 * carry the offset each side has received, and the sender resumes its stream
 * from the peer's offset. A broken connection is retried (client) or waited
 * for (server) for link_timeout_ns; then the link fails and both rings shut
 * down. The sender thread only writes to the connection the receiver thread
 * hands it, and lets go of it before the receiver thread closes it.
 *
 * A listening channel with max_peers serves many clients (tcp_server.c): it
 * accepts and reads each hello itself, and hands the connection to the link
 * of that client's session (a peer link, `owner` set), which then works as
 * above but never touches the listening socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../core/error.h"
#include "../ring/fastpath.h"
#include "tcp_link.h"
#include "tcp_wire.h"
#include "transport.h"

#define DEFAULT_LINK_TIMEOUT_NS (10 * 1000000000ll)
#define DEFAULT_OPEN_TIMEOUT_NS (5 * 1000000000ll)
#define HANDSHAKE_TIMEOUT_MS 5000
#define POLL_MS 50                        /* how often blocked threads look at `stop` */
#define IDLE_CHECK_MS 200                 /* a receive that waits this long looks for a newer client */
#define KEEPALIVE_IDLE_S 2                /* an idle connection is probed after this long, */
#define KEEPALIVE_INTERVAL_S 1            /* then every second, */
#define KEEPALIVE_PROBES 5                /* and declared dead after this many unanswered */
#define SEND_MAX ((uint64_t)4 << 20)      /* bytes per sendmsg: keeps ACKs flowing */
#define CONTROL_DROP_MAX_SHIFT 4096       /* publish(): bytes moved to drop trailing control records */

enum link_end { LINK_BROKEN, LINK_SUPERSEDED, LINK_EOF, LINK_BYE, LINK_STOP };

struct psy_tcp_link {
    struct psy_ring rx;          /* the peer's messages */
    struct psy_ring tx;          /* ours, until the peer acknowledges them */
    struct psy_reader tx_reader; /* the sender thread's consumer state of tx */
    bool server;
    int listen_fd;
    struct addrinfo *addr;       /* where to connect (client) */
    char where[300];             /* host:port, for messages */
    int64_t link_timeout_ns;     /* PSYNE_FOREVER: no limit */
    uint64_t max_send, max_recv; /* largest message of tx and of rx */
    uint64_t session;            /* the client's id of this stream */
    struct psy_tcp_server *owner; /* a multi-peer server's link: it hands us connections */
    pthread_t sender, receiver;
    bool sender_started, receiver_started;

    /* Connection hand-over, guarded by lock and signalled on cond. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int fd;              /* the connection, -1 when none */
    uint64_t gen;        /* connections established so far */
    uint64_t sender_using; /* the gen whose connection the sender writes to, 0: none */
    uint64_t resume_tx;  /* tx position the sender starts at on connection gen */
    uint64_t hello_rx;   /* the rx offset our hello carried on connection gen */
    bool ended;          /* the link is over: peer said BYE, it failed, or close */
    bool bye_sent;
    int failure;         /* why it ended, when it failed: -errno */
    int64_t linger_until; /* close: the sender gives up on unacknowledged data then */
    int64_t open_until;   /* a client's first connection must be made by then */
    int handoff_fd;       /* owned link: the owner's next connection for us, -1: none */
    uint8_t handoff_hello[PSY_WIRE_HELLO_SIZE]; /* its hello, read by the owner */
    _Atomic uint64_t live;  /* gen of the connection the sender may use, 0: none */
    _Atomic int stop;

    /* Acknowledgements, between the two threads. */
    _Atomic uint64_t peer_acked; /* tx position the peer has everything before */
    _Atomic uint64_t ack_due;    /* rx stream offset to acknowledge */
    _Atomic uint64_t tx_sent;    /* furthest tx position written to a connection */
    uint64_t tx_base;            /* tx position of stream offset 0 (receiver thread) */
    uint64_t rx_stream;          /* rx stream offset received (receiver thread) */

    /* Receiving in place (receiver thread). */
    uint64_t frontier; /* rx position of the first record not yet published */
    uint64_t have;     /* bytes received from there: the stash, then the ring */
    uint64_t stash;    /* the first 8 of them: the header kept out of the ring */

    _Atomic uint64_t reconnects, protocol_errors, send_calls, recv_calls;
    _Atomic int pins;   /* owned link: claims open on tx (the owner frees no link with any) */
    struct psy_reader rx_reader; /* owned link in an SC mode: the owner's consumer state of rx */
};

static int64_t deadline_after(int64_t ns)
{
    return ns == PSYNE_FOREVER ? INT64_MAX : psy_now_ns() + ns;
}

static void wait_until(struct psy_tcp_link *l, int64_t until_ns)
{
    if (until_ns == INT64_MAX) {
        pthread_cond_wait(&l->cond, &l->lock);
        return;
    }
    struct timespec ts = {.tv_sec = until_ns / 1000000000, .tv_nsec = until_ns % 1000000000};
    pthread_cond_timedwait(&l->cond, &l->lock, &ts);
}

/* Ends the link (under l->lock): no more connections; both rings shut down
 * so the user's calls return -EPIPE once the received messages are drained. */
static void end_link(struct psy_tcp_link *l, int failure, const char *why)
{
    if (!l->ended) {
        l->ended = true;
        l->failure = failure;
        if (failure && why && strncmp(why, "tcp://", 6) == 0) /* a psy_fail message: says where already */
            fprintf(stderr, "psyne: %s\n", why);
        else if (failure && why)
            fprintf(stderr, "psyne: tcp://%s: %s\n", l->where, why);
    }
    /* tx first: a user who sees rx end (-EPIPE) then finds claims failing too */
    psy_ring_shutdown(&l->tx);
    psy_ring_shutdown(&l->rx);
    pthread_cond_broadcast(&l->cond);
}

static void wake_sender(struct psy_tcp_link *l)
{
    psy_wake_if_waiting(&l->tx, PSY_WAIT_DATA);
}

/* ---- sockets ---- */

static int parse_address(const char *name, bool server, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon = strrchr(name, ':');
    if (!colon || (colon == name && !server) || !colon[1])
        return psy_fail(-EINVAL, "tcp://%s: expected tcp://host:port", name);
    size_t hl = (size_t)(colon - name);
    if (hl >= 2 && name[0] == '[' && name[hl - 1] == ']') { /* [v6 address] */
        name++;
        hl -= 2;
    }
    if (hl >= hostlen || strlen(colon + 1) >= portlen)
        return psy_fail(-EINVAL, "tcp://%s: host or port too long", name);
    memcpy(host, name, hl);
    host[hl] = 0;
    strcpy(port, colon + 1);
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            return psy_fail(-EINVAL, "tcp://%s: the port must be a number", name);
    return 0;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int open_listener(const char *where, const char *host, const char *port, int *out)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    bool any = !host[0] || strcmp(host, "*") == 0;
    int gai = getaddrinfo(any ? NULL : host, port, &hints, &res);
    if (gai)
        return psy_fail(-EINVAL, "tcp://%s: %s", where, gai_strerror(gai));
    int rc = -EADDRNOTAVAIL;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 16) == 0) {
            *out = fd;
            rc = 0;
            break;
        }
        rc = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    return rc ? psy_fail(rc, "tcp://%s: cannot listen: %s", where, strerror(-rc)) : 0;
}

int psy_tcp_listen(const char *name, int *fd)
{
    char host[256], port[32];
    int rc = parse_address(name, true, host, sizeof host, port, sizeof port);
    return rc ? rc : open_listener(name, host, port, fd);
}

/* One connect attempt, giving up after timeout_ms. Returns fd or -errno. */
static int connect_once(const struct addrinfo *a, int timeout_ms)
{
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : -errno;
    if (rc == -EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n = poll(&p, 1, timeout_ms);
        socklen_t len = sizeof rc;
        if (n == 0)
            rc = -ETIMEDOUT;
        else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &rc, &len) < 0)
            rc = -errno;
        else
            rc = -rc;
    }
    if (rc) {
        close(fd);
        return rc;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

/* Client: connects, retrying with backoff until `until` (psy_now_ns). */
static int connect_until(struct psy_tcp_link *l, int64_t until)
{
    int64_t backoff_ms = 1;
    int last = -ETIMEDOUT;
    for (;;) {
        for (const struct addrinfo *a = l->addr; a && !atomic_load(&l->stop); a = a->ai_next) {
            int fd = connect_once(a, 1000);
            if (fd >= 0)
                return fd;
            last = fd;
        }
        if (atomic_load(&l->stop))
            return -ECANCELED;
        if (psy_now_ns() + backoff_ms * 1000000 > until)
            return last;
        struct timespec ts = {.tv_sec = backoff_ms / 1000, .tv_nsec = backoff_ms % 1000 * 1000000};
        nanosleep(&ts, NULL);
        backoff_ms = backoff_ms * 2 > 200 ? 200 : backoff_ms * 2;
    }
}

/* Server: the next client, or -ETIMEDOUT after `until`, -ECANCELED on stop. */
static int accept_until(struct psy_tcp_link *l, int64_t until)
{
    for (;;) {
        if (atomic_load(&l->stop))
            return -ECANCELED;
        if (psy_now_ns() > until)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = l->listen_fd, .events = POLLIN};
        if (poll(&p, 1, POLL_MS) <= 0)
            continue;
        int fd = accept4(l->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
    }
}

/* Writes all of iov[0..n) (modifies iov). Returns 0 or -errno. */
static int send_all(struct psy_tcp_link *l, int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
        atomic_fetch_add_explicit(&l->send_calls, 1, memory_order_relaxed);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static void set_timeouts(int fd, int recv_ms, int send_ms)
{
    struct timeval rtv = {.tv_sec = recv_ms / 1000, .tv_usec = recv_ms % 1000 * 1000};
    struct timeval stv = {.tv_sec = send_ms / 1000, .tv_usec = send_ms % 1000 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rtv, sizeof rtv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stv, sizeof stv);
}

/* A peer whose host died, or whose reset was lost, leaves a connection that
 * looks alive. Keepalive probes find it out when the connection is idle
 * (about KEEPALIVE_IDLE_S + KEEPALIVE_PROBES s); with data in flight the
 * kernel's retransmissions do. No TCP_USER_TIMEOUT: it would also end a
 * connection whose receiver merely stopped reading (zero window), and that is
 * backpressure, not a failure. */
static void set_keepalive(int fd)
{
    int on = 1, idle = KEEPALIVE_IDLE_S, interval = KEEPALIVE_INTERVAL_S, probes = KEEPALIVE_PROBES;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

/* The handshake's read: all of len within HANDSHAKE_TIMEOUT_MS (a silent
 * peer must not hold the link), looking at `stop` every POLL_MS. */
int psy_tcp_recv_hello(int fd, _Atomic int *stop, void *buf, size_t len)
{
    int64_t until = psy_now_ns() + HANDSHAKE_TIMEOUT_MS * 1000000ll;
    for (size_t got = 0; got < len;) {
        if (atomic_load(stop))
            return -ECANCELED;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, POLL_MS);
        if (ready == 0) {
            if (psy_now_ns() > until)
                return -ETIMEDOUT;
            continue;
        }
        ssize_t n = ready < 0 ? -1 : recv(fd, (uint8_t *)buf + got, len - got, 0);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    return 0;
}

/* ---- the handshake ---- */

/* Exchanges hellos on a new connection and decides where both streams
 * resume. Returns 0, or -EPROTO (a bad or incompatible peer; *fatal when
 * retrying cannot help) or another -errno. Receiver thread. */
static int handshake(struct psy_tcp_link *l, int fd, bool *fatal)
{
    *fatal = false;
    set_timeouts(fd, HANDSHAKE_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS); /* a peer that does not read must not hold us */
    bool resuming = l->gen > 0;
    uint8_t out[PSY_WIRE_HELLO_SIZE], in[PSY_WIRE_HELLO_SIZE];
    struct psy_wire_hello h;
    const char *why;
    int rc;
    if (!l->server) {
        psy_wire_hello_encode(out, l->max_recv, l->session, l->rx_stream, resuming ? PSY_WIRE_F_RESUME : 0);
        struct iovec iov = {out, sizeof out};
        if ((rc = send_all(l, fd, &iov, 1)) || (rc = psy_tcp_recv_hello(fd, &l->stop, in, sizeof in)))
            return rc;
        if ((rc = psy_wire_hello_decode(in, l->max_send, &h, &why))) {
            *fatal = true;
            return psy_fail(rc, "tcp://%s: %s", l->where, why);
        }
        if (h.session != l->session || (resuming && !(h.flags & PSY_WIRE_F_RESUME))) {
            *fatal = true; /* the server lost our stream (it restarted): say so */
            return psy_fail(-ECONNRESET, "tcp://%s: the server does not know this session any more", l->where);
        }
    } else {
        if (l->owner) /* the owner read it to find this link */
            memcpy(in, l->handoff_hello, sizeof in);
        else if ((rc = psy_tcp_recv_hello(fd, &l->stop, in, sizeof in)))
            return rc;
        if ((rc = psy_wire_hello_decode(in, l->max_send, &h, &why)))
            return psy_fail(rc, "tcp://%s: client rejected: %s", l->where, why);
        /* A client that never completed a handshake asks afresh (no RESUME),
         * even with the session id of an attempt that we saw: it has sent
         * nothing, and what we sent it is still unacknowledged. */
        bool same = resuming && h.session == l->session && (h.flags & PSY_WIRE_F_RESUME);
        if ((h.flags & PSY_WIRE_F_RESUME) && !same) {
            /* it wants a stream we do not have: tell it (no RESUME), drop it */
            psy_wire_hello_encode(out, l->max_recv, h.session, 0, 0);
            struct iovec iov = {out, sizeof out};
            send_all(l, fd, &iov, 1);
            return psy_fail(-EPROTO, "tcp://%s: a client asked to resume an unknown session", l->where);
        }
        if (!same) { /* a new client: a new stream both ways, from what is unacknowledged */
            l->session = h.session;
            l->tx_base = atomic_load_explicit(l->tx_reader.head, memory_order_relaxed);
            l->rx_stream = 0;
        }
        psy_wire_hello_encode(out, l->max_recv, h.session, l->rx_stream, same ? PSY_WIRE_F_RESUME : 0);
        struct iovec iov = {out, sizeof out};
        if ((rc = send_all(l, fd, &iov, 1)))
            return rc;
    }
    /* The peer has received h.rx_offset bytes of our stream: resume there.
     * It cannot be behind what it acknowledged (freed) or ahead of what we sent. */
    uint64_t resume = l->tx_base + h.rx_offset;
    uint64_t freed = atomic_load_explicit(l->tx_reader.head, memory_order_relaxed);
    if (resume - freed > atomic_load(&l->tx_sent) - freed)
        return psy_fail(-EPROTO, "tcp://%s: the peer resumes at an offset we never sent", l->where);
    /* a server's receive_loop looks for a newer client when idle; a client has nothing to look for */
    set_timeouts(fd, l->server ? IDLE_CHECK_MS : 0, 0);
    set_nodelay(fd);
    set_keepalive(fd);
    l->resume_tx = resume;
    l->hello_rx = l->rx_stream;
    return 0;
}

/* ---- receiving (receiver thread) ---- */

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
        if (l->owner) /* its consumer may wait on all peers at once */
            psy_tcp_server_poke(l->owner);
    }
    l->frontier = keep;
    l->have = rest;
    if (s->stream) {
        l->rx_stream += s->stream;
        atomic_store_explicit(&l->ack_due, l->rx_stream, memory_order_release);
        wake_sender(l);
    }
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

static enum link_end receive_loop(struct psy_tcp_link *l, int fd)
{
    struct psy_ring *r = &l->rx;
    for (;;) {
        if (atomic_load_explicit(&l->stop, memory_order_relaxed))
            return LINK_STOP;
        uint64_t head = psy_ring_refresh_head(r);
        uint64_t limit = head + r->cap - PSY_TERMINATOR; /* the terminator after the last record fits */
        uint64_t from = l->frontier + (l->have > 8 ? l->have : 8);
        struct iovec iov[2];
        int n = 0;
        /* The stash takes bytes only while the header could be published
         * where it stands: a record of header alone (an empty message, a
         * pad of 0) is whole in the stash, and its terminator goes after it. */
        if (l->have < 8 && limit >= from)
            iov[n++] = (struct iovec){(uint8_t *)&l->stash + l->have, 8 - l->have};
        if (limit > from) /* from may be any byte: r->mask keeps only 8-aligned offsets */
            iov[n++] = (struct iovec){r->data + (from & (r->cap - 1)), limit - from};
        if (n == 0) { /* full: wait for the consumer (TCP holds the peer back) */
            struct space_try t = {l, head + 1};
            int rc = psy_wait_loop(r, PSY_WAIT_SPACE, space_once, &t, POLL_MS * 1000000ll);
            if (rc == -EPIPE)
                return LINK_STOP;
            if (rc == -ETIMEDOUT && newer_client_waiting(l))
                return LINK_SUPERSEDED;
            continue;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t got = recvmsg(fd, &mh, 0);
        atomic_fetch_add_explicit(&l->recv_calls, 1, memory_order_relaxed);
        if (got <= 0) {
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { /* IDLE_CHECK_MS of silence */
                if (newer_client_waiting(l))
                    return LINK_SUPERSEDED;
                continue;
            }
            return got == 0 ? LINK_EOF : LINK_BROKEN; /* EOF: the peer closed in order */
        }
        l->have += (uint64_t)got;
        if (l->have < 8)
            continue;
        uint64_t first = l->stash;
        struct psy_wire_scan s;
        const char *why;
        int rc = psy_wire_scan(&first, r->data + (l->frontier & r->mask), l->have, l->max_recv, &s, &why);
        if (s.complete)
            publish(l, first, &s);
        if (s.has_ack) {
            uint64_t acked = l->tx_base + s.ack;
            uint64_t prev = atomic_load_explicit(&l->peer_acked, memory_order_relaxed);
            if (acked - prev < (uint64_t)1 << 62 && acked != prev) {
                atomic_store_explicit(&l->peer_acked, acked, memory_order_release);
                wake_sender(l);
            }
        }
        if (rc) {
            atomic_fetch_add_explicit(&l->protocol_errors, 1, memory_order_relaxed);
            psy_fail(rc, "tcp://%s: %s: connection dropped", l->where, why);
            fprintf(stderr, "psyne: tcp://%s: %s: connection dropped\n", l->where, why);
            return LINK_BROKEN;
        }
        if (s.bye)
            return LINK_BYE;
    }
}

/* Hands a new connection to the sender (under l->lock). */
static void go_live(struct psy_tcp_link *l, int fd)
{
    l->fd = fd;
    l->gen++;
    l->have = 0; /* a partial record of the old connection comes again */
    l->stash = 0;
    atomic_store_explicit(&l->ack_due, l->hello_rx, memory_order_relaxed);
    atomic_store_explicit(&l->peer_acked, l->resume_tx, memory_order_relaxed);
    atomic_store_explicit(&l->live, l->gen, memory_order_release);
    pthread_cond_broadcast(&l->cond);
    psy_wake_slow(&l->tx, PSY_WAIT_DATA);
}

/* Takes the connection away from the sender and closes it. */
static void go_dead(struct psy_tcp_link *l, int fd)
{
    shutdown(fd, SHUT_RDWR); /* a sender blocked in sendmsg returns */
    pthread_mutex_lock(&l->lock);
    atomic_store_explicit(&l->live, 0, memory_order_release); /* the sender cannot take it any more */
    psy_wake_slow(&l->tx, PSY_WAIT_DATA);
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
    if (l->owner) /* its consumer sees this peer end */
        psy_tcp_server_poke(l->owner);
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

static void *receiver_main(void *arg)
{
    struct psy_tcp_link *l = arg;
    /* a server waits for its first client; a peer link was made for one that came */
    int64_t until = l->owner ? deadline_after(l->link_timeout_ns) : l->server ? INT64_MAX : l->open_until;
    for (;;) {
        int fd = l->owner ? handoff_until(l, until) : l->server ? accept_until(l, until) : connect_until(l, until);
        if (fd < 0 && fd != -ECANCELED)
            return receiver_exit(l, fd, l->gen ? "the connection could not be restored in time" : "cannot connect");
        if (fd < 0)
            return receiver_exit(l, 0, NULL);
        bool fatal;
        int rc = handshake(l, fd, &fatal);
        if (rc) {
            atomic_fetch_add_explicit(&l->protocol_errors, rc == -EPROTO || rc == -ECONNRESET, memory_order_relaxed);
            close(fd);
            if (fatal)
                return receiver_exit(l, rc, psyne_last_error());
            if (atomic_load(&l->stop))
                return receiver_exit(l, 0, NULL);
            continue; /* server: the next client; client: try again until `until` */
        }
        pthread_mutex_lock(&l->lock);
        if (l->gen)
            atomic_fetch_add_explicit(&l->reconnects, 1, memory_order_relaxed);
        go_live(l, fd);
        pthread_mutex_unlock(&l->lock);

        enum link_end how = receive_loop(l, fd);
        go_dead(l, fd);
        pthread_mutex_lock(&l->lock);
        bool said_bye = l->bye_sent;
        int64_t linger_until = l->linger_until;
        pthread_mutex_unlock(&l->lock);
        /* BYE: the peer closed; STOP: we close; EOF after our BYE: the peer
         * has it. A break after our BYE: reconnect and say it again. */
        if (how == LINK_BYE || how == LINK_STOP || (said_bye && how == LINK_EOF) || atomic_load(&l->stop))
            return receiver_exit(l, 0, NULL);
        until = deadline_after(l->link_timeout_ns);
        if (said_bye && linger_until < until)
            until = linger_until;
    }
}

/* ---- sending (sender thread) ---- */

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
static bool all_acked(struct psy_tcp_link *l)
{
    uint64_t head = atomic_load_explicit(l->tx_reader.head, memory_order_relaxed);
    return committed_end(&l->tx, head) == head;
}

struct sender_try {
    struct psy_tcp_link *l;
    uint64_t gen, pos, freed, ack_sent;
};

/* Something for the sender to do: records, an ACK to send or to act on, or
 * the connection went away. */
static int sender_once(void *ctx)
{
    struct sender_try *t = ctx;
    struct psy_tcp_link *l = t->l;
    if (atomic_load_explicit(psy_hdr_at(&l->tx, t->pos), memory_order_acquire) != 0 ||
        atomic_load_explicit(&l->ack_due, memory_order_acquire) != t->ack_sent ||
        atomic_load_explicit(&l->peer_acked, memory_order_acquire) != t->freed ||
        atomic_load_explicit(&l->live, memory_order_acquire) != t->gen || atomic_load(&l->stop))
        return 0;
    return psy_ring_closed(&l->tx) ? -EPIPE : -EAGAIN;
}

/* Frees what the peer acknowledged. */
static void free_acked(struct psy_tcp_link *l, struct sender_try *t)
{
    uint64_t acked = atomic_load_explicit(&l->peer_acked, memory_order_acquire);
    uint64_t head = atomic_load_explicit(l->tx_reader.head, memory_order_relaxed);
    if (acked != head && acked - head <= t->pos - head)
        psy_sc_release(&l->tx, &l->tx_reader, acked);
    t->freed = acked;
}

/* Sends on one connection until it breaks, the link stops, or (after close)
 * everything is acknowledged and BYE is sent. Returns true after BYE. */
static bool send_on(struct psy_tcp_link *l, int fd, uint64_t gen, uint64_t resume, uint64_t hello_rx)
{
    struct psy_ring *r = &l->tx;
    /* our hello told the peer what we had received: no ACK due for that */
    struct sender_try t = {.l = l, .gen = gen, .pos = resume, .ack_sent = hello_rx};
    atomic_store_explicit(l->tx_reader.read_pos, t.pos, memory_order_relaxed);
    for (;;) {
        if (atomic_load_explicit(&l->live, memory_order_acquire) != gen || atomic_load(&l->stop))
            return false;
        free_acked(l, &t);
        uint64_t end = committed_end(r, t.pos);
        uint64_t due = atomic_load_explicit(&l->ack_due, memory_order_acquire);
        uint8_t ack[PSY_WIRE_ACK_SIZE];
        struct iovec iov[2];
        int n = 0;
        if (due != t.ack_sent) {
            uint64_t hdr = psy_hdr_make(8, PSY_TYPE_WIRE_ACK);
            memcpy(ack, &hdr, 8);
            memcpy(ack + 8, &due, 8);
            iov[n++] = (struct iovec){ack, sizeof ack};
        }
        if (end != t.pos)
            iov[n++] = (struct iovec){r->data + (t.pos & r->mask), end - t.pos};
        if (n) {
            if (send_all(l, fd, iov, n))
                return false; /* the receiver thread sees it too and reconnects */
            t.ack_sent = due;
            t.pos = end;
            atomic_store_explicit(l->tx_reader.read_pos, end, memory_order_relaxed);
            uint64_t sent = atomic_load_explicit(&l->tx_sent, memory_order_relaxed);
            if (end - sent < (uint64_t)1 << 62)
                atomic_store_explicit(&l->tx_sent, end, memory_order_release);
            continue;
        }
        if (!psy_ring_closed(r)) {
            psy_wait_loop(r, PSY_WAIT_DATA, sender_once, &t, POLL_MS * 1000000ll);
            continue;
        }
        /* Closing: everything is sent; wait for the peer to have it, then BYE. */
        free_acked(l, &t);
        if (atomic_load_explicit(l->tx_reader.head, memory_order_relaxed) == t.pos) {
            pthread_mutex_lock(&l->lock);
            l->bye_sent = true; /* before it goes: the peer's close that follows is no break */
            pthread_mutex_unlock(&l->lock);
            uint64_t hdr = psy_hdr_make(0, PSY_TYPE_WIRE_BYE);
            iov[0] = (struct iovec){&hdr, sizeof hdr};
            if (send_all(l, fd, iov, 1))
                return false;
            return true;
        }
        pthread_mutex_lock(&l->lock);
        bool give_up = psy_now_ns() > l->linger_until;
        if (!give_up)
            wait_until(l, psy_now_ns() + 1000000); /* the receiver signals each ACK's wake on tx */
        pthread_mutex_unlock(&l->lock);
        if (give_up)
            return true;
    }
}

static void *sender_main(void *arg)
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
    psy_ring_reader_init(&l->tx, -1, &l->tx_reader);
    l->tx_base = atomic_load_explicit(l->tx_reader.head, memory_order_relaxed); /* stream offset 0 */
    atomic_store(&l->tx_sent, l->tx_base);
    l->max_send = PSYNE_MAX_MESSAGE(l->tx.cap);
    l->max_recv = PSYNE_MAX_MESSAGE(l->rx.cap);
    return 0;
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
    int rc = make_rings(l, opt);
    if (rc) {
        link_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

static int start_threads(struct psy_tcp_link *l)
{
    int rc = -pthread_create(&l->sender, NULL, sender_main, l);
    if (rc == 0)
        l->sender_started = true;
    if (rc == 0 && (rc = -pthread_create(&l->receiver, NULL, receiver_main, l)) == 0)
        l->receiver_started = true;
    return rc;
}

int psy_tcp_peer_open(const char *where, const struct psyne_options *opt, struct psy_tcp_server *owner,
                      struct psy_tcp_link **out)
{
    struct psy_tcp_link *l;
    int rc = link_new(where, opt, &l);
    if (rc)
        return rc;
    l->server = true;
    l->owner = owner;
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
    int rc = parse_address(name, opt->flags & PSYNE_F_LISTEN, host, sizeof host, port, sizeof port);
    if (rc)
        return rc;
    struct psy_tcp_link *l;
    if ((rc = link_new(name, opt, &l)))
        return rc;
    int64_t open_ns = opt->open_timeout_ns ? opt->open_timeout_ns : DEFAULT_OPEN_TIMEOUT_NS;
    l->open_until = deadline_after(open_ns);
    if (l->server) {
        rc = open_listener(name, host, port, &l->listen_fd);
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
        /* the receiver thread gives up at open_until and says why (ended) */
        int64_t grace = l->open_until == INT64_MAX ? INT64_MAX : l->open_until + 2000000000ll;
        while (!l->gen && !l->ended && psy_now_ns() < grace)
            wait_until(l, grace);
        if (!l->gen)
            rc = l->failure ? l->failure : -ETIMEDOUT;
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

void psy_tcp_shutdown(struct psy_tcp_link *l)
{
    psy_ring_shutdown(&l->rx);
    psy_ring_shutdown(&l->tx); /* the sender finishes sending and says BYE */
}

/* Closes with linger_ns for the peer's acknowledgements (0: none). */
static void link_close(struct psy_tcp_link *l, int64_t linger_ns)
{
    pthread_mutex_lock(&l->lock);
    l->linger_until = deadline_after(linger_ns);
    pthread_mutex_unlock(&l->lock);
    psy_ring_shutdown(&l->tx); /* no more claims; the sender drains, waits for ACKs, says BYE */
    psy_wake_slow(&l->tx, PSY_WAIT_DATA);
    /* The link ends when the peer has our BYE (or said its own), or fails;
     * a link that never connected and has nothing to send ends now. */
    pthread_mutex_lock(&l->lock);
    while (!l->ended && psy_now_ns() < l->linger_until && !(l->gen == 0 && all_acked(l)))
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
    link_close(l, down && all_acked(l) ? 0 : l->link_timeout_ns);
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
