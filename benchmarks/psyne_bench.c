/*
 * psyne_bench - runs the WORKLOADS.md workloads on psyne's memory:// and
 * ipc:// channels and prints one RESULT line per measurement (median of --runs runs after a
 * discarded warm-up run; min and max follow).
 *
 *   psyne_bench                          short default set, explained
 *   psyne_bench --iterations 1000000     every workload with 1e6 messages a run
 *   psyne_bench --workload inproc-spsc-tput --size 64,4096 --runs 9
 */
#define _GNU_SOURCE /* strtok_r */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "psyne.h"
#include "dynamic_workloads.h"
#include "tcp_workloads.h"
#include "workloads.h"

#define MAX_RUNS 64

struct config {
    const char *workloads; /* comma list, NULL = all */
    size_t sizes[16];
    int n_sizes;
    uint64_t iterations; /* 0 = per-size default */
    int runs;
    int pin;
    int producers, consumers;
    int api; /* 0 default (single; batch at <= 256 B; typed at >= 4 KiB), 1 single, 2 batch, 3 typed */
};

static int wants(const struct config *c, const char *workload)
{
    if (!c->workloads)
        return 1;
    const char *p = strstr(c->workloads, workload);
    size_t n = strlen(workload);
    return p && (p == c->workloads || p[-1] == ',') && (p[n] == 0 || p[n] == ',');
}

/* ---- output: RESULT lines (WORKLOADS.md), or with --json one JSON object
 * per line with the same keys (numbers as numbers) ---- */

static int json_out;
static char line[1024];
static size_t line_len;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + line_len, sizeof line - line_len, fmt, ap);
    va_end(ap);
    if (n > 0)
        line_len = line_len + (size_t)n < sizeof line ? line_len + (size_t)n : sizeof line - 1;
}

/* Prints the result collected by out() ("key=value key=value ..."). */
static void out_end(void)
{
    if (!json_out) {
        printf("RESULT %s\n", line);
    } else {
        printf("{");
        int first = 1;
        for (char *save, *kv = strtok_r(line, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
            char *eq = strchr(kv, '=');
            if (!eq)
                continue;
            *eq = 0;
            char *end;
            strtod(eq + 1, &end);
            int number = *end == 0 && end != eq + 1;
            printf("%s\"%s\": %s%s%s", first ? "" : ", ", kv, number ? "" : "\"", eq + 1, number ? "" : "\"");
            first = 0;
        }
        printf("}\n");
    }
    line_len = 0;
    line[0] = 0;
    fflush(stdout);
}

/* Messages per run when --iterations is not given: about 0.1-0.3 s a run. */
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
    static const char *api_names[] = {"single", "batch", "typed-f32-vector"};
    uint64_t count = c->iterations ? c->iterations : default_count(size);
    double mps[MAX_RUNS], gbps[MAX_RUNS], ratio[MAX_RUNS];
    int vs_inproc = t == BENCH_IPC, vs_raw = api == BENCH_TYPED;
    /* --dynamic: dynamic rings against static ones of the same initial size */
    int vs_static = bench_dynamic && t == BENCH_MEMORY && !vs_raw;
    const struct psyne_dynamic *dynamic = bench_dynamic;
    enum bench_transport ref_t = vs_inproc ? BENCH_MEMORY : t;
    enum bench_api ref_api = vs_raw ? BENCH_SINGLE : api;
    struct tput_result r, ref;
    psyne_spsc_tput_as(t, size, count / 10 + 1, api, c->pin, &r); /* warm-up */
    for (int i = 0; i < c->runs; i++) {
        psyne_spsc_tput_as(t, size, count, api, c->pin, &r);
        mps[i] = r.mps;
        gbps[i] = r.gbps;
        if (vs_inproc || vs_raw || vs_static) {
            bench_dynamic = vs_static ? NULL : dynamic;
            psyne_spsc_tput_as(ref_t, size, count, ref_api, c->pin, &ref);
            bench_dynamic = dynamic;
            ratio[i] = r.mps / ref.mps;
        }
    }
    double lo = bench_min(mps, c->runs), hi = bench_max(mps, c->runs);
    out("system=%s workload=%s size=%zu mps=%.0f gbps=%.3f mps_min=%.0f mps_max=%.0f "
        "api=%s runs=%d count=%llu",
        vs_raw ? "psyne-typed" : vs_static ? "psyne-dynamic" : "psyne", t == BENCH_IPC ? "ipc-spsc-tput" : "inproc-spsc-tput", size,
        bench_median(mps, c->runs), bench_median(gbps, c->runs), lo, hi, api_names[api], c->runs,
        (unsigned long long)count);
    if (vs_inproc || vs_raw || vs_static)
        out(" %s=%.3f", vs_inproc ? "vs_inproc" : vs_raw ? "vs_raw" : "vs_static", bench_median(ratio, c->runs));
    if (bench_copy_check && t == BENCH_MEMORY) /* every message of every run was read where it was written */
        out(" copy_check=pass");
    out_end();
}

