/* SPDX-License-Identifier: MIT */
/*
 * psyne_bench - runs the WORKLOADS.md workloads on psyne's memory://, ipc://
 * and tcp:// channels and prints one RESULT line per measurement (median of
 * --runs runs after a discarded warm-up run; min and max follow), then, on
 * a terminal, a table of them all.
 *
 *   psyne_bench                          short default set, explained
 *   psyne_bench --iterations 1000000     every workload with 1e6 messages a run
 *   psyne_bench --workload inproc-spsc-tput --size 64,4096 --runs 9
 *   psyne_bench --transport ipc --duration 2 --perf
 *   psyne_bench --workload inproc-mpmc-tput --mode mpsc,broadcast --producers 3
 */
#define _GNU_SOURCE /* strtok_r */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_hist.h"
#include "bench_output.h"
#include "bench_perf.h"
#include "bench_util.h"
#include "psyne.h"
#include "dynamic_workloads.h"
#include "remote.h"
#include "tcp_workloads.h"
#include "workloads.h"

#define MAX_RUNS 64

/* Transports, as --transport names them (bits of config.transports). */
enum { T_MEMORY = 1, T_IPC = 2, T_TCP = 4 };

struct config {
    const char *workloads; /* comma list, NULL = all */
    unsigned transports;   /* T_* bits; 0 = all */
    int modes[8];          /* ring modes of inproc-mpmc-tput (PSYNE_MODE_*) */
    int n_modes;           /* 0 = MPMC only */
    size_t sizes[16];
    int n_sizes;
    uint64_t iterations; /* 0 = per-size default or --duration */
    double duration;     /* seconds per measured run (0: by --iterations) */
    int runs;
    int pin;
    int producers, consumers;
    int api;       /* 0 default (single; batch at <= 256 B; typed at >= 4 KiB), 1 single, 2 batch, 3 typed, 4 array */
    int json;      /* JSON objects instead of RESULT lines */
    int histogram; /* print the round-trip distribution of *-pingpong */
    const char *hgrm;                       /* write it there in HdrHistogram's .hgrm text format */
    int perf;                               /* count instructions, cache misses, CPU time, ... per message */
    const char *listen_addr, *connect_addr; /* two hosts (remote.h) */
};

static int in_list(const char *list, const char *word)
{
    const char *p = strstr(list, word);
    size_t n = strlen(word);
    return p && (p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',');
}

static int wants(const struct config *c, const char *workload)
{
    unsigned t = !strncmp(workload, "ipc-", 4) ? T_IPC : !strncmp(workload, "tcp-", 4) ? T_TCP : T_MEMORY;
    if (c->transports && !(c->transports & t))
        return 0;
    return !c->workloads || in_list(c->workloads, workload);
}

/* Messages (round trips) per measured run: --iterations; else, with
 * --duration, as many as the warm-up's rate (per second) fits in it; else
 * the workload's default. */
static uint64_t run_count(const struct config *c, uint64_t by_default, double warm_rate)
{
    if (c->iterations)
        return c->iterations;
    if (c->duration > 0 && warm_rate > 0) {
        double n = warm_rate * c->duration;
        return n < 100 ? 100 : (uint64_t)n;
    }
    return by_default;
}

/* Warm-up size: a tenth of a run (--duration measures its rate on a tenth
 * of a default run). */
static uint64_t warm_count(const struct config *c, uint64_t by_default)
{
    return (c->iterations ? c->iterations : by_default) / 10 + 1;
}

/* --perf: counters around psyne's own runs (never the reference's). */
static struct bench_perf perf;

static void perf_begin(const struct config *c)
{
    if (c->perf)
        bench_perf_start(&perf);
}

static void perf_end(const struct config *c, uint64_t units)
{
    if (c->perf)
        bench_perf_stop(&perf, units);
}

/* Appends the counters per unit to the result and starts new sums. */
static void perf_out(const struct config *c, const char *per_what)
{
    if (!c->perf)
        return;
    char buf[256];
    bench_perf_format(&perf, per_what, buf, sizeof buf);
    bench_out("%s", buf);
    bench_perf_init(&perf);
}

/* Messages per run when neither --iterations nor --duration is given:
 * about 0.1-0.3 s a run. */
static uint64_t default_count(size_t size)
{
    if (size <= 256)
        return 3000000;
    if (size <= 8192)
        return 600000;
    if (size <= 131072)
        return 60000;
    return 4000;
}

/* Runs with a reference alternate (A B A B ...) and report the median of the
 * pairwise ratios, measured in the same minute on this noisy machine: ipc
 * runs against the same API in process (vs_inproc), typed float vectors
 * against raw records of the same bytes (vs_raw). */
