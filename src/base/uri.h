/* SPDX-License-Identifier: MIT */
/*
 * uri.h - splitting "scheme://rest" channel names.
 */
#ifndef PSY_URI_H
#define PSY_URI_H

#include <stddef.h>

enum psy_scheme { PSY_SCHEME_MEMORY, PSY_SCHEME_IPC, PSY_SCHEME_TCP };

#define PSY_NAME_MAX 255

struct psy_uri {
    enum psy_scheme scheme;
    char name[PSY_NAME_MAX + 1]; /* everything after "://" */
};

/* Parses uri into *out. Returns 0 or -EINVAL (with psyne_last_error set). */
int psy_uri_parse(const char *uri, struct psy_uri *out);

#endif
