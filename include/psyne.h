/* SPDX-License-Identifier: MIT */
/*
 * psyne.h - the one public header of psyne, a zero-copy messaging library.
 *
 * A message is claimed directly inside a channel's ring buffer, written in
 * place and published with psyne_commit(); the receiver gets a view of the
 * same bytes with psyne_receive() and gives the space back with
 * psyne_release(). The library never copies a payload.
 *
 * Conventions (all functions):
 *   - Every function returns int: 0 or a count on success, a negative errno
 *     on failure. psyne_strerror() names the error; psyne_last_error() gives
 *     the detail of the calling thread's most recent failure.
 *   - "Full" and "empty" are not failures: a non-blocking call
 *     (timeout_ns == PSYNE_NONBLOCK) returns -EAGAIN, a blocking call waits
 *     up to timeout_ns nanoseconds and then returns -ETIMEDOUT.
 *     PSYNE_FOREVER waits without limit.
 *   - A channel that was shut down (psyne_channel_shutdown, or closing the
 *     last producer or consumer handle) makes waiters and new claims return
 *     -EPIPE; receivers first drain what was committed before the shutdown.
 *   - A NULL handle or pointer argument is -EINVAL, never a crash
 *     (psyne_options_init(NULL) and psyne_channel_close(NULL) do nothing).
 *   - The library never writes to stdout or stderr; psyne_set_log installs
 *     a function that receives its diagnostics.
 *
 * Thread safety is stated per function. "Producer side" means claim,
 * commit, abort; "consumer side" means receive, release and their batch forms.
 */
#ifndef PSYNE_H
#define PSYNE_H

/* The version of this header (CMakeLists.txt reads it from here). MAJOR.MINOR
 * changes with the API; the shared library's soname (libpsyne.so.N) changes
 * whenever a program built against an older header would break. */
#define PSYNE_VERSION_MAJOR 0
#define PSYNE_VERSION_MINOR 6
#define PSYNE_VERSION_PATCH 0
#define PSYNE_VERSION_NUMBER (PSYNE_VERSION_MAJOR * 10000 + PSYNE_VERSION_MINOR * 100 + PSYNE_VERSION_PATCH)

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the exported symbols of the shared library. */
#if defined(__GNUC__)
#define PSYNE_API __attribute__((visibility("default")))
#else
#define PSYNE_API
#endif

/* psyne_claim and psyne_commit are inline functions in C and C++ built by
 * GCC or Clang (psyne/inline.h), and exported symbols for bindings, other
 * compilers, and code built with -DPSYNE_NO_INLINE. */
#if defined(__GNUC__) && !defined(PSYNE_NO_INLINE)
#define PSYNE_INLINE_CALLS 1
#endif

/* The public macros' conversions: a C cast in C, static_cast in C++ (they
 * expand in the user's code, which may be built with -Wold-style-cast). */
#ifdef __cplusplus
#define PSYNE_CAST(type, value) (static_cast<type>(value))
#else
#define PSYNE_CAST(type, value) ((type)(value))
#endif

/* Timeouts of the waiting calls, in nanoseconds. */
#define PSYNE_NONBLOCK PSYNE_CAST(int64_t, 0)   /* never wait: -EAGAIN when full/empty */
#define PSYNE_FOREVER PSYNE_CAST(int64_t, -1)   /* wait until it succeeds or -EPIPE */
#define PSYNE_NO_LINGER PSYNE_CAST(int64_t, -2) /* psyne_options.linger_ns: keep nothing after the last close */

/* Message type ids: 0 is invalid, 1..PSYNE_TYPE_USER_MIN-1 are reserved for
 * psyne, user types go up to PSYNE_TYPE_USER_MAX. */
#define PSYNE_TYPE_USER_MIN PSYNE_CAST(uint32_t, 1024)
#define PSYNE_TYPE_USER_MAX PSYNE_CAST(uint32_t, 0x7fffffff)

/* Ring capacity limits in bytes (capacity is rounded up to a power of two,
 * at least one page). A message of length L needs PSYNE_RECORD_SIZE(L) bytes. */
#define PSYNE_DEFAULT_CAPACITY (PSYNE_CAST(uint64_t, 1) << 20)
#define PSYNE_MAX_CAPACITY (PSYNE_CAST(uint64_t, 1) << 30)
#define PSYNE_MAX_PEERS 1024u /* tcp:// clients one listening handle serves at most */
#define PSYNE_RECORD_HEADER 8u
#define PSYNE_RECORD_SIZE(len)                                                                                         \
    (PSYNE_CAST(uint64_t, PSYNE_RECORD_HEADER) + ((PSYNE_CAST(uint64_t, len) + 7u) & ~PSYNE_CAST(uint64_t, 7u)))
/* The largest message a ring of `capacity` bytes accepts (8 bytes of every
 * ring stay free to mark where the committed records end). */
#define PSYNE_MAX_MESSAGE(capacity) (PSYNE_CAST(uint64_t, capacity) - 2u * PSYNE_RECORD_HEADER)

/* Maximum number of simultaneous subscribers of a BROADCAST channel. */
#define PSYNE_MAX_SUBSCRIBERS 32
/* Maximum number of open handles on one ipc:// segment, all processes together. */
#define PSYNE_IPC_MAX_HANDLES 64

/* Ring modes. SP/MP: one or many producers; SC/MC: one or many consumers,
 * each message delivered to exactly one of them. BROADCAST: one producer,
 * every subscriber sees every message. */
enum psyne_mode {
    PSYNE_MODE_SPSC = 0,
    PSYNE_MODE_SPMC = 1,
    PSYNE_MODE_MPSC = 2,
    PSYNE_MODE_MPMC = 3,
    PSYNE_MODE_BROADCAST = 4,
};

