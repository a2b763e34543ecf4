/* SPDX-License-Identifier: MIT */
// psyne.hpp - the whole psyne API in C++17, header-only, over psyne.h:
// channels, raw and typed messages built in place in the ring, received
// messages that release themselves, batches, peers, options and statistics.
//
//   #include <Eigen/Core>            // optional, before psyne.hpp: as_eigen()
//   #include <psyne.hpp>
//
//   psyne::channel ch("memory://v", psyne::options().mode(psyne::spsc).capacity(1 << 20));
//   psyne::FloatVector msg(ch);             // a typed message of this channel
//   msg.resize(100);                        // claims room for 100 floats in the ring
//   msg.as_eigen().setLinSpaced(0.0f, 1.0f);  // written in place (an aligned Eigen::Map)
//   msg.send();
//   while (auto m = ch.receive<psyne::FloatVector>(psyne::nonblock))
//       process(m.as_eigen());              // m releases the message at the end of the block
//   while (auto p = ch.receive<Pose>())     // a user type of PSYNE_MESSAGE_TYPE
//       use(*p);                            // the Pose in the ring
//
// Errors. Four outcomes are results, not errors: nothing to receive, no room
// to claim (psyne::nonblock, or the timeout passed), the channel shut down.
// Calls that can meet them return an object that is false (or a bool) and
// whose code() says which: -EAGAIN, -ETIMEDOUT or -EPIPE. Everything else
// (a bad argument, a message of another kind, a broken connection) throws
// psyne::error, whose code() is the -errno and what() psyne_last_error().
//
// Threads: those of psyne.h. A channel object may be used by the threads its
// mode allows; every message, claim and batch object belongs to one thread
// at a time. Blocking: calls that take a timeout wait as psyne.h's do
// (default psyne::forever); nothing else blocks but close.
//
// Cost: a claim and a received message kept in local variables cost what the
// C calls cost (the inline psyne_claim and psyne_commit; the objects stay in
// registers). Passing their address out of the function stores them to memory
// for every message.
#ifndef PSYNE_HPP
#define PSYNE_HPP

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "psyne.h"

// The claim objects are meant to stay in registers, as a C caller's claim
// does with the inline psyne_claim and psyne_commit: anything that takes
// their address out of line makes every claim a series of stores. So their
// claim, commit and destructor are forced inline (GCC does not inline calls
// on exception paths, Clang not a constructor grown by the inline claim), and
// every throw sits in a cold function of its own.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast" // psyne.h's constants are C casts
#define PSYNE_HPP_INLINE __attribute__((always_inline)) inline
#define PSYNE_HPP_COLD __attribute__((noinline, cold))
#else
#define PSYNE_HPP_INLINE inline
#define PSYNE_HPP_COLD
#endif

namespace psyne
{

// ---- errors ----

class error : public std::runtime_error
{
  public:
    explicit error(int code)
        : std::runtime_error(std::string(psyne_strerror(code)) + ": " + psyne_last_error()), code_(code)
    {
    }
    int code() const noexcept { return code_; }