static void run_spsc(const struct config *c, enum bench_transport t, size_t size, enum bench_api api)
{
    static const char *api_names[] = {"single", "batch", "typed-f32-vector", "array32"};
    double mps[MAX_RUNS], gbps[MAX_RUNS], ratio[MAX_RUNS];
    int vs_inproc = t == BENCH_IPC, vs_raw = api == BENCH_TYPED;
    /* --dynamic: dynamic rings against static ones of the same initial size */
    int vs_static = bench_dynamic && t == BENCH_MEMORY && !vs_raw;
    /* --publish: handles that publish their counters (PSYNE_F_PUBLISH)
     * against the same handles that do not */
    int vs_unpublished = bench_publish && !vs_raw && !vs_static;
    uint32_t flags = bench_channel_flags, published = flags | (vs_unpublished ? PSYNE_F_PUBLISH : 0);
    if (vs_unpublished)
        vs_inproc = 0;
    const struct psyne_dynamic *dynamic = bench_dynamic;
    enum bench_transport ref_t = vs_inproc ? BENCH_MEMORY : t;
    enum bench_api ref_api = vs_raw ? BENCH_SINGLE : api;
    struct tput_result r, ref;
    bench_progress_run(0, c->runs);
    bench_channel_flags = published;
    psyne_spsc_tput_as(t, size, warm_count(c, default_count(size)), api, c->pin, &r);
    uint64_t count = run_count(c, default_count(size), r.mps);
    for (int i = 0; i < c->runs; i++) {
        bench_progress_run(i + 1, c->runs);
        bench_channel_flags = published;
        perf_begin(c);
        psyne_spsc_tput_as(t, size, count, api, c->pin, &r);
        perf_end(c, count);
        bench_channel_flags = flags;
        mps[i] = r.mps;
        gbps[i] = r.gbps;
        if (vs_inproc || vs_raw || vs_static || vs_unpublished) {
            bench_dynamic = vs_static ? NULL : dynamic;
            psyne_spsc_tput_as(ref_t, size, count, ref_api, c->pin, &ref);
            bench_dynamic = dynamic;
            ratio[i] = r.mps / ref.mps;
        }
    }
    double lo = bench_min(mps, c->runs), hi = bench_max(mps, c->runs);
    bench_out("system=%s workload=%s size=%zu mps=%.0f gbps=%.3f mps_min=%.0f mps_max=%.0f api=%s runs=%d count=%llu",
              vs_raw           ? "psyne-typed"
              : vs_static      ? "psyne-dynamic"
              : vs_unpublished ? "psyne-published"
                               : "psyne",
              t == BENCH_IPC ? "ipc-spsc-tput" : "inproc-spsc-tput", size, bench_median(mps, c->runs),
              bench_median(gbps, c->runs), lo, hi, api_names[api], c->runs, (unsigned long long)count);
    if (vs_inproc || vs_raw || vs_static || vs_unpublished)
        bench_out(" %s=%.3f",
                  vs_inproc        ? "vs_inproc"
                  : vs_raw         ? "vs_raw"
                  : vs_unpublished ? "vs_unpublished"
                                   : "vs_static",
                  bench_median(ratio, c->runs));
    if (bench_capacity)
        bench_out(" capacity=%llu", (unsigned long long)bench_capacity);
    if (bench_copy_check && t == BENCH_MEMORY) /* every message of every run was read where it was written */
        bench_out(" copy_check=pass");
    perf_out(c, "msg");
    bench_out_end();
}

/* dynamic-resize: one grow and one shrink of a dynamic ring of `size`
 * bytes, next to a memcpy of as many bytes (what a copying resize costs at
 * least); medians of alternating runs. */
static void run_resize(const struct config *c, size_t size)
{
    size = psyne_dynamic_resize_capacity(size);
    int runs = c->runs * 4 < MAX_RUNS ? c->runs * 4 : MAX_RUNS; /* one resize is short: more samples */
    double grow[MAX_RUNS], shrink[MAX_RUNS], copy[MAX_RUNS], grow_ratio[MAX_RUNS], shrink_ratio[MAX_RUNS];
    double grow_slabs[MAX_RUNS], shrink_slabs[MAX_RUNS], slabs_ratio[MAX_RUNS];
    double grow_ipc[MAX_RUNS], shrink_ipc[MAX_RUNS];
    struct resize_result r;
    bench_progress_run(0, runs);
    psyne_slabs *slabs = psyne_dynamic_resize_slabs(size);
    psyne_dynamic_resize(size, slabs, &r); /* warm-up: the slabs' ranges have served rings before */
    for (int i = 0; i < runs; i++) {
        bench_progress_run(i + 1, runs);
        psyne_dynamic_resize(size, slabs, &r);
        grow[i] = r.grow_ns;
        shrink[i] = r.shrink_ns;
        copy[i] = r.copy_ns;
        grow_ratio[i] = r.grow_ns / r.copy_ns;
        shrink_ratio[i] = r.shrink_ns / r.copy_ns;
        grow_slabs[i] = r.grow_slabs_ns;
        shrink_slabs[i] = r.shrink_slabs_ns;
        slabs_ratio[i] = (r.grow_slabs_ns + r.shrink_slabs_ns) / (r.grow_ns + r.shrink_ns);
        grow_ipc[i] = r.grow_ipc_ns;
        shrink_ipc[i] = r.shrink_ipc_ns;
    }
    psyne_slabs_destroy(slabs);
    bench_out("system=psyne workload=dynamic-resize size=%zu grow_us=%.1f shrink_us=%.1f copy_us=%.1f "
              "grow_vs_copy=%.3f shrink_vs_copy=%.3f grow_slabs_us=%.1f shrink_slabs_us=%.1f slabs_vs_own=%.3f "
              "grow_ipc_us=%.1f shrink_ipc_us=%.1f runs=%d",
              size, bench_median(grow, runs) / 1e3, bench_median(shrink, runs) / 1e3, bench_median(copy, runs) / 1e3,
              bench_median(grow_ratio, runs), bench_median(shrink_ratio, runs), bench_median(grow_slabs, runs) / 1e3,
              bench_median(shrink_slabs, runs) / 1e3, bench_median(slabs_ratio, runs),
              bench_median(grow_ipc, runs) / 1e3, bench_median(shrink_ipc, runs) / 1e3, runs);
    bench_out_end();
}

