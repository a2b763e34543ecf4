/* SPDX-License-Identifier: MIT */
/*
 * typed_matrix.c - typed messages: a producer thread builds float matrices
 * directly in the ring (64-byte aligned rows, a leading dimension), the
 * consumer gets a checked, typed view of the same memory and uses it as a
 * matrix. Run: ./build/examples/typed_matrix
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include <psyne.h>

enum { ROWS = 3, COLS = 4, LD = 16 }; /* rows padded to 16 floats: each row starts 64-byte aligned */

static void *producer(void *arg)
{
    (void)arg;
    struct psyne_options o;
    psyne_options_init(&o);
    o.role = PSYNE_ROLE_PRODUCER;
    psyne_channel *tx;
    if (psyne_channel_open(&tx, "memory://matrices", &o) < 0)
        return NULL;
    for (int k = 0; k < 3; k++) {
        struct psyne_tensor t;
        if (psyne_claim_tensor(tx, PSYNE_F32, 2, ROWS * LD, &t, PSYNE_FOREVER) < 0)
            break;
        psyne_tensor_reshape(&t, 2, (const uint64_t[]){ROWS, COLS}, (const uint64_t[]){LD, 1});
        float *a = t.data; /* in the ring */
        for (int i = 0; i < ROWS; i++)
            for (int j = 0; j < COLS; j++)
                a[i * LD + j] = (float)(k * 100 + i * 10 + j);
        psyne_commit_tensor(tx, &t);
    }
    psyne_channel_close(tx);
    return NULL;
}

int main(void)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.role = PSYNE_ROLE_CONSUMER;
    psyne_channel *rx;
    int rc = psyne_channel_open(&rx, "memory://matrices", &o);
    if (rc < 0) {
        fprintf(stderr, "open: %s (%s)\n", psyne_strerror(rc), psyne_last_error());
        return 1;
    }
    pthread_t t;
    pthread_create(&t, NULL, producer, NULL);
    struct psyne_msg m;
    int got = 0;
    while ((rc = psyne_receive(rx, &m, PSYNE_FOREVER)) == 0) {
        struct psyne_tensor a;
        if (psyne_tensor_view(&m, PSYNE_F32, 2, &a) == 0) { /* checked: shape and strides fit the record */
            const float *p = a.data;
            double trace = 0;
            for (uint64_t i = 0; i < a.shape[0] && i < a.shape[1]; i++)
                trace += p[i * a.strides[0] + i * a.strides[1]];
            printf("matrix %llux%llu (ld %llu): trace %.0f\n", (unsigned long long)a.shape[0],
                   (unsigned long long)a.shape[1], (unsigned long long)a.strides[0], trace);
            got++;
        }
        psyne_release(rx, &m);
    }
    pthread_join(t, NULL);
    printf("done (%s): %d matrices\n", psyne_strerror(rc), got);
    psyne_channel_close(rx);
    return rc == -EPIPE && got == 3 ? 0 : 1;
}