  private:
    int code_;
};

[[noreturn]] PSYNE_HPP_COLD inline void throw_error(int rc)
{
    throw error(rc);
}

// Throws psyne::error for a negative rc; returns rc.
inline int check(int rc)
{
    if (rc < 0)
        throw_error(rc);
    return rc;
}

// Whether rc is one of the results that are not errors: 0, nothing there or
// no room (-EAGAIN), timed out (-ETIMEDOUT), shut down (-EPIPE).
constexpr bool is_result(int rc) noexcept
{
    return rc == 0 || rc == -EAGAIN || rc == -ETIMEDOUT || rc == -EPIPE;
}

// rc if it is a count (>= 0) or a result, else throws.
inline int check_result(int rc)
{
    if (rc < 0 && !is_result(rc))
        throw_error(rc);
    return rc;
}

// ---- options ----

constexpr std::int64_t nonblock = PSYNE_NONBLOCK;
constexpr std::int64_t forever = PSYNE_FOREVER;

constexpr int spsc = PSYNE_MODE_SPSC;
constexpr int spmc = PSYNE_MODE_SPMC;
constexpr int mpsc = PSYNE_MODE_MPSC;
constexpr int mpmc = PSYNE_MODE_MPMC;
constexpr int broadcast = PSYNE_MODE_BROADCAST;

constexpr int any_role = PSYNE_ROLE_ANY;
constexpr int producer = PSYNE_ROLE_PRODUCER;
constexpr int consumer = PSYNE_ROLE_CONSUMER;

// psyne_options, built by chained calls:
//   psyne::options().mode(psyne::mpmc).capacity(1 << 20).role(psyne::producer)
class options
{
  public:
    options() noexcept { psyne_options_init(&o_); }
    options &mode(int m) noexcept { return o_.mode = m, *this; }
    options &role(int r) noexcept { return o_.role = r, *this; }
    options &capacity(std::uint64_t bytes) noexcept { return o_.capacity = bytes, *this; }
    options &wait(int w) noexcept { return o_.wait = w, *this; }
    options &spin_ns(std::int64_t ns) noexcept { return o_.spin_ns = ns, *this; }
    options &yield_ns(std::int64_t ns) noexcept { return o_.yield_ns = ns, *this; }
    options &flags(std::uint32_t f) noexcept { return o_.flags |= f, *this; }
    options &listen() noexcept { return flags(PSYNE_F_LISTEN); }
    /* the handle's counters appear in psyne-stat (PSYNE_F_PUBLISH) */
    options &publish() noexcept { return flags(PSYNE_F_PUBLISH); }
    options &max_peers(std::uint32_t n) noexcept { return o_.max_peers = n, *this; }
    options &link_timeout_ns(std::int64_t ns) noexcept { return o_.link_timeout_ns = ns, *this; }
    options &open_timeout_ns(std::int64_t ns) noexcept { return o_.open_timeout_ns = ns, *this; }
    options &peer_timeout_ns(std::int64_t ns) noexcept { return o_.peer_timeout_ns = ns, *this; }
    options &linger_ns(std::int64_t ns) noexcept { return o_.linger_ns = ns, *this; }
    options &numa_node(int node) noexcept
    {
        o_.numa_node = static_cast<std::uint32_t>(node);
        return flags(PSYNE_F_NUMA_BIND);
    }
    options &ipc_perm(unsigned perm) noexcept { return o_.ipc_perm = perm, *this; }
    options &dynamic(const psyne_dynamic *d) noexcept { return o_.dynamic = d, *this; }
    const psyne_options &c_options() const noexcept { return o_; }
    psyne_options &c_options() noexcept { return o_; }

  private:
    psyne_options o_;
};

// ---- element types and user message types ----

template <class T> struct dtype_of;
template <> struct dtype_of<float> : std::integral_constant<int, PSYNE_F32> {
};
template <> struct dtype_of<double> : std::integral_constant<int, PSYNE_F64> {
};
template <> struct dtype_of<std::int8_t> : std::integral_constant<int, PSYNE_I8> {
};
template <> struct dtype_of<std::uint8_t> : std::integral_constant<int, PSYNE_U8> {
};
template <> struct dtype_of<std::int32_t> : std::integral_constant<int, PSYNE_I32> {
};
template <> struct dtype_of<std::int64_t> : std::integral_constant<int, PSYNE_I64> {
};

// The record type of a user type made with PSYNE_MESSAGE_TYPE (found by
// argument-dependent lookup of the psyne_type_id_of the macro defines).
template <class T, class = void> struct has_message_type : std::false_type {
};
template <class T>
struct has_message_type<T, std::void_t<decltype(psyne_type_id_of(static_cast<const T *>(nullptr)))>> : std::true_type {
};
template <class T> constexpr std::uint32_t message_type_of()
{
    static_assert(has_message_type<T>::value,
                  "a user message type needs PSYNE_MESSAGE_TYPE(name, T, id) in T's namespace");
    return psyne_type_id_of(static_cast<const T *>(nullptr));
}

class channel;
template <class T, int Rank> class Tensor;
template <class T> struct is_tensor : std::false_type {
};
template <class T, int Rank> struct is_tensor<Tensor<T, Rank>> : std::true_type {
};

// ---- received messages ----

// A received message that someone else releases (a batch's element).
class message_ref
{
  public:
    message_ref() noexcept : m_{} {}
    explicit message_ref(const psyne_msg &m) noexcept : m_(m) {}
    const void *data() const noexcept { return m_.data; }
    void *mutable_data() const noexcept { return m_.data; } // where psyne.h allows writing in place
    std::uint32_t size() const noexcept { return m_.length; }
    std::uint32_t type() const noexcept { return m_.type; }
    // The client it came from on a listening tcp:// handle with max_peers (else 0).
    std::uint32_t peer() const noexcept { return m_.peer; }
    const psyne_msg &c_msg() const noexcept { return m_; }

