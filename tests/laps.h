/* SPDX-License-Identifier: MIT */
/*
 * laps.h - traffic through a ring from one thread, for tests that check
 * where a ring's memory lives: messages of changing length, every byte
 * written and checked, so records cross the mirror boundary many times.
 */
#ifndef PSY_TEST_LAPS_H
#define PSY_TEST_LAPS_H

#include <stdint.h>

#include "check.h"

/* Sends `laps` ring-fulls of capacity bytes from tx and receives each
 * message on rx (the same handle, or the other end of a tcp:// link): claim,
 * fill, commit, receive, check, release. Claims and receives wait up to
 * timeout_ns (PSYNE_NONBLOCK: not at all). Returns the data pointer of the
 * first claim. */
static inline void *send_laps(psyne_channel *tx, psyne_channel *rx, uint64_t capacity, int laps, int64_t timeout_ns)
{
    void *first = NULL;
    uint64_t sent = 0, seq = 0;
    while (sent < (uint64_t)laps * capacity) {
        size_t len = 8 + (size_t)(seq * 7919 % 3000);
        struct psyne_claimed c;
        CHECK_RC(psyne_claim(tx, len, &c, timeout_ns), 0);
        if (!first)
            first = c.data;
        for (size_t i = 0; i < len; i++)
            ((unsigned char *)c.data)[i] = (unsigned char)(seq + i);
        CHECK_RC(psyne_commit(tx, &c, len, PSYNE_TYPE_USER_MIN), 0);
        struct psyne_msg m;
        CHECK_RC(psyne_receive(rx, &m, timeout_ns), 0);
        CHECK(m.length == len && m.type == PSYNE_TYPE_USER_MIN);
        for (size_t i = 0; i < len; i++)
            CHECK(((unsigned char *)m.data)[i] == (unsigned char)(seq + i));
        CHECK_RC(psyne_release(rx, &m), 0);
        sent += PSYNE_RECORD_SIZE(len);
        seq++;
    }
    return first;
}

#endif
