/* SPDX-License-Identifier: MIT */
/*
 * ipc_segment.c - layout of an ipc:// segment and the validation of one
 * found in shared memory (see ipc_segment.h). Every check compares against
 * values this build computes itself, so a header that passes describes
 * exactly the layout this build would have made.
 */
#include "ipc_segment.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../mem/mirror.h"

static uint64_t round_up(uint64_t v, uint64_t to)
{
    return (v + to - 1) / to * to;
}

void psy_ipc_layout_for(uint64_t capacity, int mode, size_t page, struct psy_ipc_layout *out)
{
    out->capacity = capacity;
    out->mode = mode;
    out->ring_offset = sizeof(struct psy_ipc_header);
    out->data_offset = round_up(out->ring_offset + sizeof(struct psy_ring_shared), page);
    out->file_size = out->data_offset + capacity;
}

void psy_ipc_format(void *base, const struct psy_ipc_layout *l, uint64_t features, size_t page)
{
    psy_ring_format((struct psy_ring_shared *)((uint8_t *)base + l->ring_offset), l->mode, l->capacity,
                    l->data_offset - l->ring_offset);
    struct psy_ipc_header *h = base;
    h->magic = PSY_IPC_MAGIC;
    h->header_size = sizeof *h;
    h->features = features;
    h->capacity = l->capacity;
    h->mode = (uint32_t)l->mode;
    h->max_handles = PSYNE_IPC_MAX_HANDLES;
    h->ring_offset = l->ring_offset;
    h->data_offset = l->data_offset;
    h->file_size = l->file_size;
    h->creator_pid = (int32_t)getpid();
    h->page_size = (uint32_t)page;
}

static int bad(const char **why, const char *reason)
{
    *why = reason;
    return -EPROTO;
}

int psy_ipc_validate(const void *bytes, size_t len, uint64_t file_size, size_t page, struct psy_ipc_layout *out,
                     const char **why)
{
    struct psy_ipc_header h;
    *why = "";
    /* magic and version first: what a short file holds tells a segment
     * still being made (zeros) from something else (anything else) */
    uint64_t magic = 0;
    uint32_t version = 0;
    if (len >= sizeof magic)
        memcpy(&magic, bytes, sizeof magic);
    if (len >= offsetof(struct psy_ipc_header, version) + sizeof version)
        memcpy(&version, (const uint8_t *)bytes + offsetof(struct psy_ipc_header, version), sizeof version);
    if (magic != 0 && magic != PSY_IPC_MAGIC)
        return bad(why, "not a psyne segment (wrong magic)");
    if (version == 0)
        return -EAGAIN; /* still being created (or its creator died doing it) */
    if (magic == 0)
        return bad(why, "not a psyne segment (no magic)");
    if (version != PSY_IPC_VERSION)
        return bad(why, "segment of another psyne layout version");
    if (len < sizeof h)
        return bad(why, "segment is shorter than its header");
    memcpy(&h, bytes, sizeof h); /* one copy: no field changes between check and use */
    if (h.header_size != sizeof h)
        return bad(why, "segment header of another size");
    if (h.features & ~PSY_IPC_FEATURES)
        return bad(why, "segment needs features this build does not have");
    if (h.page_size != page)
        return bad(why, "segment made with another page size");
    if (h.mode > PSYNE_MODE_BROADCAST)
        return bad(why, "segment has an unknown mode");
    if (h.capacity < page || h.capacity > PSYNE_MAX_CAPACITY || (h.capacity & (h.capacity - 1)))
        return bad(why, "segment capacity is not a power of two within limits");
    if (h.max_handles != PSYNE_IPC_MAX_HANDLES)
        return bad(why, "segment has another number of handle slots");
    struct psy_ipc_layout l;
    psy_ipc_layout_for(h.capacity, (int)h.mode, page, &l);
    if (h.ring_offset != l.ring_offset || h.data_offset != l.data_offset || h.file_size != l.file_size)
        return bad(why, "segment layout offsets are inconsistent");
    if (file_size != l.file_size)
        return bad(why, "segment file size does not match its header");
    l.features = h.features;
    if ((h.features & PSY_IPC_F_DYNAMIC) && (h.features & PSY_IPC_F_SEGMENT))
        return bad(why, "segment says it is both an anchor and a segment");
    if ((h.features & PSY_IPC_F_DYNAMIC) && (h.mode != PSYNE_MODE_SPSC || h.capacity != page))
        return bad(why, "a dynamic ring's anchor is one page, SPSC");
    *out = l;
    return 0;
}

int psy_ipc_check_segment(const struct psy_ipc_header *h, uint64_t id, uint64_t gen, const char **why)
{
    if (!(h->features & PSY_IPC_F_SEGMENT))
        return bad(why, "not a segment of a dynamic ring");
    if (h->dyn_id != id || h->seg_gen != gen)
        return bad(why, "a segment of another dynamic ring or generation");
    if (h->mode != PSYNE_MODE_SPSC)
        return bad(why, "a dynamic ring's segment is SPSC");
    if (h->seg_start & 7)
        return bad(why, "a segment's first position is not 8-byte aligned");
    return 0;
}

int psy_ipc_validate_ring(const struct psy_ring_shared *sh, const struct psy_ipc_layout *l, const char **why)
{
    struct psy_ident id;
    memcpy(&id, &sh->ident, sizeof id);
    if (id.magic != PSY_RING_MAGIC)
        return bad(why, "ring identity block is damaged");
    if (id.version != PSY_RING_VERSION)
        return bad(why, "ring of another psyne version");
    if (id.mode != (uint32_t)l->mode || id.capacity != l->capacity || id.data_offset != l->data_offset - l->ring_offset)
        return bad(why, "ring identity disagrees with the segment header");
    return 0;
}

void psy_ipc_view(struct psy_ring *r, const struct psy_mirror *m, const struct psy_ipc_layout *l,
                  const struct psyne_options *opt, int64_t peer_timeout_ns, void (*check_peers)(struct psy_ring *r))
{
    psy_ring_view(r, (struct psy_ring_shared *)((uint8_t *)m->base + l->ring_offset),
                  (uint8_t *)m->base + l->data_offset, l->capacity, l->mode, opt);
    r->map_base = m->base;
    r->map_len = m->map_len;
    r->place = m->got;
    r->ipc = true;
    r->global_barrier = true;
    r->lane.wake_fence = psy_wake_needs_fence_global;
    r->peer_timeout_ns = peer_timeout_ns;
    r->check_peers = check_peers;
}

bool psy_ipc_still_named(int fd, const char *shm_name)
{
    struct stat mine, named;
    int other = shm_open(shm_name, O_RDONLY | O_CLOEXEC, 0);
    if (other < 0)
        return false;
    bool same = fstat(fd, &mine) == 0 && fstat(other, &named) == 0 && mine.st_dev == named.st_dev &&
                mine.st_ino == named.st_ino;
    close(other);
    return same;
}

bool psy_ipc_slot_owner_alive(int fd, int i)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = i, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return true;
    return fl.l_type != F_UNLCK;
}