  protected:
    struct unfilled {
    };
    explicit message_ref(unfilled) noexcept {} // m_ is about to be written by a receive
  public:
    // The message as a vector (rank 1), matrix (rank 2) or tensor of T: a
    // view valid while the message is held. Throws psyne::error with
    // -ENOMSG (another kind) or -EPROTO (an inconsistent header).
    template <class T> Tensor<T, 1> as_vector() const { return as<T, 1>(); }
    template <class T> Tensor<T, 2> as_matrix() const { return as<T, 2>(); }
    template <class T, int Rank> Tensor<T, Rank> as() const;
    // A user type of PSYNE_MESSAGE_TYPE: throws -ENOMSG if the message has
    // another type id or size.
    template <class T> const T &as_type() const
    {
        if (m_.type != message_type_of<T>() || m_.length != sizeof(T))
            throw_error(-ENOMSG);
        return *static_cast<const T *>(m_.data);
    }

  protected:
    psyne_msg m_;
};

// A received message, released when it goes out of scope (or by release()).
// False when the receive found nothing: code() says why.
class message : public message_ref
{
  public:
    message() noexcept : held_(nullptr), code_(-EAGAIN) {}
    // held_ and code_ are written after the receive (which sees m_, so could
    // read them): a message received costs one store of the object's own,
    // where written before, both would be stored for every message.
    PSYNE_HPP_INLINE message(psyne_channel *ch, std::int64_t timeout_ns) : message_ref(unfilled{})
    {
        int rc = psyne_receive(ch, &m_, timeout_ns);
        if (rc == 0) {
            held_ = ch; // code_ is not read while a message is held
        } else {
            held_ = nullptr;
            code_ = check_result(rc);
        }
    }
    message(message &&o) noexcept : message_ref(o), held_(std::exchange(o.held_, nullptr)), code_(held_ ? 0 : o.code_)
    {
        o.code_ = -EAGAIN;
    }
    message &operator=(message &&o) noexcept
    {
        if (this != &o) {
            release();
            m_ = o.m_;
            held_ = std::exchange(o.held_, nullptr);
            code_ = held_ ? 0 : o.code_;
            o.code_ = -EAGAIN;
        }
        return *this;
    }
    message(const message &) = delete;
    message &operator=(const message &) = delete;
    PSYNE_HPP_INLINE ~message() { release(); }
    explicit operator bool() const noexcept { return held_ != nullptr; }
    int code() const noexcept { return held_ ? 0 : code_; }
    PSYNE_HPP_INLINE void release() noexcept
    {
        if (held_)
            psyne_release(held_, &m_);
        held_ = nullptr;
        code_ = -EAGAIN;
    }

