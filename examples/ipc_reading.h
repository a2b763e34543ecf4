/* SPDX-License-Identifier: MIT */
/* ipc_reading.h - the message the ipc examples exchange: a fixed layout
 * both programs compile in, identified by its type id. */
#ifndef IPC_READING_H
#define IPC_READING_H

#define MSG_READING (PSYNE_TYPE_USER_MIN + 2)

struct reading {
    unsigned sensor;
    unsigned seq;
    double value;
};

#endif