/* dynamic-resize: one grow and one shrink of a dynamic ring of `size`
 * bytes, next to a memcpy of as many bytes (what a copying resize costs at
 * least); medians of alternating runs. */
static void run_resize(const struct config *c, size_t size)
{
    size = psyne_dynamic_resize_capacity(size);
    int runs = c->runs * 4 < MAX_RUNS ? c->runs * 4 : MAX_RUNS; /* one resize is short: more samples */
    double grow[MAX_RUNS], shrink[MAX_RUNS], copy[MAX_RUNS], grow_ratio[MAX_RUNS], shrink_ratio[MAX_RUNS];
    struct resize_result r;
    psyne_dynamic_resize(size, &r); /* warm-up */
    for (int i = 0; i < runs; i++) {
        psyne_dynamic_resize(size, &r);
        grow[i] = r.grow_ns;
        shrink[i] = r.shrink_ns;
        copy[i] = r.copy_ns;
        grow_ratio[i] = r.grow_ns / r.copy_ns;
        shrink_ratio[i] = r.shrink_ns / r.copy_ns;
    }
    out("system=psyne workload=dynamic-resize size=%zu grow_us=%.1f shrink_us=%.1f copy_us=%.1f "
        "grow_vs_copy=%.3f shrink_vs_copy=%.3f runs=%d",
        size, bench_median(grow, runs) / 1e3, bench_median(shrink, runs) / 1e3, bench_median(copy, runs) / 1e3,
        bench_median(grow_ratio, runs), bench_median(shrink_ratio, runs), runs);
    out_end();
}

static void run_pingpong(const struct config *c, enum bench_transport t, size_t size)
{
    uint64_t trips = c->iterations ? c->iterations : 200000;
    double p50[MAX_RUNS], p99[MAX_RUNS], p999[MAX_RUNS], p9999[MAX_RUNS], mx[MAX_RUNS], ratio[MAX_RUNS];
    struct lat_result r, ref;
    psyne_pingpong(t, size, trips / 10 + 1, c->pin, &r); /* warm-up */
    for (int i = 0; i < c->runs; i++) {
        psyne_pingpong(t, size, trips, c->pin, &r);
        p50[i] = (double)r.p50;
        p99[i] = (double)r.p99;
        p999[i] = (double)r.p999;
        p9999[i] = (double)r.p9999;
        mx[i] = (double)r.max;
        if (t == BENCH_IPC) {
            psyne_pingpong(BENCH_MEMORY, size, trips, c->pin, &ref);
            ratio[i] = (double)r.p50 / (double)ref.p50;
        }
    }
    double m50 = bench_median(p50, c->runs);
    out("system=psyne workload=%s size=%zu rtt_p50_ns=%.0f rtt_p99_ns=%.0f rtt_p999_ns=%.0f "
        "oneway_p50_ns=%.0f rtt_p9999_ns=%.0f rtt_max_ns=%.0f rtt_p50_min_ns=%.0f rtt_p50_max_ns=%.0f runs=%d "
        "round_trips=%llu",
        t == BENCH_IPC ? "ipc-pingpong" : "inproc-pingpong", size, m50, bench_median(p99, c->runs),
        bench_median(p999, c->runs), m50 / 2, bench_median(p9999, c->runs), bench_median(mx, c->runs),
        bench_min(p50, c->runs), bench_max(p50, c->runs), c->runs, (unsigned long long)trips);
    if (t == BENCH_IPC)
        out(" p50_vs_inproc=%.3f", bench_median(ratio, c->runs));
    out_end();
}

