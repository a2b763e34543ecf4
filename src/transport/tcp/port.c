/* SPDX-License-Identifier: MIT */
/*
 * port.c - the tcp:// transport's tables: a link (one connection, the
 * handle its only user) and a listening handle with max_peers (many links,
 * one per client, and no ring of its own).
 */
#include <errno.h>

#include "../../base/error.h"
#include "tcp.h"

static int tcp_check_options(const struct psyne_options *opt)
{
    if (opt->dynamic)
        return psy_fail(-EINVAL, "dynamic rings are for memory:// and ipc://, not tcp://");
    if (opt->max_peers && !(opt->flags & PSYNE_F_LISTEN))
        return psy_fail(-EINVAL, "max_peers is for listening tcp:// handles (PSYNE_F_LISTEN)");
    if (opt->max_peers > PSYNE_MAX_PEERS)
        return psy_fail(-EINVAL, "max_peers %u is above PSYNE_MAX_PEERS (%u)", opt->max_peers, PSYNE_MAX_PEERS);
    return 0;
}

/* ---- a link ---- */

static struct psy_tcp_link *link_of(const struct psy_port *p)
{
    return p->priv;
}

static void link_shutdown(struct psy_port *p)
{
    psy_tcp_shutdown(link_of(p));
}

static int link_close(struct psy_port *p)
{
    psy_tcp_close(link_of(p));
    return 0;
}

/* One handle, one connection: waits on both rings count, then the link's own. */
static void link_stats(struct psy_port *p, struct psyne_stats *st)
{
    struct psy_ring_shared *tsh = p->tx->sh;
    st->waits += atomic_load_explicit(&tsh->slow.waits, memory_order_relaxed);
    st->wakeups += atomic_load_explicit(&tsh->slow.wakeups, memory_order_relaxed);
    psy_tcp_stats(link_of(p), st);
}

static void link_committed(struct psy_port *p)
{
    psy_tcp_committed(link_of(p));
}

/* The ACKs that free tx must be read, even while users read inline. */
static void link_space_wanted(struct psy_port *p)
{
    psy_tcp_acks_wanted(link_of(p));
}

/* Reads the socket from the waiting thread when no one else does. */
static int link_wait_data(struct psy_port *p, psy_try_fn try_once, void *ctx, int64_t timeout_ns)
{
    return psy_tcp_wait_data(link_of(p), try_once, ctx, timeout_ns);
}

/* A readiness descriptor waits for records: the receiver thread must read
 * the socket, even if a user read it inline before. */
static void link_arming(struct psy_port *p, enum psy_wait_side side)
{
    if (side == PSY_WAIT_DATA)
        psy_tcp_acks_wanted(link_of(p));
}

static unsigned link_peers(struct psy_port *p, struct psy_peer_info *out, unsigned max)
{
    if (max)
        psy_tcp_peer_info(link_of(p), 0, out);
    return 1;
}

static const struct psy_transport tcp_link_transport = {
    .scheme = "tcp",
    .check_options = tcp_check_options,
    .shutdown = link_shutdown,
    .close = link_close,
    .stats = link_stats,
    .committed = link_committed,
    .space_wanted = link_space_wanted,
    .wait_data = link_wait_data,
    .arming = link_arming,
    .peers = link_peers,
};

/* ---- a listening handle with max_peers ---- */

static struct psy_tcp_server *server_of(const struct psy_port *p)
{
    return p->priv;
}

static void server_shutdown(struct psy_port *p)
{
    psy_tcp_server_shutdown(server_of(p));
}

static int server_close(struct psy_port *p)
{
    psy_tcp_server_close(server_of(p));
    return 0;
}

static void server_stats(struct psy_port *p, struct psyne_stats *st)
{
    psy_tcp_server_stats(server_of(p), st);
    st->numa_node = -1;
}

static struct psy_ring *server_peer_pin(struct psy_port *p, uint32_t peer)
{
    return psy_tcp_server_pin(server_of(p), peer);
}

static struct psy_ring *server_peer_ring(struct psy_port *p, uint32_t peer)
{
    return psy_tcp_server_tx(server_of(p), peer);
}

static void server_peer_unpin(struct psy_port *p, uint32_t peer)
{
    psy_tcp_server_unpin(server_of(p), peer);
}

static int server_receive(struct psy_port *p, struct psyne_msg *msgs, unsigned max, int64_t timeout_ns)
{
    return psy_tcp_server_receive(server_of(p), msgs, max, timeout_ns);
}

static int server_release(struct psy_port *p, const struct psyne_msg *msgs, unsigned n)
{
    return psy_tcp_server_release(server_of(p), msgs, n);
}

static struct psy_ring *server_ready_ring(struct psy_port *p)
{
    return psy_tcp_server_bell(server_of(p));
}

static unsigned server_peers(struct psy_port *p, struct psy_peer_info *out, unsigned max)
{
    return psy_tcp_server_peers(server_of(p), out, max);
}

static const struct psy_transport tcp_server_transport = {
    .scheme = "tcp",
    .check_options = tcp_check_options,
    .shutdown = server_shutdown,
    .close = server_close,
    .stats = server_stats,
    .peer_pin = server_peer_pin,
    .peer_ring = server_peer_ring,
    .peer_unpin = server_peer_unpin,
    .receive = server_receive,
    .release = server_release,
    .ready_ring = server_ready_ring,
    .peers = server_peers,
};

/* ---- the scheme ---- */

static int tcp_open(struct psy_port *p, const char *name, const struct psyne_options *opt, bool join_any)
{
    (void)join_any; /* a connection has no existing ring to join */
    if (opt->max_peers) {
        struct psy_tcp_server *s;
        int rc = psy_tcp_server_open(name, opt, &s);
        if (rc == 0) {
            p->tp = &tcp_server_transport;
            p->priv = s;
            p->flags |= PSY_PORT_PEERS;
        }
        return rc;
    }
    struct psy_tcp_link *l;
    int rc = psy_tcp_open(name, opt, &l);
    if (rc == 0) {
        p->tp = &tcp_link_transport;
        p->priv = l;
        p->ring = p->home = psy_tcp_rx(l);
        p->tx = psy_tcp_tx(l);
        p->flags |= PSY_PORT_ALONE | PSY_PORT_NOTIFY;
    }
    return rc;
}

const struct psy_transport psy_tcp_transport = {
    .scheme = "tcp",
    .check_options = tcp_check_options,
    .open = tcp_open,
};
