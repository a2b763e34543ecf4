/* SPDX-License-Identifier: MIT */
// cxx_eigen.cpp - psyne.hpp with Eigen: vectors and matrices built and used
// in place through as_eigen() (Eigen::Map over the ring), checked against
// plain loops; RAII (claims given up, messages released) and typed errors.
#include <Eigen/Core>

#include "psyne.hpp"

#include <cmath>
#include <cstdio>

#include "check.h"

static void vectors(psyne::channel &tx, psyne::channel &rx)
{
    for (int rep = 0; rep < 100; rep++) {
        auto v = tx.claim_vector<float>(1000);
        v.resize(257 + rep);
        CHECK(reinterpret_cast<std::uintptr_t>(v.data()) % 64 == 0);
        v.as_eigen().setLinSpaced(0.0f, 256.0f + rep); // written in place
        v.send();
        auto m = rx.receive();
        CHECK(m);
        auto w = m.as_vector<float>();
        CHECK(w.size() == 257u + rep);
        auto e = w.as_eigen();
        e = e.array() * 2.0f; // in place, in the ring
        for (std::uint64_t i = 0; i < w.size(); i++)
            CHECK(w[i] == 2.0f * static_cast<float>(i)); // linspaced 0..n-1 step 1, doubled
        bool threw = false;
        try {
            m.as_matrix<float>();
        } catch (const psyne::error &err) {
            threw = err.code() == -ENOMSG;
        }
        CHECK(threw);
    }
}

static void matrices(psyne::channel &tx, psyne::channel &rx)
{
    const int M = 9, K = 7, N = 5;
    auto a = tx.claim_matrix<double>(M, K, 8); // leading dimension 8
    for (int i = 0; i < M; i++)
        for (int j = 0; j < K; j++)
            a(i, j) = i - 2 * j;
    a.send(); // SPSC: one open claim at a time
    auto b = tx.claim_matrix<double>(K, N);
    b.as_eigen().setConstant(0.5);
    b.as_eigen()(0, 0) = 3.0;
    b.send();
    auto ma = rx.receive(), mb = rx.receive();
    auto va = ma.as_matrix<double>(), vb = mb.as_matrix<double>();
    CHECK(va.ld() == 8 && va.rows() == M && va.cols() == K);
    auto c = tx.claim_matrix<double>(M, N);
    c.as_eigen().noalias() = va.as_eigen() * vb.as_eigen(); // the product lands in the claimed message
    c.send();
    auto mc = rx.receive();
    auto vc = mc.as_matrix<double>();
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double ref = 0;
            for (int p = 0; p < K; p++)
                ref += (i - 2.0 * p) * (p == 0 && j == 0 ? 3.0 : 0.5);
            CHECK(std::fabs(vc(i, j) - ref) < 1e-12);
        }
}

int main()
{
    psyne::channel rx("memory://eigen", PSYNE_MODE_SPSC, PSYNE_ROLE_CONSUMER, 1 << 16);
    psyne::channel tx("memory://eigen", PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER);
    vectors(tx, rx);
    matrices(tx, rx);
    { // a claim not sent is given up; the next claim works
        auto dropped = tx.claim_vector<std::int32_t>(10);
        (void)dropped;
    }
    auto v = tx.claim_vector<std::int32_t>(3);
    v[0] = 7;
    v.send();
    auto m = rx.receive();
    CHECK(m && m.as_vector<std::int32_t>()[0] == 7);
    m.release();
    CHECK(!rx.receive(PSYNE_NONBLOCK)); // nothing else: the dropped claim sent nothing
    CHECK(tx.stats().msgs_out == 100 + 3 + 1);
    std::puts("cxx_eigen: ok");
    return 0;
}
