/* SPDX-License-Identifier: MIT */
/*
 * psyne-stat - see, watch and clean up the psyne channels of this machine.
 *
 * What it reads, and how it changes nothing there:
 *   ipc:// channels   /dev/shm/psyne.<name>, mapped read-only
 *                     (transport/ipc_inspect.h): no handle slot, no lock
 *   published handles /dev/shm/psyne-stats.<pid>, the counters segment of a
 *                     process that publishes (core/publish.h), read-only
 * Every value comes from memory other processes write: it is bounded and
 * cut to size before it is printed, and a segment cut short while it is read
 * (SIGBUS) is reported as such.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "psyne.h"
#include "../src/core/publish.h"
#include "../src/transport/ipc_inspect.h"

static const char usage[] = "usage: psyne-stat [--json] [--watch [SECONDS]] [NAME | URI]\n"
                            "       psyne-stat --clean [--force] [--json]\n"
                            "\n"
                            "Shows the psyne channels of this machine without taking part in them: a\n"
                            "channel's handle counts and counters stay as they are while it looks.\n"
                            "\n"
                            "  (no argument)    every ipc:// channel of this user (name, mode, fill,\n"
                            "                   traffic, handles and whether their processes live), and\n"
                            "                   the handles processes publish (PSYNE_F_PUBLISH, or\n"
                            "                   PSYNE_PUBLISH=1 in their environment): memory://, tcp://\n"
                            "  NAME | ipc://NAME  one ipc:// channel in detail: every counter, each\n"
                            "                   handle (pid, role, alive, lag), readiness descriptors,\n"
                            "                   a dynamic ring's segments\n"
                            "  memory://N, tcp://H:P  the published handles of that URI, in detail\n"
                            "  --json           machine-readable output (with --watch: one object a line)\n"
                            "  --watch [SECS]   refresh every SECS seconds (default 1), with rates:\n"
                            "                   messages/s and bytes/s per channel, and IDLE: seconds\n"
                            "                   since a message was last committed; Ctrl-C ends it\n"
                            "  --clean          remove the segments no live process holds (channels of\n"
                            "                   killed programs, their dynamic segments, dead processes'\n"
                            "                   counters), printing each; a live one is never touched\n"
                            "  --force          with --clean: also segments that fail validation, and\n"
                            "                   those a producer's close keeps for a consumer (linger)\n"
                            "  --help           this text\n"
                            "\n"
                            "Exit status: 0, 1 if NAME was not found, 2 on a usage error.\n";

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- reading without trusting: SIGBUS ---- */

static sigjmp_buf bus_jump;
static volatile sig_atomic_t bus_armed;

static void on_sigbus(int sig)
{
    (void)sig;
    if (bus_armed)
        siglongjmp(bus_jump, 1);
    signal(SIGBUS, SIG_DFL);
    raise(SIGBUS);
}

static volatile sig_atomic_t stop_watching;
static void on_stop(int sig)
{
    (void)sig;
    stop_watching = 1;
}

/* psy_ipc_inspect, with a segment cut short under us reported as invalid. */
static int inspect(const char *name, struct psy_inspect *in)
{
    if (sigsetjmp(bus_jump, 1)) {
        bus_armed = 0;
        memset(in, 0, sizeof *in);
        snprintf(in->name, sizeof in->name, "%s", name);
        in->state = PSY_INSPECT_INVALID;
        snprintf(in->why, sizeof in->why, "the segment was cut short while it was read (SIGBUS)");
        return 0;
    }
    bus_armed = 1;
    int rc = psy_ipc_inspect(name, in);
    bus_armed = 0;
    return rc;
}

/* ---- published handles ---- */

struct published {
    int pid;
    char comm[17];
    bool alive;
    unsigned interval_ms;
    uint64_t updated_ns;
    int n;
    struct psy_pub_entry e[PSY_PUB_ENTRIES];
};

/* Whether the process that made a counters segment lives: it holds a shared
 * flock while it does (the exclusive one is let go at once). */
