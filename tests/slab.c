/* SPDX-License-Identifier: MIT */
/*
 * slab.c - psyne_slabs: carving, reuse, growth, limits and errors against a
 * model of what is allocated; rings of every kind carved from slabs (static
 * memory://, dynamic, tcp://) moving checked messages; the placement the
 * slabs report against what the kernel says (/proc/self/smaps, numa_maps).
 *   test_slab [all|alloc|errors|rings|placement]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "free_port.h"
#include "kernel_view.h"
#include "laps.h"

#define T_MSG PSYNE_TYPE_USER_MIN
#define KIB 1024u
#define MIB (1024u * 1024u)

static struct psyne_slab_stats stats_of(psyne_slabs *s)
{
    struct psyne_slab_stats st;
    CHECK_RC(psyne_slabs_stats(s, &st), 0);
    return st;
}

static psyne_slabs *pool(uint64_t slab_size, uint64_t max_bytes, uint32_t flags)
{
    struct psyne_slab_options o;
    psyne_slab_options_init(&o);
    o.slab_size = slab_size;
    o.max_bytes = max_bytes;
    o.flags = flags;
    psyne_slabs *s;
    CHECK_RC(psyne_slabs_create(&o, &s), 0);
    return s;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- carving against a model ---- */

struct block {
    unsigned char *p;
    size_t len;
    unsigned char fill;
};

/* Every live block still holds its own fill: no two overlap, and carving or
 * freeing others never touched it. */
static void check_blocks(const struct block *b, int n)
{
    for (int i = 0; i < n; i++)
        for (size_t k = 0; k < b[i].len; k += 61)
            if (b[i].p[k] != b[i].fill) {
                fprintf(stderr, "block %d (%zu bytes at %p) byte %zu: %d, not %d\n", i, b[i].len, (void *)b[i].p, k,
                        b[i].p[k], b[i].fill);
                abort();
            }
}

static void test_alloc(void)
{
    psyne_slabs *s = pool(1 * MIB, 0, 0);
    struct psyne_slab_stats st = stats_of(s);
    CHECK(st.slabs == 1 && st.bytes == 1 * MIB && st.bytes_in_use == 0 && st.allocations == 0 && st.growths == 0);
    CHECK(st.pages == PSYNE_PAGES_NORMAL && st.page_size == (uint64_t)sysconf(_SC_PAGESIZE) && st.numa_node == -1);

    enum { N = 400 };
    static struct block b[N];
    int n = 0;
    uint64_t rng = 0x2545f4914f6cdd1dull, in_use = 0, high = 0, total = 0;
    for (int step = 0; step < (int)test_scale(20000); step++) {
        if (n < N && (n == 0 || rng_next(&rng) % 3 != 0)) {
            /* mostly small (messages), now and then large (a tensor) */
            size_t len = rng_next(&rng) % 8 == 0 ? 1 + rng_next(&rng) % (300 * KIB) : 1 + rng_next(&rng) % 5000;
            void *p;
            CHECK_RC(psyne_slab_alloc(s, len, &p), 0);
            CHECK(((uintptr_t)p & 63) == 0);
            b[n] = (struct block){p, len, (unsigned char)(1 + rng_next(&rng) % 250)};
            memset(p, b[n].fill, len);
            in_use += (len + 63) / 64 * 64;
            high = in_use > high ? in_use : high;
            total++;
            n++;
        } else {
            int k = (int)(rng_next(&rng) % (uint64_t)n);
            CHECK_RC(psyne_slab_free(s, b[k].p), 0);
            CHECK_RC(psyne_slab_free(s, b[k].p), -EINVAL); /* freed already */
            in_use -= (b[k].len + 63) / 64 * 64;
            b[k] = b[--n];
        }
        if (step % 500 == 0)
            check_blocks(b, n);
        st = stats_of(s);
        CHECK(st.bytes_in_use == in_use && st.allocations == (uint64_t)n && st.allocs_total == total);
        CHECK(st.high_water == high && st.bytes_in_use <= st.bytes);
    }
    check_blocks(b, n);
    st = stats_of(s);
    printf("alloc: %llu carved, %llu live, %llu bytes in use, %llu slab(s) of %llu bytes (%llu grown), "
           "high water %llu\n",
           (unsigned long long)st.allocs_total, (unsigned long long)st.allocations, (unsigned long long)st.bytes_in_use,
           (unsigned long long)st.slabs, (unsigned long long)st.bytes, (unsigned long long)st.growths,
           (unsigned long long)st.high_water);
    CHECK(st.growths >= 1 && st.slabs == st.growths + 1); /* 400 blocks, some of 300 KiB: more than 1 MiB */
    CHECK_RC(psyne_slabs_destroy(s), -EBUSY);             /* blocks live: nothing happens */
    while (n > 0)
        CHECK_RC(psyne_slab_free(s, b[--n].p), 0);
    st = stats_of(s);
    CHECK(st.bytes_in_use == 0 && st.allocations == 0);
    /* Everything merged back: a slab-sized block fits in the first slab again. */
    uint64_t slabs = st.slabs;
    void *whole;
    CHECK_RC(psyne_slab_alloc(s, 1 * MIB, &whole), 0);
    CHECK(stats_of(s).slabs == slabs);
    CHECK_RC(psyne_slab_free(s, whole), 0);
    /* A request larger than a slab gets a slab of its own. */
    uint64_t bytes = st.bytes;
    CHECK_RC(psyne_slab_alloc(s, 3 * MIB + 5, &whole), 0);
    st = stats_of(s);
    CHECK(st.slabs == slabs + 1 && st.bytes == bytes + 3 * MIB + (uint64_t)sysconf(_SC_PAGESIZE));
    memset(whole, 7, 3 * MIB + 5);
    CHECK_RC(psyne_slab_free(s, whole), 0);
    CHECK_RC(psyne_slabs_destroy(s), 0);
}

