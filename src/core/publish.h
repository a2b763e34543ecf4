/* SPDX-License-Identifier: MIT */
/*
 * publish.h - the counters segment of a process: the statistics of the
 * channel handles it publishes (PSYNE_F_PUBLISH, or PSYNE_PUBLISH=1 in its
 * environment), copied there by a library thread every interval, for
 * psyne-stat to read, as Aeron's CnC file serves aeron-stat.
 *
 *   /dev/shm/psyne-stats.<pid>: [ psy_pub_header ][ psy_pub_entry x entries ]
 *
 * The process holds a shared flock() on the file while it lives: a reader
 * that gets the exclusive lock knows the process is gone (the file is then
 * a leftover, removed by psyne_ipc_cleanup and psyne-stat --clean). Entries
 * are seqlocks: seq is odd while the publisher writes the entry; a reader
 * copies the entry and keeps the copy only if seq was the same even value
 * before and after. Nothing in the segment is trusted by readers: strings
 * are cut at their size, counts bounded.
 */
#ifndef PSY_PUBLISH_H
#define PSY_PUBLISH_H

#include <stdint.h>

#include "psyne.h"
#include "../ring/ring.h"
#include "../transport/transport.h"

#define PSY_PUB_MAGIC 0x3154415453595350ull /* "PSYSTAT1" */
#define PSY_PUB_VERSION 1u
#define PSY_PUB_ENTRIES 128 /* handles published at once; more are not shown */
#define PSY_PUB_PEERS 16    /* peers shown per handle */
#define PSY_PUB_URI 280
#define PSY_PUB_DEFAULT_INTERVAL_MS 100
#define PSY_PUB_SIZE (sizeof(struct psy_pub_header) + PSY_PUB_ENTRIES * sizeof(struct psy_pub_entry))

struct psy_pub_header {
    alignas(PSY_CACHE_BLOCK) uint64_t magic;
    uint32_t version;
    uint32_t entries;    /* PSY_PUB_ENTRIES */
    uint64_t entry_size; /* sizeof(struct psy_pub_entry) */
    int32_t pid;
    uint32_t interval_ms;
    char comm[16];           /* the process's name (/proc/self/comm) */
    psy_atomic64 updated_ns; /* CLOCK_REALTIME of the last sample */
    psy_atomic64 samples;
};

struct psy_pub_entry {
    alignas(PSY_CACHE_BLOCK) psy_atomic64 seq; /* odd: being written */
    uint32_t in_use;                           /* 0: free */
    int32_t role;                              /* enum psyne_role */
    uint64_t handle;                           /* this process's number for the handle, from 1 */
    uint64_t opened_ns;                        /* CLOCK_REALTIME */
    uint64_t sampled_ns;                       /* CLOCK_REALTIME of stats */
    char uri[PSY_PUB_URI];
    struct psyne_stats stats; /* psyne_channel_stats of the handle */
    uint32_t n_peers;         /* tcp://: peers the handle has (may exceed PSY_PUB_PEERS) */
    uint32_t unused;
    struct psy_peer_info peers[PSY_PUB_PEERS];
};

/* Called by channel.c: after a handle opened (it is published if asked),
 * and before it closes (the publisher lets go of it first). */
void psy_publish_opened(psyne_channel *ch, const char *uri, const struct psyne_options *opt);
void psy_publish_closing(psyne_channel *ch);

#endif
