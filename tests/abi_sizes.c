/* SPDX-License-Identifier: MIT */
/* abi_sizes.c - prints the sizes of the structs programs share with the
 * library (tests/library_abi.cmake compares them with older releases). */
#include <stdio.h>

#include "psyne.h"

int main(void)
{
    printf("%zu %zu\n", sizeof(struct psyne_options), sizeof(struct psyne_stats));
    return 0;
}
