// evbus/subscription.hpp — subscription options and the RAII handle.
//
// A subscription is identified by its name, never by a handler's type or signature, so
// renaming a handler function changes nothing (durable completion records use the name).
//
// Unsubscribing (destroying or reset()ing the handle):
//   - no call of the handler starts after reset() returns;
//   - reset() waits for calls already running on other threads to return;
//   - when called from inside the subscription's own handler, the running call on this thread
//     finishes normally after reset() returns (reset() cannot wait for its own caller);
//   - a handler that resets *another* subscription waits for that one's running calls, like
//     any caller: two handlers on two threads that reset each other's subscriptions wait for
//     each other forever. Reset other subscriptions outside handlers (or from one thread).
//   - the handler object itself is destroyed once the last dispatch that picked it up has
//     moved on, possibly on the dispatching thread.
// Thread-safety: a handle is a value owned by one thread at a time; reset() may race with
// emits and posts on any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string_view>

namespace evbus {

namespace detail {
class registry;
struct subscription_state;
}  // namespace detail

/// What the sync path does when a handler fails.
enum class error_policy : std::uint8_t {
    isolate,    ///< record the failure in the error sink and go on with the next handler
    fail_fast,  ///< stop dispatching this event and rethrow to the caller of emit()
};

/// Decides whether a handler's exception is worth retrying. evbus::permanent_error and
/// handler_result::fail are never retried, whatever the classifier says. A classifier that
/// throws counts as "not retryable".
using retry_classifier = bool (*)(const std::exception_ptr& error);

/// Retry with exponential backoff: delay(n) = min(initial * multiplier^(n-1), max), then
/// spread by +-jitter (a fraction of the delay). Used by the async and durable paths.
struct retry_policy {
    std::uint32_t max_attempts = 1;  ///< 1 = no retry
    std::chrono::nanoseconds initial_delay = std::chrono::milliseconds(10);
    double multiplier = 2.0;
    std::chrono::nanoseconds max_delay = std::chrono::seconds(1);
    double jitter = 0.0;  ///< 0..1
    /// nullptr: every exception other than evbus::permanent_error is retried.
    retry_classifier retryable = nullptr;
};

struct subscribe_options {
    error_policy on_error = error_policy::isolate;
    retry_policy retry{};
    /// Cooperative time budget per call on the async path; zero (or nanoseconds::max()) means
    /// none.
    std::chrono::nanoseconds timeout{0};
    /// Async path: after a dead letter, hold later events of the same key until it is
    /// requeued or discarded.
    bool park_key_on_failure = false;
};

/// Throws std::invalid_argument naming the first field out of range (max_attempts >= 1,
/// delays >= 0, multiplier >= 1, jitter in [0, 1], timeout >= 0). bus::subscribe calls it.
void validate(const subscribe_options& options);

class subscription {
public:
    subscription() noexcept = default;
    subscription(std::shared_ptr<detail::registry> registry,
                 std::shared_ptr<detail::subscription_state> state) noexcept;
    subscription(subscription&&) noexcept = default;
    subscription& operator=(subscription&& other) noexcept;
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;
    ~subscription();

    /// Unsubscribes now (see the banner for exactly when the last call can still run).
    void reset() noexcept;
    [[nodiscard]] bool active() const noexcept { return state_ != nullptr; }
    explicit operator bool() const noexcept { return active(); }
    /// The subscription's name; empty after reset().
    [[nodiscard]] std::string_view name() const noexcept;

private:
    std::shared_ptr<detail::registry> registry_;
    std::shared_ptr<detail::subscription_state> state_;
};

}  // namespace evbus