/* --histogram and --hgrm: the distribution of every measured round trip of
 * a result. */
static struct bench_hist rtt_all;

static void hist_keep(const struct config *c)
{
    if ((c->histogram || c->hgrm) && bench_last_round_trips())
        bench_hist_merge(&rtt_all, bench_last_round_trips());
}

static void hist_print(const struct config *c, const char *workload, size_t size)
{
    char what[96];
    snprintf(what, sizeof what, "%s %zu B round trips of all %d runs", workload, size, c->runs);
    if (c->histogram)
        bench_hist_print(&rtt_all, what, c->json ? stderr : stdout); /* JSON lines stay JSON */
    if (c->hgrm) {                                                   /* appended: one block per result */
        FILE *f = fopen(c->hgrm, "a");
        if (!f || bench_hist_write_hgrm(&rtt_all, what, f) != 0 || fclose(f) != 0) {
            fprintf(stderr, "psyne_bench: --hgrm %s: cannot write it\n", c->hgrm);
            exit(1);
        }
    }
    bench_hist_reset(&rtt_all);
}

/* Round trips per measured run: --iterations, or what fits --duration at
 * the warm-up's median (the mean is a little higher: runs are a little
 * longer than asked). */
static uint64_t trip_count(const struct config *c, uint64_t by_default, const struct lat_result *warm)
{
    return run_count(c, by_default, warm->p50 ? 1e9 / (double)warm->p50 : 0);
}

/* tcp-*: the handles' options that are not the defaults (--tcp-wait, --max-peers). */
static void tcp_options_out(void)
{
    if (bench_tcp_wait == PSYNE_WAIT_SPIN)
        bench_out(" wait=spin");
    if (bench_tcp_max_peers)
        bench_out(" max_peers=%u", bench_tcp_max_peers);
}

/* The ping-pong workloads, each with the references it alternates with:
 * ipc against the same run in process (p50_vs_inproc), tcp against a raw
 * socket pair blocking in recv() (p50_vs_raw_socket) and one busy-polling
 * recv() (p50_vs_raw_socket_busy: psyne spins on the socket for the ring's
 * spin_ns + yield_ns before it sleeps, so this is the like-for-like); inproc
 * has none. */
enum pingpong_kind { PINGPONG_INPROC, PINGPONG_IPC, PINGPONG_TCP };
static const char *pingpong_workloads[] = {"inproc-pingpong", "ipc-pingpong", "tcp-pingpong"};
#define MAX_REFERENCES 2

/* With --pingpong-wait epoll, inproc and ipc alternate with the same
 * transport waiting on the futex as the library does by default (adaptive:
 * spin, then sleep; p50_vs_futex) and sleeping at once (p50_vs_futex_sleep:
 * the same hand-off through the kernel as epoll's). */
static const char *ratio_keys[][MAX_REFERENCES] = {
    {NULL}, {"p50_vs_inproc"}, {"p50_vs_raw_socket", "p50_vs_raw_socket_busy"}};
static const char *epoll_ratio_keys[MAX_REFERENCES] = {"p50_vs_futex", "p50_vs_futex_sleep"};

static const char *ratio_key(enum pingpong_kind k, int j)
{
    return k != PINGPONG_TCP && bench_pingpong_wait == BENCH_WAIT_EPOLL ? epoll_ratio_keys[j] : ratio_keys[k][j];
}

/* reference 0: psyne; 1, 2: the references in the order of ratio_key */
static void pingpong_once(enum pingpong_kind k, int reference, size_t size, uint64_t trips, int pin,
                          struct lat_result *out)
{
    if (k == PINGPONG_TCP && reference)
        raw_tcp_pingpong(size, trips, reference == 2, out);
    else if (k == PINGPONG_TCP)
        psyne_tcp_pingpong(size, trips, out);
    else if (bench_pingpong_wait == BENCH_WAIT_EPOLL)
        psyne_pingpong(k == PINGPONG_IPC ? BENCH_IPC : BENCH_MEMORY, size, trips, pin,
                       reference == 0   ? BENCH_WAIT_EPOLL
                       : reference == 1 ? PSYNE_WAIT_ADAPTIVE
                                        : BENCH_WAIT_SLEEP,
                       out);
    else
        psyne_pingpong(k == PINGPONG_IPC && !reference ? BENCH_IPC : BENCH_MEMORY, size, trips, pin,
                       bench_pingpong_wait, out);
}

static void run_pingpong(const struct config *c, enum pingpong_kind k, size_t size)
{
    uint64_t by_default = k == PINGPONG_TCP ? 20000 : 200000;
    double p50[MAX_RUNS], ratio[MAX_REFERENCES][MAX_RUNS];
    struct lat_result r, ref, run[MAX_RUNS], med;
    bench_progress_run(0, c->runs);
    pingpong_once(k, 0, size, warm_count(c, by_default), c->pin, &r);
    uint64_t trips = trip_count(c, by_default, &r);
    for (int i = 0; i < c->runs; i++) {
        bench_progress_run(i + 1, c->runs);
        perf_begin(c);
        pingpong_once(k, 0, size, trips, c->pin, &run[i]);
        perf_end(c, trips + bench_warmup_trips(trips));
        hist_keep(c);
        p50[i] = (double)run[i].p50;
        for (int j = 0; j < MAX_REFERENCES && ratio_key(k, j); j++) {
            pingpong_once(k, j + 1, size, trips, c->pin, &ref);
            ratio[j][i] = (double)run[i].p50 / (double)ref.p50;
        }
    }
    bench_lat_median(run, c->runs, &med);
    char fields[BENCH_RTT_FIELDS_LEN];
    bench_out("system=psyne workload=%s size=%zu %s rtt_p50_min_ns=%.0f rtt_p50_max_ns=%.0f runs=%d round_trips=%llu",
              pingpong_workloads[k], size, bench_rtt_fields(&med, fields), bench_min(p50, c->runs),
              bench_max(p50, c->runs), c->runs, (unsigned long long)trips);
    for (int j = 0; j < MAX_REFERENCES && ratio_key(k, j); j++)
        bench_out(" %s=%.3f", ratio_key(k, j), bench_median(ratio[j], c->runs));
    if (k == PINGPONG_TCP)
        tcp_options_out();
    else if (bench_pingpong_wait == BENCH_WAIT_EPOLL)
        bench_out(" wait=epoll");
    perf_out(c, "rtt");
    bench_out_end();
    hist_print(c, pingpong_workloads[k], size);
}

