/* SPDX-License-Identifier: MIT */
/*
 * wait.c - how a blocked caller waits: spin (yielding every 64 polls),
 * then sleep on a futex in the ring, with a waiter count so the other side
 * makes a wake-up system call only when somebody sleeps.
 *
 * The lost-wake-up race is the Dekker pattern: the publisher does "store
 * position; load waiters", the sleeper "store waiters; load position". One
 * of them must see the other's store. Instead of a full fence on every
 * publish (the hot path), the sleeper runs membarrier(PRIVATE_EXPEDITED),
 * which makes every running thread of the process execute a full barrier:
 * after it, either the publisher's position store is visible to the
 * sleeper's re-check, or the publisher's later waiter load sees the count.
 * Where membarrier is unavailable, publishers pay a seq_cst fence instead
 * (psy_wake_needs_fence). The futex word is a sequence number read before the
 * re-check, so a wake between re-check and sleep makes FUTEX_WAIT return.
 *
 * One wake per sleep: the waiter count stays up until a woken sleeper runs
 * again (tens of microseconds), and every publisher in that time used to
 * make a FUTEX_WAKE of its own (dozens per sleep with two producers). A
 * sleeper now also arms a word after it reads the sequence number, and a
 * publisher that sees a waiter makes the system call only if it takes the
 * arming back (exchange). Whoever took it bumped the sequence after the
 * sleeper read it, so that sleeper's FUTEX_WAIT returns at once; and the
 * Dekker pairing above covers the arming as it covers the count.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

bool psy_wake_needs_fence = true;
bool psy_wake_needs_fence_global = true;
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;

/* ipc:// rings are shared with other processes: their sleepers use
 * GLOBAL_EXPEDITED, which reaches every process registered for it (every
 * process that opens an ipc:// channel registers here). */
static void membarrier_register(void)
{
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0)
        psy_wake_needs_fence = false;
    if (cmds > 0 && (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
        syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0)
        psy_wake_needs_fence_global = false;
}

/* Called once before any ring is used (channel open). */
void psy_wait_init(void)
{
    pthread_once(&membarrier_once, membarrier_register);
}

/* The sleeper's half of the Dekker pairing described above. */
void psy_wait_barrier(const struct psy_ring *r)
{
    int cmd = r->global_barrier ? MEMBARRIER_CMD_GLOBAL_EXPEDITED : MEMBARRIER_CMD_PRIVATE_EXPEDITED;
    if (r->lane.wake_fence || syscall(SYS_membarrier, cmd, 0, 0) != 0)
        atomic_thread_fence(memory_order_seq_cst); /* the publisher fences too in this case */
}

int64_t psy_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The words of one side of the wait block. */
struct wait_words {
    psy_atomic32 *seq;     /* the futex word */
    psy_atomic32 *waiters; /* registered sleepers */
    psy_atomic32 *armed;   /* a sleeper registered since the last wake */
};

static struct wait_words wait_words(struct psy_ring *r, enum psy_wait_side side)
{
    struct psy_wait_block *w = &r->sh->wait;
    if (side == PSY_WAIT_DATA)
        return (struct wait_words){&w->data_seq, &w->data_waiters, &w->data_armed};
    return (struct wait_words){&w->space_seq, &w->space_waiters, &w->space_armed};
}

void psy_wake_sleepers(struct psy_ring *r, enum psy_wait_side side)
{
    psy_atomic32 *armed = wait_words(r, side).armed;
    /* a load first: publishers that find it taken leave the line shared */
    if (atomic_load_explicit(armed, memory_order_seq_cst) && atomic_exchange_explicit(armed, 0, memory_order_seq_cst))
        psy_wake_slow(r, side);
}

/* Wakes futex sleepers and armed readiness descriptors (notify.c). The
 * word is read after the bump: a futex sleeper that registers later reads
 * the new sequence, and in its last look sees what we published (the
 * Dekker pairing); one counted before is seen here. */
