// evbus/store.hpp — the durable store behind the outbox: the interface every backend implements.
//
// A store keeps, in one database next to the application's own tables:
//   outbox       events appended by committed transactions, ordered by `position`;
//   deliveries   one row per (event, subscription) still to be handled (Spring Modulith's
//                publication registry: a completed delivery is a deleted row);
//   dead letters deliveries that failed for good, or rows that could not be decoded;
//   inbox        (event id, subscription) pairs an at-least-once handler has processed;
//   history      completed events kept for replay, pruned by retention.
//
// Invariants every backend keeps:
//   - position order is commit order: an event committed later never gets a lower position
//     than one the dispatcher has already claimed, so claiming "after the last position" never
//     skips a row (sqlite_store: positions are assigned at commit, under the database's single
//     write lock; a multi-process backend assigns them the same way or claims with leases);
//   - an event stays in the outbox while any of its deliveries is pending or dead-lettered;
//   - a rolled-back transaction leaves no event and no delivery.
//
// Module code only ever uses begin() (through evbus::unit_of_work); the other members are the
// dispatcher's and the operator's, so a PostgreSQL store with claims and leases replaces this
// one without module code changing.
//
// Thread-safety: every member of event_store is thread-safe. A store_transaction is used by
// one thread at a time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <evbus/event_id.hpp>
#include <evbus/sql.hpp>

namespace evbus {

using store_clock = std::chrono::system_clock;

/// One event as stored: its metadata and its JSON payload.
struct stored_event {
    std::int64_t position = 0;  ///< commit order; assigned when the transaction commits
    event_id id{};
    event_id correlation_id{};
    event_id causation_id{};
    event_id trace_id{};
    std::string name{};
    std::uint32_t version = 0;
    std::string key{};
    std::string source{};
    store_clock::time_point occurred_at{};
    std::string payload{};  ///< JSON text
};

/// Identifies one delivery: an event (by position) to one subscription (by name).
struct delivery_ref {
    std::int64_t position = 0;
    std::string subscription{};
    friend bool operator==(const delivery_ref&, const delivery_ref&) = default;
};

/// A delivery that has not completed: the event and the subscription still owing it.
struct pending_delivery {
    stored_event event;
    std::string subscription;
};

/// A stored row the dispatcher could not turn into an event (unknown name or version, corrupt
/// payload); it becomes a dead letter with no subscription.
struct rejected_event {
    std::int64_t position = 0;
    std::string reason;
};

/// What the dispatcher decided for the rows it claimed, confirmed atomically.
struct dispatch_batch {
    std::int64_t through = 0;  ///< the last position claimed
    std::vector<delivery_ref> deliveries;
    std::vector<rejected_event> rejected;
};

/// A delivery that failed for good, or a row that could not be decoded (empty subscription).
struct dead_letter_entry {
    std::int64_t id = 0;
    stored_event event;
    std::string subscription;
    std::uint32_t attempts = 0;
    std::string error;
    store_clock::time_point first_failure{};
    store_clock::time_point last_failure{};
};

/// Selects dead letters; empty fields match everything.
struct dead_letter_filter {
    std::optional<std::int64_t> id{};  ///< just this dead letter (a key lookup, not a scan)
    std::optional<std::string> subscription{};
    std::optional<std::string> key{};
    std::optional<std::string> event_name{};
    std::size_t limit = 1000;
};

/// Selects completed events kept as history: by key (empty: all) and occurrence time
/// [from, to), ordered by position, paged with after_position.
struct history_query {
    std::optional<std::string> key{};
    store_clock::time_point from = store_clock::time_point::min();
    store_clock::time_point to = store_clock::time_point::max();
    std::int64_t after_position = 0;
    std::size_t limit = 512;
};

/// How a transaction takes the write lock (SQLite): immediate at begin (the default: it then
/// waits for other writers up to the busy timeout instead of failing on upgrade), or deferred
/// to its first write. Stores with row locks treat both alike.
enum class begin_mode : std::uint8_t { immediate, deferred };

/// The backend half of a unit of work. Rolled back on destruction unless committed.
class store_transaction {
public:
    virtual ~store_transaction() = default;

