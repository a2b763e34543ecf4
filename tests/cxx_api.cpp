/* SPDX-License-Identifier: MIT */
// cxx_api.cpp - psyne.hpp over memory://, ipc:// and tcp:// (usage: cxx_api
// memory|ipc|tcp): the seed's snippets (a FloatVector built in place and
// viewed with Eigen, the receive loop of a user type) with only the
// namespace and includes changed, then every class and the error rule:
// full, empty, timed out and shut down are results; anything else throws.
#include <Eigen/Core>
#include <psyne.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <poll.h>
#include <unistd.h>

#include "free_port.h" /* and CHECK (check.h) */

// Runs stmt and checks that it throws psyne::error with code `rc`.
#define CHECK_THROWS(stmt, rc)                                                                                         \
    do {                                                                                                               \
        int got_ = 0;                                                                                                  \
        try {                                                                                                          \
            stmt;                                                                                                      \
        } catch (const psyne::error &e_) {                                                                             \
            got_ = e_.code();                                                                                          \
        }                                                                                                              \
        if (got_ != (rc)) {                                                                                            \
            std::fprintf(stderr, "%s:%d: %s threw %d, not %d\n", __FILE__, __LINE__, #stmt, got_, (rc));               \
            std::abort();                                                                                              \
        }                                                                                                              \
    } while (0)

namespace robot
{
struct MyMessage {
    double pose[3];
    std::uint32_t seq;
};
PSYNE_MESSAGE_TYPE(my_message, MyMessage, PSYNE_TYPE_USER_MIN + 7)
} // namespace robot
using robot::MyMessage;

static std::string transport;
static int opened;

// The two ends of a channel: a producer and a consumer handle (tcp://: a
// client connected to a listening handle of this process).
struct ends {
    std::unique_ptr<psyne::channel> tx, rx;
};

static ends open_ends(psyne::options o = psyne::options())
{
    std::string uri;
    if (transport == "memory")
        uri = "memory://cxx-" + std::to_string(opened++);
    else if (transport == "ipc")
        uri = "ipc://cxx-api-" + std::to_string(getpid()) + "-" + std::to_string(opened++);
    else
        uri = "tcp://127.0.0.1:" + std::to_string(test_free_port());
    ends e;
    psyne::options ro = o, to = o;
    if (transport == "tcp")
        ro.listen().link_timeout_ns(30 * 1000000000ll); // a loaded machine may stall a while
    e.rx = std::make_unique<psyne::channel>(uri, ro.role(psyne::consumer));
    e.tx = std::make_unique<psyne::channel>(uri, to.role(psyne::producer));
    return e;
}

// Each end has what was sent once the transport carried it (tcp://: the
// socket), within a generous time on a loaded machine.
static const std::int64_t settle = 20 * 1000000000ll;

static double processed;
static void process(const MyMessage &m)
{
    processed += m.pose[0] + m.seq;
}

// The seed's snippets, as its users wrote them.
static void seed(psyne::channel *channel, psyne::channel *receiver)
{
    for (int i = 0; i < 10; i++) {
        psyne::FloatVector msg(*channel);
        msg.resize(100);
        auto v = msg.as_eigen();
        v.setLinSpaced(0.0f, 99.0f);
        v *= float(i);
        msg.send();
    }
    for (std::uint32_t i = 0; i < 10; i++) {
        auto m = channel->claim<MyMessage>();
        m->pose[0] = 0.5 * i;
        m->seq = i;
        m.send();
    }
    channel->close(); // the consumer's loop ends when it has everything

    for (int i = 0; i < 10; i++) {
        auto msg = receiver->receive<psyne::FloatVector>(settle);
        CHECK(msg && msg.size() == 100);
        auto v = msg.as_eigen(); // in place, in the ring
        CHECK(v[0] == 0.0f && v[99] == 99.0f * float(i) && v.sum() == 4950.0f * float(i));
    }
    processed = 0;
    int n = 0;
    while (auto m = receiver->receive<MyMessage>()) {
        process(*m);
        CHECK(m->seq == std::uint32_t(n));
        n++;
    }
    CHECK(n == 10 && processed == 0.5 * 45 + 45);
}

// Full, empty, timed out, shut down: results, never exceptions; misuse throws.
static void error_rule()
{
    ends e = open_ends(psyne::options().capacity(4096));
    auto none = e.rx->receive(psyne::nonblock);
    CHECK(!none && none.code() == -EAGAIN);
    auto late = e.rx->receive(1000000); // 1 ms
    CHECK(!late && late.code() == -ETIMEDOUT);
    CHECK(!e.rx->receive<psyne::FloatVector>(psyne::nonblock));
    CHECK(!e.rx->receive<MyMessage>(psyne::nonblock));
    CHECK(!e.rx->drain(8));

    // Fill the ring (tcp://: the send ring, the sockets and the peer's ring).
    int sent = 0;
    for (;;) {
        auto c = e.tx->claim(1000, transport == "tcp" ? 1000000000ll : psyne::nonblock);
        if (!c) {
            CHECK(c.code() == (transport == "tcp" ? -ETIMEDOUT : -EAGAIN));
            break;
        }
        std::memset(c.data(), sent, 1000);
        c.commit(1000);
        sent++;
    }
    CHECK(sent >= 3);
    int small = 0; // and the space a 1000-byte message did not fit
    for (;;) {
        auto c = e.tx->claim(24, transport == "tcp" ? 1000000000ll : psyne::nonblock);
        if (!c)
            break;
        std::memset(c.data(), small++, 24);
        c.commit(24);
    }
    psyne::FloatVector full(*e.tx, psyne::nonblock);
    CHECK(!full.resize(100) && full.code() == -EAGAIN && !full);
    auto user = e.tx->claim<MyMessage>(psyne::nonblock);
    CHECK(!user && user.code() == -EAGAIN);
    CHECK(!e.tx->claim_batch<4>(100, 4, psyne::nonblock));

    CHECK_THROWS(e.tx->claim(1u << 30, psyne::nonblock), -EMSGSIZE);
    CHECK_THROWS(e.rx->claim(8, psyne::nonblock), -EPERM);
    CHECK_THROWS(e.tx->receive(psyne::nonblock), -EPERM);
    CHECK_THROWS(e.tx->claim_to(3, 8, psyne::nonblock), -EINVAL); // peers only with max_peers

    // The messages are intact; one of another kind throws and is released.
    for (int i = 0; i < sent; i++) {
        if (i == 0) {
            CHECK_THROWS(e.rx->receive<psyne::FloatVector>(settle), -ENOMSG);
            continue;
        }
        auto m = e.rx->receive(settle);
        CHECK(m && m.size() == 1000 && static_cast<const unsigned char *>(m.data())[999] == (unsigned char)i);
    }
    for (int i = 0; i < small; i++) {
        auto m = e.rx->receive(settle);
        CHECK(m && m.size() == 24 && static_cast<const unsigned char *>(m.data())[23] == (unsigned char)i);
    }
    e.tx->shutdown();
    auto gone = e.tx->claim(8, psyne::nonblock);
    CHECK(!gone && gone.code() == -EPIPE);
    auto end = e.rx->receive(settle);
    CHECK(!end && end.code() == -EPIPE);
}

// Raw claims, commits and aborts; batches; drains; stats; options.
static void raw_and_batches()
{
    ends e = open_ends(psyne::options().capacity(1 << 16).mode(psyne::spsc));
    {
        auto c = e.tx->claim(16);
        CHECK(c && c.capacity() == 16);
        std::memcpy(c.data(), "dropped", 8);
    } // given up: nothing is sent
    {
        auto c = e.tx->claim(16);
        std::memcpy(c.data(), "kept", 5);
        c.commit(5, PSYNE_TYPE_USER_MIN + 1);
        CHECK_THROWS(c.commit(5), -EINVAL); // once
    }
    {
        auto c = e.tx->claim(16);
        std::memcpy(c.data(), "too long", 9);
        CHECK_THROWS(c.commit(17), -EINVAL); // more than was claimed: given up, then thrown
        CHECK(!c && c.code() == -EAGAIN);
        auto next = e.tx->claim(16, psyne::nonblock); // SP: another claim was open otherwise (-EBUSY)
        CHECK(next);
        CHECK_THROWS(next.commit(8, 7), -EINVAL); // a reserved type id
        CHECK(!next);
    }
    auto m = e.rx->receive(settle);
    CHECK(m && m.size() == 5 && m.type() == PSYNE_TYPE_USER_MIN + 1 &&
          std::strcmp((const char *)m.data(), "kept") == 0);
    m.release();
    CHECK(!m);
    CHECK(!e.rx->receive(transport == "tcp" ? 100000000ll : psyne::nonblock)); // nothing of the failed commits

    auto b = e.tx->claim_batch<8>(32);
    CHECK(b && b.size() >= 1);
    std::uint32_t lengths[8];
    for (unsigned i = 0; i < b.size(); i++) {
        std::memset(b[i].data, int(i), 32);
        lengths[i] = 4 + i;
    }
    unsigned batch_size = b.size();
    b.commit(lengths, batch_size);
    unsigned got = 0;
    while (got < batch_size) {
        auto d = e.rx->drain(64, settle);
        CHECK(d);
        for (auto &r : d) {
            CHECK(r.size() == 4 + got && static_cast<const unsigned char *>(r.data())[0] == got);
            got++;
        }
    }
    psyne_stats st = e.rx->stats();
    CHECK(st.in_use == 0 && st.msgs_in == 1 + batch_size);
    CHECK(transport == "tcp" || st.capacity >= (1 << 16));
    e.tx->close();
    e.tx->close(); // once is enough; again does nothing
}

// A tensor of rank 3 and a matrix with a leading dimension, in place.
static void tensors()
{
    ends e = open_ends(psyne::options().capacity(1 << 20));
    psyne::Tensor<float, 3> t(*e.tx);
    CHECK(t.reshape({2, 3, 4}));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++)
                t(i, j, k) = float(100 * i + 10 * j + k);
    t.send();
    auto m = e.tx->claim_matrix<double>(3, 2, 4); // leading dimension 4
    m.as_eigen() << 1, 2, 3, 4, 5, 6;
    m.send();

    auto r = e.rx->receive<psyne::Tensor<float, 3>>(settle);
    CHECK(r && r.size() == 24 && r.shape(2) == 4 && r(1, 2, 3) == 123.0f);
    auto rm = e.rx->receive<psyne::DoubleMatrix>(settle);
    CHECK(rm && rm.rows() == 3 && rm.cols() == 2 && rm.ld() == 4);
    CHECK(rm.as_eigen().sum() == 21.0 && rm(2, 1) == 6.0);
    CHECK(!e.rx->receive<psyne::FloatMatrix>(psyne::nonblock)); // nothing there: a result
}

