/* SPDX-License-Identifier: MIT */
/*
 * compare_inproc.c - psyne side by side with the machine's limits and with
 * DPDK rte_ring on the in-process workloads of WORKLOADS.md.
 *
 * Systems run alternately (psyne, ref, psyne, ref, ...) in one process, and
 * each ratio is the median of the pairwise ratios of neighbouring runs: on
 * this VM the host moves the vCPUs every few seconds and cross-core figures
 * swing by up to 25x, so only ratios taken close together mean anything.
 *
 *   psyne_compare [--runs N] [--quick] [--only spsc,batch,pingpong,mpmc] [--usual-rtt-ns 200]
 *
 * Before and after each round it measures a cache-line round trip between
 * the two CPUs; ratios are taken over the rounds in the usual placement
 * (both at most --usual-rtt-ns), or over all rounds if none was.
 *
 * Prints RESULT lines (median of each system), RATIO lines and a Markdown
 * table of the ratios.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "psyne.h"

#include "bench_util.h"
#include "limits.h"
#include "slot_ring.h"
#include "workloads.h"

#ifdef HAVE_DPDK
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <rte_ring_peek_zc.h>
#endif

#define MAX_RUNS 64

static int runs = 5;
static int pin = 1;
/* A round counts as "usual placement" when a cache-line round trip between
 * the two CPUs, measured before and after it, is at most this (about 110 ns
 * on this VM when the vCPUs sit close; 300+ ns when the host moved them). */
static double usual_rtt_ns = 200;

#ifdef HAVE_DPDK
/* ---- DPDK rte_ring, linked without the EAL ---- */

#define ESIZE_MAX 72 /* element sizes: 64 (the message), 72 (psyne's record of it) */

/* Backoff on a full/empty ring, the same as psyne's waiting starts with:
 * spin, then yield (with threads sharing cores, spinning alone would burn
 * the timeslice a preempted peer needs). */
static void backoff(unsigned *fails)
{
    if (++*fails < 64)
        slot_pause();
    else
        sched_yield();
}

/* A ring of esize-byte elements, as many as fit psyne's ring bytes for a
 * 64-byte message (a power of two, as rte_ring_init needs). */
static struct rte_ring *dpdk_ring(unsigned esize, unsigned flags)
{
    unsigned count = 1;
    while (2 * (uint64_t)count * esize <= workload_capacity(64))
        count *= 2;
    ssize_t sz = rte_ring_get_memsize_elem(esize, count);
    struct rte_ring *r = aligned_alloc(64, ((size_t)sz + 63) & ~(size_t)63);
    if (!r || rte_ring_init(r, "psyne-compare", count, flags) != 0) {
        fprintf(stderr, "rte_ring_init failed\n");
        abort();
    }
    return r;
}

struct dpdk_spsc {
    struct rte_ring *r;
    uint64_t count;
    unsigned burst;
    unsigned esize;
    struct bench_gate gate;
    int64_t start, end;
};

/* Writes n elements in place in the zero-copy area (which may wrap). */
static void zc_fill(struct rte_ring_zc_data *z, unsigned n, unsigned esize, uint64_t first)
{
    for (unsigned k = 0; k < n; k++) {
        uint8_t *e = k < z->n1 ? (uint8_t *)z->ptr1 + k * esize : (uint8_t *)z->ptr2 + (k - z->n1) * esize;
        bench_write_payload(e, esize, first + k);
    }
}

static void *dpdk_spsc_producer(void *arg)
{
    struct dpdk_spsc *d = arg;
    bench_pin(pin ? 0 : -1);
    bench_gate_arrive(&d->gate, 2);
    d->start = bench_now_ns();
    for (uint64_t i = 0; i < d->count;) {
        struct rte_ring_zc_data z;
        unsigned want = d->count - i < d->burst ? (unsigned)(d->count - i) : d->burst;
        unsigned n = rte_ring_enqueue_zc_burst_elem_start(d->r, d->esize, want, &z, NULL);
        if (!n) {
            slot_pause();
            continue;
        }
        zc_fill(&z, n, d->esize, i);
        rte_ring_enqueue_zc_elem_finish(d->r, n);
        i += n;
    }
    return NULL;
}

