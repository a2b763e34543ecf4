/* SPDX-License-Identifier: MIT */
/*
 * compare_sockets.c - psyne side by side with ZeroMQ and nng on the inproc,
 * ipc and tcp workloads of WORKLOADS.md: throughput at 64 B, 4 KiB and
 * 1 MiB, and ping-pong RTT at 64 B.
 *
 *   psyne_compare_sockets [--runs N] [--quick] [--transport inproc,ipc,tcp] [--no-pin]
 *                         [--size 64|4096|1048576] [--queue MESSAGES]
 * (--size: that throughput workload only; --queue: every queue that deep,
 * to find the depth each library is fastest with)
 *
 * Every peer runs as its users run it: for ipc and tcp the sender (or
 * ponger) is a process of its own, this program started anew (fork + exec:
 * neither library's state survives a bare fork); psyne's is a forked process
 * that opens its own channel. Each library is measured with each of its
 * send/receive APIs, and the fastest for the size is the headline:
 *   ZeroMQ  msg       zmq_msg_init_size, written in place, zmq_msg_send /
 *                     zmq_msg_recv read in place (the API shape of psyne's)
 *           send      zmq_send from the sender's buffer, zmq_recv into the
 *                     receiver's (a copy each way; small messages live
 *                     inside zmq_msg_t, no allocation)
 *           msg-data  zmq_msg_init_data on a buffer the sender wrote (no copy
 *                     on sending; 4 KiB and up)
 *   nng     msg       nng_msg_alloc / nng_sendmsg / nng_recvmsg
 *           send      nng_send / nng_recv with the caller's buffers
 * The rules of every psyne benchmark hold for the peers too: the sender
 * writes every payload byte, the receiver checks the sequence number and
 * reads every byte. ZeroMQ runs PUSH/PULL (throughput) and PAIR (ping-pong),
 * nng push0/pull0 and pair0. Queues, as the libraries' guides advise for
 * throughput: ZeroMQ's high-water marks (default 1000 messages) and nng's
 * buffers are raised to hold 32 MiB or 1000 messages, whichever is more
 * (nng: at most 8192 messages).
 *
 * Systems run alternately, one run each per round, and each ratio is the
 * median of the per-round ratios (figures swing with CPU placement; only
 * neighbouring runs compare). Prints RESULT lines (medians), RATIO lines and
 * a Markdown table.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pair0/pair.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <zmq.h>

#include "bench_util.h"
#include "tcp_workloads.h"
#include "workloads.h"

#define MAX_RUNS 64
#define QUEUE_DEPTH 1000 /* messages per direction: ZeroMQ's default HWM */

enum lib { LIB_ZMQ, LIB_NNG };
enum kind { K_PUSH, K_PULL, K_PAIR };
static const char *lib_name[] = {"zeromq", "nng"};
/* How a peer sends and receives (the header comment). */
enum api { API_MSG, API_SEND, API_MSG_DATA };
static const char *api_name[] = {"msg", "send", "msg-data"};

static int runs = 5;
static int pin = 1;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "psyne_compare_sockets: %s: %s\n", what, detail);
    exit(1);
}

/* ---- one socket of either library ---- */

struct sock {
    enum lib lib;
    enum api api;
    void *zctx, *z; /* ZeroMQ */
    nng_socket n;   /* nng */
    uint8_t *buf;   /* API_SEND: the caller's buffer */
    size_t buf_len;
};

static int queue_forced; /* --queue N: every queue this deep (experiments) */

/* Messages a queue holds: 32 MiB, at least the libraries' 1000. */
static int queue_depth(size_t size)
{
    if (queue_forced)
        return queue_forced;
    size_t n = (32u << 20) / (size ? size : 1);
    return n < QUEUE_DEPTH ? QUEUE_DEPTH : n > 1000000 ? 1000000 : (int)n;
}

