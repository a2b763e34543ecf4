/* SPDX-License-Identifier: MIT */
/*
 * error.c - psyne_strerror(), the per-thread detail of the last failure, and
 * the user's log function (the library never prints).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "psyne.h"
#include "error.h"

static _Thread_local char last_error[256];

int psy_fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return rc;
}

/* The log function and its argument change together, under log_lock;
 * log_max is read first without it, so no message costs a lock while no
 * function is installed. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static psyne_log_fn log_fn;
static void *log_arg;
static _Atomic int log_max; /* 0: no function installed */

int psyne_set_log(psyne_log_fn fn, void *arg, int max_level)
{
    if (max_level < 0 || max_level > PSYNE_LOG_INFO)
        return psy_fail(-EINVAL, "log level %d is not a psyne_log_level", max_level);
    pthread_mutex_lock(&log_lock);
    log_fn = fn;
    log_arg = arg;
    atomic_store(&log_max, fn ? max_level : 0);
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void psy_log(int level, const char *fmt, ...)
{
    if (level > atomic_load_explicit(&log_max, memory_order_relaxed))
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    psyne_log_fn fn = log_fn;
    void *arg = log_arg;
    pthread_mutex_unlock(&log_lock);
    if (fn)
        fn(arg, level, msg);
}

void psy_clear_error(void)
{
    last_error[0] = '\0';
}

const char *psyne_last_error(void)
{
    return last_error;
}

int psyne_version(void)
{
    return PSYNE_VERSION_NUMBER;
}

const char *psyne_strerror(int err)
{
    if (err == INT_MIN) /* -INT_MIN does not exist */
        return "unknown error";
    if (err < 0)
        err = -err;
    switch (err) {
    case 0: return "success";
    case EINVAL: return "invalid argument (bad URI, option or message)";
    case EAGAIN: return "would block: the ring is full or empty";
    case ETIMEDOUT: return "timed out waiting for space or a message";
    case EPIPE: return "channel shut down";
    case EMSGSIZE: return "message larger than the channel can ever hold";
    case EPROTO: return "corrupted record or incompatible peer";
    case EPROTONOSUPPORT: return "URI scheme not supported by this build";
    case EBUSY: return "busy: a claim is already open, or no subscriber slot is free";
    case EPERM: return "operation not allowed for this handle's role";
    case ENOMEM: return "out of memory";
    default: return strerror(err);
    }
}
