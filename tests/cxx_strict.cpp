/* SPDX-License-Identifier: MIT */
// cxx_strict.cpp - psyne.hpp in a program built with the warnings strict C++
// projects use (-Wpedantic -Wold-style-cast -Wconversion -Wsign-conversion
// ..., every warning an error; tests/CMakeLists.txt): every class that has
// code of its own is used once, over memory://, and the data checked (with
// check.h, which builds under those warnings too).
#include <psyne.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "check.h"

struct Reading {
    double value;
    std::uint32_t id;
};
PSYNE_MESSAGE_TYPE(reading_msg, Reading, PSYNE_TYPE_USER_MIN + 3)

int main()
{
    psyne::channel ch("memory://cxx-strict", psyne::options().mode(psyne::spsc).capacity(1 << 16));

    auto raw = ch.claim(16);
    CHECK(raw && raw.capacity() == 16);
    std::memcpy(raw.data(), "strict", 7);
    raw.commit(7);

    auto user = ch.claim<Reading>();
    CHECK(user);
    user->value = 2.5;
    user->id = 9;
    user.send();

    psyne::FloatVector v(ch);
    CHECK(v.resize(4));
    for (std::size_t i = 0; i < 4; i++)
        v[i] = static_cast<float>(i);
    v.send();

    auto batch = ch.claim_batch<4>(8);
    CHECK(batch && batch.size() >= 1);
    std::uint32_t lengths[4] = {8, 8, 8, 8};
    std::memset(batch[0].data, 1, 8);
    batch.commit(lengths, 1);

    auto m = ch.receive(psyne::nonblock);
    CHECK(m && m.size() == 7 && std::strcmp(static_cast<const char *>(m.data()), "strict") == 0);
    m.release();
    auto r = ch.receive<Reading>(psyne::nonblock);
    CHECK(r && r->value == 2.5 && r->id == 9);
    r.release();
    auto f = ch.receive<psyne::FloatVector>(psyne::nonblock);
    CHECK(f && f.size() == 4 && f[3] == 3.0f);
    f.reset();
    unsigned drained = 0;
    for (auto &one : ch.drain(8)) {
        CHECK(one.size() == 8 && static_cast<const unsigned char *>(one.data())[7] == 1);
        drained++;
    }
    CHECK(drained == 1);
    CHECK(ch.stats().msgs_in == 4);
    std::printf("cxx_strict: all checks passed\n");
    return 0;
}
