/* SPDX-License-Identifier: MIT */
/*
 * placement.c - ring memory placement and thread pinning take effect, as
 * the kernel reports them:
 *   huge pages   KernelPageSize of the ring's mapping in /proc/self/smaps
 *                (explicit ones reserved in /proc/sys/vm/nr_hugepages by this
 *                test when it may, and released again; without them, the
 *                documented fallback is checked instead)
 *   NUMA         the policy of the mapping in /proc/self/numa_maps
 *   mlock        Locked: of the mapping in /proc/self/smaps
 *   affinity     sched_getaffinity of the pinned thread
 * Messages cross every placed ring and its wrap, checked byte by byte.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check.h"
#include "kernel_view.h"
#include "laps.h"

/* The sanitizers' runtimes turn mlock into a no-op (sanitizer_common). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PSY_SANITIZED 1
#elif defined(__has_feature)
#define PSY_SANITIZED (__has_feature(address_sanitizer) || __has_feature(thread_sanitizer))
#else
#define PSY_SANITIZED 0
#endif

#define MIB (1024u * 1024u)

static long read_long_file(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static int write_long_file(const char *path, long v)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = fprintf(f, "%ld\n", v) > 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static long meminfo(const char *field)
{
    FILE *f = fopen("/proc/meminfo", "r");
    CHECK(f);
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            v = atol(line + n + 1);
    fclose(f);
    return v;
}

/* ---- a channel with options, and traffic through it ---- */

static int open_placed(psyne_channel **ch, const char *uri, uint64_t capacity, uint32_t flags, uint32_t node)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.capacity = capacity;
    o.flags = flags;
    o.numa_node = node;
    return psyne_channel_open(ch, uri, &o);
}

static struct psyne_stats stats_of(psyne_channel *ch)
{
    struct psyne_stats st;
    CHECK_RC(psyne_channel_stats(ch, &st), 0);
    return st;
}

/* ---- the parts ---- */

static void test_default_placement(void)
{
    psyne_channel *ch;
    CHECK_RC(open_placed(&ch, "memory://plain", 256 * 1024, 0, 0), 0);
    void *data = send_laps(ch, ch, 256 * 1024, 3, PSYNE_NONBLOCK);
    struct psyne_stats st = stats_of(ch);
    CHECK(st.pages == PSYNE_PAGES_NORMAL && st.page_size == (uint64_t)sysconf(_SC_PAGESIZE));
    CHECK(st.numa_node == -1 && st.locked == 0);
    CHECK(smaps_kb(data, "KernelPageSize") * 1024 == sysconf(_SC_PAGESIZE));
    psyne_channel_close(ch);
}

static void test_numa(const char *uri)
{
    psyne_channel *ch;
    CHECK_RC(open_placed(&ch, uri, 1 * MIB, PSYNE_F_NUMA_BIND, 0), 0);
    void *data = send_laps(ch, ch, 1 * MIB, 2, PSYNE_NONBLOCK);
    CHECK(stats_of(ch).numa_node == 0);
    char line[1024];
    numa_maps_line(data, line, sizeof line);
    if (!strstr(line, "bind:0")) {
        fprintf(stderr, "%s: numa_maps shows no bind:0 policy: %s", uri, line);
        abort();
    }
    printf("numa %s: %s", uri, line);
    psyne_channel_close(ch);
}

static void test_mlock(void)
{
    psyne_channel *ch;
    int rc = open_placed(&ch, "memory://locked", 1 * MIB, PSYNE_F_MLOCK, 0);
    if (rc == -ENOMEM || rc == -EPERM) { /* the documented refusal: the limit is below what a ring needs */
        struct rlimit rl;
        CHECK(getrlimit(RLIMIT_MEMLOCK, &rl) == 0);
        CHECK(rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 3 * MIB);
        printf("mlock: refused with %s under RLIMIT_MEMLOCK %llu (the documented behaviour)\n", psyne_strerror(rc),
               (unsigned long long)rl.rlim_cur);
        return;
    }
    CHECK_RC(rc, 0);
    CHECK(stats_of(ch).locked == 1);
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(ch, 64, &c, PSYNE_NONBLOCK), 0);
    long locked = smaps_kb(c.data, "Locked");
    CHECK_RC(psyne_abort(ch, &c), 0);
    printf("mlock: %ld kB of the ring mapping locked\n", locked);
#if PSY_SANITIZED
    printf("mlock: the sanitizer runtime turns mlock into a no-op; only the library's report is checked\n");
#else
    /* Locked counts proportional size: the mirror maps each page twice. */
    CHECK(locked >= 512);
#endif
    send_laps(ch, ch, 1 * MIB, 2, PSYNE_NONBLOCK);
    psyne_channel_close(ch);
}

/* Huge pages asked for where none can be explicit: the fallback is
 * transparent pages if the kernel gives them to shared memory, else normal
 * ones; either way the channel works and says which. */