static bool publisher_alive(int fd, int pid)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
        flock(fd, LOCK_UN);
        return false;
    }
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* A consistent copy of entry src (seqlock), false if it kept changing. */
static bool copy_entry(const struct psy_pub_entry *src, struct psy_pub_entry *dst)
{
    for (int tries = 0; tries < 1000; tries++) {
        uint64_t a = atomic_load_explicit(&src->seq, memory_order_acquire);
        if (a & 1)
            continue;
        memcpy((char *)dst + sizeof dst->seq, (const char *)src + sizeof src->seq, sizeof *dst - sizeof dst->seq);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&src->seq, memory_order_relaxed) == a) {
            dst->uri[sizeof dst->uri - 1] = 0;
            if (dst->n_peers > PSY_PUB_PEERS)
                dst->n_peers = PSY_PUB_PEERS;
            for (unsigned i = 0; i < dst->n_peers; i++)
                dst->peers[i].addr[sizeof dst->peers[i].addr - 1] = 0;
            return true;
        }
    }
    return false;
}

static int read_published(const char *file, struct published *p)
{
    char path[NAME_MAX + 16];
    snprintf(path, sizeof path, "/%s", file);
    int fd = shm_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = -EPROTO;
    void *base = MAP_FAILED;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= PSY_PUB_SIZE)
        base = mmap(NULL, PSY_PUB_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    if (base != MAP_FAILED) {
        memset(p, 0, sizeof *p);
        if (sigsetjmp(bus_jump, 1) == 0) {
            bus_armed = 1;
            const struct psy_pub_header *h = base;
            if (h->magic == PSY_PUB_MAGIC && h->version == PSY_PUB_VERSION && h->entries == PSY_PUB_ENTRIES &&
                h->entry_size == sizeof(struct psy_pub_entry)) {
                p->pid = h->pid;
                memcpy(p->comm, h->comm, sizeof h->comm);
                p->comm[16] = 0;
                p->interval_ms = h->interval_ms;
                p->updated_ns = atomic_load_explicit(&h->updated_ns, memory_order_relaxed);
                const struct psy_pub_entry *e = (const struct psy_pub_entry *)(h + 1);
                for (int i = 0; i < PSY_PUB_ENTRIES; i++)
                    if (copy_entry(&e[i], &p->e[p->n]) && p->e[p->n].in_use)
                        p->n++;
                rc = 0;
            }
        }
        bus_armed = 0;
        munmap(base, PSY_PUB_SIZE);
    }
    if (rc == 0)
        p->alive = publisher_alive(fd, p->pid);
    close(fd);
    return rc;
}

/* Every counters segment of this user, alive or not. */
static int all_published(struct published **out)
{
    *out = NULL;
    DIR *d = opendir("/dev/shm");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, PSY_PUB_PREFIX, strlen(PSY_PUB_PREFIX)) != 0)
            continue;
        struct published *grown = realloc(*out, (size_t)(n + 1) * sizeof **out);
        if (!grown)
            break;
        *out = grown;
        if (read_published(de->d_name, &(*out)[n]) == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* ---- words for numbers ---- */

static const char *mode_name(int mode)
{
    static const char *names[] = {"spsc", "spmc", "mpsc", "mpmc", "broadcast"};
    return mode >= 0 && mode <= 4 ? names[mode] : "?";
}

static const char *role_name(int role)
{
    return role == PSYNE_ROLE_PRODUCER ? "producer" : role == PSYNE_ROLE_CONSUMER ? "consumer" : "any";
}

static const char *slot_roles(unsigned roles)
{
    return roles == (PSY_SLOT_PRODUCER | PSY_SLOT_CONSUMER) ? "any"
           : roles == PSY_SLOT_PRODUCER                     ? "producer"
           : roles == PSY_SLOT_CONSUMER                     ? "consumer"
                                                            : "none";
}

static const char *state_name(const struct psy_inspect *in)
{
    if (in->state == PSY_INSPECT_MAKING)
        return "making";
    if (in->state == PSY_INSPECT_INVALID)
        return "invalid";
    if (in->linger_left_ns)
        return "lingering";
    return psy_inspect_dead(in) ? "dead" : "live";
}

static void human_bytes(char *buf, size_t n, double v)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void human_count(char *buf, size_t n, double v)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
}

/* A string as JSON: quotes, escapes, control characters. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20 || *c >= 0x7f)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

/* Every field of psyne_stats, by the name the header gives it. */
struct stats_field {
    const char *name;
    size_t offset;
    bool is_int; /* int, else uint64_t */
};
#define U64(field)                                                                                                     \
    {                                                                                                                  \
#field, offsetof(struct psyne_stats, field), false                                                             \
    }
#define INT(field)                                                                                                     \
    {                                                                                                                  \
#field, offsetof(struct psyne_stats, field), true                                                              \
    }
