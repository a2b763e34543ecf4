/* SPDX-License-Identifier: MIT */
/*
 * ring.h - the byte ring shared by every transport: its memory layout and
 * the internal calls of src/ring/.
 *
 * Memory: one mapping of [control block | data] where the data region (a
 * power of two, page multiple) is mapped twice back to back, so a record that
 * runs past the end continues in the second mapping and is contiguous.
 * Positions are free-running 64-bit byte counters; pos & mask is the offset.
 *
 * Record: 8-byte header {uint32 length; uint32 type} read and written as one
 * 64-bit word (little endian: length | type << 32), then the payload, padded
 * so the next record starts 8-byte aligned. Type 0 never appears in a
 * committed header, so a zero word means "not committed yet".
 *
 * Ordering contract (labels are used in the .c files):
 *   Every mode: consumers learn that a record is committed from its header
 *     alone (A2, acquire), never from the producer's position, so a reader
 *     touches only the lines of the records it reads. A zero header means
 *     "nothing committed here yet".
 *   SP producer: writes the record and a zero header just after it (the
 *     terminator, in 8 bytes of free space every claim keeps), then R1
 *     stores the record's header with release. pub.tail is then updated for
 *     statistics and BROADCAST bookkeeping only. While a claim is open,
 *     bit 0 of pub.tail is set (PSY_TAIL_CLAIMED): one store on claim, and
 *     the commit's tail store clears it, instead of a flag word of its own
 *     (two stores per message that queued behind the payload's).
 *   SP producer counters: unless the ring counts commits (walk_counts
 *     false: MC consumers rewrite headers, tcp:// receive rings count what
 *     they publish), the producer does not count per message: on x86 a
 *     counter's load and store behind the payload's stores slow 64 B
 *     streams measurably (benchmarks/sp_store_cost.c). Its records are
 *     counted from their headers instead: prod.msgs/bytes hold the counts
 *     up to prod.count_pos, and the rest, [count_pos, tail), is still in
 *     the ring. The producer moves the checkpoint (sp_checkpoint in
 *     produce.c) each time it refreshes its cached head, before it may
 *     overwrite any of those records, and after each batch it commits (the
 *     batch counted as committed, without a walk); readers
 *     (psy_ring_produced) add what lies after it under the sequence count
 *     prod.count_seq, odd while it moves (R7, fence; pairs with the
 *     reader's fence A7 before its second read).
 *   MP producers: reserve with a CAS on pub.tail; R2 store the header with
 *     release once the record is written. Free space is always zero
 *     (consumers zero what they release in MP modes), so there is no
 *     terminator to write.
 *   MP leases (lease.c; memory:// rings with PSYNE_F_LEASES): one CAS on
 *     pub.tail reserves a run for one producer handle, which claims from
 *     it and publishes each record by R2 as above. The rest of a run that
 *     is no longer claimed from becomes one pad, written by whoever closes
 *     the lease (its owner or a consumer; a CAS on the lease's state picks
 *     one), so consumers read records in position order as before.
 *   SC consumer / BROADCAST subscriber: reads, then R3 stores its release
 *     position with release; the producer A3 loads it with acquire before
 *     reusing the space (this also publishes the zeroing in MP modes). The
 *     consumer only stores that word: it reads its own copy (released), as
 *     a load of the line producers read costs it a transfer.
 *   MC consumers: read_pos and rel.head carry a lock bit (bit 0; positions
 *     are 8-aligned). Taking records and sweeping released ones each happen
 *     under their bit, so nobody ever reads a header that may be recycled.
 *     In ipc rings a consumer retags the header of every record it takes
 *     {span, PSY_TYPE_TAKEN + slot} before it lets go of the read lock, so
 *     a survivor can release what a dead consumer held (recover.c); nobody
 *     reads a taken record's header but the sweeper, which only looks for
 *     markers, and that recovery. Lock holders note themselves (read_owner,
 *     sweep_owner) and an MP sweeper notes its target (sweep_to) before it
 *     zeroes anything, so a holder's death can be finished for it.
 *     A released record's header becomes a marker (R4, release); the sweeper
 *     A4 loads it. A release that finds the sweep lock taken sets the
 *     PENDING bit with a CAS (R6, release) instead, an RMW even when the bit
 *     is already set; the holder's unlock CAS fails on it (A6, acquire) and
 *     the holder clears it with an exchange (acq_rel, which reads the last
 *     R6), so it sees every such marker and sweeps again. A plain load or
 *     store on either side loses a marker (store-load reordering): the ring
 *     then stalls with producers waiting for space and consumers for data.
 *   Waiting: see wait.c (waiter counts, asymmetric barrier, futex).
 */
