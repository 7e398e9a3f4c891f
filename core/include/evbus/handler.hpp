// evbus/handler.hpp — what a handler sees and what it may return.
//
// A handler is an overload set: one callable (a lambda, a function), evbus::overload(...) of
// several lambdas, or a struct with several operator(). For each event type E it handles,
// exactly one of
//
//     R (const E&)                              R (const E&, const evbus::metadata&)
//     R (const E&, evbus::handler_context&)
//
// must be callable, where R is void or evbus::handler_result. The checks in
// evbus/detail/handler_traits.hpp reject everything else at compile time.
//
// Thread-safety: handler_context is created by the bus for one call on one thread and must
// not outlive it. handler_result is a value type.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>

#include <evbus/metadata.hpp>

namespace evbus {

namespace detail {
struct context_access;
}

/// Per-call context: the event's metadata, the subscription, the attempt, and the time budget.
class handler_context {
public:
    using clock = std::chrono::steady_clock;

    /// A context without a deadline or stop token, as synchronous emit() uses.
    handler_context(const metadata& meta, std::string_view subscription) noexcept
        : handler_context(meta, subscription, clock::time_point::max(), no_stop()) {}

    /// `stop` is referenced, not copied (a copy costs two atomic reference-count updates per
    /// call): it must outlive the context, as the worker's token does.
    handler_context(const metadata& meta, std::string_view subscription, clock::time_point deadline,
                    const std::stop_token& stop) noexcept
        : meta_(&meta), subscription_(subscription), deadline_(deadline), stop_(&stop) {}

    [[nodiscard]] const metadata& meta() const noexcept { return *meta_; }
    [[nodiscard]] std::string_view subscription() const noexcept { return subscription_; }
    [[nodiscard]] std::uint32_t attempt() const noexcept { return meta_->attempt; }
    /// When the handler's time budget runs out; clock::time_point::max() when unbounded.
    [[nodiscard]] clock::time_point deadline() const noexcept { return deadline_; }
    /// Requested when the deadline passes or the engine stops; poll it in long handlers.
    [[nodiscard]] const std::stop_token& stop_token() const noexcept { return *stop_; }
    /// True once the budget is spent or a stop was requested: return as soon as possible.
    [[nodiscard]] bool should_stop() const noexcept {
        return stop_->stop_requested() || clock::now() >= deadline_;
    }

private:
    friend struct detail::context_access;

    const metadata* meta_;
    std::string_view subscription_;
    clock::time_point deadline_;
    const std::stop_token* stop_;
    bool committed_ = false;

    static const std::stop_token& no_stop() noexcept {
        static const std::stop_token none;  // never stop-possible; shared read-only
        return none;
    }
};

namespace detail {

/// What the library's own adapters tell the engine through a context.
struct context_access {
    /// The call's effects and its completion mark committed together (a transactional
    /// handler): they stand, so an overrun noticed after the call no longer makes it a
    /// failure to retry or dead-letter.
    static void mark_committed(handler_context& ctx) noexcept { ctx.committed_ = true; }
    [[nodiscard]] static bool committed(const handler_context& ctx) noexcept {
        return ctx.committed_;
    }
};

}  // namespace detail

/// Optional handler return type: success, a failure worth retrying, or a permanent failure.
class [[nodiscard]] handler_result {
public:
    enum class kind : std::uint8_t { ok, retry, fail };

    [[nodiscard]] static handler_result ok() noexcept { return handler_result(kind::ok, {}); }
    /// A transient failure: retried under the subscription's retry policy.
    [[nodiscard]] static handler_result retry(std::string reason) {
        return handler_result(kind::retry, std::move(reason));
    }
    /// A permanent failure: not retried, goes straight to the dead letters.
    [[nodiscard]] static handler_result fail(std::string reason) {
        return handler_result(kind::fail, std::move(reason));
    }

    [[nodiscard]] kind outcome() const noexcept { return kind_; }
    [[nodiscard]] bool succeeded() const noexcept { return kind_ == kind::ok; }
    [[nodiscard]] const std::string& reason() const noexcept { return reason_; }

private:
    handler_result(kind k, std::string reason) noexcept : kind_(k), reason_(std::move(reason)) {}
    kind kind_;
    std::string reason_;
};

/// Combines several callables into one overload set: `evbus::overload([](const a&) {}, ...)`.
template <class... Fs>
struct overload : Fs... {
    // A constructor rather than aggregate initialisation, so that the parentheses above also
    // compile where C++20's parenthesised aggregate initialisation is missing (clang < 16).
    constexpr overload(Fs... fs) : Fs(std::move(fs))... {}  // NOLINT(google-explicit-constructor)
    using Fs::operator()...;
};
template <class... Fs>
overload(Fs...) -> overload<Fs...>;

/// Opts a subscription into exhaustiveness: every event of the set must have an overload.
template <class H>
struct exhaustive {
    constexpr exhaustive(H h) : handlers(std::move(h)) {}  // NOLINT(google-explicit-constructor)
    H handlers;
};
template <class H>
exhaustive(H) -> exhaustive<H>;

/// Thrown by a handler (or any code it calls) for a failure that retrying cannot fix.
class permanent_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace evbus
