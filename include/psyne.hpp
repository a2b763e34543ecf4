/* SPDX-License-Identifier: MIT */
// psyne.hpp - header-only C++17 wrapper of psyne.h: RAII channels, claims and
// received messages, typed vector and matrix views, and, when Eigen is
// included first, as_eigen() maps over the ring memory:
//
//   #include <Eigen/Core>     // optional, before psyne.hpp
//   #include <psyne.hpp>
//
//   psyne::channel tx("memory://v"), rx("memory://v");
//   auto v = tx.claim_vector<float>(1024);      // room for 1024 floats, in the ring
//   v.resize(n);                                 // within the capacity
//   v.as_eigen().setLinSpaced(0.0f, 1.0f);       // written in place (an aligned Eigen::Map)
//   v.send();
//   auto m = rx.receive();                       // released when m goes out of scope
//   auto w = m.as_vector<float>();               // checked: a float vector that fits its record
//   w.as_eigen() = w.as_eigen().array() * 2.0f;  // in place, in the ring
//
// Errors other than "empty/full/timed out/shut down" throw psyne::error
// (its code() is the -errno). Thread rules are those of psyne.h; every
// object here belongs to one thread at a time.
#ifndef PSYNE_HPP
#define PSYNE_HPP

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "psyne.h"

namespace psyne
{

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

inline int check(int rc)
{
    if (rc < 0)
        throw error(rc);
    return rc;
}

// The psyne_dtype of an element type.
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

// Elements of a typed message, in the ring: a vector (Rank 1) or a
// row-major matrix (Rank 2, leading dimension ld). Shared by claims and views.
template <class T, int Rank> class tensor_ref
{
    static_assert(Rank == 1 || Rank == 2, "vectors and matrices (use psyne.h for higher ranks)");

  public:
    T *data() const noexcept { return static_cast<T *>(t_.data); }
    std::uint64_t size() const noexcept { return Rank == 1 ? t_.shape[0] : t_.shape[0] * t_.shape[1]; }
    std::uint64_t rows() const noexcept { return t_.shape[0]; }
    std::uint64_t cols() const noexcept { return Rank == 2 ? t_.shape[1] : 1; }
    std::uint64_t ld() const noexcept { return Rank == 2 ? t_.strides[0] : 1; }
    T &operator[](std::size_t i) const noexcept { return data()[i * t_.strides[Rank - 1]]; }
    T &operator()(std::size_t i, std::size_t j) const noexcept { return data()[i * t_.strides[0] + j * t_.strides[1]]; }
    const psyne_tensor &c_tensor() const noexcept { return t_; }

#ifdef EIGEN_WORLD_VERSION
    // An Eigen::Map over the ring memory, aligned to 64 bytes: a column
    // vector (Rank 1), or a row-major matrix with the leading dimension as
    // its outer stride (Rank 2). Writes go straight into the message.
    auto as_eigen() const
    {
        if constexpr (Rank == 1) {
            using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
            return Eigen::Map<Vec, Eigen::Aligned64, Eigen::InnerStride<>>(
                data(), static_cast<Eigen::Index>(t_.shape[0]),
                Eigen::InnerStride<>(static_cast<Eigen::Index>(t_.strides[0])));
        } else {
            using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
            if (t_.strides[1] != 1)
                throw std::logic_error("as_eigen needs a unit column stride");
            return Eigen::Map<Mat, Eigen::Aligned64, Eigen::OuterStride<>>(
                data(), static_cast<Eigen::Index>(t_.shape[0]), static_cast<Eigen::Index>(t_.shape[1]),
                Eigen::OuterStride<>(static_cast<Eigen::Index>(t_.strides[0])));
        }
    }
#endif

  protected:
    psyne_tensor t_{};
};

// A typed message being built in the ring; given up unless sent.
template <class T, int Rank> class tensor_claim : public tensor_ref<T, Rank>
{
  public:
    tensor_claim(psyne_channel *ch, std::uint64_t capacity, std::int64_t timeout_ns) : ch_(ch)
    {
        check(psyne_claim_tensor(ch, dtype_of<T>::value, Rank, capacity, &this->t_, timeout_ns));
        open_ = true;
    }
    tensor_claim(tensor_claim &&o) noexcept : tensor_ref<T, Rank>(o), ch_(o.ch_), open_(std::exchange(o.open_, false))
    {
    }
    tensor_claim(const tensor_claim &) = delete;
    tensor_claim &operator=(const tensor_claim &) = delete;
    ~tensor_claim()
    {
        if (open_)
            psyne_abort(ch_, &this->t_.claim);
    }
    std::uint64_t capacity() const noexcept { return this->t_.capacity; }
    // A vector of n elements (n <= capacity).
    void resize(std::uint64_t n)
    {
        static_assert(Rank == 1, "resize is for vectors; matrices use reshape");
        reshape({n});
    }
    // Shape (and strides, in elements; empty = row-major contiguous).
    void reshape(std::initializer_list<std::uint64_t> shape, std::initializer_list<std::uint64_t> strides = {})
    {
        if (shape.size() != Rank || (strides.size() && strides.size() != Rank))
            throw std::logic_error("reshape keeps the rank of the claim");
        check(psyne_tensor_reshape(&this->t_, Rank, shape.begin(), strides.size() ? strides.begin() : nullptr));
    }
    // Publishes the message.
    void send()
    {
        check(psyne_commit_tensor(ch_, &this->t_));
        open_ = false;
    }

  private:
    psyne_channel *ch_;
    bool open_ = false;
};

// A received typed message's elements, valid while the message is held.
template <class T, int Rank> class tensor_view : public tensor_ref<T, Rank>
{
  public:
    explicit tensor_view(const psyne_tensor &t) { this->t_ = t; }
};

// A received message, released when it goes out of scope (or by release()).
// Empty (false) when the receive found nothing: code() says why.
class message
{
  public:
    message(psyne_channel *ch, std::int64_t timeout_ns) : ch_(ch)
    {
        code_ = psyne_receive(ch, &m_, timeout_ns);
        if (code_ != 0 && code_ != -EAGAIN && code_ != -ETIMEDOUT && code_ != -EPIPE)
            throw error(code_);
    }
    message(message &&o) noexcept : ch_(o.ch_), m_(o.m_), code_(std::exchange(o.code_, -EAGAIN)) {}
    message(const message &) = delete;
    message &operator=(const message &) = delete;
    ~message() { release(); }
    explicit operator bool() const noexcept { return code_ == 0; }
    int code() const noexcept { return code_; }
    void *data() const noexcept { return m_.data; }
    std::uint32_t size() const noexcept { return m_.length; }
    std::uint32_t type() const noexcept { return m_.type; }
    // The client it came from on a listening tcp:// handle with max_peers (else 0).
    std::uint32_t peer() const noexcept { return m_.peer; }
    // The message as a vector (rank 1) or matrix (rank 2) of T: throws
    // psyne::error with -ENOMSG (another kind) or -EPROTO (inconsistent).
    template <class T> tensor_view<T, 1> as_vector() const { return as<T, 1>(); }
    template <class T> tensor_view<T, 2> as_matrix() const { return as<T, 2>(); }
    void release() noexcept
    {
        if (code_ == 0)
            psyne_release(ch_, &m_);
        code_ = -EAGAIN;
    }

