/* SPDX-License-Identifier: MIT */
/*
 * inline_symbols.c - psyne_claim and psyne_commit as exported symbols. In C
 * they are inline functions of psyne/inline.h; this file compiles the same
 * definitions once more as external functions, for C++, bindings and C
 * built with -DPSYNE_NO_INLINE (as liburing's ffi.c does).
 */
#define PSYNE_EXPORT_INLINE_CALLS 1
#include "psyne.h"