static double dpdk_spsc_run(uint64_t count, unsigned burst, unsigned esize)
{
    struct dpdk_spsc d = {
        .r = dpdk_ring(esize, RING_F_SP_ENQ | RING_F_SC_DEQ), .count = count, .burst = burst, .esize = esize};
    pthread_t t;
    pthread_create(&t, NULL, dpdk_spsc_producer, &d);
    bench_pin(pin ? 1 : -1);
    bench_gate_arrive(&d.gate, 2);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < count;) {
        struct rte_ring_zc_data z;
        unsigned n = rte_ring_dequeue_zc_burst_elem_start(d.r, esize, burst, &z, NULL);
        if (!n) {
            slot_pause();
            continue;
        }
        for (unsigned k = 0; k < n; k++, i++) {
            const uint8_t *e =
                k < z.n1 ? (const uint8_t *)z.ptr1 + k * esize : (const uint8_t *)z.ptr2 + (k - z.n1) * esize;
            sum += bench_read_payload(e, esize, i, "rte_ring");
        }
        rte_ring_dequeue_zc_elem_finish(d.r, n);
    }
    d.end = bench_now_ns();
    pthread_join(t, NULL);
    free(d.r);
    __asm__ volatile("" : : "r"(sum));
    return (double)count / ((double)(d.end - d.start) / 1e9);
}

/* MPMC: 2 producers -> 2 consumers for a fixed time (the default MP/MC mode
 * can fall to a few hundred messages a second when threads share a core). */
struct dpdk_mpmc {
    struct rte_ring *r;
    _Atomic int stop;
    _Atomic uint64_t received;
    struct bench_gate gate;
    int threads;
    unsigned esize;
};

struct dpdk_mpmc_thread {
    struct dpdk_mpmc *m;
    int id;
};

static void *dpdk_mpmc_producer(void *arg)
{
    struct dpdk_mpmc_thread *t = arg;
    bench_pin(t->id); /* the placement psyne_mpmc_tput uses */
    bench_gate_arrive(&t->m->gate, t->m->threads);
    const unsigned esize = t->m->esize;
    uint8_t elem[ESIZE_MAX];
    unsigned fails = 0;
    for (uint64_t i = 0; !atomic_load_explicit(&t->m->stop, memory_order_relaxed);) {
        bench_write_payload(elem, esize, i);
        elem[esize - 1] = (uint8_t)t->id;
        if (rte_ring_enqueue_elem(t->m->r, elem, esize) == 0) {
            i++;
            fails = 0;
        } else {
            backoff(&fails);
        }
    }
    return NULL;
}

static void *dpdk_mpmc_consumer(void *arg)
{
    struct dpdk_mpmc_thread *t = arg;
    bench_pin(t->id + 1);
    bench_gate_arrive(&t->m->gate, t->m->threads);
    uint64_t next[2] = {0, 0};
    const unsigned esize = t->m->esize;
    uint8_t elems[32 * ESIZE_MAX];
    unsigned fails = 0;
    while (!atomic_load_explicit(&t->m->stop, memory_order_relaxed)) {
        unsigned n = rte_ring_dequeue_burst_elem(t->m->r, elems, esize, 32, NULL);
        for (unsigned k = 0; k < n; k++) {
            const uint8_t *e = elems + k * esize;
            uint64_t seq;
            memcpy(&seq, e, 8);
            int id = e[esize - 1];
            if (id > 1 || seq < next[id])
                abort();
            next[id] = seq + 1;
            bench_read_payload(e, esize, seq, "rte_ring mpmc");
        }
        if (n) {
            atomic_fetch_add_explicit(&t->m->received, n, memory_order_relaxed);
            fails = 0;
        } else {
            backoff(&fails);
        }
    }
    return NULL;
}