static void sock_open(struct sock *s, enum lib lib, enum api api, enum kind kind, void *zctx, size_t size)
{
    s->lib = lib;
    s->api = api;
    s->buf_len = size > 8 ? size : 8;
    if (!(s->buf = malloc(s->buf_len)))
        die("malloc", "buffer");
    int depth = queue_depth(size);
    if (lib == LIB_ZMQ) {
        static const int types[] = {ZMQ_PUSH, ZMQ_PULL, ZMQ_PAIR};
        s->zctx = zctx;
        if (!(s->z = zmq_socket(zctx, types[kind])))
            die("zmq_socket", zmq_strerror(zmq_errno()));
        zmq_setsockopt(s->z, ZMQ_SNDHWM, &depth, sizeof depth);
        zmq_setsockopt(s->z, ZMQ_RCVHWM, &depth, sizeof depth);
        return;
    }
    int rc = kind == K_PUSH ? nng_push0_open(&s->n) : kind == K_PULL ? nng_pull0_open(&s->n) : nng_pair0_open(&s->n);
    if (rc)
        die("nng open", nng_strerror(rc));
    /* nng's default is no buffering at all; 8192 is its largest */
    depth = depth > 8192 ? 8192 : depth;
    nng_socket_set_int(s->n, NNG_OPT_SENDBUF, depth);
    nng_socket_set_int(s->n, NNG_OPT_RECVBUF, depth);
}

static void sock_attach(struct sock *s, const char *url, int listen)
{
    if (s->lib == LIB_ZMQ) {
        if ((listen ? zmq_bind(s->z, url) : zmq_connect(s->z, url)) != 0)
            die(listen ? "zmq_bind" : "zmq_connect", zmq_strerror(zmq_errno()));
        return;
    }
    int rc = listen ? nng_listen(s->n, url, NULL, 0) : nng_dial(s->n, url, NULL, 0);
    if (rc)
        die(listen ? "nng_listen" : "nng_dial", nng_strerror(rc));
}

static void free_buffer(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* API_SEND: the first n bytes of the caller's buffer, copied by the library. */
static void send_from_buffer(struct sock *s, size_t n)
{
    if (s->lib == LIB_ZMQ ? zmq_send(s->z, s->buf, n, 0) < 0 : nng_send(s->n, s->buf, n, 0) != 0)
        die("send", s->lib == LIB_ZMQ ? zmq_strerror(zmq_errno()) : "nng_send");
}

/* API_SEND: the next message, copied into the caller's buffer; returns the
 * bytes there (a longer message is cut to the buffer). */
static size_t recv_into_buffer(struct sock *s)
{
    size_t got = s->buf_len;
    int n = s->lib == LIB_ZMQ ? zmq_recv(s->z, s->buf, s->buf_len, 0) : nng_recv(s->n, s->buf, &got, 0) ? -1 : (int)got;
    if (n < 0)
        die("recv", s->lib == LIB_ZMQ ? zmq_strerror(zmq_errno()) : "nng_recv");
    return (size_t)n < s->buf_len ? (size_t)n : s->buf_len;
}

/* A new message of `size` bytes, written in place (API_SEND: in the
 * caller's buffer, which the library copies), sent. */
static void sock_send_new(struct sock *s, size_t size, uint64_t seq)
{
    if (s->api == API_SEND) {
        bench_write_payload(s->buf, size, seq);
        send_from_buffer(s, size);
        return;
    }
    if (s->lib == LIB_ZMQ) {
        zmq_msg_t m;
        if (s->api == API_MSG_DATA) { /* the sender's own buffer, handed over */
            void *data = malloc(size);
            if (!data)
                die("malloc", "message");
            bench_write_payload(data, size, seq);
            zmq_msg_init_data(&m, data, size, free_buffer, NULL);
        } else {
            zmq_msg_init_size(&m, size);
            bench_write_payload(zmq_msg_data(&m), size, seq);
        }
        if (zmq_msg_send(&m, s->z, 0) < 0)
            die("zmq_msg_send", zmq_strerror(zmq_errno()));
        return;
    }
    nng_msg *m;
    int rc = nng_msg_alloc(&m, size);
    if (rc)
        die("nng_msg_alloc", nng_strerror(rc));
    bench_write_payload(nng_msg_body(m), size, seq);
    if ((rc = nng_sendmsg(s->n, m, 0)) != 0)
        die("nng_sendmsg", nng_strerror(rc));
}

/* Receives one message, checks its sequence and reads every byte. */
static uint64_t sock_recv_check(struct sock *s, uint64_t seq, const char *who)
{
    uint64_t sum;
    if (s->api == API_SEND)
        return bench_read_payload(s->buf, recv_into_buffer(s), seq, who);
    if (s->lib == LIB_ZMQ) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->z, 0) < 0)
            die("zmq_msg_recv", zmq_strerror(zmq_errno()));
        sum = bench_read_payload(zmq_msg_data(&m), zmq_msg_size(&m), seq, who);
        zmq_msg_close(&m);
        return sum;
    }
    nng_msg *m;
    int rc = nng_recvmsg(s->n, &m, 0);
    if (rc)
        die("nng_recvmsg", nng_strerror(rc));
    sum = bench_read_payload(nng_msg_body(m), nng_msg_len(m), seq, who);
    nng_msg_free(m);
    return sum;
}