void psy_wake_slow(struct psy_ring *r, enum psy_wait_side side)
{
    struct wait_words ww = wait_words(r, side);
    atomic_fetch_add_explicit(ww.seq, 1, memory_order_seq_cst);
    uint32_t waiting = atomic_load_explicit(ww.waiters, memory_order_seq_cst);
    /* Not FUTEX_PRIVATE: the ring may be shared with other processes. */
    if (waiting & PSY_SLEEPERS_MASK)
        syscall(SYS_futex, ww.seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    if (waiting >= PSY_ARMED_FD)
        psy_notify_wake(r, side);
    atomic_fetch_add_explicit(&r->sh->slow.wakeups, 1, memory_order_relaxed);
}

/* Sleeps until woken, or until the deadline (0 = none): the caller's
 * timeout, or the next look for dead peers (ipc). */
static int sleep_once(struct psy_ring *r, enum psy_wait_side side, psy_try_fn try_once, void *ctx, int64_t deadline)
{
    struct wait_words ww = wait_words(r, side);

    atomic_fetch_add_explicit(ww.waiters, 1, memory_order_seq_cst);
    uint32_t seen = atomic_load_explicit(ww.seq, memory_order_seq_cst);
    atomic_store_explicit(ww.armed, 1, memory_order_seq_cst); /* after seen: a taker bumps seq past it */
    psy_wait_barrier(r);
    int rc = try_once(ctx);
    /* A lease left idle before we registered holds back what its owner's
     * commit woke nobody for: close it (lease.c). One left idle after, woke us. */
    bool unblocked = rc == -EAGAIN && side == PSY_WAIT_DATA && psy_lease_unblock(r, true);
    /* closed is set before shutdown bumps seq: if we read seq after the bump
     * we see closed here; if before, FUTEX_WAIT returns at once. */
    if (rc == -EAGAIN && !unblocked && !psy_ring_closed(r)) {
        struct timespec ts, *tsp = NULL;
        if (deadline) {
            int64_t left = deadline - psy_now_ns();
            if (left <= 0)
                left = 1;
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        atomic_fetch_add_explicit(&r->sh->slow.waits, 1, memory_order_relaxed);
        syscall(SYS_futex, ww.seq, FUTEX_WAIT, seen, tsp, NULL, 0);
    }
    atomic_fetch_sub_explicit(ww.waiters, 1, memory_order_relaxed);
    return rc;
}

/* spin_forever: PSYNE_WAIT_SPIN's "never sleep", for a user's own calls. */
static int wait_loop(struct psy_ring *r, enum psy_wait_side side, psy_try_fn try_once, void *ctx, int64_t timeout_ns,
                     bool spin_forever)
{
    /* The clock is first read after 64 polls: a wait that ends quickly (the
     * common case for a consumer that keeps up) costs no clock_gettime. */
    int64_t start = 0, deadline = 0;
    unsigned poll_batch = r->spin_ns == 0 ? 1 : 64; /* no spinning asked for: yield, or sleep, at every poll */
    int64_t next_peer_check = 0;                    /* ipc: when to look for dead peers next */
    for (unsigned iter = 1;; iter++) {
        int rc = try_once(ctx);
        if (rc != -EAGAIN && rc != -EBUSY)
            return rc;
        psy_cpu_relax();
        if (iter % poll_batch && rc != -EBUSY)
            continue;
        int64_t now = psy_now_ns();
        if (!start) {
            start = now;
            deadline = timeout_ns > 0 ? now + timeout_ns : 0;
            next_peer_check = now + r->peer_timeout_ns;
        }
        if (deadline && now >= deadline)
            return -ETIMEDOUT;
        if (r->check_peers && now >= next_peer_check) {
            /* A peer that died holding what we wait for never hands it over:
             * recover it (its claim becomes a pad, its handle is closed). */
            r->check_peers(r);
            next_peer_check = now + r->peer_timeout_ns;
            continue;
        }
        if (rc == -EBUSY) /* contention, not emptiness: never sleep on it */
            continue;
        int64_t waited = now - start;
        if (side == PSY_WAIT_DATA && r->leases && psy_lease_unblock(r, waited >= r->spin_ns))
            continue; /* an idle producer's lease held records back: look again */
        if (spin_forever) {
            if (r->spin_yields) /* what we wait for comes from a library thread: let it run */
                sched_yield();
            continue;
        }
        /* A yield every poll_batch polls, from the start: a thread that
         * shares this CPU (perhaps the one we wait for) runs now, not when
         * the spin ends (two threads on one CPU hand off in microseconds,
         * not a whole spin_ns). With nothing else runnable here it returns at
         * once. */
        if (waited < r->spin_ns + r->yield_ns) {
            sched_yield();
            continue;
        }
        int64_t wake_by = deadline;
        if (r->check_peers && (!wake_by || next_peer_check < wake_by))
            wake_by = next_peer_check;
        rc = sleep_once(r, side, try_once, ctx, wake_by);
        if (rc != -EAGAIN && rc != -EBUSY)
            return rc;
    }
}

int psy_wait_loop(struct psy_ring *r, enum psy_wait_side side, psy_try_fn try_once, void *ctx, int64_t timeout_ns)
{
    return wait_loop(r, side, try_once, ctx, timeout_ns, r->wait_kind == PSYNE_WAIT_SPIN);
}

int psy_wait_loop_helper(struct psy_ring *r, enum psy_wait_side side, psy_try_fn try_once, void *ctx,
                         int64_t timeout_ns)
{
    return wait_loop(r, side, try_once, ctx, timeout_ns, false);
}