static const struct stats_field stats_fields[] = {
    U64(capacity),
    U64(in_use),
    U64(high_water),
    U64(msgs_out),
    U64(bytes_out),
    U64(msgs_in),
    U64(bytes_in),
    U64(full_events),
    U64(empty_events),
    U64(waits),
    U64(wakeups),
    U64(peers_lost),
    U64(claims_recovered),
    U64(views_recovered),
    U64(tcp_reconnects),
    U64(tcp_protocol_errors),
    U64(tcp_send_calls),
    U64(tcp_recv_calls),
    U64(page_size),
    U64(resizes_up),
    U64(resizes_down),
    U64(resize_ns),
    U64(failed_claims),
    U64(window_high_water),
    U64(tcp_peers),
    INT(mode),
    INT(subscribers),
    INT(producers),
    INT(consumers),
    INT(tcp_connected),
    INT(pages),
    INT(numa_node),
    INT(locked),
    INT(segments),
};
#undef U64
#undef INT

static void json_stats(FILE *f, const struct psyne_stats *st)
{
    fputc('{', f);
    for (size_t i = 0; i < sizeof stats_fields / sizeof stats_fields[0]; i++) {
        const struct stats_field *k = &stats_fields[i];
        const char *at = (const char *)st + k->offset;
        if (k->is_int)
            fprintf(f, "%s\"%s\": %d", i ? ", " : "", k->name, *(const int *)at);
        else
            fprintf(f, "%s\"%s\": %llu", i ? ", " : "", k->name, (unsigned long long)*(const uint64_t *)at);
    }
    fputc('}', f);
}

/* ---- rates (--watch) ---- */

struct rate {
    char key[PSY_PUB_URI + 32];
    uint64_t msgs, bytes; /* out, at the last refresh */
    double msgs_s, bytes_s;
    struct timespec changed; /* when msgs last moved (or when first seen) */
    double idle_s;           /* since then: no message committed for this long */
    bool seen;
};

static struct rate *rates;
static int n_rates;
static double refresh_s; /* since the last refresh, 0: no rates yet */

static struct rate *rate_of(const char *key, uint64_t msgs, uint64_t bytes)
{
    struct rate *r = NULL;
    for (int i = 0; i < n_rates && !r; i++)
        if (strcmp(rates[i].key, key) == 0)
            r = &rates[i];
    if (!r) {
        struct rate *grown = realloc(rates, (size_t)(n_rates + 1) * sizeof *rates);
        if (!grown)
            return NULL;
        rates = grown;
        r = &rates[n_rates++];
        memset(r, 0, sizeof *r);
        snprintf(r->key, sizeof r->key, "%s", key);
        r->msgs = msgs;
        r->bytes = bytes;
        clock_gettime(CLOCK_MONOTONIC, &r->changed);
    }
    r->seen = true;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (msgs != r->msgs)
        r->changed = now;
    r->idle_s = (double)(now.tv_sec - r->changed.tv_sec) + (double)(now.tv_nsec - r->changed.tv_nsec) / 1e9;
    if (refresh_s > 0 && msgs >= r->msgs && bytes >= r->bytes) {
        r->msgs_s = (double)(msgs - r->msgs) / refresh_s;
        r->bytes_s = (double)(bytes - r->bytes) / refresh_s;
    }
    r->msgs = msgs;
    r->bytes = bytes;
    return r;
}

/* ---- output ---- */

struct view {
    bool json, watch, detail;
    const char *only; /* NAME or URI */
};

