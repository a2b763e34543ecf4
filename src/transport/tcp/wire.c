/* SPDX-License-Identifier: MIT */
/*
 * wire.c - the handshake and the record checks of tcp:// (wire.h).
 * Everything here reads bytes that came from the network: every length and
 * type is checked before anything is believed.
 */
#include "wire.h"

#include <errno.h>
#include <string.h>

#include "psyne.h"
#include "../../ring/ring.h"

static uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

void psy_wire_hello_encode(uint8_t *out, uint64_t max_message, uint64_t session, uint64_t rx_offset, uint32_t flags)
{
    struct psy_wire_hello h = {
        .magic = PSY_WIRE_MAGIC,
        .version = PSY_WIRE_VERSION,
        .byte_order = PSY_WIRE_BYTE_ORDER,
        .max_message = max_message,
        .session = session,
        .rx_offset = rx_offset,
        .flags = flags,
        .header_size = PSYNE_RECORD_HEADER,
    };
    memcpy(out, &h, sizeof h);
}

int psy_wire_hello_decode(const uint8_t *in, uint64_t max_send, struct psy_wire_hello *h, const char **why)
{
    memcpy(h, in, sizeof *h);
    *why = NULL;
    if (h->magic != PSY_WIRE_MAGIC)
        *why = "the peer is not a psyne tcp:// endpoint (bad magic)";
    else if (h->byte_order != PSY_WIRE_BYTE_ORDER)
        *why = "the peer stores integers in another byte order";
    else if (h->version != PSY_WIRE_VERSION)
        *why = "the peer speaks another psyne wire protocol version";
    else if (h->header_size != PSYNE_RECORD_HEADER)
        *why = "the peer uses another record header size";
    else if (h->flags & ~PSY_WIRE_F_RESUME)
        *why = "the peer asks for options this version does not know";
    else if (h->reserved[0] || h->reserved[1])
        *why = "reserved hello fields are not zero";
    else if (h->max_message > PSYNE_MAX_MESSAGE(PSYNE_MAX_CAPACITY) || h->max_message < 8)
        *why = "the peer's maximum message size is impossible";
    else if (h->max_message < max_send)
        *why = "the peer's ring is smaller than ours: it cannot receive our largest message (open both ends "
               "with the same capacity)";
    else if (h->rx_offset & 7)
        *why = "the peer's stream offset is not a record boundary";
    return *why ? -EPROTO : 0;
}

/* Whether a psyne sender can put a record of this type on the wire. */
static bool type_on_wire(uint32_t type)
{
    return type == PSY_TYPE_PAD || type == PSY_TYPE_WIRE_ACK || type == PSY_TYPE_WIRE_BYE ||
           type == PSYNE_TYPE_TENSOR || (type >= PSYNE_TYPE_USER_MIN && type <= PSYNE_TYPE_USER_MAX);
}

int psy_wire_scan(uint64_t *first, uint8_t *buf, uint64_t avail, uint64_t max_message, struct psy_wire_scan *out,
                  const char **why)
{
    memset(out, 0, sizeof *out);
    *why = NULL;
    uint64_t pos = 0;
    while (avail - pos >= PSYNE_RECORD_HEADER) {
        uint64_t w = pos == 0 ? *first : get64(buf + pos);
        uint32_t length = psy_hdr_length(w), type = psy_hdr_type(w);
        if (!type_on_wire(type)) {
            *why = "a record of a type no psyne sender writes";
            break;
        }
        if (length > max_message) {
            *why = "a record longer than the largest message";
            break;
        }
        bool control = type == PSY_TYPE_WIRE_ACK || type == PSY_TYPE_WIRE_BYE;
        if ((type == PSY_TYPE_WIRE_ACK && length != 8) || (type == PSY_TYPE_WIRE_BYE && length != 0)) {
            *why = "a control record of the wrong size";
            break;
        }
        uint64_t size = PSYNE_RECORD_SIZE(length);
        if (size > avail - pos)
            break; /* not all here yet */
        if (control) {
            if (type == PSY_TYPE_WIRE_ACK) {
                uint64_t ack = get64(buf + pos + PSYNE_RECORD_HEADER);
                if (ack & 7) {
                    *why = "an ACK offset that is not a record boundary";
                    break;
                }
                if (!out->has_ack || ack > out->ack)
                    out->ack = ack;
                out->has_ack = true;
            } else {
                out->bye = true;
            }
            /* a pad of the same size: the ring's consumers step over it */
            uint64_t pad = psy_hdr_make(length, PSY_TYPE_PAD);
            if (pos == 0)
                *first = pad;
            else
                memcpy(buf + pos, &pad, sizeof pad);
        } else {
            out->stream += size;
            out->data_end = pos + size;
            if (type != PSY_TYPE_PAD) {
                out->msgs++;
                out->payload += length;
            }
        }
        pos += size;
        out->complete = pos;
        if (out->bye)
            break;
    }
    return *why ? -EPROTO : 0;
}
