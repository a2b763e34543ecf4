/* SPDX-License-Identifier: MIT */
/*
 * tcp_workloads.c - tcp-tput and tcp-pingpong (WORKLOADS.md) on psyne's
 * tcp:// channels over 127.0.0.1, and the reference they are compared with
 * in the same run: a raw TCP socket pair doing the same job as directly as a
 * program can (the sender writes back-to-back [length | payload] records
 * into one buffer and send()s it in pieces of up to 256 KiB; the receiver
 * recv()s into a buffer and walks the records; ping-pong is one send() and
 * blocking recv()s per message). Every payload byte is written and read,
 * every sequence number checked, on both sides. Each run starts with
 * bench_unpin(): its threads inherit the caller's CPUs, and a pin an earlier
 * workload left on the caller would put all of them on one CPU.
 */
#define _GNU_SOURCE
#include "tcp_workloads.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "psyne.h"

#define T_BENCH PSYNE_TYPE_USER_MIN
#define RAW_CHUNK (256 * 1024)

static void must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "psyne_bench: %s failed (%s)\n", what, psyne_last_error());
        abort();
    }
}

int bench_free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    must(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0,
         "a free port");
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- psyne ---- */

void bench_tcp_options(struct psyne_options *o, int listen)
{
    psyne_options_init(o);
    o->capacity = 4u << 20; /* 1 MiB messages: 3 in flight; a larger ring measured no faster (cache footprint) */
    o->numa_node = bench_numa_node;
    o->wait = bench_tcp_wait;
    o->flags = (listen ? PSYNE_F_LISTEN : 0) | bench_channel_flags;
}

struct psyne_pair {
    psyne_channel *server, *client;
};

static void psyne_connect(struct psyne_pair *p)
{
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", bench_free_tcp_port());
    struct psyne_options o;
    bench_tcp_options(&o, 1);
    o.max_peers = bench_tcp_max_peers;
    must(psyne_channel_open(&p->server, uri, &o) == 0, "tcp:// listen");
    bench_tcp_options(&o, 0);
    must(psyne_channel_open(&p->client, uri, &o) == 0, "tcp:// connect");
}

static void psyne_disconnect(struct psyne_pair *p)
{
    psyne_channel_close(p->client);
    psyne_channel_close(p->server);
}

/* One message of size bytes, stamped with seq, written in place, to peer
 * (a listening handle with max_peers; else 0). */
static void psyne_send_one(psyne_channel *ch, uint32_t peer, size_t size, uint64_t seq)
{
    struct psyne_claimed c;
    must(psyne_claim_to(ch, peer, size, &c, PSYNE_FOREVER) == 0, "claim");
    bench_write_payload(c.data, size, seq);
    must(psyne_commit(ch, &c, size, T_BENCH) == 0, "commit");
}

/* The next message, checked to be seq, read and released; returns the peer
 * it came from (0 unless the handle has max_peers). */
static uint32_t psyne_receive_one(psyne_channel *ch, size_t size, uint64_t seq, const char *who)
{
    struct psyne_msg m;
    must(psyne_receive(ch, &m, PSYNE_FOREVER) == 0, "receive");
    must(m.length == size, "message length");
    bench_read_payload(m.data, size, seq, who);
    uint32_t peer = m.peer;
    psyne_release(ch, &m);
    return peer;
}

struct psyne_sender {
    psyne_channel *ch;
    size_t size;
    uint64_t count;
};

static void *psyne_send(void *arg)
{
    struct psyne_sender *s = arg;
    for (uint64_t seq = 0; seq < s->count; seq++)
        psyne_send_one(s->ch, 0, s->size, seq);
    return NULL;
}

void psyne_tcp_tput(size_t size, uint64_t count, struct tcp_tput_result *out)
{
    bench_unpin();
    struct psyne_pair p;
    psyne_connect(&p);
    struct psyne_sender s = {p.client, size, count};
    pthread_t t;
    int64_t t0 = bench_now_ns();
    must(pthread_create(&t, NULL, psyne_send, &s) == 0, "thread");
    for (uint64_t seq = 0; seq < count; seq++)
        psyne_receive_one(p.server, size, seq, "tcp-tput");
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    pthread_join(t, NULL);
    struct psyne_stats st;
    psyne_channel_stats(p.client, &st);
    out->mps = (double)count / secs;
    out->gbps = (double)count * (double)size / secs / 1e9;
    out->msgs_per_send = st.tcp_send_calls ? (double)count / (double)st.tcp_send_calls : 0;
    psyne_disconnect(&p);
}

struct psyne_ponger {
    psyne_channel *ch;
    size_t size;
    uint64_t trips;
};

static void *psyne_pong(void *arg)
{
    struct psyne_ponger *g = arg;
    for (uint64_t i = 0; i < g->trips; i++) {
        uint32_t peer = psyne_receive_one(g->ch, g->size, i, "tcp-pingpong");
        psyne_send_one(g->ch, peer, g->size, i);
    }
    return NULL;
}

struct psyne_ping_ctx {
    psyne_channel *ch;
    size_t size;
};

