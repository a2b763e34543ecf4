/* SPDX-License-Identifier: MIT */
/*
 * memory_pipeline.c - two threads of one program talking over a memory://
 * channel: the producer builds each message in place in the ring, the
 * consumer reads it where it lies. Run: ./build/examples/memory_pipeline
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <psyne.h>

#define MSG_READING (PSYNE_TYPE_USER_MIN + 1)

struct reading {
    unsigned sensor;
    double value;
};

static void *producer(void *arg)
{
    (void)arg;
    struct psyne_options o;
    psyne_options_init(&o);
    o.role = PSYNE_ROLE_PRODUCER;
    psyne_channel *tx;
    if (psyne_channel_open(&tx, "memory://sensors", &o) < 0)
        return NULL;
    for (unsigned i = 0; i < 10; i++) {
        struct psyne_claimed c;
        if (psyne_claim(tx, sizeof(struct reading), &c, PSYNE_FOREVER) < 0)
            break;
        struct reading *r = c.data; /* written straight into the ring */
        r->sensor = i % 3;
        r->value = 20.0 + i * 0.5;
        psyne_commit(tx, &c, sizeof *r, MSG_READING);
    }
    psyne_channel_close(tx); /* last producer: the consumer gets -EPIPE after the last message */
    return NULL;
}

int main(void)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.role = PSYNE_ROLE_CONSUMER;
    o.capacity = 64 * 1024;
    psyne_channel *rx;
    int rc = psyne_channel_open(&rx, "memory://sensors", &o);
    if (rc < 0) {
        fprintf(stderr, "open: %s (%s)\n", psyne_strerror(rc), psyne_last_error());
        return 1;
    }
    pthread_t t;
    pthread_create(&t, NULL, producer, NULL);
    struct psyne_msg m;
    while ((rc = psyne_receive(rx, &m, PSYNE_FOREVER)) == 0) {
        const struct reading *r = m.data; /* the producer's bytes, not a copy */
        if (m.type == MSG_READING && m.length == sizeof *r)
            printf("sensor %u: %.1f\n", r->sensor, r->value);
        psyne_release(rx, &m);
    }
    pthread_join(t, NULL);
    struct psyne_stats st;
    psyne_channel_stats(rx, &st);
    printf("done (%s): %llu messages, %llu bytes\n", psyne_strerror(rc), (unsigned long long)st.msgs_in,
           (unsigned long long)st.bytes_in);
    psyne_channel_close(rx);
    return rc == -EPIPE ? 0 : 1;
}
