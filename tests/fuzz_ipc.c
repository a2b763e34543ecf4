/* SPDX-License-Identifier: MIT */
/*
 * fuzz_ipc.c - libFuzzer target for everything psyne reads from a shared
 * segment that another process could have scribbled on:
 *   1. the segment header check every ipc:// opener runs (psy_ipc_validate),
 *      and the check a dynamic ring's consumer adds for a segment file
 *      (psy_ipc_check_segment);
 *   2. the consumer's record parsing: the input becomes the ring's bytes and
 *      positions, and every receive form and release runs over it in a
 *      single-consumer and a competing-consumer ring;
 *   3. the typed-message view (psyne_tensor_view) of a record made of the
 *      input, in a heap block that ends where the record ends.
 * Built with -fsanitize=fuzzer,address,undefined: any read or write outside
 * the mapping, or a hang, is a finding. CI runs it briefly (tests/CMakeLists).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/channel.h"
#include "psyne.h"
#include "ring/ring.h"
#include "transport/ipc_segment.h"

#define CAP 4096u

static psyne_channel *open_ring(const char *uri, int mode)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.mode = mode;
    o.capacity = CAP;
    psyne_channel *ch = NULL;
    if (psyne_channel_open(&ch, uri, &o) != 0)
        __builtin_trap();
    return ch;
}

static uint64_t take64(const uint8_t **p, size_t *n)
{
    uint64_t v = 0;
    size_t k = *n < 8 ? *n : 8;
    memcpy(&v, *p, k);
    *p += k;
    *n -= k;
    return v;
}

static void parse_records(psyne_channel *ch, const uint8_t *p, size_t n)
{
    struct psy_ring *r = psy_channel_ring(ch);
    struct psy_ring_shared *sh = r->sh;
    /* positions from the input, near each other often enough to matter */
    uint64_t base = take64(&p, &n);
    uint64_t d[4];
    for (int i = 0; i < 4; i++)
        d[i] = take64(&p, &n);
    atomic_store(&sh->cons.read_pos, base + (d[0] & 0x3fff));
    atomic_store(&sh->rel.head, base + (d[1] & 0x3fff));
    atomic_store(&sh->pub.tail, base + (d[2] & 0x3fff));
    atomic_store(&sh->prod.cached_head, base + (d[3] & 0x3fff));
    memset(r->data, 0, r->cap);
    memcpy(r->data, p, n < r->cap ? n : r->cap);

    struct psyne_msg m[8];
    for (int round = 0; round < 4; round++) {
        int got = psyne_receive_batch(ch, m, 8, PSYNE_NONBLOCK);
        if (got <= 0)
            break;
        volatile uint8_t sink = 0;
        for (int i = 0; i < got; i++) /* touch every byte the views claim */
            for (uint32_t b = 0; b < m[i].length; b++)
                sink ^= ((const uint8_t *)m[i].data)[b];
        (void)sink;
        psyne_release_batch(ch, m, (unsigned)got);
    }
    struct psyne_msg one;
    if (psyne_receive(ch, &one, PSYNE_NONBLOCK) == 0)
        psyne_release(ch, &one);
    struct psyne_claimed c;
    if (psyne_claim(ch, d[0] % 200, &c, PSYNE_NONBLOCK) == 0)
        psyne_abort(ch, &c);
    /* back to a sane state for the next input */
    memset(r->data, 0, r->cap);
    atomic_store(&sh->cons.read_pos, 0);
    atomic_store(&sh->rel.head, 0);
    atomic_store(&sh->pub.tail, 0);
    atomic_store(&sh->prod.cached_head, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static psyne_channel *sc, *mc;
    if (!sc) {
        sc = open_ring("memory://fuzz-sc", PSYNE_MODE_MPSC);
        mc = open_ring("memory://fuzz-mc", PSYNE_MODE_MPMC);
    }
    if (size < 1)
        return 0;
    switch (data[0] % 4) {
    case 3: { /* a typed record */
        size_t len = size - 1, lead = 64 - PSYNE_RECORD_HEADER;
        void *mem;
        if (len > UINT32_MAX || posix_memalign(&mem, 64, lead + len) != 0)
            return 0;
        uint8_t *rec = (uint8_t *)mem + lead;
        memcpy(rec, data + 1, len);
        struct psyne_msg m = {.data = rec, .length = (uint32_t)len, .type = PSYNE_TYPE_TENSOR};
        struct psyne_tensor t;
        if (psyne_tensor_view(&m, 0, -1, &t) == 0) { /* touch the farthest element it claims */
            uint64_t last = 0;
            int empty = 0;
            for (int i = 0; i < t.rank; i++) {
                empty |= t.shape[i] == 0;
                last += t.shape[i] ? (t.shape[i] - 1) * t.strides[i] : 0;
            }
            if (!empty) {
                volatile uint8_t sink = ((const uint8_t *)t.data)[(last + 1) * psyne_dtype_size(t.dtype) - 1];
                (void)sink;
            }
        }
        free(mem);
        break;
    }
    case 0: { /* a segment header, with a file size taken from the input */
        const uint8_t *p = data + 1;
        size_t n = size - 1;
        uint64_t file_size = take64(&p, &n);
        struct psy_ipc_layout l;
        const char *why;
        if (psy_ipc_validate(p, n, file_size, (size_t)sysconf(_SC_PAGESIZE), &l, &why) == 0) {
            /* as a dynamic ring's consumer opening a segment file does next */
            struct psy_ipc_header h;
            memcpy(&h, p, sizeof h);
            psy_ipc_check_segment(&h, h.dyn_id ^ (file_size & 1), h.seg_gen, &why);
        }
        break;
    }
    case 1: parse_records(sc, data + 1, size - 1); break;
    default: parse_records(mc, data + 1, size - 1); break;
    }
    return 0;
}
