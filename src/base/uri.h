/* SPDX-License-Identifier: MIT */
/*
 * uri.h - splitting "scheme://rest" channel names.
 */
#ifndef PSY_URI_H
#define PSY_URI_H

#include <stddef.h>

#define PSY_SCHEME_MAX 15
#define PSY_NAME_MAX 255

struct psy_uri {
    char scheme[PSY_SCHEME_MAX + 1]; /* before "://": lower-case letters and digits */
    char name[PSY_NAME_MAX + 1];     /* everything after "://" */
};

/* Parses uri into *out; which schemes exist, the transport registry says.
 * Returns 0 or -EINVAL (with psyne_last_error set). */
int psy_uri_parse(const char *uri, struct psy_uri *out);

#endif
