/*
 * error.c - psyne_strerror() and the per-thread detail of the last failure.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
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

void psy_clear_error(void)
{
    last_error[0] = '\0';
}

const char *psyne_last_error(void)
{
    return last_error;
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