/* Receives one message and sends the same message back (no copy, or with
 * API_SEND through the caller's buffer). */
static void sock_echo(struct sock *s)
{
    if (s->api == API_SEND) {
        send_from_buffer(s, recv_into_buffer(s));
        return;
    }
    if (s->lib == LIB_ZMQ) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->z, 0) < 0 || zmq_msg_send(&m, s->z, 0) < 0)
            die("zmq echo", zmq_strerror(zmq_errno()));
        return;
    }
    nng_msg *m;
    int rc = nng_recvmsg(s->n, &m, 0);
    if (rc || (rc = nng_sendmsg(s->n, m, 0)) != 0)
        die("nng echo", nng_strerror(rc));
}

static void sock_close(struct sock *s)
{
    free(s->buf);
    if (s->lib == LIB_ZMQ) {
        zmq_close(s->z);
        return;
    }
    nng_close(s->n);
}

/* ---- a run: shared by both sides (a memfd for ipc, whose child maps it) ---- */

struct run {
    enum lib lib;
    enum api api;
    int tput; /* 1: throughput (sender/receiver), 0: ping-pong */
    size_t size;
    uint64_t count; /* messages, or timed round trips */
    char url[128];
    struct bench_gate gate;
    _Atomic int done; /* the receiving side has everything: the sender may close */
    void *zctx;       /* inproc ZeroMQ: the context both sockets share */
};

/* The side that is not timed: the sender of a throughput run, the ponger
 * of a ping-pong. Connects, says hello (so the connection exists before
 * the clock starts), then sends or echoes. */
static void *peer_side(void *arg)
{
    struct run *r = arg;
    void *zctx = r->zctx;
    if (r->lib == LIB_ZMQ && !zctx && !(zctx = zmq_ctx_new()))
        die("zmq_ctx_new", zmq_strerror(zmq_errno()));
    struct sock s;
    sock_open(&s, r->lib, r->api, r->tput ? K_PUSH : K_PAIR, zctx, r->size);
    sock_attach(&s, r->url, 0);
    sock_send_new(&s, 8, UINT64_MAX); /* hello */
    bench_pin(pin ? (r->tput ? 0 : 1) : -1);
    bench_gate_arrive(&r->gate, 2);
    if (r->tput) {
        for (uint64_t i = 0; i < r->count; i++)
            sock_send_new(&s, r->size, i);
    } else {
        for (uint64_t i = 0, n = bench_warmup_trips(r->count) + r->count; i < n; i++)
            sock_echo(&s);
    }
    while (!atomic_load(&r->done)) /* closing could drop what is still queued */
        usleep(200);
    sock_close(&s);
    if (zctx != r->zctx)
        zmq_ctx_term(zctx);
    return NULL;
}

