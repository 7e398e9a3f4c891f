// evbus/forwarding_store.hpp — a base for decorating an event_store.
//
// A decorator (metrics, tracing, access checks, fault injection in tests) forwards every call
// to another store and overrides the ones it decorates. Deriving from forwarding_store rather
// than from event_store gets right what is easy to miss: the dispatcher waits on the commit
// signal of the store it was given, the decorator, so a transaction begun through the
// decorator must raise the decorator's signal when it commits events (the inner store raises
// only its own). Without that the dispatcher sees new events only at its next poll.
// begin() wraps the inner transaction to do so, and reports each commit to committed(),
// which a decorator may override to observe commits.
//
// Thread-safety: as the inner store; forwarding adds no shared state.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <evbus/store.hpp>

namespace evbus {

class forwarding_store : public event_store {
public:
    /// Forwards to `inner`, which must outlive this store.
    explicit forwarding_store(event_store& inner) noexcept : inner_(&inner) {}
    /// Forwards to `inner` and owns it. Throws std::invalid_argument when it is null.
    explicit forwarding_store(std::unique_ptr<event_store> inner);

    [[nodiscard]] event_store& inner() const noexcept { return *inner_; }

    /// The inner store's transaction, forwarded; after it commits, committed() is called
    /// with the number of events it appended.
    [[nodiscard]] std::unique_ptr<store_transaction> begin(
        begin_mode mode = begin_mode::immediate) override;

    [[nodiscard]] std::vector<stored_event> claim(std::size_t limit) override {
        return inner_->claim(limit);
    }
    void confirm(const dispatch_batch& batch) override { inner_->confirm(batch); }
    [[nodiscard]] std::vector<pending_delivery> unfinished(const std::optional<delivery_ref>& after,
                                                           std::size_t limit) override {
        return inner_->unfinished(after, limit);
    }
    void complete(std::span<const delivery_ref> deliveries) override {
        inner_->complete(deliveries);
    }
    std::optional<std::int64_t> dead_letter(const delivery_ref& delivery, std::uint32_t attempts,
                                            const std::string& error,
                                            store_clock::time_point first_failure,
                                            store_clock::time_point last_failure) override {
        return inner_->dead_letter(delivery, attempts, error, first_failure, last_failure);
    }
    [[nodiscard]] std::vector<dead_letter_entry> dead_letters(
        const dead_letter_filter& filter) override {
        return inner_->dead_letters(filter);
    }
    std::optional<pending_delivery> requeue(std::int64_t dead_letter_id) override {
        return inner_->requeue(dead_letter_id);
    }
    bool discard(std::int64_t dead_letter_id) override { return inner_->discard(dead_letter_id); }
    [[nodiscard]] std::vector<stored_event> history(const history_query& query) override {
        return inner_->history(query);
    }
    std::size_t prune(store_clock::time_point cutoff) override { return inner_->prune(cutoff); }
    [[nodiscard]] std::chrono::seconds history_retention() const noexcept override {
        return inner_->history_retention();
    }

protected:
    /// Called on the committing thread right after a transaction begun here committed, with
    /// the number of events it appended (zero for one that only wrote the module's tables or
    /// marks). The default raises this store's commit signal when `appended` is not zero; an
    /// override must call it (or notify_commit()) for the dispatcher to wake.
    virtual void committed(std::uint64_t appended) noexcept;

private:
    class transaction;

    std::unique_ptr<event_store> owned_;  // null when the inner store is borrowed
    event_store* inner_;
};

}  // namespace evbus
