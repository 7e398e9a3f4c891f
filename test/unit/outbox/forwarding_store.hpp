// An event_store that forwards to a real one and lets a test step in before some calls: to
// inject a store failure, or to hold a thread at a chosen point of a race.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <evbus/store.hpp>

namespace outbox_test {

class forwarding_store final : public evbus::event_store {
public:
    explicit forwarding_store(std::unique_ptr<evbus::event_store> inner)
        : inner_(std::move(inner)) {}

    /// Called before confirm() is forwarded; may throw to fail it. Set before use.
    std::function<void()> before_confirm;
    /// Called before dead_letters() is forwarded, with its filter. Set before use.
    std::function<void(const evbus::dead_letter_filter&)> before_dead_letters;
    /// Called after a transaction's commit() was forwarded and succeeded. Set before use.
    std::function<void()> after_commit;

    [[nodiscard]] evbus::event_store& inner() noexcept { return *inner_; }

    [[nodiscard]] std::unique_ptr<evbus::store_transaction> begin(evbus::begin_mode mode) override {
        return std::make_unique<transaction>(inner_->begin(mode), *this);
    }
    [[nodiscard]] std::vector<evbus::stored_event> claim(std::size_t limit) override {
        return inner_->claim(limit);
    }
    void confirm(const evbus::dispatch_batch& batch) override {
        if (before_confirm) before_confirm();
        inner_->confirm(batch);
    }
    [[nodiscard]] std::vector<evbus::pending_delivery> unfinished(
        const std::optional<evbus::delivery_ref>& after, std::size_t limit) override {
        return inner_->unfinished(after, limit);
    }
    void complete(std::span<const evbus::delivery_ref> deliveries) override {
        inner_->complete(deliveries);
    }
    std::optional<std::int64_t> dead_letter(const evbus::delivery_ref& delivery,
                                            std::uint32_t attempts, const std::string& error,
                                            evbus::store_clock::time_point first_failure,
                                            evbus::store_clock::time_point last_failure) override {
        return inner_->dead_letter(delivery, attempts, error, first_failure, last_failure);
    }
    [[nodiscard]] std::vector<evbus::dead_letter_entry> dead_letters(
        const evbus::dead_letter_filter& filter) override {
        if (before_dead_letters) before_dead_letters(filter);
        return inner_->dead_letters(filter);
    }
    std::optional<evbus::pending_delivery> requeue(std::int64_t dead_letter_id) override {
        return inner_->requeue(dead_letter_id);
    }
    bool discard(std::int64_t dead_letter_id) override { return inner_->discard(dead_letter_id); }
    [[nodiscard]] std::vector<evbus::stored_event> history(
        const evbus::history_query& query) override {
        return inner_->history(query);
    }
    std::size_t prune(evbus::store_clock::time_point cutoff) override {
        return inner_->prune(cutoff);
    }
    [[nodiscard]] std::chrono::seconds history_retention() const noexcept override {
        return inner_->history_retention();
    }

private:
    // The inner store's transaction; its commit wakes this store's dispatcher, which waits
    // on this store's commit signal.
    class transaction final : public evbus::store_transaction {
    public:
        transaction(std::unique_ptr<evbus::store_transaction> inner, forwarding_store& owner)
            : inner_(std::move(inner)), owner_(owner) {}
        evbus::sql_connection& sql() override { return inner_->sql(); }
        void append(evbus::stored_event event) override {
            inner_->append(std::move(event));
            appended_ = true;
        }
        bool complete(const evbus::delivery_ref& delivery) override {
            return inner_->complete(delivery);
        }
        bool mark_processed(const evbus::event_id& event, std::string_view subscription) override {
            return inner_->mark_processed(event, subscription);
        }
        void commit() override {
            inner_->commit();
            if (appended_) owner_.notify_commit();
            if (owner_.after_commit) owner_.after_commit();
        }
        void rollback() noexcept override { inner_->rollback(); }

    private:
        std::unique_ptr<evbus::store_transaction> inner_;
        forwarding_store& owner_;
        bool appended_ = false;
    };

    std::unique_ptr<evbus::event_store> inner_;
};

}  // namespace outbox_test
