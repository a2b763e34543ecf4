/* SPDX-License-Identifier: MIT */
/*
 * feeders.h - the other ends of the event-loop examples (event_loop_epoll.c,
 * event_loop_uv.c): a thread that sends on memory://, a child process that
 * sends on ipc://, a thread that connects and sends on tcp://. Each sends
 * `count` numbered messages, a little at a time, and closes.
 */
#ifndef EXAMPLE_FEEDERS_H
#define EXAMPLE_FEEDERS_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <psyne.h>

struct feeder {
    char uri[512];
    unsigned count;
    pthread_t thread;
    pid_t pid;
};

static void feeder_send(const char *uri, unsigned count)
{
    struct psyne_options o;
    psyne_options_init(&o);
    o.role = PSYNE_ROLE_PRODUCER;
    psyne_channel *tx;
    int rc = psyne_channel_open(&tx, uri, &o);
    if (rc < 0) {
        fprintf(stderr, "feeder: open %s: %s (%s)\n", uri, psyne_strerror(rc), psyne_last_error());
        return;
    }
    for (uint64_t i = 0; i < count; i++) {
        struct psyne_claimed c;
        if (psyne_claim(tx, sizeof i, &c, PSYNE_FOREVER) < 0)
            break;
        memcpy(c.data, &i, sizeof i);
        psyne_commit(tx, &c, sizeof i, PSYNE_TYPE_USER_MIN);
        if (i % 100 == 99) { /* in bursts: the loop sleeps in between */
            struct timespec pause = {0, 2000000};
            nanosleep(&pause, NULL);
        }
    }
    psyne_channel_close(tx); /* the consumer drains, then gets -EPIPE */
}

static void *feeder_thread(void *arg)
{
    struct feeder *f = arg;
    feeder_send(f->uri, f->count);
    return NULL;
}

/* Starts a feeder: a child process for ipc://, a thread otherwise. */
static void feeder_start(struct feeder *f, const char *uri, unsigned count)
{
    snprintf(f->uri, sizeof f->uri, "%s", uri);
    f->count = count;
    f->pid = -1;
    if (strncmp(uri, "ipc://", 6) == 0) {
        fflush(NULL);
        if ((f->pid = fork()) == 0) {
            /* Ctrl-C stops the parent, whose close shuts the channel down:
             * this process then ends with -EPIPE and closes its handle, so
             * the segment goes with the last close, not left behind. */
            signal(SIGINT, SIG_IGN);
            feeder_send(f->uri, f->count);
            _exit(0);
        }
    } else {
        pthread_create(&f->thread, NULL, feeder_thread, f);
    }
}

static void feeder_join(struct feeder *f)
{
    if (f->pid > 0)
        waitpid(f->pid, NULL, 0);
    else if (f->pid < 0)
        pthread_join(f->thread, NULL);
}

#endif