static void json_channel(FILE *f, const struct psy_inspect *in, const struct rate *r)
{
    fprintf(f, "{\"name\": ");
    json_str(f, in->name);
    fprintf(f, ", \"uri\": ");
    char uri[PSY_NAME_MAX + 8];
    snprintf(uri, sizeof uri, "ipc://%s", in->name);
    json_str(f, uri);
    fprintf(f, ", \"state\": \"%s\", \"dead\": %s", state_name(in), psy_inspect_dead(in) ? "true" : "false");
    if (in->state == PSY_INSPECT_INVALID) {
        fprintf(f, ", \"why\": ");
        json_str(f, in->why);
    }
    fprintf(f, ", \"uid\": %u, \"perm\": \"0%o\", \"file_bytes\": %llu", (unsigned)in->uid, in->perm,
            (unsigned long long)in->file_size);
    fprintf(f, ", \"live_handles\": %d, \"dead_handles\": %d", in->live_handles, in->dead_handles);
    if (in->state == PSY_INSPECT_OK) {
        fprintf(f, ", \"mode_name\": \"%s\", \"dynamic\": %s, \"creator_pid\": %d, \"closed\": %s",
                mode_name(in->stats.mode), in->dynamic ? "true" : "false", in->creator_pid,
                in->closed ? "true" : "false");
        fprintf(f, ", \"consumers_left\": %s, \"linger_left_ns\": %lld", in->consumers_left ? "true" : "false",
                (long long)in->linger_left_ns);
        fprintf(f, ", \"stats\": ");
        json_stats(f, &in->stats);
        fprintf(f, ", \"handles\": [");
        for (int i = 0; i < in->n_handles; i++) {
            const struct psy_inspect_handle *h = &in->handles[i];
            fprintf(f,
                    "%s{\"slot\": %d, \"pid\": %d, \"role\": \"%s\", \"alive\": %s, \"state\": %d, "
                    "\"subscriber\": %d, \"msgs_out\": %llu, \"bytes_out\": %llu",
                    i ? ", " : "", h->slot, h->pid, slot_roles(h->roles), h->alive ? "true" : "false", h->state,
                    h->subscriber, (unsigned long long)h->msgs_out, (unsigned long long)h->bytes_out);
            if (h->roles & PSY_SLOT_CONSUMER)
                fprintf(f, ", \"lag_msgs\": %llu, \"lag_bytes\": %llu", (unsigned long long)h->lag_msgs,
                        (unsigned long long)h->lag_bytes);
            fputc('}', f);
        }
        fprintf(f, "], \"descriptors\": [");
        for (int i = 0; i < in->n_notify; i++)
            fprintf(f, "%s{\"side\": \"%s\", \"armed\": %s, \"pid\": %d}", i ? ", " : "",
                    in->notify[i].side == PSY_WAIT_DATA ? "recv" : "send", in->notify[i].armed ? "true" : "false",
                    in->notify[i].pid);
        fprintf(f, "], \"segments\": [");
        for (int i = 0; i < in->n_segments; i++)
            fprintf(f, "%s{\"generation\": %llu, \"capacity\": %llu, \"in_use\": %llu}", i ? ", " : "",
                    (unsigned long long)in->segments[i].generation, (unsigned long long)in->segments[i].capacity,
                    (unsigned long long)in->segments[i].in_use);
        fputc(']', f);
    }
    if (r)
        fprintf(f, ", \"msgs_per_s\": %.1f, \"bytes_per_s\": %.1f, \"idle_s\": %.1f", r->msgs_s, r->bytes_s, r->idle_s);
    fputc('}', f);
}

static void json_entry(FILE *f, const struct psy_pub_entry *e, const struct rate *r)
{
    fprintf(f, "{\"uri\": ");
    json_str(f, e->uri);
    fprintf(f, ", \"handle\": %llu, \"role\": \"%s\", \"opened_ns\": %llu, \"sampled_ns\": %llu, \"stats\": ",
            (unsigned long long)e->handle, role_name(e->role), (unsigned long long)e->opened_ns,
            (unsigned long long)e->sampled_ns);
    json_stats(f, &e->stats);
    fprintf(f, ", \"peers\": [");
    for (unsigned i = 0; i < e->n_peers; i++) {
        const struct psy_peer_info *p = &e->peers[i];
        fprintf(f, "%s{\"peer\": %u, \"connected\": %s, \"addr\": ", i ? ", " : "", p->peer,
                p->connected ? "true" : "false");
        json_str(f, p->addr);
        fprintf(f,
                ", \"msgs_in\": %llu, \"bytes_in\": %llu, \"msgs_out\": %llu, \"bytes_out\": %llu, "
                "\"reconnects\": %llu, \"protocol_errors\": %llu}",
                (unsigned long long)p->msgs_in, (unsigned long long)p->bytes_in, (unsigned long long)p->msgs_out,
                (unsigned long long)p->bytes_out, (unsigned long long)p->reconnects,
                (unsigned long long)p->protocol_errors);
    }
    fputc(']', f);
    if (r)
        fprintf(f, ", \"msgs_per_s\": %.1f, \"bytes_per_s\": %.1f, \"idle_s\": %.1f", r->msgs_s, r->bytes_s, r->idle_s);
    fputc('}', f);
}

