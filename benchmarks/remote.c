/* SPDX-License-Identifier: MIT */
/*
 * remote.c - psyne_bench --listen / --connect (remote.h).
 *
 * The two sides talk over the channel they measure: control messages are
 * records of type T_CTRL carrying struct ctrl, and the benchmark messages
 * records of type T_BENCH, each stamped with its sequence number and read
 * whole (bench_write_payload / bench_read_payload) as the local workloads do.
 */
#define _GNU_SOURCE /* gethostname */
#include "remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_output.h"
#include "bench_util.h"
#include "psyne.h"
#include "tcp_workloads.h"

#define T_BENCH PSYNE_TYPE_USER_MIN
#define T_CTRL (PSYNE_TYPE_USER_MIN + 1)
#define CTRL_MAGIC 0x70737962u /* "psyb" */
#define MAX_RUNS 64

enum ctrl_op { OP_TPUT = 1, OP_PINGPONG, OP_GO, OP_RUN_DONE, OP_REPORT, OP_BYE };

struct ctrl {
    uint32_t magic, op;
    uint64_t size, count, runs;
    double mps;              /* OP_RUN_DONE: the run's rate at the receiver */
    struct lat_result rtt;   /* OP_REPORT: the pinger's medians */
    double p50_min, p50_max; /* OP_REPORT */
    char host[64];           /* OP_TPUT, OP_PINGPONG: the connecting machine's name */
};

static void must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "psyne_bench: %s failed (%s)\n", what, psyne_last_error());
        exit(1);
    }
}

static psyne_channel *open_link(const char *addr, int listen)
{
    char uri[300];
    snprintf(uri, sizeof uri, "tcp://%s", addr);
    struct psyne_options o;
    bench_tcp_options(&o, listen);                              /* as the local tcp-* runs */
    o.open_timeout_ns = listen ? PSYNE_FOREVER : 30000000000ll; /* a listener waits for its client */
    psyne_channel *ch;
    int rc = psyne_channel_open(&ch, uri, &o);
    if (rc) {
        fprintf(stderr, "psyne_bench: %s: %s (%s)\n", uri, psyne_strerror(rc), psyne_last_error());
        exit(1);
    }
    return ch;
}

static void send_ctrl(psyne_channel *ch, const struct ctrl *m)
{
    struct psyne_claimed c;
    must(psyne_claim(ch, sizeof *m, &c, PSYNE_FOREVER) == 0, "claim");
    memcpy(c.data, m, sizeof *m);
    must(psyne_commit(ch, &c, sizeof *m, T_CTRL) == 0, "commit");
}

static struct ctrl receive_ctrl(psyne_channel *ch)
{
    struct psyne_msg m;
    struct ctrl k;
    must(psyne_receive(ch, &m, PSYNE_FOREVER) == 0, "receive");
    must(m.type == T_CTRL && m.length == sizeof k, "a control message from the other side");
    memcpy(&k, m.data, sizeof k);
    psyne_release(ch, &m);
    must(k.magic == CTRL_MAGIC, "the other side's protocol (same psyne_bench?)");
    return k;
}

static void send_bench(psyne_channel *ch, size_t size, uint64_t seq)
{
    struct psyne_claimed c;
    must(psyne_claim(ch, size, &c, PSYNE_FOREVER) == 0, "claim");
    bench_write_payload(c.data, size, seq);
    must(psyne_commit(ch, &c, size, T_BENCH) == 0, "commit");
}

static void receive_bench(psyne_channel *ch, size_t size, uint64_t seq, const char *who)
{
    struct psyne_msg m;
    must(psyne_receive(ch, &m, PSYNE_FOREVER) == 0, "receive");
    must(m.type == T_BENCH && m.length == size, "a benchmark message");
    bench_read_payload(m.data, size, seq, who);
    psyne_release(ch, &m);
}

static uint64_t warm_of(uint64_t count)
{
    return count / 10 + 1;
}

/* ---- results ---- */

