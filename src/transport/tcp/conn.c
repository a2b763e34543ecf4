/* SPDX-License-Identifier: MIT */
/*
 * conn.c - the tcp:// link's sockets: parsing addresses, listening,
 * connecting (with backoff), the socket options, and the handshake that
 * decides where both streams resume (link.h has the whole picture).
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

/* ---- sockets ---- */

/*
 * Splits "host:port" strictly: the host is a name or IPv4 address without
 * ':', '[' or ']', an IPv6 address in brackets ("[::1]:9000"), or, for a
 * listening end only, empty or "*" (every address); the port is a decimal
 * number of at most 5 digits up to 65535, and 0 (any free port) only for a
 * listening end. Anything else is -EINVAL before any name lookup, so a typo
 * never reaches the resolver or wraps to another port.
 */
int psy_tcp_parse_address(const char *name, bool server, char *host, size_t hostlen, char *port, size_t portlen)
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

int psy_tcp_open_listener(const char *where, const char *host, const char *port, int *out)
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
    int rc = psy_tcp_parse_address(name, true, host, sizeof host, port, sizeof port);
    return rc ? rc : psy_tcp_open_listener(name, host, port, fd);
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
        if (atomic_load(&l->stop)) {
            rc = -ECANCELED;
            break;
        }
        if (left_ms <= 0) {
            rc = -ETIMEDOUT;
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
void psy_tcp_retry_pause(struct psy_tcp_link *l, int64_t until)
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
int psy_tcp_connect_until(struct psy_tcp_link *l, int64_t until)
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
        psy_tcp_retry_pause(l, until);
    }
}

/* Server: the next client, or -ETIMEDOUT after `until`, -ECANCELED on stop. */
int psy_tcp_accept_until(struct psy_tcp_link *l, int64_t until)
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
int psy_tcp_send_all(struct psy_tcp_link *l, int fd, struct iovec *iov, int n)
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
int psy_tcp_handshake(struct psy_tcp_link *l, int fd, bool *fatal)
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
        if ((rc = psy_tcp_send_all(l, fd, &iov, 1)) || (rc = recv_hello(fd, &l->stop, in, sizeof in)))
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
            psy_tcp_send_all(l, fd, &iov, 1);
            return psy_fail(-EPROTO, "tcp://%s: a client asked to resume an unknown session", l->where);
        }
        if (!same) { /* a new client: a new stream both ways, from what is unacknowledged */
            l->session = h.session;
            l->tx_base = atomic_load_explicit(l->tx_reader.head, memory_order_relaxed);
            l->rx_stream = 0;
        }
        psy_wire_hello_encode(out, l->max_recv, h.session, l->rx_stream, same ? PSY_WIRE_F_RESUME : 0);
        struct iovec iov = {out, sizeof out};
        if ((rc = psy_tcp_send_all(l, fd, &iov, 1)))
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
