/* SPDX-License-Identifier: MIT */
/*
 * event_loop_epoll.c - one thread serves a memory://, an ipc:// and a
 * tcp:// channel and a timer with epoll, as a server serves sockets.
 *
 *   ./build/examples/event_loop_epoll [COUNT [PORT]]
 *
 * Each channel's readiness descriptor (psyne_channel_fd) goes into the
 * epoll set beside a timerfd. When one polls readable, the loop receives
 * with PSYNE_NONBLOCK until -EAGAIN: that -EAGAIN re-arms the descriptor,
 * which becomes readable again when the next message comes. The other ends
 * (feeders.h) are a thread, a child process and a tcp:// client. Ctrl-C
 * ends the loop; closing the handles removes the ipc:// segment.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <psyne.h>

#include "feeders.h"

enum { MEMORY, IPC, TCP, CHANNELS };

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1; /* epoll_wait returns -1 with EINTR: the loop ends */
}

int main(int argc, char **argv)
{
    unsigned count = argc > 1 ? (unsigned)atoi(argv[1]) : 10000;
    int port = argc > 2 ? atoi(argv[2]) : 7917;
    char uris[CHANNELS][128];
    snprintf(uris[MEMORY], sizeof uris[MEMORY], "memory://loop");
    snprintf(uris[IPC], sizeof uris[IPC], "ipc://loop-%d", (int)getpid());
    snprintf(uris[TCP], sizeof uris[TCP], "tcp://127.0.0.1:%d", port);

    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    psyne_channel *ch[CHANNELS];
    for (int i = 0; i < CHANNELS; i++) {
        struct psyne_options o;
        psyne_options_init(&o);
        o.role = PSYNE_ROLE_CONSUMER;
        o.flags = i == TCP ? PSYNE_F_LISTEN : 0;
        int rc = psyne_channel_open(&ch[i], uris[i], &o);
        if (rc < 0) {
            fprintf(stderr, "open %s: %s (%s)\n", uris[i], psyne_strerror(rc), psyne_last_error());
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, psyne_channel_fd(ch[i], PSYNE_READY_RECV), &ev);
    }
    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    struct itimerspec every_100ms = {{0, 100000000}, {0, 100000000}};
    timerfd_settime(timer, 0, &every_100ms, NULL);
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = CHANNELS};
    epoll_ctl(ep, EPOLL_CTL_ADD, timer, &tev);

    struct feeder feeders[CHANNELS];
    for (int i = 0; i < CHANNELS; i++)
        feeder_start(&feeders[i], uris[i], count);

    uint64_t got[CHANNELS] = {0}, ticks = 0;
    int open_channels = CHANNELS;
    while (open_channels > 0 && !stop) {
        struct epoll_event evs[8];
        int n = epoll_wait(ep, evs, 8, -1);
        for (int k = 0; k < n; k++) {
            uint32_t i = evs[k].data.u32;
            if (i == CHANNELS) {
                uint64_t expirations;
                if (read(timer, &expirations, sizeof expirations) > 0)
                    ticks += expirations;
                continue;
            }
            struct psyne_msg m;
            int rc;
            while ((rc = psyne_receive(ch[i], &m, PSYNE_NONBLOCK)) == 0) {
                uint64_t seq;
                memcpy(&seq, m.data, sizeof seq);
                if (seq != got[i])
                    fprintf(stderr, "%s: message %llu where %llu was due\n", uris[i], (unsigned long long)seq,
                            (unsigned long long)got[i]);
                got[i]++;
                psyne_release(ch[i], &m);
            }
            if (rc == -EPIPE) { /* the other end closed and everything was read */
                epoll_ctl(ep, EPOLL_CTL_DEL, psyne_channel_fd(ch[i], PSYNE_READY_RECV), NULL);
                open_channels--;
            }
        }
    }
    printf("%s: memory %llu, ipc %llu, tcp %llu messages; timer %llu ticks\n", stop ? "stopped" : "done",
           (unsigned long long)got[MEMORY], (unsigned long long)got[IPC], (unsigned long long)got[TCP],
           (unsigned long long)ticks);
    for (int i = 0; i < CHANNELS; i++)
        psyne_channel_close(ch[i]); /* feeders still sending get -EPIPE */
    for (int i = 0; i < CHANNELS; i++)
        feeder_join(&feeders[i]);
    close(timer);
    close(ep);
    return 0;
}
