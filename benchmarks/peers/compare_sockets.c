/* SPDX-License-Identifier: MIT */
/*
 * compare_sockets.c - psyne side by side with ZeroMQ and nng on the inproc,
 * ipc and tcp workloads of WORKLOADS.md: throughput at 64 B, 4 KiB and
 * 1 MiB, and ping-pong RTT at 64 B (tcp: both ends in this process, over
 * 127.0.0.1; psyne's tcp:// channels against the libraries' tcp transports).
 *
 *   psyne_compare_sockets [--runs N] [--quick] [--transport inproc,ipc,tcp] [--no-pin]
 *
 * The rules of every psyne benchmark hold for the peers too: the sender
 * writes every payload byte in place, here into the library's own message
 * buffer (zmq_msg_init_size / nng_msg_alloc, the least-copy path both
 * offer), and the receiver checks the sequence number and reads every byte.
 * ZeroMQ runs PUSH/PULL (throughput) and PAIR (ping-pong), nng push0/pull0
 * and pair0; both queue about 1000 messages per direction (ZeroMQ's default
 * high-water mark; nng's buffers are set to match). For ipc the sender (or
 * ponger) is this program started anew (fork + exec: neither library's
 * state survives a bare fork), and psyne's peer is a forked process.
 *
 * Systems run alternately, one run each per round, and each ratio is the
 * median of the per-round ratios (this VM's figures swing with vCPU
 * placement; only neighbouring runs compare). Prints RESULT lines (medians),
 * RATIO lines and a Markdown table.
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
    void *zctx, *z; /* ZeroMQ */
    nng_socket n;   /* nng */
};

