/* SPDX-License-Identifier: MIT */
/*
 * bench_output.c - see bench_output.h.
 */
#define _GNU_SOURCE /* strtok_r, strdup */
#include "bench_output.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench_commit.h" /* PSYNE_BENCH_COMMIT, written at build time (commit.cmake) */
#include "psyne.h"

static int json_out;
static char *context; /* JSON members every object ends with (bench_output_describe) */
static char line[1024];
static size_t line_len;
static char **kept; /* every result so far, "key=value ..." */
static size_t n_kept;

void bench_output_json(int on)
{
    json_out = on;
}

void bench_out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + line_len, sizeof line - line_len, fmt, ap);
    va_end(ap);
    if (n > 0)
        line_len = line_len + (size_t)n < sizeof line ? line_len + (size_t)n : sizeof line - 1;
}

/* s as a JSON string's contents (quotes, backslashes, control characters). */
static size_t json_escape(char *out, size_t len, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            n += (size_t)snprintf(out + n, len - n, "\\%c", c);
        else if (c < 0x20)
            n += (size_t)snprintf(out + n, len - n, "\\u%04x", c);
        else
            out[n++] = (char)c;
    }
    out[n] = 0;
    return n;
}

static void cpu_model(char *out, size_t len)
{
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char text[512];
    while (f && fgets(text, sizeof text, f)) {
        if (strncmp(text, "model name", 10) == 0 && strchr(text, ':')) {
            const char *v = strchr(text, ':') + 1;
            v += strspn(v, " \t");
            snprintf(out, len, "%.*s", (int)strcspn(v, "\n"), v);
            break;
        }
    }
    if (f)
        fclose(f);
}

void bench_output_describe(int argc, char **argv)
{
    char cpu[256], ecpu[512], args[1024] = "", eargs[2048];
    struct utsname u;
    cpu_model(cpu, sizeof cpu);
    json_escape(ecpu, sizeof ecpu, cpu);
    if (uname(&u) != 0)
        snprintf(u.release, sizeof u.release, "unknown");
    size_t n = 0;
    for (int i = 0; i < argc && n < sizeof args; i++)
        n += (size_t)snprintf(args + n, sizeof args - n, "%s%s", i ? " " : "", argv[i]);
    json_escape(eargs, sizeof eargs, args);
    char buf[4096];
    snprintf(buf, sizeof buf,
             "\"machine\": {\"cpu\": \"%s\", \"cpus\": %ld, \"kernel\": \"%s\"}, "
             "\"psyne\": {\"version\": \"%d.%d.%d\", \"library\": %d, \"commit\": \"%s\"}, \"command\": \"%s\"",
             ecpu, sysconf(_SC_NPROCESSORS_ONLN), u.release, PSYNE_VERSION_MAJOR, PSYNE_VERSION_MINOR,
             PSYNE_VERSION_PATCH, psyne_version(), PSYNE_BENCH_COMMIT, eargs);
    free(context);
    context = strdup(buf);
}

