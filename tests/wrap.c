/* SPDX-License-Identifier: MIT */
/*
 * wrap.c - wrap-around: positions start just below 2^64 so the 64-bit
 * counters overflow during the test, and records of every length from 0 to
 * the largest that fits cross the end of the mirrored data region at every
 * offset. Every mode, including BROADCAST, and MPSC/MPMC with leases.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "core/channel.h"
#include "psyne.h"
#include "ring/ring.h"

#define CAP 4096u
#define T_WRAP (PSYNE_TYPE_USER_MIN + 3)

static void pattern(uint8_t *p, uint32_t len, uint32_t salt, int check)
{
    for (uint32_t i = 0; i < len; i++) {
        uint8_t v = (uint8_t)(i * 31u + salt);
        if (check)
            CHECK(p[i] == v);
        else
            p[i] = v;
    }
}

static void send(psyne_channel *tx, uint32_t len, uint32_t salt)
{
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(tx, len, &c, PSYNE_NONBLOCK), 0);
    pattern(c.data, len, salt, 0);
    CHECK_RC(psyne_commit(tx, &c, len, T_WRAP), 0);
}

static void expect(psyne_channel *rx, uint32_t len, uint32_t salt)
{
    struct psyne_msg m;
    CHECK_RC(psyne_receive(rx, &m, PSYNE_NONBLOCK), 0);
    CHECK(m.length == len && m.type == T_WRAP);
    pattern(m.data, len, salt, 1);
    CHECK_RC(psyne_release(rx, &m), 0);
}

static void run(int mode, uint32_t flags)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.mode = mode;
    o.flags = flags;
    o.capacity = CAP;
    psyne_channel *tx, *rx;
    if (mode == PSYNE_MODE_BROADCAST)
        o.role = PSYNE_ROLE_PRODUCER;
    CHECK_RC(psyne_channel_open(&tx, "memory://wrap", &o), 0);
    struct psy_ring *r = psy_channel_ring(tx);
    const uint64_t start = UINT64_MAX - 3 * CAP / 2 + 1; /* overflows within two laps */
    psy_ring_set_start(r, start);
    if (mode == PSYNE_MODE_BROADCAST)
        o.role = PSYNE_ROLE_CONSUMER; /* subscribes at the (wrapped) start */
    CHECK_RC(psyne_channel_open(&rx, "memory://wrap", &o), 0);

    uint32_t max_len = (uint32_t)PSYNE_MAX_MESSAGE(CAP);
    for (uint32_t len = 0; len <= max_len; len++) {
        send(tx, len, len);
        expect(rx, len, len);
    }
    /* two records in flight that fill the ring as far as it goes */
    for (uint32_t a = 0; PSYNE_RECORD_SIZE(a) + 2 * PSYNE_RECORD_HEADER <= CAP; a += 8) {
        uint32_t b = (uint32_t)PSYNE_MAX_MESSAGE(CAP) - (uint32_t)PSYNE_RECORD_SIZE(a);
        send(tx, a, 1);
        send(tx, b, 2);
        struct psyne_claimed c;
        CHECK_RC(psyne_claim(tx, 0, &c, PSYNE_NONBLOCK), -EAGAIN); /* exactly full */
        expect(rx, a, 1);
        expect(rx, b, 2);
    }
    uint64_t tail = atomic_load(&r->sh->pub.tail);
    CHECK(tail < start); /* the 64-bit position really wrapped */
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(tx, &st), 0);
    CHECK(st.in_use == 0);
    psyne_channel_shutdown(tx);
    psyne_channel_close(rx);
    psyne_channel_close(tx);
}

int main(void)
{
    int modes[] = {PSYNE_MODE_SPSC, PSYNE_MODE_SPMC, PSYNE_MODE_MPSC, PSYNE_MODE_MPMC, PSYNE_MODE_BROADCAST};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        run(modes[i], 0);
    run(PSYNE_MODE_MPSC, PSYNE_F_LEASES); /* claims from leases: their ends wrap too */
    run(PSYNE_MODE_MPMC, PSYNE_F_LEASES);
    printf("wrap: all modes ok\n");
    return 0;
}