/* What a handle does. Only BROADCAST needs it: a CONSUMER handle there is a
 * subscriber (it holds back the producer until it releases). */
enum psyne_role {
    PSYNE_ROLE_ANY = 0,      /* may produce and consume (not for BROADCAST) */
    PSYNE_ROLE_PRODUCER = 1, /* claim/commit only */
    PSYNE_ROLE_CONSUMER = 2, /* receive/release only */
};

/* How a blocking call waits: spin (pause) for spin_ns + yield_ns, yielding
 * the CPU every 64 polls, a few microseconds (so a thread that shares the
 * CPU, perhaps the one waited for, runs; the yield returns at once when no
 * other is runnable), then sleep on a futex. With spin_ns 0 it yields at
 * every poll, without pauses; with both 0 it sleeps at once. The other side
 * issues a wake-up system call only when somebody sleeps. */
enum psyne_wait {
    PSYNE_WAIT_ADAPTIVE = 0, /* spin, yield, then sleep (default) */
    PSYNE_WAIT_SPIN = 1,     /* never sleep: lowest latency, burns a core. tcp://: a wait for
                                what the library's threads bring (messages they read, space
                                the peer's acknowledgements free) also yields every 64 polls;
                                those threads themselves always wait as ADAPTIVE does */
};

/* Option flags. */
#define PSYNE_F_NO_PREFAULT (1u << 0) /* do not touch the ring's pages at open */
#define PSYNE_F_LISTEN                                                                                                 \
    (1u << 1) /* tcp://: listen on host:port (host * = every
                                         address) and accept a client, instead of connecting */
#define PSYNE_F_HUGEPAGES                                                                                              \
    (1u << 2) /* back the ring with huge pages: explicit ones (hugetlb,
                                         memory:// and tcp://, rings of a multiple of the huge
                                         page size, pages reserved in /proc/sys/vm/nr_hugepages),
                                         else transparent ones where the kernel gives them to
                                         shared memory, else normal pages. Never fails for lack
                                         of huge pages; psyne_stats.pages says what the ring got */
#define PSYNE_F_MLOCK                                                                                                  \
    (1u << 3) /* lock the ring's pages in memory (mlock): open fails with
                                         -ENOMEM or -EPERM beyond RLIMIT_MEMLOCK */
#define PSYNE_F_NUMA_BIND                                                                                              \
    (1u << 4) /* allocate the ring's memory on NUMA node opt->numa_node
                                         only (mbind MPOL_BIND); -EINVAL if the node is not online */
#define PSYNE_F_LEASES                                                                                                 \
    (1u << 5) /* memory:// MPSC/MPMC: each producer handle reserves ring space
                                         for several messages at once (about 4 KiB, one atomic
                                         operation) and claims from it without touching the shared
                                         tail. Each producer's messages keep their order, but a
                                         message may come before one another producer claimed
                                         earlier (order across producers is not kept): for work
                                         queues. Set by the channel's creator; no effect on other
                                         modes and transports (see the guide) */
#define PSYNE_F_IPC_OTHER_OWNER                                                                                        \
    (1u << 6) /* ipc://: may join a segment that another user created
                                         (its mode must let this user in). Without it, opening a
                                         segment whose owner is not this process's effective user
                                         fails with -EACCES, root included: another user cannot
                                         plant a segment under a name a program then trusts */
#define PSYNE_F_PUBLISH                                                                                                \
    (1u << 7) /* publish this handle's counters for psyne-stat: a library
                                         thread copies its psyne_channel_stats into the process's
                                         counters segment (/dev/shm/psyne-stats.<pid>) every
                                         PSYNE_PUBLISH_INTERVAL_MS (default 100) while such a handle
                                         is open. PSYNE_PUBLISH=1 in the environment publishes
                                         every handle. Costs no call on any message path */

/* Pages backing a ring (psyne_stats.pages). */
enum psyne_pages {
    PSYNE_PAGES_NORMAL = 0,      /* base pages (4 KiB on x86-64) */
    PSYNE_PAGES_TRANSPARENT = 1, /* advised for transparent huge pages, which the kernel allows for
                                    shared memory; it may still use base pages where it has no
                                    huge page free */
    PSYNE_PAGES_EXPLICIT = 2,    /* hugetlb pages, reserved at open */
};

/*
 * A dynamic ring (psyne_options.dynamic, memory:// and ipc:// SPSC channels): it starts
 * at psyne_options.capacity bytes and sizes itself by load. The producer
 * grows it when a claim finds it full or fuller than grow_at, and shrinks it
 * when the most it held over a window of window_ops claims stayed below
 * shrink_at. A resize chains a new segment after the current one: the
 * producer goes on writing there at once, the consumer follows when it has
 * read the old segment, which is unmapped when everything in it is
 * released. Nothing is copied and neither side stops. Zero fields take the
 * defaults in brackets.
 * Blocking: a claim that resizes makes system calls (memfd_create, mmap)
 * and takes a mutex that psyne_channel_stats and shutdown also take; it
 * never waits for the consumer. Chained segments are not prefaulted.
 * ipc://: each segment is a file /dev/shm/psyne-seg.<name>.<id>.<n> that
 * the producer makes (shm_open, ftruncate after checking /dev/shm has the
 * room, mmap) and the consumer opens when it follows (a receive that
 * crosses into a new segment makes those system calls). Segment files are
 * removed when finished and by the last close; handles may close and
 * others open later (a consumer starts where the last one stopped). If
 * /dev/shm fills up between the check and a write, the write is a SIGBUS:
 * keep /dev/shm larger than max_capacity per ring. psyne_stats counts
 * resizes and their time for the whole ring; `segments` and the traffic
 * counters are as this handle's process sees them.
 * Not for: MP/MC modes, BROADCAST, tcp:// (-EINVAL).
 * Threads: as for any SPSC channel (one producer thread, one consumer
 * thread at a time).
 */