  private:
    psyne_channel *held_; // the channel that releases the message; nullptr: none held
    int code_;            // why none is held
};

// A received user-type message (channel::receive<T>()): *m and m-> are the T
// in the ring, valid while m lives. False when nothing came (code()).
template <class T> class received
{
  public:
    explicit received(message &&m) : m_(std::move(m))
    {
        if (m_)
            value_ = &m_.as_type<T>();
    }
    explicit operator bool() const noexcept { return value_ != nullptr; }
    int code() const noexcept { return m_.code(); }
    const T &operator*() const noexcept { return *value_; }
    const T *operator->() const noexcept { return value_; }
    const message &msg() const noexcept { return m_; }
    void release() noexcept
    {
        m_.release();
        value_ = nullptr;
    }

  private:
    message m_;
    const T *value_ = nullptr;
};

// Messages of one receive, released together with the batch
// (channel::drain): a range of message_ref.
class batch
{
  public:
    batch(psyne_channel *ch, unsigned max, std::int64_t timeout_ns) : ch_(ch), msgs_(max ? max : 1)
    {
        int n = check_result(psyne_receive_batch(ch, msgs_.data(), static_cast<unsigned>(msgs_.size()), timeout_ns));
        code_ = n < 0 ? n : 0;
        msgs_.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
        refs_.reserve(msgs_.size());
        for (const psyne_msg &m : msgs_)
            refs_.emplace_back(m);
    }
    batch(batch &&o) noexcept
        : ch_(o.ch_), msgs_(std::move(o.msgs_)), refs_(std::move(o.refs_)), code_(std::exchange(o.code_, -EAGAIN))
    {
        o.msgs_.clear();
    }
    batch(const batch &) = delete;
    batch &operator=(const batch &) = delete;
    batch &operator=(batch &&) = delete;
    ~batch() { release(); }
    explicit operator bool() const noexcept { return !refs_.empty(); }
    int code() const noexcept { return code_; }
    std::size_t size() const noexcept { return refs_.size(); }
    const message_ref &operator[](std::size_t i) const noexcept { return refs_[i]; }
    auto begin() const noexcept { return refs_.begin(); }
    auto end() const noexcept { return refs_.end(); }
    void release() noexcept
    {
        if (!msgs_.empty())
            psyne_release_batch(ch_, msgs_.data(), static_cast<unsigned>(msgs_.size()));
        msgs_.clear();
        refs_.clear();
    }

  private:
    psyne_channel *ch_;
    std::vector<psyne_msg> msgs_;
    std::vector<message_ref> refs_;
    int code_ = 0;
};

// ---- messages being built ----

// Room for a raw message in the ring (channel::claim), given up unless
// committed. False when the claim found no room or the channel shut down
// (code()).
class claimed
{
  public:
    claimed() noexcept = default;
    // On ch (psyne_claim), or for one peer of a listening handle with
    // max_peers (psyne_claim_to).
    PSYNE_HPP_INLINE claimed(psyne_channel *ch, std::size_t bytes, std::int64_t timeout_ns) : ch_(ch)
    {
        code_ = check_result(psyne_claim(ch, bytes, &c_, timeout_ns));
        if (code_ == 0)
            settle(bytes);
    }
    claimed(psyne_channel *ch, std::uint32_t peer, std::size_t bytes, std::int64_t timeout_ns) : ch_(ch)
    {
        code_ = check_result(psyne_claim_to(ch, peer, bytes, &c_, timeout_ns));
    }
    claimed(claimed &&o) noexcept : ch_(o.ch_), c_(o.c_), code_(std::exchange(o.code_, -EAGAIN)) {}
    claimed &operator=(claimed &&o) noexcept
    {
        if (this != &o) {
            abort();
            ch_ = o.ch_;
            c_ = o.c_;
            code_ = std::exchange(o.code_, -EAGAIN);
        }
        return *this;
    }
    claimed(const claimed &) = delete;
    claimed &operator=(const claimed &) = delete;
    PSYNE_HPP_INLINE ~claimed() { abort(); }
    explicit operator bool() const noexcept { return code_ == 0; }
    int code() const noexcept { return code_; }
    void *data() const noexcept { return c_.data; }
    std::size_t capacity() const noexcept { return c_.capacity; }
    // Publishes the first `bytes` bytes as a message of a user type. A
    // failed commit (bytes beyond the claim, a reserved type) gives the claim
    // up, then throws psyne::error.
    PSYNE_HPP_INLINE void commit(std::size_t bytes, std::uint32_t type = PSYNE_TYPE_USER_MIN)
    {
        bool open = code_ == 0;
        int rc = open ? psyne_commit(ch_, &c_, bytes, type) : -EINVAL;
        code_ = -EAGAIN;
        if (rc < 0) {
            if (open)
                give_up(ch_, c_);
            throw_error(rc);
        }
    }
    PSYNE_HPP_INLINE void abort() noexcept
    {
        if (code_ == 0)
            give_up(ch_, c_);
        code_ = -EAGAIN;
    }

