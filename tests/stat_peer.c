/* SPDX-License-Identifier: MIT */
/*
 * stat_peer - a real channel handle that tests/psyne_stat_test.py drives over
 * stdin, so psyne-stat can be checked against the handle's own
 * psyne_channel_stats:
 *
 *   stat_peer ROLE URI [CAPACITY] [dynamic] [publish] [listen] [peers=N] [mpsc|broadcast]
 *     ROLE: producer, consumer or any
 *   commands, one a line; each answers one line on stdout:
 *     send N SIZE   claim, fill and commit N messages (blocking) -> "ok"
 *     recv N        receive and release N messages (blocking)   -> "ok"
 *     stats         -> the handle's psyne_channel_stats as JSON, named as
 *                      psyne-stat names them
 *     pump SIZE     send (producer) or receive (consumer) from a thread until
 *                   "stop" -> "ok"
 *     stop          -> "ok"
 *     fd            makes the handle's receive readiness descriptor, and
 *                   arms it with a receive that finds nothing -> "ok"
 *     close         -> "closed <psyne_channel_close's result>", then exits
 * Starts by printing "ready <pid>".
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "psyne.h"

static psyne_channel *ch;
static int role;
static _Atomic int pumping;
static size_t pump_size;

static void die(const char *what, int rc)
{
    fprintf(stderr, "stat_peer: %s: %s (%s)\n", what, psyne_strerror(rc), psyne_last_error());
    exit(1);
}

static void send_n(long n, size_t size)
{
    for (long i = 0; i < n; i++) {
        struct psyne_claimed c;
        int rc = psyne_claim(ch, size, &c, PSYNE_FOREVER);
        if (rc)
            die("claim", rc);
        memset(c.data, (int)(i & 0xff), size);
        if ((rc = psyne_commit(ch, &c, size, 1024)) != 0)
            die("commit", rc);
    }
}

static void recv_n(long n)
{
    for (long i = 0; i < n; i++) {
        struct psyne_msg m;
        int rc = psyne_receive(ch, &m, PSYNE_FOREVER);
        if (rc)
            die("receive", rc);
        if ((rc = psyne_release(ch, &m)) != 0)
            die("release", rc);
    }
}

static void *pump(void *arg)
{
    (void)arg;
    while (atomic_load(&pumping)) {
        if (role == PSYNE_ROLE_CONSUMER) {
            struct psyne_msg m;
            if (psyne_receive(ch, &m, 10000000) == 0)
                psyne_release(ch, &m);
        } else {
            struct psyne_claimed c;
            if (psyne_claim(ch, pump_size, &c, 10000000) == 0) {
                memset(c.data, 1, pump_size);
                psyne_commit(ch, &c, pump_size, 1024);
            }
        }
    }
    return NULL;
}

static void print_stats(void)
{
    struct psyne_stats st;
    int rc = psyne_channel_stats(ch, &st);
    if (rc)
        die("stats", rc);
#define U(f) (unsigned long long)st.f
    printf("{\"capacity\": %llu, \"in_use\": %llu, \"high_water\": %llu, \"msgs_out\": %llu, \"bytes_out\": %llu, "
           "\"msgs_in\": %llu, \"bytes_in\": %llu, \"full_events\": %llu, \"empty_events\": %llu, \"waits\": %llu, "
           "\"wakeups\": %llu, \"peers_lost\": %llu, \"claims_recovered\": %llu, \"views_recovered\": %llu, "
           "\"tcp_reconnects\": %llu, \"tcp_protocol_errors\": %llu, \"tcp_send_calls\": %llu, "
           "\"tcp_recv_calls\": %llu, \"resizes_up\": %llu, \"resizes_down\": %llu, \"failed_claims\": %llu, "
           "\"window_high_water\": %llu, \"tcp_peers\": %llu, \"mode\": %d, \"subscribers\": %d, \"producers\": %d, "
           "\"consumers\": %d, \"tcp_connected\": %d, \"segments\": %d}\n",
           U(capacity), U(in_use), U(high_water), U(msgs_out), U(bytes_out), U(msgs_in), U(bytes_in), U(full_events),
           U(empty_events), U(waits), U(wakeups), U(peers_lost), U(claims_recovered), U(views_recovered),
           U(tcp_reconnects), U(tcp_protocol_errors), U(tcp_send_calls), U(tcp_recv_calls), U(resizes_up),
           U(resizes_down), U(failed_claims), U(window_high_water), U(tcp_peers), st.mode, st.subscribers, st.producers,
           st.consumers, st.tcp_connected, st.segments);
#undef U
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: stat_peer producer|consumer|any URI [CAPACITY] [dynamic] [publish] [listen] [mpsc]\n");
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
    struct psyne_options opt;
    psyne_options_init(&opt);
    role = strcmp(argv[1], "producer") == 0   ? PSYNE_ROLE_PRODUCER
           : strcmp(argv[1], "consumer") == 0 ? PSYNE_ROLE_CONSUMER
                                              : PSYNE_ROLE_ANY;
    opt.role = role;
    opt.open_timeout_ns = 20000000000ll;
    struct psyne_dynamic dyn = {0};
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "dynamic") == 0) {
            dyn.max_capacity = 1 << 20;
            dyn.window_ops = 200;
            opt.dynamic = &dyn;
        } else if (strcmp(argv[i], "publish") == 0) {
            opt.flags |= PSYNE_F_PUBLISH;
        } else if (strcmp(argv[i], "listen") == 0) {
            opt.flags |= PSYNE_F_LISTEN;
        } else if (strcmp(argv[i], "mpsc") == 0) {
            opt.mode = PSYNE_MODE_MPSC;
        } else if (strncmp(argv[i], "peers=", 6) == 0) {
            opt.max_peers = (uint32_t)atoi(argv[i] + 6);
        } else if (strcmp(argv[i], "broadcast") == 0) {
            opt.mode = PSYNE_MODE_BROADCAST;
        } else {
            opt.capacity = strtoull(argv[i], NULL, 0);
        }
    }
    int rc = psyne_channel_open(&ch, argv[2], &opt);
    if (rc)
        die(argv[2], rc);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    pthread_t pumper;
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        long n = 0;
        unsigned long size = 0;
        if (sscanf(line, "send %ld %lu", &n, &size) == 2) {
            send_n(n, size);
            printf("ok\n");
        } else if (sscanf(line, "recv %ld", &n) == 1) {
            recv_n(n);
            printf("ok\n");
        } else if (strncmp(line, "stats", 5) == 0) {
            print_stats();
        } else if (sscanf(line, "pump %lu", &size) == 1) {
            pump_size = size;
            atomic_store(&pumping, 1);
            if (pthread_create(&pumper, NULL, pump, NULL) != 0)
                die("pthread_create", -EAGAIN);
            printf("ok\n");
        } else if (strncmp(line, "fd", 2) == 0) {
            rc = psyne_channel_fd(ch, PSYNE_READY_RECV);
            if (rc < 0)
                die("psyne_channel_fd", rc);
            struct psyne_msg m;
            while ((rc = psyne_receive(ch, &m, PSYNE_NONBLOCK)) == 0) /* a receive that finds nothing arms it */
                psyne_release(ch, &m);
            printf("ok\n");
        } else if (strncmp(line, "stop", 4) == 0) {
            if (atomic_exchange(&pumping, 0)) /* a stop without a pump is fine */
                pthread_join(pumper, NULL);
            printf("ok\n");
        } else if (strncmp(line, "close", 5) == 0) {
            printf("closed %d\n", psyne_channel_close(ch));
            return 0;
        } else {
            fprintf(stderr, "stat_peer: unknown command %s", line);
            return 2;
        }
        fflush(stdout);
    }
    psyne_channel_close(ch);
    return 0;
}
