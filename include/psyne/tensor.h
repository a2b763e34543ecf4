/* SPDX-License-Identifier: MIT */
/*
 * psyne/tensor.h - typed messages: vectors, matrices and tensors built and
 * read in place in a channel's ring. Included by psyne.h; do not include it
 * on its own.
 *
 * A typed message is one record of type PSYNE_TYPE_TENSOR: a small
 * self-describing header (struct psyne_tensor_desc: element type, rank,
 * shape, strides) followed by the elements, whose first one sits on a
 * 64-byte boundary (for SIMD and BLAS), in every process that maps the ring.
 *
 *   struct psyne_tensor t;
 *   psyne_claim_tensor(ch, PSYNE_F32, 1, 1024, &t, PSYNE_FOREVER); a vector of up to 1024 floats
 *   float *v = t.data;  ... fill n <= 1024 elements in place ...
 *   psyne_tensor_reshape(&t, 1, (uint64_t[]){n}, NULL);            a vector of n
 *   psyne_commit_tensor(ch, &t);
 *
 *   psyne_receive(ch, &m, PSYNE_FOREVER);
 *   if (psyne_tensor_view(&m, PSYNE_F32, 1, &t) == 0) use((float *)t.data, t.shape[0]);
 *   psyne_release(ch, &m);
 */
#ifndef PSYNE_TENSOR_H
#define PSYNE_TENSOR_H

#ifndef PSYNE_H
#error "include <psyne.h>, which includes psyne/tensor.h"
#endif

/* Element types. */
enum psyne_dtype {
    PSYNE_F32 = 1,
    PSYNE_F64 = 2,
    PSYNE_I8 = 3, /* quantized values */
    PSYNE_U8 = 4, /* quantized values, and byte vectors */
    PSYNE_I32 = 5,
    PSYNE_I64 = 6,
};

#define PSYNE_TENSOR_MAX_RANK 8
#define PSYNE_TENSOR_ALIGN 64                               /* the first element's address alignment */
#define PSYNE_TYPE_TENSOR PSYNE_CAST(uint32_t, 16)          /* record type of typed messages (psyne's range) */
#define PSYNE_TENSOR_MAGIC PSYNE_CAST(uint32_t, 0x524e5354) /* "TSNR" */

/* The header at the start of a typed record (little endian, as the ring),
 * followed by rank uint64 shape values (elements along each dimension) and
 * rank uint64 strides (elements between neighbours along each dimension):
 * PSYNE_TENSOR_DESC_SIZE(rank) bytes in all. */
struct psyne_tensor_desc {
    uint32_t magic;       /* PSYNE_TENSOR_MAGIC */
    uint8_t dtype;        /* enum psyne_dtype */
    uint8_t rank;         /* 0 (a scalar) .. PSYNE_TENSOR_MAX_RANK */
    uint16_t reserved16;  /* zero */
    uint32_t data_offset; /* bytes from this header to the first element */
    uint32_t reserved32;  /* zero */
};
#define PSYNE_TENSOR_DESC_SIZE(rank) (sizeof(struct psyne_tensor_desc) + 16u * PSYNE_CAST(size_t, rank))

/* A tensor being built in a claim, or one received (a view). data points
 * into the ring; shape and strides are this struct's own copies. */
struct psyne_tensor {
    void *data; /* first element, PSYNE_TENSOR_ALIGN-aligned */
    int dtype;  /* enum psyne_dtype */
    int rank;
    uint64_t shape[PSYNE_TENSOR_MAX_RANK];
    uint64_t strides[PSYNE_TENSOR_MAX_RANK];
    uint64_t capacity;          /* claim: elements that fit; view: elements the record holds */
    int max_rank;               /* claim: the largest rank its header has room for */
    struct psyne_claimed claim; /* claim: the record (psyne_abort(ch, &t.claim) gives it up) */
};

/* Bytes per element of dtype, or 0 if dtype is not a psyne_dtype.
 * Thread-safe; never blocks. */
PSYNE_API size_t psyne_dtype_size(int dtype);

/*
 * Claims a typed message of up to max_rank dimensions (1: a vector, 2: a
 * matrix, up to PSYNE_TENSOR_MAX_RANK) with room for `capacity` elements of
 * dtype, and fills *t: data (aligned), capacity, and the shape of a vector
 * of `capacity` elements (change it with psyne_tensor_reshape before
 * commit). Returns 0, -EINVAL (unknown dtype, bad max_rank), -EMSGSIZE (can
 * never fit the ring), or the errors and waiting of psyne_claim
 * (timeout_ns). Threads: as psyne_claim.
 */
PSYNE_API int psyne_claim_tensor(psyne_channel *ch, int dtype, int max_rank, uint64_t capacity, struct psyne_tensor *t,
                                 int64_t timeout_ns);