#ifndef PSY_RING_H
#define PSY_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include "psyne.h"
#include "../mem/placement.h"

#define PSY_CACHE_BLOCK 128                  /* two lines: keeps adjacent-line prefetch off the other side */
#define PSY_RING_MAGIC 0x31454e5953505953ull /* "SYPSYNE1" */
#define PSY_RING_VERSION 3u                  /* 3: the readiness descriptors' table */

#define PSY_TYPE_PAD 1u             /* filler: rest of an MP reservation */
#define PSY_TYPE_TAKEN 0x100u       /* ipc MC: + slot, header of a record a consumer holds */
#define PSY_MARKER_BIT (1ull << 63) /* MC: header of a released span */
#define PSY_LOCK_BIT 1ull           /* MC: bit 0 of read_pos / rel.head */
#define PSY_PENDING_BIT 2ull        /* MC: rel.head - a release came during a sweep */
#define PSY_POS_FLAGS 7ull          /* positions are 8-aligned: low bits are flags */
/* PSY_TAIL_CLAIMED (psyne/inline.h): SP, bit 0 of pub.tail, a claim is open */

typedef _Atomic uint64_t psy_atomic64;
typedef _Atomic uint32_t psy_atomic32;

/* What a waiter waits for: records to receive, or room to claim. */
enum psy_wait_side { PSY_WAIT_DATA, PSY_WAIT_SPACE };

/* Producer's published position (the line consumers read). */
struct psy_pub {
    alignas(PSY_CACHE_BLOCK) psy_atomic64 tail; /* SP: producer writes; MP: CAS by producers */
};

/* Producer-side private state and counters. */
struct psy_prod {
    alignas(PSY_CACHE_BLOCK) psy_atomic64 cached_head; /* producer's copy of the release position */
    psy_atomic64 msgs; /* SP: up to count_pos (walk_counts) or every commit; MP: closed handles' totals (channel.c) */
    psy_atomic64 bytes;
    psy_atomic64 full_events;
    psy_atomic64 count_pos; /* SP walk_counts: msgs/bytes count the records before this position */
    psy_atomic64 count_seq; /* SP walk_counts: odd while the producer moves count_pos (R7) */
};

/* Consumer-side read state (MC: contended, lock bit in read_pos). */
struct psy_cons {
    alignas(PSY_CACHE_BLOCK) psy_atomic64 read_pos; /* next record to hand out */
    psy_atomic64 msgs;
    psy_atomic64 bytes;
    psy_atomic64 empty_events;
    psy_atomic32 read_owner; /* ipc MC: taken_tag of the last read-lock holder */
    /* SC: the consumer's own copy of rel.head, which only it writes. It never
     * loads rel.head: producers read that line, and a load of it after theirs
     * waits for the line to come back (small receives ran measurably faster
     * without those loads). */
    psy_atomic64 released;
};

/* Consumer's release position: the line producers read. */
struct psy_rel {
    alignas(PSY_CACHE_BLOCK) psy_atomic64 head; /* MC: lock bit 0 while sweeping */
    psy_atomic64 sweep_to;                      /* MP MC: where the sweep holding the lock is going (crash recovery) */
    psy_atomic32 sweep_owner;                   /* ipc MC: taken_tag of the last sweep-lock holder */
};

