/* SPDX-License-Identifier: MIT */
/*
 * free_port.h - a loopback TCP port for tests of tcp:// (tcp.c, stress.c).
 */
#ifndef PSY_TEST_FREE_PORT_H
#define PSY_TEST_FREE_PORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

/* A port on 127.0.0.1 that is free now (the kernel's choice). */
static inline int test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a); /* (C++ includes it too: no designated initializers) */
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

#endif
