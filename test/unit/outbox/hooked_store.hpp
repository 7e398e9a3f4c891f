// A store that forwards to a real one and lets a test step in at some calls: to inject a
// store failure, or to hold a thread at a chosen point of a race.
#pragma once

#include <functional>
#include <memory>
#include <utility>

#include <evbus/forwarding_store.hpp>

namespace outbox_test {

class hooked_store final : public evbus::forwarding_store {
public:
    explicit hooked_store(std::unique_ptr<evbus::event_store> inner)
        : forwarding_store(std::move(inner)) {}

    // Set the hooks before use. A before_ hook is called before its call is forwarded and
    // may throw to fail it; after_commit, after a transaction begun here committed, must not
    // throw.
    std::function<void()> before_confirm;
    std::function<void(const evbus::dead_letter_filter&)> before_dead_letters;
    std::function<void()> after_commit;

    void confirm(const evbus::dispatch_batch& batch) override {
        if (before_confirm) before_confirm();
        forwarding_store::confirm(batch);
    }
    [[nodiscard]] std::vector<evbus::dead_letter_entry> dead_letters(
        const evbus::dead_letter_filter& filter) override {
        if (before_dead_letters) before_dead_letters(filter);
        return forwarding_store::dead_letters(filter);
    }

private:
    void committed(std::uint64_t appended) noexcept override {
        forwarding_store::committed(appended);
        if (after_commit) after_commit();
    }
};

}  // namespace outbox_test
