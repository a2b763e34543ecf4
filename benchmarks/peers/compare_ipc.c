/* SPDX-License-Identifier: MIT */
/*
 * compare_ipc.c - psyne_compare_ipc: psyne's ipc:// channels against
 * iceoryx (the C binding, zero-copy shared memory) on the WORKLOADS.md ipc
 * workloads, and against the limit of any shared-memory ring (the
 * fixed-slot ring of slot_ring.h in memory shared by two processes), side
 * by side in one run:
 *
 *   ipc-spsc-tput  64 B, 4 KiB, 1 MiB   producer process -> consumer process
 *   ipc-pingpong   64 B                 two processes, busy-polling
 *
 * Rounds alternate the systems (psyne, iceoryx, shm ring, psyne, ...) and
 * each ratio reported is the median of the per-round ratios. iceoryx needs its daemon:
 * this program starts iox-roudi with a memory-pool config that fits 1 MiB
 * messages and stops it (by pid) at the end. Each iceoryx side is this
 * program started anew (an iceoryx runtime cannot be forked), sharing its
 * timestamps and results through an inherited memfd.
 *
 *   psyne_compare_ipc [--runs N] [--quick]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iceoryx_binding_c/enums.h"
#include "iceoryx_binding_c/log.h"
#include "iceoryx_binding_c/publisher.h"
#include "iceoryx_binding_c/runtime.h"
#include "iceoryx_binding_c/subscriber.h"

#include "bench_util.h"
#include "limits.h"
#include "workloads.h"

#define MAX_RUNS 32

/* ---- iceoryx sides (each a process of its own) ---- */

struct iox_run { /* in a memfd shared by the orchestrator and both sides */
    size_t size;
    uint64_t count; /* messages, or timed round trips */
    struct bench_gate gate;
    int64_t start, end;
    struct lat_result lat;
    _Atomic int failed;
};

static void iox_fail(struct iox_run *run, const char *what)
{
    fprintf(stderr, "psyne_compare_ipc: iceoryx: %s\n", what);
    atomic_store(&run->failed, 1);
    _exit(1);
}

static iox_pub_t make_pub(iox_pub_storage_t *st, const char *event)
{
    iox_pub_options_t o;
    iox_pub_options_init(&o);
    o.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER; /* nothing dropped */
    return iox_pub_init(st, "psyne", "compare", event, &o);
}

static iox_sub_t make_sub(iox_sub_storage_t *st, const char *event)
{
    iox_sub_options_t o;
    iox_sub_options_init(&o);
    o.queueCapacity = 256; /* iceoryx's largest */
    o.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
    return iox_sub_init(st, "psyne", "compare", event, &o);
}

static void *loan(iox_pub_t pub, size_t size, struct iox_run *run)
{
    void *p = NULL;
    for (;;) {
        enum iox_AllocationResult r = iox_pub_loan_chunk(pub, &p, (uint32_t)size);
        if (r == AllocationResult_SUCCESS)
            return p;
        if (r != AllocationResult_RUNNING_OUT_OF_CHUNKS && r != AllocationResult_TOO_MANY_CHUNKS_ALLOCATED_IN_PARALLEL)
            iox_fail(run, "loan_chunk failed");
    }
}

static const void *take(iox_sub_t sub, struct iox_run *run)
{
    const void *p = NULL;
    for (;;) { /* busy-polling, as psyne's side does */
        enum iox_ChunkReceiveResult r = iox_sub_take_chunk(sub, &p);
        if (r == ChunkReceiveResult_SUCCESS)
            return p;
        if (r != ChunkReceiveResult_NO_CHUNK_AVAILABLE)
            iox_fail(run, "take_chunk failed");
    }
}

static void wait_subscribed(iox_sub_t sub)
{
    while (iox_sub_get_subscription_state(sub) != SubscribeState_SUBSCRIBED)
        usleep(1000);
}

static void wait_subscribers(iox_pub_t pub)
{
    while (!iox_pub_has_subscribers(pub))
        usleep(1000);
}

static void iox_producer(struct iox_run *run)
{
    iox_pub_storage_t st;
    iox_pub_t pub = make_pub(&st, "tput");
    wait_subscribers(pub);
    bench_pin(0);
    bench_gate_arrive(&run->gate, 2);
    run->start = bench_now_ns();
    for (uint64_t i = 0; i < run->count; i++) {
        void *p = loan(pub, run->size, run);
        bench_write_payload(p, run->size, i);
        iox_pub_publish_chunk(pub, p);
    }
    /* stay until the consumer has everything: chunks live in our pools */
    while (!run->end && !atomic_load(&run->failed))
        usleep(1000);
    iox_pub_deinit(pub);
}

