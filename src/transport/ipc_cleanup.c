/* SPDX-License-Identifier: MIT */
/*
 * ipc_cleanup.c - psyne_ipc_cleanup: removes the ipc:// segments that no
 * live process holds, as the next open of their name would (ipc.c), for
 * every name at once: what programs killed with SIGKILL leave in /dev/shm.
 *
 * The rule is ipc.c's: every attachment holds a shared flock() on its
 * segment for as long as it lives, and the kernel drops it when the process
 * dies; so a segment whose exclusive flock we get has no live user, and
 * none can come while we hold it (openers take the shared lock first and
 * start over if the name went away). Segments of other users are left alone.
 * A segment kept by a producer's close for a consumer (linger_until) stays
 * until its time is up, unless asked.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/error.h"
#include "../base/uri.h"
#include "ipc_inspect.h"
#include "ipc_segment.h"
#include "transport.h"

#define SHM_DIR "/dev/shm"
#define ANCHOR_PREFIX "psyne."
#define SEGMENT_PREFIX "psyne-seg."

/* Who hears of each file removed (psyne-stat --clean prints them). */
struct report {
    void (*removed)(const char *file, void *ctx);
    void *ctx;
};

/* Removes /dev/shm/<file> (shm_name "/<file>"); tells the reporter. */
static int unlink_reported(const char *shm_name, const struct report *rep)
{
    if (shm_unlink(shm_name) != 0)
        return 0;
    if (rep->removed)
        rep->removed(shm_name + 1, rep->ctx);
    return 1;
}

/* A dynamic ring's anchor: the id its segment files carry, or 0. */
static uint64_t anchor_id(int fd, const struct psy_ipc_layout *l)
{
    struct psy_ipc_dyn_dir dir;
    if (!(l->features & PSY_IPC_F_DYNAMIC) || pread(fd, &dir, sizeof dir, (off_t)l->data_offset) != (ssize_t)sizeof dir)
        return 0;
    return dir.id;
}

/* Opens /dev/shm/<file> if it is ours, with the exclusive lock: -1 if it
 * is another user's, gone, or held by a live process. */