struct psyne_dynamic {
    uint64_t max_capacity;   /* largest segment [64 x capacity, at most PSYNE_MAX_CAPACITY] */
    uint64_t min_capacity;   /* smallest segment a shrink makes [the initial capacity] */
    double grow_at;          /* fraction of the segment in use that grows it [0.75] */
    double shrink_at;        /* window high-water fraction below which it shrinks [0.2] */
    uint32_t factor;         /* each resize multiplies or divides the size by this, a power of two [2] */
    uint32_t window_ops;     /* claims per high-water window [5000] */
    uint32_t check_interval; /* claims between looks at the usage [64] */
    uint32_t reserved;       /* zero */
};

struct psyne_options {
    uint64_t capacity; /* ring bytes; 0 = PSYNE_DEFAULT_CAPACITY (joining: any) */
    int mode;          /* enum psyne_mode */
    int role;          /* enum psyne_role */
    int wait;          /* enum psyne_wait */
    uint32_t flags;    /* PSYNE_F_* */
    int64_t spin_ns;   /* adaptive wait: spin (a yield every 64 polls) this long; <0 = default
                            (50 us); 0 = no pauses, a yield at every poll */
    int64_t yield_ns;  /* adaptive wait: then this much longer before sleeping; <0 = default (200 us) */
    /* ipc:// only (ignored by memory://): */
    uint32_t ipc_perm; /* permission bits of a segment this open creates; 0 = 0600 */
    /* any scheme: */
    uint32_t numa_node; /* with PSYNE_F_NUMA_BIND: the node the ring's memory comes from */
    /* ipc:// and tcp:// clients: */
    int64_t open_timeout_ns; /* ipc://: wait this long for a segment another process is creating
                                 or still closing; tcp://: a client's open connects within this
                                 long or fails; 0 = default (5 s), PSYNE_FOREVER = no limit */
    /* ipc:// only: */
    int64_t peer_timeout_ns; /* a waiting call checks every this often whether a peer process
                                 died (and then recovers its claims and handles); 0 = 1 s */
    /* tcp:// only: */
    int64_t link_timeout_ns; /* how long a broken connection is retried (client) or waited
                                 for (server), and how long close waits for the peer to
                                 acknowledge what was sent; then the channel shuts down.
                                 0 = default (10 s), PSYNE_FOREVER = no limit */
    /* memory:// and ipc:// SPSC only: */
    const struct psyne_dynamic *dynamic; /* non-NULL: a dynamic ring configured so (copied at open) */
    /* tcp:// with PSYNE_F_LISTEN only: */
    uint32_t max_peers; /* serve up to this many clients at once, each a peer with rings
                                 of its own (psyne_msg.peer, psyne_claim_to); 0 = one client,
                                 whose stream is the channel's (at most PSYNE_MAX_PEERS) */
    /* memory:// and tcp:// (-EINVAL with ipc://): */
    struct psyne_slabs *slabs; /* non-NULL: carve the ring (and every segment of a dynamic ring)
                                  out of these slabs instead of mapping memory of its own; the
                                  slabs' placement replaces PSYNE_F_HUGEPAGES/NUMA_BIND */
    /* ipc:// only: */
    int64_t linger_ns; /* when the last handle to close may produce and leaves committed
                          messages unread, the segment is kept this long for a consumer
                          that opens the name (it reads them, then gets -EPIPE); 0 =
                          default (60 s), PSYNE_FOREVER = until one comes (or
                          psyne_ipc_cleanup), PSYNE_NO_LINGER = removed at once */
    /* Room for the options of later versions within this ABI: must be zero
     * (psyne_options_init zeroes it; -EINVAL otherwise, as for an option this
     * version does not know). */
    uint64_t reserved[7];
};

/* Fills *opt with the defaults (SPSC, default capacity, adaptive waiting).
 * Thread-safe; never blocks. */
PSYNE_API void psyne_options_init(struct psyne_options *opt);

typedef struct psyne_channel psyne_channel;

/*
 * Opens the channel named by uri and returns a new handle in *out.
 *   memory://name   threads of this process; every open of the same name
 *                   gets a handle on the same ring. The first open creates
 *                   it with opt; later opens must ask for the same mode and
 *                   no more capacity than it has (-EINVAL). opt NULL: create
 *                   with the defaults, or join the existing ring as it is.
 *   ipc://name      processes of this machine: a shared-memory segment
 *                   /dev/shm/psyne.<name> (name without '/'), created by the
 *                   first open with opt (mode opt->ipc_perm, default 0600)
 *                   and joined by later ones under the same rules as
 *                   memory://. Either side may start first. A segment whose
 *                   creator is still initializing it, or that was shut down
 *                   and still has open handles, is waited for up to
 *                   opt->open_timeout_ns (-ETIMEDOUT). A segment left by
 *                   processes that all died is removed and created afresh.
 *                   An open joins only a segment of its own user (-EACCES
 *                   otherwise) unless opt->flags has PSYNE_F_IPC_OTHER_OWNER.
 *                   The last handle to close removes the segment. Each
 *                   handle is its own attachment (at most PSYNE_IPC_MAX_HANDLES
 *                   per segment, -EBUSY beyond). Handles do not survive
 *                   fork(): open them in the process that uses them.
 *   tcp://host:port one TCP connection, messages both ways. With
 *                   PSYNE_F_LISTEN the handle listens on host:port (host * =
 *                   every address) and serves one client at a time; open
 *                   returns at once. With opt->max_peers it serves that
 *                   many clients at once: see psyne_claim_to. Without it, open connects, retrying
 *                   with backoff for up to opt->open_timeout_ns (default
 *                   5 s), and returns once connected or by then with the
 *                   last attempt's error. host: a name, an IPv4 address or
 *                   [IPv6]; port: decimal, at most 65535 (0, and host empty
 *                   or *, only when listening); else -EINVAL before any lookup. Each handle is its own connection with a
 *                   send ring and a receive ring of opt->capacity (both ends
 *                   should use the same), and two threads of the library.
 *                   A broken connection is restored (client reconnects,
 *                   server waits) within opt->link_timeout_ns with nothing
 *                   lost or duplicated; past it the channel shuts down.
 *                   Modes SPSC/SPMC/MPSC/MPMC (not BROADCAST).
 * Returns 0, or -EINVAL (bad URI or options), -EPROTONOSUPPORT (a scheme this
 * build does not provide), -EPROTO (ipc: a segment of another layout
 * version, or damaged; it is left untouched), -EACCES (ipc: no permission),
 * -ETIMEDOUT (ipc; tcp: no connection in time), -ENOMEM, -EBUSY (BROADCAST:
 * all subscriber slots taken; ipc: all handle slots taken), -ECONNREFUSED,
 * -EADDRINUSE, -EHOSTUNREACH (tcp), or another -errno from the system.
 * Thread-safe (any thread, concurrently); memory:// may block briefly on a
 * mutex, ipc:// waits as described above.
 */