/* Waiting: read on every commit/release, written only by sleepers/wakers. */
struct psy_wait_block {
    alignas(PSY_CACHE_BLOCK) psy_atomic32 data_seq; /* futex word: consumers sleep on it */
    psy_atomic32 data_waiters;                      /* futex sleepers + PSY_ARMED_FD per armed descriptor (notify.c) */
    psy_atomic32 space_seq;                         /* futex word: producers sleep on it */
    psy_atomic32 space_waiters;
    psy_atomic32 data_armed; /* a sleeper registered since the last wake (wait.c) */
    psy_atomic32 space_armed;
    psy_atomic32 closed;         /* set once by shutdown */
    psy_atomic32 producers;      /* open handles that may produce */
    psy_atomic32 consumers;      /* open handles that may consume */
    psy_atomic32 consumers_left; /* the last consumer closed or died: what is unread is for nobody */
};

/* A waiters word counts futex sleepers in its low 16 bits and armed
 * readiness descriptors above them: publishers test the whole word, the
 * waker makes the system calls each kind needs. */
#define PSY_ARMED_FD (1u << 16)
#define PSY_SLEEPERS_MASK (PSY_ARMED_FD - 1)

/* Readiness descriptors (notify.c) registered on the ring: read by wakers
 * only on their slow path, after they took an arming. */
#define PSY_NOTIFY_SLOTS 32
#define PSY_NOTIFY_NAME 16 /* bytes of a descriptor's abstract socket name */
struct psy_notify_slot {
    psy_atomic32 state; /* PSY_NOTIFY_FREE, _BUSY (being filled or taken back), or side + 1 */
    psy_atomic32 armed; /* the owner waits: the next wake sends it a datagram */
    psy_atomic32 pid;   /* the owner's process (for tools; liveness is the socket's) */
    uint32_t unused;
    psy_atomic64 name[2]; /* PSY_NOTIFY_NAME bytes */
};
#define PSY_NOTIFY_FREE 0u
#define PSY_NOTIFY_BUSY 0xffffffffu
struct psy_notify_table {
    alignas(PSY_CACHE_BLOCK) struct psy_notify_slot slots[PSY_NOTIFY_SLOTS];
};

/* Slow-path counters. */
struct psy_slow_stats {
    alignas(PSY_CACHE_BLOCK) psy_atomic64 waits;
    psy_atomic64 wakeups;
    psy_atomic64 high_water;
};

/* One BROADCAST subscriber, written by its own consumer. */
struct psy_sub {
    alignas(PSY_CACHE_BLOCK) psy_atomic64 head; /* R3: release position */
    psy_atomic64 read_pos;
    psy_atomic64 msgs;
    psy_atomic64 bytes;
    psy_atomic64 empty_events;
    psy_atomic32 active;   /* changed under bcast.lock */
    psy_atomic64 released; /* the subscriber's own copy of head, as psy_cons.released */
};

/* BROADCAST membership; the producer's refresh of the slowest position and
 * every join/leave take the lock, so a joining subscriber never starts
 * behind space the producer already reuses. */
struct psy_bcast {
    alignas(PSY_CACHE_BLOCK) pthread_mutex_t lock;
    psy_atomic64 floor; /* slowest subscriber position seen by the producer */
    psy_atomic32 count;
};

/* Identity, written once before the ring is shared. */
struct psy_ident {
    alignas(PSY_CACHE_BLOCK) uint64_t magic;
    uint32_t version;
    uint32_t mode;
    uint64_t capacity;
    uint64_t data_offset; /* from the start of the control block */
    uint64_t reserved[4];
};

struct psy_ring_shared {
    struct psy_ident ident;
    struct psy_pub pub;
    struct psy_prod prod;
    struct psy_cons cons;
    struct psy_rel rel;
    struct psy_wait_block wait;
    struct psy_slow_stats slow;
    struct psy_bcast bcast;
    struct psy_sub subs[PSYNE_MAX_SUBSCRIBERS];
    struct psy_notify_table notify;
};

