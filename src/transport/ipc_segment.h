/* SPDX-License-Identifier: MIT */
/*
 * ipc_segment.h - the layout of an ipc:// shared-memory segment and the
 * checks every opener runs on it before trusting a byte.
 *
 *   [ psy_ipc_header | psy_ring_shared | pad to a page ][ data (capacity) ]
 *    0                 ring_offset                       data_offset
 *
 * The header's fixed fields are written once by the creator; `version` is
 * stored last, with release, and an opener that reads it non-zero (acquire)
 * sees the rest. Slots (one per open handle, any process) carry what a
 * survivor needs when a process dies: its roles, its BROADCAST subscription
 * and its MP claim in progress. A slot's owner holds an OFD byte-range lock
 * on byte <slot index> of the segment file for as long as it lives, so
 * "is the owner alive" is one fcntl(F_OFD_GETLK), immune to pid reuse.
 *
 * Dynamic rings (ipc_dynamic.c): the channel's segment is an *anchor*
 * (PSY_IPC_F_DYNAMIC) whose data region, one page, holds a directory
 * (psy_ipc_dyn_dir) instead of records; the records live in *segment*
 * files (PSY_IPC_F_SEGMENT), /psyne-seg.<name>.<id>.<generation>, laid out
 * like any segment, whose header says which ring and generation they are,
 * where their positions start, and where the producer left them (seg_end).
 */
#ifndef PSY_IPC_SEGMENT_H
#define PSY_IPC_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "../ring/dynamic.h"
#include "../ring/ring.h"

#define PSY_IPC_MAGIC 0x3143504945505950ull /* "PYPEIPC1" */
#define PSY_IPC_VERSION 3u                  /* 3: readiness descriptors' table (PSY_RING_VERSION 3), linger_until */
#define PSY_IPC_F_DYNAMIC 1ull              /* an anchor: the ring's records are in segment files */
#define PSY_IPC_F_SEGMENT 2ull              /* a segment of a dynamic ring, never a channel of its own */
#define PSY_IPC_FEATURES (PSY_IPC_F_DYNAMIC | PSY_IPC_F_SEGMENT) /* feature bits this build understands */

enum psy_slot_state {
    PSY_SLOT_FREE = 0,
    PSY_SLOT_TAKEN = 1, /* its owner is filling it in */
    PSY_SLOT_LIVE = 2,
    PSY_SLOT_REAPING = 3, /* a survivor is cleaning up after its dead owner */
};

struct psy_ipc_slot {
    alignas(PSY_CACHE_BLOCK) psy_atomic32 state;
    psy_atomic32
        roles; /* PSY_SLOT_PRODUCER|CONSUMER (transport.h), set after the channel counted them, cleared before uncounting */
    psy_atomic32 pid; /* for people reading a dump; liveness is the byte lock */
    psy_atomic32 sub; /* BROADCAST subscriber slot + 1, 0 if none */
    struct psy_claim_intent intent;
    psy_atomic64 msgs; /* MP producer counters of this handle: any thread's, */
    psy_atomic64 bytes;
    psy_atomic64 own_msgs; /* and its owner thread's (channel.c, count_mp) */
    psy_atomic64 own_bytes;
};

struct psy_ipc_header {
    alignas(PSY_CACHE_BLOCK) uint64_t magic;
    psy_atomic32 version; /* stored last: the segment is ready */
    uint32_t header_size; /* sizeof(struct psy_ipc_header) */
    uint64_t features;    /* PSY_IPC_F_* the segment requires */
    uint64_t capacity;    /* data bytes, a power of two */
    uint32_t mode;        /* enum psyne_mode */
    uint32_t max_handles; /* slots */
    uint64_t ring_offset; /* struct psy_ring_shared */
    uint64_t data_offset; /* the data region, mapped twice */
    uint64_t file_size;   /* data_offset + capacity */
    int32_t creator_pid;
    uint32_t page_size;
    uint64_t dyn_id;    /* PSY_IPC_F_SEGMENT: the id of its anchor's directory */
    uint64_t seg_gen;   /* PSY_IPC_F_SEGMENT: its generation */
    uint64_t seg_start; /* PSY_IPC_F_SEGMENT: its first position */
    uint64_t reserved[2];
    /* survivors' bookkeeping */
    alignas(PSY_CACHE_BLOCK) psy_atomic64 peers_lost; /* dead handles reaped */
    psy_atomic64 claims_recovered;                    /* dead producers' claims turned into pads */
    psy_atomic64 views_recovered;                     /* messages dead MC consumers held, released for them */
    psy_atomic64 seg_end;     /* PSY_IPC_F_SEGMENT: where the producer left it, or PSY_SEG_OPEN */
    psy_atomic32 seg_retired; /* PSY_IPC_F_SEGMENT: finished, its counters folded (once) */
    /* Non-zero: the last close (a producer's) left unread messages, and the
     * segment is kept for a consumer until this CLOCK_MONOTONIC time in ns
     * (INT64_MAX: no limit); the first open takes it back to 0. */
    psy_atomic64 linger_until;
    struct psy_ipc_slot slots[PSYNE_IPC_MAX_HANDLES];
};