static void json_process(FILE *f, const struct published *p, const struct view *v, bool *first)
{
    fprintf(f, "%s{\"pid\": %d, \"process\": ", *first ? "" : ", ", p->pid);
    *first = false;
    json_str(f, p->comm);
    fprintf(f, ", \"alive\": %s, \"interval_ms\": %u, \"updated_ns\": %llu, \"handles\": [",
            p->alive ? "true" : "false", p->interval_ms, (unsigned long long)p->updated_ns);
    bool first_e = true;
    for (int i = 0; i < p->n; i++) {
        if (v->only && strcmp(v->only, p->e[i].uri) != 0)
            continue;
        char key[PSY_PUB_URI + 32];
        snprintf(key, sizeof key, "%d/%llu", p->pid, (unsigned long long)p->e[i].handle);
        fprintf(f, "%s", first_e ? "" : ", ");
        first_e = false;
        json_entry(f, &p->e[i], v->watch ? rate_of(key, p->e[i].stats.msgs_out, p->e[i].stats.bytes_out) : NULL);
    }
    fprintf(f, "]}");
}

/* --watch: a row's rate and idle columns; the row's end. */
static void rate_cells(const struct view *v, const struct rate *r)
{
    if (v->watch && r) {
        char ms[16], bs[32];
        human_count(ms, sizeof ms, r->msgs_s);
        human_bytes(bs, sizeof bs, r->bytes_s);
        printf(" %9s %10s/s %6.0f", ms, bs, r->idle_s);
    }
    putchar('\n');
}

static void text_channel_row(const struct psy_inspect *in, const struct view *v, const struct rate *r)
{
    char cap[32] = "-", fill[16] = "-", out[16] = "-", inn[16] = "-", bytes[32] = "-", handles[32];
    if (in->state == PSY_INSPECT_OK) {
        human_bytes(cap, sizeof cap, (double)in->stats.capacity);
        uint64_t ring_bytes = in->dynamic ? 0 : in->stats.capacity;
        for (int i = 0; i < in->n_segments; i++)
            ring_bytes += in->segments[i].capacity;
        snprintf(fill, sizeof fill, "%.1f%%", ring_bytes ? 100.0 * (double)in->stats.in_use / (double)ring_bytes : 0.0);
        human_count(out, sizeof out, (double)in->stats.msgs_out);
        human_count(inn, sizeof inn, (double)in->stats.msgs_in);
        human_bytes(bytes, sizeof bytes, (double)in->stats.bytes_out);
    }
    int producers = 0, consumers = 0;
    for (int i = 0; i < in->n_handles; i++) {
        producers += (in->handles[i].roles & PSY_SLOT_PRODUCER) && in->handles[i].alive;
        consumers += (in->handles[i].roles & PSY_SLOT_CONSUMER) && in->handles[i].alive;
    }
    if (in->dead_handles)
        snprintf(handles, sizeof handles, "%dP %dC +%d dead", producers, consumers, in->dead_handles);
    else
        snprintf(handles, sizeof handles, "%dP %dC", producers, consumers);
    printf("%-20.20s %-9s %9s %6s %9s %9s %10s %-16s %-9s", in->name,
           in->state == PSY_INSPECT_OK ? mode_name(in->stats.mode) : "-", cap, fill, out, inn, bytes, handles,
           state_name(in));
    rate_cells(v, r);
}

