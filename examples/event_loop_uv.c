/* SPDX-License-Identifier: MIT */
/*
 * event_loop_uv.c - event_loop_epoll.c as a libuv program: the channels'
 * readiness descriptors are uv_poll_t handles beside a uv_timer_t, as a
 * libuv user watches any descriptor the loop does not own.
 *
 *   ./build/examples/event_loop_uv [COUNT [PORT]]
 *
 * The callback receives with PSYNE_NONBLOCK until -EAGAIN (which re-arms
 * the descriptor); at -EPIPE the channel is done and its poll handle stops.
 * A uv_signal_t turns Ctrl-C into a clean stop: the handles are closed and
 * the ipc:// segment goes with them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include <psyne.h>

#include "feeders.h"

enum { MEMORY, IPC, TCP, CHANNELS };

struct watched {
    psyne_channel *ch;
    const char *uri;
    uint64_t got;
    uv_poll_t poll;
};

static struct watched chans[CHANNELS];
static int open_channels = CHANNELS;
static uint64_t ticks;
static bool stopped;
static uv_timer_t timer;
static uv_signal_t sigint;

static void stop_loop(void)
{
    for (int i = 0; i < CHANNELS; i++)
        if (uv_is_active((uv_handle_t *)&chans[i].poll))
            uv_poll_stop(&chans[i].poll);
    uv_timer_stop(&timer);
    uv_signal_stop(&sigint);
}

static void on_readable(uv_poll_t *poll, int status, int events)
{
    (void)events;
    struct watched *w = poll->data;
    if (status < 0)
        return;
    struct psyne_msg m;
    int rc;
    while ((rc = psyne_receive(w->ch, &m, PSYNE_NONBLOCK)) == 0) {
        uint64_t seq;
        memcpy(&seq, m.data, sizeof seq);
        if (seq != w->got)
            fprintf(stderr, "%s: message %llu where %llu was due\n", w->uri, (unsigned long long)seq,
                    (unsigned long long)w->got);
        w->got++;
        psyne_release(w->ch, &m);
    }
    if (rc == -EPIPE) { /* the other end closed and everything was read */
        uv_poll_stop(poll);
        if (--open_channels == 0)
            stop_loop();
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    ticks++;
}

static void on_sigint(uv_signal_t *s, int sig)
{
    (void)s;
    (void)sig;
    stopped = true;
    stop_loop();
}

int main(int argc, char **argv)
{
    unsigned count = argc > 1 ? (unsigned)atoi(argv[1]) : 10000;
    int port = argc > 2 ? atoi(argv[2]) : 7918;
    static char uris[CHANNELS][128];
    snprintf(uris[MEMORY], sizeof uris[MEMORY], "memory://loop");
    snprintf(uris[IPC], sizeof uris[IPC], "ipc://loop-uv-%d", (int)getpid());
    snprintf(uris[TCP], sizeof uris[TCP], "tcp://127.0.0.1:%d", port);

    uv_loop_t *loop = uv_default_loop();
    for (int i = 0; i < CHANNELS; i++) {
        struct psyne_options o;
        psyne_options_init(&o);
        o.role = PSYNE_ROLE_CONSUMER;
        o.flags = i == TCP ? PSYNE_F_LISTEN : 0;
        int rc = psyne_channel_open(&chans[i].ch, uris[i], &o);
        if (rc < 0) {
            fprintf(stderr, "open %s: %s (%s)\n", uris[i], psyne_strerror(rc), psyne_last_error());
            return 1;
        }
        chans[i].uri = uris[i];
        uv_poll_init(loop, &chans[i].poll, psyne_channel_fd(chans[i].ch, PSYNE_READY_RECV));
        chans[i].poll.data = &chans[i];
        uv_poll_start(&chans[i].poll, UV_READABLE, on_readable);
    }
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, on_tick, 100, 100);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_sigint, SIGINT);

    struct feeder feeders[CHANNELS];
    for (int i = 0; i < CHANNELS; i++)
        feeder_start(&feeders[i], uris[i], count);

    uv_run(loop, UV_RUN_DEFAULT); /* until nothing is active */
    printf("%s: memory %llu, ipc %llu, tcp %llu messages; timer %llu ticks\n", stopped ? "stopped" : "done",
           (unsigned long long)chans[MEMORY].got, (unsigned long long)chans[IPC].got,
           (unsigned long long)chans[TCP].got, (unsigned long long)ticks);
    for (int i = 0; i < CHANNELS; i++)
        uv_close((uv_handle_t *)&chans[i].poll, NULL); /* before psyne closes the descriptor */
    uv_close((uv_handle_t *)&timer, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    for (int i = 0; i < CHANNELS; i++)
        psyne_channel_close(chans[i].ch); /* feeders still sending get -EPIPE */
    for (int i = 0; i < CHANNELS; i++)
        feeder_join(&feeders[i]);
    uv_loop_close(loop);
    return 0;
}