static const char *mode_names[] = {"spsc", "spmc", "mpsc", "mpmc", "broadcast"};

/* inproc-mpmc-tput on one ring mode: the producers and consumers the mode
 * allows (one producer in SPSC, SPMC and BROADCAST; one consumer in SPSC and
 * MPSC), else --producers and --consumers. */
static void run_many(const struct config *c, size_t size, int mode)
{
    int producers =
        mode == PSYNE_MODE_SPSC || mode == PSYNE_MODE_SPMC || mode == PSYNE_MODE_BROADCAST ? 1 : c->producers;
    int consumers = mode == PSYNE_MODE_SPSC || mode == PSYNE_MODE_MPSC ? 1 : c->consumers;
    double mps[MAX_RUNS];
    struct tput_result r;
    uint64_t sleeps = 0, wakeups = 0; /* of the measured runs: how the threads waited */
    bench_progress_run(0, c->runs);
    psyne_many_tput(size, warm_count(c, default_count(size)) + 2, mode, producers, consumers, &r);
    uint64_t count = run_count(c, default_count(size), r.mps);
    for (int i = 0; i < c->runs; i++) {
        bench_progress_run(i + 1, c->runs);
        perf_begin(c);
        psyne_many_tput(size, count, mode, producers, consumers, &r);
        perf_end(c, count);
        mps[i] = r.mps;
        sleeps += r.sleeps;
        wakeups += r.wakeups;
    }
    double lo = bench_min(mps, c->runs), hi = bench_max(mps, c->runs);
    bench_out("system=psyne workload=inproc-mpmc-tput size=%zu mps=%.0f mps_min=%.0f mps_max=%.0f mode=%s producers=%d "
              "consumers=%d runs=%d count=%llu sleeps=%llu wakeups=%llu leases=%d",
              size, bench_median(mps, c->runs), lo, hi, mode_names[mode], producers, consumers, c->runs,
              (unsigned long long)count, (unsigned long long)sleeps, (unsigned long long)wakeups,
              (bench_channel_flags & PSYNE_F_LEASES) && (mode == PSYNE_MODE_MPSC || mode == PSYNE_MODE_MPMC));
    perf_out(c, "msg");
    bench_out_end();
}

/* tcp-tput: psyne's tcp:// against a raw socket pair doing the same job,
 * alternately (vs_raw = median of the pairwise ratios). */
static void run_tcp_tput(const struct config *c, size_t size)
{
    double mps[MAX_RUNS], gbps[MAX_RUNS], ratio[MAX_RUNS], per_send[MAX_RUNS];
    struct tcp_tput_result r, ref;
    bench_progress_run(0, c->runs);
    psyne_tcp_tput(size, warm_count(c, default_count(size) / 3 + 1), &r);
    uint64_t count = run_count(c, default_count(size) / 3 + 1, r.mps);
    for (int i = 0; i < c->runs; i++) {
        bench_progress_run(i + 1, c->runs);
        perf_begin(c);
        psyne_tcp_tput(size, count, &r);
        perf_end(c, count);
        raw_tcp_tput(size, count, &ref);
        mps[i] = r.mps;
        gbps[i] = r.gbps;
        per_send[i] = r.msgs_per_send;
        ratio[i] = r.mps / ref.mps;
    }
    double lo = bench_min(mps, c->runs), hi = bench_max(mps, c->runs);
    bench_out("system=psyne workload=tcp-tput size=%zu mps=%.0f gbps=%.3f mps_min=%.0f mps_max=%.0f "
              "msgs_per_send=%.1f runs=%d count=%llu vs_raw_socket=%.3f",
              size, bench_median(mps, c->runs), bench_median(gbps, c->runs), lo, hi, bench_median(per_send, c->runs),
              c->runs, (unsigned long long)count, bench_median(ratio, c->runs));
    tcp_options_out();
    perf_out(c, "msg");
    bench_out_end();
}

/* Opens a probe ring with the run's placement options and says what it got:
 * huge pages fall back silently by design, so the reader must be told. */
static int describe_placement(void)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.flags = bench_channel_flags;
    o.numa_node = bench_numa_node;
    o.capacity = 4u << 20;
    psyne_channel *ch;
    int rc = psyne_channel_open(&ch, "memory://psyne-bench-placement", &o);
    if (rc) {
        fprintf(stderr, "psyne_bench: placement options refused: %s (%s)\n", psyne_strerror(rc), psyne_last_error());
        return rc;
    }
    struct psyne_stats st;
    psyne_channel_stats(ch, &st);
    static const char *pages[] = {"normal", "transparent huge", "explicit huge"};
    printf("# ring memory (a 4 MiB probe ring): %s pages of %llu bytes, NUMA node %d, %s\n", pages[st.pages],
           (unsigned long long)st.page_size, st.numa_node, st.locked ? "locked" : "not locked");
    psyne_channel_close(ch);
    return 0;
}

