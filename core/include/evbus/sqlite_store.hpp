// evbus/sqlite_store.hpp — the embedded durable store: one SQLite file, WAL mode.
//
// The file holds the application's tables and evbus's (evbus_outbox, evbus_delivery,
// evbus_dead_letter, evbus_inbox, evbus_history, evbus_cursor, evbus_schema). Opening it
// applies evbus's schema migrations in order; a file whose evbus schema is newer than this
// library refuses to open with an error naming both versions.
//
// Durability (sqlite_options::sync):
//   full   (default) every commit is on stable storage before commit() returns: an event
//          whose transaction committed survives a process crash and a power loss;
//   normal a commit survives a crash of the process, but the last transactions before a
//          power loss or OS crash may roll back (the WAL is synced at checkpoints only). The
//          database stays consistent either way: a lost transaction loses its domain rows
//          and its events together, never one without the other.
//
// Concurrency: several connections of one process (and other processes) share the file, and
// SQLite admits one writer at a time. This store's writers (immediate transactions and its own
// write calls) queue inside the process, each going in as soon as the one before it ends; a
// writer that waits longer than busy_timeout, there or in SQLite's busy handler for another
// process's lock, fails with store_error naming the file. A deferred transaction does not
// queue; its first write meets SQLite's lock. Connections are pooled; a transaction holds one
// until it ends.
//
// Thread-safety: every member is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <evbus/store.hpp>

namespace evbus {

enum class sync_mode : std::uint8_t { full, normal };

struct sqlite_options {
    sync_mode sync = sync_mode::full;
    /// Longest wait for the write lock (behind this store's other writers, or another
    /// process's) before a store_error; >= 0. milliseconds::max() waits without a limit
    /// behind this store's writers; SQLite waits for another process's lock at most 2^31 - 1
    /// ms (24.8 days).
    std::chrono::milliseconds busy_timeout{5000};
    /// How long completed events stay in evbus_history before the outbox dispatcher prunes
    /// them (unless dispatcher_options::retention sets its own); zero deletes them on
    /// completion; >= 0.
    std::chrono::seconds history_retention{0};
};

/// The evbus schema version this library writes and understands.
inline constexpr int sqlite_schema_version = 1;

class sqlite_store final : public event_store {
public:
    /// Opens (creating if needed) the database at `path` and migrates it. Throws store_error
    /// naming the path and the cause: a missing directory, a read-only file, a newer or
    /// damaged schema version, a file that is not a database; std::invalid_argument for an
    /// empty path, one with a NUL byte, or a negative option.
    explicit sqlite_store(std::string path, sqlite_options options = {});
    ~sqlite_store() override;

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

    [[nodiscard]] const std::string& path() const noexcept;
    [[nodiscard]] const sqlite_options& options() const noexcept;

    struct impl;  // private (core/src); public only so the source's helpers can name it

private:
    std::unique_ptr<impl> impl_;
};

}  // namespace evbus
