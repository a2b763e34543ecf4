/* SPDX-License-Identifier: MIT */
/* main.c - the smallest program against an installed psyne. */
#include <psyne.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    if (psyne_version() != PSYNE_VERSION_NUMBER) /* the library that runs is the one of this header */
        return 5;
    psyne_channel *ch;
    if (psyne_channel_open(&ch, "memory://installed", NULL) != 0)
        return 1;
    struct psyne_claimed c;
    struct psyne_msg m;
    if (psyne_claim(ch, 6, &c, PSYNE_NONBLOCK) != 0)
        return 2;
    memcpy(c.data, "hello", 6);
    if (psyne_commit(ch, &c, 6, PSYNE_TYPE_USER_MIN) != 0 || psyne_receive(ch, &m, PSYNE_NONBLOCK) != 0)
        return 3;
    int ok = m.length == 6 && strcmp(m.data, "hello") == 0;
    psyne_release(ch, &m);
    psyne_channel_close(ch);
    puts(ok ? "installed psyne works" : "wrong message");
    return ok ? 0 : 4;
}
