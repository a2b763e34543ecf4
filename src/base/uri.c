/* SPDX-License-Identifier: MIT */
/*
 * uri.c - channel URIs: memory://name, ipc://name, tcp://host:port.
 * Names are 1..255 printable characters without spaces, so they can be used
 * in file names and logs as they are.
 */
#include "uri.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "error.h"

/* Whether uri starts with "scheme://"; its length in *len. */
static bool scheme_of(const char *uri, size_t *len)
{
    size_t n = 0;
    while ((uri[n] >= 'a' && uri[n] <= 'z') || (uri[n] >= '0' && uri[n] <= '9'))
        n++;
    *len = n;
    return n > 0 && n <= PSY_SCHEME_MAX && strncmp(uri + n, "://", 3) == 0;
}

int psy_uri_parse(const char *uri, struct psy_uri *out)
{
    if (!uri)
        return psy_fail(-EINVAL, "URI is NULL");
    size_t slen;
    if (!scheme_of(uri, &slen))
        return psy_fail(-EINVAL, "URI \"%.64s\" does not start with memory://, ipc:// or tcp://", uri);
    const char *name = uri + slen + 3;
    size_t len = strlen(name);
    if (len == 0)
        return psy_fail(-EINVAL, "URI \"%s\" has an empty name", uri);
    if (len > PSY_NAME_MAX)
        return psy_fail(-EINVAL, "URI name is %zu characters, more than %d", len, PSY_NAME_MAX);
    for (size_t k = 0; k < len; k++) {
        unsigned char ch = (unsigned char)name[k];
        if (ch <= ' ' || ch >= 0x7f)
            return psy_fail(-EINVAL, "URI name has a space or non-printable character at %zu", k);
    }
    memcpy(out->scheme, uri, slen);
    out->scheme[slen] = 0;
    memcpy(out->name, name, len + 1);
    return 0;
}