static void check_fallback(const char *uri, uint64_t capacity, const char *why)
{
    psyne_channel *ch;
    CHECK_RC(open_placed(&ch, uri, capacity, PSYNE_F_HUGEPAGES, 0), 0);
    void *data = send_laps(ch, ch, capacity, 2, PSYNE_NONBLOCK);
    struct psyne_stats st = stats_of(ch);
    CHECK(st.pages != PSYNE_PAGES_EXPLICIT);
    CHECK(st.pages == (shmem_thp_allowed() ? PSYNE_PAGES_TRANSPARENT : PSYNE_PAGES_NORMAL));
    if (st.pages == PSYNE_PAGES_NORMAL)
        CHECK(smaps_kb(data, "KernelPageSize") * 1024 == sysconf(_SC_PAGESIZE));
    printf("hugepages fallback (%s) %s: pages=%d page_size=%llu\n", why, uri, st.pages,
           (unsigned long long)st.page_size);
    psyne_channel_close(ch);
}

static void check_explicit(uint64_t capacity)
{
    psyne_channel *ch;
    CHECK_RC(open_placed(&ch, "memory://huge", capacity, PSYNE_F_HUGEPAGES | PSYNE_F_NUMA_BIND, 0), 0);
    struct psyne_stats st = stats_of(ch);
    CHECK(st.pages == PSYNE_PAGES_EXPLICIT);
    CHECK(st.page_size == (uint64_t)meminfo("Hugepagesize") * 1024);
    CHECK(st.numa_node == 0);
    void *data = send_laps(ch, ch, capacity, 3, PSYNE_NONBLOCK);
    long kps = smaps_kb(data, "KernelPageSize");
    printf("hugepages explicit: %llu-byte ring, KernelPageSize %ld kB\n", (unsigned long long)capacity, kps);
    CHECK(kps * 1024 == (long)st.page_size);
    psyne_channel_close(ch);
}

static void test_hugepages(void)
{
    const char *nr_path = "/proc/sys/vm/nr_hugepages";
    long hpage_kb = meminfo("Hugepagesize");
    if (hpage_kb <= 0) {
        printf("hugepages: this kernel has no huge pages; checking the fallback only\n");
        check_fallback("memory://huge", 4 * MIB, "no hugetlb");
        return;
    }
    uint64_t capacity = 2 * (uint64_t)hpage_kb * 1024; /* two pages of data and one for the control area */
    long need = 3;
    check_fallback("memory://small", 64 * 1024, "ring smaller than a huge page");
    check_fallback("ipc://placement-huge", capacity, "ipc:// has no explicit huge pages");
    long free_pages = meminfo("HugePages_Free"), old_nr = read_long_file(nr_path);
    if (free_pages == 0)
        check_fallback("memory://huge", capacity, "none reserved");
    int reserved = 0;
    if (free_pages < need && old_nr >= 0 && write_long_file(nr_path, old_nr + need) == 0) {
        reserved = 1;
        free_pages = meminfo("HugePages_Free");
    }
    if (free_pages >= need)
        check_explicit(capacity);
    else
        printf("hugepages: SKIPPED explicit huge pages: %ld free and this process cannot reserve more in %s "
               "(the fallback was checked above)\n",
               free_pages, nr_path);
    if (reserved)
        CHECK(write_long_file(nr_path, old_nr) == 0 && read_long_file(nr_path) == old_nr);
}

static void test_affinity(void)
{
    int all[CPU_SETSIZE];
    int n = psyne_thread_cpus(all, CPU_SETSIZE);
    CHECK(n >= 1);
    int target = all[n - 1];
    CHECK_RC(psyne_pin_thread(&target, 1), 0);
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(CPU_COUNT(&set) == 1 && CPU_ISSET(target, &set));
    int got[4];
    CHECK(psyne_thread_cpus(got, 4) == 1 && got[0] == target);
    CHECK(psyne_thread_cpus(got, 0) == 1); /* counts without writing */
    int bad[] = {-1, CPU_SETSIZE};
    CHECK_RC(psyne_pin_thread(&bad[0], 1), -EINVAL);
    CHECK_RC(psyne_pin_thread(&bad[1], 1), -EINVAL);
    CHECK_RC(psyne_pin_thread(all, 0), -EINVAL);
    CHECK_RC(psyne_pin_thread(all, (unsigned)n), 0); /* back to every allowed CPU */
    CHECK(psyne_thread_cpus(got, 0) == n);
    printf("affinity: pinned to CPU %d and back to %d CPU(s)\n", target, n);
}

int main(int argc, char **argv)
{
    const char *part = argc > 1 ? argv[1] : "all";
    int all = !strcmp(part, "all");
    if (all || !strcmp(part, "default"))
        test_default_placement();
    if (all || !strcmp(part, "numa")) {
        test_numa("memory://numa");
        test_numa("ipc://placement-numa");
    }
    if (all || !strcmp(part, "mlock"))
        test_mlock();
    if (all || !strcmp(part, "hugepages"))
        test_hugepages();
    if (all || !strcmp(part, "affinity"))
        test_affinity();
    printf("placement %s: ok\n", part);
    return 0;
}