/* ---- what a run does: the list of results it will print ---- */

enum job_kind { JOB_SPSC, JOB_PINGPONG, JOB_MANY, JOB_TCP_TPUT, JOB_RESIZE };

struct job {
    enum job_kind kind;
    enum bench_transport transport; /* JOB_SPSC */
    size_t size;
    enum bench_api api; /* JOB_SPSC */
    int mode;           /* JOB_MANY: PSYNE_MODE_*; JOB_PINGPONG: enum pingpong_kind */
};

#define MAX_JOBS 256

/* The sizes a workload runs: --size, else its own. */
static int sizes_for(const struct config *c, const size_t *defaults, int n_defaults, const size_t **sizes)
{
    *sizes = c->n_sizes ? c->sizes : defaults;
    return c->n_sizes ? c->n_sizes : n_defaults;
}

static int add(struct job *jobs, int n, struct job j)
{
    if (n < MAX_JOBS)
        jobs[n++] = j;
    return n;
}

static int plan(const struct config *c, struct job *jobs)
{
    static const size_t inproc_sizes[] = {64, 4096, 65536, 1048576}, ipc_sizes[] = {64, 4096, 1048576},
                        tcp_sizes[] = {64, 4096, 1048576}, small[] = {64}, resize_sizes[] = {1u << 20, 64u << 20};
    const size_t *sizes;
    int n = 0;
    for (int k = 0; k < 2; k++) {
        enum bench_transport t = k ? BENCH_IPC : BENCH_MEMORY;
        if (!wants(c, k ? "ipc-spsc-tput" : "inproc-spsc-tput"))
            continue;
        int m = k ? sizes_for(c, ipc_sizes, 3, &sizes) : sizes_for(c, inproc_sizes, 4, &sizes);
        for (int i = 0; i < m; i++) {
            if (c->api == 0 || c->api == 1)
                n = add(jobs, n, (struct job){JOB_SPSC, t, sizes[i], BENCH_SINGLE, 0});
            if (c->api == 2 || (c->api == 0 && sizes[i] <= 256))
                n = add(jobs, n, (struct job){JOB_SPSC, t, sizes[i], BENCH_BATCH, 0});
            if (t == BENCH_MEMORY && sizes[i] % sizeof(float) == 0 &&
                (c->api == 3 || (c->api == 0 && sizes[i] >= 4096)))
                n = add(jobs, n, (struct job){JOB_SPSC, t, sizes[i], BENCH_TYPED, 0});
            if (c->api == 4 && sizes[i] <= 4096)
                n = add(jobs, n, (struct job){JOB_SPSC, t, sizes[i], BENCH_ARRAY, 0});
        }
    }
    if (wants(c, "inproc-pingpong"))
        for (int i = 0, m = sizes_for(c, small, 1, &sizes); i < m; i++)
            n = add(jobs, n, (struct job){JOB_PINGPONG, BENCH_MEMORY, sizes[i], 0, PINGPONG_INPROC});
    if (wants(c, "inproc-mpmc-tput"))
        for (int i = 0, m = sizes_for(c, small, 1, &sizes); i < m; i++)
            for (int k = 0; k < (c->n_modes ? c->n_modes : 1); k++)
                n = add(jobs, n,
                        (struct job){JOB_MANY, BENCH_MEMORY, sizes[i], 0, c->n_modes ? c->modes[k] : PSYNE_MODE_MPMC});
    if (wants(c, "ipc-pingpong"))
        for (int i = 0, m = sizes_for(c, small, 1, &sizes); i < m; i++)
            n = add(jobs, n, (struct job){JOB_PINGPONG, BENCH_MEMORY, sizes[i], 0, PINGPONG_IPC});
    if (wants(c, "tcp-tput"))
        for (int i = 0, m = sizes_for(c, tcp_sizes, 3, &sizes); i < m; i++)
            n = add(jobs, n, (struct job){JOB_TCP_TPUT, BENCH_MEMORY, sizes[i], 0, 0});
    if (wants(c, "tcp-pingpong"))
        for (int i = 0, m = sizes_for(c, small, 1, &sizes); i < m; i++)
            n = add(jobs, n, (struct job){JOB_PINGPONG, BENCH_MEMORY, sizes[i], 0, PINGPONG_TCP});
    if (wants(c, "dynamic-resize"))
        for (int i = 0, m = sizes_for(c, resize_sizes, 2, &sizes); i < m; i++)
            n = add(jobs, n, (struct job){JOB_RESIZE, BENCH_MEMORY, sizes[i], 0, 0});
    return n;
}

static void job_label(const struct job *j, char *buf, size_t len)
{
    static const char *apis[] = {"single", "batch", "typed", "array"};
    switch (j->kind) {
    case JOB_SPSC:
        snprintf(buf, len, "%s-spsc-tput %zu B %s", j->transport == BENCH_IPC ? "ipc" : "inproc", j->size,
                 apis[j->api]);
        break;
    case JOB_PINGPONG: snprintf(buf, len, "%s %zu B", pingpong_workloads[j->mode], j->size); break;
    case JOB_MANY: snprintf(buf, len, "inproc-mpmc-tput %zu B %s", j->size, mode_names[j->mode]); break;
    case JOB_TCP_TPUT: snprintf(buf, len, "tcp-tput %zu B", j->size); break;
    case JOB_RESIZE: snprintf(buf, len, "dynamic-resize %zu B", j->size); break;
    }
}