PSYNE_API int psyne_channel_open(psyne_channel **out, const char *uri, const struct psyne_options *opt);

/*
 * Shuts the channel down for every handle: waiters wake with -EPIPE, new
 * claims fail with -EPIPE, receivers drain what was committed and then get
 * -EPIPE. Idempotent. Thread-safe: any thread, concurrently with any call on
 * any handle of the channel (this is how to stop a thread blocked in a call).
 */
PSYNE_API int psyne_channel_shutdown(psyne_channel *ch);

/*
 * Frees this handle; the ring goes away with its last handle. tcp://: first
 * waits (up to opt->link_timeout_ns) until the peer has acknowledged every
 * committed message, then tells it the stream ended (its receives drain and
 * return -EPIPE). Like a pipe,
 * closing the last handle that may produce (role PRODUCER or ANY) or the last
 * that may consume (CONSUMER or ANY) shuts the channel down as
 * psyne_channel_shutdown does: consumers drain and then get -EPIPE, producers
 * get -EPIPE. Give handles their role to get this end-of-stream signal (two
 * ANY handles keep each other open). Returns 0 (NULL is accepted), or, when
 * this is the channel's last handle and committed messages were never read,
 * how many (> 0, not an error): ipc:// keeps them, if this handle may
 * produce, for opt->linger_ns (a consumer that opens the name then reads
 * them and gets -EPIPE; a producer that opens it goes on after them);
 * memory:// frees them with the ring. Closes the handle's readiness
 * descriptors.
 * Threads: no other thread may use this same handle during or after the
 * call; wake such threads with psyne_channel_shutdown first.
 */
PSYNE_API int psyne_channel_close(psyne_channel *ch);

/* A claimed region: write up to `capacity` bytes at `data`, then commit or
 * abort it. Fields prefixed psy_ are private. */
struct psyne_claimed {
    void *data;        /* 8-byte aligned, contiguous */
    uint32_t capacity; /* bytes that may be written */
    uint32_t psy_reserved;
    uint64_t psy_pos;
    uint32_t psy_batch; /* private: claims in this batch (first element) */
    uint32_t psy_peer;  /* private: psyne_claim_to's peer */
};

/*
 * Claims space for a message of up to max_len bytes and points c->data at it
 * inside the ring. Waits up to timeout_ns for space (PSYNE_NONBLOCK,
 * PSYNE_FOREVER or a duration). Returns 0, -EAGAIN (full, non-blocking),
 * -ETIMEDOUT, -EPIPE (shut down), -EMSGSIZE (max_len can never fit this
 * ring), -EBUSY (this producer already holds an uncommitted claim in an SP
 * mode), -EPERM (handle is a consumer).
 * tcp://: the send ring frees a message once the peer's receive ring holds
 * it (the peer acknowledges what arrived, not what its consumer released),
 * so a claim waits for space briefly while acknowledgements are on their
 * way, and for long only once the peer's ring is full and TCP holds the
 * stream back (both socket buffers full as well).
 * Threads: SP modes - one producer thread at a time per channel; MP modes -
 * any number of threads concurrently, on one handle or several. A producer
 * preempted between claim and commit never stops other producers claiming.
 * MP messages arrive in the order they were claimed; with PSYNE_F_LEASES
 * only each thread's own claims keep their order (the handle's first
 * producing thread claims from the handle's lease, the others without).
 * An inline function (psyne/inline.h, C and C++ with GCC or Clang): SPSC
 * and BROADCAST producers of memory:// and ipc:// claim without a call
 * while there is room. Keep the claim in a local variable to let the
 * compiler keep it in registers.
 */
#ifndef PSYNE_INLINE_CALLS
PSYNE_API int psyne_claim(psyne_channel *ch, size_t max_len, struct psyne_claimed *c, int64_t timeout_ns);
#endif

/*
 * psyne_claim for one peer of a listening tcp:// handle opened with
 * max_peers: the message goes to that client only (peer as in psyne_msg.peer,
 * e.g. the client a request came from). Commit or abort it with psyne_commit
 * / psyne_abort on the same handle. On other channels peer must be 0 (then
 * it is psyne_claim). Errors as psyne_claim, and -ENOTCONN: no such peer (it
 * left, and everything it sent was released; or it never was); -EPIPE: the
 * peer is leaving. psyne_claim and psyne_claim_batch on such a handle return
 * -EDESTADDRREQ. Threads: SP modes - one producer thread at a time per peer;
 * MP modes - any number concurrently.
 */
