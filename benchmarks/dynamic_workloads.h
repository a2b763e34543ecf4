/* SPDX-License-Identifier: MIT */
/*
 * dynamic_workloads.h - what a dynamic ring costs: the time of one resize
 * (grow and shrink) next to copying the ring's bytes, which is what a
 * resize that copies would take at least.
 */
#ifndef PSY_BENCH_DYNAMIC_WORKLOADS_H
#define PSY_BENCH_DYNAMIC_WORKLOADS_H

#include <stdint.h>

#include "psyne.h"

struct resize_result {
    double grow_ns;                        /* chaining a segment twice as large */
    double shrink_ns;                      /* chaining a segment half as large */
    double grow_slabs_ns, shrink_slabs_ns; /* the same, segments carved from slabs used before */
    double grow_ipc_ns, shrink_ipc_ns;     /* the same over ipc://: each segment a shared-memory file */
    double copy_ns;                        /* memcpy of capacity bytes, the floor of a copying resize */
};

/* The ring size a dynamic-resize run of `size` uses: a power of two of at least 64 KiB. */
uint64_t psyne_dynamic_resize_capacity(uint64_t size);
/* Slabs for psyne_dynamic_resize's runs of a capacity-byte ring, made once
 * (psyne_slabs_destroy when done). */
psyne_slabs *psyne_dynamic_resize_slabs(uint64_t capacity);
/* One grow, one shrink and one copy of a capacity-byte ring, each timed;
 * the grow and shrink again with segments carved from slabs, and over ipc://. */
void psyne_dynamic_resize(uint64_t capacity, psyne_slabs *slabs, struct resize_result *out);

#endif
