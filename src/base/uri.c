/* SPDX-License-Identifier: MIT */
/*
 * uri.c - channel URIs: memory://name, ipc://name, tcp://host:port.
 * Names are 1..255 printable characters without spaces, so they can be used
 * in file names and logs as they are.
 */
#include "uri.h"

#include <errno.h>
#include <string.h>

#include "error.h"

static const struct {
    const char *prefix;
    enum psy_scheme scheme;
} schemes[] = {
    {"memory://", PSY_SCHEME_MEMORY},
    {"ipc://", PSY_SCHEME_IPC},
    {"tcp://", PSY_SCHEME_TCP},
};

int psy_uri_parse(const char *uri, struct psy_uri *out)
{
    if (!uri)
        return psy_fail(-EINVAL, "URI is NULL");
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t plen = strlen(schemes[i].prefix);
        if (strncmp(uri, schemes[i].prefix, plen) != 0)
            continue;
        const char *name = uri + plen;
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
        out->scheme = schemes[i].scheme;
        memcpy(out->name, name, len + 1);
        return 0;
    }
    return psy_fail(-EINVAL, "URI \"%.64s\" does not start with memory://, ipc:// or tcp://", uri);
}
