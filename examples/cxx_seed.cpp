/* SPDX-License-Identifier: MIT */
// cxx_seed.cpp - the three snippets psyne's C++ users know, as one program:
// a FloatVector built in place and viewed with Eigen, a user-defined
// message type, and the receive loop, between two threads over memory://.
#include <Eigen/Core> // before psyne.hpp: as_eigen()
#include <psyne.hpp>

#include <cstdio>
#include <memory>
#include <thread>

struct MyMessage {
    double pose[3];
    std::uint32_t seq;
};
PSYNE_MESSAGE_TYPE(my_message, MyMessage, PSYNE_TYPE_USER_MIN + 7)

static double total;
static void process(const MyMessage &m)
{
    total += m.pose[0];
}

int main()
{
    try {
        auto receiver =
            std::make_unique<psyne::channel>("memory://seed", psyne::options().role(psyne::consumer).capacity(1 << 20));
        auto channel = std::make_unique<psyne::channel>("memory://seed", psyne::options().role(psyne::producer));

        std::thread producer([&] {
            // 1. a typed message, built in place in the ring
            psyne::FloatVector msg(*channel);
            msg.resize(100);
            auto v = msg.as_eigen();
            v.setLinSpaced(0.0f, 99.0f);
            msg.send();
            // 2. user-defined messages
            for (std::uint32_t i = 0; i < 5; i++) {
                auto m = channel->claim<MyMessage>();
                m->pose[0] = 1.5 * i;
                m->seq = i;
                m.send();
            }
            channel->close(); // the last producer: the consumer's loop ends after the last message
        });

        auto vec = receiver->receive<psyne::FloatVector>();
        std::printf("vector of %llu floats, sum %.0f\n", (unsigned long long)vec.size(), vec.as_eigen().sum());
        vec.reset();
        // 3. the receive loop
        int n = 0;
        while (auto m = receiver->receive<MyMessage>()) {
            process(*m);
            n++;
        }
        producer.join();
        std::printf("done (channel shut down): %d messages, pose total %.1f\n", n, total);
        return 0;
    } catch (const psyne::error &e) {
        std::fprintf(stderr, "psyne: %s\n", e.what());
        return 1;
    }
}