static void iox_consumer(struct iox_run *run)
{
    iox_sub_storage_t st;
    iox_sub_t sub = make_sub(&st, "tput");
    wait_subscribed(sub);
    bench_pin(1);
    bench_gate_arrive(&run->gate, 2);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < run->count; i++) {
        const void *p = take(sub, run);
        sum += bench_read_payload(p, run->size, i, "iceoryx");
        iox_sub_release_chunk(sub, p);
    }
    run->end = bench_now_ns();
    if (sum == 42)
        fprintf(stderr, "\n"); /* keeps the reads */
    iox_sub_deinit(sub);
}

struct iox_pinger {
    iox_pub_t ping;
    iox_sub_t pong;
    struct iox_run *run;
};

static void iox_ping(void *ctx, uint64_t i)
{
    struct iox_pinger *g = ctx;
    void *p = loan(g->ping, g->run->size, g->run);
    bench_write_payload(p, g->run->size, i);
    iox_pub_publish_chunk(g->ping, p);
    const void *q = take(g->pong, g->run);
    bench_read_payload(q, g->run->size, i, "iceoryx ping");
    iox_sub_release_chunk(g->pong, q);
}

static void iox_pinger_side(struct iox_run *run)
{
    iox_pub_storage_t ps;
    iox_sub_storage_t ss;
    struct iox_pinger g = {make_pub(&ps, "ping"), make_sub(&ss, "pong"), run};
    wait_subscribed(g.pong);
    wait_subscribers(g.ping);
    bench_pin(0);
    bench_gate_arrive(&run->gate, 2);
    bench_time_round_trips(run->count, iox_ping, &g, &run->lat);
    run->end = 1;
    iox_sub_deinit(g.pong);
    iox_pub_deinit(g.ping);
}

static void iox_ponger_side(struct iox_run *run)
{
    iox_pub_storage_t ps;
    iox_sub_storage_t ss;
    iox_pub_t pong = make_pub(&ps, "pong");
    iox_sub_t ping = make_sub(&ss, "ping");
    wait_subscribed(ping);
    wait_subscribers(pong);
    bench_pin(1);
    bench_gate_arrive(&run->gate, 2);
    uint64_t total = bench_warmup_trips(run->count) + run->count;
    for (uint64_t i = 0; i < total; i++) {
        const void *q = take(ping, run);
        bench_read_payload(q, run->size, i, "iceoryx pong");
        void *p = loan(pong, run->size, run);
        bench_write_payload(p, run->size, i);
        iox_pub_publish_chunk(pong, p);
        iox_sub_release_chunk(ping, q);
    }
    while (!run->end && !atomic_load(&run->failed))
        usleep(1000);
    iox_sub_deinit(ping);
    iox_pub_deinit(pong);
}

/* ---- the orchestrator ---- */

static char self_exe[4096];
static int run_fd = -1;
static struct iox_run *run;

static pid_t spawn_side(const char *role)
{
    char fd_arg[16];
    snprintf(fd_arg, sizeof fd_arg, "%d", run_fd);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self_exe, self_exe, "--side", role, fd_arg, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static pid_t roudi = -1;
static void stop_roudi(void);
static int start_roudi(void);

#define SIDE_DEADLINE_S 120 /* a pair's run takes a few seconds; a loaded machine, ten times that */
#define PAIR_TRIES 3

/* Waits for both sides of a pair. Returns false, after killing them, when
 * they did not finish by SIDE_DEADLINE_S: a side that RouDi lost track of
 * ("Unknown application ... requested shutdown preparation", seen once in CI
 * when the sides came up with RouDi) waits for its peer forever. A side that
 * fails ends the program. */
static bool reap_sides(pid_t *pids)
{
    int64_t until = bench_now_ns() + SIDE_DEADLINE_S * 1000000000ll;
    for (int left = 2; left > 0;) {
        for (int i = 0; i < 2; i++) {
            int status;
            if (pids[i] <= 0 || waitpid(pids[i], &status, WNOHANG) != pids[i])
                continue;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "psyne_compare_ipc: an iceoryx side failed (status 0x%x)\n", status);
                exit(1);
            }
            pids[i] = 0;
            left--;
        }
        if (left > 0 && bench_now_ns() > until) {
            for (int i = 0; i < 2; i++)
                if (pids[i] > 0) {
                    kill(pids[i], SIGKILL);
                    waitpid(pids[i], NULL, 0);
                }
            return false;
        }
        if (left > 0)
            usleep(10000); /* the sides time themselves: this only notices the end */
    }
    return true;
}

/* One iceoryx run of a pair of sides (a sends to b); a pair that hangs is
 * killed and run again with a fresh RouDi. */