PSYNE_API int psyne_claim_to(psyne_channel *ch, uint32_t peer, size_t max_len, struct psyne_claimed *c,
                             int64_t timeout_ns);

/*
 * Publishes a claimed message with its final length (<= c->capacity) and
 * type (PSYNE_TYPE_USER_MIN..PSYNE_TYPE_USER_MAX). Returns 0, or -EINVAL
 * (length too long, bad type, claim not open); on -EINVAL the claim stays
 * open. Never blocks; issues a wake-up system call only when a consumer
 * sleeps. tcp:// (not max_peers): when the sender thread sleeps and nothing
 * is in flight, or at most 4 KiB and the peer sent messages since this end
 * last wrote (a request after its reply), the message is written to the
 * socket from this thread (one non-blocking send; what the socket does not
 * take, the sender thread sends); else the sender thread is woken if it
 * sleeps.
 * Threads: the thread that owns the claim. An inline function, as
 * psyne_claim.
 */
#ifndef PSYNE_INLINE_CALLS
PSYNE_API int psyne_commit(psyne_channel *ch, struct psyne_claimed *c, size_t length, uint32_t type);
#endif

/*
 * Gives a claim up without publishing a message. Returns 0 or -EINVAL.
 * Never blocks. Threads: the thread that owns the claim.
 */
PSYNE_API int psyne_abort(psyne_channel *ch, struct psyne_claimed *c);

#ifdef PSYNE_INLINE_CALLS
#include "psyne/inline.h" /* private: psyne_claim and psyne_commit */
#endif

/*
 * Claims up to n consecutive messages of up to max_len bytes each in one
 * step (one reservation) and fills c[0..k-1]; returns k, between 1 and n: as
 * many as fit now. Waits (up to timeout_ns) only for the first. Errors and
 * threads as psyne_claim; in SP modes the batch counts as the one open claim.
 */
PSYNE_API int psyne_claim_batch(psyne_channel *ch, size_t max_len, struct psyne_claimed *c, unsigned n,
                                int64_t timeout_ns);

/*
 * Publishes the first n messages of one psyne_claim_batch (lengths[i] <=
 * c[i].capacity, all of one type) with one position update; claims of the
 * batch beyond n are given up (n == 0 gives the whole batch up). Returns 0
 * or -EINVAL (the batch stays open). Never blocks. Threads: as psyne_commit.
 */
PSYNE_API int psyne_commit_batch(psyne_channel *ch, struct psyne_claimed *c, unsigned n, const uint32_t *lengths,
                                 uint32_t type);

/* A received message, read in place. data is 8-byte aligned and contiguous.
 * It may be modified in place except in BROADCAST mode. */
struct psyne_msg {
    void *data;
    uint32_t length;
    uint32_t type;
    uint32_t peer;      /* a listening tcp:// handle with max_peers: the client it came
                           from (1, 2, ... in the order clients came); else 0 */
    uint32_t psy_flags; /* private */
    uint64_t psy_begin; /* private: release span */
    uint64_t psy_end;
};

/*
 * Returns a view of the next message in *m. Waits up to timeout_ns.
 * Returns 0, -EAGAIN (empty, non-blocking), -ETIMEDOUT, -EPIPE (shut down
 * and drained), -EPROTO (the ring holds a corrupted record), -EPERM
 * (producer handle). A handle may hold several views; see psyne_release.
 * tcp:// (not max_peers): a blocking call on an empty ring reads the socket
 * from this thread when no other thread does, waiting as the options say:
 * non-blocking recv() calls (a yield after every fourth) for spin_ns +
 * yield_ns, then asleep in poll() on the socket (PSYNE_WAIT_SPIN: never
 * yields nor sleeps); a non-blocking one never reads it.
 * Threads: SC modes and each BROADCAST subscriber handle - one consumer
 * thread at a time; MC modes - any number of threads concurrently.
 */
PSYNE_API int psyne_receive(psyne_channel *ch, struct psyne_msg *m, int64_t timeout_ns);

/*
 * Returns the space of a received message to the producers. In single
 * consumer modes (SPSC, MPSC, BROADCAST subscribers) it also releases every
 * earlier message this consumer still holds (on a listening tcp:// handle
 * with max_peers: every earlier one of the same peer, m->peer, since each
 * peer is a ring of its own); in MC modes it releases only m.
 * Returns 0 or -EINVAL (m was already released or is not from this channel;
 * nothing is changed then). In MC modes the release checks that m is a view
 * this channel handed out that nobody released, so one consumer's mistake
 * never frees a message another holds. Not caught: the same view released
 * from two threads at once (the caller's data race), and, in MC rings with
 * one writer (SPMC, and every tcp:// receive ring), a message released again
 * after its whole batch was released with psyne_release_batch while an
 * earlier message is still held (it frees nothing that was not free).
 * Never blocks; wakes a sleeping producer when there is one.
 * Threads: as psyne_receive.
 */
PSYNE_API int psyne_release(psyne_channel *ch, const struct psyne_msg *m);

/*
 * Takes up to max messages at once (one position update in MC modes).
 * Returns the count (>= 1), or the errors of psyne_receive. Waits (up to
 * timeout_ns) only for the first message. Threads: as psyne_receive.
 */
PSYNE_API int psyne_receive_batch(psyne_channel *ch, struct psyne_msg *msgs, unsigned max, int64_t timeout_ns);

