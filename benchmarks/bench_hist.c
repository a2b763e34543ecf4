/* SPDX-License-Identifier: MIT */
/*
 * bench_hist.c - the log-linear latency histogram (see bench_hist.h).
 *
 * Index of a value v: below 2^S (S = BENCH_HIST_SUB_BITS) the value itself;
 * from 2^k (k >= S) on, octave k - S + 1 of 2^S buckets, each 2^(k-S) wide:
 * (k - S + 1) * 2^S + the S bits of v below its top bit.
 */
#include "bench_hist.h"

#include <math.h>
#include <string.h>

#define S BENCH_HIST_SUB_BITS
#define SUB (1u << S)

static unsigned index_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v);
    return (k - S + 1) * SUB + (unsigned)((v >> (k - S)) & (SUB - 1));
}

/* The lowest value of bucket i, and its width. */
static uint64_t bucket_low(unsigned i, uint64_t *width)
{
    if (i < SUB) {
        *width = 1;
        return i;
    }
    unsigned octave = i / SUB, k = octave + S - 1;
    *width = 1ull << (k - S);
    return ((uint64_t)SUB + (i % SUB)) << (k - S);
}

void bench_hist_reset(struct bench_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void bench_hist_add(struct bench_hist *h, uint64_t value)
{
    h->bucket[index_of(value)]++;
    h->count++;
    h->min = value < h->min ? value : h->min;
    h->max = value > h->max ? value : h->max;
}

void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        into->bucket[i] += from->bucket[i];
    into->count += from->count;
    into->min = from->min < into->min ? from->min : into->min;
    into->max = from->max > into->max ? from->max : into->max;
}

uint64_t bench_hist_percentile(const struct bench_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p >= 100)
        return h->max;
    /* the sample of rank ceil(p% of count), counting from 1 */
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count - 1e-9);
    rank = rank ? rank : 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t width, v = bucket_low(i, &width) + width / 2;
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}

void bench_hist_print(const struct bench_hist *h, const char *what, FILE *f)
{
    if (h->count == 0)
        return;
    fprintf(f, "# %s: %llu samples, min %llu ns, max %llu ns\n", what, (unsigned long long)h->count,
            (unsigned long long)h->min, (unsigned long long)h->max);
    /* merge the buckets into powers of two: [2^j, 2^(j+1)) */
    uint64_t octave[65] = {0};
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        if (!h->bucket[i])
            continue;
        uint64_t width, low = bucket_low(i, &width);
        octave[low ? 64 - __builtin_clzll(low) : 0] += h->bucket[i];
    }
    for (unsigned j = 0; j < 65; j++) {
        if (!octave[j])
            continue;
        double share = 100.0 * (double)octave[j] / (double)h->count;
        char bar[51];
        int n = (int)(share / 2 + 0.5);
        memset(bar, '#', (size_t)n);
        bar[n] = 0;
        uint64_t lo = j ? 1ull << (j - 1) : 0, hi = j ? (j < 64 ? 1ull << j : UINT64_MAX) : 1;
        fprintf(f, "#   [%9llu, %9llu) ns %10llu %6.2f%% %s\n", (unsigned long long)lo, (unsigned long long)hi,
                (unsigned long long)octave[j], share, bar);
    }
}

/* Samples at or below value v (whole buckets: exact below 128 ns). */
static uint64_t count_at_or_below(const struct bench_hist *h, uint64_t v)
{
    uint64_t n = 0;
    for (unsigned i = 0; i <= index_of(v) && i < BENCH_HIST_BUCKETS; i++)
        n += h->bucket[i];
    return n;
}

int bench_hist_write_hgrm(const struct bench_hist *h, const char *what, FILE *f)
{
    if (h->count == 0)
        return -1;
    double sum = 0, sum_sq = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        if (!h->bucket[i])
            continue;
        uint64_t width, mid = bucket_low(i, &width) + width / 2;
        sum += (double)h->bucket[i] * (double)mid;
        sum_sq += (double)h->bucket[i] * (double)mid * (double)mid;
    }
    double n = (double)h->count, mean = sum / n, var = sum_sq / n - mean * mean;
    fprintf(f, "# %s\n", what);
    fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    /* HdrHistogram's ticks: 5 per half of the distance left to 100 % */
    for (double p = 0; p < 100;) {
        uint64_t v = p == 0 ? h->min : bench_hist_percentile(h, p);
        uint64_t total = count_at_or_below(h, v);
        if (total >= h->count)
            break; /* the rest is the last line */
        fprintf(f, "%12.3f %2.12f %10llu %14.2f\n", (double)v / 1e3, p / 100, (unsigned long long)total,
                1 / (1 - p / 100));
        double halvings = floor(log2(100 / (100 - p)));
        p += 100 / (5 * pow(2, halvings + 1));
    }
    fprintf(f, "%12.3f %2.12f %10llu\n", (double)h->max / 1e3, 1.0, (unsigned long long)h->count);
    fprintf(f, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", mean / 1e3, (var > 0 ? sqrt(var) : 0) / 1e3);
    fprintf(f, "#[Max     = %12.3f, Total count    = %12llu]\n", (double)h->max / 1e3, (unsigned long long)h->count);
    fprintf(f, "#[Buckets = %12d, SubBuckets     = %12d]\n", 64 - BENCH_HIST_SUB_BITS + 1, 1 << BENCH_HIST_SUB_BITS);
    return ferror(f) ? -1 : 0;
}