/*
 * Sets the shape (rank 0..t->max_rank) of a claimed tensor; strides NULL means
 * contiguous row-major, else strides in elements (a matrix with leading
 * dimension ld: {ld, 1}, ld >= cols). Every element the shape reaches must
 * lie within the claim's capacity. Returns 0 or -EINVAL (t unchanged).
 * Touches only *t; never blocks. Threads: the claim's owner.
 */
PSYNE_API int psyne_tensor_reshape(struct psyne_tensor *t, int rank, const uint64_t *shape, const uint64_t *strides);

/*
 * Writes the tensor's header and publishes the message with the bytes its
 * shape uses. Returns 0 or -EINVAL (the claim stays open). Never blocks.
 * Threads: as psyne_commit.
 */
PSYNE_API int psyne_commit_tensor(psyne_channel *ch, struct psyne_tensor *t);

/*
 * A typed view of a received message: checks that it is a typed record,
 * of dtype and rank if they are non-zero (-1 for rank: any), and that its
 * header is consistent: every element its shape and strides reach lies
 * inside the record (no product overflows). Fills *t with a view into the
 * ring, valid until the message is released. Returns 0, -ENOMSG (not a
 * typed message, or another dtype or rank) or -EPROTO (an inconsistent
 * header; nothing outside the record was read). Reads only m's bytes;
 * never blocks; thread-safe.
 */
PSYNE_API int psyne_tensor_view(const struct psyne_msg *m, int dtype, int rank, struct psyne_tensor *t);

/*
 * User-defined fixed-layout messages: PSYNE_MESSAGE_TYPE(name, ctype, id)
 * checks at compile time that id is a user type id and that ctype needs no
 * more than the ring's 8-byte alignment, and defines
 *   int name##_claim(psyne_channel *, ctype **out, struct psyne_claimed *, int64_t timeout_ns)
 *   int name##_commit(psyne_channel *, struct psyne_claimed *)
 *   const ctype *name##_view(const struct psyne_msg *)   NULL if another type or size
 */
/* The functions a message type defines may go unused in a file that uses
 * only some of them (clang's -Wunused-function). */
#if defined(__GNUC__) || defined(__clang__)
#define PSYNE_MAYBE_UNUSED __attribute__((unused))
#else
#define PSYNE_MAYBE_UNUSED
#endif
#ifdef __cplusplus
#define PSYNE_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#define PSYNE_ALIGNOF(type) alignof(type)
/* psyne.hpp's claim<T>() and receive<T>() find the id by this function
 * (argument-dependent lookup: use the macro in ctype's namespace). */
#define PSYNE_CXX_TYPE_ID(ctype, id)                                                                                   \
    PSYNE_MAYBE_UNUSED static constexpr uint32_t psyne_type_id_of(const ctype *)                                       \
    {                                                                                                                  \
        return (id);                                                                                                   \
    }
#else
#define PSYNE_CXX_TYPE_ID(ctype, id)
#define PSYNE_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define PSYNE_ALIGNOF(type) _Alignof(type)
#endif
#define PSYNE_MESSAGE_TYPE(name, ctype, id)                                                                            \
    PSYNE_STATIC_ASSERT((id) >= PSYNE_TYPE_USER_MIN && (id) <= PSYNE_TYPE_USER_MAX, "type id out of range");           \
    PSYNE_STATIC_ASSERT(PSYNE_ALIGNOF(ctype) <= 8, "more than the ring's 8-byte alignment");                           \
    PSYNE_MAYBE_UNUSED static inline int name##_claim(psyne_channel *ch, ctype **out, struct psyne_claimed *c,         \
                                                      int64_t timeout_ns)                                              \
    {                                                                                                                  \
        int rc_ = psyne_claim(ch, sizeof(ctype), c, timeout_ns);                                                       \
        *out = rc_ == 0 ? PSYNE_CAST(ctype *, c->data) : PSYNE_CAST(ctype *, 0);                                       \
        return rc_;                                                                                                    \
    }                                                                                                                  \
    PSYNE_MAYBE_UNUSED static inline int name##_commit(psyne_channel *ch, struct psyne_claimed *c)                     \
    {                                                                                                                  \
        return psyne_commit(ch, c, sizeof(ctype), (id));                                                               \
    }                                                                                                                  \
    PSYNE_MAYBE_UNUSED static inline const ctype *name##_view(const struct psyne_msg *m)                               \
    {                                                                                                                  \
        return m->type == (id) && m->length == sizeof(ctype) ? PSYNE_CAST(const ctype *, m->data)                      \
                                                             : PSYNE_CAST(const ctype *, 0);                           \
    }                                                                                                                  \
    PSYNE_CXX_TYPE_ID(ctype, id)

#endif /* PSYNE_TENSOR_H */