static char self_exe[4096];

/* ipc: runs peer_side in this program started anew, on the run in fd. */
static void *exec_peer_side(void *arg)
{
    int fd = *(int *)arg;
    char fd_arg[16];
    snprintf(fd_arg, sizeof fd_arg, "%d", fd);
    execl(self_exe, self_exe, "--side", fd_arg, (char *)NULL);
    perror("psyne_compare_sockets: exec");
    _exit(127);
}

struct pinger {
    struct sock *s;
    size_t size;
};

static void ping_one(void *ctx, uint64_t i)
{
    struct pinger *p = ctx;
    sock_send_new(p->s, p->size, i);
    sock_recv_check(p->s, i, "ping-pong");
}

static struct run *run_state;
static volatile uint64_t sink; /* keeps the reads */
static int run_fd;

enum transport { T_INPROC, T_IPC, T_TCP };

/* One run of a peer library: throughput in messages/s, or the p50 RTT in ns
 * (with every percentile in *lat). */
static double peer_run(enum lib lib, enum api api, enum transport tr, int tput, size_t size, uint64_t count,
                       struct lat_result *lat)
{
    int ipc = tr != T_INPROC; /* ipc and tcp: the peer side is a process of its own */
    struct run *r = run_state;
    memset(r, 0, sizeof *r);
    r->lib = lib;
    r->api = api;
    r->tput = tput;
    r->size = size;
    r->count = count;
    if (tr == T_IPC)
        snprintf(r->url, sizeof r->url, "ipc:///tmp/psyne-cmp-%s-%d", lib_name[lib], (int)getpid());
    else if (tr == T_TCP)
        snprintf(r->url, sizeof r->url, "tcp://127.0.0.1:%d", bench_free_tcp_port());
    else
        snprintf(r->url, sizeof r->url, "inproc://psyne-cmp-%s", lib_name[lib]);
    void *zctx = NULL;
    if (lib == LIB_ZMQ && !(zctx = zmq_ctx_new()))
        die("zmq_ctx_new", zmq_strerror(zmq_errno()));
    if (!ipc)
        r->zctx = zctx;
    struct sock s;
    sock_open(&s, lib, api, tput ? K_PULL : K_PAIR, zctx, size);
    sock_attach(&s, r->url, 1);
    struct bench_peer peer;
    bench_peer_start(&peer, ipc, ipc ? exec_peer_side : peer_side, ipc ? (void *)&run_fd : (void *)r);
    sock_recv_check(&s, UINT64_MAX, "hello");
    double value;
    if (tput) {
        bench_pin(pin ? 1 : -1);
        bench_gate_arrive(&r->gate, 2);
        int64_t t0 = bench_now_ns();
        uint64_t sum = 0;
        for (uint64_t i = 0; i < count; i++)
            sum += sock_recv_check(&s, i, lib_name[lib]);
        int64_t t1 = bench_now_ns();
        value = (double)count * 1e9 / (double)(t1 - t0);
        sink = sum;
    } else {
        bench_pin(pin ? 0 : -1);
        bench_gate_arrive(&r->gate, 2);
        struct pinger p = {&s, size};
        bench_time_round_trips(count, ping_one, &p, lat);
        value = (double)lat->p50;
    }
    atomic_store(&r->done, 1);
    bench_peer_join(&peer);
    sock_close(&s);
    if (zctx)
        zmq_ctx_term(zctx);
    return value;
}

static double psyne_run(enum transport tr, int tput, size_t size, uint64_t count, struct lat_result *lat)
{
    if (tr == T_TCP) { /* tcp:// channels, the two ends in two processes (as the peers' tcp runs) */
        if (tput) {
            struct tcp_tput_result res;
            psyne_tcp_tput_procs(size, count, &res);
            return res.mps;
        }
        psyne_tcp_pingpong_procs(size, count, lat);
        return (double)lat->p50;
    }
    enum bench_transport t = tr == T_IPC ? BENCH_IPC : BENCH_MEMORY;
    if (tput) {
        struct tput_result res;
        psyne_spsc_tput_as(t, size, count, BENCH_SINGLE, pin, &res);
        return res.mps;
    }
    psyne_pingpong(t, size, count, pin, bench_pingpong_wait, lat);
    return (double)lat->p50;
}