static void run_job(const struct config *c, const struct job *j)
{
    switch (j->kind) {
    case JOB_SPSC: run_spsc(c, j->transport, j->size, j->api); break;
    case JOB_PINGPONG: run_pingpong(c, (enum pingpong_kind)j->mode, j->size); break;
    case JOB_MANY: run_many(c, j->size, j->mode); break;
    case JOB_TCP_TPUT: run_tcp_tput(c, j->size); break;
    case JOB_RESIZE: run_resize(c, j->size); break;
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: psyne_bench [options]\n"
            "  --workload LIST    inproc-spsc-tput,inproc-pingpong,inproc-mpmc-tput,ipc-spsc-tput,ipc-pingpong,\n"
            "                     tcp-tput,tcp-pingpong,dynamic-resize (default: all; ipc-* runs alternate with inproc "
            "runs and\n"
            "                     add vs_inproc ratios, tcp-* with a raw socket pair over 127.0.0.1: vs_raw_socket)\n"
            "  --transport LIST   memory,ipc,tcp: only the workloads of these transports (memory = inproc-* and\n"
            "                     dynamic-resize)\n"
            "  --mode LIST        spsc,spmc,mpsc,mpmc,broadcast: the ring modes inproc-mpmc-tput runs on (default\n"
            "                     mpmc); a single-producer mode runs 1 producer, a single-consumer mode 1 consumer,\n"
            "                     broadcast delivers every message to every consumer (mps counts messages sent)\n"
            "  --size LIST        payload bytes (default: 64,4096,65536,1048576 for inproc-spsc-tput,\n"
            "                     64,4096,1048576 for ipc-spsc-tput and tcp-tput, 64 otherwise)\n"
            "  --iterations N     messages (round trips) per run (default: by size, about 0.1-0.3 s)\n"
            "  --duration S       seconds per measured run instead: the count comes from the warm-up's rate\n"
            "  --runs N           measured runs; the median is reported (default 5)\n"
            "  --api single|batch|typed|array  API for *-spsc-tput (default: single; also batch at <= 256 B\n"
            "                     and, inproc, typed float vectors against raw records at >= 4 KiB; array:\n"
            "                     32 payloads of --size <= 4096 side by side in one message: api=array32)\n"
            "  --producers N --consumers N   inproc-mpmc-tput threads (default 2 and 2)\n"
            "  --pin P,C          pin the producer (pinger) to CPU P and the consumer (ponger) to CPU C\n"
            "                     (default 0,1)\n"
            "  --no-pin           do not pin producer and consumer\n"
            "  --pingpong-wait spin|adaptive|epoll  how inproc- and ipc-pingpong's psyne channels wait (default\n"
            "                     spin: never sleep; adaptive: the library default, spin with yields then sleep;\n"
            "                     with --pin 0,0 it shows a hand-off between two threads sharing one CPU; epoll:\n"
            "                     an event loop's wait on the readiness descriptors, against the futex waits\n"
            "                     in the same run: p50_vs_futex (adaptive), p50_vs_futex_sleep (no spin))\n"
            "  --tcp-wait spin|adaptive  how tcp-*'s psyne handles wait (default adaptive; RESULT wait=spin)\n"
            "  --max-peers N      tcp-*: the listening end serves up to N clients (max_peers) and the ponger\n"
            "                     replies with psyne_claim_to; RESULT max_peers=N (default 0: a channel link)\n"
            "  --hugepages        back rings with huge pages (explicit if reserved, else transparent, else normal;\n"
            "                     the run prints which it got); rings are then at least 2 MiB\n"
            "  --leases           MP producers claim from leases (PSYNE_F_LEASES: inproc-mpmc-tput in mpsc and\n"
            "                     mpmc modes; order across producers is not kept)\n"
            "  --mlock            lock ring memory (PSYNE_F_MLOCK)\n"
            "  --numa-node N      allocate ring memory on NUMA node N\n"
            "  --dynamic[=fixed]  inproc-spsc-tput on dynamic rings (default configuration), alternating with\n"
            "                     static rings of the same initial size: vs_static. =fixed: a dynamic ring that\n"
            "                     may not resize (min = max = capacity), so vs_static is the cost of its usage\n"
            "                     tracking alone\n"
            "  --capacity BYTES   ring bytes of the inproc-* and ipc-* channels (default: 16 messages, at\n"
            "                     least 256 KiB, and for large messages at most 8 MiB or 4 messages; RESULT\n"
            "                     capacity=BYTES)\n"
            "  --publish          *-spsc-tput with both handles publishing their counters for psyne-stat\n"
            "                     (PSYNE_F_PUBLISH), alternating with handles that do not: vs_unpublished\n"
            "  --listen ADDR:PORT  two machines: wait there for psyne_bench --connect, run what it asks\n"
            "                     (tcp-tput: receive and time; tcp-pingpong: answer) and print the results\n"
            "  --connect ADDR:PORT  two machines: run --workload tcp-tput,tcp-pingpong (default both), --size,\n"
            "                     --iterations and --runs against psyne_bench --listen there; RESULT two_host=1\n"
            "  --histogram        after each *-pingpong result, the distribution of its round trips\n"
            "  --hgrm FILE        write each *-pingpong result's round trips (all runs) to FILE in\n"
            "                     HdrHistogram's percentile-distribution text format (.hgrm, values in\n"
            "                     microseconds), for its plotter; the file is truncated first, and each\n"
            "                     result is a block of its own (one workload and size: one histogram)\n"
            "  --perf             counters per message (round trip) of psyne's runs, setup included: CPU time,\n"
            "                     context switches, page faults, and instructions, cycles and cache misses where\n"
            "                     the machine has hardware counters (perf_event_open, as perf stat)\n"
            "  --json             one JSON object per result (the RESULT line's keys) instead of RESULT lines\n"
            "  --table, --no-table  a table of all results at the end (default: when stdout is a terminal)\n"
            "  --no-copy-check    prove zero copy in inproc-spsc-tput: the consumer must read every message at\n"
            "                     the address the producer wrote it (copy_check=pass), else the run aborts\n"
            "  --inject-copy N    self-test of --no-copy-check: the consumer reads message N (of at most\n"
            "                     64 bytes, --api single) from a copy; the run must abort\n"
            "  --inject-loss N    self-test: writers skip sequence N as if it were lost; the run must abort\n"
            "A progress line is shown on stderr when it is a terminal.\n");
}

