/* SPDX-License-Identifier: MIT */
/*
 * tensor.c - typed messages (psyne/tensor.h): every dtype and shape edge
 * case round trip over memory:// and ipc:// (also across a fork), hostile
 * descriptors refused without reading past the record (run under ASan in
 * scripts/check.sh), sender-side errors, and PSYNE_MESSAGE_TYPE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

struct pose {
    double x, y, z;
    uint32_t id;
};
PSYNE_MESSAGE_TYPE(pose_msg, struct pose, PSYNE_TYPE_USER_MIN + 77)

static void open_pair(const char *uri, psyne_channel **tx, psyne_channel **rx)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.capacity = 1 << 20;
    o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(rx, uri, &o), 0);
    o.role = PSYNE_ROLE_PRODUCER;
    CHECK_RC(psyne_channel_open(tx, uri, &o), 0);
}

/* The value of element k of a test tensor of dtype, as a double. */
static double value_of(int dtype, uint64_t k)
{
    switch (dtype) {
    case PSYNE_I8: return (double)(int8_t)(k * 7);
    case PSYNE_U8: return (double)(uint8_t)(k * 13);
    case PSYNE_I32:
    case PSYNE_I64: return (double)((int64_t)k * 3 - 7);
    default: return (double)k * 0.5 - 3.0; /* exact in float for these sizes */
    }
}

static void put(int dtype, void *base, uint64_t at, double v)
{
    switch (dtype) {
    case PSYNE_F32: ((float *)base)[at] = (float)v; break;
    case PSYNE_F64: ((double *)base)[at] = v; break;
    case PSYNE_I8: ((int8_t *)base)[at] = (int8_t)v; break;
    case PSYNE_U8: ((uint8_t *)base)[at] = (uint8_t)v; break;
    case PSYNE_I32: ((int32_t *)base)[at] = (int32_t)v; break;
    default: ((int64_t *)base)[at] = (int64_t)v; break;
    }
}

static double get(int dtype, const void *base, uint64_t at)
{
    switch (dtype) {
    case PSYNE_F32: return ((const float *)base)[at];
    case PSYNE_F64: return ((const double *)base)[at];
    case PSYNE_I8: return ((const int8_t *)base)[at];
    case PSYNE_U8: return ((const uint8_t *)base)[at];
    case PSYNE_I32: return ((const int32_t *)base)[at];
    default: return (double)((const int64_t *)base)[at];
    }
}

/* Offset (elements) of the k-th element in row-major order of shape. */
static uint64_t offset_of(const struct psyne_tensor *t, uint64_t k)
{
    uint64_t off = 0;
    for (int i = t->rank - 1; i >= 0; i--) {
        off += (k % t->shape[i]) * t->strides[i];
        k /= t->shape[i];
    }
    return off;
}

static uint64_t count_of(int rank, const uint64_t *shape)
{
    uint64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= shape[i];
    return n;
}

struct case_ {
    int dtype, rank;
    uint64_t capacity;
    uint64_t shape[PSYNE_TENSOR_MAX_RANK];
    uint64_t strides[PSYNE_TENSOR_MAX_RANK]; /* all zero: row-major */
};

static const struct case_ cases[] = {
    {PSYNE_F32, 1, 1000, {777}, {0}},        /* a vector resized within its capacity */
    {PSYNE_F64, 2, 13 * 9, {13, 7}, {9, 1}}, /* a matrix with leading dimension 9 */
    {PSYNE_I8, 1, 4096, {4096}, {0}},        /* quantized */
    {PSYNE_U8, 1, 3, {3}, {0}},              /* bytes */
    {PSYNE_I32, 3, 60, {3, 4, 5}, {0}},
    {PSYNE_I64, 8, 256, {2, 2, 2, 2, 2, 2, 2, 2}, {0}}, /* the largest rank */
    {PSYNE_F32, 2, 10, {0, 5}, {0}},                    /* empty */
    {PSYNE_F64, 0, 1, {0}, {0}},                        /* a scalar */
};