  private:
    template <class T, int Rank> tensor_view<T, Rank> as() const
    {
        psyne_tensor t;
        check(psyne_tensor_view(&m_, dtype_of<T>::value, Rank, &t));
        return tensor_view<T, Rank>(t);
    }
    psyne_channel *ch_;
    psyne_msg m_{};
    int code_;
};

// A channel handle, closed with the object.
class channel
{
  public:
    // Opens uri with opt (nullptr: join as it is, or create with defaults).
    explicit channel(const std::string &uri, const psyne_options *opt = nullptr)
    {
        check(psyne_channel_open(&ch_, uri.c_str(), opt));
    }
    // Opens uri with the defaults and a role and mode.
    channel(const std::string &uri, int mode, int role, std::uint64_t capacity = 0)
    {
        psyne_options o;
        psyne_options_init(&o);
        o.mode = mode;
        o.role = role;
        o.capacity = capacity;
        check(psyne_channel_open(&ch_, uri.c_str(), &o));
    }
    channel(channel &&o) noexcept : ch_(std::exchange(o.ch_, nullptr)) {}
    channel &operator=(channel &&o) noexcept
    {
        std::swap(ch_, o.ch_);
        return *this;
    }
    channel(const channel &) = delete;
    channel &operator=(const channel &) = delete;
    ~channel() { psyne_channel_close(ch_); }

    psyne_channel *get() const noexcept { return ch_; }
    void shutdown() { check(psyne_channel_shutdown(ch_)); }
    psyne_stats stats() const
    {
        psyne_stats s;
        check(psyne_channel_stats(ch_, &s));
        return s;
    }

    // A vector of up to `capacity` elements, claimed in the ring.
    template <class T> tensor_claim<T, 1> claim_vector(std::uint64_t capacity, std::int64_t timeout_ns = PSYNE_FOREVER)
    {
        return tensor_claim<T, 1>(ch_, capacity, timeout_ns);
    }
    // A rows x cols row-major matrix (leading dimension ld >= cols; 0: cols).
    template <class T>
    tensor_claim<T, 2> claim_matrix(std::uint64_t rows, std::uint64_t cols, std::uint64_t ld = 0,
                                    std::int64_t timeout_ns = PSYNE_FOREVER)
    {
        if (!ld)
            ld = cols;
        tensor_claim<T, 2> c(ch_, rows * ld, timeout_ns);
        c.reshape({rows, cols}, {ld, 1});
        return c;
    }
    // The next message (empty if none within timeout_ns, or shut down).
    message receive(std::int64_t timeout_ns = PSYNE_FOREVER) { return message(ch_, timeout_ns); }

  private:
    psyne_channel *ch_ = nullptr;
};

} // namespace psyne

#endif // PSYNE_HPP
