/* SPDX-License-Identifier: MIT */
/*
 * tensor.c - typed messages (include/psyne/tensor.h): a descriptor and
 * 64-byte aligned elements inside one record, built in place by the sender
 * and checked by the receiver before it hands out a view. Everything read
 * from a received record is copied first and checked for overflow, because
 * the record may come from another process (or, later, the wire).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "channel.h"
#include "../base/error.h"
#include "psyne.h"

size_t psyne_dtype_size(int dtype)
{
    switch (dtype) {
    case PSYNE_F32: return 4;
    case PSYNE_F64: return 8;
    case PSYNE_I8: return 1;
    case PSYNE_U8: return 1;
    case PSYNE_I32: return 4;
    case PSYNE_I64: return 8;
    default: return 0;
    }
}

/* Elements from the first to one past the farthest that shape and strides
 * reach (0 if a dimension is empty); false on overflow. */
static bool extent(int rank, const uint64_t *shape, const uint64_t *strides, uint64_t *out)
{
    uint64_t last = 0;
    for (int i = 0; i < rank; i++) {
        if (shape[i] == 0) {
            *out = 0;
            return true;
        }
    }
    for (int i = 0; i < rank; i++) {
        uint64_t step;
        if (__builtin_mul_overflow(shape[i] - 1, strides[i], &step) || __builtin_add_overflow(last, step, &last))
            return false;
    }
    return !__builtin_add_overflow(last, 1, out);
}

/* Row-major contiguous strides of shape; false on overflow. */
static bool row_major(int rank, const uint64_t *shape, uint64_t *strides)
{
    uint64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        if (shape[i] && __builtin_mul_overflow(s, shape[i], &s))
            return false;
    }
    return true;
}

/* Sets rank, shape and strides (entries past the rank are zero). Loops of
 * a fixed count with a test inside, not memcpy: rank is small, and a copy
 * loop of variable count becomes a library call or `rep movsq` (tens of
 * cycles to start), which was most of a typed message's extra cost. */
static inline void set_dims(struct psyne_tensor *t, int rank, const uint64_t *shape, const uint64_t *strides)
{
    t->rank = rank;
    for (int i = 0; i < PSYNE_TENSOR_MAX_RANK; i++) {
        t->shape[i] = i < rank ? shape[i] : 0;
        t->strides[i] = i < rank ? strides[i] : 0;
    }
}

int psyne_claim_tensor(psyne_channel *ch, int dtype, int max_rank, uint64_t capacity, struct psyne_tensor *t,
                       int64_t timeout_ns)
{
    if (!ch || !t)
        return psy_fail(-EINVAL, "psyne_claim_tensor: NULL channel or tensor");
    size_t esize = psyne_dtype_size(dtype);
    if (!esize)
        return psy_fail(-EINVAL, "dtype %d is not a psyne_dtype", dtype);
    if (max_rank < 0 || max_rank > PSYNE_TENSOR_MAX_RANK)
        return psy_fail(-EINVAL, "max_rank %d is outside 0..%d", max_rank, PSYNE_TENSOR_MAX_RANK);
    /* header, up to 56 bytes to reach the alignment, then the elements */
    uint64_t bytes;
    if (__builtin_mul_overflow(capacity, esize, &bytes) || bytes > UINT32_MAX)
        return psy_fail(-EMSGSIZE, "%llu elements of %zu bytes can never fit a message", (unsigned long long)capacity,
                        esize);
    size_t head = PSYNE_TENSOR_DESC_SIZE(max_rank);
    size_t room = head + PSYNE_TENSOR_ALIGN - PSYNE_RECORD_HEADER + bytes;
    /* straight into t: a copy of the claim just written by psyne_claim
     * stalls on store forwarding */
    int rc = psyne_claim(ch, room, &t->claim, timeout_ns);
    if (rc)
        return rc;
    uintptr_t first = (uintptr_t)t->claim.data + head;
    first = (first + PSYNE_TENSOR_ALIGN - 1) & ~(uintptr_t)(PSYNE_TENSOR_ALIGN - 1);
    /* Field by field: this runs once per message, and a memset of the
     * whole struct was a measurable share of a typed send. */
    t->data = (void *)first;
    t->dtype = dtype;
    t->capacity = capacity;
    t->max_rank = max_rank;
    set_dims(t, max_rank ? 1 : 0, &capacity, &(const uint64_t){1});
    return 0;
}