/*
 * Releases the n messages of one psyne_receive_batch call with one position
 * update. Returns 0 or -EINVAL. Threads: as psyne_receive.
 */
PSYNE_API int psyne_release_batch(psyne_channel *ch, const struct psyne_msg *msgs, unsigned n);

/* Called by psyne_drain for each message, in order; the view is valid until
 * the handler returns. */
typedef void (*psyne_handler)(void *arg, const struct psyne_msg *m);

/*
 * Receives up to max messages (waiting up to timeout_ns for the first),
 * calls fn on each in order, and releases them with one position update per
 * batch of up to 64. Returns the number handled (>= 1) or the errors of
 * psyne_receive. Threads: as psyne_receive.
 */
PSYNE_API int psyne_drain(psyne_channel *ch, psyne_handler fn, void *arg, unsigned max, int64_t timeout_ns);

/*
 * Readiness descriptors: waiting for a channel inside an event loop (epoll,
 * poll, select, libuv, asio, io_uring POLL_ADD, asyncio's add_reader).
 *
 * psyne_channel_fd(ch, PSYNE_READY_RECV) returns a descriptor that polls
 * readable (POLLIN) when a receive on ch may succeed; PSYNE_READY_SEND, one
 * that polls readable when a claim may succeed. Both are POLLIN, as nng's
 * RECVFD and SENDFD: never poll them for POLLOUT, and never read or write
 * them. The rule, for level- and edge-triggered polling alike:
 *   - a new descriptor starts readable;
 *   - it stays readable until a call on the handle finds nothing: a
 *     receive (or claim) that returns -EAGAIN or -ETIMEDOUT re-arms it, and
 *     it becomes readable again when the next message (room) comes, at once
 *     if one came meanwhile;
 *   - so, when it polls readable, receive with PSYNE_NONBLOCK until -EAGAIN
 *     (or stop earlier and leave it readable: a level-triggered loop comes
 *     back at once, an edge-triggered one does not);
 *   - it may poll readable and the call still find nothing (another consumer
 *     took the message): that call re-arms it.
 * A handle with no descriptor pays nothing; with one, a publisher makes a
 * system call only when the descriptor is armed (one per arming, not per
 * message), as for a thread asleep in a blocking call. Shutdown, close of
 * the other side and tcp:// link failure make it readable (the call then
 * returns -EPIPE). Every scheme: memory://, ipc:// (the process that makes
 * it readable may be another; processes must share a network namespace, as
 * the descriptor is an abstract unix socket), tcp:// links, and listening
 * handles with max_peers for PSYNE_READY_RECV (their claims name a peer:
 * PSYNE_READY_SEND is -EOPNOTSUPP there).
 * The descriptor belongs to the handle: psyne_channel_close closes it (take
 * it out of your event loop first). Calling again returns the same one.
 * Returns the descriptor (>= 0), or -EINVAL (bad event), -EPERM (RECV on a
 * producer handle, SEND on a consumer one), -EOPNOTSUPP, -ENOSPC (more than
 * 32 descriptors wait on one ring), -EMFILE and other socket errors.
 * Thread-safe; never blocks.
 */
enum psyne_ready_event {
    PSYNE_READY_RECV = 1, /* a message to receive */
    PSYNE_READY_SEND = 2, /* room to claim */
};
PSYNE_API int psyne_channel_fd(psyne_channel *ch, int event);

/*
 * A wait set: waits for several channels (and descriptors of the caller's
 * own, such as timers) in one call, for programs without an event loop. It
 * is an epoll instance over the channels' readiness descriptors, so the rule
 * above holds: a channel it reports is drained with PSYNE_NONBLOCK calls
 * until -EAGAIN, and is reported again as long as it is not.
 */
typedef struct psyne_waitset psyne_waitset;

/* What psyne_waitset_wait reports: a channel (ch non-NULL, events one of
 * PSYNE_READY_*) or a descriptor added with psyne_waitset_add_fd (ch NULL,
 * fd). user: as given when it was added. */
struct psyne_ready {
    psyne_channel *ch;
    int fd;
    int events;
    void *user;
};

/* Creates an empty wait set. 0, -EINVAL, -ENOMEM, -EMFILE. Thread-safe. */
PSYNE_API int psyne_waitset_create(psyne_waitset **out);
/* Adds ch for events (PSYNE_READY_RECV, _SEND or both): its descriptors are
 * made as psyne_channel_fd makes them. 0, -EEXIST (already there), or the
 * errors of psyne_channel_fd. Remove a channel before closing it. */
PSYNE_API int psyne_waitset_add(psyne_waitset *ws, psyne_channel *ch, int events, void *user);
/* Adds a descriptor of the caller's, reported when it polls readable
 * (level-triggered). 0, -EEXIST, -EBADF. */
PSYNE_API int psyne_waitset_add_fd(psyne_waitset *ws, int fd, void *user);
/* Takes ch (or fd) out. 0, or -ENOENT. */
PSYNE_API int psyne_waitset_remove(psyne_waitset *ws, psyne_channel *ch);
PSYNE_API int psyne_waitset_remove_fd(psyne_waitset *ws, int fd);
/*
 * Waits up to timeout_ns (PSYNE_NONBLOCK: only looks; PSYNE_FOREVER) until
 * something in the set is ready, and fills up to max entries of ready.
 * Returns how many (>= 1), -ETIMEDOUT, -EINTR (a signal came: Ctrl-C can
 * stop a program that waits here), -EINVAL. Threads: a wait set is used by
 * one thread at a time (its add, remove, wait and destroy), like an
 * epoll_wait loop; the channels in it may be used by any threads.
 */
