/* SPDX-License-Identifier: MIT */
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
 * kept out of the ring: its bytes go into `stash` (the first iovec of
 * recvmsg), the rest of the stream into the ring after it. (A user reading
 * inline on a single-consumer ring is its only reader: there one recv() puts
 * the header in place and it is moved to the stash at once, receive_step.)
 * When records are whole, the bytes at the end of the last whole one are
 * moved to the stash, and psy_sp_publish() zeroes them (the terminator) and
 * stores the first header with release: the records appear all at once, a
 * partial one never.
 *
 * Connections: the receiver thread owns them. A client connects (retrying
 * with backoff), a server accepts; both exchange hellos (tcp_wire.h) that
 * carry the offset each side has received, and the sender resumes its stream
 * from the peer's offset. A broken connection is retried (client) or waited
 * for (server) for link_timeout_ns; then the link fails and both rings shut
 * down. The sender thread only writes to the connection the receiver thread
 * hands it, and lets go of it before the receiver thread closes it.
 *
 * Roles: the two threads are how the link works when nobody else does the
 * work. A user's commit while little is in flight writes to the socket
 * itself, and a user's blocking receive on an empty ring reads the socket
 * itself; whoever holds tx_role (rx_role) writes (reads). That removes the
 * thread hand-offs from a request and its reply (see "sending" and
 * "receiving" below).
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

#include "../base/error.h"
#include "../ring/fastpath.h"
#include "tcp_link.h"
#include "tcp_wire.h"
#include "transport.h"

#define DEFAULT_LINK_TIMEOUT_NS (10 * 1000000000ll)
#define DEFAULT_OPEN_TIMEOUT_NS (5 * 1000000000ll)
#define HANDSHAKE_TIMEOUT_MS PSY_TCP_HELLO_TIMEOUT_MS
#define POLL_MS 50                    /* how often blocked threads look at `stop` */
#define RETRY_MAX_MS 200              /* a client's longest pause between connection attempts */
#define BYE_RETRY_NS 1000000000ll     /* after our BYE, how long a broken connection is restored to say it again */
#define IDLE_CHECK_MS 200             /* a receive that waits this long looks for a newer client */
#define KEEPALIVE_IDLE_S 2            /* an idle connection is probed after this long, */
#define KEEPALIVE_INTERVAL_S 1        /* then every second, */
#define KEEPALIVE_PROBES 5            /* and declared dead after this many unanswered */
#define SEND_MAX ((uint64_t)4 << 20)  /* bytes per sendmsg: keeps ACKs flowing */
#define CONTROL_DROP_MAX_SHIFT 4096   /* publish(): bytes moved to drop trailing control records */
#define PARK_NS (POLL_MS * 1000000ll) /* the receiver thread looks again while users read inline */
#define INLINE_SMALL 16384            /* a user's wait that read inline and brought less: latency, not a stream */
#define ACK_DELAY_NS 2000000ll        /* an ACK waits at most about this long for a message to ride on */
#define ACK_RIDE_MIN 2048             /* received bytes unacknowledged before an ACK rides on a message of ours */
#define INLINE_INFLIGHT_MAX 4096      /* tx bytes unacknowledged under which a commit is written inline */
_Static_assert(ACK_RIDE_MIN <= INLINE_INFLIGHT_MAX, "request/reply: each end's replies keep the other inline");
#define RECVS_PER_YIELD 4 /* a user spinning on the socket lets a peer on its CPU run */

/* How a connection ended. LINK_INVALID: the peer sent what no psyne peer
 * sends (a bad header, an ACK of bytes never sent). */
enum link_end { LINK_BROKEN, LINK_SUPERSEDED, LINK_EOF, LINK_BYE, LINK_STOP, LINK_INVALID };

struct psy_tcp_link {
    struct psy_ring rx;          /* the peer's messages */
    struct psy_ring tx;          /* ours, until the peer acknowledges them */
    struct psy_reader tx_reader; /* the sender thread's consumer state of tx */
    bool server;
    int listen_fd;
    struct addrinfo *addr;        /* where to connect (client) */
    char where[300];              /* host:port, for messages */
    int64_t link_timeout_ns;      /* PSYNE_FOREVER: no limit */
    uint64_t max_send, max_recv;  /* largest message of tx and of rx */
    uint64_t session;             /* the client's id of this stream */
    struct psy_tcp_server *owner; /* a multi-peer server's link: it hands us connections */
    pthread_t sender, receiver;
    bool sender_started, receiver_started;

