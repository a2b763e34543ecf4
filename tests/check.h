/* SPDX-License-Identifier: MIT */
/*
 * check.h - assertions for psyne's test programs: a failed check prints where
 * and why, with psyne's error detail, and aborts (so ctest reports it).
 */
#ifndef PSY_TEST_CHECK_H
#define PSY_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "psyne.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                   \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#define CHECK_RC(expr, want)                                                                                           \
    do {                                                                                                               \
        int rc_ = (expr);                                                                                              \
        if (rc_ != (want)) {                                                                                           \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d; detail: %s\n", __FILE__, __LINE__, #expr, rc_,   \
                    psyne_strerror(rc_), PSYNE_CAST(int, want), psyne_last_error());                                   \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/* Scales iteration counts: sanitizer builds run the same tests shorter. */
static inline unsigned long test_scale(unsigned long n)
{
    const char *s = getenv("PSYNE_TEST_SCALE");
    double f = s ? atof(s) : 1.0;
    unsigned long v = PSYNE_CAST(unsigned long, PSYNE_CAST(double, n) * f);
    return v ? v : 1;
}

#endif