_Static_assert(offsetof(struct psy_ring_shared, pub) % PSY_CACHE_BLOCK == 0, "pub block aligned");
_Static_assert(offsetof(struct psy_ring_shared, prod) - offsetof(struct psy_ring_shared, pub) == PSY_CACHE_BLOCK,
               "producer private state apart from the published tail");
_Static_assert(offsetof(struct psy_ring_shared, rel) - offsetof(struct psy_ring_shared, cons) == PSY_CACHE_BLOCK,
               "release position apart from consumer read state");
_Static_assert(sizeof(struct psy_wait_block) == PSY_CACHE_BLOCK, "wait block is one block");
_Static_assert(sizeof(struct psy_sub) == PSY_CACHE_BLOCK, "one block per subscriber");
_Static_assert(sizeof(struct psy_ring_shared) <= 8192, "control block fits two pages");

/* What an MP producer is claiming, kept where a survivor can read it if the
 * producer's process dies mid-claim (ipc://). pos is written before the
 * reserving CAS with PSY_INTENT_TENTATIVE set, rewritten without it after the
 * CAS succeeds, and set to PSY_INTENT_NONE once the claim is committed. */
struct psy_claim_intent {
    psy_atomic64 pos;
    psy_atomic64 end;
};
#define PSY_INTENT_NONE 1ull      /* positions are 8-aligned: never a position */
#define PSY_INTENT_TENTATIVE 2ull /* the CAS may not have happened */

/* An MP producer handle's lease of ring bytes (lease.c): in-process rings
 * only, in an array of the ring's process-local view (psy_ring.leases, the
 * slots in use marked in psy_ring.lease_slots). One block, the owner's:
 * consumers read state and CAS it only to close an idle lease. */
struct psy_lease {
    alignas(PSY_CACHE_BLOCK) psy_atomic64 state; /* lease.c: 0, pos|IDLE, pos|CLAIMING or BUSY */
    psy_atomic64 end;                            /* the lease's end, fixed while it is IDLE or CLAIMING */
    _Atomic bool close_after;                    /* owner: the open claim's commit closes the lease */
};
#define PSY_MAX_LEASES                                                                                                 \
    32 /* producer handles with a lease per ring (bits of lease_slots); more claim one message per CAS */
#define PSY_LEASE_BYTES 4096u /* a lease: 56 records of 64 B (faster than 1 KiB and 16 KiB leases: the guide) */

