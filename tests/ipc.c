/* SPDX-License-Identifier: MIT */
/*
 * ipc.c - ipc:// channels between real processes: segment lifecycle,
 * permissions, processes killed with SIGKILL, and corrupted segments.
 *
 *   test_ipc lifecycle | permissions | crashes | corruption
 *
 * Every channel name carries this process's pid: ctest runs tests side by
 * side. Children report failure through their exit status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/channel.h"
#include "ring/ring.h"
#include "transport/ipc_segment.h"

#define T_MSG (PSYNE_TYPE_USER_MIN + 1)
#define SKIP 77

static char name_buf[128];

/* "ipc://<what>-<pid>" (static buffer: one name at a time) */
static const char *uri_of(const char *what)
{
    snprintf(name_buf, sizeof name_buf, "ipc://%s-%d", what, (int)getpid());
    return name_buf;
}

static void shm_path_of(const char *uri, char *path, size_t len)
{
    snprintf(path, len, "/dev/shm/psyne.%s", uri + strlen("ipc://"));
}

static struct psyne_options opts(int mode, int role, uint64_t capacity)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.mode = mode;
    o.role = role;
    o.capacity = capacity;
    o.spin_ns = 1000;
    o.yield_ns = 10000;
    o.peer_timeout_ns = 20 * 1000 * 1000; /* look for dead peers every 20 ms */
    o.open_timeout_ns = 10ll * 1000 * 1000 * 1000;
    return o;
}

static void send_u64(psyne_channel *ch, uint64_t v)
{
    struct psyne_claimed c;
    CHECK_RC(psyne_claim(ch, sizeof v, &c, PSYNE_FOREVER), 0);
    memcpy(c.data, &v, sizeof v);
    CHECK_RC(psyne_commit(ch, &c, sizeof v, T_MSG), 0);
}

static uint64_t recv_u64(psyne_channel *ch)
{
    struct psyne_msg m;
    CHECK_RC(psyne_receive(ch, &m, PSYNE_FOREVER), 0);
    CHECK(m.length == sizeof(uint64_t) && m.type == T_MSG);
    uint64_t v;
    memcpy(&v, m.data, sizeof v);
    CHECK_RC(psyne_release(ch, &m), 0);
    return v;
}

static int wait_child(pid_t pid)
{
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    return status;
}

