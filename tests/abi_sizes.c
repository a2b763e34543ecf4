/* SPDX-License-Identifier: MIT */
/* abi_sizes.c - prints the sizes of the structs programs share with the
 * library (tests/library_abi.cmake compares them with older releases). */
#include <stddef.h>
#include <stdio.h>

#include "psyne.h"

/* The inline claim and commit (psyne/inline.h) read a handle's first bytes
 * as a struct psy_lane: its layout is compiled into programs. */
#ifndef PSYNE_INLINE_CALLS
#error "abi_sizes needs psyne/inline.h (C11 with atomics, no PSYNE_NO_INLINE)"
#endif

int main(void)
{
    printf("%zu %zu\n", sizeof(struct psyne_options), sizeof(struct psyne_stats));
    printf("%zu %zu %zu %zu\n", sizeof(struct psy_lane), offsetof(struct psy_lane, data),
           offsetof(struct psy_lane, cap), offsetof(struct psy_lane, wake_fence));
    return 0;
}
