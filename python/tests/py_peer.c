/* SPDX-License-Identifier: MIT */
/*
 * py_peer.c - the C end of the Python binding's tests (test_psyne.py):
 *   py_peer send URI N SIZE [listen]   N messages of SIZE bytes: the first 8
 *                                      the sequence, the rest its low byte
 *   py_peer recv URI N [listen]        receives and checks N such messages
 *   py_peer send-typed URI             a float64 3x4 matrix (m[i][j] = 10i + j)
 *                                      and a float32 vector of 100 (v[i] = i)
 * Prints "py_peer: ok ..." and exits 0, or says what was wrong and exits 1.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <psyne.h>

static int fail(const char *what, int rc)
{
    fprintf(stderr, "py_peer: %s: %s (%s)\n", what, psyne_strerror(rc), psyne_last_error());
    return 1;
}

static psyne_channel *open_end(const char *uri, int role, int listen)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.role = role;
    o.capacity = 1 << 20;
    o.flags = listen ? PSYNE_F_LISTEN : 0;
    o.open_timeout_ns = 20000000000LL;
    psyne_channel *ch;
    int rc = psyne_channel_open(&ch, uri, &o);
    if (rc < 0) {
        fail(uri, rc);
        exit(1);
    }
    return ch;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && !strcmp(argv[1], "send")) {
        uint64_t n = strtoull(argv[3], NULL, 10);
        size_t size = strtoul(argv[4], NULL, 10);
        psyne_channel *tx = open_end(argv[2], PSYNE_ROLE_PRODUCER, argc > 5);
        for (uint64_t i = 0; i < n; i++) {
            struct psyne_claimed c;
            int rc = psyne_claim(tx, size, &c, 20000000000LL);
            if (rc < 0)
                return fail("claim", rc);
            memset(c.data, (int)(i & 0xff), size);
            memcpy(c.data, &i, sizeof i);
            psyne_commit(tx, &c, size, PSYNE_TYPE_USER_MIN);
        }
        psyne_channel_close(tx);
        printf("py_peer: ok sent %llu\n", (unsigned long long)n);
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "recv")) {
        uint64_t n = strtoull(argv[3], NULL, 10);
        psyne_channel *rx = open_end(argv[2], PSYNE_ROLE_CONSUMER, argc > 4);
        for (uint64_t i = 0; i < n; i++) {
            struct psyne_msg m;
            int rc = psyne_receive(rx, &m, 20000000000LL);
            if (rc < 0)
                return fail("receive", rc);
            uint64_t seq;
            memcpy(&seq, m.data, sizeof seq);
            const uint8_t *p = m.data;
            if (m.length < 8 || seq != i || (m.length > 8 && p[m.length - 1] != (uint8_t)(i & 0xff))) {
                fprintf(stderr, "py_peer: message %llu: seq %llu, length %u\n", (unsigned long long)i,
                        (unsigned long long)seq, m.length);
                return 1;
            }
            psyne_release(rx, &m);
        }
        psyne_channel_close(rx);
        printf("py_peer: ok received %llu\n", (unsigned long long)n);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "send-typed")) {
        psyne_channel *tx = open_end(argv[2], PSYNE_ROLE_PRODUCER, 0);
        struct psyne_tensor t;
        int rc = psyne_claim_tensor(tx, PSYNE_F64, 2, 12, &t, PSYNE_FOREVER);
        if (rc < 0)
            return fail("claim matrix", rc);
        psyne_tensor_reshape(&t, 2, (uint64_t[]){3, 4}, NULL);
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++)
                ((double *)t.data)[i * 4 + j] = 10 * i + j;
        psyne_commit_tensor(tx, &t);
        if ((rc = psyne_claim_tensor(tx, PSYNE_F32, 1, 100, &t, PSYNE_FOREVER)) < 0)
            return fail("claim vector", rc);
        for (int i = 0; i < 100; i++)
            ((float *)t.data)[i] = (float)i;
        psyne_commit_tensor(tx, &t);
        psyne_channel_close(tx); /* kept for the consumer if it has not come yet (linger) */
        printf("py_peer: ok sent a matrix and a vector\n");
        return 0;
    }
    fprintf(stderr, "usage: py_peer send URI N SIZE [listen] | recv URI N [listen] | send-typed URI\n");
    return 2;
}