static void sock_open(struct sock *s, enum lib lib, enum kind kind, void *zctx)
{
    s->lib = lib;
    if (lib == LIB_ZMQ) {
        static const int types[] = {ZMQ_PUSH, ZMQ_PULL, ZMQ_PAIR};
        s->zctx = zctx;
        if (!(s->z = zmq_socket(zctx, types[kind])))
            die("zmq_socket", zmq_strerror(zmq_errno()));
        return;
    }
    int rc = kind == K_PUSH ? nng_push0_open(&s->n) : kind == K_PULL ? nng_pull0_open(&s->n) : nng_pair0_open(&s->n);
    if (rc)
        die("nng open", nng_strerror(rc));
    /* match ZeroMQ's queue (nng's default is no buffering at all) */
    nng_socket_set_int(s->n, NNG_OPT_SENDBUF, QUEUE_DEPTH);
    nng_socket_set_int(s->n, NNG_OPT_RECVBUF, QUEUE_DEPTH);
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

/* A new message of `size` bytes, written in place, sent. */
static void sock_send_new(struct sock *s, size_t size, uint64_t seq)
{
    if (s->lib == LIB_ZMQ) {
        zmq_msg_t m;
        zmq_msg_init_size(&m, size);
        bench_write_payload(zmq_msg_data(&m), size, seq);
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

/* Receives one message and sends the same message back (no copy). */
static void sock_echo(struct sock *s)
{
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
    if (s->lib == LIB_ZMQ) {
        zmq_close(s->z);
        return;
    }
    nng_close(s->n);
}

/* ---- a run: shared by both sides (a memfd for ipc, whose child maps it) ---- */

struct run {
    enum lib lib;
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
    sock_open(&s, r->lib, r->tput ? K_PUSH : K_PAIR, zctx);
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
static double peer_run(enum lib lib, enum transport tr, int tput, size_t size, uint64_t count, struct lat_result *lat)
{
    int ipc = tr == T_IPC; /* the peer side is a process of its own */
    struct run *r = run_state;
    memset(r, 0, sizeof *r);
    r->lib = lib;
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
    sock_open(&s, lib, tput ? K_PULL : K_PAIR, zctx);
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
    if (tr == T_TCP) { /* tcp:// channels, both ends in this process (as the peers' tcp runs) */
        if (tput) {
            struct tcp_tput_result res;
            psyne_tcp_tput(size, count, &res);
            return res.mps;
        }
        psyne_tcp_pingpong(size, count, lat);
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

struct row {
    char workload[24];
    size_t size;
    const char *metric;
    double psyne, peer[4], ratio[4]; /* ZeroMQ, nng, and (tcp) the raw socket limit, busy-polling (ping-pong) */
    int with_limit, with_busy;
};
static struct row rows[16];
static int n_rows;

static void compare(enum transport ipc, int tput, size_t size, uint64_t count)
{
    static const char *names_tput[] = {"inproc-spsc-tput", "ipc-spsc-tput", "tcp-tput"};
    static const char *names_rtt[] = {"inproc-pingpong", "ipc-pingpong", "tcp-pingpong"};
    const char *workload = tput ? names_tput[ipc] : names_rtt[ipc];
    /* over tcp the limit runs too: a raw socket pair doing the same job; in
     * ping-pong also one that busy-polls (psyne spins on the socket a while
     * before it sleeps; ZeroMQ, nng and the plain pair sleep at once) */
    int n_sys = ipc == T_TCP ? (tput ? 4 : 5) : 3;
    double v[5][MAX_RUNS], ratio[4][MAX_RUNS];
    struct lat_result lat[5][MAX_RUNS];
    psyne_run(ipc, tput, size, count / 10 + 1, &lat[0][0]); /* warm-up */
    for (int i = 0; i < runs; i++) {
        v[0][i] = psyne_run(ipc, tput, size, count, &lat[0][i]);
        v[1][i] = peer_run(LIB_ZMQ, ipc, tput, size, count, &lat[1][i]);
        v[2][i] = peer_run(LIB_NNG, ipc, tput, size, count, &lat[2][i]);
        for (int busy = 0; busy + 3 < n_sys; busy++)
            v[3 + busy][i] = raw_run(tput, size, count, busy, &lat[3 + busy][i]);
        for (int p = 0; p < n_sys - 1; p++) /* psyne / peer: higher is better for throughput, lower for RTT */
            ratio[p][i] = v[0][i] / v[p + 1][i];
    }
    struct row *w = &rows[n_rows++];
    snprintf(w->workload, sizeof w->workload, "%s", workload);
    w->size = size;
    w->metric = tput ? "mps" : "rtt_p50_ns";
    w->with_limit = n_sys >= 4;
    w->with_busy = n_sys == 5;
    static const char *names[] = {"psyne", "zeromq", "nng", "raw-socket", "raw-socket-busy"};
    for (int s = 0; s < n_sys; s++) {
        double med = bench_median(v[s], runs);
        if (s == 0)
            w->psyne = med;
        else
            w->peer[s - 1] = med;
        if (tput)
            printf("RESULT system=%s workload=%s size=%zu mps=%.0f gbps=%.3f runs=%d count=%llu\n", names[s], workload,
                   size, med, med * (double)size / 1e9, runs, (unsigned long long)count);
        else {
            struct lat_result m;
            char fields[BENCH_RTT_FIELDS_LEN];
            bench_lat_median(lat[s], runs, &m);
            printf("RESULT system=%s workload=%s size=%zu %s runs=%d round_trips=%llu\n", names[s], workload, size,
                   bench_rtt_fields(&m, fields), runs, (unsigned long long)count);
        }
    }
    for (int p = 0; p < n_sys - 1; p++) {
        double lo = bench_min(ratio[p], runs), hi = bench_max(ratio[p], runs);
        w->ratio[p] = bench_median(ratio[p], runs);
        printf("RATIO workload=%s size=%zu metric=%s psyne/%s=%.3f min=%.3f max=%.3f rounds=%d%s\n", workload, size,
               w->metric, names[p + 1], w->ratio[p], lo, hi, runs, tput ? "" : " (latency: lower is better)");
    }
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: psyne_compare_sockets [--runs N] [--quick] [--transport inproc,ipc,tcp] [--no-pin]\n");
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
    static const struct option opts[] = {{"runs", required_argument, 0, 'r'},
                                         {"quick", no_argument, 0, 'q'},
                                         {"transport", required_argument, 0, 't'},
                                         {"no-pin", no_argument, 0, 'p'},
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
    printf("# psyne vs ZeroMQ %d.%d.%d and nng %s: %d rounds, systems alternating\n", zmaj, zmin, zpat, nng_version(),
           runs);
    uint64_t div = quick ? 20 : 1;
    static const size_t sizes[] = {64, 4096, 1048576};
    static const uint64_t counts[] = {500000, 100000, 2000};
    for (enum transport t = T_INPROC; t <= T_TCP; t++) {
        if (!(t == T_TCP ? tcp : t == T_IPC ? ipc : inproc))
            continue;
        for (int i = 0; i < 3; i++)
            compare(t, 1, sizes[i], counts[i] / div);
        compare(t, 0, 64, (t == T_TCP ? 5000 : 20000) / div);
    }
    printf("\n| workload | size | metric | psyne | ZeroMQ | nng | psyne/ZeroMQ | psyne/nng | raw socket (limit) | "
           "psyne/limit |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_rows; i++) {
        struct row *w = &rows[i];
        printf("| %s | %zu | %s | %.0f | %.0f | %.0f | %.3g | %.3g |", w->workload, w->size, w->metric, w->psyne,
               w->peer[0], w->peer[1], w->ratio[0], w->ratio[1]);
        if (w->with_limit)
            printf(" %.0f | %.3g |\n", w->peer[2], w->ratio[2]);
        else
            printf("  |  |\n");
        if (w->with_busy) /* the same psyne runs against the busy-polling pair */
            printf("| %s, raw sockets busy-polling | %zu | %s | %.0f |  |  |  |  | %.0f | %.3g |\n", w->workload,
                   w->size, w->metric, w->psyne, w->peer[3], w->ratio[3]);
    }
    printf("\nThroughput ratios: higher is better for psyne; RTT ratios: lower is better. The raw sockets of"
           " the ping-pong block in recv(), or busy-poll it (never sleeping, a core each) in the row that says so.\n");
    return 0;
}
