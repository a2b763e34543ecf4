/* SPDX-License-Identifier: MIT */
/*
 * bench_output.h - how psyne_bench shows its results: RESULT lines
 * (WORKLOADS.md) or JSON objects with the same keys, a table of every result
 * at the end for a reader at a terminal, and a progress line on stderr while
 * long runs go on.
 *
 * Not thread-safe: the measuring (main) thread calls these.
 */
#ifndef PSY_BENCH_OUTPUT_H
#define PSY_BENCH_OUTPUT_H

#include <stdio.h>

/* --json: one JSON object per result instead of a RESULT line. */
void bench_output_json(int on);
/* What every JSON result carries besides its measurement: the machine (CPU
 * model, CPUs online, kernel), psyne's version and the commit psyne_bench
 * was built from, and the command line (the options used). */
void bench_output_describe(int argc, char **argv);
/* Appends to the result being built: "key=value key=value ...". */
void bench_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the result as a RESULT line (or JSON) and keeps it for the table. */
void bench_out_end(void);

/* A table of every result printed so far: one row per result, throughput
 * in msgs/s (k, M) and GB/s, round trips in microseconds, and the result's
 * comparison against its reference (vs_* keys). */
void bench_table_print(FILE *f);

/* The progress line: "[job/jobs] label: run r/runs", rewritten in place on
 * stderr, only when stderr is a terminal; cleared by bench_progress_end. */
void bench_progress_job(int job, int jobs, const char *label);
void bench_progress_run(int run, int runs);
void bench_progress_end(void);

#endif
