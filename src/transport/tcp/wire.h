/* SPDX-License-Identifier: MIT */
/*
 * wire.h - the tcp:// wire protocol: the handshake and the checks of the
 * record stream. Pure functions over bytes (no sockets), so the fuzz target
 * (tests/fuzz_tcp.c) drives exactly the code the receiver runs.
 *
 * A connection starts with each side sending one hello (64 bytes, little
 * endian). After it, each direction carries the ring's own record format:
 * 8-byte header {uint32 length; uint32 type}, payload, padding to 8 bytes.
 * The sender writes the bytes of its ring as they are; between whole records
 * it may insert control records (ACK, BYE), which are not part of the data
 * stream and are not counted in stream offsets.
 *
 * Stream offsets: each direction numbers the bytes of its data records (every
 * record but ACK and BYE, pads included) from 0 at the start of a session.
 * ACK carries the receiver's offset: everything before it is in the
 * receiver's ring, so the sender may free it. A reconnecting side sends in
 * its hello the offset it has received up to, and the other side resumes its
 * stream from exactly there: nothing lost, nothing twice.
 */
#ifndef PSY_TCP_WIRE_H
#define PSY_TCP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PSY_WIRE_MAGIC 0x5043544e59535000ull /* "\0PSYNTCP" read little endian */
#define PSY_WIRE_VERSION 1u
#define PSY_WIRE_BYTE_ORDER 0x01020304u /* as the sender's CPU stores it */
#define PSY_WIRE_HELLO_SIZE 64u

/* Control record types (psyne's reserved range; never in a ring). */
#define PSY_TYPE_WIRE_ACK 2u /* payload: uint64 stream offset received */
#define PSY_TYPE_WIRE_BYE 3u /* no payload: the sender closes the channel */
#define PSY_WIRE_ACK_SIZE 16u

/* Hello flags. */
#define PSY_WIRE_F_RESUME 1u /* the session existed before: resume at rx_offset */

struct psy_wire_hello {
    uint64_t magic;
    uint32_t version;
    uint32_t byte_order;
    uint64_t max_message; /* the largest message this side can receive */
    uint64_t session;     /* the client's random session id (0 from a server) */
    uint64_t rx_offset;   /* data-stream bytes this side has received this session */
    uint32_t flags;       /* PSY_WIRE_F_* */
    uint32_t header_size; /* PSYNE_RECORD_HEADER */
    uint64_t reserved[2]; /* zero */
};
_Static_assert(sizeof(struct psy_wire_hello) == PSY_WIRE_HELLO_SIZE, "hello is 64 bytes on the wire");

/* Fills out[PSY_WIRE_HELLO_SIZE] with a hello. */
void psy_wire_hello_encode(uint8_t *out, uint64_t max_message, uint64_t session, uint64_t rx_offset, uint32_t flags);

/* Checks a received hello. max_send: the largest message this side may send,
 * which the peer must be able to receive. Returns 0 and fills *h, or -EPROTO
 * with *why set to a static description. */
int psy_wire_hello_decode(const uint8_t *in, uint64_t max_send, struct psy_wire_hello *h, const char **why);

/* What psy_wire_scan found in a run of received bytes. */
struct psy_wire_scan {
    uint64_t complete; /* bytes of whole records from the start */
    uint64_t stream;   /* of them, bytes of data records (stream offsets) */
    uint64_t data_end; /* bytes from the start to the end of the last data record;
                           the control records after it need no consumer */
    uint64_t msgs;     /* data records that are messages (not pads) */
    uint64_t payload;  /* their payload bytes */
    uint64_t ack;      /* the highest ACK offset seen */
    bool has_ack;
    bool bye; /* a BYE was seen; nothing after it is scanned */
};

/*
 * Walks the whole records at the start of buf[0..avail). The first header is
 * *first (the receiver keeps it out of the ring until the record is whole);
 * the others are read from buf. Control records are turned into pads in
 * place (*first or buf), so a consumer of the ring steps over them.
 * max_message: the largest payload accepted. Stops at the first incomplete
 * record. Returns 0, or -EPROTO with *why set (a header no psyne sender
 * writes: type 0, a type psyne does not send, an oversized length, an ACK of
 * the wrong size); out then covers the records before the bad one.
 */
int psy_wire_scan(uint64_t *first, uint8_t *buf, uint64_t avail, uint64_t max_message, struct psy_wire_scan *out,
                  const char **why);

#endif