static void print_json(char *kvs)
{
    printf("{");
    int first = 1;
    for (char *save, *kv = strtok_r(kvs, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
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
    if (context)
        printf("%s%s", first ? "" : ", ", context);
    printf("}\n");
}

void bench_out_end(void)
{
    bench_progress_end();
    char **more = realloc(kept, (n_kept + 1) * sizeof *kept);
    char *copy = strdup(line);
    if (!more || !copy)
        abort();
    kept = more;
    kept[n_kept++] = copy;
    if (!json_out)
        printf("RESULT %s\n", line);
    else
        print_json(line);
    line_len = 0;
    line[0] = 0;
    fflush(stdout);
}

/* ---- the table ---- */

/* The value of key in "key=value ..." (into buf), or NULL. */
static const char *get(const char *kvs, const char *key, char *buf, size_t len)
{
    size_t k = strlen(key);
    for (const char *p = kvs; (p = strstr(p, key)) != NULL; p += k) {
        if ((p == kvs || p[-1] == ' ') && p[k] == '=') {
            size_t n = strcspn(p + k + 1, " ");
            n = n < len - 1 ? n : len - 1;
            memcpy(buf, p + k + 1, n);
            buf[n] = 0;
            return buf;
        }
    }
    return NULL;
}

static void human_size(const char *bytes, char *buf, size_t len)
{
    unsigned long long b = strtoull(bytes, NULL, 10);
    if (b >= (1u << 20) && b % (1u << 20) == 0)
        snprintf(buf, len, "%llu MiB", b >> 20);
    else if (b >= 1024 && b % 1024 == 0)
        snprintf(buf, len, "%llu KiB", b >> 10);
    else
        snprintf(buf, len, "%llu B", b);
}

/* A number of the result scaled (ns -> us, msgs -> M msgs), or "-". */
static void cell(const char *kvs, const char *key, double scale, const char *fmt, char *buf, size_t len)
{
    char v[64];
    if (get(kvs, key, v, sizeof v))
        snprintf(buf, len, fmt, strtod(v, NULL) / scale);
    else
        snprintf(buf, len, "-");
}

/* A rate in messages per second with a unit that keeps three digits
 * (1 MiB messages move thousands a second, 64 B ones tens of millions). */
static void rate_cell(const char *kvs, char *buf, size_t len)
{
    char v[64];
    if (!get(kvs, "mps", v, sizeof v)) {
        snprintf(buf, len, "-");
        return;
    }
    double r = strtod(v, NULL);
    if (r >= 1e6)
        snprintf(buf, len, "%.2f M", r / 1e6);
    else if (r >= 1e3)
        snprintf(buf, len, "%.2f k", r / 1e3);
    else
        snprintf(buf, len, "%.1f", r);
}

/* The variant column of a row: the system, then the API, or the ring mode
 * and thread counts (what distinguishes rows of one workload). */
static void variant_of(const char *r, char *variant, size_t len)
{
    char sys[48], v[64], mode[16], prod[8], cons[8];
    if (!get(r, "system", sys, sizeof sys))
        snprintf(sys, sizeof sys, "?");
    if (get(r, "api", v, sizeof v))
        snprintf(variant, len, "%s %s", sys, v);
    else if (get(r, "mode", mode, sizeof mode) && get(r, "producers", prod, sizeof prod) &&
             get(r, "consumers", cons, sizeof cons))
        snprintf(variant, len, "%s %s %sx%s", sys, mode, prod, cons);
    else
        snprintf(variant, len, "%s", sys);
}

void bench_table_print(FILE *f)
{
    if (!n_kept)
        return;
    int width = (int)strlen("system / variant"); /* the widest variant: columns stay aligned */
    for (size_t i = 0; i < n_kept; i++) {
        char variant[128];
        variant_of(kept[i], variant, sizeof variant);
        width = (int)strlen(variant) > width ? (int)strlen(variant) : width;
    }
    fprintf(f, "\n%-17s %-8s %-*s %10s %8s %9s %9s %9s %9s %9s  %s\n", "workload", "size", width, "system / variant",
            "msgs/s", "GB/s", "p50 us", "p99 us", "p99.9 us", "p99.99 us", "max us", "compared");
    for (size_t i = 0; i < n_kept; i++) {
        const char *r = kept[i];
        char workload[64], size[32], variant[128], v[64], mps[24], gbps[16], p50[16], p99[16], p999[16], p9999[16],
            mx[16], vs[160] = "";
        if (!get(r, "workload", workload, sizeof workload))
            snprintf(workload, sizeof workload, "?");
        human_size(get(r, "size", v, sizeof v) ? v : "0", size, sizeof size);
        variant_of(r, variant, sizeof variant);
        rate_cell(r, mps, sizeof mps);
        cell(r, "gbps", 1, "%.2f", gbps, sizeof gbps);
        cell(r, "rtt_p50_ns", 1e3, "%.2f", p50, sizeof p50);
        cell(r, "rtt_p99_ns", 1e3, "%.2f", p99, sizeof p99);
        cell(r, "rtt_p999_ns", 1e3, "%.2f", p999, sizeof p999);
        cell(r, "rtt_p9999_ns", 1e3, "%.2f", p9999, sizeof p9999);
        cell(r, "rtt_max_ns", 1e3, "%.1f", mx, sizeof mx);
        /* the comparisons: every key with "vs_" in it, and resize times */
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", r);
        size_t n = 0;
        for (char *save, *kv = strtok_r(copy, " ", &save); kv; kv = strtok_r(NULL, " ", &save))
            if (strstr(kv, "vs_") || !strncmp(kv, "grow_us=", 8) || !strncmp(kv, "shrink_us=", 10))
                n += (size_t)snprintf(vs + n, n < sizeof vs ? sizeof vs - n : 0, "%s%s", n ? " " : "", kv);
        fprintf(f, "%-17s %-8s %-*s %10s %8s %9s %9s %9s %9s %9s  %s\n", workload, size, width, variant, mps, gbps, p50,
                p99, p999, p9999, mx, vs);
    }
}

/* ---- progress ---- */

static int progress_on = -1; /* -1: not yet asked whether stderr is a terminal */
static char progress_label[160];
static int progress_shown;

void bench_progress_job(int job, int jobs, const char *label)
{
    if (progress_on < 0)
        progress_on = isatty(STDERR_FILENO);
    snprintf(progress_label, sizeof progress_label, "[%d/%d] %s", job, jobs, label);
}

void bench_progress_run(int run, int runs)
{
    if (!progress_on)
        return;
    /* \r and erase-line: the line is rewritten in place */
    if (run == 0)
        fprintf(stderr, "\r\033[K%s: warm-up", progress_label);
    else
        fprintf(stderr, "\r\033[K%s: run %d/%d", progress_label, run, runs);
    progress_shown = 1;
}

void bench_progress_end(void)
{
    if (progress_on > 0 && progress_shown)
        fprintf(stderr, "\r\033[K");
    progress_shown = 0;
}