static int lock_unused(const char *shm_name)
{
    int fd = shm_open(shm_name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Whether a handle's slot is held: a creator that turns its exclusive
 * flock into a shared one drops the flock for a moment, never the slot. */
static bool any_slot_held(int fd)
{
    for (int i = 0; i < PSYNE_IPC_MAX_HANDLES; i++)
        if (psy_ipc_slot_owner_alive(fd, i))
            return true;
    return false;
}

/* The segment files of the anchor `name` with this id (none if id is 0). */
static int remove_segments_of(const char *name, uint64_t id, const struct report *rep)
{
    if (!id)
        return 0;
    char prefix[PSY_NAME_MAX + 48];
    snprintf(prefix, sizeof prefix, SEGMENT_PREFIX "%s.%016llx.", name, (unsigned long long)id);
    DIR *d = opendir(SHM_DIR);
    int removed = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char shm_name[NAME_MAX + 2];
        snprintf(shm_name, sizeof shm_name, "/%s", e->d_name);
        removed += unlink_reported(shm_name, rep);
    }
    if (d)
        closedir(d);
    return removed;
}

/* One anchor (a channel's segment): removed if unused, with its files. */
static int clean_anchor(const char *file, int flags, const struct report *rep)
{
    char shm_name[NAME_MAX + 2];
    snprintf(shm_name, sizeof shm_name, "/%s", file);
    int fd = lock_unused(shm_name);
    if (fd < 0)
        return 0;
    struct psy_ipc_header h;
    struct stat st;
    struct psy_ipc_layout l;
    const char *why = "";
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    ssize_t got = pread(fd, &h, sizeof h, 0);
    int rc = fstat(fd, &st) == 0 ? psy_ipc_validate(&h, got > 0 ? (size_t)got : 0, (uint64_t)st.st_size, page, &l, &why)
                                 : -EIO;
    bool remove;
    uint64_t id = 0;
    if (rc == -EAGAIN) /* never finished, and nobody is making it (we hold the lock) */
        remove = true;
    else if (rc)
        remove = (flags & PSYNE_CLEAN_INVALID) != 0;
    else if (l.features & PSY_IPC_F_SEGMENT) /* a segment file under an anchor's name: not ours to judge */
        remove = false;
    else {
        int64_t until = (int64_t)atomic_load(&h.linger_until);
        remove = !until || psy_now_ns() >= until || (flags & PSYNE_CLEAN_LINGERING);
        id = anchor_id(fd, &l);
    }
    int removed = 0;
    if (remove && !any_slot_held(fd) && psy_ipc_still_named(fd, shm_name) && unlink_reported(shm_name, rep)) {
        removed = 1;
        remove_segments_of(file + strlen(ANCHOR_PREFIX), id, rep);
    }
    close(fd); /* drops the lock */
    return removed;
}

/* Removes /dev/shm/<file> if no live process holds it (lock_unused) and
 * the name still leads to the file we locked. */
static int remove_unused(const char *file, const struct report *rep)
{
    char shm_name[NAME_MAX + 2];
    snprintf(shm_name, sizeof shm_name, "/%s", file);
    int fd = lock_unused(shm_name);
    if (fd < 0)
        return 0;
    int removed = psy_ipc_still_named(fd, shm_name) && unlink_reported(shm_name, rep);
    close(fd);
    return removed;
}

/* A dynamic ring's segment file whose anchor is gone (or is a newer ring
 * of the same name): "psyne-seg.<name>.<id>.<generation>". */
static int clean_orphan_segment(const char *file, const struct report *rep)
{
    const char *gen_dot = strrchr(file, '.');
    if (!gen_dot || gen_dot - file < (ptrdiff_t)strlen(SEGMENT_PREFIX) + 18)
        return 0;
    const char *id_dot = gen_dot - 17; /* ".%016llx" */
    if (*id_dot != '.')
        return 0;
    char name[NAME_MAX + 1];
    size_t name_len = (size_t)(id_dot - (file + strlen(SEGMENT_PREFIX)));
    if (name_len == 0 || name_len >= sizeof name)
        return 0;
    memcpy(name, file + strlen(SEGMENT_PREFIX), name_len);
    name[name_len] = 0;
    uint64_t id = strtoull(id_dot + 1, NULL, 16);

    /* An orphan only if no anchor has the name, or a finished dynamic one
     * of another id has it (a newer ring of the same name). An anchor that
     * is still being made already has its first segment file (its creator
     * makes the directory before it marks the anchor ready), and one that
     * does not validate is not ours to judge: leave the file to them. */
    char anchor[NAME_MAX + 2];
    snprintf(anchor, sizeof anchor, "/" ANCHOR_PREFIX "%s", name);
    int afd = shm_open(anchor, O_RDONLY | O_CLOEXEC, 0);
    if (afd >= 0) {
        struct psy_ipc_header h;
        struct stat st;
        struct psy_ipc_layout l;
        const char *why;
        ssize_t got = pread(afd, &h, sizeof h, 0);
        bool newer = fstat(afd, &st) == 0 &&
                     psy_ipc_validate(&h, got > 0 ? (size_t)got : 0, (uint64_t)st.st_size,
                                      (size_t)sysconf(_SC_PAGESIZE), &l, &why) == 0 &&
                     (l.features & PSY_IPC_F_DYNAMIC) && anchor_id(afd, &l) != id;
        close(afd);
        if (!newer)
            return 0;
    } else if (errno != ENOENT) {
        return 0;
    }
    return remove_unused(file, rep);
}

/* A counters segment (core/publish.h) whose process is gone: its
 * publisher holds a shared flock while it lives, and the file is named
 * by its pid, which also covers the moment while it makes the file. */
static int clean_counters(const char *file, const struct report *rep)
{
    long pid = strtol(file + strlen(PSY_PUB_PREFIX), NULL, 10);
    if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
        return 0;
    return remove_unused(file, rep);
}

int psyne_ipc_cleanup(int flags)
{
    return psy_ipc_cleanup_report(flags, NULL, NULL);
}

int psy_ipc_cleanup_report(int flags, void (*removed_file)(const char *file, void *ctx), void *ctx)
{
    struct report rep = {removed_file, ctx};
    if (flags & ~(PSYNE_CLEAN_LINGERING | PSYNE_CLEAN_INVALID))
        return psy_fail(-EINVAL, "psyne_ipc_cleanup: unknown flags 0x%x", (unsigned)flags);
    DIR *d = opendir(SHM_DIR);
    if (!d)
        return psy_fail(-errno, SHM_DIR ": cannot list the shared-memory segments");
    /* Names first: removing while reading a directory may skip entries. */
    size_t n = 0, cap = 0;
    char **names = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ANCHOR_PREFIX, strlen(ANCHOR_PREFIX)) != 0 &&
            strncmp(e->d_name, SEGMENT_PREFIX, strlen(SEGMENT_PREFIX)) != 0 &&
            strncmp(e->d_name, PSY_PUB_PREFIX, strlen(PSY_PUB_PREFIX)) != 0)
            continue;
        if (n == cap) {
            size_t bigger = cap ? cap * 2 : 64;
            char **grown = realloc(names, bigger * sizeof *names);
            if (!grown)
                break;
            names = grown;
            cap = bigger;
        }
        if ((names[n] = strdup(e->d_name)) != NULL)
            n++;
    }
    closedir(d);
    int removed = 0;
    for (size_t i = 0; i < n; i++) /* anchors first: they take their segment files along */
        if (strncmp(names[i], ANCHOR_PREFIX, strlen(ANCHOR_PREFIX)) == 0)
            removed += clean_anchor(names[i], flags, &rep);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(names[i], SEGMENT_PREFIX, strlen(SEGMENT_PREFIX)) == 0)
            removed += clean_orphan_segment(names[i], &rep);
        else if (strncmp(names[i], PSY_PUB_PREFIX, strlen(PSY_PUB_PREFIX)) == 0)
            clean_counters(names[i], &rep); /* not a channel: not in the count */
        free(names[i]);
    }
    free(names);
    return removed;
}
