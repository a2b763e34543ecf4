/* SPDX-License-Identifier: MIT */
// cxx_overhead.cpp - what psyne.hpp's classes cost over the C calls: the
// same SPSC stream over memory:// (a producer thread claims, fills the first
// 8 bytes with a sequence number and commits; the consumer receives, checks
// and releases), once through psyne.h and once through psyne.hpp, the two
// alternating round by round; then the same calls in one thread (their own
// cost, without the traffic between two cores). Prints a RESULT line per system and size and
// the median of the per-round ratios (C++ / C, higher is better). The
// producer runs on CPU 0, the consumer on CPU 1 (as psyne_bench's default).
// The C calls are those a C program gets: psyne_claim and psyne_commit
// inline (GCC and Clang; c_calls=inline in the RESULT line), the reference
// the classes must match.
//
//   psyne_cxx_overhead [--size LIST] [--rounds N] [--messages N]
#include <psyne.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

[[noreturn]] static void fail(const char *what)
{
    std::fprintf(stderr, "cxx_overhead: %s (%s)\n", what, psyne_last_error());
    std::exit(1);
}

// Where the two threads run: the producer on CPU 0, the consumer on CPU 1.
static void pin(int cpu)
{
    if (psyne_pin_thread(&cpu, 1) != 0)
        fail("pinning a thread");
}

// Messages per second of one stream of n messages of `size` bytes.
static double run_c(std::size_t size, std::uint64_t n, int round)
{
    std::string uri = "memory://cxx-overhead-c-" + std::to_string(round);
    psyne_options o;
    psyne_options_init(&o);
    o.capacity = 1 << 20;
    o.role = PSYNE_ROLE_CONSUMER;
    psyne_channel *rx;
    if (psyne_channel_open(&rx, uri.c_str(), &o))
        fail("open");
    auto t0 = std::chrono::steady_clock::now();
    std::thread producer([&uri, size, n] { // its handle on its own stack, as the C++ run's
        const std::size_t bytes = size;    // on this thread's stack: the closure may share a line with
        const std::uint64_t count = n;     // what the consumer writes
        pin(0);
        psyne_options po;
        psyne_options_init(&po);
        po.role = PSYNE_ROLE_PRODUCER;
        psyne_channel *tx;
        if (psyne_channel_open(&tx, uri.c_str(), &po))
            fail("open");
        for (std::uint64_t i = 0; i < count; i++) {
            psyne_claimed c;
            if (psyne_claim(tx, bytes, &c, PSYNE_FOREVER))
                fail("claim");
            std::memcpy(c.data, &i, 8);
            psyne_commit(tx, &c, bytes, PSYNE_TYPE_USER_MIN);
        }
        psyne_channel_close(tx);
    });
    for (std::uint64_t i = 0; i < n; i++) {
        psyne_msg m;
        if (psyne_receive(rx, &m, PSYNE_FOREVER))
            fail("receive");
        std::uint64_t seq;
        std::memcpy(&seq, m.data, 8);
        if (seq != i)
            fail("a message out of order");
        psyne_release(rx, &m);
    }
    producer.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    psyne_channel_close(rx);
    return double(n) / s;
}