    /// The transaction's SQL connection, for the module's own tables. Throws store_error when
    /// the store has no SQL (memory_store).
    virtual sql_connection& sql() = 0;
    /// Appends an event; it becomes visible (and gets its position) when the transaction
    /// commits. The payload must already be encoded.
    virtual void append(stored_event event) = 0;
    /// Marks a delivery completed as part of this transaction. False when it was not pending
    /// (already completed, or dead-lettered): the caller must not apply its effects again.
    virtual bool complete(const delivery_ref& delivery) = 0;
    /// Records that `subscription` processed `event` as part of this transaction. False when it
    /// was recorded before: the caller skips its effects (see evbus/inbox.hpp).
    virtual bool mark_processed(const event_id& event, std::string_view subscription) = 0;
    /// Commits: the module's writes, the appended events and the marks, or none of them.
    virtual void commit() = 0;
    /// Discards everything. Idempotent; never throws.
    virtual void rollback() noexcept = 0;
};

/// Wakes the dispatcher when a transaction with events commits in this process.
///
/// Memory ordering: generation_ is only read and written under mutex_, which orders it.
class commit_signal {
public:
    /// Bumps the generation and wakes waiters. Thread-safe; O(1).
    void notify() noexcept;
    /// The current generation. Thread-safe.
    [[nodiscard]] std::uint64_t generation() const noexcept;
    /// Waits until the generation differs from `seen` or `timeout` passes; returns the
    /// generation then. Thread-safe; blocks.
    std::uint64_t wait(std::uint64_t seen, std::chrono::nanoseconds timeout) const;

private:
    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;
    std::uint64_t generation_ = 0;
};

/// The durable store interface; see the banner for its invariants.
class event_store {
public:
    event_store() = default;
    event_store(const event_store&) = delete;
    event_store& operator=(const event_store&) = delete;
    virtual ~event_store() = default;

    // ---- units of work (modules, through evbus::unit_of_work) ----------------------------
    [[nodiscard]] virtual std::unique_ptr<store_transaction> begin(
        begin_mode mode = begin_mode::immediate) = 0;

    // ---- the dispatcher --------------------------------------------------------------------
    /// Committed events after the last confirmed position, in position order, at most `limit`.
    /// Claiming twice without confirm() returns the same rows. Thread-safe.
    [[nodiscard]] virtual std::vector<stored_event> claim(std::size_t limit) = 0;
    /// Records the deliveries owed for a claimed batch and the rejected rows, and moves the
    /// claim position to batch.through (never backwards), atomically. Thread-safe.
    virtual void confirm(const dispatch_batch& batch) = 0;
    /// Pending deliveries of confirmed events, by position then subscription, starting after
    /// `after` (paging: pass the last one seen). Thread-safe.
    [[nodiscard]] virtual std::vector<pending_delivery> unfinished(
        const std::optional<delivery_ref>& after, std::size_t limit) = 0;
    /// Marks deliveries completed (already-completed ones are ignored); events left with no
    /// pending delivery and no dead letter move to history or are deleted, per retention.
    virtual void complete(std::span<const delivery_ref> deliveries) = 0;
    /// Turns a pending delivery into a dead letter and returns the dead letter's id; nullopt,
    /// changing nothing, when the delivery is not pending. Thread-safe.
    virtual std::optional<std::int64_t> dead_letter(const delivery_ref& delivery,
                                                    std::uint32_t attempts,
                                                    const std::string& error,
                                                    store_clock::time_point first_failure,
                                                    store_clock::time_point last_failure) = 0;

    // ---- dead letters (operators) ----------------------------------------------------------
    [[nodiscard]] virtual std::vector<dead_letter_entry> dead_letters(
        const dead_letter_filter& filter) = 0;
    /// Turns a dead letter back into a pending delivery and returns it (to be posted again);
    /// nullopt when there is no such dead letter. A rejected row comes back with an empty
    /// subscription: the dispatcher decodes it again and confirms its deliveries. Thread-safe.
    virtual std::optional<pending_delivery> requeue(std::int64_t dead_letter_id) = 0;
    /// Deletes a dead letter; false when there is none. Thread-safe.
    virtual bool discard(std::int64_t dead_letter_id) = 0;

    // ---- history ---------------------------------------------------------------------------
    [[nodiscard]] virtual std::vector<stored_event> history(const history_query& query) = 0;
    /// Deletes history and inbox rows completed before `cutoff`; returns rows deleted.
    virtual std::size_t prune(store_clock::time_point cutoff) = 0;
    /// How long completed events stay as history before the dispatcher prunes them
    /// (dispatcher_options::retention may set its own); zero: none are kept, they are
    /// deleted on completion.
    [[nodiscard]] virtual std::chrono::seconds history_retention() const noexcept = 0;
    /// Whether completed events are kept as history: history_retention() > 0.
    [[nodiscard]] bool keeps_history() const noexcept { return history_retention().count() > 0; }

    /// Notified by every commit that appended events. Thread-safe.
    [[nodiscard]] const commit_signal& commits() const noexcept { return commits_; }
    /// Wakes whoever waits on commits(); backends call it after committing events (a spurious
    /// call only costs the dispatcher one empty claim). Thread-safe.
    void notify_commit() noexcept { commits_.notify(); }

private:
    commit_signal commits_;
};

}  // namespace evbus