/* The limit over tcp: a raw socket pair over 127.0.0.1 doing the same job
 * (tcp_workloads.c, the reference psyne_bench's tcp-* runs use too); in
 * ping-pong it blocks in recv(), or with busy_poll spins on it. */
static double raw_run(int tput, size_t size, uint64_t count, bool busy_poll, struct lat_result *lat)
{
    if (tput) {
        struct tcp_tput_result res;
        raw_tcp_tput(size, count, &res);
        return res.mps;
    }
    raw_tcp_pingpong(size, count, busy_poll, lat);
    return (double)lat->p50;
}

/* ---- the comparison ---- */

/* One system of a comparison: psyne, a peer library with one API, or the
 * raw socket limit. */
struct system {
    char name[32];
    enum lib lib;
    enum api api;
    int kind; /* 0 psyne, 1 peer, 2 raw socket, 3 raw socket busy-polling */
    double v[MAX_RUNS], ratio[MAX_RUNS], med;
    struct lat_result lat[MAX_RUNS];
};

/* A library's figures in the table: its fastest API, and its msg API (the
 * shape of psyne's) when that is not the fastest. */
struct lib_row {
    double best, best_ratio, shape, shape_ratio;
    const char *best_api;
};

struct row {
    char workload[24];
    size_t size;
    const char *metric;
    double psyne;
    struct lib_row lib[2];
    double limit, limit_ratio, busy, busy_ratio;
    int with_limit, with_busy;
};
static struct row rows[16];
static int n_rows;

static double run_system(struct system *y, enum transport tr, int tput, size_t size, uint64_t count,
                         struct lat_result *lat)
{
    switch (y->kind) {
    case 0: return psyne_run(tr, tput, size, count, lat);
    case 1: return peer_run(y->lib, y->api, tr, tput, size, count, lat);
    default: return raw_run(tput, size, count, y->kind == 3, lat);
    }
}