static double run_cxx(std::size_t size, std::uint64_t n, int round)
{
    std::string uri = "memory://cxx-overhead-cxx-" + std::to_string(round);
    psyne::channel rx(uri, psyne::options().capacity(1 << 20).role(psyne::consumer));
    auto t0 = std::chrono::steady_clock::now();
    std::thread producer([&uri, size, n] {
        const std::size_t bytes = size; // on this thread's stack: the closure may share a line with
        const std::uint64_t count = n;  // what the consumer writes
        pin(0);
        psyne::channel tx(uri, psyne::options().role(psyne::producer));
        for (std::uint64_t i = 0; i < count; i++) {
            auto c = tx.claim(bytes);
            if (!c)
                fail("claim");
            std::memcpy(c.data(), &i, 8);
            c.commit(bytes);
        }
    });
    for (std::uint64_t i = 0; i < n; i++) {
        auto m = rx.receive();
        if (!m)
            fail("receive");
        std::uint64_t seq;
        std::memcpy(&seq, m.data(), 8);
        if (seq != i)
            fail("a message out of order");
    }
    producer.join();
    return double(n) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One thread: claim, fill, commit, receive, check, release, n times (the
// calls' own cost, without the cache-line traffic between two cores).
static double one_thread_c(std::size_t size, std::uint64_t n, int round)
{
    std::string uri = "memory://cxx-overhead-1c-" + std::to_string(round);
    psyne_options o;
    psyne_options_init(&o);
    o.capacity = 1 << 20;
    psyne_channel *ch;
    if (psyne_channel_open(&ch, uri.c_str(), &o))
        fail("open");
    auto t0 = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < n; i++) {
        psyne_claimed c;
        if (psyne_claim(ch, size, &c, PSYNE_NONBLOCK))
            fail("claim");
        std::memcpy(c.data, &i, 8);
        psyne_commit(ch, &c, size, PSYNE_TYPE_USER_MIN);
        psyne_msg m;
        if (psyne_receive(ch, &m, PSYNE_NONBLOCK))
            fail("receive");
        std::uint64_t seq;
        std::memcpy(&seq, m.data, 8);
        if (seq != i)
            fail("a message out of order");
        psyne_release(ch, &m);
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    psyne_channel_close(ch);
    return double(n) / s;
}

static double one_thread_cxx(std::size_t size, std::uint64_t n, int round)
{
    psyne::channel ch("memory://cxx-overhead-1cxx-" + std::to_string(round), psyne::options().capacity(1 << 20));
    auto t0 = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < n; i++) {
        auto c = ch.claim(size, psyne::nonblock);
        if (!c)
            fail("claim");
        std::memcpy(c.data(), &i, 8);
        c.commit(size);
        auto m = ch.receive(psyne::nonblock);
        if (!m)
            fail("receive");
        std::uint64_t seq;
        std::memcpy(&seq, m.data(), 8);
        if (seq != i)
            fail("a message out of order");
    }
    return double(n) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

static double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

int main(int argc, char **argv)
{
    std::vector<std::size_t> sizes = {64, 4096};
    int rounds = 10;
    std::uint64_t messages = 0;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--size" && i + 1 < argc) {
            sizes.clear();
            for (char *p = argv[++i]; *p;) {
                sizes.push_back(std::strtoull(p, &p, 10));
                if (*p == ',')
                    p++;
            }
        } else if (a == "--rounds" && i + 1 < argc) {
            rounds = std::atoi(argv[++i]);
        } else if (a == "--messages" && i + 1 < argc) {
            messages = std::strtoull(argv[++i], nullptr, 10);
        } else {
            std::fprintf(stderr, "usage: psyne_cxx_overhead [--size LIST] [--rounds N] [--messages N]\n");
            return 2;
        }
    }
#ifdef PSYNE_INLINE_CALLS
    const char *c_calls = "inline";
#else
    const char *c_calls = "exported";
#endif
    pin(1); // the consumer: this thread
    struct workload {
        const char *name;
        double (*c)(std::size_t, std::uint64_t, int);
        double (*cxx)(std::size_t, std::uint64_t, int);
    } workloads[] = {{"inproc-spsc-tput", run_c, run_cxx}, {"one-thread-round-trip", one_thread_c, one_thread_cxx}};
    for (const workload &w : workloads) {
        for (std::size_t size : sizes) {
            std::uint64_t n = messages ? messages : size <= 256 ? 2000000 : 300000;
            std::vector<double> c, cxx, ratio;
            for (int r = 0; r < rounds; r++) { // alternating, each first in every other round
                double a, b;
                if (r % 2) {
                    b = w.cxx(size, n, r);
                    a = w.c(size, n, r);
                } else {
                    a = w.c(size, n, r);
                    b = w.cxx(size, n, r);
                }
                c.push_back(a);
                cxx.push_back(b);
                ratio.push_back(b / a);
            }
            std::printf("RESULT system=psyne-c workload=%s size=%zu mps=%.0f runs=%d c_calls=%s\n", w.name, size,
                        median(c), rounds, c_calls);
            std::printf("RESULT system=psyne-cxx workload=%s size=%zu mps=%.0f runs=%d vs_c=%.3f vs_c_min=%.3f "
                        "vs_c_max=%.3f\n",
                        w.name, size, median(cxx), rounds, median(ratio), *std::min_element(ratio.begin(), ratio.end()),
                        *std::max_element(ratio.begin(), ratio.end()));
        }
    }
    return 0;
}