PSYNE_API int psyne_waitset_wait(psyne_waitset *ws, struct psyne_ready *ready, unsigned max, int64_t timeout_ns);
/* Frees the set (not its channels). NULL is accepted. */
PSYNE_API void psyne_waitset_destroy(psyne_waitset *ws);

/*
 * Removes the ipc:// segments (/dev/shm/psyne.*, and a dynamic ring's
 * /dev/shm/psyne-seg.*) of this process's user that no live process has
 * open: what programs killed with SIGKILL leave behind. A segment some live
 * process holds is never touched, nor one kept for a consumer by a
 * producer's close until its linger_ns is up (PSYNE_CLEAN_LINGERING: those
 * too), nor one that fails validation (PSYNE_CLEAN_INVALID: those too). The
 * first ipc:// open of each process runs it with flags 0; the next open of
 * a name reclaims that name's dead segment anyway. Dead processes' counters
 * segments (PSYNE_F_PUBLISH) go too, without being counted. Returns how many
 * channels' segments it removed (>= 0), or -EINVAL (flags), or -errno
 * (/dev/shm cannot be listed). Thread-safe; never blocks (it takes no lock
 * that a live process holds).
 */
#define PSYNE_CLEAN_LINGERING 1 /* also segments kept for a consumer */
#define PSYNE_CLEAN_INVALID 2   /* also segments that fail validation */
PSYNE_API int psyne_ipc_cleanup(int flags);

/* Counters of a channel, summed over every handle of it. */
struct psyne_stats {
    uint64_t capacity;         /* ring bytes */
    uint64_t in_use;           /* bytes committed or claimed and not yet released */
    uint64_t high_water;       /* most bytes in use seen by a side that looked */
    uint64_t msgs_out;         /* messages committed */
    uint64_t bytes_out;        /* payload bytes committed */
    uint64_t msgs_in;          /* messages released by consumers (per subscriber in BROADCAST) */
    uint64_t bytes_in;         /* payload bytes released by consumers */
    uint64_t full_events;      /* claims that found the ring full */
    uint64_t empty_events;     /* receives that found the ring empty */
    uint64_t waits;            /* times a caller went to sleep on the futex */
    uint64_t wakeups;          /* wake-up system calls issued */
    int mode;                  /* enum psyne_mode */
    int subscribers;           /* BROADCAST: current subscribers */
    uint64_t peers_lost;       /* ipc: handles of dead processes cleaned up by survivors */
    uint64_t claims_recovered; /* ipc: dead producers' unfinished claims skipped as padding */
    int producers;             /* open handles that may produce (all processes, for ipc) */
    int consumers;             /* open handles that may consume */
    uint64_t views_recovered;  /* ipc SPMC/MPMC: messages a dead consumer held, released for it */
    /* tcp:// (zero for other schemes): */
    uint64_t tcp_reconnects;      /* connections re-established after a break */
    uint64_t tcp_protocol_errors; /* connections dropped for a bad handshake or frame */
    uint64_t tcp_send_calls;      /* send/sendmsg system calls (messages per call = batching) */
    uint64_t tcp_recv_calls;      /* recv/recvmsg system calls */
    int tcp_connected;            /* 1 while a connection is up (max_peers: any) */
    /* Placement of this handle's ring memory (tcp://: its receive ring; the send ring is alike): */
    int pages;          /* enum psyne_pages */
    uint64_t page_size; /* bytes per page backing the ring */
    int numa_node;      /* node bound with PSYNE_F_NUMA_BIND, or -1 */
    int locked;         /* 1: pages locked in memory (PSYNE_F_MLOCK) */
    /* Dynamic rings (zero for static ones); capacity above is the segment the producer writes: */
    int segments;               /* live segments: the current one and those not yet released */
    uint64_t resizes_up;        /* segments chained larger */
    uint64_t resizes_down;      /* segments chained smaller */
    uint64_t resize_ns;         /* time producers spent making and chaining segments */
    uint64_t failed_claims;     /* claims that found the ring full at its largest size */
    uint64_t window_high_water; /* most bytes in use over the last complete window */
    /* tcp:// listening with max_peers (the tcp:// counters above sum over its peers): */
    uint64_t tcp_peers;    /* clients connected now */
    uint64_t reserved[16]; /* counters of later versions within this ABI; zero here */
};

/*
 * Reads the channel's counters. Counters are updated without locks, so a
 * snapshot taken while others run is approximate (each counter is exact at
 * some moment). SPSC and BROADCAST producers do not count per message: the
 * call counts their latest records from the record headers, up to one
 * ring's worth (about 1 us per thousand records). Returns 0 or -EINVAL.
 * Thread-safe; never blocks.
 */
PSYNE_API int psyne_channel_stats(psyne_channel *ch, struct psyne_stats *st);

/*
 * Pins the calling thread to the n CPUs listed in cpus (numbers as in
 * /proc/cpuinfo), for a user's producer and consumer threads. Returns 0, or
 * -EINVAL (n == 0, a negative or too large number, or none of them allowed
 * to this process). Thread-safe; affects only the calling thread; never
 * blocks (the thread moves at its next scheduling point).
 */
PSYNE_API int psyne_pin_thread(const int *cpus, unsigned n);

/*
 * Writes the CPUs the calling thread may run on into cpus[0..max-1], in
 * increasing order, and returns how many there are (which may exceed max),
 * or -errno. Thread-safe; never blocks.
 */
PSYNE_API int psyne_thread_cpus(int *cpus, unsigned max);

/* The version of the library that runs, as PSYNE_VERSION_NUMBER (major *
 * 10000 + minor * 100 + patch): compare it with the header's to see what a
 * program was built against. Thread-safe; never blocks; never fails. */
PSYNE_API int psyne_version(void);

/* Short description of a psyne return code (-errno or errno). Thread-safe;
 * the string is static. */