static void iox_run_pair(const char *a, const char *b, size_t size, uint64_t count)
{
    for (int attempt = 1;; attempt++) {
        memset(run, 0, sizeof *run);
        run->size = size;
        run->count = count;
        pid_t pids[2] = {spawn_side(b), spawn_side(a)}; /* the receiving side first */
        if (reap_sides(pids))
            return;
        fprintf(stderr, "psyne_compare_ipc: the iceoryx %s/%s pair did not finish in %d s (try %d of %d)\n", a, b,
                SIDE_DEADLINE_S, attempt, PAIR_TRIES);
        stop_roudi();
        if (attempt == PAIR_TRIES || start_roudi() != 0)
            exit(1);
    }
}

static void stop_roudi(void)
{
    if (roudi > 0) {
        kill(roudi, SIGTERM);
        waitpid(roudi, NULL, 0);
        roudi = -1;
    }
}

/* iox-roudi with pools that hold 1 MiB messages (the built-in ones do not). */
static int start_roudi(void)
{
    char cfg[] = "/tmp/psyne-roudi-XXXXXX.toml";
    int fd = mkstemps(cfg, 5);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    fprintf(f, "[general]\nversion = 1\n\n[[segment]]\n\n"
               "[[segment.mempool]]\nsize = 256\ncount = 4096\n\n"
               "[[segment.mempool]]\nsize = 8192\ncount = 1024\n\n"
               "[[segment.mempool]]\nsize = 1049600\ncount = 300\n");
    fclose(f);
    fflush(NULL);
    roudi = fork();
    if (roudi == 0) {
        execlp("iox-roudi", "iox-roudi", "-c", cfg, "-l", "warning", (char *)NULL);
        _exit(127);
    }
    /* RouDi sets up its shared memory, then listens on its socket: sides
     * started before that wait for it, but are better not started then */
    int status;
    for (int waited_ms = 0; waited_ms < 20000; waited_ms += 100) {
        usleep(100000);
        if (waitpid(roudi, &status, WNOHANG) == roudi) {
            fprintf(stderr, "psyne_compare_ipc: iox-roudi did not start (is the iceoryx package installed?)\n");
            roudi = -1;
            unlink(cfg);
            return -1;
        }
        if (waited_ms >= 400 && access("/tmp/roudi", F_OK) == 0)
            break;
    }
    unlink(cfg); /* read at start-up */
    return 0;
}

static double median_ratio(const double *a, const double *b, int n)
{
    double r[MAX_RUNS];
    for (int i = 0; i < n; i++)
        r[i] = a[i] / b[i];
    return bench_median(r, n);
}