/* Process-local view of a ring. */
struct psy_ring {
    /* The SP producer's view (psyne/inline.h), also copied into producer
     * handles for the inline psyne_claim/psyne_commit; its wake_fence:
     * publishers fence before reading waiter counts (no membarrier). */
    struct psy_lane lane;
    struct psy_ring_shared *sh;
    uint8_t *data; /* first of the two mirrored mappings */
    uint64_t cap;
    uint64_t mask; /* (cap - 1) & ~7: header offsets only; byte offsets use cap - 1 */
    int mode;
    bool mp;          /* many producers: CAS reservation, zeroed free space */
    bool mc;          /* many competing consumers: lock bits, markers */
    bool walk_counts; /* SP: the producer's counts come from the headers (see the contract above) */
    int wait_kind;    /* enum psyne_wait */
    bool spin_yields; /* PSYNE_WAIT_SPIN yields every 64 polls: waiters wait for a library thread (wait.c) */
    int64_t spin_ns;
    int64_t yield_ns;
    void *map_base; /* whole reservation, for unmapping */
    size_t map_len;
    struct psyne_slabs *slabs;               /* the ring was carved from these (psyne_options.slabs), else NULL */
    void *slab_block;                        /* its range there */
    struct psy_placement place;              /* what backs this view's memory (psyne_stats) */
    bool ipc;                                /* lives in an ipc:// segment (src/transport/ipc.c) */
    bool global_barrier;                     /* ipc: the sleeper's barrier must reach other processes */
    struct psy_claim_intent *intent;         /* ipc MP: this handle's claim, for crash recovery; else NULL */
    uint32_t taken_tag;                      /* ipc MC: PSY_TYPE_TAKEN + slot, tags what this handle holds; else 0 */
    int64_t peer_timeout_ns;                 /* ipc: how often a waiting call looks for dead peers */
    void (*check_peers)(struct psy_ring *r); /* ipc: finds dead peers and recovers what they held */
    psy_atomic32 polls;                      /* ipc: non-blocking calls that found nothing (channel.c) */
    _Atomic int64_t next_peer_check;         /* ipc: when such a call looks for dead peers next */
    struct psy_lease *leases;                /* in-process MP rings: PSY_MAX_LEASES slots (lease.c); else NULL */
    uint64_t lease_bytes;                    /* how much a lease reserves at once */
    psy_atomic32 lease_slots;      /* bit i: leases[i] belongs to a producer handle (consumers look there only) */
    psy_atomic32 lease_polls;      /* fruitless non-blocking receives (channel.c poll_leases) */
    pthread_mutex_t handles_lock;  /* guards handles */
    struct psyne_channel *handles; /* this process's open handles (MP counters) */
};

/* Header word helpers. */
static inline uint64_t psy_hdr_make(uint32_t length, uint32_t type)
{
    return (uint64_t)length | ((uint64_t)type << 32);
}
static inline uint32_t psy_hdr_length(uint64_t w)
{
    return (uint32_t)w;
}
static inline uint32_t psy_hdr_type(uint64_t w)
{
    return (uint32_t)(w >> 32);
}
static inline psy_atomic64 *psy_hdr_at(const struct psy_ring *r, uint64_t pos)
{
    return (psy_atomic64 *)(r->data + (pos & r->mask));
}

/* Creation and teardown (ring.c). */
/* The smallest power of two >= v (v <= 2^63). */
uint64_t psy_round_up_pow2(uint64_t v);
/* The capacity opt asks for, rounded up (-EINVAL if too large). */
int psy_ring_capacity(const struct psyne_options *opt, uint64_t *cap);
/* Bytes of the control block, a page multiple: data starts there. */
size_t psy_ring_control_size(void);
/* Initializes a zero-filled control block (once, by the creator). */
void psy_ring_format(struct psy_ring_shared *sh, int mode, uint64_t cap, uint64_t data_offset);
/* Fills this process's view of a mapped ring (no shared state is touched). */
void psy_ring_view(struct psy_ring *r, struct psy_ring_shared *sh, uint8_t *data, uint64_t cap, int mode,
                   const struct psyne_options *opt);
/* memory://: a private mirrored ring, formatted and viewed. */
int psy_ring_create(struct psy_ring *r, const struct psyne_options *opt);
/* A ring used only for its wait block (a thread sleeps on it and others
 * wake it): the smallest plain ring of this process's own memory (never
 * from opt's slabs), with opt's waiting options. */
int psy_ring_create_bell(struct psy_ring *bell, const struct psyne_options *opt);
/* Takes the BROADCAST membership mutex, recovering it from a dead holder. */
void psy_bcast_lock(struct psy_ring_shared *sh);
void psy_ring_destroy(struct psy_ring *r);
void psy_ring_set_start(struct psy_ring *r, uint64_t start);
void psy_ring_shutdown(struct psy_ring *r);
static inline bool psy_ring_closed(const struct psy_ring *r)
{
    return atomic_load_explicit(&r->sh->wait.closed, memory_order_acquire) != 0;
}
uint64_t psy_ring_in_use(const struct psy_ring *r);
/* Committed messages no consumer has released (BROADCAST: than the
 * subscriber that read most), from the counters, for the last close. */