static void expect_clean_exit(pid_t pid)
{
    int status = wait_child(pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "child %d ended with status 0x%x\n", (int)pid, status);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The child writes one byte when it reached the point to be killed at. */
static void wait_ready(int fd)
{
    char b;
    CHECK(read(fd, &b, 1) == 1);
    if (getenv("IPC_TEST_TRACE"))
        fprintf(stderr, "ready %c\n", b);
}

static void kill_child(pid_t pid)
{
    CHECK(kill(pid, SIGKILL) == 0);
    int status = wait_child(pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static uint64_t file_hash(const char *path)
{
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    uint64_t h = 1469598103934665603ull;
    unsigned char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 1099511628211ull;
    close(fd);
    return h;
}

/* ---- lifecycle ---- */

static void test_lifecycle(void)
{
    const char *uri = uri_of("life");
    char path[256];
    shm_path_of(uri, path, sizeof path);
    struct psyne_options po = opts(PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER, 8192);
    struct psyne_options co = opts(PSYNE_MODE_SPSC, PSYNE_ROLE_CONSUMER, 0);
    psyne_channel *p, *c;
    CHECK_RC(psyne_channel_open(&p, uri, &po), 0);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    CHECK((st.st_mode & 0777) == 0600); /* private unless asked otherwise */
    CHECK_RC(psyne_channel_open(&c, uri, &co), 0);
    send_u64(p, 42);
    CHECK(recv_u64(c) == 42);

    /* a forked process joins by name and talks both ways through a second channel */
    const char *back = "ipc://life-back";
    char back_uri[64];
    snprintf(back_uri, sizeof back_uri, "%s-%d", back, (int)getpid());
    psyne_channel *bc;
    CHECK_RC(psyne_channel_open(&bc, back_uri, &co), 0);
    pid_t pid = fork();
    if (pid == 0) {
        psyne_channel *cc, *bp;
        CHECK_RC(psyne_channel_open(&cc, uri, &co), 0);
        CHECK_RC(psyne_channel_open(&bp, back_uri, &po), 0);
        for (uint64_t i = 0; i < 1000; i++)
            send_u64(bp, recv_u64(cc) * 2);
        psyne_channel_close(bp);
        psyne_channel_close(cc);
        _exit(0);
    }
    for (uint64_t i = 0; i < 1000; i++) { /* the child is the consumer now */
        send_u64(p, i);
        CHECK(recv_u64(bc) == i * 2);
    }
    expect_clean_exit(pid);
    CHECK_RC(psyne_channel_close(c), 0);
    struct psyne_msg m;
    CHECK_RC(psyne_receive(bc, &m, PSYNE_FOREVER), -EPIPE); /* the child's producer closed */
    psyne_channel_close(bc);

    /* mode and capacity must agree; bad names are refused */
    struct psyne_options wrong = opts(PSYNE_MODE_MPMC, PSYNE_ROLE_ANY, 0);
    psyne_channel *x;
    CHECK_RC(psyne_channel_open(&x, uri, &wrong), -EINVAL);
    wrong = opts(PSYNE_MODE_SPSC, PSYNE_ROLE_CONSUMER, 1 << 20);
    CHECK_RC(psyne_channel_open(&x, uri, &wrong), -EINVAL);
    CHECK_RC(psyne_channel_open(&x, "ipc://a/b", &co), -EINVAL);
    wrong = co;
    wrong.ipc_perm = 01777;
    CHECK_RC(psyne_channel_open(&x, "ipc://perm-bits", &wrong), -EINVAL);

    /* the last close removes the segment */
    CHECK(stat(path, &st) == 0);
    CHECK_RC(psyne_channel_close(p), 0);
    CHECK(stat(path, &st) != 0 && errno == ENOENT);

    /* a wider mode when asked for */
    struct psyne_options wide = opts(PSYNE_MODE_MPMC, PSYNE_ROLE_ANY, 4096);
    wide.ipc_perm = 0640;
    CHECK_RC(psyne_channel_open(&x, uri, &wide), 0);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);

    /* every handle is a slot: PSYNE_IPC_MAX_HANDLES, then -EBUSY */
    psyne_channel *many[PSYNE_IPC_MAX_HANDLES];
    for (int i = 1; i < PSYNE_IPC_MAX_HANDLES; i++)
        CHECK_RC(psyne_channel_open(&many[i], uri, &wide), 0);
    psyne_channel *one_more;
    CHECK_RC(psyne_channel_open(&one_more, uri, &wide), -EBUSY);
    for (int i = 1; i < PSYNE_IPC_MAX_HANDLES; i++)
        psyne_channel_close(many[i]);
    psyne_channel_close(x);
    CHECK(stat(path, &st) != 0);

    /* a segment left by a process that died without closing is reclaimed */
    pid = fork();
    if (pid == 0) {
        psyne_channel *dp;
        CHECK_RC(psyne_channel_open(&dp, uri, &po), 0);
        send_u64(dp, 7);
        raise(SIGKILL);
    }
    CHECK(WIFSIGNALED(wait_child(pid)));
    CHECK(stat(path, &st) == 0); /* left behind */
    ino_t old_ino = st.st_ino;
    CHECK_RC(psyne_channel_open(&c, uri, &co), 0);
    struct psyne_stats s;
    CHECK_RC(psyne_channel_stats(c, &s), 0);
    CHECK(s.msgs_out == 0 && s.in_use == 0); /* a fresh segment, not the dead one's */
    CHECK(stat(path, &st) == 0 && st.st_ino != old_ino);
    CHECK_RC(psyne_receive(c, &m, PSYNE_NONBLOCK), -EAGAIN);
    psyne_channel_close(c);
    printf("lifecycle: ok\n");
}

/* ---- a second user ---- */

static int test_permissions(void)
{
    if (geteuid() != 0) {
        printf("permissions: SKIPPED (needs root to run a process as a second user)\n");
        return SKIP;
    }
    const char *uri = uri_of("perm");
    char private_uri[128];
    snprintf(private_uri, sizeof private_uri, "%s", uri);
    struct psyne_options o = opts(PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER, 4096);
    psyne_channel *p, *shared;
    CHECK_RC(psyne_channel_open(&p, private_uri, &o), 0);
    char shared_uri[128];
    snprintf(shared_uri, sizeof shared_uri, "ipc://perm-shared-%d", (int)getpid());
    o.ipc_perm = 0666;
    CHECK_RC(psyne_channel_open(&shared, shared_uri, &o), 0);
    char planted_uri[128];
    snprintf(planted_uri, sizeof planted_uri, "ipc://perm-planted-%d", (int)getpid());
    int ready[2], finished[2];
    CHECK(pipe(ready) == 0 && pipe(finished) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        CHECK(setgid(65534) == 0 && setuid(65534) == 0); /* nobody */
        psyne_channel *c;
        struct psyne_options co = opts(PSYNE_MODE_SPSC, PSYNE_ROLE_CONSUMER, 0);
        CHECK_RC(psyne_channel_open(&c, private_uri, &co), -EACCES); /* 0600: not for another user */
        CHECK(strstr(psyne_last_error(), "permission") != NULL);
        CHECK_RC(psyne_channel_open(&c, shared_uri, &co), -EACCES); /* 0666, but root's: not without asking */
        CHECK(strstr(psyne_last_error(), "PSYNE_F_IPC_OTHER_OWNER") != NULL);
        co.flags = PSYNE_F_IPC_OTHER_OWNER;
        CHECK_RC(psyne_channel_open(&c, shared_uri, &co), 0); /* 0666 and asked for */
        CHECK(recv_u64(c) == 99);
        psyne_channel_close(c);
        /* a segment planted for a privileged program, open to everyone */
        struct psyne_options po = opts(PSYNE_MODE_SPSC, PSYNE_ROLE_CONSUMER, 4096);
        po.ipc_perm = 0666;
        psyne_channel *planted;
        CHECK_RC(psyne_channel_open(&planted, planted_uri, &po), 0);
        CHECK(write(ready[1], "p", 1) == 1);
        char done;
        CHECK(read(finished[0], &done, 1) == 1);
        psyne_channel_close(planted);
        _exit(0);
    }
    send_u64(shared, 99);
    char x;
    CHECK(read(ready[0], &x, 1) == 1);
    /* root opens the name another user made: refused, and the segment is left alone */
    psyne_channel *joined;
    struct psyne_options jo = opts(PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER, 4096);
    CHECK_RC(psyne_channel_open(&joined, planted_uri, &jo), -EACCES);
    CHECK(strstr(psyne_last_error(), "belongs to user 65534") != NULL);
    CHECK_RC(psyne_channel_open(&joined, planted_uri, NULL), -EACCES);
    char planted_path[160];
    shm_path_of(planted_uri, planted_path, sizeof planted_path);
    CHECK(access(planted_path, F_OK) == 0);
    jo.flags = PSYNE_F_IPC_OTHER_OWNER; /* asked for: it joins */
    CHECK_RC(psyne_channel_open(&joined, planted_uri, &jo), 0);
    psyne_channel_close(joined);
    CHECK(write(finished[1], "f", 1) == 1);
    expect_clean_exit(pid);
    psyne_channel_close(shared);
    psyne_channel_close(p);
    printf("permissions: ok\n");
    return 0;
}

/* ---- crashes ---- */

/* A producer dies; the consumer drains, then learns it (-EPIPE). */
static void producer_dies(int mode)
{
    const char *uri = uri_of("pdie");
    struct psyne_options co = opts(mode, PSYNE_ROLE_CONSUMER, 65536);
    psyne_channel *c;
    CHECK_RC(psyne_channel_open(&c, uri, &co), 0);
    pid_t pid = fork();
    if (pid == 0) {
        psyne_channel *p;
        struct psyne_options po = opts(mode, PSYNE_ROLE_PRODUCER, 0);
        CHECK_RC(psyne_channel_open(&p, uri, &po), 0);
        for (uint64_t i = 0; i < 10; i++)
            send_u64(p, i);
        raise(SIGKILL); /* no close: the consumer must find out by itself */
    }
    CHECK(WIFSIGNALED(wait_child(pid)));
    for (uint64_t i = 0; i < 10; i++)
        CHECK(recv_u64(c) == i);
    struct psyne_msg m;
    CHECK_RC(psyne_receive(c, &m, PSYNE_FOREVER), -EPIPE);
    struct psyne_stats s;
    CHECK_RC(psyne_channel_stats(c, &s), 0);
    CHECK(s.peers_lost == 1 && s.msgs_out == 10);
    psyne_channel_close(c);
}

/* An MP producer is killed between claim and commit; the records claimed
 * after its claim still arrive, its claim is skipped and counted. */
static void producer_killed_mid_claim(int mode)
{
    const char *uri = uri_of("midclaim");
    struct psyne_options co = opts(mode, PSYNE_ROLE_CONSUMER, 65536);
    struct psyne_options po = opts(mode, PSYNE_ROLE_PRODUCER, 0);
    psyne_channel *c, *p;
    CHECK_RC(psyne_channel_open(&c, uri, &co), 0);
    CHECK_RC(psyne_channel_open(&p, uri, &po), 0);
    send_u64(p, 1);
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        psyne_channel *dp;
        CHECK_RC(psyne_channel_open(&dp, uri, &po), 0);
        struct psyne_claimed cl;
        CHECK_RC(psyne_claim(dp, 1000, &cl, PSYNE_FOREVER), 0);
        memset(cl.data, 0xab, 500); /* half written */
        CHECK(write(ready[1], "x", 1) == 1);
        pause(); /* killed here, claim open */
        _exit(1);
    }
    wait_ready(ready[0]);
    for (uint64_t i = 2; i <= 5; i++) /* claimed after the dead one's bytes */
        send_u64(p, i);
    kill_child(pid);
    CHECK(recv_u64(c) == 1);
    for (uint64_t i = 2; i <= 5; i++) { /* a consumer that only polls finds out too */
        struct psyne_msg m;
        int rc;
        while ((rc = psyne_receive(c, &m, PSYNE_NONBLOCK)) == -EAGAIN)
            ;
        CHECK_RC(rc, 0);
        CHECK(*(uint64_t *)m.data == i);
        CHECK_RC(psyne_release(c, &m), 0);
    }
    struct psyne_stats s;
    CHECK_RC(psyne_channel_stats(c, &s), 0);
    CHECK(s.claims_recovered == 1 && s.peers_lost == 1);
    /* the ring keeps working over the recovered space, lap after lap */
    for (uint64_t i = 0; i < 20000; i++) {
        send_u64(p, i);
        CHECK(recv_u64(c) == i);
    }
    psyne_channel_close(p);
    struct psyne_msg m;
    CHECK_RC(psyne_receive(c, &m, PSYNE_FOREVER), -EPIPE);
    psyne_channel_close(c);
    close(ready[0]);
    close(ready[1]);
}

/* The single consumer is killed holding a view; the blocked producer learns
 * it (-EPIPE) instead of waiting for space forever. */
static void consumer_killed_holding_view(int mode)
{
    const char *uri = uri_of("cdie");
    struct psyne_options po = opts(mode, PSYNE_ROLE_PRODUCER, 4096);
    psyne_channel *p;
    CHECK_RC(psyne_channel_open(&p, uri, &po), 0);
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        psyne_channel *c;
        struct psyne_options co = opts(mode, PSYNE_ROLE_CONSUMER, 0);
        CHECK_RC(psyne_channel_open(&c, uri, &co), 0);
        struct psyne_msg m;
        CHECK_RC(psyne_receive(c, &m, PSYNE_FOREVER), 0); /* held, never released */
        CHECK(write(ready[1], "x", 1) == 1);
        pause();
        _exit(1);
    }
    send_u64(p, 1);
    wait_ready(ready[0]);
    kill_child(pid);
    int rc = 0;
    for (int i = 0; i < 10000 && rc == 0; i++) { /* fills the ring, then must end */
        struct psyne_claimed cl;
        rc = psyne_claim(p, 256, &cl, PSYNE_FOREVER);
        if (rc == 0)
            CHECK_RC(psyne_commit(p, &cl, 256, T_MSG), 0);
    }
    CHECK_RC(rc, -EPIPE);
    struct psyne_stats s;
    CHECK_RC(psyne_channel_stats(p, &s), 0);
    CHECK(s.peers_lost == 1);
    psyne_channel_close(p);
    close(ready[0]);
    close(ready[1]);
}

