/* SPDX-License-Identifier: MIT */
/*
 * affinity.c - thread placement helpers for the user's producer and consumer
 * threads (psyne_pin_thread, psyne_thread_cpus). The library's own threads
 * (tcp://) are left where the scheduler puts them.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>

#include "../base/error.h"
#include "psyne.h"

int psyne_pin_thread(const int *cpus, unsigned n)
{
    if (!cpus || n == 0)
        return psy_fail(-EINVAL, "no CPU to pin to");
    cpu_set_t set;
    CPU_ZERO(&set);
    for (unsigned i = 0; i < n; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE)
            return psy_fail(-EINVAL, "CPU %d is out of range (0..%d)", cpus[i], CPU_SETSIZE - 1);
        CPU_SET(cpus[i], &set);
    }
    int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (rc)
        return psy_fail(-rc, "cannot pin the thread to the %u CPU(s) given (none online and allowed?)", n);
    return 0;
}

int psyne_thread_cpus(int *cpus, unsigned max)
{
    if (!cpus && max)
        return psy_fail(-EINVAL, "NULL argument");
    cpu_set_t set;
    int rc = pthread_getaffinity_np(pthread_self(), sizeof set, &set);
    if (rc)
        return psy_fail(-rc, "cannot read the thread's affinity");
    unsigned count = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set))
            continue;
        if (count < max)
            cpus[count] = c;
        count++;
    }
    return (int)count;
}