    /* Connection hand-over, guarded by lock and signalled on cond. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int fd;                /* the connection, -1 when none */
    uint64_t gen;          /* connections established so far */
    uint64_t sender_using; /* the gen whose connection the sender writes to, 0: none */
    uint64_t resume_tx;    /* tx position the sender starts at on connection gen */
    uint64_t hello_rx;     /* the rx offset our hello carried on connection gen */
    bool ended;            /* the link is over: peer said BYE, it failed, or close */
    bool bye_sent;
    int failure;              /* why it ended, when it failed: -errno */
    int64_t linger_until;     /* close: the sender gives up on unacknowledged data then */
    int64_t open_until;       /* a client's first connection must be made by then */
    int64_t retry_ms;         /* client: the pause before the next attempt after a failed one (retry_pause) */
    _Atomic int last_attempt; /* client: -errno of the last failed attempt, 0: none (what open reports) */
    int handoff_fd;           /* owned link: the owner's next connection for us, -1: none */
    uint8_t handoff_hello[PSY_WIRE_HELLO_SIZE]; /* its hello, read by the owner */
    _Atomic uint64_t live;                      /* gen of the connection the sender may use, 0: none */
    _Atomic int stop;

    /* Acknowledgements, between the two roles. */
    _Atomic uint64_t peer_acked; /* tx position the peer has everything before */
    _Atomic uint64_t ack_due;    /* rx stream offset to acknowledge */
    _Atomic uint64_t ack_sent;   /* the last rx stream offset acknowledged */
    _Atomic uint64_t tx_sent;    /* furthest tx position written to a connection */
    _Atomic uint64_t tx_offered; /* furthest tx position handed to send(), stored before it: an ACK beyond is a lie */
    uint64_t ack_eager;          /* this much unacknowledged: the ACK goes without waiting for data */
    uint64_t tx_base;            /* tx position of stream offset 0 (receiver thread) */
    uint64_t rx_stream;          /* rx stream offset received (under rx_role) */

    /* Receiving in place (under rx_role). */
    _Atomic int rx_role;           /* held by whoever reads the connection now */
    _Atomic int rx_fd;             /* the connection inline readers may read, -1: none */
    _Atomic int inline_end;        /* 1 + the link_end a user's read saw, 0: none */
    _Atomic uint64_t inline_reads; /* turns users took at reading inline */
    _Atomic uint64_t heard;        /* bytes received */
    _Atomic bool inline_small;     /* the last wait a user read inline brought little: a request or reply */
    _Atomic bool parked;           /* the receiver thread waits in park() (set under lock) */
    _Atomic bool read_wanted;      /* a producer waits for tx space: the receiver thread reads ACKs now */
    int stop_efd;                  /* eventfd made readable when rx shuts down: ends users' polls */
    uint64_t frontier;             /* rx position of the first record not yet published */
    uint64_t have;                 /* bytes received from there: the stash, then the ring */
    uint64_t stash;                /* the first 8 of them: the header kept out of the ring */

    /* Sending (under tx_role, but the atomics, which the sender thread's
     * wait reads without it). */
    _Atomic int tx_role;          /* held by whoever writes to the connection now */
    struct psy_ring bell;         /* its wait block: where the sender thread sleeps (channel links) */
    struct psy_ring *sender_bell; /* &bell, or tx for a server's peer link (users commit there) */
    _Atomic bool sender_resting;  /* the sender thread sleeps with no ACK due: wake it for one */
    _Atomic bool wake_pending;    /* the sender thread was woken and has not run yet */
    int send_fd;                  /* the connection of gen send_gen, -1: none */
    uint64_t send_gen;
    _Atomic uint64_t send_pos;          /* the next tx byte to write; inside [.., send_end) after a partial write */
    uint64_t send_end;                  /* the end of the range of records being written */
    _Atomic bool send_partial;          /* send_pos != send_end, or an ACK half written */
    _Atomic uint64_t commits;           /* psy_tcp_committed calls */
    _Atomic uint64_t commits_seen;      /* of them, those whose records the last range looked for */
    _Atomic uint64_t freed;             /* the peer_acked that tx was last released to */
    _Atomic uint64_t due_at_send;       /* ack_due when records were last written: the peer's data since moves it */
    uint8_t ack_out[PSY_WIRE_ACK_SIZE]; /* the ACK being written */
    unsigned ack_off, ack_len;

