// evbus/detail/registry.hpp — the dispatch table: subscriptions per alternative index.
//
// The table is immutable once published; subscribe and unsubscribe build a new one and
// publish it (copy-on-write). Dispatching threads take a snapshot (one shared_ptr copy under
// a short lock, no allocation) and walk the row of the event's alternative index. Engine
// workers keep their snapshot and take the lock only when version() changed.
//
// Memory ordering: table_ is guarded by table_mutex_ (not std::atomic<std::shared_ptr>:
// libstdc++ 12 releases that type's internal lock with a relaxed store, which races under
// the C++ model and ThreadSanitizer reports it). version_ is bumped (release, after the new
// table is published) so a cached snapshot is reloaded when it changed (the acquire load in
// version() pairs with it; the reload itself then synchronises through table_mutex_).
//
// A subscription's calls are counted in in_flight so that unsubscribing can wait for calls
// running on other threads. enter() increments in_flight and then reads active; unsubscribe
// clears active and then reads in_flight. Both sides are seq_cst, so at least one of them sees
// the other (Dekker): either the call sees inactive and skips, or the unsubscriber sees the
// call and waits for it.
//
// Thread-safety: all members are thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <evbus/detail/handler_traits.hpp>
#include <evbus/subscription.hpp>

namespace evbus::detail {

struct subscription_state {
    subscription_state(std::string n, subscribe_options o, void* h, void (*d)(void*) noexcept,
                       std::vector<invoker_fn> inv) noexcept
        : name(std::move(n)), options(o), handler(h), destroy(d), invokers(std::move(inv)) {}
    subscription_state(const subscription_state&) = delete;
    subscription_state& operator=(const subscription_state&) = delete;
    ~subscription_state() { destroy(handler); }

    const std::string name;
    const subscribe_options options;
    void* const handler;
    void (*const destroy)(void*) noexcept;
    const std::vector<invoker_fn> invokers;  ///< per alternative; nullptr where not handled
    std::atomic<bool> active{true};
    std::atomic<std::uint32_t> in_flight{0};
};

struct dispatch_entry {
    invoker_fn invoke;
    subscription_state* sub;
};

struct dispatch_table {
    std::vector<std::vector<dispatch_entry>> rows;  ///< indexed by alternative
    std::vector<std::shared_ptr<subscription_state>> owners;
};

class registry {
public:
    explicit registry(std::size_t alternatives);

    /// Publishes a subscription. Throws std::invalid_argument when the name is taken.
    std::shared_ptr<subscription_state> add(std::unique_ptr<subscription_state> sub);
    /// Unpublishes and waits for calls running on other threads. Idempotent. Thread-safe.
    void remove(subscription_state& sub) noexcept;

    /// The current table. Thread-safe; one uncontended lock and a reference-count increment.
    [[nodiscard]] std::shared_ptr<const dispatch_table> snapshot() const noexcept {
        const std::lock_guard lock(table_mutex_);
        return table_;
    }
    /// Changes whenever the table does. Thread-safe.
    [[nodiscard]] std::uint64_t version() const noexcept {
        return version_.load(std::memory_order_acquire);  // pairs with the release in publish()
    }
    [[nodiscard]] std::size_t alternatives() const noexcept { return alternatives_; }

private:
    void publish(std::shared_ptr<const dispatch_table> table);

    const std::size_t alternatives_;
    std::mutex mutex_;                // serialises writers (add/remove)
    mutable std::mutex table_mutex_;  // guards table_ only; held for a pointer copy
    std::shared_ptr<const dispatch_table> table_;
    std::atomic<std::uint64_t> version_{0};
};

/// Marks a call of `sub` as running. False when the subscription is gone: skip it.
[[nodiscard]] bool enter(subscription_state& sub) noexcept;
void leave(subscription_state& sub) noexcept;

/// RAII form of enter()/leave().
class call_guard {
public:
    explicit call_guard(subscription_state& sub) noexcept : sub_(sub), entered_(enter(sub)) {}
    call_guard(const call_guard&) = delete;
    call_guard& operator=(const call_guard&) = delete;
    ~call_guard() {
        if (entered_) leave(sub_);
    }
    [[nodiscard]] bool entered() const noexcept { return entered_; }

private:
    subscription_state& sub_;
    bool entered_;
};

/// A snapshot that an engine's worker keeps and reloads only when the registry changed.
class cached_table {
public:
    explicit cached_table(const registry& reg) : reg_(reg) {}
    const dispatch_table& refresh() {
        const auto v = reg_.version();
        if (!table_ || v != version_) {
            table_ = reg_.snapshot();
            version_ = v;
        }
        return *table_;
    }

private:
    const registry& reg_;
    std::shared_ptr<const dispatch_table> table_;
    std::uint64_t version_ = 0;
};

}  // namespace evbus::detail