static void text_channel_detail(const struct psy_inspect *in)
{
    const struct psyne_stats *st = &in->stats;
    char b1[32], b2[32], b3[32];
    printf("ipc://%s  (/dev/shm/psyne.%s, %s, uid %u, mode 0%o)\n", in->name, in->name, state_name(in),
           (unsigned)in->uid, in->perm);
    if (in->state == PSY_INSPECT_INVALID) {
        printf("  fails validation: %s\n", in->why);
        return;
    }
    if (in->state == PSY_INSPECT_MAKING) {
        printf("  its creator has not finished it (%s)\n",
               in->live_handles ? "being made" : "nobody holds it: a creator died");
        return;
    }
    human_bytes(b1, sizeof b1, (double)st->capacity);
    human_bytes(b2, sizeof b2, (double)in->file_size);
    printf("  mode %s, capacity %s%s, %s of shared memory, made by pid %d\n", mode_name(st->mode), b1,
           in->dynamic ? " (newest segment)" : "", b2, in->creator_pid);
    if (in->closed)
        printf("  shut down%s\n", in->consumers_left ? " (its consumers ended the stream)" : "");
    if (in->linger_left_ns == INT64_MAX)
        printf("  kept for a consumer until one opens it (linger)\n");
    else if (in->linger_left_ns)
        printf("  kept for a consumer for %.1f s more (linger)\n", (double)in->linger_left_ns / 1e9);
    human_bytes(b1, sizeof b1, (double)st->in_use);
    human_bytes(b2, sizeof b2, (double)st->high_water);
    printf("  in use %s, high-water %s\n", b1, b2);
    human_bytes(b1, sizeof b1, (double)st->bytes_out);
    human_bytes(b3, sizeof b3, (double)st->bytes_in);
    printf("  out %llu messages (%s), in %llu messages (%s)\n", (unsigned long long)st->msgs_out, b1,
           (unsigned long long)st->msgs_in, b3);
    printf("  full %llu, empty %llu, waits %llu, wake-ups %llu\n", (unsigned long long)st->full_events,
           (unsigned long long)st->empty_events, (unsigned long long)st->waits, (unsigned long long)st->wakeups);
    printf("  producers %d, consumers %d, subscribers %d\n", st->producers, st->consumers, st->subscribers);
    printf("  recovered: %llu dead handles, %llu claims, %llu views\n", (unsigned long long)st->peers_lost,
           (unsigned long long)st->claims_recovered, (unsigned long long)st->views_recovered);
    if (in->dynamic) {
        printf("  dynamic: %d segments, %llu resizes up, %llu down, %llu failed claims\n", in->n_segments,
               (unsigned long long)st->resizes_up, (unsigned long long)st->resizes_down,
               (unsigned long long)st->failed_claims);
        for (int i = 0; i < in->n_segments; i++) {
            human_bytes(b1, sizeof b1, (double)in->segments[i].capacity);
            human_bytes(b2, sizeof b2, (double)in->segments[i].in_use);
            printf("    segment %llu: %s, %s in use\n", (unsigned long long)in->segments[i].generation, b1, b2);
        }
    }
    printf("  handles:\n    SLOT    PID ROLE      ALIVE   SUB  MSGS OUT   LAG MSGS  LAG BYTES\n");
    for (int i = 0; i < in->n_handles; i++) {
        const struct psy_inspect_handle *h = &in->handles[i];
        printf("    %4d %6d %-9s %-5s %5d %9llu", h->slot, h->pid, slot_roles(h->roles), h->alive ? "yes" : "DEAD",
               h->subscriber, (unsigned long long)h->msgs_out);
        if (h->roles & PSY_SLOT_CONSUMER)
            printf(" %10llu %10llu", (unsigned long long)h->lag_msgs, (unsigned long long)h->lag_bytes);
        putchar('\n');
    }
    if (in->n_notify) {
        printf("  readiness descriptors:\n");
        for (int i = 0; i < in->n_notify; i++)
            printf("    %s, pid %d%s\n", in->notify[i].side == PSY_WAIT_DATA ? "recv" : "send", in->notify[i].pid,
                   in->notify[i].armed ? ", armed (its owner waits)" : "");
    }
}

static void text_entry_row(const struct published *p, const struct psy_pub_entry *e, const struct view *v,
                           const struct rate *r)
{
    char fill[16] = "-", out[16], inn[16], peers[16] = "-";
    if (e->stats.capacity)
        snprintf(fill, sizeof fill, "%.1f%%", 100.0 * (double)e->stats.in_use / (double)e->stats.capacity);
    human_count(out, sizeof out, (double)e->stats.msgs_out);
    human_count(inn, sizeof inn, (double)e->stats.msgs_in);
    if (e->n_peers)
        snprintf(peers, sizeof peers, "%u", e->n_peers);
    printf("%7d %-12.12s %-28.28s %-8s %6s %9s %9s %5s%s", p->pid, p->comm, e->uri, role_name(e->role), fill, out, inn,
           peers, p->alive ? "" : " (process gone)");
    rate_cells(v, r);
}

