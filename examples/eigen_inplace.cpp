/* SPDX-License-Identifier: MIT */
// eigen_inplace.cpp - Eigen on messages in place with psyne.hpp: a vector is
// filled through an Eigen::Map over its claimed ring memory, scaled in place
// by the receiver, and two received matrices are multiplied by Eigen straight
// into a claimed matrix message. Run: ./build/examples/eigen_inplace
#include <Eigen/Core>

#include <psyne.hpp>

#include <cstdio>

int main()
{
    try {
        psyne::channel rx("memory://eigen-demo", PSYNE_MODE_SPSC, PSYNE_ROLE_CONSUMER, 1 << 20);
        psyne::channel tx("memory://eigen-demo", PSYNE_MODE_SPSC, PSYNE_ROLE_PRODUCER);

        // A vector: room for 1024 floats, 8 used, filled through Eigen in place.
        auto v = tx.claim_vector<float>(1024);
        v.resize(8);
        v.as_eigen().setLinSpaced(1.0f, 8.0f);
        v.send();
        {
            auto m = rx.receive();
            auto w = m.as_vector<float>();              // checked view of the ring memory
            w.as_eigen() = w.as_eigen().array() * 2.0f; // scaled where it lies
            std::printf("vector: %g ... %g (sum %g)\n", w[0], w[7], w.as_eigen().sum());
        } // released here

        // Two matrices, then their product computed into a new message.
        auto a = tx.claim_matrix<double>(3, 4, 8); // rows padded to 8 doubles (64 bytes)
        a.as_eigen().setConstant(1.0);
        a.send();
        auto b = tx.claim_matrix<double>(4, 2);
        b.as_eigen() << 1, 2, 3, 4, 5, 6, 7, 8;
        b.send();
        auto ma = rx.receive(), mb = rx.receive();
        auto c = tx.claim_matrix<double>(3, 2);
        c.as_eigen().noalias() = ma.as_matrix<double>().as_eigen() * mb.as_matrix<double>().as_eigen();
        c.send();
        auto mc = rx.receive();
        auto p = mc.as_matrix<double>();
        std::printf("product: %llux%llu, row 0 = [%g %g]\n", (unsigned long long)p.rows(), (unsigned long long)p.cols(),
                    p(0, 0), p(0, 1));
        return p(0, 0) == 16.0 && p(0, 1) == 20.0 ? 0 : 1;
    } catch (const psyne::error &e) {
        std::fprintf(stderr, "psyne: %s\n", e.what());
        return 1;
    }
}
