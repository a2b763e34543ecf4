/* SPDX-License-Identifier: MIT */
/*
 * ipc_consumer.c - prints the readings another process sends over
 * ipc://NAME, reading each one in place in the shared ring, until the
 * producer closes. See ipc_producer.c for how to run the pair.
 */
#include <errno.h>
#include <stdio.h>

#include <psyne.h>

#include "ipc_reading.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s NAME\n", argv[0]);
        return 2;
    }
    char uri[300];
    snprintf(uri, sizeof uri, "ipc://%s", argv[1]);
    struct psyne_options o;
    psyne_options_init(&o);
    o.role = PSYNE_ROLE_CONSUMER;
    o.capacity = 64 * 1024; /* used if this process creates the segment */
    psyne_channel *rx;
    int rc = psyne_channel_open(&rx, uri, &o);
    if (rc < 0) {
        fprintf(stderr, "open %s: %s (%s)\n", uri, psyne_strerror(rc), psyne_last_error());
        return 1;
    }
    unsigned n = 0;
    struct psyne_msg m;
    while ((rc = psyne_receive(rx, &m, PSYNE_FOREVER)) == 0) {
        if (m.type == MSG_READING && m.length == sizeof(struct reading)) {
            const struct reading *r = m.data; /* where the producer process wrote it */
            printf("reading %u: sensor %u = %.1f\n", r->seq, r->sensor, r->value);
            n++;
        }
        psyne_release(rx, &m);
    }
    /* -EPIPE: every producer closed (or died) and everything was read */
    printf("done (%s): %u readings\n", rc == -EPIPE ? "producer closed" : psyne_strerror(rc), n);
    psyne_channel_close(rx);
    return rc == -EPIPE ? 0 : 1;
}