static void text_entry_detail(const struct published *p, const struct psy_pub_entry *e)
{
    const struct psyne_stats *st = &e->stats;
    char b1[32], b2[32];
    printf("%s  (handle %llu of pid %d %s, %s%s)\n", e->uri, (unsigned long long)e->handle, p->pid, p->comm,
           role_name(e->role), p->alive ? "" : ", process gone");
    human_bytes(b1, sizeof b1, (double)st->capacity);
    human_bytes(b2, sizeof b2, (double)st->in_use);
    printf("  mode %s, capacity %s, in use %s\n", mode_name(st->mode), b1, b2);
    human_bytes(b1, sizeof b1, (double)st->bytes_out);
    human_bytes(b2, sizeof b2, (double)st->bytes_in);
    printf("  out %llu messages (%s), in %llu messages (%s)\n", (unsigned long long)st->msgs_out, b1,
           (unsigned long long)st->msgs_in, b2);
    printf("  full %llu, empty %llu, waits %llu, wake-ups %llu\n", (unsigned long long)st->full_events,
           (unsigned long long)st->empty_events, (unsigned long long)st->waits, (unsigned long long)st->wakeups);
    if (e->n_peers || st->tcp_send_calls || st->tcp_recv_calls) {
        printf("  tcp: %llu send calls, %llu recv calls, %llu reconnects, %llu protocol errors\n",
               (unsigned long long)st->tcp_send_calls, (unsigned long long)st->tcp_recv_calls,
               (unsigned long long)st->tcp_reconnects, (unsigned long long)st->tcp_protocol_errors);
        for (unsigned i = 0; i < e->n_peers; i++) {
            const struct psy_peer_info *q = &e->peers[i];
            printf("    peer %u %s %s: in %llu msgs, out %llu msgs, %llu reconnects\n", q->peer,
                   q->addr[0] ? q->addr : "?", q->connected ? "connected" : "down", (unsigned long long)q->msgs_in,
                   (unsigned long long)q->msgs_out, (unsigned long long)q->reconnects);
        }
    }
    printf("  sampled %.1f s ago (every %u ms)\n", (double)(int64_t)(realtime_ns() - e->sampled_ns) / 1e9,
           p->interval_ms);
}

/* One picture of everything; returns how many things matched v->only. */
static int show(const struct view *v)
{
    char **names = NULL;
    int n = psy_ipc_names(&names);
    if (n < 0)
        n = 0;
    struct published *pubs = NULL;
    int n_pubs = all_published(&pubs);
    int matched = 0;
    const char *only_ipc = v->only;
    if (only_ipc && strncmp(only_ipc, "ipc://", 6) == 0)
        only_ipc += 6;
    else if (only_ipc && strstr(only_ipc, "://"))
        only_ipc = NULL; /* a published URI */
    struct psy_inspect *in = malloc(sizeof *in);
    if (!in) {
        psy_ipc_names_free(names);
        free(pubs);
        return 0;
    }
    for (int i = 0; i < n_rates; i++)
        rates[i].seen = false;

    if (v->json) {
        printf("{\"psyne\": \"%d.%d.%d\", \"time_ns\": %llu, \"channels\": [", PSYNE_VERSION_MAJOR, PSYNE_VERSION_MINOR,
               PSYNE_VERSION_PATCH, (unsigned long long)realtime_ns());
    } else if (v->watch) {
        time_t now = time(NULL);
        char when[32];
        strftime(when, sizeof when, "%H:%M:%S", localtime(&now));
        printf("\033[H\033[2Jpsyne-stat %s  every %.1f s  (Ctrl-C to stop)\n\n", when, refresh_s > 0 ? refresh_s : 0);
    }
    bool header = false, first = true;
    for (int i = 0; i < n; i++) {
        if (v->only && (!only_ipc || strcmp(only_ipc, names[i]) != 0))
            continue;
        if (inspect(names[i], in) != 0)
            continue; /* gone meanwhile */
        matched++;
        struct rate *r = v->watch ? rate_of(names[i], in->stats.msgs_out, in->stats.bytes_out) : NULL;
        if (v->json) {
            printf("%s", first ? "" : ", ");
            first = false;
            json_channel(stdout, in, r);
        } else if (v->detail) {
            text_channel_detail(in);
        } else {
            if (!header)
                printf("%-20s %-9s %9s %6s %9s %9s %10s %-16s %-9s%s\n", "IPC CHANNEL", "MODE", "CAPACITY", "FILL",
                       "MSGS OUT", "MSGS IN", "BYTES OUT", "HANDLES", "STATE",
                       v->watch ? "     MSG/S      BYTES/S IDLE S" : "");
            header = true;
            text_channel_row(in, v, r);
        }
    }
    if (!v->json && !v->detail && !header && !v->only)
        printf("no ipc:// channels\n");
    if (v->json)
        printf("], \"processes\": [");
    header = false;
    first = true;
    for (int i = 0; i < n_pubs; i++) {
        struct published *p = &pubs[i];
        int shown = 0;
        for (int j = 0; j < p->n; j++)
            shown += !v->only || strcmp(v->only, p->e[j].uri) == 0;
        if (v->only && !shown)
            continue;
        matched += v->only ? shown : 0;
        if (v->json) {
            json_process(stdout, p, v, &first);
            continue;
        }
        for (int j = 0; j < p->n; j++) {
            const struct psy_pub_entry *e = &p->e[j];
            if (v->only && strcmp(v->only, e->uri) != 0)
                continue;
            char key[PSY_PUB_URI + 32];
            snprintf(key, sizeof key, "%d/%llu", p->pid, (unsigned long long)e->handle);
            struct rate *r = v->watch ? rate_of(key, e->stats.msgs_out, e->stats.bytes_out) : NULL;
            if (v->detail) {
                text_entry_detail(p, e);
                continue;
            }
            if (!header)
                printf("\n%7s %-12s %-28s %-8s %6s %9s %9s %5s%s\n", "PID", "PROCESS", "PUBLISHED HANDLE", "ROLE",
                       "FILL", "MSGS OUT", "MSGS IN", "PEERS", v->watch ? "     MSG/S      BYTES/S IDLE S" : "");
            header = true;
            text_entry_row(p, e, v, r);
        }
    }
    if (v->json)
        printf("]}\n");
    fflush(stdout);
    free(in);
    free(pubs);
    psy_ipc_names_free(names);
    return matched;
}