    _Atomic uint64_t reconnects, protocol_errors, send_calls, recv_calls;
    _Atomic int pins;            /* owned link: claims open on tx (the owner frees no link with any) */
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

/* ---- sockets ---- */

/*
 * Splits "host:port" strictly: the host is a name or IPv4 address without
 * ':', '[' or ']', an IPv6 address in brackets ("[::1]:9000"), or, for a
 * listening end only, empty or "*" (every address); the port is a decimal
 * number of at most 5 digits up to 65535, and 0 (any free port) only for a
 * listening end. Anything else is -EINVAL before any name lookup, so a typo
 * never reaches the resolver or wraps to another port.
 */
static int parse_address(const char *name, bool server, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *h = name, *colon;
    size_t hl;
    if (name[0] == '[') { /* [v6 address] */
        const char *close = strchr(name, ']');
        if (!close || close[1] != ':' || close == name + 1)
            return psy_fail(-EINVAL, "tcp://%s: an IPv6 address is written [address]:port", name);
        h = name + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strchr(name, ':');
        if (!colon || strchr(colon + 1, ':'))
            return psy_fail(-EINVAL, "tcp://%s: expected tcp://host:port (IPv6: tcp://[address]:port)", name);
        hl = (size_t)(colon - name);
    }
    if (memchr(h, '[', hl) || memchr(h, ']', hl))
        return psy_fail(-EINVAL, "tcp://%s: a bracket in the host", name);
    if (hl == 0 && !server)
        return psy_fail(-EINVAL, "tcp://%s: no host to connect to", name);
    const char *p = colon + 1;
    size_t pl = strlen(p);
    if (hl >= hostlen || pl >= portlen)
        return psy_fail(-EINVAL, "tcp://%s: host or port too long", name);
    unsigned long value = 0;
    for (size_t i = 0; i < pl; i++) {
        if (p[i] < '0' || p[i] > '9')
            return psy_fail(-EINVAL, "tcp://%s: the port must be a decimal number", name);
        value = value * 10 + (unsigned long)(p[i] - '0');
    }
    if (pl == 0 || pl > 5 || value > 65535)
        return psy_fail(-EINVAL, "tcp://%s: the port must be 0..65535", name);
    if (value == 0 && !server)
        return psy_fail(-EINVAL, "tcp://%s: port 0 is for listening ends (any free port)", name);
    memcpy(host, h, hl);
    host[hl] = 0;
    memcpy(port, p, pl + 1);
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

/* One connect attempt, giving up after timeout_ms, or when the link stops
 * (looked at every POLL_MS). Returns fd or -errno. */
static int connect_once(struct psy_tcp_link *l, const struct addrinfo *a, int timeout_ms)
{
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : -errno;
    int64_t until = psy_now_ns() + timeout_ms * 1000000ll;
    while (rc == -EINPROGRESS) {
        int64_t left_ms = (until - psy_now_ns() + 999999) / 1000000;
        if (left_ms <= 0 || atomic_load(&l->stop)) {
            rc = atomic_load(&l->stop) ? -ECANCELED : -ETIMEDOUT;
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n = poll(&p, 1, left_ms > POLL_MS ? POLL_MS : (int)left_ms);
        socklen_t len = sizeof rc;
        if (n == 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &rc, &len) < 0)
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

/* Client: the pause after a failed attempt, a refused connect or a failed
 * handshake alike (a full max_peers server accepts, reads the hello and
 * closes: without a pause its clients would retry in a tight loop): 1 ms,
 * doubled after each failure up to RETRY_MAX_MS, reset by a connection
 * that works (go_live). Ends at `until`, so the last try comes then, and
 * looks at `stop` every POLL_MS. */
static void retry_pause(struct psy_tcp_link *l, int64_t until)
{
    l->retry_ms = l->retry_ms ? (l->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : l->retry_ms * 2) : 1;
    int64_t end = psy_now_ns() + l->retry_ms * 1000000ll;
    if (end > until)
        end = until;
    for (int64_t left; !atomic_load(&l->stop) && (left = end - psy_now_ns()) > 0;) {
        if (left > POLL_MS * 1000000ll)
            left = POLL_MS * 1000000ll;
        struct timespec ts = {.tv_sec = left / 1000000000, .tv_nsec = left % 1000000000};
        nanosleep(&ts, NULL);
    }
}

/* Client: connects, retrying with backoff until `until` (psy_now_ns); no
 * single attempt runs past it. */
static int connect_until(struct psy_tcp_link *l, int64_t until)
{
    int last = -ETIMEDOUT;
    for (;;) {
        for (const struct addrinfo *a = l->addr; a && !atomic_load(&l->stop); a = a->ai_next) {
            int64_t left_ms = (until - psy_now_ns()) / 1000000;
            int fd = connect_once(l, a, left_ms < 1 ? 1 : left_ms > 1000 ? 1000 : (int)left_ms);
            if (fd >= 0)
                return fd;
            last = fd;
            atomic_store_explicit(&l->last_attempt, fd, memory_order_relaxed);
        }
        if (atomic_load(&l->stop))
            return -ECANCELED;
        if (until - psy_now_ns() <= 0)
            return last;
        retry_pause(l, until);
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
 * peer must not hold the link), looking at `stop` every POLL_MS. Returns 0
 * or -errno (-ECANCELED on stop). */
static int recv_hello(int fd, _Atomic int *stop, void *buf, size_t len)
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
        if ((rc = send_all(l, fd, &iov, 1)) || (rc = recv_hello(fd, &l->stop, in, sizeof in)))
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
        else if ((rc = recv_hello(fd, &l->stop, in, sizeof in)))
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

/* ---- roles: who may read or write the connection now ---- */

/* A role (rx_role, tx_role) is held by one thread at a time: the link's
 * thread, or a user's thread doing the work inline. */
static bool take_role(_Atomic int *role)
{
    int free_now = 0;
    return atomic_compare_exchange_strong(role, &free_now, 1); /* seq_cst: see go_dead, psy_tcp_committed */
}

/* The link's threads: waits for a user's turn to end (a user's write never
 * blocks; a user's read ends when the connection is shut down). */
static void take_role_waiting(_Atomic int *role)
{
    for (unsigned i = 0; !take_role(role); i++) {
        if (i < 64) {
            sched_yield();
            continue;
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

static void give_role(_Atomic int *role)
{
    atomic_store(role, 0);
}

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

/* Work for the sender thread (records, an ACK that cannot wait): wakes it
 * if it sleeps, once until it runs again: a burst of commits while it wakes
 * up makes one system call, not one each. The Dekker pairing of
 * psy_wake_if_waiting (the thread re-checks after its barrier); and the
 * thread takes wake_pending back (exchange) before it looks for work, so a
 * waker that finds it still set has its records seen. */
static void wake_sender(struct psy_tcp_link *l)
{
    if (psy_ring_has_sleepers(l->sender_bell, PSY_WAIT_DATA) && !atomic_exchange(&l->wake_pending, true))
        psy_wake_slow(l->sender_bell, PSY_WAIT_DATA);
}

static void send_inline(struct psy_tcp_link *l, bool want_ack);
static void free_acked(struct psy_tcp_link *l);
static void give_tx_role(struct psy_tcp_link *l);

/* An ACK that cannot wait (much is unacknowledged: the peer's send ring
 * fills), written by whoever received (it holds rx_role) when the send role
 * is free, without blocking, with what was committed meanwhile: a stream's
 * receiving end does not wake its sender thread for every ACK, one thread
 * hand-off per ring quarter. When the socket does not take it all, or the
 * role is busy, the sender thread writes it. */
static void send_ack_now(struct psy_tcp_link *l)
{
    if (!take_role(&l->tx_role)) {
        /* its holder (the thread, or a user's commit that chose its range
         * before this ACK was due) may not send it */
        wake_sender(l);
        return;
    }
    send_inline(l, true);
    if (atomic_load_explicit(&l->ack_due, memory_order_relaxed) !=
        atomic_load_explicit(&l->ack_sent, memory_order_relaxed))
        wake_sender(l);
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
        /* The ACK waits for a message of ours to ride on (ACK_DELAY_NS at
         * most), unless much is unacknowledged or the sender thread rests
         * (the fence: Dekker with sender_resting, as in wake_sender). */
        psy_wake_fence(l->sender_bell);
        if (l->rx_stream - atomic_load_explicit(&l->ack_sent, memory_order_relaxed) >= l->ack_eager)
            send_ack_now(l);
        else if (atomic_load_explicit(&l->sender_resting, memory_order_relaxed))
            wake_sender(l);
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
    if (take_role(&l->tx_role)) {
        free_acked(l);
        give_tx_role(l);
    }
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

static enum link_end receive_loop(struct psy_tcp_link *l, int fd)
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
        int fd = l->owner ? handoff_until(l, until) : l->server ? accept_until(l, until) : connect_until(l, until);
        if (fd < 0 && fd != -ECANCELED && bye_said(l)) /* the peer has everything: only our goodbye is lost */
            return receiver_exit(l, 0, NULL);
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
            if (!l->server && !l->owner) { /* refused (a full server) or cut: pause as after a refused connect */
                int why = rc == -ETIMEDOUT ? rc : -ECONNREFUSED;
                atomic_store_explicit(&l->last_attempt, why, memory_order_relaxed);
                if (until - psy_now_ns() <= 0)
                    return receiver_exit(l, why,
                                         "the server accepted the connection but did not complete the handshake "
                                         "(full: max_peers clients connected?)");
                retry_pause(l, until);
            }
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
static bool all_acked(struct psy_tcp_link *l)
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
        wake_sender(l);
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
    wake_sender(l);
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
            broken = send_all(l, fd, &iov, 1) != 0;
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
    int rc = -pthread_create(&l->sender, NULL, sender_main, l);
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
    if ((rc = make_bell(l, opt))) {
        link_free(l);
        return rc;
    }
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
        wake_sender(l);
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
