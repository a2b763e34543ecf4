/* SPDX-License-Identifier: MIT */
/*
 * blas_matmul.c - linear algebra on messages in place: two received matrix
 * views (A and B) go to OpenBLAS as they lie in the ring, and the product is
 * written by cblas_sgemm straight into a claimed matrix message C, which is
 * then sent. The result is checked against a plain triple loop.
 * Run: ./build/examples/blas_matmul
 */
#include <math.h>
#include <stdio.h>

#include <cblas.h>
#include <psyne.h>

enum { M = 64, K = 48, N = 32, LDA = 64 }; /* A's rows padded to 64 floats */

static psyne_channel *open_channel(const char *uri)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.capacity = 1 << 20;
    psyne_channel *ch;
    int rc = psyne_channel_open(&ch, uri, &o);
    if (rc < 0) {
        fprintf(stderr, "open %s: %s (%s)\n", uri, psyne_strerror(rc), psyne_last_error());
        return NULL;
    }
    return ch;
}

/* Sends a rows x cols matrix with leading dimension ld, element (i, j) = f(i, j). */
static int send_matrix(psyne_channel *ch, int rows, int cols, int ld, float (*f)(int, int))
{
    struct psyne_tensor t;
    int rc = psyne_claim_tensor(ch, PSYNE_F32, 2, (uint64_t)rows * ld, &t, PSYNE_FOREVER);
    if (rc < 0)
        return rc;
    psyne_tensor_reshape(&t, 2, (const uint64_t[]){rows, cols}, (const uint64_t[]){ld, 1});
    float *a = t.data;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            a[i * ld + j] = f(i, j);
    return psyne_commit_tensor(ch, &t);
}

static float fa(int i, int j)
{
    return (float)((i * 3 + j) % 7) - 3.0f;
}
static float fb(int i, int j)
{
    return (float)((i + 2 * j) % 5) * 0.5f;
}

/* A receiver of A and B: multiplies them into a new message on `out`. */
static int multiply(psyne_channel *in, psyne_channel *out)
{
    struct psyne_msg ma, mb;
    struct psyne_tensor a, b, c;
    int rc;
    if ((rc = psyne_receive(in, &ma, PSYNE_FOREVER)) < 0 || (rc = psyne_receive(in, &mb, PSYNE_FOREVER)) < 0)
        return rc;
    if ((rc = psyne_tensor_view(&ma, PSYNE_F32, 2, &a)) < 0 || (rc = psyne_tensor_view(&mb, PSYNE_F32, 2, &b)) < 0)
        return rc;
    if (a.shape[1] != b.shape[0] || a.strides[1] != 1 || b.strides[1] != 1)
        return -1; /* BLAS wants unit column stride and matching inner dimensions */
    int m = (int)a.shape[0], k = (int)a.shape[1], n = (int)b.shape[1];
    if ((rc = psyne_claim_tensor(out, PSYNE_F32, 2, (uint64_t)m * n, &c, PSYNE_FOREVER)) < 0)
        return rc;
    psyne_tensor_reshape(&c, 2, (const uint64_t[]){m, n}, NULL);
    /* reads A and B where they lie in the ring, writes C into the claimed message */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a.data, (int)a.strides[0], b.data,
                (int)b.strides[0], 0.0f, c.data, (int)c.strides[0]);
    if ((rc = psyne_commit_tensor(out, &c)) < 0)
        return rc;
    psyne_release(in, &ma); /* A, then B: views are given back in order */
    psyne_release(in, &mb);
    return 0;
}

int main(void)
{
    psyne_channel *in = open_channel("memory://blas-in"), *out = open_channel("memory://blas-out");
    if (!in || !out)
        return 1;
    if (send_matrix(in, M, K, LDA, fa) < 0 || send_matrix(in, K, N, N, fb) < 0 || multiply(in, out) < 0) {
        fprintf(stderr, "failed: %s\n", psyne_last_error());
        return 1;
    }
    struct psyne_msg m;
    struct psyne_tensor c;
    if (psyne_receive(out, &m, PSYNE_FOREVER) < 0 || psyne_tensor_view(&m, PSYNE_F32, 2, &c) < 0)
        return 1;
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double ref = 0;
            for (int p = 0; p < K; p++)
                ref += (double)fa(i, p) * fb(p, j);
            double got = ((const float *)c.data)[i * c.strides[0] + j];
            worst = fmax(worst, fabs(got - ref));
        }
    printf("C = A (%dx%d, lda %d) x B (%dx%d): %llux%llu, largest difference from the reference %.2g\n", M, K, LDA, K,
           N, (unsigned long long)c.shape[0], (unsigned long long)c.shape[1], worst);
    psyne_release(out, &m);
    psyne_channel_close(in);
    psyne_channel_close(out);
    return worst < 1e-3 ? 0 : 1;
}