  private:
    // What every successful psyne_claim gives (tests/unit_api.c checks it),
    // written again: the inline claim's fast path and the library's path
    // then leave the same constants, so the commit's checks of them fold and
    // the compiler keeps no more registers than a C caller's claim (without
    // it, GCC spilled three of them to the stack for every message).
    void settle(std::size_t bytes) noexcept
    {
        c_.capacity = static_cast<std::uint32_t>(bytes);
        c_.psy_reserved = static_cast<std::uint32_t>(PSYNE_RECORD_SIZE(bytes));
        c_.psy_batch = 1;
        c_.psy_peer = 0;
    }
    // The cold paths take the claim by value: were the object's address to
    // leave (a call not inlined), it would live in memory and every claim
    // would store it, where the inline claim and commit keep it in registers.
    static void give_up(psyne_channel *ch, psyne_claimed c) noexcept { psyne_abort(ch, &c); }
    psyne_channel *ch_ = nullptr;
    psyne_claimed c_; // written by the claim
    int code_ = -EAGAIN;
};

// Room for a user-type message (channel::claim<T>()): *c and c-> are the T
// in the ring; send() publishes it, else it is given up.
template <class T> class typed_claim
{
    static_assert(std::is_trivially_copyable<T>::value, "a message type is trivially copyable (a fixed layout)");

  public:
    typed_claim(psyne_channel *ch, std::int64_t timeout_ns) : c_(ch, sizeof(T), timeout_ns)
    {
        if (c_)
            value_ = ::new (c_.data()) T();
    }
    explicit operator bool() const noexcept { return value_ != nullptr; }
    int code() const noexcept { return c_.code(); }
    T &operator*() const noexcept { return *value_; }
    T *operator->() const noexcept { return value_; }
    void send()
    {
        c_.commit(sizeof(T), message_type_of<T>());
        value_ = nullptr;
    }
    void abort() noexcept
    {
        c_.abort();
        value_ = nullptr;
    }

  private:
    claimed c_;
    T *value_ = nullptr;
};

// Up to N raw messages claimed at once (channel::claim_batch), committed
// together: fill (*this)[i].data, then commit(lengths, type).
template <unsigned N> class claims
{
  public:
    claims(psyne_channel *ch, std::size_t bytes, unsigned n, std::int64_t timeout_ns) : ch_(ch)
    {
        int rc = check_result(psyne_claim_batch(ch, bytes, c_.data(), n < N ? n : N, timeout_ns));
        n_ = rc > 0 ? static_cast<unsigned>(rc) : 0;
        code_ = rc < 0 ? rc : 0;
    }
    claims(const claims &) = delete;
    claims &operator=(const claims &) = delete;
    ~claims() { abort(); }
    explicit operator bool() const noexcept { return n_ > 0; }
    int code() const noexcept { return code_; }
    unsigned size() const noexcept { return n_; }
    psyne_claimed &operator[](unsigned i) noexcept { return c_[i]; }
    // Publishes the first lengths.size() <= size() claims (the rest are given up).
    void commit(const std::uint32_t *lengths, unsigned count, std::uint32_t type = PSYNE_TYPE_USER_MIN)
    {
        if (!n_)
            throw_error(-EINVAL);
        check(psyne_commit_batch(ch_, c_.data(), count, lengths, type));
        n_ = 0;
    }
    void abort() noexcept
    {
        if (n_)
            psyne_commit_batch(ch_, c_.data(), 0, nullptr, PSYNE_TYPE_USER_MIN);
        n_ = 0;
    }

  private:
    psyne_channel *ch_;
    std::array<psyne_claimed, N> c_{};
    unsigned n_ = 0;
    int code_ = 0;
};

// ---- typed messages: vectors, matrices, tensors ----

// A typed message of Rank dimensions of T (row-major; strides in elements).
// Made on a channel to send (Tensor<T, R> msg(ch); msg.resize(n) or
// msg.reshape({...}) claims room; fill it; msg.send()), or received
// (channel::receive<Tensor<T, R>>(), message_ref::as<T, R>()): a view of the
// record in the ring, writable where psyne.h allows it, valid while held.
template <class T, int Rank> class Tensor
{
    static_assert(Rank >= 1 && Rank <= PSYNE_TENSOR_MAX_RANK, "rank 1..PSYNE_TENSOR_MAX_RANK");
    static_assert(dtype_of<T>::value != 0, "an element type of psyne_dtype");

  public:
    // To send on ch: nothing is claimed until resize/reshape (or reserve).
    explicit Tensor(channel &ch, std::int64_t timeout_ns = forever);
    // A view of a received record (message_ref::as), or an empty one.
    Tensor() noexcept = default;
    explicit Tensor(const psyne_tensor &view) noexcept : t_(view), state_(viewing) {}
    // Received (channel::receive<Tensor>()): owns the message.
    explicit Tensor(message &&m) : msg_(std::move(m))
    {
        if (msg_) {
            t_ = msg_.as<T, Rank>().c_tensor();
            state_ = viewing;
        }
    }
    Tensor(Tensor &&o) noexcept
        : ch_(o.ch_), timeout_(o.timeout_), t_(o.t_), msg_(std::move(o.msg_)), state_(std::exchange(o.state_, empty)),
          code_(o.code_)
    {
    }
    Tensor(const Tensor &) = delete;
    Tensor &operator=(const Tensor &) = delete;
    Tensor &operator=(Tensor &&) = delete;
    ~Tensor()
    {
        if (state_ == claimed)
            psyne_abort(ch_, &t_.claim);
    }

    // False when nothing was received, or a claim found no room or the
    // channel shut down (code()).
    explicit operator bool() const noexcept { return state_ == claimed || state_ == viewing; }
    int code() const noexcept { return code_; }

    // Sending: claims room for `capacity` elements now (resize and reshape
    // then stay within it). False (code()) if no room came or shut down.
    bool reserve(std::uint64_t capacity)
    {
        if (state_ == claimed)
            return capacity <= t_.capacity || (throw_error(-EINVAL), false);
        if (state_ != unclaimed)
            throw_error(-EINVAL);
        code_ = check_result(psyne_claim_tensor(ch_, dtype_of<T>::value, Rank, capacity, &t_, timeout_));
        if (code_ == 0)
            state_ = claimed;
        return code_ == 0;
    }
    // A vector of n elements: claims n on first use. False as reserve.
    bool resize(std::uint64_t n)
    {
        static_assert(Rank == 1, "resize is for vectors; matrices and tensors use reshape");
        return reshape({n});
    }
    // The shape (and strides in elements, empty: row-major contiguous);
    // claims what it reaches on first use. False as reserve.
    bool reshape(std::initializer_list<std::uint64_t> shape, std::initializer_list<std::uint64_t> strides = {})
    {
        if (shape.size() != Rank || (strides.size() && strides.size() != Rank))
            throw_error(-EINVAL);
        if (state_ == unclaimed && !reserve(reach(shape, strides)))
            return false;
        if (state_ != claimed)
            throw_error(-EINVAL);
        check(psyne_tensor_reshape(&t_, Rank, shape.begin(), strides.size() ? strides.begin() : nullptr));
        return true;
    }
    // Publishes the message.
    void send()
    {
        if (state_ != claimed)
            throw_error(-EINVAL);
        check(psyne_commit_tensor(ch_, &t_));
        state_ = sent;
    }
    // Gives up a claim, or releases a received message.
    void reset() noexcept
    {
        if (state_ == claimed)
            psyne_abort(ch_, &t_.claim);
        msg_.release();
        state_ = empty;
    }

    T *data() const noexcept { return static_cast<T *>(t_.data); }
    std::uint64_t size() const noexcept
    {
        std::uint64_t n = 1;
        for (int i = 0; i < Rank; i++)
            n *= t_.shape[i];
        return n;
    }
    std::uint64_t capacity() const noexcept { return t_.capacity; }
    std::uint64_t shape(int i) const noexcept { return t_.shape[i]; }
    std::uint64_t stride(int i) const noexcept { return t_.strides[i]; }
    std::uint64_t rows() const noexcept { return t_.shape[0]; }
    std::uint64_t cols() const noexcept { return Rank >= 2 ? t_.shape[1] : 1; }
    std::uint64_t ld() const noexcept { return Rank >= 2 ? t_.strides[0] : 1; }
    T &operator[](std::size_t i) const noexcept { return data()[i * t_.strides[Rank - 1]]; }
    template <class... I> T &operator()(I... idx) const noexcept
    {
        static_assert(sizeof...(I) == Rank, "one index per dimension");
        std::uint64_t at = 0;
        int d = 0;
        ((at += static_cast<std::uint64_t>(idx) * t_.strides[d++]), ...);
        return data()[at];
    }
    const psyne_tensor &c_tensor() const noexcept { return t_; }

    // An Eigen::Map over the ring memory, aligned to 64 bytes: a column
    // vector (Rank 1) or a row-major matrix with the leading dimension as its
    // outer stride (Rank 2). Writes go straight into the message.
    template <int R = Rank> auto as_eigen() const
    {
        static_assert(R == 1 || R == 2, "as_eigen maps vectors and matrices");
#ifdef EIGEN_WORLD_VERSION
        if constexpr (R == 1) {
            using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
            return Eigen::Map<Vec, Eigen::Aligned64, Eigen::InnerStride<>>(
                data(), static_cast<Eigen::Index>(t_.shape[0]),
                Eigen::InnerStride<>(static_cast<Eigen::Index>(t_.strides[0])));
        } else {
            using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
            if (t_.strides[1] != 1)
                throw_error(-EINVAL); // Eigen's row-major map needs a unit column stride
            return Eigen::Map<Mat, Eigen::Aligned64, Eigen::OuterStride<>>(
                data(), static_cast<Eigen::Index>(t_.shape[0]), static_cast<Eigen::Index>(t_.shape[1]),
                Eigen::OuterStride<>(static_cast<Eigen::Index>(t_.strides[0])));
        }
#else
        static_assert(R != R, "as_eigen() needs Eigen: #include <Eigen/Core> before psyne.hpp");
#endif
    }

  private:
    enum state { empty, unclaimed, claimed, sent, viewing };
    // Elements a shape with these strides reaches (row-major if none).
    static std::uint64_t reach(std::initializer_list<std::uint64_t> shape, std::initializer_list<std::uint64_t> strides)
    {
        std::uint64_t n = 1, last = 0;
        const std::uint64_t *st = strides.size() ? strides.begin() : nullptr;
        int i = 0;
        for (std::uint64_t s : shape) {
            if (s == 0)
                return 1;
            n *= s;
            if (st)
                last += (s - 1) * st[i];
            i++;
        }
        return st ? last + 1 : n;
    }

    psyne_channel *ch_ = nullptr;
    std::int64_t timeout_ = forever;
    psyne_tensor t_{};
    message msg_;
    state state_ = empty;
    int code_ = 0;
};

using FloatVector = Tensor<float, 1>;
using DoubleVector = Tensor<double, 1>;
using FloatMatrix = Tensor<float, 2>;
using DoubleMatrix = Tensor<double, 2>;

template <class T, int Rank> Tensor<T, Rank> message_ref::as() const
{
    psyne_tensor t;
    check(psyne_tensor_view(&m_, dtype_of<T>::value, Rank, &t));
    return Tensor<T, Rank>(t);
}

// ---- channels ----

// A channel handle, closed with the object (or by close()).
class channel
{
  public:
    // Opens uri with o (a default options(): create with the defaults, or
    // join a compatible channel).
    explicit channel(const std::string &uri, const options &o = options())
    {
        check(psyne_channel_open(&ch_, uri.c_str(), &o.c_options()));
    }
    // Opens uri with the C options (nullptr: join whatever exists).
    channel(const std::string &uri, const psyne_options *opt) { check(psyne_channel_open(&ch_, uri.c_str(), opt)); }
    // Opens uri with the defaults and a mode, role and capacity.
    channel(const std::string &uri, int mode, int role, std::uint64_t capacity = 0)
        : channel(uri, options().mode(mode).role(role).capacity(capacity))
    {
    }
    channel(channel &&o) noexcept : ch_(std::exchange(o.ch_, nullptr)) {}
    channel &operator=(channel &&o) noexcept
    {
        std::swap(ch_, o.ch_);
        return *this;
    }
    channel(const channel &) = delete;
    channel &operator=(const channel &) = delete;
    ~channel() { close(); }

