// counting_store — an event_store that forwards to another and counts the events committed
// through it, for the program's progress line and report.
//
// Module and handler transactions begin here, so every appended event is seen. The wrapper
// has its own commit signal (the dispatcher waits on the store it was given), and raises it
// after each forwarded commit that appended events.
//
// Thread-safety: as the wrapped store (every member thread-safe); the counter is atomic.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include <evbus/store.hpp>

namespace payments::app {

class counting_store final : public evbus::event_store {
public:
    explicit counting_store(evbus::event_store& inner) noexcept : inner_(inner) {}

    /// Events committed through this store since it was made. Thread-safe.
    [[nodiscard]] std::uint64_t appended() const noexcept {
        return appended_.load(std::memory_order_relaxed);  // a statistic; orders nothing
    }

    [[nodiscard]] std::unique_ptr<evbus::store_transaction> begin(evbus::begin_mode mode) override;
    using evbus::event_store::begin;

    [[nodiscard]] std::vector<evbus::stored_event> claim(std::size_t limit) override {
        return inner_.claim(limit);
    }
    void confirm(const evbus::dispatch_batch& batch) override { inner_.confirm(batch); }
    [[nodiscard]] std::vector<evbus::pending_delivery> unfinished(
        const std::optional<evbus::delivery_ref>& after, std::size_t limit) override {
        return inner_.unfinished(after, limit);
    }
    void complete(std::span<const evbus::delivery_ref> deliveries) override {
        inner_.complete(deliveries);
    }
    std::optional<std::int64_t> dead_letter(const evbus::delivery_ref& delivery,
                                            std::uint32_t attempts, const std::string& error,
                                            evbus::store_clock::time_point first_failure,
                                            evbus::store_clock::time_point last_failure) override {
        return inner_.dead_letter(delivery, attempts, error, first_failure, last_failure);
    }
    [[nodiscard]] std::vector<evbus::dead_letter_entry> dead_letters(
        const evbus::dead_letter_filter& filter) override {
        return inner_.dead_letters(filter);
    }
    std::optional<evbus::pending_delivery> requeue(std::int64_t dead_letter_id) override {
        return inner_.requeue(dead_letter_id);
    }
    bool discard(std::int64_t dead_letter_id) override { return inner_.discard(dead_letter_id); }
    [[nodiscard]] std::vector<evbus::stored_event> history(
        const evbus::history_query& query) override {
        return inner_.history(query);
    }
    std::size_t prune(evbus::store_clock::time_point cutoff) override {
        return inner_.prune(cutoff);
    }
    [[nodiscard]] std::chrono::seconds history_retention() const noexcept override {
        return inner_.history_retention();
    }

private:
    friend class counting_transaction;
    void committed(std::uint64_t events) noexcept;

    evbus::event_store& inner_;
    std::atomic<std::uint64_t> appended_{0};
};

}  // namespace payments::app
