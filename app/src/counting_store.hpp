// counting_store — an event_store that forwards to another and counts the events committed
// through it, for the program's progress line and report.
//
// Module and handler transactions begin here, so every appended event is seen.
//
// Thread-safety: as the wrapped store (every member thread-safe); the counter is atomic.
#pragma once

#include <atomic>
#include <cstdint>

#include <evbus/forwarding_store.hpp>

namespace payments::app {

class counting_store final : public evbus::forwarding_store {
public:
    using forwarding_store::forwarding_store;

    /// Events committed through this store since it was made. Thread-safe.
    [[nodiscard]] std::uint64_t appended() const noexcept {
        return appended_.load(std::memory_order_relaxed);  // a statistic; orders nothing
    }

private:
    void committed(std::uint64_t events) noexcept override {
        appended_.fetch_add(events, std::memory_order_relaxed);  // a statistic; orders nothing
        forwarding_store::committed(events);  // wakes the dispatcher, which waits on this store
    }

    std::atomic<std::uint64_t> appended_{0};
};

}  // namespace payments::app