    psyne_channel *get() const noexcept { return ch_; }
    // Closes the handle now (blocking as psyne_channel_close); idempotent.
    // Returns psyne_channel_close's count of messages nobody read (0 if
    // other handles remain).
    int close() noexcept
    {
        int left = psyne_channel_close(ch_);
        ch_ = nullptr;
        return left;
    }
    // The readiness descriptor for an event loop (psyne_channel_fd):
    // PSYNE_READY_RECV or PSYNE_READY_SEND; polls readable (POLLIN) when a
    // receive (claim) may succeed; re-armed by a call that finds nothing.
    // Owned by the handle.
    int fd(int event = PSYNE_READY_RECV) const { return check(psyne_channel_fd(ch_, event)); }
    void shutdown() { check(psyne_channel_shutdown(ch_)); }
    psyne_stats stats() const
    {
        psyne_stats s;
        check(psyne_channel_stats(ch_, &s));
        return s;
    }

    // Raw bytes: room for `bytes`, then commit(len, type) or abort().
    PSYNE_HPP_INLINE claimed claim(std::size_t bytes, std::int64_t timeout_ns = forever)
    {
        return claimed(ch_, bytes, timeout_ns);
    }
    // The same for one client of a listening tcp:// handle with max_peers.
    claimed claim_to(std::uint32_t peer, std::size_t bytes, std::int64_t timeout_ns = forever)
    {
        return claimed(ch_, peer, bytes, timeout_ns);
    }
    // A user type of PSYNE_MESSAGE_TYPE, value-initialized in the ring.
    template <class T> typed_claim<T> claim(std::int64_t timeout_ns = forever)
    {
        return typed_claim<T>(ch_, timeout_ns);
    }
    // Up to n <= N raw messages of `bytes` each at once.
    template <unsigned N = 32>
    claims<N> claim_batch(std::size_t bytes, unsigned n = N, std::int64_t timeout_ns = forever)
    {
        return claims<N>(ch_, bytes, n, timeout_ns);
    }