/* One of two competing consumers (SPMC, MPMC) is killed holding a view:
 * its message is released for it, the producer is not held up, and the
 * other consumer gets every other message. */
static void competing_consumer_dies(int mode)
{
    const char *uri = uri_of("mcdie");
    char u[128];
    snprintf(u, sizeof u, "%s", uri);
    struct psyne_options po = opts(mode, PSYNE_ROLE_PRODUCER, 4096);
    struct psyne_options co = opts(mode, PSYNE_ROLE_CONSUMER, 0);
    psyne_channel *p;
    CHECK_RC(psyne_channel_open(&p, u, &po), 0);
    int ready[2];
    CHECK(pipe(ready) == 0);
    enum { N = 20000 };
    pid_t dead = fork();
    if (dead == 0) {
        psyne_channel *c;
        CHECK_RC(psyne_channel_open(&c, u, &co), 0);
        struct psyne_msg m;
        CHECK_RC(psyne_receive(c, &m, PSYNE_FOREVER), 0); /* message 0, held */
        CHECK(write(ready[1], "x", 1) == 1);
        pause();
        _exit(1);
    }
    send_u64(p, 0);
    wait_ready(ready[0]);
    pid_t live = fork();
    if (live == 0) {
        psyne_channel *c;
        CHECK_RC(psyne_channel_open(&c, u, &co), 0);
        CHECK(write(ready[1], "x", 1) == 1);
        for (uint64_t i = 1; i < N; i++) /* exactly the rest, in order: one producer */
            CHECK(recv_u64(c) == i);
        struct psyne_msg m;
        CHECK_RC(psyne_receive(c, &m, PSYNE_FOREVER), -EPIPE);
        struct psyne_stats s;
        CHECK_RC(psyne_channel_stats(c, &s), 0);
        CHECK(s.views_recovered == 1 && s.peers_lost == 1);
        psyne_channel_close(c);
        _exit(0);
    }
    wait_ready(ready[0]); /* open before the other dies: the stream must not end */
    kill_child(dead);
    for (uint64_t i = 1; i < N; i++) /* far more than the ring holds */
        send_u64(p, i);
    psyne_channel_close(p);
    expect_clean_exit(live);
    close(ready[0]);
    close(ready[1]);
}