// claim_to: the reply to one client of a listening handle with max_peers.
static void peers()
{
    if (transport != "tcp")
        return;
    std::string uri = "tcp://127.0.0.1:" + std::to_string(test_free_port());
    psyne::channel server(uri, psyne::options().listen().max_peers(4).link_timeout_ns(30 * 1000000000ll));
    psyne::channel client(uri, psyne::options().link_timeout_ns(30 * 1000000000ll));
    auto q = client.claim<MyMessage>();
    q->seq = 41;
    q.send();
    auto req = server.receive<MyMessage>(settle);
    CHECK(req && req->seq == 41 && req.msg().peer() != 0);
    CHECK_THROWS(server.claim(8, psyne::nonblock), -EDESTADDRREQ); // replies name their peer
    auto reply = server.claim_to(req.msg().peer(), 8);
    std::memcpy(reply.data(), "reply", 6);
    reply.commit(6);
    auto got = client.receive(settle);
    CHECK(got && std::strcmp((const char *)got.data(), "reply") == 0);
}

// The readiness descriptor: readable, cleared by a receive that finds
// nothing, readable again when a message comes.
static bool readable(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, ms) == 1;
}

static void readiness()
{
    ends e = open_ends(psyne::options().capacity(4096));
    int fd = e.rx->fd();
    CHECK(fd >= 0 && fd == e.rx->fd(PSYNE_READY_RECV));
    CHECK(readable(fd, 0));
    CHECK(!e.rx->receive(psyne::nonblock));
    CHECK(!readable(fd, 0));
    auto c = e.tx->claim(16);
    c.commit(16, PSYNE_TYPE_USER_MIN);
    CHECK(readable(fd, 10000));
    bool got = false;
    for (int i = 0; i < 1000 && !got; i++) { // tcp: readable may come before the whole record
        auto m = e.rx->receive(psyne::nonblock);
        got = bool(m);
        if (!got)
            CHECK(readable(fd, 10000));
    }
    CHECK(got);
    CHECK_THROWS(e.tx->fd(PSYNE_READY_RECV), -EPERM);
    CHECK_THROWS(e.rx->fd(7), -EINVAL);
}

int main(int argc, char **argv)
{
    transport = argc > 1 ? argv[1] : "memory";
    if (transport != "memory" && transport != "ipc" && transport != "tcp") {
        std::fprintf(stderr, "usage: cxx_api memory|ipc|tcp\n");
        return 2;
    }
    {
        ends e = open_ends(psyne::options().capacity(1 << 20));
        seed(e.tx.get(), e.rx.get());
    }
    error_rule();
    raw_and_batches();
    tensors();
    peers();
    readiness();
    std::printf("cxx_api over %s://: ok\n", transport.c_str());
    return 0;
}