struct row {
    const char *workload, *metric, *target;
    size_t size;
    double psyne, iox, ratio, shm, shm_ratio;
    int met;
};

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--side") == 0) { /* one iceoryx side */
        int fd = atoi(argv[3]);
        run = mmap(NULL, sizeof *run, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (run == MAP_FAILED)
            return 1;
        char name[64];
        snprintf(name, sizeof name, "psyne-compare-%s-%d", argv[2], (int)getpid());
        iox_set_loglevel(Iceoryx_LogLevel_Warn);
        iox_runtime_init(name);
        if (!strcmp(argv[2], "producer"))
            iox_producer(run);
        else if (!strcmp(argv[2], "consumer"))
            iox_consumer(run);
        else if (!strcmp(argv[2], "pinger"))
            iox_pinger_side(run);
        else
            iox_ponger_side(run);
        iox_runtime_shutdown();
        return 0;
    }
    int runs = 5, quick = 0;
    static const struct option opts[] = {{"runs", required_argument, 0, 'r'},
                                         {"quick", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt == 'r')
            runs = atoi(optarg);
        else if (opt == 'q')
            quick = 1;
        else {
            fprintf(opt == 'h' ? stdout : stderr, "usage: psyne_compare_ipc [--runs N] [--quick]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (runs < 1 || runs > MAX_RUNS)
        return 2;
    if (readlink("/proc/self/exe", self_exe, sizeof self_exe - 1) <= 0)
        return 1;
    run_fd = memfd_create("psyne-compare-ipc", 0); /* inherited by the exec'd sides */
    if (run_fd < 0 || ftruncate(run_fd, sizeof *run) != 0)
        return 1;
    run = mmap(NULL, sizeof *run, PROT_READ | PROT_WRITE, MAP_SHARED, run_fd, 0);
    if (run == MAP_FAILED || start_roudi() != 0)
        return 1;
    atexit(stop_roudi); /* whichever RouDi runs at exit (iox_run_pair may restart it) */

    printf("# psyne_compare_ipc: psyne ipc:// vs iceoryx %s (C binding), %d alternating rounds per row\n", "2.0", runs);
    struct row rows[8];
    int n_rows = 0;
    static const size_t sizes[] = {64, 4096, 1048576};
    for (int k = 0; k < 3; k++) {
        size_t size = sizes[k];
        uint64_t count = size <= 64 ? 2000000 : size <= 4096 ? 400000 : 4000;
        if (quick)
            count /= 10;
        double ps[MAX_RUNS], io[MAX_RUNS], sh[MAX_RUNS];
        struct tput_result r;
        for (int i = 0; i < runs; i++) {
            psyne_spsc_tput(BENCH_IPC, size, count, 0, 1, &r);
            ps[i] = r.mps;
            iox_run_pair("producer", "consumer", size, count);
            io[i] = (double)count / ((double)(run->end - run->start) / 1e9);
            sh[i] = slot_tput_run(size, 0, 0, count, 1, 1);
        }
        double ratio = median_ratio(ps, io, runs), shm_ratio = median_ratio(ps, sh, runs);
        double pm = bench_median(ps, runs), im = bench_median(io, runs), sm = bench_median(sh, runs);
        printf("RESULT system=psyne workload=ipc-spsc-tput size=%zu mps=%.0f gbps=%.3f runs=%d\n", size, pm,
               pm * (double)size / 1e9, runs);
        printf("RESULT system=iceoryx workload=ipc-spsc-tput size=%zu mps=%.0f gbps=%.3f runs=%d\n", size, im,
               im * (double)size / 1e9, runs);
        printf("RESULT system=shm-slot-ring workload=ipc-spsc-tput size=%zu mps=%.0f gbps=%.3f runs=%d\n", size, sm,
               sm * (double)size / 1e9, runs);
        printf("RATIO workload=ipc-spsc-tput size=%zu metric=mps psyne/iceoryx=%.3f psyne/shm-slot-ring=%.3f "
               "rounds=%d\n",
               size, ratio, shm_ratio, runs);
        double want = size == 64 ? 10.0 : size == 1048576 ? 1.0 : 0.0;
        rows[n_rows++] = (struct row){"ipc-spsc-tput",
                                      "mps",
                                      size == 64        ? ">= 10"
                                      : size == 1048576 ? ">= 1"
                                                        : "",
                                      size,
                                      pm,
                                      im,
                                      ratio,
                                      sm,
                                      shm_ratio,
                                      want == 0.0 || ratio >= want};
        fflush(stdout);
    }
    {
        uint64_t trips = quick ? 20000 : 200000;
        double ps[MAX_RUNS], io[MAX_RUNS], sh[MAX_RUNS];
        struct lat_result lat[3][MAX_RUNS]; /* psyne, iceoryx, shm slot ring */
        for (int i = 0; i < runs; i++) {
            psyne_pingpong(BENCH_IPC, 64, trips, 1, bench_pingpong_wait, &lat[0][i]);
            iox_run_pair("pinger", "ponger", 64, trips);
            lat[1][i] = run->lat;
            slot_pingpong_run(trips, 1, 1, &lat[2][i]);
            ps[i] = (double)lat[0][i].p50;
            io[i] = (double)lat[1][i].p50;
            sh[i] = (double)lat[2][i].p50;
        }
        double ratio = median_ratio(ps, io, runs), shm_ratio = median_ratio(ps, sh, runs);
        double pm = bench_median(ps, runs), im = bench_median(io, runs), sm = bench_median(sh, runs);
        static const char *names[] = {"psyne", "iceoryx", "shm-slot-ring"};
        for (int s = 0; s < 3; s++) {
            struct lat_result m;
            char fields[BENCH_RTT_FIELDS_LEN];
            bench_lat_median(lat[s], runs, &m);
            printf("RESULT system=%s workload=ipc-pingpong size=64 %s runs=%d round_trips=%llu\n", names[s],
                   bench_rtt_fields(&m, fields), runs, (unsigned long long)trips);
        }
        printf("RATIO workload=ipc-pingpong size=64 metric=rtt_p50_ns psyne/iceoryx=%.3f psyne/shm-slot-ring=%.3f "
               "rounds=%d (latency: lower is better)\n",
               ratio, shm_ratio, runs);
        rows[n_rows++] =
            (struct row){"ipc-pingpong", "rtt_p50_ns", "<= 0.5", 64, pm, im, ratio, sm, shm_ratio, ratio <= 0.5};
    }
    stop_roudi();

    printf("\n| workload | size | metric | psyne | iceoryx | psyne / iceoryx (median of rounds) | target | met | "
           "shm slot ring (limit) | psyne / limit |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_rows; i++)
        printf("| %s | %zu | %s | %.4g | %.4g | %.2f | %s | %s | %.4g | %.2f |\n", rows[i].workload, rows[i].size,
               rows[i].metric, rows[i].psyne, rows[i].iox, rows[i].ratio, rows[i].target,
               !rows[i].target[0] ? ""
               : rows[i].met      ? "yes"
                                  : "no",
               rows[i].shm, rows[i].shm_ratio);
    return 0;
}