/* A competing consumer is killed while it holds the read lock (in the
 * middle of taking a record) or the sweep lock (in the middle of freeing
 * space): a survivor finishes for it. The child puts the shared state
 * exactly where a consumer killed at that instruction would leave it. */
static void lock_holder_dies(int mode, int sweep)
{
    const char *uri = uri_of(sweep ? "sweepdie" : "readdie");
    char u[128];
    snprintf(u, sizeof u, "%s", uri);
    struct psyne_options po = opts(mode, PSYNE_ROLE_PRODUCER, 4096);
    struct psyne_options co = opts(mode, PSYNE_ROLE_CONSUMER, 0);
    psyne_channel *p, *c;
    CHECK_RC(psyne_channel_open(&p, u, &po), 0);
    CHECK_RC(psyne_channel_open(&c, u, &co), 0);
    for (uint64_t i = 0; i < 4; i++)
        send_u64(p, i);
    uint64_t rec = PSYNE_RECORD_SIZE(sizeof(uint64_t));
    struct psyne_msg held[2];
    if (sweep) { /* two views that will become markers under the dead sweeper */
        CHECK_RC(psyne_receive(c, &held[0], PSYNE_FOREVER), 0);
        CHECK_RC(psyne_receive(c, &held[1], PSYNE_FOREVER), 0);
    }
    int ready[2], go[2];
    CHECK(pipe(ready) == 0 && pipe(go) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        psyne_channel *dc;
        CHECK_RC(psyne_channel_open(&dc, u, &co), 0);
        struct psy_ring *r = psy_channel_ring(dc);
        struct psy_ring_shared *sh = r->sh;
        if (!sweep) { /* took the read lock and tagged the record it was taking */
            uint64_t v = atomic_load(&sh->cons.read_pos);
            CHECK(atomic_compare_exchange_strong(&sh->cons.read_pos, &v, v | PSY_LOCK_BIT));
            atomic_store(&sh->cons.read_owner, r->taken_tag);
            atomic_store(psy_hdr_at(r, v), psy_hdr_make((uint32_t)rec, r->taken_tag));
        } else { /* took the sweep lock; the markers came; half swept */
            uint64_t h = atomic_load(&sh->rel.head);
            CHECK(atomic_compare_exchange_strong(&sh->rel.head, &h, h | PSY_LOCK_BIT));
            atomic_store(&sh->rel.sweep_owner, r->taken_tag);
            CHECK(write(ready[1], "x", 1) == 1);
            wait_ready(go[0]); /* the parent released both views meanwhile */
            atomic_store(&sh->rel.sweep_to, h + 2 * rec);
            if (r->mp)
                atomic_store(psy_hdr_at(r, h), 0); /* the first marker's header zeroed */
        }
        CHECK(write(ready[1], "x", 1) == 1);
        pause();
        _exit(1);
    }
    if (sweep) {
        wait_ready(ready[0]);
        CHECK_RC(psyne_release(c, &held[1]), 0);
        CHECK_RC(psyne_release(c, &held[0]), 0);
        CHECK(write(go[1], "x", 1) == 1);
    }
    wait_ready(ready[0]);
    kill_child(pid);
    for (uint64_t i = sweep ? 2 : 1; i < 4; i++) /* read case: message 0 went with the dead */
        CHECK(recv_u64(c) == i);
    for (uint64_t i = 0; i < 20000; i++) { /* the space keeps coming back, lap after lap */
        send_u64(p, i);
        CHECK(recv_u64(c) == i);
    }
    struct psyne_stats s;
    CHECK_RC(psyne_channel_stats(c, &s), 0);
    CHECK(s.peers_lost == 1 && s.views_recovered == (sweep ? 0u : 1u));
    psyne_channel_close(p);
    psyne_channel_close(c);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
}