_Static_assert(sizeof(struct psy_ipc_slot) == PSY_CACHE_BLOCK, "one block per slot");
_Static_assert(offsetof(struct psy_ipc_slot, own_bytes) == offsetof(struct psy_ipc_slot, msgs) + 24,
               "a handle's four MP counters in a row (channel.c, count_mp)");
_Static_assert(sizeof(struct psy_ipc_header) % PSY_CACHE_BLOCK == 0, "the ring block after it stays aligned");

/* Where things are in a valid segment. */
struct psy_ipc_layout {
    uint64_t capacity;
    int mode;
    uint64_t features;
    uint64_t ring_offset;
    uint64_t data_offset;
    uint64_t file_size;
};

/* The layout a new segment of this capacity gets. */
void psy_ipc_layout_for(uint64_t capacity, int mode, size_t page, struct psy_ipc_layout *out);

/* The creator of a zero-filled segment mapped at base: formats its ring's
 * control block and writes the header's fixed fields (all but version,
 * which the creator stores last, once the rest is ready). */
void psy_ipc_format(void *base, const struct psy_ipc_layout *l, uint64_t features, size_t page);

/* Checks a copy of a segment's first len bytes (as read from the file; a
 * whole header is sizeof(struct psy_ipc_header)) against the file's size.
 * Returns 0 and fills *out, -EAGAIN if the creator has not finished (magic
 * ours or zero, version 0: a file of zeros, or empty), or
 * -EPROTO with the reason in *why: nothing in the header is used before it
 * passed here. Pure: reads only `bytes`. */
int psy_ipc_validate(const void *bytes, size_t len, uint64_t file_size, size_t page, struct psy_ipc_layout *out,
                     const char **why);

/* Checks that a validated header (a copy) is segment gen of the dynamic
 * ring whose directory has this id. Pure. */
int psy_ipc_check_segment(const struct psy_ipc_header *h, uint64_t id, uint64_t gen, const char **why);

/* A dynamic ring's directory, at the start of its anchor's data region.
 * Every field is read as untrusted: generations only name files, and
 * what those files hold is validated before use. */
struct psy_ipc_dyn_dir {
    uint64_t id;   /* random per anchor: old segment files of a ring of the same name never match */
    uint32_t perm; /* mode bits of every segment file */
    uint32_t reserved;
    psy_atomic64 prod_gen; /* the newest segment: where the producer writes */
    psy_atomic64 cons_gen; /* the oldest segment not yet finished */
    psy_atomic64 capacity; /* of the newest */
    struct psy_dyn_stats st;
};

/* This process's view of a mapped segment's ring, as ipc:// rings are
 * seen: shared futexes and barriers, and check_peers run by its waits
 * every peer_timeout_ns. */
struct psy_mirror;
void psy_ipc_view(struct psy_ring *r, const struct psy_mirror *m, const struct psy_ipc_layout *l,
                  const struct psyne_options *opt, int64_t peer_timeout_ns, void (*check_peers)(struct psy_ring *r));

/* The segment file open as fd: whether shm_name still names it (a name
 * is removed only by whoever checked this under the exclusive flock), and
 * whether the owner of slot i lives (it holds byte i with an OFD lock,
 * which the kernel drops when its process dies; true when that cannot be
 * told: never reap on a guess). */
bool psy_ipc_still_named(int fd, const char *shm_name);
bool psy_ipc_slot_owner_alive(int fd, int i);

/* Checks the ring's own identity block against the validated layout. */
int psy_ipc_validate_ring(const struct psy_ring_shared *sh, const struct psy_ipc_layout *l, const char **why);

#endif
