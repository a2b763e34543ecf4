/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tcp.c - libFuzzer target for what tcp:// reads from the network: the
 * hello (psy_wire_hello_decode) and the record stream (psy_wire_scan), fed
 * the way the receiver feeds it: in arbitrary pieces, whole records taken off
 * the front after each scan, the first header kept apart (the stash).
 *
 * Checks, besides the sanitizers: a scan never claims more than it was given
 * or a record boundary that is not 8-aligned, counts stay within what was
 * scanned, and reading in pieces finds exactly the records (and the error)
 * that reading everything at once finds.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "psyne.h"
#include "transport/tcp/wire.h"

#define BUF_MAX 4096

static void require(int ok)
{
    if (!ok)
        abort();
}

/* Scans all of data[0..n) in pieces whose sizes come from cuts[]; returns
 * the bytes of whole records taken and whether it stopped on an error. */
static uint64_t scan_in_pieces(const uint8_t *data, size_t n, const uint8_t *cuts, size_t ncuts, uint64_t max_message,
                               int *error, uint64_t *msgs)
{
    static uint8_t ring[BUF_MAX + 16];
    uint64_t taken = 0, have = 0, stash = 0;
    size_t fed = 0, c = 0;
    *error = 0;
    *msgs = 0;
    while (fed < n) {
        size_t piece = ncuts ? 1 + cuts[c++ % ncuts] % 97 : n - fed;
        if (piece > n - fed)
            piece = n - fed;
        /* bytes [0,8) of the pending region live in the stash, the rest in the ring */
        for (size_t k = 0; k < piece; k++, have++) {
            if (have < 8)
                ((uint8_t *)&stash)[have] = data[fed + k];
            else
                ring[have] = data[fed + k];
        }
        fed += piece;
        if (have < 8)
            continue;
        struct psy_wire_scan s;
        const char *why;
        uint64_t first = stash;
        int rc = psy_wire_scan(&first, ring, have, max_message, &s, &why);
        require(s.complete <= have && s.complete % 8 == 0 && s.stream <= s.complete && s.msgs * 8 <= s.complete);
        require(s.payload <= s.complete);
        require(rc == 0 || why != NULL);
        *msgs += s.msgs;
        taken += s.complete;
        if (rc) {
            *error = 1;
            return taken;
        }
        if (s.bye)
            return taken;
        /* take the whole records off the front, as publish() does */
        uint64_t rest = have - s.complete;
        if (s.complete) {
            stash = 0;
            memcpy(&stash, ring + s.complete, rest < 8 ? rest : 8);
            memmove(ring + 8, ring + s.complete + 8, rest > 8 ? rest - 8 : 0);
            have = rest;
        }
    }
    return taken;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint64_t max_message = 8 + (uint64_t)data[0] * 16; /* small limits reach the size checks */
    size_t ncuts = data[1] % 8;
    data += 2;
    size -= 2;

    if (size >= PSY_WIRE_HELLO_SIZE) {
        struct psy_wire_hello h;
        const char *why;
        int rc = psy_wire_hello_decode(data, max_message, &h, &why);
        require(rc == 0 || rc == -EPROTO);
        require(rc == 0 ? why == NULL : why != NULL);
        if (rc == 0)
            require(h.max_message >= max_message && h.rx_offset % 8 == 0);
        /* what we encode, we accept */
        uint8_t out[PSY_WIRE_HELLO_SIZE];
        psy_wire_hello_encode(out, h.max_message > max_message ? max_message + 8 : max_message, h.session,
                              h.rx_offset & ~7ull, 0);
        require(psy_wire_hello_decode(out, max_message, &h, &why) == 0);
    }

    if (size < ncuts)
        return 0;
    const uint8_t *cuts = data;
    data += ncuts;
    size -= ncuts;
    if (size > BUF_MAX)
        size = BUF_MAX;
    int err_whole, err_pieces;
    uint64_t msgs_whole, msgs_pieces;
    uint64_t whole = scan_in_pieces(data, size, NULL, 0, max_message, &err_whole, &msgs_whole);
    uint64_t pieces = scan_in_pieces(data, size, cuts, ncuts, max_message, &err_pieces, &msgs_pieces);
    require(whole == pieces && err_whole == err_pieces && msgs_whole == msgs_pieces);
    return 0;
}