/* A BROADCAST subscriber dies holding a view: it stops holding the producer
 * back, and the live subscriber still gets every message. */
static void subscriber_dies(void)
{
    const char *uri = uri_of("subdie");
    char u[128];
    snprintf(u, sizeof u, "%s", uri);
    struct psyne_options po = opts(PSYNE_MODE_BROADCAST, PSYNE_ROLE_PRODUCER, 4096);
    struct psyne_options so = opts(PSYNE_MODE_BROADCAST, PSYNE_ROLE_CONSUMER, 0);
    psyne_channel *p;
    CHECK_RC(psyne_channel_open(&p, u, &po), 0);
    int ready[2];
    CHECK(pipe(ready) == 0);
    enum { N = 5000 };
    pid_t live = fork();
    if (live == 0) {
        psyne_channel *c;
        CHECK_RC(psyne_channel_open(&c, u, &so), 0);
        CHECK(write(ready[1], "L", 1) == 1);
        for (uint64_t i = 0; i < N; i++)
            CHECK(recv_u64(c) == i);
        struct psyne_msg m;
        CHECK_RC(psyne_receive(c, &m, PSYNE_FOREVER), -EPIPE);
        psyne_channel_close(c);
        _exit(0);
    }
    pid_t dead = fork();
    if (dead == 0) {
        psyne_channel *c;
        CHECK_RC(psyne_channel_open(&c, u, &so), 0);
        CHECK(write(ready[1], "D", 1) == 1);
        struct psyne_msg m;
        CHECK_RC(psyne_receive(c, &m, PSYNE_FOREVER), 0); /* holds the first message */
        CHECK(write(ready[1], "R", 1) == 1);
        pause();
        _exit(1);
    }
    wait_ready(ready[0]);
    wait_ready(ready[0]); /* both subscribed */
    send_u64(p, 0);
    wait_ready(ready[0]);
    kill_child(dead);
    for (uint64_t i = 1; i < N; i++) /* far more than the ring holds */
        send_u64(p, i);
    psyne_channel_close(p);
    expect_clean_exit(live);
    close(ready[0]);
    close(ready[1]);
}