static void send_case(psyne_channel *tx, const struct case_ *k)
{
    struct psyne_tensor t;
    CHECK_RC(psyne_claim_tensor(tx, k->dtype, k->rank, k->capacity, &t, PSYNE_FOREVER), 0);
    CHECK((uintptr_t)t.data % PSYNE_TENSOR_ALIGN == 0 && t.capacity == k->capacity);
    int strided = k->strides[0] != 0;
    CHECK_RC(psyne_tensor_reshape(&t, k->rank, k->shape, strided ? k->strides : NULL), 0);
    uint64_t n = count_of(k->rank, k->shape);
    for (uint64_t e = 0; e < n; e++) /* written in place, in the ring */
        put(k->dtype, t.data, offset_of(&t, e), value_of(k->dtype, e));
    CHECK_RC(psyne_commit_tensor(tx, &t), 0);
}

static void check_case(const struct psyne_msg *m, const struct case_ *k)
{
    struct psyne_tensor v;
    CHECK_RC(psyne_tensor_view(m, k->dtype, k->rank, &v), 0);
    CHECK((uintptr_t)v.data % PSYNE_TENSOR_ALIGN == 0);
    CHECK(v.dtype == k->dtype && v.rank == k->rank);
    for (int i = 0; i < k->rank; i++)
        CHECK(v.shape[i] == k->shape[i]);
    uint64_t n = count_of(k->rank, k->shape);
    for (uint64_t e = 0; e < n; e++)
        CHECK(get(k->dtype, v.data, offset_of(&v, e)) == value_of(k->dtype, e));
    int other = k->dtype == PSYNE_F32 ? PSYNE_F64 : PSYNE_F32;
    CHECK_RC(psyne_tensor_view(m, other, -1, &v), -ENOMSG);
    CHECK_RC(psyne_tensor_view(m, 0, k->rank + 1, &v), -ENOMSG);
    CHECK_RC(psyne_tensor_view(m, 0, -1, &v), 0);
}

static void round_trips(const char *uri)
{
    psyne_channel *tx, *rx;
    open_pair(uri, &tx, &rx);
    size_t n = sizeof cases / sizeof cases[0];
    for (int rep = 0; rep < 50; rep++) { /* many laps: every alignment the ring offers */
        for (size_t i = 0; i < n; i++)
            send_case(tx, &cases[i]);
        for (size_t i = 0; i < n; i++) {
            struct psyne_msg m;
            CHECK_RC(psyne_receive(rx, &m, PSYNE_FOREVER), 0);
            CHECK(m.type == PSYNE_TYPE_TENSOR);
            check_case(&m, &cases[i]);
            CHECK_RC(psyne_release(rx, &m), 0);
        }
    }
    /* a user-defined fixed layout */
    struct pose *p;
    struct psyne_claimed c;
    CHECK_RC(pose_msg_claim(tx, &p, &c, PSYNE_FOREVER), 0);
    *p = (struct pose){1.0, 2.0, 3.0, 42};
    CHECK_RC(pose_msg_commit(tx, &c), 0);
    struct psyne_msg m;
    CHECK_RC(psyne_receive(rx, &m, PSYNE_FOREVER), 0);
    const struct pose *got = pose_msg_view(&m);
    CHECK(got && got->id == 42 && got->z == 3.0);
    struct psyne_tensor v;
    CHECK_RC(psyne_tensor_view(&m, 0, -1, &v), -ENOMSG); /* not a typed record */
    CHECK_RC(psyne_release(rx, &m), 0);
    send_case(tx, &cases[0]);
    CHECK_RC(psyne_receive(rx, &m, PSYNE_FOREVER), 0);
    CHECK(pose_msg_view(&m) == NULL);
    CHECK_RC(psyne_release(rx, &m), 0);
    psyne_channel_close(tx);
    psyne_channel_close(rx);
}