static void run_mpmc(const struct config *c, size_t size)
{
    uint64_t count = c->iterations ? c->iterations : default_count(size);
    double mps[MAX_RUNS];
    struct tput_result r;
    psyne_mpmc_tput(size, count / 10 + 2, c->producers, c->consumers, &r); /* warm-up */
    for (int i = 0; i < c->runs; i++) {
        psyne_mpmc_tput(size, count, c->producers, c->consumers, &r);
        mps[i] = r.mps;
    }
    double lo = bench_min(mps, c->runs), hi = bench_max(mps, c->runs);
    out("system=psyne workload=inproc-mpmc-tput size=%zu mps=%.0f mps_min=%.0f mps_max=%.0f producers=%d "
        "consumers=%d runs=%d count=%llu",
        size, bench_median(mps, c->runs), lo, hi, c->producers, c->consumers, c->runs, (unsigned long long)count);
    out_end();
}

/* tcp-tput: psyne's tcp:// against a raw socket pair doing the same job,
 * alternately (vs_raw = median of the pairwise ratios). */
static void run_tcp_tput(const struct config *c, size_t size)
{
    uint64_t count = c->iterations ? c->iterations : default_count(size) / 3 + 1;
    double mps[MAX_RUNS], gbps[MAX_RUNS], ratio[MAX_RUNS], per_send[MAX_RUNS];
    struct tcp_tput_result r, ref;
    psyne_tcp_tput(size, count / 10 + 1, &r); /* warm-up */
    for (int i = 0; i < c->runs; i++) {
        psyne_tcp_tput(size, count, &r);
        raw_tcp_tput(size, count, &ref);
        mps[i] = r.mps;
        gbps[i] = r.gbps;
        per_send[i] = r.msgs_per_send;
        ratio[i] = r.mps / ref.mps;
    }
    double lo = bench_min(mps, c->runs), hi = bench_max(mps, c->runs);
    out("system=psyne workload=tcp-tput size=%zu mps=%.0f gbps=%.3f mps_min=%.0f mps_max=%.0f msgs_per_send=%.1f "
        "runs=%d count=%llu vs_raw_socket=%.3f",
        size, bench_median(mps, c->runs), bench_median(gbps, c->runs), lo, hi, bench_median(per_send, c->runs),
        c->runs, (unsigned long long)count, bench_median(ratio, c->runs));
    out_end();
}