static void test_errors(void)
{
    struct psyne_slab_options o;
    psyne_slab_options_init(&o);
    psyne_slabs *s = NULL;
    CHECK_RC(psyne_slabs_create(NULL, &s), -EINVAL);
    CHECK_RC(psyne_slabs_create(&o, NULL), -EINVAL);
    o.flags = PSYNE_F_LISTEN; /* not a memory flag */
    CHECK_RC(psyne_slabs_create(&o, &s), -EINVAL);
    psyne_slab_options_init(&o);
    o.slab_size = 4 * MIB;
    o.max_bytes = 1 * MIB; /* below one slab */
    CHECK_RC(psyne_slabs_create(&o, &s), -EINVAL);
    psyne_slab_options_init(&o);
    o.flags = PSYNE_F_NUMA_BIND;
    o.numa_node = 1000;
    CHECK_RC(psyne_slabs_create(&o, &s), -EINVAL);
    CHECK(strstr(psyne_last_error(), "NUMA") != NULL);
    CHECK_RC(psyne_slabs_destroy(NULL), 0);

    /* max_bytes: two slabs, then -ENOMEM, counted as failed */
    s = pool(256 * KIB, 512 * KIB, 0);
    void *a, *b, *c, *d;
    CHECK_RC(psyne_slab_alloc(s, 200 * KIB, &a), 0);
    CHECK_RC(psyne_slab_alloc(s, 200 * KIB, &b), 0); /* the second slab */
    CHECK_RC(psyne_slab_alloc(s, 200 * KIB, &c), -ENOMEM);
    CHECK(strstr(psyne_last_error(), "max_bytes") != NULL);
    struct psyne_slab_stats st = stats_of(s);
    CHECK(st.failed == 1 && st.slabs == 2 && st.bytes == 512 * KIB);
    CHECK_RC(psyne_slab_alloc(s, 50 * KIB, &d), 0); /* what still fits, fits */
    CHECK_RC(psyne_slab_alloc(s, 0, &c), -EINVAL);
    CHECK_RC(psyne_slab_alloc(NULL, 64, &c), -EINVAL);
    CHECK_RC(psyne_slab_alloc(s, 64, NULL), -EINVAL);
    CHECK_RC(psyne_slab_free(s, (char *)a + 64), -EINVAL); /* not a block's start */
    CHECK_RC(psyne_slab_free(s, &st), -EINVAL);
    CHECK_RC(psyne_slab_free(s, NULL), -EINVAL);
    CHECK_RC(psyne_slabs_stats(s, NULL), -EINVAL);
    CHECK_RC(psyne_slab_free(s, a), 0);
    CHECK_RC(psyne_slab_free(s, b), 0);
    CHECK_RC(psyne_slab_free(s, d), 0);

    /* ipc:// rings are shared segments of their own */
    struct psyne_options co;
    psyne_options_init(&co);
    co.slabs = s;
    psyne_channel *ch;
    CHECK_RC(psyne_channel_open(&ch, "ipc://slab-refused", &co), -EINVAL);
    /* no room for a ring: -ENOMEM at open */
    co.capacity = 1 * MIB;
    CHECK_RC(psyne_channel_open(&ch, "memory://slab-too-big", &co), -ENOMEM);
    CHECK(stats_of(s).allocations == 0);
    CHECK_RC(psyne_slabs_destroy(s), 0);
}

