/* SPDX-License-Identifier: MIT */
/*
 * ipc_producer.c - sends readings to another process over ipc://NAME.
 * Run the consumer and the producer in two terminals, in either order (a
 * producer that is done before the consumer starts leaves its readings in
 * the segment for it):
 *
 *   ./build/examples/ipc_consumer sensors
 *   ./build/examples/ipc_producer sensors 10
 *
 * Each reading is built in place in the shared ring; the consumer process
 * reads it where this process wrote it.
 */
#include <stdio.h>
#include <stdlib.h>

#include <psyne.h>

#include "ipc_reading.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s NAME COUNT\n", argv[0]);
        return 2;
    }
    char uri[300];
    snprintf(uri, sizeof uri, "ipc://%s", argv[1]);
    unsigned count = (unsigned)atoi(argv[2]);

    struct psyne_options o;
    psyne_options_init(&o);
    o.role = PSYNE_ROLE_PRODUCER;
    o.capacity = 64 * 1024; /* used if this process creates the segment */
    psyne_channel *tx;
    int rc = psyne_channel_open(&tx, uri, &o);
    if (rc < 0) {
        fprintf(stderr, "open %s: %s (%s)\n", uri, psyne_strerror(rc), psyne_last_error());
        return 1;
    }
    for (unsigned i = 0; i < count; i++) {
        struct psyne_claimed c;
        if ((rc = psyne_claim(tx, sizeof(struct reading), &c, PSYNE_FOREVER)) < 0)
            break;
        struct reading *r = c.data; /* written straight into shared memory */
        r->sensor = i % 3;
        r->seq = i;
        r->value = 20.0 + i * 0.5;
        psyne_commit(tx, &c, sizeof *r, MSG_READING);
    }
    if (rc < 0)
        fprintf(stderr, "claim: %s\n", psyne_strerror(rc));
    printf("sent %u readings\n", count);
    /* The last producer: the consumer drains, then gets -EPIPE. If no
     * consumer has read them yet, the segment keeps them for one that opens
     * the name within linger_ns (default 60 s), and close says how many. */
    int left = psyne_channel_close(tx);
    if (left > 0)
        printf("%d readings kept for a consumer of %s\n", left, uri);
    return rc < 0;
}