static void compare(enum transport tr, int tput, size_t size, uint64_t count)
{
    static const char *names_tput[] = {"inproc-spsc-tput", "ipc-spsc-tput", "tcp-tput"};
    static const char *names_rtt[] = {"inproc-pingpong", "ipc-pingpong", "tcp-pingpong"};
    const char *workload = tput ? names_tput[tr] : names_rtt[tr];
    static struct system sys[10];
    int n = 0;
    sys[n++] = (struct system){.name = "psyne", .kind = 0};
    for (enum lib lib = LIB_ZMQ; lib <= LIB_NNG; lib++)
        for (enum api api = API_MSG; api <= API_MSG_DATA; api++) {
            if (api == API_MSG_DATA && (lib != LIB_ZMQ || size < 4096)) /* no gain below a page, nng has none */
                continue;
            struct system *y = &sys[n++];
            *y = (struct system){.lib = lib, .api = api, .kind = 1};
            snprintf(y->name, sizeof y->name, "%s-%s", lib_name[lib], api_name[api]);
        }
    /* over tcp the limit runs too: a raw socket pair doing the same job; in
     * ping-pong also one that busy-polls (psyne spins on the socket a while
     * before it sleeps; ZeroMQ, nng and the plain pair sleep at once) */
    if (tr == T_TCP) {
        sys[n++] = (struct system){.name = "raw-socket", .kind = 2};
        if (!tput)
            sys[n++] = (struct system){.name = "raw-socket-busy", .kind = 3};
    }
    struct lat_result warm;
    psyne_run(tr, tput, size, count / 10 + 1, &warm); /* warm-up */
    for (int i = 0; i < runs; i++)
        for (int k = 0; k < n; k++) {
            sys[k].v[i] = run_system(&sys[k], tr, tput, size, count, &sys[k].lat[i]);
            sys[k].ratio[i] = sys[0].v[i] / sys[k].v[i]; /* psyne / it: higher is better for throughput */
        }
    struct row *w = &rows[n_rows++];
    memset(w, 0, sizeof *w);
    snprintf(w->workload, sizeof w->workload, "%s", workload);
    w->size = size;
    w->metric = tput ? "mps" : "rtt_p50_ns";
    for (int k = 0; k < n; k++) {
        struct system *y = &sys[k];
        double tmp[MAX_RUNS];
        memcpy(tmp, y->v, sizeof(double) * (size_t)runs);
        y->med = bench_median(tmp, runs);
        if (tput)
            printf("RESULT system=%s workload=%s size=%zu mps=%.0f gbps=%.3f runs=%d count=%llu\n", y->name, workload,
                   size, y->med, y->med * (double)size / 1e9, runs, (unsigned long long)count);
        else {
            struct lat_result m;
            char fields[BENCH_RTT_FIELDS_LEN];
            bench_lat_median(y->lat, runs, &m);
            printf("RESULT system=%s workload=%s size=%zu %s runs=%d round_trips=%llu\n", y->name, workload, size,
                   bench_rtt_fields(&m, fields), runs, (unsigned long long)count);
        }
        if (k == 0) {
            w->psyne = y->med;
            continue;
        }
        double lo = bench_min(y->ratio, runs), hi = bench_max(y->ratio, runs), ratio = bench_median(y->ratio, runs);
        printf("RATIO workload=%s size=%zu metric=%s psyne/%s=%.3f min=%.3f max=%.3f rounds=%d%s\n", workload, size,
               w->metric, y->name, ratio, lo, hi, runs, tput ? "" : " (latency: lower is better)");
        if (y->kind == 2) {
            w->with_limit = 1;
            w->limit = y->med;
            w->limit_ratio = ratio;
        } else if (y->kind == 3) {
            w->with_busy = 1;
            w->busy = y->med;
            w->busy_ratio = ratio;
        } else {
            struct lib_row *l = &w->lib[y->lib];
            int better = !l->best_api || (tput ? y->med > l->best : y->med < l->best);
            if (better) {
                l->best = y->med;
                l->best_ratio = ratio;
                l->best_api = api_name[y->api];
            }
            if (y->api == API_MSG) {
                l->shape = y->med;
                l->shape_ratio = ratio;
            }
        }
    }
    for (enum lib lib = LIB_ZMQ; lib <= LIB_NNG; lib++) /* the headline: each library at its fastest */
        printf("RATIO workload=%s size=%zu metric=%s psyne/%s=%.3f api=%s fastest=1\n", workload, size, w->metric,
               lib_name[lib], w->lib[lib].best_ratio, w->lib[lib].best_api);
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: psyne_compare_sockets [--runs N] [--quick] [--transport inproc,ipc,tcp] [--no-pin]\n"
                    "                             [--size 64|4096|1048576] [--queue MESSAGES]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (readlink("/proc/self/exe", self_exe, sizeof self_exe - 1) <= 0)
        die("readlink", "/proc/self/exe");
    if (argc == 3 && !strcmp(argv[1], "--side")) { /* an exec'd ipc peer */
        struct run *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED, atoi(argv[2]), 0);
        if (r == MAP_FAILED)
            die("mmap", "run state");
        peer_side(r);
        return 0;
    }
    int quick = 0, inproc = 1, ipc = 1, tcp = 1;
    unsigned long long only_size = 0; /* --size N: that throughput size only, and no ping-pong */
    static const struct option opts[] = {{"runs", required_argument, 0, 'r'},
                                         {"quick", no_argument, 0, 'q'},
                                         {"transport", required_argument, 0, 't'},
                                         {"no-pin", no_argument, 0, 'p'},
                                         {"queue", required_argument, 0, 'Q'},
                                         {"size", required_argument, 0, 's'},
                                         {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case 'r': runs = atoi(optarg); break;
        case 'q': quick = 1; break;
        case 't':
            inproc = strstr(optarg, "inproc") != NULL;
            ipc = strstr(optarg, "ipc") != NULL;
            tcp = strstr(optarg, "tcp") != NULL;
            break;
        case 'p': pin = 0; break;
        case 'Q': queue_forced = atoi(optarg); break;
        case 's': only_size = strtoull(optarg, NULL, 10); break;
        default: usage();
        }
    }
    if (runs < 1 || runs > MAX_RUNS || (!inproc && !ipc && !tcp))
        usage();
    if ((run_fd = memfd_create("psyne-cmp-run", 0)) < 0 || ftruncate(run_fd, sizeof(struct run)) != 0)
        die("memfd", "run state");
    run_state = mmap(NULL, sizeof(struct run), PROT_READ | PROT_WRITE, MAP_SHARED, run_fd, 0);
    if (run_state == MAP_FAILED)
        die("mmap", "run state");
    int zmaj, zmin, zpat;
    zmq_version(&zmaj, &zmin, &zpat);
    printf("# psyne vs ZeroMQ %d.%d.%d and nng %s: %d rounds, systems alternating; ipc and tcp peers in two "
           "processes\n",
           zmaj, zmin, zpat, nng_version(), runs);
    uint64_t div = quick ? 20 : 1;
    static const size_t sizes[] = {64, 4096, 1048576};
    static const uint64_t counts[] = {500000, 100000, 2000};
    for (enum transport t = T_INPROC; t <= T_TCP; t++) {
        if (!(t == T_TCP ? tcp : t == T_IPC ? ipc : inproc))
            continue;
        for (int i = 0; i < 3; i++)
            if (!only_size || only_size == sizes[i])
                compare(t, 1, sizes[i], counts[i] / div);
        if (!only_size)
            compare(t, 0, 64, (t == T_TCP ? 5000 : 20000) / div);
    }
    printf("\n| workload | size | metric | psyne | ZeroMQ (fastest API) | nng (fastest API) | psyne/ZeroMQ | psyne/nng "
           "| raw socket (limit) | psyne/limit |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_rows; i++) {
        struct row *w = &rows[i];
        printf("| %s | %zu | %s | %.0f | %.0f (%s) | %.0f (%s) | %.3g | %.3g |", w->workload, w->size, w->metric,
               w->psyne, w->lib[0].best, w->lib[0].best_api, w->lib[1].best, w->lib[1].best_api, w->lib[0].best_ratio,
               w->lib[1].best_ratio);
        if (w->with_limit)
            printf(" %.0f | %.3g |\n", w->limit, w->limit_ratio);
        else
            printf("  |  |\n");
        if (strcmp(w->lib[0].best_api, "msg") || strcmp(w->lib[1].best_api, "msg")) /* the same API shape as psyne's */
            printf("| %s, msg API (psyne's shape) | %zu | %s | %.0f | %.0f | %.0f | %.3g | %.3g |  |  |\n", w->workload,
                   w->size, w->metric, w->psyne, w->lib[0].shape, w->lib[1].shape, w->lib[0].shape_ratio,
                   w->lib[1].shape_ratio);
        if (w->with_busy) /* the same psyne runs against the busy-polling pair */
            printf("| %s, raw sockets busy-polling | %zu | %s | %.0f |  |  |  |  | %.0f | %.3g |\n", w->workload,
                   w->size, w->metric, w->psyne, w->busy, w->busy_ratio);
    }
    printf("\nThroughput ratios: higher is better for psyne; RTT ratios: lower is better. Each library's headline is"
           " its fastest API for the size (in brackets); the msg rows are the API of psyne's shape (written and read"
           " in the library's buffer). The raw sockets of the ping-pong block in recv(), or busy-poll it (never"
           " sleeping, a core each) in the row that says so.\n");
    return 0;
}