/* ---- rings carved from slabs ---- */

static int slab_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f);
    char line[512];
    int n = 0, rings = 0;
    while (fgets(line, sizeof line, f)) {
        n += strstr(line, "memfd:psyne-slab") != NULL;
        rings += strstr(line, "memfd:psyne-ring") != NULL;
    }
    fclose(f);
    return n * 1000 + rings;
}

static void test_rings(void)
{
    int maps_before = slab_mappings();
    psyne_slabs *s = pool(4 * MIB, 0, 0);
    /* Dirty the whole first slab: every ring below is carved from memory
     * that held other bytes, and must start out zero all the same (an MPMC
     * ring reads a nonzero header as a committed record). */
    void *junk;
    CHECK_RC(psyne_slab_alloc(s, 4 * MIB, &junk), 0);
    memset(junk, 0xa5, 4 * MIB);
    CHECK_RC(psyne_slab_free(s, junk), 0);

    static const int modes[] = {PSYNE_MODE_SPSC, PSYNE_MODE_SPMC, PSYNE_MODE_MPSC, PSYNE_MODE_MPMC};
    psyne_channel *ch[4];
    struct psyne_options o;
    psyne_options_init(&o);
    o.slabs = s;
    o.capacity = 256 * KIB;
    for (int i = 0; i < 4; i++) {
        char uri[64];
        snprintf(uri, sizeof uri, "memory://slab-ring-%d", i);
        o.mode = modes[i];
        CHECK_RC(psyne_channel_open(&ch[i], uri, &o), 0);
    }
    struct psyne_slab_stats st = stats_of(s);
    CHECK(st.allocations == 4 && st.slabs == 1 && st.bytes_in_use >= 4 * 256 * KIB);
    CHECK(slab_mappings() % 1000 == maps_before % 1000); /* no ring memfd of their own */
    for (int i = 0; i < 4; i++) {
        send_laps(ch[i], ch[i], 256 * KIB, 3, 5000000000ll);
        struct psyne_stats cs;
        CHECK_RC(psyne_channel_stats(ch[i], &cs), 0);
        CHECK(cs.capacity == 256 * KIB && cs.pages == PSYNE_PAGES_NORMAL);
    }
    for (int i = 0; i < 4; i++)
        psyne_channel_close(ch[i]);
    CHECK(stats_of(s).allocations == 0);

    /* A dynamic ring: every segment it chains comes from the slabs and goes
     * back to them when released. */
    struct psyne_dynamic d = {.max_capacity = 1 * MIB, .window_ops = 200, .check_interval = 8};
    psyne_options_init(&o);
    o.slabs = s;
    o.capacity = 16 * KIB;
    o.dynamic = &d;
    psyne_channel *dyn;
    CHECK_RC(psyne_channel_open(&dyn, "memory://slab-dynamic", &o), 0);
    uint64_t carved_before = stats_of(s).allocs_total;
    for (int round = 0; round < 3; round++) {
        /* a burst that fills it (grow), then a trickle (shrink) */
        uint64_t seq = 0;
        struct psyne_claimed c;
        while (seq < 2000 && psyne_claim(dyn, 1000, &c, PSYNE_NONBLOCK) == 0) {
            memset(c.data, (int)(seq & 0xff), 1000);
            CHECK_RC(psyne_commit(dyn, &c, 1000, T_MSG), 0);
            seq++;
        }
        for (uint64_t k = 0; k < seq; k++) {
            struct psyne_msg m;
            CHECK_RC(psyne_receive(dyn, &m, PSYNE_NONBLOCK), 0);
            CHECK(m.length == 1000 && ((unsigned char *)m.data)[999] == (unsigned char)(k & 0xff));
            CHECK_RC(psyne_release(dyn, &m), 0);
        }
        send_laps(dyn, dyn, 64 * KIB, 4, 5000000000ll);
    }
    struct psyne_stats ds;
    CHECK_RC(psyne_channel_stats(dyn, &ds), 0);
    st = stats_of(s);
    printf("rings: dynamic ring in slabs: %llu grows, %llu shrinks, %llu segment(s) carved, %llu live\n",
           (unsigned long long)ds.resizes_up, (unsigned long long)ds.resizes_down,
           (unsigned long long)(st.allocs_total - carved_before), (unsigned long long)st.allocations);
    CHECK(ds.resizes_up >= 1 && ds.resizes_down >= 1);
    CHECK(st.allocs_total - carved_before == ds.resizes_up + ds.resizes_down);
    CHECK(st.allocations == (uint64_t)ds.segments);
    psyne_channel_close(dyn);
    CHECK(stats_of(s).allocations == 0);

    /* tcp://: both rings of both ends come from the slabs */
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", test_free_port());
    psyne_options_init(&o);
    o.slabs = s;
    o.capacity = 128 * KIB;
    o.flags = PSYNE_F_LISTEN;
    psyne_channel *server, *client;
    CHECK_RC(psyne_channel_open(&server, uri, &o), 0);
    o.flags = 0;
    CHECK_RC(psyne_channel_open(&client, uri, &o), 0);
    CHECK(stats_of(s).allocations == 4);
    send_laps(client, server, 128 * KIB, 3, 5000000000ll);
    send_laps(server, client, 128 * KIB, 1, 5000000000ll);
    psyne_channel_close(client);
    psyne_channel_close(server);
    CHECK(stats_of(s).allocations == 0);

    CHECK_RC(psyne_slabs_destroy(s), 0);
    CHECK(slab_mappings() == maps_before);
}

