/* SPDX-License-Identifier: MIT */
/*
 * transport.c - the registry of transports: which table serves a scheme.
 * A new transport adds its table here (and its files to CMakeLists.txt).
 */
#include <errno.h>
#include <string.h>

#include "../base/error.h"
#include "transport.h"

static const struct psy_transport *const transports[] = {
    &psy_memory_transport,
    &psy_ipc_transport,
    &psy_tcp_transport,
};

const struct psy_transport *psy_transport_find(const char *scheme)
{
    for (size_t i = 0; i < sizeof transports / sizeof transports[0]; i++)
        if (strcmp(transports[i]->scheme, scheme) == 0)
            return transports[i];
    return NULL;
}

int psy_transport_refuse_tcp_options(const struct psyne_options *opt, const char *scheme)
{
    if (opt->flags & PSYNE_F_LISTEN)
        return psy_fail(-EINVAL, "PSYNE_F_LISTEN is for tcp:// channels, not %s://", scheme);
    if (opt->max_peers)
        return psy_fail(-EINVAL, "max_peers is for listening tcp:// handles (PSYNE_F_LISTEN)");
    return 0;
}

void psy_transport_shutdown_home(struct psy_port *p)
{
    psy_ring_shutdown(p->home);
}
