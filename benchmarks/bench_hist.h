/* SPDX-License-Identifier: MIT */
/*
 * bench_hist.h - a latency histogram of fixed size (HdrHistogram's
 * log-linear layout): exact below 128 ns, then 128 buckets per power of
 * two, so every value is kept within 0.4 % of itself, whatever the number of
 * samples (a --duration run of unknown length costs no more memory than a
 * short one). The exact minimum and maximum are kept beside the buckets.
 *
 * Not thread-safe: one histogram per recording thread (merge them after).
 */
#ifndef PSY_BENCH_HIST_H
#define PSY_BENCH_HIST_H

#include <stdint.h>
#include <stdio.h>

#define BENCH_HIST_SUB_BITS 7 /* 128 sub-buckets per octave */
#define BENCH_HIST_BUCKETS ((64 - BENCH_HIST_SUB_BITS + 1) << BENCH_HIST_SUB_BITS)

struct bench_hist {
    uint64_t count, min, max;
    uint64_t bucket[BENCH_HIST_BUCKETS];
};

void bench_hist_reset(struct bench_hist *h);
void bench_hist_add(struct bench_hist *h, uint64_t value);
void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from);
/* The value below which p percent (0..100) of the samples lie: the middle
 * of its bucket, clamped to [min, max]; p = 100 gives the exact maximum. 0
 * when empty. */
uint64_t bench_hist_percentile(const struct bench_hist *h, double p);
/* Prints the distribution as "# " comment lines, one per power of two that
 * holds samples: range, count, share and a bar. */
void bench_hist_print(const struct bench_hist *h, const char *what, FILE *f);
/* Writes the distribution in HdrHistogram's percentile-distribution text
 * format (what its outputPercentileDistribution prints and its plotter
 * reads): a "#" line naming it, the column header, one line per percentile
 * tick (5 ticks per half distance to 100 %, as HdrHistogram's default),
 * values in microseconds, then the mean, standard deviation, maximum and
 * count. Returns 0, or -1 if nothing was recorded or the write failed. */
int bench_hist_write_hgrm(const struct bench_hist *h, const char *what, FILE *f);

#endif