/* A creator killed before its segment was ready: openers wait while it
 * lives, then remove its leftovers and create afresh. The child follows
 * psyne's creation protocol (ipc.c) and is killed in the middle of it. */
static void creator_dies(void)
{
    const char *uri = uri_of("creator");
    char u[128], shm[160];
    snprintf(u, sizeof u, "%s", uri);
    snprintf(shm, sizeof shm, "/psyne.%s", u + strlen("ipc://"));
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
        CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0);
        CHECK(ftruncate(fd, 1 << 20) == 0);
        uint64_t magic = PSY_IPC_MAGIC; /* magic written, version not yet */
        CHECK(pwrite(fd, &magic, sizeof magic, 0) == sizeof magic);
        CHECK(write(ready[1], "x", 1) == 1);
        pause();
        _exit(1);
    }
    wait_ready(ready[0]);
    struct psyne_options co = opts(PSYNE_MODE_SPSC, PSYNE_ROLE_CONSUMER, 4096);
    co.open_timeout_ns = 50 * 1000 * 1000;
    psyne_channel *c;
    CHECK_RC(psyne_channel_open(&c, u, &co), -ETIMEDOUT); /* its creator is still at work */
    CHECK(strstr(psyne_last_error(), "creator") != NULL);
    kill_child(pid);
    co.open_timeout_ns = 0;
    CHECK_RC(psyne_channel_open(&c, u, &co), 0); /* leftovers removed, made anew */
    struct psyne_options po = opts(PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER, 0);
    psyne_channel *p;
    CHECK_RC(psyne_channel_open(&p, u, &po), 0);
    send_u64(p, 5);
    CHECK(recv_u64(c) == 5);
    psyne_channel_close(p);
    psyne_channel_close(c);
    close(ready[0]);
    close(ready[1]);
}