static void tput_result(const char *peer, const char *role, size_t size, uint64_t count, double *mps, int runs)
{
    double v[MAX_RUNS];
    memcpy(v, mps, sizeof(double) * (size_t)runs);
    double lo = v[0], hi = v[0];
    for (int i = 1; i < runs; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    double med = bench_median(v, runs);
    bench_out("system=psyne workload=tcp-tput size=%zu mps=%.0f gbps=%.3f mps_min=%.0f mps_max=%.0f runs=%d count=%llu "
              "two_host=1 role=%s peer=%s",
              size, med, med * (double)size / 1e9, lo, hi, runs, (unsigned long long)count, role, peer);
    if (bench_tcp_wait == PSYNE_WAIT_SPIN)
        bench_out(" wait=spin");
    bench_out_end();
}

static void pingpong_result(const char *peer, const char *role, size_t size, uint64_t trips, const struct ctrl *k)
{
    char fields[BENCH_RTT_FIELDS_LEN];
    bench_out("system=psyne workload=tcp-pingpong size=%zu %s rtt_p50_min_ns=%.0f rtt_p50_max_ns=%.0f runs=%d "
              "round_trips=%llu two_host=1 role=%s peer=%s",
              size, bench_rtt_fields(&k->rtt, fields), k->p50_min, k->p50_max, (int)k->runs, (unsigned long long)trips,
              role, peer);
    if (bench_tcp_wait == PSYNE_WAIT_SPIN)
        bench_out(" wait=spin");
    bench_out_end();
}

/* ---- the listening side ---- */

int bench_remote_listen(const char *addr)
{
    bench_unpin();
    fprintf(stderr, "psyne_bench: listening on tcp://%s for psyne_bench --connect\n", addr);
    psyne_channel *ch = open_link(addr, 1);
    for (;;) {
        struct ctrl k = receive_ctrl(ch);
        if (k.op == OP_BYE)
            break;
        k.host[sizeof k.host - 1] = 0;
        for (char *h = k.host; *h; h++) /* the other side's bytes, printed in a RESULT line: one word */
            *h = *h > ' ' && *h < 0x7f && *h != '=' ? *h : '?';
        must((k.op == OP_TPUT || k.op == OP_PINGPONG) && k.runs >= 1 && k.runs <= MAX_RUNS && k.count >= 2 &&
                 k.size >= 8 && k.size <= (1u << 20),
             "a plan from the other side");
        if (k.op == OP_TPUT) {
            double mps[MAX_RUNS];
            for (uint64_t r = 0; r <= k.runs; r++) { /* run 0: the warm-up */
                uint64_t n = r ? k.count : warm_of(k.count);
                /* Our clock only, from the go we send to the last message: timed from the first
                 * message instead, a run that fits in the rings and socket buffers would be
                 * measured as a read of memory. The go's one-way trip is in the run. */
                struct ctrl go = {.magic = CTRL_MAGIC, .op = OP_GO};
                int64_t t0 = bench_now_ns();
                send_ctrl(ch, &go);
                for (uint64_t seq = 0; seq < n; seq++)
                    receive_bench(ch, k.size, seq, "tcp-tput");
                double secs = (double)(bench_now_ns() - t0) / 1e9;
                struct ctrl done = {.magic = CTRL_MAGIC, .op = OP_RUN_DONE, .mps = (double)n / secs};
                if (r)
                    mps[r - 1] = done.mps;
                send_ctrl(ch, &done);
            }
            tput_result(k.host, "receiver", k.size, k.count, mps, (int)k.runs);
        } else {
            for (uint64_t r = 0; r <= k.runs; r++) {
                uint64_t n = (r ? k.count : warm_of(k.count)) + bench_warmup_trips(r ? k.count : warm_of(k.count));
                for (uint64_t i = 0; i < n; i++) {
                    receive_bench(ch, k.size, i, "tcp-pingpong");
                    send_bench(ch, k.size, i);
                }
            }
            struct ctrl report = receive_ctrl(ch);
            must(report.op == OP_REPORT, "the pinger's report");
            pingpong_result(k.host, "ponger", k.size, k.count, &report);
        }
    }
    psyne_channel_close(ch);
    return 0;
}

/* ---- the connecting side ---- */

struct ping_ctx {
    psyne_channel *ch;
    size_t size;
};

static void ping_once(void *ctx, uint64_t i)
{
    struct ping_ctx *p = ctx;
    send_bench(p->ch, p->size, i);
    receive_bench(p->ch, p->size, i, "tcp-pingpong");
}

/* The connecting machine's name, for the listener's results. */
static void name_host(struct ctrl *k)
{
    if (gethostname(k->host, sizeof k->host - 1) != 0 || !k->host[0])
        snprintf(k->host, sizeof k->host, "unknown");
}

static uint64_t default_count(int pingpong, size_t size)
{
    if (pingpong)
        return 20000;
    return size <= 256 ? 1000000 : size <= 8192 ? 200000 : size <= 131072 ? 20000 : 2000;
}

static void connect_tput(psyne_channel *ch, const char *addr, size_t size, uint64_t count, int runs)
{
    struct ctrl plan = {.magic = CTRL_MAGIC, .op = OP_TPUT, .size = size, .count = count, .runs = (uint64_t)runs};
    name_host(&plan);
    send_ctrl(ch, &plan);
    double mps[MAX_RUNS];
    for (int r = 0; r <= runs; r++) {
        uint64_t n = r ? count : warm_of(count);
        must(receive_ctrl(ch).op == OP_GO, "the receiver's go");
        for (uint64_t seq = 0; seq < n; seq++)
            send_bench(ch, size, seq);
        struct ctrl done = receive_ctrl(ch);
        must(done.op == OP_RUN_DONE, "the receiver's run report");
        if (r)
            mps[r - 1] = done.mps;
    }
    tput_result(addr, "sender", size, count, mps, runs);
}

static void connect_pingpong(psyne_channel *ch, const char *addr, size_t size, uint64_t trips, int runs)
{
    struct ctrl plan = {.magic = CTRL_MAGIC, .op = OP_PINGPONG, .size = size, .count = trips, .runs = (uint64_t)runs};
    name_host(&plan);
    send_ctrl(ch, &plan);
    struct ping_ctx ctx = {ch, size};
    struct lat_result lat[MAX_RUNS], warm;
    double p50[MAX_RUNS];
    bench_time_round_trips(warm_of(trips), ping_once, &ctx, &warm);
    for (int r = 0; r < runs; r++) {
        bench_time_round_trips(trips, ping_once, &ctx, &lat[r]);
        p50[r] = (double)lat[r].p50;
    }
    struct ctrl report = {.magic = CTRL_MAGIC, .op = OP_REPORT, .size = size, .count = trips, .runs = (uint64_t)runs};
    bench_lat_median(lat, runs, &report.rtt);
    report.p50_min = bench_min(p50, runs);
    report.p50_max = bench_max(p50, runs);
    send_ctrl(ch, &report);
    pingpong_result(addr, "pinger", size, trips, &report);
}

int bench_remote_connect(const char *addr, const struct remote_plan *plan)
{
    bench_unpin();
    if (plan->runs < 1 || plan->runs > MAX_RUNS) {
        fprintf(stderr, "psyne_bench: --runs must be 1..%d\n", MAX_RUNS);
        return 2;
    }
    static const size_t default_size = 64;
    const size_t *sizes = plan->n_sizes ? plan->sizes : &default_size;
    int n_sizes = plan->n_sizes ? plan->n_sizes : 1;
    for (int i = 0; i < n_sizes; i++)
        if (sizes[i] < 8 || sizes[i] > (1u << 20)) {
            fprintf(stderr, "psyne_bench: two-host sizes are 8 B to 1 MiB\n");
            return 2;
        }
    psyne_channel *ch = open_link(addr, 0);
    static const char *names[] = {"tcp-tput", "tcp-pingpong"};
    int ran = 0;
    for (int w = 0; w < 2; w++) {
        const char *list = plan->workloads, *hit = list ? strstr(list, names[w]) : NULL;
        size_t len = strlen(names[w]);
        if (list && !(hit && (hit == list || hit[-1] == ',') && (hit[len] == 0 || hit[len] == ',')))
            continue;
        for (int i = 0; i < n_sizes; i++) {
            uint64_t count = plan->iterations ? plan->iterations : default_count(w, sizes[i]);
            if (count < 2)
                count = 2;
            if (w == 0)
                connect_tput(ch, addr, sizes[i], count, plan->runs);
            else
                connect_pingpong(ch, addr, sizes[i], count, plan->runs);
            ran++;
        }
    }
    struct ctrl bye = {.magic = CTRL_MAGIC, .op = OP_BYE};
    send_ctrl(ch, &bye);
    psyne_channel_close(ch);
    if (!ran) {
        fprintf(stderr, "psyne_bench: --connect runs tcp-tput and tcp-pingpong only\n");
        return 2;
    }
    return 0;
}