/* ---- --clean ---- */

struct removed_list {
    bool json;
    int n;
};

static void print_removed(const char *file, void *ctx)
{
    struct removed_list *l = ctx;
    if (l->json) {
        printf("%s", l->n ? ", " : "");
        char path[NAME_MAX + 16];
        snprintf(path, sizeof path, "/dev/shm/%s", file);
        json_str(stdout, path);
    } else {
        printf("removed /dev/shm/%s\n", file);
    }
    l->n++;
}

static int clean(bool force, bool json)
{
    struct removed_list l = {json, 0};
    if (json)
        printf("{\"removed\": [");
    int rc = psy_ipc_cleanup_report(force ? PSYNE_CLEAN_INVALID | PSYNE_CLEAN_LINGERING : 0, print_removed, &l);
    if (json)
        printf("]}\n");
    else if (rc >= 0)
        printf("%d file%s removed\n", l.n, l.n == 1 ? "" : "s");
    if (rc < 0) {
        fprintf(stderr, "psyne-stat: --clean: %s (%s)\n", psyne_strerror(rc), psyne_last_error());
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"json", no_argument, NULL, 'j'},  {"watch", optional_argument, NULL, 'w'}, {"clean", no_argument, NULL, 'c'},
        {"force", no_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    struct view v = {0};
    bool do_clean = false, force = false;
    double every = 1.0;
    int c;
    while ((c = getopt_long(argc, argv, "jw::cfh", longs, NULL)) != -1) {
        switch (c) {
        case 'j': v.json = true; break;
        case 'w':
            v.watch = true;
            /* --watch 2 as well as --watch=2 */
            if (!optarg && optind < argc && strspn(argv[optind], "0123456789.") == strlen(argv[optind]))
                optarg = argv[optind++];
            if (optarg && (every = strtod(optarg, NULL)) < 0.05) {
                fprintf(stderr, "psyne-stat: --watch takes seconds >= 0.05\n");
                return 2;
            }
            break;
        case 'c': do_clean = true; break;
        case 'f': force = true; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc)
        v.only = argv[optind++];
    if (optind < argc || (force && !do_clean) || (do_clean && (v.watch || v.only))) {
        fputs(usage, stderr);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_sigbus};
    sigaction(SIGBUS, &sa, NULL);
    if (do_clean)
        return clean(force, v.json);
    v.detail = v.only != NULL;
    if (!v.watch)
        return show(&v) || !v.only ? 0 : (fprintf(stderr, "psyne-stat: %s: no such channel\n", v.only), 1);

    struct sigaction stop = {.sa_handler = on_stop};
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGTERM, &stop, NULL);
    struct timespec last;
    clock_gettime(CLOCK_MONOTONIC, &last);
    while (!stop_watching) {
        show(&v);
        struct timespec pause = {(time_t)every, (long)((every - (double)(time_t)every) * 1e9)};
        while (nanosleep(&pause, &pause) != 0 && !stop_watching) {
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        refresh_s = (double)(now.tv_sec - last.tv_sec) + (double)(now.tv_nsec - last.tv_nsec) / 1e9;
        last = now;
    }
    free(rates);
    return 0;
}