/* ---- placement ---- */

static void test_placement(void)
{
    /* NUMA: the slab's policy is the file's, seen on its mapping */
    psyne_slabs *s = pool(2 * MIB, 0, PSYNE_F_NUMA_BIND);
    CHECK(stats_of(s).numa_node == 0);
    void *p;
    CHECK_RC(psyne_slab_alloc(s, 4096, &p), 0);
    char line[1024];
    numa_maps_line(p, line, sizeof line);
    printf("placement: numa %s", line);
    CHECK(strstr(line, "bind:0") != NULL);
    CHECK_RC(psyne_slab_free(s, p), 0);
    CHECK_RC(psyne_slabs_destroy(s), 0);

    /* Huge pages: explicit where reserved, else the documented fallback;
     * a ring of a slab reports what the slab got. */
    s = pool(4 * MIB, 0, PSYNE_F_HUGEPAGES);
    struct psyne_slab_stats st = stats_of(s);
    printf("placement: huge pages asked: pages=%d page_size=%llu\n", st.pages, (unsigned long long)st.page_size);
    if (st.pages == PSYNE_PAGES_EXPLICIT)
        CHECK(st.page_size >= 2 * MIB);
    else
        CHECK(st.pages == (shmem_thp_allowed() ? PSYNE_PAGES_TRANSPARENT : PSYNE_PAGES_NORMAL));
    struct psyne_options o;
    psyne_options_init(&o);
    o.slabs = s;
    o.capacity = 2 * MIB;
    psyne_channel *ch;
    CHECK_RC(psyne_channel_open(&ch, "memory://slab-huge", &o), 0);
    struct psyne_stats cs;
    CHECK_RC(psyne_channel_stats(ch, &cs), 0);
    CHECK(cs.pages == st.pages && cs.page_size == st.page_size);
    send_laps(ch, ch, 2 * MIB, 2, 5000000000ll);
    psyne_channel_close(ch);
    if (st.pages == PSYNE_PAGES_EXPLICIT) { /* a ring smaller than a huge page cannot be carved from them */
        o.capacity = 64 * KIB;
        CHECK_RC(psyne_channel_open(&ch, "memory://slab-small", &o), -EINVAL);
    }
    CHECK_RC(psyne_slabs_destroy(s), 0);
}

int main(int argc, char **argv)
{
    const char *part = argc > 1 ? argv[1] : "all";
    int all = !strcmp(part, "all");
    if (all || !strcmp(part, "alloc"))
        test_alloc();
    if (all || !strcmp(part, "errors"))
        test_errors();
    if (all || !strcmp(part, "rings"))
        test_rings();
    if (all || !strcmp(part, "placement"))
        test_placement();
    printf("slab %s: ok\n", part);
    return 0;
}
