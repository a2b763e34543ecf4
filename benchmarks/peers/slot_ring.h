/* SPDX-License-Identifier: MIT */
/*
 * slot_ring.h - the hand-written limit psyne is measured against: a
 * fixed-slot SPSC ring with cached indices (each side re-reads the other's
 * index only when its cached copy says full/empty), indices 128 bytes apart.
 * It moves fixed-size slots and knows nothing of records, lengths, types,
 * modes or waiting: about the least work a shared-memory queue can do.
 */
#ifndef PSY_SLOT_RING_H
#define PSY_SLOT_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

struct slot_ring {
    alignas(128) _Atomic uint64_t write; /* producer */
    uint64_t read_cache;
    alignas(128) _Atomic uint64_t read; /* consumer */
    uint64_t write_cache;
    alignas(128) uint8_t *slots;
    size_t slot_size;
    uint64_t mask;
    int shared; /* in MAP_SHARED memory (slot_ring_new_shared) */
};

static inline void slot_pause(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

static inline struct slot_ring *slot_ring_new(uint64_t n_slots, size_t slot_size)
{
    struct slot_ring *r = aligned_alloc(128, sizeof *r);
    r->slots = aligned_alloc(4096, n_slots * slot_size);
    for (uint64_t i = 0; i < n_slots * slot_size; i += 4096)
        r->slots[i] = 0; /* prefault, as psyne's ring is */
    r->slot_size = slot_size;
    r->mask = n_slots - 1;
    r->shared = 0;
    atomic_init(&r->write, 0);
    atomic_init(&r->read, 0);
    r->read_cache = r->write_cache = 0;
    return r;
}

/* The same ring in MAP_SHARED memory, which processes forked after this
 * share: the limit an ipc ring is measured against. NULL if out of memory. */
static inline struct slot_ring *slot_ring_new_shared(uint64_t n_slots, size_t slot_size)
{
    size_t head = (sizeof(struct slot_ring) + 4095) & ~(size_t)4095;
    uint8_t *m = mmap(NULL, head + n_slots * slot_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    struct slot_ring *r = (struct slot_ring *)m;
    r->slots = m + head;
    for (uint64_t i = 0; i < n_slots * slot_size; i += 4096)
        r->slots[i] = 0; /* prefault, as psyne's ring is */
    r->slot_size = slot_size;
    r->mask = n_slots - 1;
    r->shared = 1;
    atomic_init(&r->write, 0);
    atomic_init(&r->read, 0);
    r->read_cache = r->write_cache = 0;
    return r;
}

static inline void slot_ring_free(struct slot_ring *r)
{
    if (r->shared) {
        size_t head = (sizeof(struct slot_ring) + 4095) & ~(size_t)4095;
        munmap(r, head + (r->mask + 1) * r->slot_size);
        return;
    }
    free(r->slots);
    free(r);
}

/* Producer: the next free slot, spinning while full. */
static inline void *slot_ring_claim(struct slot_ring *r)
{
    uint64_t w = atomic_load_explicit(&r->write, memory_order_relaxed);
    while (w - r->read_cache > r->mask) {
        r->read_cache = atomic_load_explicit(&r->read, memory_order_acquire);
        if (w - r->read_cache > r->mask)
            slot_pause();
    }
    return r->slots + (w & r->mask) * r->slot_size;
}

static inline void slot_ring_publish(struct slot_ring *r)
{
    atomic_store_explicit(&r->write, atomic_load_explicit(&r->write, memory_order_relaxed) + 1, memory_order_release);
}

/* Consumer: the oldest full slot, spinning while empty. */
static inline void *slot_ring_peek(struct slot_ring *r)
{
    uint64_t rd = atomic_load_explicit(&r->read, memory_order_relaxed);
    while (rd == r->write_cache) {
        r->write_cache = atomic_load_explicit(&r->write, memory_order_acquire);
        if (rd == r->write_cache)
            slot_pause();
    }
    return r->slots + (rd & r->mask) * r->slot_size;
}

static inline void slot_ring_release(struct slot_ring *r)
{
    atomic_store_explicit(&r->read, atomic_load_explicit(&r->read, memory_order_relaxed) + 1, memory_order_release);
}

#endif
