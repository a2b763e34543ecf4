/* SPDX-License-Identifier: MIT */
/*
 * ipc_inspect.h - a look at the ipc:// channels of this machine from the
 * outside, for tools (psyne-stat): segments are mapped read-only, no slot is
 * taken and no lock is held, so the channel's handle counts, its producer's
 * "a consumer is attached" and every counter stay as they were.
 *
 * Every value comes from shared memory that any process of the user may
 * have written: the header is validated as an open validates it, positions
 * and lengths are bounded before use, and a segment cut short under us
 * (ftruncate by a hostile process) raises SIGBUS in the caller, which a
 * tool catches (psyne-stat does).
 */
#ifndef PSY_IPC_INSPECT_H
#define PSY_IPC_INSPECT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "psyne.h"
#include "../base/uri.h"
#include "../ring/ring.h"

#define PSY_INSPECT_MAX_SEGMENTS 64 /* a dynamic ring's segments looked at */

enum psy_inspect_state {
    PSY_INSPECT_OK,      /* validated and read */
    PSY_INSPECT_MAKING,  /* its creator has not finished it (or died making it) */
    PSY_INSPECT_INVALID, /* fails validation: why says how */
};

/* One handle slot in use. */
struct psy_inspect_handle {
    int slot;
    int state;      /* enum psy_slot_state */
    unsigned roles; /* PSY_SLOT_PRODUCER | PSY_SLOT_CONSUMER */
    int pid;
    bool alive;        /* its owner holds the slot's byte lock */
    int subscriber;    /* BROADCAST: its subscriber slot, else -1 */
    uint64_t msgs_out; /* MP producers: what this handle committed */
    uint64_t bytes_out;
    /* Consumers: what is committed and not yet released by it (SC:
     * the consumer's; BROADCAST: its subscriber's; MC: the ring's, shared
     * by every consumer). */
    uint64_t lag_msgs;
    uint64_t lag_bytes;
};

/* A registered readiness descriptor (psyne_channel_fd). */
struct psy_inspect_notify {
    int side; /* enum psy_wait_side */
    bool armed;
    int pid;
};

struct psy_inspect_segment {
    uint64_t generation;
    uint64_t capacity;
    uint64_t in_use;
};

struct psy_inspect {
    char name[PSY_NAME_MAX + 1]; /* as in ipc://<name> */
    int state;                   /* enum psy_inspect_state */
    char why[160];               /* PSY_INSPECT_INVALID */
    uid_t uid;
    unsigned perm;
    uint64_t file_size; /* the anchor's, plus a dynamic ring's segment files */
    int creator_pid;
    bool dynamic;
    bool closed;              /* shut down */
    bool consumers_left;      /* the consumers ended the stream */
    int64_t linger_left_ns;   /* > 0: kept for a consumer this much longer; INT64_MAX: until one comes */
    struct psyne_stats stats; /* as psyne_channel_stats gives them (placement fields zero) */
    int live_handles;         /* slots whose owner lives */
    int dead_handles;         /* slots whose owner died and nobody reaped yet */
    int n_handles;
    struct psy_inspect_handle handles[PSYNE_IPC_MAX_HANDLES];
    int n_notify;
    struct psy_inspect_notify notify[PSY_NOTIFY_SLOTS];
    int n_segments; /* dynamic rings: live segments, oldest first */
    struct psy_inspect_segment segments[PSY_INSPECT_MAX_SEGMENTS];
};

/* Reads channel `name` (ipc://name). Returns 0 (out->state says whether it
 * validated), -ENOENT, or -errno when its file cannot be opened or mapped. */
int psy_ipc_inspect(const char *name, struct psy_inspect *out);

/* The names of the user's ipc:// channels (those of /dev/shm/psyne.*), sorted,
 * in a NULL-terminated array the caller frees with psy_ipc_names_free.
 * Returns how many, or -errno. */
int psy_ipc_names(char ***names);
void psy_ipc_names_free(char **names);

/* Whether nobody uses the segment: no slot owner lives, and it is not kept
 * for a consumer (what psyne_ipc_cleanup removes). */
bool psy_inspect_dead(const struct psy_inspect *in);

/* psyne_ipc_cleanup, telling removed(file, ctx) each /dev/shm file it removes. */
int psy_ipc_cleanup_report(int flags, void (*removed)(const char *file, void *ctx), void *ctx);

#endif