static double dpdk_mpmc_run(unsigned flags, unsigned esize, double seconds)
{
    struct dpdk_mpmc m = {.r = dpdk_ring(esize, flags), .threads = 4, .esize = esize};
    struct dpdk_mpmc_thread th[4];
    pthread_t pt[4];
    for (int i = 0; i < 4; i++) {
        th[i] = (struct dpdk_mpmc_thread){&m, i % 2};
        pthread_create(&pt[i], NULL, i < 2 ? dpdk_mpmc_producer : dpdk_mpmc_consumer, &th[i]);
    }
    while (!atomic_load(&m.gate.go))
        ;
    int64_t t0 = bench_now_ns();
    uint64_t r0 = atomic_load(&m.received);
    while (bench_now_ns() - t0 < (int64_t)(seconds * 1e9))
        usleep(10000);
    uint64_t got = atomic_load(&m.received) - r0;
    int64_t t1 = bench_now_ns();
    atomic_store(&m.stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(pt[i], NULL);
    free(m.r);
    return (double)got / ((double)(t1 - t0) / 1e9);
}
#endif

/* ---- alternation and ratios ---- */

/* One run: its value (messages/s, or the p50 RTT in ns); a latency run
 * also fills lat with its percentiles. */
typedef double (*run_fn)(void *ctx, struct lat_result *lat);

struct system {
    const char *name;
    run_fn run;
    void *ctx;
    int higher_is_better;
    int subject; /* a psyne configuration compared with every reference, as sys[0] is */
    double v[MAX_RUNS];
    struct lat_result lat[MAX_RUNS]; /* latency runs */
};

struct row {
    char system[40];
    char workload[40];
    size_t size;
    char metric[16];
    char ref[40];
    double ratio, lo, hi;
    int usual, rounds;
    char target[48];
};

static struct system system_of(const char *name, run_fn run, void *ctx, int higher_is_better)
{
    return (struct system){.name = name, .run = run, .ctx = ctx, .higher_is_better = higher_is_better};
}

static struct row rows[64];
static int n_rows;

/* Runs the systems alternately, `runs` rounds of one run each, and reports
 * the median over rounds of psyne's value / the reference's value (sys[0] is
 * psyne, and so is each system marked subject: each of them against every
 * other system). For latencies the ratio is psyne's RTT over the
 * reference's, so lower is better there. targets[s - 1]: the target of the
 * ratios against sys[s]. */
static void compare(const char *workload, size_t size, const char *metric, struct system *sys, int n_sys,
                    const char *const *targets)
{
    int usual[MAX_RUNS], n_usual = 0;
    for (int r = 0; r < runs; r++) {
        double before = line_pingpong_p50(20000, pin);
        for (int s = 0; s < n_sys; s++)
            sys[s].v[r] = sys[s].run(sys[s].ctx, &sys[s].lat[r]);
        double after = line_pingpong_p50(20000, pin);
        usual[r] = before <= usual_rtt_ns && after <= usual_rtt_ns;
        n_usual += usual[r];
        printf("# round %d: cache-line rtt %.0f ns before, %.0f ns after: %s placement\n", r + 1, before, after,
               usual[r] ? "usual" : "unusual");
    }
    for (int s = 0; s < n_sys; s++) {
        double tmp[MAX_RUNS];
        memcpy(tmp, sys[s].v, sizeof(double) * (size_t)runs);
        double med = bench_median(tmp, runs);
        if (!strcmp(metric, "mps"))
            printf("RESULT system=%s workload=%s size=%zu mps=%.0f gbps=%.3f runs=%d\n", sys[s].name, workload, size,
                   med, med * (double)size / 1e9, runs);
        else {
            struct lat_result m;
            char fields[BENCH_RTT_FIELDS_LEN];
            bench_lat_median(sys[s].lat, runs, &m);
            printf("RESULT system=%s workload=%s size=%zu %s runs=%d\n", sys[s].name, workload, size,
                   bench_rtt_fields(&m, fields), runs);
        }
    }
    for (int p = 0; p < n_sys; p++)
        for (int s = 0; s < n_sys; s++) {
            if ((p && !sys[p].subject) || s == p || sys[s].subject || (s == 0 && p == 0))
                continue;
            /* Ratios of the rounds in the usual placement, or of all rounds
         * when none was (the table says how many rounds count). */
            double ratio[MAX_RUNS];
            int n = 0;
            for (int r = 0; r < runs; r++)
                if (usual[r] || n_usual == 0)
                    ratio[n++] = sys[p].v[r] / sys[s].v[r];
            double lo = bench_min(ratio, n), hi = bench_max(ratio, n), med = bench_median(ratio, n);
            printf("RATIO workload=%s size=%zu metric=%s %s/%s=%.3f min=%.3f max=%.3f rounds=%d placement=%s%s\n",
                   workload, size, metric, sys[p].name, sys[s].name, med, lo, hi, n, n_usual ? "usual" : "any",
                   sys[s].higher_is_better ? "" : " (latency: lower is better)");
            if (n_rows < 64) {
                struct row *w = &rows[n_rows++];
                snprintf(w->system, sizeof w->system, "%s", sys[p].name);
                snprintf(w->workload, sizeof w->workload, "%s", workload);
                w->size = size;
                snprintf(w->metric, sizeof w->metric, "%s", metric);
                snprintf(w->ref, sizeof w->ref, "%s", sys[s].name);
                w->ratio = med;
                w->lo = lo;
                w->hi = hi;
                w->usual = n_usual;
                w->rounds = n;
                snprintf(w->target, sizeof w->target, "%s", s && targets && targets[s - 1] ? targets[s - 1] : "");
            }
        }
    fflush(stdout);
}

struct tput_ctx {
    size_t size;
    uint64_t count;
    enum bench_api api; /* psyne SPSC: single calls, batch calls, or one message of 32 payloads */
    bool leases;        /* psyne MPMC: PSYNE_F_LEASES */
    size_t stride;      /* fixed-slot ring: slot bytes, 0 for the message rounded up to 64 */
    unsigned slots;     /* fixed-slot ring: slots, 0 for as many as psyne's ring bytes hold */
};

static double psyne_spsc_fn(void *c, struct lat_result *lat)
{
    (void)lat; /* a throughput run */
    struct tput_ctx *t = c;
    struct tput_result r;
    psyne_spsc_tput_as(BENCH_MEMORY, t->size, t->count, t->api, pin, &r);
    return r.mps;
}

static double slot_fn(void *c, struct lat_result *lat)
{
    (void)lat; /* a throughput run */
    struct tput_ctx *t = c;
    return slot_tput_run(t->size, t->stride, t->slots, t->count, pin, 0);
}

static double memcpy_fn(void *c, struct lat_result *lat)
{
    (void)lat; /* a throughput run */
    struct tput_ctx *t = c;
    return memcpy_tput_run(t->size, t->count, pin);
}

static double psyne_pp_fn(void *c, struct lat_result *lat)
{
    psyne_pingpong(BENCH_MEMORY, 64, *(uint64_t *)c, pin, bench_pingpong_wait, lat);
    return (double)lat->p50;
}

static double slot_pp_fn(void *c, struct lat_result *lat)
{
    slot_pingpong_run(*(uint64_t *)c, pin, 0, lat);
    return (double)lat->p50;
}

static double line_pp_fn(void *c, struct lat_result *lat)
{
    line_pingpong_run(*(uint64_t *)c, pin, lat);
    return (double)lat->p50;
}

static double psyne_mpmc_fn(void *c, struct lat_result *lat)
{
    (void)lat; /* a throughput run */
    struct tput_ctx *t = c;
    struct tput_result r;
    uint32_t flags = bench_channel_flags;
    if (t->leases)
        bench_channel_flags |= PSYNE_F_LEASES;
    psyne_mpmc_tput(64, t->count, 2, 2, &r);
    bench_channel_flags = flags;
    return r.mps;
}

#ifdef HAVE_DPDK
struct dpdk_ctx {
    uint64_t count;
    unsigned burst;
    unsigned flags;
    double seconds;
    unsigned esize; /* element bytes */
};

static double dpdk_spsc_fn(void *c, struct lat_result *lat)
{
    (void)lat; /* a throughput run */
    struct dpdk_ctx *d = c;
    return dpdk_spsc_run(d->count, d->burst, d->esize);
}

static double dpdk_mpmc_fn(void *c, struct lat_result *lat)
{
    (void)lat; /* a throughput run */
    struct dpdk_ctx *d = c;
    return dpdk_mpmc_run(d->flags, d->esize, d->seconds);
}
#endif

int main(int argc, char **argv)
{
    int quick = 0;
    const char *only = NULL;
    static const struct option opts[] = {{"runs", required_argument, 0, 'r'},
                                         {"quick", no_argument, 0, 'q'},
                                         {"no-pin", no_argument, 0, 'n'},
                                         {"only", required_argument, 0, 'o'},
                                         {"usual-rtt-ns", required_argument, 0, 'u'},
                                         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'o')
            only = optarg;
        else if (o == 'u')
            usual_rtt_ns = atof(optarg);
        else if (o == 'r')
            runs = atoi(optarg);
        else if (o == 'q')
            quick = 1;
        else if (o == 'n')
            pin = 0;
        else
            return 2;
    }
    if (runs < 1 || runs > MAX_RUNS)
        return 2;
    uint64_t scale = quick ? 10 : 1;

    /* inproc-spsc-tput: psyne single and batch vs the fixed-slot ring and rte_ring */
    static const size_t sizes[] = {64, 4096, 65536, 1048576};
    static const uint64_t counts[] = {5000000, 1000000, 100000, 6000};
    for (int i = 0; i < 4 && (!only || strstr(only, "spsc")); i++) {
        struct tput_ctx single = {.size = sizes[i], .count = counts[i] / scale};
        /* the same ring with slots of psyne's record size (header + 64 B):
         * what psyne's layout allows, apart from anything psyne's code does */
        struct tput_ctx single_72 = {.size = sizes[i], .count = counts[i] / scale, .stride = PSYNE_RECORD_SIZE(64)};
        struct system sys[5] = {system_of("psyne", psyne_spsc_fn, &single, 1),
                                system_of("fixed-slot-ring", slot_fn, &single, 1)};
        /* large messages: the ring at its best size, 8 messages (issue 34),
         * where the one above has psyne's ring bytes */
        struct tput_ctx single_8 = {.size = sizes[i], .count = counts[i] / scale, .slots = 8};
        const char *targets[4] = {">= 0.9", NULL, NULL, NULL};
        int n = 2;
        if (sizes[i] == 64) {
            sys[n++] = system_of("fixed-slot-ring-72B", slot_fn, &single_72, 1);
            targets[n - 2] = "(same bytes per message)";
        }
        if (sizes[i] >= 4096) {
            sys[n++] = system_of("fixed-slot-ring-8", slot_fn, &single_8, 1);
            targets[n - 2] = ">= 0.9";
            /* what one copy of each message would cost (a limit, not a peer) */
            sys[n++] = system_of("memcpy", memcpy_fn, &single, 1);
            targets[n - 2] = "(one copy)";
        }
#ifdef HAVE_DPDK
        struct dpdk_ctx d1 = {counts[i] / scale, 1, 0, 0, 64};
        if (sizes[i] == 64) {
            sys[n++] = system_of("rte_ring-spsc-zc-n1", dpdk_spsc_fn, &d1, 1);
            targets[n - 2] = "(1.5x expected)";
        }
#endif
        compare("inproc-spsc-tput", sizes[i], "mps", sys, n, targets);
    }
    if (!only || strstr(only, "batch")) {
        struct tput_ctx batch = {.size = 64, .count = counts[0] / scale, .api = BENCH_BATCH};
        /* psyne-array32: 32 payloads side by side in one message, the
         * layout of a burst of rte_ring's 64-byte elements (one header per
         * 32, each payload starting where the last ends) */
        struct tput_ctx array = {.size = 64, .count = counts[0] / scale, .api = BENCH_ARRAY};
        struct system sys[5] = {system_of("psyne-batch", psyne_spsc_fn, &batch, 1),
                                system_of("fixed-slot-ring", slot_fn, &batch, 1),
                                system_of("psyne-array32", psyne_spsc_fn, &array, 1)};
        sys[2].subject = 1;
        const char *targets[4] = {NULL, NULL, NULL, NULL};
        int n = 3;
#ifdef HAVE_DPDK
        struct dpdk_ctx d32 = {counts[0] / scale, 32, 0, 0, 64};
        struct dpdk_ctx d32_72 = {counts[0] / scale, 32, 0, 0, PSYNE_RECORD_SIZE(64)};
        /* the targets of issue 34: each psyne layout against the bursts of its own bytes per message */
        sys[n++] = system_of("rte_ring-spsc-zc-burst32", dpdk_spsc_fn, &d32, 1);
        targets[2] = ">= 0.95 for array32";
        sys[n++] = system_of("rte_ring-spsc-zc-burst32-72B", dpdk_spsc_fn, &d32_72, 1);
        targets[3] = ">= 0.95 for batch (same bytes)";
#endif
        compare("inproc-spsc-tput", 64, "mps", sys, n, targets);
    }

    /* inproc-pingpong */
    uint64_t trips = 200000 / scale;
    struct system pp[3] = {system_of("psyne", psyne_pp_fn, &trips, 0),
                           system_of("fixed-slot-ring", slot_pp_fn, &trips, 0),
                           system_of("cache-line", line_pp_fn, &trips, 0)};
    const char *pp_targets[2] = {"<= 1.3", "(floor)"};
    if (!only || strstr(only, "pingpong"))
        compare("inproc-pingpong", 64, "rtt_p50_ns", pp, 3, pp_targets);

    /* inproc-mpmc-tput: 2 producers + 2 consumers on 2 cores */
    struct tput_ctx mp = {.size = 64, .count = 3000000 / scale};
    struct tput_ctx mp_leases = {.size = 64, .count = 3000000 / scale, .leases = true};
    struct system mpmc[6] = {system_of("psyne", psyne_mpmc_fn, &mp, 1),
                             system_of("psyne-leases", psyne_mpmc_fn, &mp_leases, 1)};
    mpmc[1].subject = 1; /* PSYNE_F_LEASES: order across producers not kept */
    const char *mp_targets[5] = {NULL, NULL, NULL, NULL, NULL};
    int n_mp = 2;
#ifdef HAVE_DPDK
    struct dpdk_ctx rts = {0, 0, RING_F_MP_RTS_ENQ | RING_F_MC_RTS_DEQ, quick ? 0.2 : 1.0, 64};
    struct dpdk_ctx rts_72 = {0, 0, RING_F_MP_RTS_ENQ | RING_F_MC_RTS_DEQ, quick ? 0.2 : 1.0, PSYNE_RECORD_SIZE(64)};
    struct dpdk_ctx mt = {0, 0, 0, quick ? 0.2 : 1.0, 64};
    mpmc[n_mp++] = system_of("rte_ring-mpmc-rts", dpdk_mpmc_fn, &rts, 1);
    mp_targets[1] = ">= 1.2 (leases >= 1.5)"; /* the default keeps order across producers */
    mpmc[n_mp++] = system_of("rte_ring-mpmc-rts-72B", dpdk_mpmc_fn, &rts_72, 1);
    mp_targets[2] = "(same bytes per message)";
    mpmc[n_mp++] = system_of("rte_ring-mpmc-default", dpdk_mpmc_fn, &mt, 1);
#endif
    if (only && !strstr(only, "mpmc"))
        ;
    else if (n_mp > 2)
        compare("inproc-mpmc-tput", 64, "mps", mpmc, n_mp, mp_targets);
    else
        printf("# inproc-mpmc-tput: no peer (build with dpdk-dev installed for rte_ring)\n");

    printf("\n| workload | size | metric | psyne / reference | ratio (median) | min | max | rounds | target |\n"
           "|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_rows; i++)
        printf("| %s | %zu | %s | %s / %s | %.2f | %.2f | %.2f | %d%s | %s |\n", rows[i].workload, rows[i].size,
               rows[i].metric, rows[i].system, rows[i].ref, rows[i].ratio, rows[i].lo, rows[i].hi, rows[i].rounds,
               rows[i].usual ? "" : " (any placement)", rows[i].target);
    return 0;
}