/* A producer process builds matrices in shared memory; this process reads them in place. */
static void across_processes(void)
{
    char uri[64];
    snprintf(uri, sizeof uri, "ipc://tensor-%d", (int)getpid());
    psyne_channel *tx, *rx;
    open_pair(uri, &tx, &rx); /* tx stays open here: closing the last producer would end the stream */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct psyne_options o;
        psyne_options_init(&o);
        o.role = PSYNE_ROLE_PRODUCER;
        CHECK_RC(psyne_channel_open(&tx, uri, &o), 0);
        for (int rep = 0; rep < 200; rep++)
            send_case(tx, &cases[1 + rep % 5]);
        psyne_channel_close(tx);
        _exit(0);
    }
    for (int rep = 0; rep < 200; rep++) {
        struct psyne_msg m;
        CHECK_RC(psyne_receive(rx, &m, PSYNE_FOREVER), 0);
        check_case(&m, &cases[1 + rep % 5]);
        CHECK_RC(psyne_release(rx, &m), 0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    psyne_channel_close(tx);
    psyne_channel_close(rx);
}

/* A typed record: header, shape and strides, in a heap block of exactly
 * `length` bytes (ASan catches any read past it), aligned as a ring record is. */
struct raw_desc {
    struct psyne_tensor_desc d;
    uint64_t shape[PSYNE_TENSOR_MAX_RANK], strides[PSYNE_TENSOR_MAX_RANK];
};

static int view_of(const struct raw_desc *r, uint32_t length, struct psyne_tensor *v)
{
    uint8_t head[sizeof(struct psyne_tensor_desc) + 16 * PSYNE_TENSOR_MAX_RANK];
    size_t rank = r->d.rank <= PSYNE_TENSOR_MAX_RANK ? r->d.rank : PSYNE_TENSOR_MAX_RANK;
    memcpy(head, &r->d, sizeof r->d);
    memcpy(head + sizeof r->d, r->shape, 8 * rank);
    memcpy(head + sizeof r->d + 8 * rank, r->strides, 8 * rank);
    void *mem;
    size_t lead = 64 - PSYNE_RECORD_HEADER; /* data_offset 72 lands 64-aligned, as in a ring */
    CHECK(posix_memalign(&mem, PSYNE_TENSOR_ALIGN, lead + length) == 0); /* ends where the record ends */
    uint8_t *rec = (uint8_t *)mem + lead;
    memset(rec, 0, length);
    size_t hlen = PSYNE_TENSOR_DESC_SIZE(rank);
    memcpy(rec, head, length < hlen ? length : hlen);
    struct psyne_msg m = {.data = rec, .length = length, .type = PSYNE_TYPE_TENSOR};
    int rc = psyne_tensor_view(&m, 0, -1, v);
    free(mem);
    return rc;
}

static void hostile_descriptors(void)
{
    /* rank 2: header 16 + 32 = 48 bytes; data at 72 (64-aligned in the block) */
    struct raw_desc good = {{PSYNE_TENSOR_MAGIC, PSYNE_F32, 2, 0, 72, 0}, {4, 4}, {4, 1}};
    struct psyne_tensor v;
    CHECK_RC(view_of(&good, 72 + 64, &v), 0);
    CHECK(v.shape[0] == 4 && v.strides[0] == 4 && v.capacity == 16);
    struct raw_desc d = good;
    CHECK_RC(view_of(&d, 72 + 60, &v), -EPROTO); /* the shape reaches 4 bytes past the end */
    CHECK_RC(view_of(&d, 60, &v), -EPROTO);      /* shorter than its data offset */
    CHECK_RC(view_of(&d, 40, &v), -EPROTO);      /* shorter than its rank-2 header */
    CHECK_RC(view_of(&d, 10, &v), -EPROTO);      /* shorter than any header */
    d.shape[0] = UINT64_MAX / 2;                 /* dimensions whose product overflows */
    d.shape[1] = 3;
    CHECK_RC(view_of(&d, 72 + 64, &v), -EPROTO);
    d = good;
    d.strides[0] = UINT64_MAX / 2; /* strides that overflow */
    CHECK_RC(view_of(&d, 72 + 64, &v), -EPROTO);
    d = good;
    d.d.magic ^= 1;
    CHECK_RC(view_of(&d, 72 + 64, &v), -EPROTO);
    d = good;
    d.d.rank = PSYNE_TENSOR_MAX_RANK + 1;
    CHECK_RC(view_of(&d, 512, &v), -EPROTO);
    d = good;
    d.d.dtype = 99;
    CHECK_RC(view_of(&d, 72 + 64, &v), -EPROTO);
    d = good;
    d.d.data_offset = 76; /* misaligned */
    CHECK_RC(view_of(&d, 76 + 64, &v), -EPROTO);
    d = good;
    d.d.data_offset = 8; /* inside the header */
    CHECK_RC(view_of(&d, 72 + 64, &v), -EPROTO);
    d = good;
    d.shape[1] = 0; /* empty: nothing to read, valid */
    CHECK_RC(view_of(&d, 72, &v), 0);

    /* random descriptors: refused, or a view that lies inside the record */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 200000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        d = good;
        d.d.rank = (uint8_t)(s % 10);
        d.d.dtype = (uint8_t)(1 + (s >> 8) % 7);
        d.d.data_offset = (s >> 30) & 1 ? 136 : 200;
        for (int k = 0; k < PSYNE_TENSOR_MAX_RANK; k++) {
            uint64_t r = s * (uint64_t)(k + 3) >> (s >> 59);
            d.shape[k] = (s >> (k * 3)) & 1 ? r % 9 : r;
            d.strides[k] = (s >> (k * 5)) & 1 ? (r >> 3) % 17 : r >> 2;
        }
        uint32_t length = (uint32_t)((s >> 20) % 2400);
        int rc = view_of(&d, length, &v);
        CHECK(rc == 0 || rc == -EPROTO);
    }
}

