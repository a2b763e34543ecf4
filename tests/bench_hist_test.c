/* SPDX-License-Identifier: MIT */
/*
 * bench_hist_test.c - the benchmark's latency histogram against exact
 * percentiles of the same samples: every percentile within the histogram's
 * promised 0.4 % (exact below 128 ns), min and max exact, merging two halves
 * the same as recording the whole, and the extremes of the value range.
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_hist.h"

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c)) {                                                                                                    \
            fprintf(stderr, "bench_hist_test:%d: CHECK(%s) failed\n", __LINE__, #c);                                   \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

static int cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Exact percentile by the histogram's rule: the sample of rank ceil(p% * n). */
static uint64_t exact(const uint64_t *sorted, size_t n, double p)
{
    size_t rank = (size_t)(p / 100.0 * (double)n);
    if ((double)rank < p / 100.0 * (double)n)
        rank++;
    return sorted[(rank ? rank : 1) - 1];
}

int main(void)
{
    enum { N = 200000 };
    static uint64_t v[N];
    static struct bench_hist whole, a, b;
    bench_hist_reset(&whole);
    bench_hist_reset(&a);
    bench_hist_reset(&b);
    CHECK(bench_hist_percentile(&whole, 50) == 0);
    for (size_t i = 0; i < N; i++) {
        /* latencies as ping-pongs see them: mostly 60 ns .. 2 us, a tail to 50 ms */
        uint64_t r = next_random();
        v[i] = r % 100 < 97 ? 60 + r % 2000 : r % 50000000;
        bench_hist_add(&whole, v[i]);
        bench_hist_add(i % 2 ? &a : &b, v[i]);
    }
    qsort(v, N, sizeof v[0], cmp);
    CHECK(whole.count == N && whole.min == v[0] && whole.max == v[N - 1]);
    static const double ps[] = {0.001, 1, 10, 50, 90, 97, 97.5, 99, 99.9, 99.99, 100};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        uint64_t want = exact(v, N, ps[i]), got = bench_hist_percentile(&whole, ps[i]);
        double err = want < 128 ? (double)(got != want) : (double)(got > want ? got - want : want - got) / (double)want;
        if (err > 0.004) {
            fprintf(stderr, "bench_hist_test: p%g: %llu, exact %llu\n", ps[i], (unsigned long long)got,
                    (unsigned long long)want);
            return 1;
        }
    }
    bench_hist_merge(&a, &b);
    CHECK(a.count == whole.count && a.min == whole.min && a.max == whole.max);
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        CHECK(a.bucket[i] == whole.bucket[i]);

    /* the ends of the range: 0 and the largest value land in their own buckets */
    struct bench_hist *e = malloc(sizeof *e);
    CHECK(e);
    bench_hist_reset(e);
    bench_hist_add(e, 0);
    bench_hist_add(e, UINT64_MAX);
    CHECK(bench_hist_percentile(e, 50) == 0 && bench_hist_percentile(e, 100) == UINT64_MAX);
    CHECK(bench_hist_percentile(e, 99) >= UINT64_MAX - (UINT64_MAX >> 7));
    free(e);
    printf("bench_hist_test: percentiles of %d samples within 0.4%%, merge exact\n", N);
    return 0;
}