static void psyne_ping(void *ctx, uint64_t i)
{
    struct psyne_ping_ctx *p = ctx;
    psyne_send_one(p->ch, 0, p->size, i);
    psyne_receive_one(p->ch, p->size, i, "tcp-pingpong");
}

void psyne_tcp_pingpong(size_t size, uint64_t trips, struct lat_result *out)
{
    bench_unpin();
    struct psyne_pair p;
    psyne_connect(&p);
    struct psyne_ponger g = {p.server, size, bench_warmup_trips(trips) + trips};
    pthread_t t;
    must(pthread_create(&t, NULL, psyne_pong, &g) == 0, "thread");
    struct psyne_ping_ctx ctx = {p.client, size};
    bench_time_round_trips(trips, psyne_ping, &ctx, out);
    pthread_join(t, NULL);
    psyne_disconnect(&p);
}

/* ---- psyne, the two ends in two processes ---- */

struct procs_run {
    char uri[64];
    size_t size;
    uint64_t count; /* messages, or round trips after the warm-up */
    int pingpong;
};

static psyne_channel *open_end(const char *uri, int listen)
{
    struct psyne_options o;
    bench_tcp_options(&o, listen);
    o.open_timeout_ns = 20000000000ll; /* the client retries until the listener is up */
    psyne_channel *ch;
    must(psyne_channel_open(&ch, uri, &o) == 0, listen ? "tcp:// listen" : "tcp:// connect");
    return ch;
}

/* The child: connects, says hello, then sends or answers. */
static void *procs_peer(void *arg)
{
    struct procs_run *r = arg;
    psyne_channel *ch = open_end(r->uri, 0);
    psyne_send_one(ch, 0, 8, UINT64_MAX); /* hello: the connection exists before the clock starts */
    if (r->pingpong) {
        for (uint64_t i = 0, n = bench_warmup_trips(r->count) + r->count; i < n; i++) {
            psyne_receive_one(ch, r->size, i, "tcp-pingpong");
            psyne_send_one(ch, 0, r->size, i);
        }
    } else {
        for (uint64_t seq = 0; seq < r->count; seq++)
            psyne_send_one(ch, 0, r->size, seq);
    }
    psyne_channel_close(ch); /* waits until the receiver has everything */
    return NULL;
}

static psyne_channel *procs_start(struct procs_run *r, struct bench_peer *peer)
{
    bench_unpin();
    snprintf(r->uri, sizeof r->uri, "tcp://127.0.0.1:%d", bench_free_tcp_port());
    bench_peer_start(peer, 1, procs_peer, r); /* forked before this process opens anything */
    psyne_channel *ch = open_end(r->uri, 1);
    psyne_receive_one(ch, 8, UINT64_MAX, "hello");
    return ch;
}

void psyne_tcp_tput_procs(size_t size, uint64_t count, struct tcp_tput_result *out)
{
    struct procs_run *r = bench_shared_alloc(sizeof *r);
    *r = (struct procs_run){.size = size, .count = count};
    struct bench_peer peer;
    psyne_channel *ch = procs_start(r, &peer);
    int64_t t0 = bench_now_ns();
    for (uint64_t seq = 0; seq < count; seq++)
        psyne_receive_one(ch, size, seq, "tcp-tput");
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    bench_peer_join(&peer);
    psyne_channel_close(ch);
    out->mps = (double)count / secs;
    out->gbps = (double)count * (double)size / secs / 1e9;
    out->msgs_per_send = 0; /* counted in the sender's process */
    munmap(r, sizeof *r);
}

void psyne_tcp_pingpong_procs(size_t size, uint64_t trips, struct lat_result *out)
{
    struct procs_run *r = bench_shared_alloc(sizeof *r);
    *r = (struct procs_run){.size = size, .count = trips, .pingpong = 1};
    struct bench_peer peer;
    psyne_channel *ch = procs_start(r, &peer);
    struct psyne_ping_ctx ctx = {ch, size};
    bench_time_round_trips(trips, psyne_ping, &ctx, out);
    bench_peer_join(&peer);
    psyne_channel_close(ch);
    munmap(r, sizeof *r);
}

/* ---- the raw socket reference ---- */

struct raw_pair {
    int a, b; /* a: the connecting end, b: the accepted end */
};