static void sender_errors(void)
{
    psyne_channel *tx, *rx;
    open_pair("memory://tensor-errors", &tx, &rx);
    struct psyne_tensor t;
    CHECK_RC(psyne_claim_tensor(tx, 99, 1, 10, &t, PSYNE_NONBLOCK), -EINVAL);
    CHECK_RC(psyne_claim_tensor(tx, PSYNE_F64, 1, UINT64_MAX / 4, &t, PSYNE_NONBLOCK), -EMSGSIZE);
    CHECK_RC(psyne_claim_tensor(tx, PSYNE_F64, 1, 1 << 20, &t, PSYNE_NONBLOCK), -EMSGSIZE); /* 8 MiB: not in 1 MiB */
    CHECK_RC(psyne_claim_tensor(tx, PSYNE_F32, 3, 100, &t, PSYNE_NONBLOCK), 0);
    struct psyne_tensor u;
    CHECK_RC(psyne_claim_tensor(tx, PSYNE_F32, 9, 100, &u, PSYNE_NONBLOCK), -EINVAL); /* max_rank 9 */
    uint64_t big[2] = {11, 10}, huge[2] = {UINT64_MAX, 3}, ok[2] = {10, 10}, ld[2] = {10, 12};
    CHECK_RC(psyne_tensor_reshape(&t, 2, big, NULL), -EINVAL);  /* 110 > 100 */
    CHECK_RC(psyne_tensor_reshape(&t, 2, huge, NULL), -EINVAL); /* overflow */
    CHECK_RC(psyne_tensor_reshape(&t, 9, ok, NULL), -EINVAL);
    CHECK_RC(psyne_tensor_reshape(&t, 2, ok, ld), -EINVAL); /* rows of 12: 9*12+10 > 100 */
    CHECK_RC(psyne_tensor_reshape(&t, 2, ok, NULL), 0);
    CHECK_RC(psyne_commit_tensor(tx, &t), 0);
    CHECK_RC(psyne_commit_tensor(tx, &t), -EINVAL); /* already committed */
    psyne_channel_close(tx);
    psyne_channel_close(rx);
}

int main(void)
{
    alarm(300);
    CHECK(psyne_dtype_size(PSYNE_F32) == 4 && psyne_dtype_size(PSYNE_I64) == 8 && psyne_dtype_size(0) == 0);
    round_trips("memory://tensor");
    char uri[64];
    snprintf(uri, sizeof uri, "ipc://tensor-rt-%d", (int)getpid());
    round_trips(uri);
    across_processes();
    hostile_descriptors();
    sender_errors();
    printf("tensor: ok\n");
    return 0;
}