int psyne_tensor_reshape(struct psyne_tensor *t, int rank, const uint64_t *shape, const uint64_t *strides)
{
    if (!t)
        return psy_fail(-EINVAL, "psyne_tensor_reshape: tensor is NULL");
    if (rank < 0 || rank > t->max_rank || (rank && !shape))
        return psy_fail(-EINVAL, "rank %d is outside 0..%d (the claim's max_rank)", rank, t->max_rank);
    uint64_t st[PSYNE_TENSOR_MAX_RANK], n;
    if (strides)
        memcpy(st, strides, sizeof st[0] * (size_t)rank);
    else if (!row_major(rank, shape, st))
        return psy_fail(-EINVAL, "the shape's element count overflows");
    if (!extent(rank, shape, st, &n) || n > t->capacity)
        return psy_fail(-EINVAL, "the shape reaches beyond the %llu elements claimed", (unsigned long long)t->capacity);
    set_dims(t, rank, shape, st);
    return 0;
}

int psyne_commit_tensor(psyne_channel *ch, struct psyne_tensor *t)
{
    if (!ch || !t)
        return psy_fail(-EINVAL, "psyne_commit_tensor: NULL channel or tensor");
    uint64_t n;
    if (t->rank < 0 || t->rank > t->max_rank || !extent(t->rank, t->shape, t->strides, &n) || n > t->capacity)
        return psy_fail(-EINVAL, "the tensor's shape does not fit its claim (set it with psyne_tensor_reshape)");
    struct psyne_tensor_desc *d = t->claim.data;
    d->magic = PSYNE_TENSOR_MAGIC;
    d->dtype = (uint8_t)t->dtype;
    d->rank = (uint8_t)t->rank;
    d->reserved16 = 0;
    d->data_offset = (uint32_t)((uintptr_t)t->data - (uintptr_t)d);
    d->reserved32 = 0;
    uint64_t *dims = (uint64_t *)(d + 1);             /* shape, then strides */
    for (int i = 0; i < PSYNE_TENSOR_MAX_RANK; i++) { /* a fixed count: see set_dims */
        if (i < t->rank) {
            dims[i] = t->shape[i];
            dims[t->rank + i] = t->strides[i];
        }
    }
    size_t length = d->data_offset + n * psyne_dtype_size(t->dtype);
    return psy_channel_commit(ch, &t->claim, length, PSYNE_TYPE_TENSOR); /* psyne's own type id */
}

int psyne_tensor_view(const struct psyne_msg *m, int dtype, int rank, struct psyne_tensor *t)
{
    if (!m || !t)
        return psy_fail(-EINVAL, "psyne_tensor_view: NULL message or tensor");
    if (m->type != PSYNE_TYPE_TENSOR)
        return -ENOMSG;
    struct psyne_tensor_desc d;
    if (m->length < sizeof d)
        return psy_fail(-EPROTO, "a typed record of %u bytes is shorter than its header", m->length);
    memcpy(&d, m->data, sizeof d); /* copies: the record may be shared with other processes */
    size_t esize = psyne_dtype_size(d.dtype);
    if (d.magic != PSYNE_TENSOR_MAGIC || !esize || d.rank > PSYNE_TENSOR_MAX_RANK || d.reserved16 || d.reserved32)
        return psy_fail(-EPROTO, "the typed record's header is damaged");
    size_t head = PSYNE_TENSOR_DESC_SIZE(d.rank);
    if (m->length < head)
        return psy_fail(-EPROTO, "a typed record of %u bytes is shorter than its rank-%u header", m->length, d.rank);
    uint64_t shape[PSYNE_TENSOR_MAX_RANK], strides[PSYNE_TENSOR_MAX_RANK];
    const uint8_t *dims = (const uint8_t *)m->data + sizeof d;
    for (int i = 0; i < PSYNE_TENSOR_MAX_RANK; i++) { /* copies, as above; see set_dims */
        if (i < d.rank) {
            memcpy(&shape[i], dims + 8 * i, 8);
            memcpy(&strides[i], dims + 8 * (d.rank + i), 8);
        }
    }
    if (d.data_offset < head || d.data_offset > m->length || ((uintptr_t)m->data + d.data_offset) % PSYNE_TENSOR_ALIGN)
        return psy_fail(-EPROTO, "the typed record's data offset %u is outside it or misaligned", d.data_offset);
    uint64_t n, bytes;
    if (!extent(d.rank, shape, strides, &n) || __builtin_mul_overflow(n, esize, &bytes) ||
        bytes > m->length - d.data_offset)
        return psy_fail(-EPROTO, "the typed record's shape reaches beyond its %u bytes", m->length);
    if ((dtype && d.dtype != dtype) || (rank >= 0 && d.rank != rank))
        return psy_fail(-ENOMSG, "a tensor of dtype %d and rank %d, not dtype %d and rank %d", d.dtype, d.rank, dtype,
                        rank);
    t->data = (uint8_t *)m->data + d.data_offset;
    t->dtype = d.dtype;
    set_dims(t, d.rank, shape, strides);
    t->capacity = (m->length - d.data_offset) / esize;
    t->max_rank = d.rank;
    memset(&t->claim, 0, sizeof t->claim); /* a view is not a claim */
    return 0;
}
