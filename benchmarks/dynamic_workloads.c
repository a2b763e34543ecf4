/* SPDX-License-Identifier: MIT */
/*
 * dynamic_workloads.c - one resize of a dynamic ring, timed by the library
 * itself (psyne_stats.resize_ns: making the segment, chaining it, waking the
 * consumer), with segments of their own, carved from slabs and as ipc://
 * segment files, and a memcpy of the ring's bytes as the reference.
 */
#include "dynamic_workloads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "psyne.h"

static void must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "psyne_bench: dynamic-resize: %s: %s\n", what, psyne_last_error());
        abort();
    }
}

/* A dynamic ring of capacity bytes that resizes at its first claim: grow by
 * claiming a message only a larger segment holds; shrink by a window of one
 * claim with nothing in use. Returns the resize time in ns. */
static double one_resize(const char *uri, uint64_t capacity, int grow, psyne_slabs *slabs)
{
    struct psyne_dynamic d = {.max_capacity = 2 * capacity, .min_capacity = capacity / 2};
    d.window_ops = d.check_interval = grow ? 1u << 30 : 1;
    struct psyne_options o;
    psyne_options_init(&o);
    o.capacity = capacity;
    o.dynamic = &d;
    o.flags = bench_channel_flags;
    o.numa_node = bench_numa_node;
    o.slabs = slabs;
    psyne_channel *ch;
    must(psyne_channel_open(&ch, uri, &o) == 0, "open");
    struct psyne_claimed c;
    must(psyne_claim(ch, grow ? capacity : 8, &c, PSYNE_NONBLOCK) == 0, "claim");
    psyne_abort(ch, &c);
    struct psyne_stats st;
    psyne_channel_stats(ch, &st);
    must((grow ? st.resizes_up : st.resizes_down) == 1, "the ring did not resize once");
    psyne_channel_close(ch);
    return (double)st.resize_ns;
}

uint64_t psyne_dynamic_resize_capacity(uint64_t size)
{
    uint64_t cap = 64 * 1024; /* whole pages, and room to shrink by half */
    while (cap < size)
        cap <<= 1;
    return cap;
}

psyne_slabs *psyne_dynamic_resize_slabs(uint64_t capacity)
{
    struct psyne_slab_options so;
    psyne_slab_options_init(&so);
    so.slab_size = 4 * capacity; /* a segment and one twice as large, with their control pages */
    so.flags = bench_channel_flags & (PSYNE_F_HUGEPAGES | PSYNE_F_NUMA_BIND | PSYNE_F_MLOCK);
    so.numa_node = bench_numa_node;
    psyne_slabs *slabs;
    must(psyne_slabs_create(&so, &slabs) == 0, "slabs");
    return slabs;
}

void psyne_dynamic_resize(uint64_t capacity, psyne_slabs *slabs, struct resize_result *out)
{
    char *src = malloc(capacity), *dst = malloc(capacity);
    must(src && dst, "out of memory");
    memset(src, 1, capacity);
    memset(dst, 2, capacity); /* both resident: the copy measures bandwidth, not page faults */
    const char *mem = "memory://psyne-bench-resize";
    char ipc[64];
    snprintf(ipc, sizeof ipc, "ipc://psyne-bench-resize-%d", (int)getpid());
    bench_segment_made(ipc);
    out->grow_ns = one_resize(mem, capacity, 1, NULL);
    out->shrink_ns = one_resize(mem, capacity, 0, NULL);
    /* ipc://: the producer makes a shared-memory file (shm_open, fallocate)
     * and maps it; the consumer opens it by name when it follows */
    out->grow_ipc_ns = one_resize(ipc, capacity, 1, NULL);
    out->shrink_ipc_ns = one_resize(ipc, capacity, 0, NULL);
    /* The same with segments carved from the slabs: no memory object made;
     * from the second call on, the ranges served such rings before and are
     * carved again (their first bytes cleared). */
    out->grow_slabs_ns = one_resize(mem, capacity, 1, slabs);
    out->shrink_slabs_ns = one_resize(mem, capacity, 0, slabs);
    int64_t t0 = bench_now_ns();
    memcpy(dst, src, capacity);
    __asm__ volatile("" : : "r"(dst) : "memory");
    out->copy_ns = (double)(bench_now_ns() - t0);
    free(src);
    free(dst);
}