/* Parses a comma list of names into bits (transports) or indexes (modes);
 * -1 on an unknown name. */
static int parse_transports(char *list, unsigned *out)
{
    for (char *save, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "memory") || !strcmp(t, "inproc"))
            *out |= T_MEMORY;
        else if (!strcmp(t, "ipc"))
            *out |= T_IPC;
        else if (!strcmp(t, "tcp"))
            *out |= T_TCP;
        else
            return -1;
    }
    return 0;
}

static int parse_modes(char *list, struct config *c)
{
    for (char *save, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int m = 0;
        while (m < 5 && strcmp(t, mode_names[m]))
            m++;
        if (m == 5 || c->n_modes == 8)
            return -1;
        c->modes[c->n_modes++] = m; /* PSYNE_MODE_* in mode_names order */
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct psyne_dynamic default_dynamic; /* zero: every default */
    struct config c = {.runs = 5, .pin = 1, .producers = 2, .consumers = 2};
    int table = -1;            /* -1: when stdout is a terminal */
    bench_remove_on_signals(); /* Ctrl-C leaves no ipc:// segment behind */
    static const struct option opts[] = {{"workload", required_argument, 0, 'w'},
                                         {"size", required_argument, 0, 's'},
                                         {"iterations", required_argument, 0, 'i'},
                                         {"runs", required_argument, 0, 'r'},
                                         {"api", required_argument, 0, 'a'},
                                         {"producers", required_argument, 0, 'p'},
                                         {"consumers", required_argument, 0, 'c'},
                                         {"no-pin", no_argument, 0, 'n'},
                                         {"json", no_argument, 0, 'j'},
                                         {"inject-loss", required_argument, 0, 'l'},
                                         {"pin", required_argument, 0, 'P'},
                                         {"hugepages", no_argument, 0, 'H'},
                                         {"leases", no_argument, 0, 'L'},
                                         {"mlock", no_argument, 0, 'M'},
                                         {"dynamic", optional_argument, 0, 'D'},
                                         {"no-copy-check", no_argument, 0, 'C'},
                                         {"inject-copy", required_argument, 0, 'I'},
                                         {"numa-node", required_argument, 0, 'N'},
                                         {"transport", required_argument, 0, 't'},
                                         {"mode", required_argument, 0, 'm'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"histogram", no_argument, 0, 'g'},
                                         {"hgrm", required_argument, 0, 'G'},
                                         {"listen", required_argument, 0, 'A'},
                                         {"connect", required_argument, 0, 'K'},
                                         {"publish", no_argument, 0, 'B'},
                                         {"capacity", required_argument, 0, 'Z'},
                                         {"perf", no_argument, 0, 'f'},
                                         {"table", no_argument, 0, 'T'},
                                         {"no-table", no_argument, 0, 'U'},
                                         {"pingpong-wait", required_argument, 0, 'W'},
                                         {"tcp-wait", required_argument, 0, 'X'},
                                         {"max-peers", required_argument, 0, 'Y'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'w': c.workloads = optarg; break;
        case 's':
            for (char *tok = strtok(optarg, ","); tok && c.n_sizes < 16; tok = strtok(NULL, ","))
                c.sizes[c.n_sizes++] = strtoull(tok, NULL, 10);
            break;
        case 'i': c.iterations = strtoull(optarg, NULL, 10); break;
        case 'r': c.runs = atoi(optarg); break;
        case 'a':
            c.api = !strcmp(optarg, "single")  ? 1
                    : !strcmp(optarg, "batch") ? 2
                    : !strcmp(optarg, "typed") ? 3
                    : !strcmp(optarg, "array") ? 4
                                               : 0;
            break;
        case 'p': c.producers = atoi(optarg); break;
        case 'c': c.consumers = atoi(optarg); break;
        case 'n': c.pin = 0; break;
        case 'W':
        case 'X':
            if (opt == 'W' && !strcmp(optarg, "epoll")) {
                bench_pingpong_wait = BENCH_WAIT_EPOLL;
                break;
            }
            if (strcmp(optarg, "spin") && strcmp(optarg, "adaptive")) {
                usage(stderr);
                return 2;
            }
            *(opt == 'W' ? &bench_pingpong_wait : &bench_tcp_wait) =
                strcmp(optarg, "spin") ? PSYNE_WAIT_ADAPTIVE : PSYNE_WAIT_SPIN;
            break;
        case 'Y': bench_tcp_max_peers = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'P':
            if (sscanf(optarg, "%d,%d", &bench_cpu_producer, &bench_cpu_consumer) != 2 || bench_cpu_producer < 0 ||
                bench_cpu_consumer < 0) {
                usage(stderr);
                return 2;
            }
            c.pin = 1;
            break;
        case 'H': bench_channel_flags |= PSYNE_F_HUGEPAGES; break;
        case 'L': bench_channel_flags |= PSYNE_F_LEASES; break;
        case 'B': bench_publish = 1; break;
        case 'Z': {
            char *end;
            double v = strtod(optarg, &end);
            v *= *end == 'k' || *end == 'K' ? 1024 : *end == 'm' || *end == 'M' ? 1048576 : 1;
            if (v < 4096 || v > (double)PSYNE_MAX_CAPACITY) {
                fprintf(stderr, "psyne_bench: --capacity takes 4096 bytes to PSYNE_MAX_CAPACITY (k, M suffixes)\n");
                return 2;
            }
            bench_capacity = (uint64_t)v;
            break;
        }
        case 'C': bench_copy_check_enable(); break;
        case 'I': bench_inject_copy_at = strtoull(optarg, NULL, 10); break;
        case 'D':
            if (optarg && strcmp(optarg, "fixed")) {
                usage(stderr);
                return 2;
            }
            bench_dynamic = &default_dynamic;
            bench_dynamic_fixed = optarg != NULL;
            break;
        case 'M': bench_channel_flags |= PSYNE_F_MLOCK; break;
        case 'N':
            bench_channel_flags |= PSYNE_F_NUMA_BIND;
            bench_numa_node = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 't':
            if (parse_transports(optarg, &c.transports)) {
                fprintf(stderr, "psyne_bench: --transport takes memory, ipc and tcp\n");
                return 2;
            }
            break;
        case 'm':
            if (parse_modes(optarg, &c)) {
                fprintf(stderr, "psyne_bench: --mode takes spsc, spmc, mpsc, mpmc and broadcast\n");
                return 2;
            }
            break;
        case 'd': c.duration = strtod(optarg, NULL); break;
        case 'g': c.histogram = 1; break;
        case 'G': {
            c.hgrm = optarg;
            FILE *f = fopen(c.hgrm, "w"); /* truncated once: the results are appended */
            if (!f) {
                fprintf(stderr, "psyne_bench: --hgrm %s: %s\n", c.hgrm, strerror(errno));
                return 2;
            }
            fclose(f);
            break;
        }
        case 'A': c.listen_addr = optarg; break;
        case 'K': c.connect_addr = optarg; break;
        case 'f': c.perf = 1; break;
        case 'T': table = 1; break;
        case 'U': table = 0; break;
        case 'j': c.json = 1; break;
        case 'l': bench_inject_loss_at = strtoull(optarg, NULL, 10); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (c.runs < 1 || c.runs > MAX_RUNS || c.producers < 1 || c.consumers < 1 || c.producers > 16 || c.consumers > 16 ||
        c.duration < 0 || (c.duration > 0 && c.iterations)) {
        if (c.duration > 0 && c.iterations)
            fprintf(stderr, "psyne_bench: --duration and --iterations both size a run: give one\n");
        usage(stderr);
        return 2;
    }
    bench_output_json(c.json);
    bench_output_describe(argc, argv);
    if (c.listen_addr && c.connect_addr) {
        fprintf(stderr, "psyne_bench: --listen or --connect, not both\n");
        return 2;
    }
    if (c.listen_addr)
        return bench_remote_listen(c.listen_addr);
    if (c.connect_addr) {
        struct remote_plan plan = {c.workloads, c.sizes, c.n_sizes, c.iterations, c.runs};
        return bench_remote_connect(c.connect_addr, &plan);
    }
    if (table < 0)
        table = !c.json && isatty(STDOUT_FILENO);
    bench_hist_reset(&rtt_all);
    bench_perf_init(&perf);
    if (argc == 1)
        printf("# psyne_bench: the default set on memory:// channels (threads of this process), then\n"
               "# on ipc:// channels (a producer or ponger process beside this one; vs_inproc = ipc / inproc,\n"
               "# median of alternating pairs) and on tcp:// over 127.0.0.1 (vs_raw_socket: against a plain\n"
               "# socket pair doing the same job).\n"
               "# Each RESULT line is the median of %d runs after a warm-up run: mps = messages/s,\n"
               "# gbps = payload GB/s, rtt_* = round-trip percentiles in ns. The producer writes every\n"
               "# payload byte in place and the consumer checks the sequence number and reads every byte.\n"
               "# Absolute figures move with CPU placement and load (more so on a shared or virtual\n"
               "# machine): compare systems with benchmarks/compare (ratios measured in one run).\n",
               c.runs);
    if (c.perf) {
        const char *why;
        if (!bench_perf_hardware(&why))
            printf("# --perf: no hardware counters here (%s): CPU time, context switches and page faults only\n", why);
    }

    if ((bench_channel_flags & ~PSYNE_F_LEASES) && describe_placement() != 0)
        return 1;

    static struct job jobs[MAX_JOBS];
    int n = plan(&c, jobs);
    if (n == 0) {
        fprintf(stderr, "psyne_bench: no workload matches --workload and --transport\n");
        return 2;
    }
    for (int i = 0; i < n; i++) {
        char label[128];
        job_label(&jobs[i], label, sizeof label);
        bench_progress_job(i + 1, n, label);
        run_job(&c, &jobs[i]);
    }
    if (table)
        bench_table_print(stdout);
    return 0;
}