static void test_crashes(void)
{
    int modes[] = {PSYNE_MODE_SPSC, PSYNE_MODE_SPMC, PSYNE_MODE_MPSC, PSYNE_MODE_MPMC};
    for (int i = 0; i < 4; i++)
        producer_dies(modes[i]);
    printf("crashes: producer killed: ok\n");
    producer_killed_mid_claim(PSYNE_MODE_MPSC);
    producer_killed_mid_claim(PSYNE_MODE_MPMC);
    printf("crashes: producer killed mid-claim: ok\n");
    consumer_killed_holding_view(PSYNE_MODE_SPSC);
    consumer_killed_holding_view(PSYNE_MODE_MPSC);
    competing_consumer_dies(PSYNE_MODE_SPMC);
    competing_consumer_dies(PSYNE_MODE_MPMC);
    printf("crashes: consumer killed holding a view: ok\n");
    for (int sweep = 0; sweep < 2; sweep++) {
        lock_holder_dies(PSYNE_MODE_SPMC, sweep);
        lock_holder_dies(PSYNE_MODE_MPMC, sweep);
    }
    printf("crashes: consumer killed holding the read or sweep lock: ok\n");
    subscriber_dies();
    printf("crashes: subscriber killed: ok\n");
    creator_dies();
    printf("crashes: creator killed: ok\n");
}

/* ---- corruption ---- */

/* Opening a segment of another version, or garbage, is refused and changes
 * nothing in it. */
static void bad_segments(void)
{
    const char *uri = uri_of("badver");
    char u[128], path[256];
    snprintf(u, sizeof u, "%s", uri);
    shm_path_of(u, path, sizeof path);
    struct psyne_options o = opts(PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER, 4096);
    psyne_channel *p, *x;
    CHECK_RC(psyne_channel_open(&p, u, &o), 0);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint32_t version = 99, good = PSY_IPC_VERSION;
    size_t at = offsetof(struct psy_ipc_header, version);
    CHECK(pwrite(fd, &version, sizeof version, (off_t)at) == sizeof version);
    uint64_t before = file_hash(path);
    o.role = PSYNE_ROLE_CONSUMER;
    CHECK_RC(psyne_channel_open(&x, u, &o), -EPROTO);
    CHECK(strstr(psyne_last_error(), "version") != NULL);
    CHECK(file_hash(path) == before);
    uint64_t cap = 1 << 30; /* a capacity that disagrees with the file */
    CHECK(pwrite(fd, &good, sizeof good, (off_t)at) == sizeof good);
    CHECK(pwrite(fd, &cap, sizeof cap, offsetof(struct psy_ipc_header, capacity)) == sizeof cap);
    before = file_hash(path);
    CHECK_RC(psyne_channel_open(&x, u, &o), -EPROTO);
    CHECK(file_hash(path) == before);
    close(fd);
    psyne_channel_close(p);

    /* not a psyne segment at all */
    const char *junk_uri = uri_of("junk");
    char ju[128], jpath[256];
    snprintf(ju, sizeof ju, "%s", junk_uri);
    shm_path_of(ju, jpath, sizeof jpath);
    fd = open(jpath, O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    uint64_t rnd = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 8192; i += 8) {
        rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
        CHECK(write(fd, &rnd, 8) == 8);
    }
    close(fd);
    before = file_hash(jpath);
    CHECK_RC(psyne_channel_open(&x, ju, &o), -EPROTO);
    CHECK(file_hash(jpath) == before);
    unlink(jpath);
}