PSYNE_API const char *psyne_strerror(int err);

/* Detail of the calling thread's most recent failed call ("capacity 3 GiB is
 * above PSYNE_MAX_CAPACITY"), or "" if none. Valid until the thread's next
 * psyne call. */
PSYNE_API const char *psyne_last_error(void);

/* How much a log message matters (psyne_set_log). */
enum psyne_log_level {
    PSYNE_LOG_ERROR = 1, /* a link failed for good: the channel ends (-EPIPE follows) */
    PSYNE_LOG_WARN = 2,  /* a peer was dropped or refused: bad data, too many peers, no hello */
    PSYNE_LOG_INFO = 3,  /* a connection broke and is being restored */
};

/* Receives one log message (without a trailing newline), from whichever
 * thread saw the event: a library thread (tcp:// links and listeners) or a
 * caller's. It must not call psyne functions on the channel it reports. */
typedef void (*psyne_log_fn)(void *arg, int level, const char *msg);

/*
 * Installs fn (NULL: none, the default) for messages up to max_level
 * (enum psyne_log_level). psyne never writes to stdout or stderr; without a
 * log function its diagnostics are only in return values and
 * psyne_last_error(). Returns 0 or -EINVAL (max_level out of range).
 * Thread-safe: a message already being delivered may still reach the
 * previous function. Never blocks for long (a mutex held while the pointers
 * are copied).
 */
PSYNE_API int psyne_set_log(psyne_log_fn fn, void *arg, int max_level);

/*
 * Slabs: a few large regions mapped (and placed, prefaulted, locked) once
 * and carved into rings and message storage, for programs whose total
 * memory is not known in advance. A pool starts with one slab and adds a
 * slab when a request fits in none, up to max_bytes. Carved ranges go back
 * to the pool when freed (a ring's when its channel, or a dynamic ring's
 * segment, is unmapped) and are reused; slabs stay mapped until the pool is
 * destroyed.
 * Rings: psyne_options.slabs (memory:// and tcp://). A ring takes its
 * control block and data from one slab (with explicit huge pages the
 * capacity must be a multiple of the huge page size: -EINVAL otherwise),
 * mapped twice (mirrored) like any ring; a range that was used before is
 * zeroed when carved again.
 * Threads: every call is thread-safe (one mutex per pool). Blocking: calls
 * take that mutex; a call that adds a slab makes system calls (memfd_create,
 * mmap, and prefaulting the slab).
 */
typedef struct psyne_slabs psyne_slabs;

struct psyne_slab_options {
    uint64_t slab_size; /* bytes per slab [64 MiB], rounded up to the page size; a larger request
                           gets a slab of its own size */
    uint64_t max_bytes; /* all slabs together at most this [0: no limit]; beyond: -ENOMEM */
    uint32_t flags;     /* PSYNE_F_HUGEPAGES, PSYNE_F_NUMA_BIND, PSYNE_F_MLOCK, PSYNE_F_NO_PREFAULT:
                           as for a ring, for every slab */
    uint32_t numa_node; /* with PSYNE_F_NUMA_BIND */
};

struct psyne_slab_stats {
    uint64_t slabs;        /* slabs mapped */
    uint64_t bytes;        /* bytes of all slabs */
    uint64_t bytes_in_use; /* bytes carved and not freed (rounded up to their alignment) */
    uint64_t high_water;   /* most bytes_in_use ever */
    uint64_t growths;      /* slabs added after the first */
    uint64_t allocations;  /* ranges carved and not freed (rings and psyne_slab_alloc) */
    uint64_t allocs_total; /* ranges ever carved */
    uint64_t failed;       /* requests refused: nothing fit and no slab could be added */
    int pages;             /* enum psyne_pages of the slabs */
    uint64_t page_size;    /* bytes per page backing them */
    int numa_node;         /* node bound with PSYNE_F_NUMA_BIND, or -1 */
    int locked;            /* 1: pages locked in memory */
};

/* Fills *opt with the defaults. Thread-safe; never blocks. */
PSYNE_API void psyne_slab_options_init(struct psyne_slab_options *opt);
/* Maps the first slab and returns the pool in *out. Returns 0, -EINVAL (a
 * bad option, a NUMA node that is not online), -ENOMEM/-EPERM (no memory,
 * or beyond RLIMIT_MEMLOCK with PSYNE_F_MLOCK). Never fails for lack of
 * huge pages: psyne_slab_stats.pages says what the slabs got. */
PSYNE_API int psyne_slabs_create(const struct psyne_slab_options *opt, psyne_slabs **out);
/* Unmaps every slab. -EBUSY (and nothing happens) while anything carved
 * from it is in use: close its channels first. NULL: 0. */
PSYNE_API int psyne_slabs_destroy(psyne_slabs *s);
/* Carves len bytes (> 0), 64-byte aligned, for the caller's own use (message
 * storage, staging, tensors): *out points into a slab. The contents are
 * unspecified. Returns 0, -EINVAL, or -ENOMEM (nothing fits and no slab can
 * be added within max_bytes). */
PSYNE_API int psyne_slab_alloc(psyne_slabs *s, size_t len, void **out);
/* Returns a range psyne_slab_alloc gave. -EINVAL for any other pointer. */
PSYNE_API int psyne_slab_free(psyne_slabs *s, void *p);
/* Reads the pool's counters (a consistent snapshot, taken under its mutex).
 * Returns 0 or -EINVAL. */
PSYNE_API int psyne_slabs_stats(psyne_slabs *s, struct psyne_slab_stats *st);

#include "psyne/tensor.h" /* typed messages: vectors, matrices, tensors */

#ifdef __cplusplus
}
#endif

#endif /* PSYNE_H */