static void run_tcp_pingpong(const struct config *c, size_t size)
{
    uint64_t trips = c->iterations ? c->iterations : 20000;
    double p50[MAX_RUNS], p99[MAX_RUNS], p999[MAX_RUNS], ratio[MAX_RUNS];
    struct lat_result r, ref;
    psyne_tcp_pingpong(size, trips / 10 + 1, &r); /* warm-up */
    for (int i = 0; i < c->runs; i++) {
        psyne_tcp_pingpong(size, trips, &r);
        raw_tcp_pingpong(size, trips, &ref);
        p50[i] = (double)r.p50;
        p99[i] = (double)r.p99;
        p999[i] = (double)r.p999;
        ratio[i] = (double)r.p50 / (double)ref.p50;
    }
    double m50 = bench_median(p50, c->runs);
    out("system=psyne workload=tcp-pingpong size=%zu rtt_p50_ns=%.0f rtt_p99_ns=%.0f rtt_p999_ns=%.0f "
        "oneway_p50_ns=%.0f rtt_p50_min_ns=%.0f rtt_p50_max_ns=%.0f runs=%d round_trips=%llu p50_vs_raw_socket=%.3f",
        size, m50, bench_median(p99, c->runs), bench_median(p999, c->runs), m50 / 2, bench_min(p50, c->runs),
        bench_max(p50, c->runs), c->runs, (unsigned long long)trips, bench_median(ratio, c->runs));
    out_end();
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

static void usage(FILE *f)
{
    fprintf(f,
            "usage: psyne_bench [options]\n"
            "  --workload LIST    inproc-spsc-tput,inproc-pingpong,inproc-mpmc-tput,ipc-spsc-tput,ipc-pingpong,\n"
            "                     tcp-tput,tcp-pingpong,dynamic-resize (default: all; ipc-* runs alternate with inproc runs and\n"
            "                     add vs_inproc ratios, tcp-* with a raw socket pair over 127.0.0.1: vs_raw_socket)\n"
            "  --size LIST        payload bytes (default: 64,4096,65536,1048576 for inproc-spsc-tput,\n"
            "                     64,4096,1048576 for ipc-spsc-tput, 64 otherwise)\n"
            "  --iterations N     messages (round trips) per run (default: by size)\n"
            "  --runs N           measured runs; the median is reported (default 5)\n"
            "  --api single|batch|typed  API for *-spsc-tput (default: single; also batch at <= 256 B and,\n"
            "                     inproc, typed float vectors against raw records at >= 4 KiB)\n"
            "  --producers N --consumers N   inproc-mpmc-tput threads (default 2 and 2)\n"
            "  --pin P,C          pin the producer (pinger) to CPU P and the consumer (ponger) to CPU C\n"
            "                     (default 0,1)\n"
            "  --no-pin           do not pin producer and consumer\n"
            "  --hugepages        back rings with huge pages (explicit if reserved, else transparent, else normal;\n"
            "                     the run prints which it got); rings are then at least 2 MiB\n"
            "  --mlock            lock ring memory (PSYNE_F_MLOCK)\n"
            "  --numa-node N      allocate ring memory on NUMA node N\n"
            "  --dynamic[=fixed]  inproc-spsc-tput on dynamic rings (default configuration), alternating with\n"
            "                     static rings of the same initial size: vs_static. =fixed: a dynamic ring that\n"
            "                     may not resize (min = max = capacity), so vs_static is the cost of its usage\n"
            "                     tracking alone\n"
            "  --json             one JSON object per result (the RESULT line's keys) instead of RESULT lines\n"
            "  --no-copy-check    prove zero copy in inproc-spsc-tput: the consumer must read every message at\n"
            "                     the address the producer wrote it (copy_check=pass), else the run aborts\n"
            "  --inject-copy N    self-test of --no-copy-check: the consumer reads message N (of at most\n"
            "                     64 bytes, --api single) from a copy; the run must abort\n"
            "  --inject-loss N    self-test: writers skip sequence N as if it were lost; the run must abort\n");
}

int main(int argc, char **argv)
{
    static const struct psyne_dynamic default_dynamic; /* zero: every default */
    struct config c = {.runs = 5, .pin = 1, .producers = 2, .consumers = 2};
    static const struct option opts[] = {
        {"workload", required_argument, 0, 'w'}, {"size", required_argument, 0, 's'},
        {"iterations", required_argument, 0, 'i'}, {"runs", required_argument, 0, 'r'},
        {"api", required_argument, 0, 'a'}, {"producers", required_argument, 0, 'p'},
        {"consumers", required_argument, 0, 'c'}, {"no-pin", no_argument, 0, 'n'},
        {"json", no_argument, 0, 'j'}, {"inject-loss", required_argument, 0, 'l'},
        {"pin", required_argument, 0, 'P'}, {"hugepages", no_argument, 0, 'H'},
        {"mlock", no_argument, 0, 'M'}, {"dynamic", optional_argument, 0, 'D'}, {"no-copy-check", no_argument, 0, 'C'},
        {"inject-copy", required_argument, 0, 'I'}, {"numa-node", required_argument, 0, 'N'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
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
            c.api = !strcmp(optarg, "single") ? 1 : !strcmp(optarg, "batch") ? 2 : !strcmp(optarg, "typed") ? 3 : 0;
            break;
        case 'p': c.producers = atoi(optarg); break;
        case 'c': c.consumers = atoi(optarg); break;
        case 'n': c.pin = 0; break;
        case 'P':
            if (sscanf(optarg, "%d,%d", &bench_cpu_producer, &bench_cpu_consumer) != 2 || bench_cpu_producer < 0 ||
                bench_cpu_consumer < 0) {
                usage(stderr);
                return 2;
            }
            c.pin = 1;
            break;
        case 'H': bench_channel_flags |= PSYNE_F_HUGEPAGES; break;
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
        case 'j': json_out = 1; break;
        case 'l': bench_inject_loss_at = strtoull(optarg, NULL, 10); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (c.runs < 1 || c.runs > MAX_RUNS || c.producers < 1 || c.consumers < 1 || c.producers > 16 ||
        c.consumers > 16) {
        usage(stderr);
        return 2;
    }
    if (argc == 1 && !json_out)
        printf("# psyne_bench: the default set on memory:// channels (threads of this process), then\n"
               "# on ipc:// channels (a producer or ponger process beside this one; vs_inproc = ipc / inproc,\n"
               "# median of alternating pairs).\n"
               "# Each RESULT line is the median of %d runs after a warm-up run: mps = messages/s,\n"
               "# gbps = payload GB/s, rtt_* = round-trip percentiles in ns. The producer writes every\n"
               "# payload byte in place and the consumer checks the sequence number and reads every byte.\n"
               "# This machine is shared and noisy: compare systems with build/benchmarks/peers/psyne_compare (ratios).\n",
               c.runs);

    if (bench_channel_flags && describe_placement() != 0)
        return 1;

    static const size_t spsc_sizes[] = {64, 4096, 65536, 1048576};
    static const size_t ipc_sizes[] = {64, 4096, 1048576};
    for (int k = 0; k < 2; k++) {
        enum bench_transport t = k ? BENCH_IPC : BENCH_MEMORY;
        if (!wants(&c, k ? "ipc-spsc-tput" : "inproc-spsc-tput"))
            continue;
        int n = c.n_sizes ? c.n_sizes : k ? 3 : 4;
        for (int i = 0; i < n; i++) {
            size_t size = c.n_sizes ? c.sizes[i] : k ? ipc_sizes[i] : spsc_sizes[i];
            if (c.api == 0 || c.api == 1)
                run_spsc(&c, t, size, BENCH_SINGLE);
            if (c.api == 2 || (c.api == 0 && size <= 256))
                run_spsc(&c, t, size, BENCH_BATCH);
            if (t == BENCH_MEMORY && size % sizeof(float) == 0 && (c.api == 3 || (c.api == 0 && size >= 4096)))
                run_spsc(&c, t, size, BENCH_TYPED);
        }
    }
    if (wants(&c, "inproc-pingpong"))
        for (int i = 0; i < (c.n_sizes ? c.n_sizes : 1); i++)
            run_pingpong(&c, BENCH_MEMORY, c.n_sizes ? c.sizes[i] : 64);
    if (wants(&c, "inproc-mpmc-tput"))
        for (int i = 0; i < (c.n_sizes ? c.n_sizes : 1); i++)
            run_mpmc(&c, c.n_sizes ? c.sizes[i] : 64);
    if (wants(&c, "ipc-pingpong"))
        for (int i = 0; i < (c.n_sizes ? c.n_sizes : 1); i++)
            run_pingpong(&c, BENCH_IPC, c.n_sizes ? c.sizes[i] : 64);
    static const size_t tcp_sizes[] = {64, 4096, 1048576};
    if (wants(&c, "tcp-tput"))
        for (int i = 0; i < (c.n_sizes ? c.n_sizes : 3); i++)
            run_tcp_tput(&c, c.n_sizes ? c.sizes[i] : tcp_sizes[i]);
    if (wants(&c, "tcp-pingpong"))
        for (int i = 0; i < (c.n_sizes ? c.n_sizes : 1); i++)
            run_tcp_pingpong(&c, c.n_sizes ? c.sizes[i] : 64);
    static const size_t resize_sizes[] = {1u << 20, 64u << 20};
    if (wants(&c, "dynamic-resize"))
        for (int i = 0; i < (c.n_sizes ? c.n_sizes : 2); i++)
            run_resize(&c, c.n_sizes ? c.sizes[i] : resize_sizes[i]);
    return 0;
}