static uint64_t rand64(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A live segment whose records and positions get flipped under a consumer:
 * calls fail (-EPROTO) or return views inside the ring, never crash or read
 * outside the mapping (this runs under ASan in scripts/check.sh). */
static void corrupted_records(int mode)
{
    const char *uri = uri_of("corrupt");
    char u[128];
    snprintf(u, sizeof u, "%s", uri);
    struct psyne_options po = opts(mode, PSYNE_ROLE_PRODUCER, 4096);
    struct psyne_options co = opts(mode, PSYNE_ROLE_CONSUMER, 0);
    psyne_channel *p, *c;
    CHECK_RC(psyne_channel_open(&p, u, &po), 0);
    CHECK_RC(psyne_channel_open(&c, u, &co), 0);
    struct psy_ring *r = psy_channel_ring(c);

    /* a record whose length runs past everything committed */
    send_u64(p, 1);
    send_u64(p, 2);
    uint64_t second = PSYNE_RECORD_SIZE(8);
    atomic_store((psy_atomic64 *)(r->data + second), psy_hdr_make(0xfffffff0u, T_MSG));
    CHECK(recv_u64(c) == 1);
    struct psyne_msg m;
    CHECK_RC(psyne_receive(c, &m, PSYNE_NONBLOCK), -EPROTO);
    CHECK_RC(psyne_receive(c, &m, PSYNE_NONBLOCK), -EPROTO); /* and stays refused */
    /* a committed header with type 0 */
    atomic_store((psy_atomic64 *)(r->data + second), psy_hdr_make(8, 0));
    CHECK_RC(psyne_receive(c, &m, PSYNE_NONBLOCK), -EPROTO);
    psyne_channel_close(c);
    psyne_channel_close(p);

    /* random bytes in the data and in every position, many times over */
    uint64_t rnd = 0x12345678ull + (uint64_t)mode;
    for (int round = 0; round < 2000; round++) {
        CHECK_RC(psyne_channel_open(&p, u, &po), 0);
        CHECK_RC(psyne_channel_open(&c, u, &co), 0);
        r = psy_channel_ring(c);
        for (int i = 0; i < 3; i++)
            send_u64(p, (uint64_t)i);
        for (int k = 0; k < 8; k++) {
            uint64_t off = rand64(&rnd) % (r->cap - 8) & ~7ull;
            uint64_t v = rand64(&rnd);
            if (k & 1) /* plausible lengths and types make deeper paths run */
                v = psy_hdr_make((uint32_t)(v % 5000), (uint32_t)(v >> 40) % 3 ? T_MSG : PSY_TYPE_PAD);
            atomic_store((psy_atomic64 *)(r->data + off), v);
        }
        psy_atomic64 *positions[] = {&r->sh->cons.read_pos, &r->sh->rel.head, &r->sh->pub.tail,
                                     &r->sh->prod.cached_head};
        if (round & 1)
            atomic_store(positions[rand64(&rnd) % 4], rand64(&rnd) >> (rand64(&rnd) % 64));
        for (int k = 0; k < 6; k++) {
            struct psyne_msg ms[4];
            int n = psyne_receive_batch(c, ms, 4, PSYNE_NONBLOCK);
            if (n > 0) {
                for (int i = 0; i < n; i++) { /* every view lies inside the mapping */
                    CHECK((uint8_t *)ms[i].data >= r->data &&
                          (uint8_t *)ms[i].data + ms[i].length <= r->data + 2 * r->cap);
                    volatile uint8_t sink = 0;
                    for (uint32_t b = 0; b < ms[i].length; b += 64)
                        sink ^= ((uint8_t *)ms[i].data)[b];
                    (void)sink;
                }
                psyne_release_batch(c, ms, (unsigned)n);
            } else {
                CHECK(n == -EAGAIN || n == -EPROTO || n == -EPIPE);
            }
            struct psyne_claimed cl;
            if (psyne_claim(p, rand64(&rnd) % 300, &cl, PSYNE_NONBLOCK) == 0)
                psyne_commit(p, &cl, 0, T_MSG);
        }
        psyne_channel_close(c);
        psyne_channel_close(p);
    }
}

static void test_corruption(void)
{
    bad_segments();
    printf("corruption: bad segments refused untouched: ok\n");
    int modes[] = {PSYNE_MODE_SPSC, PSYNE_MODE_SPMC, PSYNE_MODE_MPSC, PSYNE_MODE_MPMC, PSYNE_MODE_BROADCAST};
    for (int i = 0; i < 5; i++)
        corrupted_records(modes[i]);
    printf("corruption: flipped records and positions: ok\n");
}

int main(int argc, char **argv)
{
    alarm(300);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress survives a hang and its kill */
    const char *what = argc > 1 ? argv[1] : "";
    if (strcmp(what, "lifecycle") == 0)
        test_lifecycle();
    else if (strcmp(what, "permissions") == 0)
        return test_permissions();
    else if (strcmp(what, "crashes") == 0)
        test_crashes();
    else if (strcmp(what, "corruption") == 0)
        test_corruption();
    else {
        fprintf(stderr, "usage: %s lifecycle|permissions|crashes|corruption\n", argv[0]);
        return 2;
    }
    return 0;
}
