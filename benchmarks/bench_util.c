/* SPDX-License-Identifier: MIT */
/*
 * bench_util.c - see bench_util.h.
 */
#define _GNU_SOURCE
#include "bench_util.h"
#include "bench_hist.h"
#include "psyne.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The CPUs the program may use as it was started (taskset included), kept
 * before the first pin so bench_unpin can give them back. */
static cpu_set_t started_on;
static pthread_once_t started_once = PTHREAD_ONCE_INIT;

static void keep_started_on(void)
{
    if (sched_getaffinity(0, sizeof started_on, &started_on) != 0)
        CPU_ZERO(&started_on);
}

void bench_unpin(void)
{
    pthread_once(&started_once, keep_started_on);
    if (CPU_COUNT(&started_on) > 0)
        pthread_setaffinity_np(pthread_self(), sizeof started_on, &started_on);
}

void bench_pin(int cpu)
{
    pthread_once(&started_once, keep_started_on);
    if (cpu < 0)
        return;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (n > 0 ? n : 1), &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int bench_cpu_producer = 0, bench_cpu_consumer = 1;
int bench_pingpong_wait = PSYNE_WAIT_SPIN;
int bench_tcp_wait = PSYNE_WAIT_ADAPTIVE;
uint32_t bench_tcp_max_peers;
uint32_t bench_channel_flags, bench_numa_node;
int bench_publish;
uint64_t bench_capacity;
const struct psyne_dynamic *bench_dynamic;
int bench_dynamic_fixed;

int bench_copy_check;
uint64_t bench_inject_copy_at = UINT64_MAX;
/* Addresses by sequence number; more entries than messages a ring (even a
 * grown dynamic one) can hold in flight, so an entry is read before reuse. */
#define COPY_CHECK_SLOTS (1u << 20)
static const void *_Atomic *copy_check_addr;

void bench_copy_check_enable(void)
{
    copy_check_addr = calloc(COPY_CHECK_SLOTS, sizeof *copy_check_addr);
    if (!copy_check_addr)
        abort();
    bench_copy_check = 1;
}

void bench_note_address(uint64_t seq, const void *p)
{
    atomic_store_explicit(&copy_check_addr[seq % COPY_CHECK_SLOTS], p,
                          memory_order_relaxed); /* the commit publishes it */
}

void bench_check_address(uint64_t seq, const void *p, const char *who)
{
    const void *wrote = atomic_load_explicit(&copy_check_addr[seq % COPY_CHECK_SLOTS], memory_order_relaxed);
    if (p != wrote) {
        fprintf(stderr, "%s: message %llu was written at %p and read at %p: it was copied\n", who,
                (unsigned long long)seq, wrote, p);
        abort();
    }
}

uint64_t bench_inject_loss_at = UINT64_MAX;

void bench_write_payload(void *p, size_t size, uint64_t seq)
{
    if (__builtin_expect(seq >= bench_inject_loss_at, 0) && bench_inject_loss_at != UINT64_MAX)
        seq++; /* the self-test's lost message: the reader must abort */
    if (size >= 8) {
        memcpy(p, &seq, 8);
        memset((char *)p + 8, (int)(seq & 0xff), size - 8);
    } else {
        memset(p, (int)(seq & 0xff), size);
    }
}

uint64_t bench_read_payload(const void *p, size_t size, uint64_t expect_seq, const char *who)
{
    uint64_t seq;
    if (size >= 8) {
        memcpy(&seq, p, 8);
        if (seq != expect_seq) {
            fprintf(stderr, "%s: sequence %llu, expected %llu: a message was lost, duplicated or reordered\n", who,
                    (unsigned long long)seq, (unsigned long long)expect_seq);
            abort();
        }
    }
    /* read every byte, 8 at a time (vectorized by the compiler) */
    const unsigned char *b = p;
    uint64_t sum = 0;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        sum += w;
    }
    for (; i < size; i++)
        sum += b[i];
    return sum;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_min(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

double bench_max(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

static _Thread_local struct bench_hist *last_round_trips;

const struct bench_hist *bench_last_round_trips(void)
{
    return last_round_trips;
}

/* Round-trip percentiles of a histogram. */
static void latency_from(const struct bench_hist *h, struct lat_result *out)
{
    out->p50 = bench_hist_percentile(h, 50);
    out->p99 = bench_hist_percentile(h, 99);
    out->p999 = bench_hist_percentile(h, 99.9);
    out->p9999 = bench_hist_percentile(h, 99.99);
    out->max = h->max;
    out->samples = h->count;
}

uint64_t bench_warmup_trips(uint64_t trips)
{
    return trips / 10 + 1000;
}

void bench_time_round_trips(uint64_t trips, void (*one_trip)(void *ctx, uint64_t i), void *ctx, struct lat_result *out)
{
    uint64_t warm = bench_warmup_trips(trips);
    if (!last_round_trips && !(last_round_trips = malloc(sizeof *last_round_trips)))
        abort();
    struct bench_hist *h = last_round_trips;
    bench_hist_reset(h);
    for (uint64_t i = 0; i < warm; i++)
        one_trip(ctx, i);
    for (uint64_t i = warm; i < warm + trips; i++) {
        int64_t t0 = bench_now_ns();
        one_trip(ctx, i);
        bench_hist_add(h, (uint64_t)(bench_now_ns() - t0));
    }
    latency_from(h, out);
}

void bench_lat_median(const struct lat_result *runs, int n, struct lat_result *out)
{
    double v[5][n > 0 ? n : 1];
    for (int i = 0; i < n; i++) {
        v[0][i] = (double)runs[i].p50;
        v[1][i] = (double)runs[i].p99;
        v[2][i] = (double)runs[i].p999;
        v[3][i] = (double)runs[i].p9999;
        v[4][i] = (double)runs[i].max;
    }
    uint64_t fewest = n > 0 ? runs[0].samples : 0;
    for (int i = 1; i < n; i++)
        fewest = runs[i].samples < fewest ? runs[i].samples : fewest;
    *out = (struct lat_result){(uint64_t)bench_median(v[0], n), (uint64_t)bench_median(v[1], n),
                               (uint64_t)bench_median(v[2], n), (uint64_t)bench_median(v[3], n),
                               (uint64_t)bench_median(v[4], n), fewest};
}

const char *bench_rtt_fields(const struct lat_result *r, char buf[BENCH_RTT_FIELDS_LEN])
{
    char p9999[48] = "";
    if (r->samples >= BENCH_P9999_SAMPLES)
        snprintf(p9999, sizeof p9999, " rtt_p9999_ns=%llu", (unsigned long long)r->p9999);
    snprintf(buf, BENCH_RTT_FIELDS_LEN,
             "rtt_p50_ns=%llu rtt_p99_ns=%llu rtt_p999_ns=%llu oneway_p50_ns=%llu%s rtt_max_ns=%llu",
             (unsigned long long)r->p50, (unsigned long long)r->p99, (unsigned long long)r->p999,
             (unsigned long long)(r->p50 / 2), p9999, (unsigned long long)r->max);
    return buf;
}

void bench_gate_arrive(struct bench_gate *g, int parties)
{
    if (atomic_fetch_add(&g->ready, 1) + 1 == parties)
        atomic_store(&g->go, 1);
    while (!atomic_load(&g->go)) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
}

/* ---- the other side of a two-sided run: a thread or a process ---- */

void *bench_shared_alloc(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("bench: mmap");
        abort();
    }
    memset(p, 0, len);
    return p;
}

void bench_peer_start(struct bench_peer *p, int as_process, void *(*fn)(void *), void *arg)
{
    p->as_process = as_process;
    if (!as_process) {
        pthread_create(&p->thread, NULL, fn, arg);
        return;
    }
    fflush(NULL);
    pid_t parent = getpid();
    p->pid = fork();
    if (p->pid < 0) {
        perror("bench: fork");
        abort();
    }
    if (p->pid == 0) {
        /* Dies with the run: a run that aborts (a lost message found, or the
         * self-test of that) must not leave its peer waiting forever. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        fn(arg);
        _exit(0);
    }
}

void bench_peer_join(struct bench_peer *p)
{
    if (!p->as_process) {
        pthread_join(p->thread, NULL);
        return;
    }
    int status;
    if (waitpid(p->pid, &status, 0) != p->pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench: the peer process failed (status 0x%x)\n", status);
        abort();
    }
}

/* ---- segments removed on a signal ---- */

#define MAX_SEGMENTS 64
static char segment_paths[MAX_SEGMENTS][128]; /* "/dev/shm/psyne.<name>" */
static _Atomic int segments_made;

void bench_segment_made(const char *uri)
{
    if (strncmp(uri, "ipc://", 6) != 0)
        return;
    for (int i = 0; i < atomic_load(&segments_made); i++)
        if (strcmp(segment_paths[i] + strlen("/dev/shm/psyne."), uri + 6) == 0)
            return;
    int i = atomic_load(&segments_made);
    if (i == MAX_SEGMENTS)
        return;
    snprintf(segment_paths[i], sizeof segment_paths[i], "/dev/shm/psyne.%s", uri + 6);
    atomic_store(&segments_made, i + 1); /* after the path: the handler reads only whole ones */
}

/* Only async-signal-safe calls: unlink, then the signal's own end. */
static void remove_segments(int sig)
{
    int n = atomic_load(&segments_made);
    for (int i = 0; i < n; i++)
        unlink(segment_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

void bench_remove_on_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = remove_segments;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}