static void raw_connect(struct raw_pair *p)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    must(l >= 0 && bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0 &&
             getsockname(l, (struct sockaddr *)&a, &len) == 0,
         "raw listen");
    p->a = socket(AF_INET, SOCK_STREAM, 0);
    must(connect(p->a, (struct sockaddr *)&a, sizeof a) == 0, "raw connect");
    p->b = accept(l, NULL, NULL);
    must(p->b >= 0, "raw accept");
    close(l);
    int one = 1;
    setsockopt(p->a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(p->b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void send_full(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        must(w > 0, "raw send");
        p += w;
        n -= (size_t)w;
    }
}

/* flags MSG_DONTWAIT: busy-polls the socket (never sleeps) */
static void recv_full(int fd, uint8_t *p, size_t n, int flags)
{
    while (n) {
        ssize_t r = recv(fd, p, n, flags);
        if (r < 0 && (flags & MSG_DONTWAIT) && (errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        must(r > 0, "raw recv");
        p += r;
        n -= (size_t)r;
    }
}

/* Records: 8-byte length, payload, padded to 8 (psyne's record size). */
static void raw_write_record(uint8_t *rec, size_t size, uint64_t seq)
{
    uint64_t len = size;
    memcpy(rec, &len, 8);
    bench_write_payload(rec + 8, size, seq);
}

struct raw_sender {
    int fd;
    size_t size;
    uint64_t count;
};

static void *raw_send(void *arg)
{
    struct raw_sender *s = arg;
    size_t rec = (size_t)PSYNE_RECORD_SIZE(s->size);
    size_t cap = rec > RAW_CHUNK ? rec : RAW_CHUNK / rec * rec;
    uint8_t *buf = aligned_alloc(64, cap);
    must(buf != NULL, "buffer");
    for (uint64_t seq = 0; seq < s->count;) {
        size_t used = 0;
        for (; seq < s->count && used + rec <= cap; seq++, used += rec)
            raw_write_record(buf + used, s->size, seq);
        send_full(s->fd, buf, used);
    }
    free(buf);
    return NULL;
}

void raw_tcp_tput(size_t size, uint64_t count, struct tcp_tput_result *out)
{
    bench_unpin();
    struct raw_pair p;
    raw_connect(&p);
    struct raw_sender s = {p.a, size, count};
    size_t rec = (size_t)PSYNE_RECORD_SIZE(size);
    size_t cap = rec > RAW_CHUNK ? 2 * rec : 2 * RAW_CHUNK;
    uint8_t *buf = aligned_alloc(64, cap);
    must(buf != NULL, "buffer");
    pthread_t t;
    int64_t t0 = bench_now_ns();
    must(pthread_create(&t, NULL, raw_send, &s) == 0, "thread");
    size_t have = 0;
    for (uint64_t seq = 0; seq < count;) {
        ssize_t r = recv(p.b, buf + have, cap - have, 0);
        must(r > 0, "raw recv");
        have += (size_t)r;
        size_t at = 0;
        for (; seq < count && have - at >= rec; at += rec, seq++) {
            uint64_t len;
            memcpy(&len, buf + at, 8);
            must(len == size, "raw record length");
            bench_read_payload(buf + at + 8, size, seq, "raw tcp-tput");
        }
        memmove(buf, buf + at, have - at); /* a partial record: at most one, to the front */
        have -= at;
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    pthread_join(t, NULL);
    out->mps = (double)count / secs;
    out->gbps = (double)count * (double)size / secs / 1e9;
    out->msgs_per_send = 0;
    free(buf);
    close(p.a);
    close(p.b);
}

struct raw_ponger {
    int fd;
    size_t size;
    uint64_t trips;
    int recv_flags;
};

static void *raw_pong(void *arg)
{
    struct raw_ponger *g = arg;
    size_t rec = (size_t)PSYNE_RECORD_SIZE(g->size);
    uint8_t *in = malloc(rec), *out = malloc(rec);
    must(in && out, "buffer");
    for (uint64_t i = 0; i < g->trips; i++) {
        recv_full(g->fd, in, rec, g->recv_flags);
        bench_read_payload(in + 8, g->size, i, "raw tcp-pingpong");
        raw_write_record(out, g->size, i);
        send_full(g->fd, out, rec);
    }
    free(in);
    free(out);
    return NULL;
}

struct raw_ping_ctx {
    int fd;
    size_t size;
    uint8_t *in, *out;
    int recv_flags;
};

static void raw_ping(void *ctx, uint64_t i)
{
    struct raw_ping_ctx *p = ctx;
    size_t rec = (size_t)PSYNE_RECORD_SIZE(p->size);
    raw_write_record(p->out, p->size, i);
    send_full(p->fd, p->out, rec);
    recv_full(p->fd, p->in, rec, p->recv_flags);
    bench_read_payload(p->in + 8, p->size, i, "raw tcp-pingpong");
}

void raw_tcp_pingpong(size_t size, uint64_t trips, bool busy_poll, struct lat_result *out)
{
    bench_unpin();
    struct raw_pair p;
    raw_connect(&p);
    int flags = busy_poll ? MSG_DONTWAIT : 0;
    struct raw_ponger g = {p.b, size, bench_warmup_trips(trips) + trips, flags};
    pthread_t t;
    must(pthread_create(&t, NULL, raw_pong, &g) == 0, "thread");
    size_t rec = (size_t)PSYNE_RECORD_SIZE(size);
    struct raw_ping_ctx ctx = {p.a, size, malloc(rec), malloc(rec), flags};
    must(ctx.in && ctx.out, "buffer");
    bench_time_round_trips(trips, raw_ping, &ctx, out);
    pthread_join(t, NULL);
    free(ctx.in);
    free(ctx.out);
    close(p.a);
    close(p.b);
}
