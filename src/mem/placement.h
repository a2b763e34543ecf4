/* SPDX-License-Identifier: MIT */
/*
 * placement.h - where a ring's memory lives: huge pages (explicit, then
 * transparent, then normal), a NUMA node, prefaulting and locking. A channel
 * asks with a psy_place_request and learns what it got in a psy_placement.
 */
#ifndef PSY_PLACEMENT_H
#define PSY_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct psy_place_request {
    bool huge;        /* PSYNE_F_HUGEPAGES */
    bool explicit_ok; /* the mapping may be a hugetlb memfd (memory://, tcp://; not ipc://) */
    bool prefault;    /* not PSYNE_F_NO_PREFAULT */
    bool lock;        /* PSYNE_F_MLOCK */
    int numa_node;    /* PSYNE_F_NUMA_BIND: the node; else -1 */
};

struct psy_placement {
    int pages;          /* enum psyne_pages */
    uint64_t page_size; /* bytes */
    int numa_node;      /* bound node or -1 */
    bool locked;
};

/* The request that option flags (PSYNE_F_HUGEPAGES, _NO_PREFAULT, _MLOCK,
 * _NUMA_BIND; others are ignored) and numa_node make; explicit_ok as the
 * transport allows. -EINVAL for a node that is not online. */
int psy_place_request_make(uint32_t flags, uint32_t numa_node, bool explicit_ok, struct psy_place_request *req);

/* The explicit huge page size (from /proc/meminfo), or 0 if unknown. */
size_t psy_huge_page_size(void);

/* Whether the kernel gives transparent huge pages to shared memory (memfd,
 * /dev/shm) that asks with madvise: shmem_enabled is not never/deny. */
bool psy_thp_for_shared_memory(void);

/* Applies the NUMA policy and the transparent huge page advice to a fresh
 * mapping of [addr, addr + len) before any page is touched. */
int psy_place_before_fault(void *addr, size_t len, const struct psy_place_request *req, struct psy_placement *got);

/* Prefaults and locks [addr, addr + len) as asked. */
int psy_place_after_map(void *addr, size_t len, const struct psy_place_request *req, struct psy_placement *got);

#endif
