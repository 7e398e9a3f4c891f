// evbus/memory_store.hpp — the event store kept in memory, for tests and for applications
// that do not need durability.
//
// Same interface and the same rules as sqlite_store (positions in commit order, completion
// per (event, subscription), dead letters, inbox, history), minus the SQL: a transaction's
// sql() throws store_error, so a module that only appends events runs unchanged on either
// store. Nothing survives the process.
//
// Isolation: a transaction's completion marks take effect when made (and are undone by
// rollback); its events become visible at commit, all at once. An inbox mark that another
// open transaction has made waits, as SQLite's writers wait for its lock, until that one
// commits (then the event counts as processed) or rolls back (then this one marks it). It
// throws store_error instead when that mark was made on the calling thread, which would wait
// for itself, or when that transaction waits, directly or through others, for a mark of this
// one (a deadlock).
//
// Thread-safety: every member is thread-safe (one mutex).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include <evbus/store.hpp>

namespace evbus {

class memory_store final : public event_store {
public:
    /// `history_retention` zero deletes completed events; otherwise they are kept that long
    /// (pruned by the outbox dispatcher, or by prune()).
    explicit memory_store(std::chrono::seconds history_retention = std::chrono::seconds{0});
    ~memory_store() override;

    // The base's default, repeated: an override hides the default argument of the function
    // it overrides when called on the derived type.
    [[nodiscard]] std::unique_ptr<store_transaction> begin(
        begin_mode mode = begin_mode::immediate) override;

    [[nodiscard]] std::vector<stored_event> claim(std::size_t limit) override;
    void confirm(const dispatch_batch& batch) override;
    [[nodiscard]] std::vector<pending_delivery> unfinished(const std::optional<delivery_ref>& after,
                                                           std::size_t limit) override;
    void complete(std::span<const delivery_ref> deliveries) override;
    std::optional<std::int64_t> dead_letter(const delivery_ref& delivery, std::uint32_t attempts,
                                            const std::string& error,
                                            store_clock::time_point first_failure,
                                            store_clock::time_point last_failure) override;

    [[nodiscard]] std::vector<dead_letter_entry> dead_letters(
        const dead_letter_filter& filter) override;
    std::optional<pending_delivery> requeue(std::int64_t dead_letter_id) override;
    bool discard(std::int64_t dead_letter_id) override;

    [[nodiscard]] std::vector<stored_event> history(const history_query& query) override;
    std::size_t prune(store_clock::time_point cutoff) override;
    [[nodiscard]] std::chrono::seconds history_retention() const noexcept override;

    struct state;  // private (core/src)

private:
    std::unique_ptr<state> state_;
};

}  // namespace evbus
