/* SPDX-License-Identifier: MIT */
/*
 * link.h - the tcp:// link: one TCP connection per channel handle,
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
 * A listening channel with max_peers serves many clients (server.c): it
 * accepts and reads each hello itself, and hands the connection to the link
 * of that client's session (a peer link, `owner` set), which then works as
 * above but never touches the listening socket.
 *
 * The files of src/transport/tcp/, one job each:
 *   conn.c    sockets: listening, connecting with backoff, the handshake
 *   rx.c      the receive side: recv() into rx, checking and publishing
 *             records, acknowledgements that arrive; users reading inline
 *   tx.c      the send side: writing committed records and ACKs, freeing
 *             what the peer acknowledged, BYE; users writing inline
 *   link.c    the link over time: connections coming and going (reconnect,
 *             resume), the two threads, open, shutdown and close
 *   server.c  a listening handle with max_peers: many links (peer.h)
 *   wire.c    the wire format: the hello and the record checks (wire.h)
 * rx.c asks tx.c for ACKs only through psy_tcp_ack_now, psy_tcp_acked and
 * psy_tcp_wake_sender; a link tells its server of records and of its end
 * through the owner_poke callback, never by name.
 */
#ifndef PSY_TCP_LINK_STATE_H
#define PSY_TCP_LINK_STATE_H

#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "../../ring/fastpath.h"
#include "tcp.h"
#include "peer.h"
#include "wire.h"

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
    struct addrinfo *addr;                            /* where to connect (client) */
    char where[300];                                  /* host:port, for messages */
    int64_t link_timeout_ns;                          /* PSYNE_FOREVER: no limit */
    uint64_t max_send, max_recv;                      /* largest message of tx and of rx */
    uint64_t session;                                 /* the client's id of this stream */
    struct psy_tcp_server *owner;                     /* a multi-peer server's link: it hands us connections */
    void (*owner_poke)(struct psy_tcp_server *owner); /* ... and hears from us: records, our end */
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

static inline int64_t deadline_after(int64_t ns)
{
    return ns == PSYNE_FOREVER ? INT64_MAX : psy_now_ns() + ns;
}

static inline void wait_until(struct psy_tcp_link *l, int64_t until_ns)
{
    if (until_ns == INT64_MAX) {
        pthread_cond_wait(&l->cond, &l->lock);
        return;
    }
    struct timespec ts = {.tv_sec = until_ns / 1000000000, .tv_nsec = until_ns % 1000000000};
    pthread_cond_timedwait(&l->cond, &l->lock, &ts);
}

/* ---- roles: who may read or write the connection now ---- */

/* A role (rx_role, tx_role) is held by one thread at a time: the link's
 * thread, or a user's thread doing the work inline. */
static inline bool take_role(_Atomic int *role)
{
    int free_now = 0;
    return atomic_compare_exchange_strong(role, &free_now, 1); /* seq_cst: see go_dead, psy_tcp_committed */
}

/* The link's threads: waits for a user's turn to end (a user's write never
 * blocks; a user's read ends when the connection is shut down). */
static inline void take_role_waiting(_Atomic int *role)
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

static inline void give_role(_Atomic int *role)
{
    atomic_store(role, 0);
}

/* Work for the sender thread (records, an ACK that cannot wait): wakes it
 * if it sleeps, once until it runs again: a burst of commits while it wakes
 * up makes one system call, not one each. The Dekker pairing of
 * psy_wake_if_waiting (the thread re-checks after its barrier); and the
 * thread takes wake_pending back (exchange) before it looks for work, so a
 * waker that finds it still set has its records seen. */
static inline void psy_tcp_wake_sender(struct psy_tcp_link *l)
{
    if (psy_ring_has_sleepers(l->sender_bell, PSY_WAIT_DATA) && !atomic_exchange(&l->wake_pending, true))
        psy_wake_slow(l->sender_bell, PSY_WAIT_DATA);
}

/* conn.c: sockets and the handshake */
int psy_tcp_parse_address(const char *name, bool server, char *host, size_t hostlen, char *port, size_t portlen);
int psy_tcp_open_listener(const char *where, const char *host, const char *port, int *out);
/* The pause after a failed attempt (a refused connect or handshake). */
void psy_tcp_retry_pause(struct psy_tcp_link *l, int64_t until);
/* Client: a connected socket, retrying with backoff until `until`. */
int psy_tcp_connect_until(struct psy_tcp_link *l, int64_t until);
/* Server: the next client, or -ETIMEDOUT after `until`, -ECANCELED on stop. */
int psy_tcp_accept_until(struct psy_tcp_link *l, int64_t until);
/* Writes all of iov[0..n) (modifies iov). Returns 0 or -errno. */
int psy_tcp_send_all(struct psy_tcp_link *l, int fd, struct iovec *iov, int n);
/* Exchanges hellos on a new connection; where both streams resume. */
int psy_tcp_handshake(struct psy_tcp_link *l, int fd, bool *fatal);

/* rx.c: the receive side */
/* Reads the connection until it ends; how it ended. */
enum link_end psy_tcp_receive_loop(struct psy_tcp_link *l, int fd);

/* tx.c: the send side, and what the receive side may ask of it */
/* An ACK that cannot wait: written now if the send role is free, else by
 * the sender thread. */
void psy_tcp_ack_now(struct psy_tcp_link *l);
/* The peer acknowledged more (peer_acked moved): frees it now if the send
 * role is free, else its holder does. */
void psy_tcp_acked(struct psy_tcp_link *l);
/* Whether the peer has every committed record of tx. */
bool psy_tcp_all_acked(struct psy_tcp_link *l);
void *psy_tcp_sender_main(void *arg);

#endif
