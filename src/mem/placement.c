/* SPDX-License-Identifier: MIT */
/*
 * placement.c - NUMA binding, huge page advice, prefaulting and locking of a
 * ring mapping. Everything here is per channel: nothing changes the process's
 * own policy or the system's settings.
 */
#include "placement.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../base/error.h"
#include "psyne.h"

#ifndef MPOL_BIND
#define MPOL_BIND 2 /* <linux/mempolicy.h>; libnuma is not needed for one call */
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#define PSY_MAX_NUMA_NODE 1023

static bool node_online(int node)
{
    char path[64];
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d", node);
    if (access(path, F_OK) == 0)
        return true;
    /* A kernel without NUMA support has no node directory and one node, 0. */
    return node == 0 && access("/sys/devices/system/node", F_OK) != 0;
}

int psy_place_request_make(uint32_t flags, uint32_t numa_node, bool explicit_ok, struct psy_place_request *req)
{
    memset(req, 0, sizeof *req);
    req->huge = (flags & PSYNE_F_HUGEPAGES) != 0;
    req->explicit_ok = explicit_ok;
    req->prefault = !(flags & PSYNE_F_NO_PREFAULT);
    req->lock = (flags & PSYNE_F_MLOCK) != 0;
    req->numa_node = -1;
    if (flags & PSYNE_F_NUMA_BIND) {
        if (numa_node > PSY_MAX_NUMA_NODE || !node_online((int)numa_node))
            return psy_fail(-EINVAL, "NUMA node %u is not online on this machine", numa_node);
        req->numa_node = (int)numa_node;
    }
    return 0;
}

size_t psy_huge_page_size(void)
{
    static size_t cached;
    size_t v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v)
        return v;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Hugepagesize: %lu kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    v = (size_t)kib * 1024;
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    return v;
}

bool psy_thp_for_shared_memory(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
    char buf[128] = "";
    if (!f)
        return false;
    if (!fgets(buf, sizeof buf, f))
        buf[0] = 0;
    fclose(f);
    /* The selected value is in brackets: "always within_size advise [never] deny force". */
    return strstr(buf, "[always]") || strstr(buf, "[within_size]") || strstr(buf, "[advise]") || strstr(buf, "[force]");
}

int psy_place_before_fault(void *addr, size_t len, const struct psy_place_request *req, struct psy_placement *got)
{
    if (req->numa_node >= 0) {
        unsigned long mask[(PSY_MAX_NUMA_NODE + 1) / (8 * sizeof(unsigned long))] = {0};
        mask[req->numa_node / (8 * sizeof(unsigned long))] |= 1ul << (req->numa_node % (8 * sizeof(unsigned long)));
        /* On shared memory the policy belongs to the file: it covers both
         * mirror mappings and every process that maps the segment. */
        if (syscall(SYS_mbind, addr, len, MPOL_BIND, mask, (unsigned long)PSY_MAX_NUMA_NODE + 1, 0u) != 0)
            return psy_fail(-errno, "cannot bind the ring to NUMA node %d", req->numa_node);
        got->numa_node = req->numa_node;
    }
    if (req->huge && got->pages == PSYNE_PAGES_NORMAL && psy_thp_for_shared_memory() &&
        madvise(addr, len, MADV_HUGEPAGE) == 0) {
        got->pages = PSYNE_PAGES_TRANSPARENT;
        got->page_size = psy_huge_page_size();
    }
    return 0;
}

/* Faults every page in without changing a byte: a joining ipc:// process
 * prefaults a ring others are already using. Kernels before 5.14 lack
 * MADV_POPULATE_WRITE: a read of each page allocates it too (shared memory). */
static void prefault(void *addr, size_t len)
{
    if (madvise(addr, len, MADV_POPULATE_WRITE) == 0)
        return;
    long page = sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < len; off += (size_t)page)
        (void)*(volatile unsigned char *)((unsigned char *)addr + off);
}

int psy_place_after_map(void *addr, size_t len, const struct psy_place_request *req, struct psy_placement *got)
{
    if (req->prefault && !req->lock) /* mlock faults every page in itself */
        prefault(addr, len);
    if (req->lock) {
        if (mlock(addr, len) != 0)
            return psy_fail(-errno, "cannot lock %zu bytes of ring memory (RLIMIT_MEMLOCK, or CAP_IPC_LOCK)", len);
        got->locked = true;
    }
    return 0;
}
