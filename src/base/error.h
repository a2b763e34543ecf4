/* SPDX-License-Identifier: MIT */
/*
 * error.h - the calling thread's error detail behind psyne_last_error().
 */
#ifndef PSY_ERROR_H
#define PSY_ERROR_H

/* Records a printf-style detail for this thread and returns rc (a -errno). */
int psy_fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void psy_clear_error(void);
/* Hands a printf-style message to the user's log function if one is
 * installed for level (psyne_set_log); else does nothing. */
void psy_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
