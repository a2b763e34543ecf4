/* SPDX-License-Identifier: MIT */
// cxx_header.cpp - psyne.h compiled as C++, and every public macro expanded
// (in C++ here, so an unparenthesized macro or a C-only construct fails).
#include "psyne.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "check.h"

struct Sample {
    double value;
    unsigned id;
};
PSYNE_MESSAGE_TYPE(sample_msg, Sample, PSYNE_TYPE_USER_MIN + 5)

int main()
{
    static_assert(PSYNE_VERSION_MAJOR >= 0 && PSYNE_VERSION_MINOR >= 0 && PSYNE_VERSION_PATCH >= 0, "version");
    static_assert(PSYNE_RECORD_HEADER == 8, "record header");
    static_assert(PSYNE_RECORD_SIZE(0) == 8 && PSYNE_RECORD_SIZE(1) == 16 && PSYNE_RECORD_SIZE(8) == 16, "size");
    static_assert(2 * PSYNE_RECORD_SIZE(3 + 5) == 32, "argument and result are parenthesized");
    static_assert(PSYNE_TYPE_USER_MIN < PSYNE_TYPE_USER_MAX, "type range");
    static_assert(PSYNE_MAX_MESSAGE(4096) == 4080 && 2 * PSYNE_MAX_MESSAGE(2048 + 2048) == 8160, "max message");
    static_assert(PSYNE_DEFAULT_CAPACITY <= PSYNE_MAX_CAPACITY, "capacities");
    static_assert(PSYNE_MAX_SUBSCRIBERS > 0, "subscribers");
    static_assert(PSYNE_NONBLOCK == 0 && PSYNE_FOREVER < 0, "timeouts");
    static_assert(PSYNE_F_NO_PREFAULT != 0, "flags");
    static_assert(PSYNE_IPC_MAX_HANDLES > 0, "ipc handles");
    static_assert(PSYNE_TENSOR_MAX_RANK == 8 && PSYNE_TENSOR_ALIGN == 64, "tensor limits");
    static_assert(PSYNE_TYPE_TENSOR < PSYNE_TYPE_USER_MIN && PSYNE_TENSOR_MAGIC != 0, "tensor ids");
    PSYNE_STATIC_ASSERT(PSYNE_ALIGNOF(double) <= 8, "alignof");

    psyne_options o;
    psyne_options_init(&o);
    o.mode = PSYNE_MODE_MPMC;
    o.capacity = 1 << 16;
    o.flags = PSYNE_F_NO_PREFAULT;
    psyne_channel *ch = nullptr;
    CHECK(psyne_channel_open(&ch, "memory://cxx", &o) == 0);
    psyne_claimed c;
    CHECK(psyne_claim(ch, 16, &c, PSYNE_NONBLOCK) == 0);
    std::memcpy(c.data, "c++", 4);
    CHECK(psyne_commit(ch, &c, 4, PSYNE_TYPE_USER_MIN) == 0);
    psyne_msg m;
    CHECK(psyne_receive(ch, &m, PSYNE_FOREVER) == 0);
    CHECK(m.length == 4 && std::strcmp(static_cast<const char *>(m.data), "c++") == 0);
    CHECK(psyne_release(ch, &m) == 0);
    CHECK(psyne_receive(ch, &m, PSYNE_NONBLOCK) == -EAGAIN);
    Sample *sp;
    CHECK(sample_msg_claim(ch, &sp, &c, PSYNE_NONBLOCK) == 0);
    sp->value = 2.5;
    sp->id = 7;
    CHECK(sample_msg_commit(ch, &c) == 0);
    CHECK(psyne_receive(ch, &m, PSYNE_FOREVER) == 0);
    CHECK(sample_msg_view(&m) && sample_msg_view(&m)->id == 7);
    CHECK(psyne_release(ch, &m) == 0);
    psyne_tensor t;
    CHECK(psyne_claim_tensor(ch, PSYNE_F32, 1, 16, &t, PSYNE_NONBLOCK) == 0);
    static_cast<float *>(t.data)[0] = 1.5f;
    CHECK(psyne_commit_tensor(ch, &t) == 0);
    CHECK(psyne_receive(ch, &m, PSYNE_FOREVER) == 0);
    CHECK(psyne_tensor_view(&m, PSYNE_F32, 1, &t) == 0 && static_cast<float *>(t.data)[0] == 1.5f);
    CHECK(psyne_release(ch, &m) == 0);
    psyne_stats st;
    CHECK(psyne_channel_stats(ch, &st) == 0 && st.msgs_in == 3);
    CHECK(std::strlen(psyne_strerror(-EPIPE)) > 0);
    CHECK(psyne_channel_close(ch) == 0);
    std::puts("cxx_header: ok");
    return 0;
}