    // A vector of up to `capacity` elements, claimed now.
    template <class T> Tensor<T, 1> claim_vector(std::uint64_t capacity, std::int64_t timeout_ns = forever)
    {
        Tensor<T, 1> v(*this, timeout_ns);
        v.reserve(capacity);
        return v;
    }
    // A rows x cols row-major matrix (leading dimension ld >= cols; 0: cols).
    template <class T>
    Tensor<T, 2> claim_matrix(std::uint64_t rows, std::uint64_t cols, std::uint64_t ld = 0,
                              std::int64_t timeout_ns = forever)
    {
        Tensor<T, 2> m(*this, timeout_ns);
        m.reshape({rows, cols}, {ld ? ld : cols, 1});
        return m;
    }

    // The next message (false if none within the timeout, or shut down).
    message receive(std::int64_t timeout_ns = forever) { return message(ch_, timeout_ns); }
    // The next message as M: a Tensor (checked dtype and rank) or a user type
    // of PSYNE_MESSAGE_TYPE (checked type id and size); a message of another
    // kind throws -ENOMSG (and is released).
    template <class M> auto receive(std::int64_t timeout_ns = forever)
    {
        if constexpr (is_tensor<M>::value)
            return M(message(ch_, timeout_ns));
        else
            return received<M>(message(ch_, timeout_ns));
    }
    // Up to max messages of one receive (waiting for the first), released
    // together when the batch goes: for (auto &m : ch.drain(64)) ...
    batch drain(unsigned max, std::int64_t timeout_ns = nonblock) { return batch(ch_, max, timeout_ns); }

  private:
    psyne_channel *ch_ = nullptr;
};

template <class T, int Rank>
Tensor<T, Rank>::Tensor(channel &ch, std::int64_t timeout_ns) : ch_(ch.get()), timeout_(timeout_ns), state_(unclaimed)
{
}

} // namespace psyne

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#endif // PSYNE_HPP