uint64_t psy_ring_unread(const struct psy_ring *r);
/* BROADCAST: the position of the slowest active subscriber, or floor if none. */
uint64_t psy_bcast_slowest(const struct psy_ring *r, uint64_t floor, uint64_t tail);
/* Raises the high-water mark to `used` bytes. The mark's line is only
 * written while it grows, so calling this on every receive costs a load. */
static inline void psy_ring_note_usage(struct psy_ring *r, uint64_t used)
{
    psy_atomic64 *hw = &r->sh->slow.high_water;
    uint64_t cur = atomic_load_explicit(hw, memory_order_relaxed);
    while (used > cur &&
           !atomic_compare_exchange_weak_explicit(hw, &cur, used, memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* Producer side (produce.c): non-blocking; -EAGAIN when full. */
/* The release position a producer may not pass (A3), refreshed when the
 * cached copy says the ring is full. */
uint64_t psy_ring_refresh_head(struct psy_ring *r);
/* Any producer at tail (MP: the tail it saw) that found the ring full by its
 * cached head: re-reads the release position and stores it as the cached
 * head (R5), noting the bytes in use; SP rings that count from headers
 * (walk_counts) first move the count checkpoint to tail. Returns the head. */
uint64_t psy_ring_refresh_cached_head(struct psy_ring *r, uint64_t tail);
/* The producer's message and byte counts (any thread, any process). */
void psy_ring_produced(const struct psy_ring *r, uint64_t *msgs, uint64_t *bytes);
int psy_ring_claim(struct psy_ring *r, uint64_t need, struct psyne_claimed *c);
int psy_ring_commit(struct psy_ring *r, struct psyne_claimed *c, uint32_t length, uint32_t type);
int psy_ring_abort(struct psy_ring *r, struct psyne_claimed *c);
/* MP: publishes `length`/`type` at pos (R2), and a pad record over whatever
 * is left of the `reserved` bytes there so consumers can step over it. */
void psy_mp_publish(struct psy_ring *r, uint64_t pos, uint64_t reserved, uint32_t length, uint32_t type);
void psy_ring_count_full(struct psy_ring *r);
/* Batches: up to n records of `need` bytes each, one reservation. */
int psy_ring_claim_batch(struct psy_ring *r, uint64_t need, struct psyne_claimed *c, unsigned n);
/* bytes: the sum of lengths[0..n-1] (the caller has added them up already). */
void psy_ring_commit_batch(struct psy_ring *r, struct psyne_claimed *c, unsigned n, const uint32_t *lengths,
                           uint32_t type, uint64_t bytes);

/* MP claim leases (lease.c), for rings with leases (psy_lease_init). */
int psy_lease_init(struct psy_ring *r);
void psy_lease_fini(struct psy_ring *r);
/* A slot for a producer handle, NULL if none is free. */
struct psy_lease *psy_lease_take(struct psy_ring *r);
/* Closes what is left of the handle's lease and frees the slot. */
void psy_lease_give_back(struct psy_ring *r, struct psy_lease *l);
/* The lease's owner is about to claim outside it (psy_ring_claim): closes
 * it now, or when its open claim is committed, so nothing the owner claims
 * later lands before that claim. */
void psy_lease_stop(struct psy_ring *r, struct psy_lease *l);
/* The owner's claim of need bytes from its lease, or from a new one. 0,
 * -EAGAIN (full), or 1: its own claim from the lease is still open (claim
 * with psy_ring_claim instead; the lease closes behind the open one). */
int psy_lease_claim(struct psy_ring *r, struct psy_lease *l, uint64_t need, struct psyne_claimed *c);
/* Commits (or aborts) c if it was claimed from l; false if it was not. */
bool psy_lease_commit(struct psy_ring *r, struct psy_lease *l, struct psyne_claimed *c, uint32_t length, uint32_t type,
                      bool abort);
/* Bytes reserved by idle leases and not claimed yet (statistics). */
uint64_t psy_lease_unused(const struct psy_ring *r);
/* Consumers that found nothing: closes idle leases that hold records back
 * (force: every idle lease, before sleeping or giving up). True if any. */
bool psy_lease_unblock(struct psy_ring *r, bool force);

/* Consumer side (consume.c): non-blocking; -EAGAIN when empty, -EPIPE when
 * shut down and drained, -EBUSY (MC) when other consumers kept the read lock
 * (retry; not a reason to sleep). */
struct psy_reader;
/* rd: the single consumer's state (psy_ring_reader_init), NULL in MC modes. */
void psy_ring_reader_init(struct psy_ring *r, int sub, struct psy_reader *rd);
/* The consumer that is about to use rd: its copy of the release position
 * starts from the shared one, whoever released last (another process, or one
 * that died between its two stores). Never while another consumer of rd's
 * ring may release. */
void psy_ring_reader_attach(const struct psy_reader *rd);
int psy_ring_receive(struct psy_ring *r, const struct psy_reader *rd, struct psyne_msg *msgs, unsigned max);
/* Releases msgs[0..n-1], the result of one receive (n >= 1, contiguous:
 * the caller checked): SC frees up to the last one's end; MC first checks
 * that the span is held by a consumer of this ring. 0 or -EINVAL. */
int psy_ring_release(struct psy_ring *r, const struct psy_reader *rd, const struct psyne_msg *msgs, unsigned n);
int psy_ring_subscribe(struct psy_ring *r);
/* MC internals shared with recover.c: release a span, sweep released spans. */
int psy_mc_release(struct psy_ring *r, uint64_t begin, uint64_t end);
/* Marks the span at begin released (R4), zeroing its payload in MP rings; no sweep. */
void psy_mc_mark_released(struct psy_ring *r, uint64_t begin, uint64_t span);
void psy_mc_sweep(struct psy_ring *r);
/* Crash recovery (recover.c): turns what is left of a dead producer's
 * reservation [pos, end) into a pad so consumers step over it. The caller
 * has made sure the producer is dead and that no live producer claims pos.
 * Returns the bytes padded (0: nothing was left to recover). */
uint64_t psy_ring_recover_claim(struct psy_ring *r, uint64_t pos, uint64_t end);
/* Cleans up after a dead MC consumer (tagged `taken_tag`): finishes a read
 * or sweep it was in the middle of (holding the lock), and releases every
 * record it held. Also used at close for views still held. Returns how many
 * records it released. */
unsigned psy_ring_recover_consumer(struct psy_ring *r, uint32_t taken_tag);
void psy_ring_unsubscribe(struct psy_ring *r, int sub);
void psy_ring_count_empty(struct psy_ring *r, int sub);

/* Waiting (wait.c). */
typedef int (*psy_try_fn)(void *ctx);
int psy_wait_loop(struct psy_ring *r, enum psy_wait_side side, psy_try_fn try_once, void *ctx, int64_t timeout_ns);
/* The same for the library's own threads (tcp:// links): PSYNE_WAIT_SPIN
 * waits as PSYNE_WAIT_ADAPTIVE does (spin_ns + yield_ns, then sleep). A
 * user who asks to spin spins in its own calls; a helper thread that never
 * slept would take a CPU from the users (a listening handle's peer link
 * burnt a whole CPU while idle), and be awake, so handed work, whenever
 * they commit. */
int psy_wait_loop_helper(struct psy_ring *r, enum psy_wait_side side, psy_try_fn try_once, void *ctx,
                         int64_t timeout_ns);
/* Wakes every sleeper of side, unconditionally (shutdown, bells). */
void psy_wake_slow(struct psy_ring *r, enum psy_wait_side side);
/* The sleeper's half of the Dekker pairing (wait.c): after registering,
 * before the last look. */
void psy_wait_barrier(const struct psy_ring *r);
/* Wakes the sleepers of side if one registered since the last wake: the
 * call for publishers that saw a waiter count (psy_ring_has_sleepers). */
void psy_wake_sleepers(struct psy_ring *r, enum psy_wait_side side);

/* Readiness descriptors (notify.c): a waiter that sleeps in the user's
 * event loop rather than on the futex. The descriptor is an AF_UNIX
 * datagram socket bound to a random abstract name, registered in a slot of
 * the ring's notify table; a waker that finds it armed disarms it and
 * sends it one byte, which makes it readable. */
struct psy_notifier {
    int fd;                /* what the user polls (POLLIN) */
    uint64_t name[2];      /* its abstract name, PSY_NOTIFY_NAME random bytes */
    struct psy_ring *ring; /* where it was last registered, or NULL */
    enum psy_wait_side side;
    int slot;
    unsigned quiet_arms; /* arms that found it still armed, since the last drain */
};
/* A new descriptor, registered nowhere (-errno if no socket). */
int psy_notifier_open(struct psy_notifier *n, enum psy_wait_side side);
/* Makes it readable now (a new descriptor starts so: its user looks first). */
void psy_notifier_signal(struct psy_notifier *n);
/* Arms it on r (registering there first if it is not): the next wake of its
 * side sends. The caller must look again afterwards: what was published
 * before the arming woke nobody. 0, or -ENOSPC (no free slot in r). */
int psy_notifier_arm(struct psy_notifier *n, struct psy_ring *r);
/* Takes it out of `current` (if registered there: a ring it left may be
 * gone) and closes it. */
void psy_notifier_close(struct psy_notifier *n, struct psy_ring *current);
/* The waker's part (psy_wake_slow): every armed descriptor of side. */
void psy_notify_wake(struct psy_ring *r, enum psy_wait_side side);
void psy_wait_init(void);
extern bool psy_wake_needs_fence;        /* memory://: no membarrier(PRIVATE_EXPEDITED) */
extern bool psy_wake_needs_fence_global; /* ipc://: no membarrier(GLOBAL_EXPEDITED) */

/* Called by the side that just made data (or space) available. The sleeper
 * registers, then runs a process-wide (ipc: system-wide) barrier (membarrier) before its final
 * re-check, so this side needs only a compiler barrier here: either the
 * sleeper's re-check sees what we published, or we see its waiter count. */
static inline void psy_wake_fence(const struct psy_ring *r)
{
    if (r->lane.wake_fence)
        atomic_thread_fence(memory_order_seq_cst); /* no membarrier here: pay the fence instead */
    else
        atomic_signal_fence(memory_order_seq_cst); /* keep the compiler from hoisting the load */
}

/* Whether a caller sleeps (or is about to) on side, seen after what this
 * side just published (psy_wake_fence). */
static inline bool psy_ring_has_sleepers(const struct psy_ring *r, enum psy_wait_side side)
{
    psy_atomic32 *waiters = side == PSY_WAIT_DATA ? &r->sh->wait.data_waiters : &r->sh->wait.space_waiters;
    psy_wake_fence(r);
    return atomic_load_explicit(waiters, memory_order_relaxed) != 0;
}

static inline void psy_wake_if_waiting(struct psy_ring *r, enum psy_wait_side side)
{
    if (psy_ring_has_sleepers(r, side))
        psy_wake_sleepers(r, side);
}

/* Whether span (read from a header) can be a span of records within room
 * bytes: a corrupted shared ring may say anything. */
static inline bool psy_span_valid(uint64_t span, uint64_t room)
{
    return span >= PSYNE_RECORD_HEADER && span <= room && !(span & 7);
}

/* CLOCK_MONOTONIC in ns (wait.c): one clock for every process of a channel. */
int64_t psy_now_ns(void);

/* One polite spin-wait step. */
static inline void psy_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Single-writer counter increment: no read-modify-write instruction. */
static inline void psy_count(psy_atomic64 *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

#endif /* PSY_RING_H */
