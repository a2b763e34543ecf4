/* SPDX-License-Identifier: MIT */
/*
 * kernel_view.h - what the kernel says about this process's memory, for the
 * placement tests: the mapping that holds an address (/proc/self/maps), a
 * field of its smaps entry, its numa_maps line, and whether shared memory
 * may get transparent huge pages.
 */
#ifndef PSY_TEST_KERNEL_VIEW_H
#define PSY_TEST_KERNEL_VIEW_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Start address of the mapping containing p, from /proc/self/maps. */
static inline uintptr_t mapping_start(const void *p)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f);
    uintptr_t a = (uintptr_t)p, lo, hi, found = 0;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2 && a >= lo && a < hi)
            found = lo;
    fclose(f);
    CHECK(found);
    return found;
}

/* The value (kB) of `field` in the smaps entry of the mapping containing p. */
static inline long smaps_kb(const void *p, const char *field)
{
    uintptr_t start = mapping_start(p), lo, hi;
    FILE *f = fopen("/proc/self/smaps", "r");
    CHECK(f);
    char line[512];
    int inside = 0;
    long value = -1;
    size_t flen = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = lo == start;
            continue;
        }
        if (inside && !strncmp(line, field, flen) && line[flen] == ':') {
            value = atol(line + flen + 1);
            break;
        }
    }
    fclose(f);
    CHECK(value >= 0);
    return value;
}

/* The numa_maps line of the mapping containing p (policy and counts). */
static inline void numa_maps_line(const void *p, char *out, size_t len)
{
    uintptr_t start = mapping_start(p), a;
    FILE *f = fopen("/proc/self/numa_maps", "r");
    CHECK(f);
    out[0] = 0;
    char line[1024];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%" SCNxPTR, &a) == 1 && a == start) {
            snprintf(out, len, "%s", line);
            break;
        }
    fclose(f);
    CHECK(out[0]);
}

/* Whether the kernel gives transparent huge pages to shared memory that
 * asks with madvise. */
static inline int shmem_thp_allowed(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
    char buf[128] = "";
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            buf[0] = 0;
        fclose(f);
    }
    return buf[0] && !strstr(buf, "[never]") && !strstr(buf, "[deny]");
}

#endif
