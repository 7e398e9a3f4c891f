// evbus/engine_types.hpp — the values the async engine (evbus/engine.hpp) reports.
//
// Errors: expected failures of posting come back as std::error_code values of the evbus
// engine category (engine_errc): `full` (try_post on a full ring), `closed` (after stop()),
// `no_such_dead_letter` (requeue/discard of an unknown id). post() turns `closed` into a
// std::system_error carrying the same code.
//
// Outcomes: for every (event, subscription) pair the engine ends in one delivery_status.
// post_tracked() / post_and_wait() return them per event (delivery_report); the engine's
// outcome observer sees each final one (succeeded, dead_lettered) as it happens.
//
// Thread-safety: value types, except delivery_outcome, a view valid during the observer
// call only. engine_category() is thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <evbus/event_id.hpp>
#include <evbus/latency_histogram.hpp>
#include <evbus/metadata.hpp>

namespace evbus {

enum class engine_errc {
    full = 1,             ///< the shard's ring is full; nothing was queued
    closed = 2,           ///< the engine was stopped; nothing was queued
    no_such_dead_letter,  ///< no dead letter with that id in the store
};

/// The "evbus.engine" error category. Thread-safe.
[[nodiscard]] const std::error_category& engine_category() noexcept;
[[nodiscard]] std::error_code make_error_code(engine_errc e) noexcept;

/// Where one (event, subscription) delivery ended.
enum class delivery_status : std::uint8_t {
    succeeded,      ///< the handler returned success (possibly after retries)
    dead_lettered,  ///< retries ran out or the error was permanent: see the dead-letter store
    parked,         ///< held behind a dead letter of the same key and subscription
    not_run,        ///< the engine stopped (its drain deadline passed) before it ran, or the
                    ///< event could not be parked (its copy threw; the error says so)
};

[[nodiscard]] std::string_view to_string(delivery_status s) noexcept;

struct subscription_outcome {
    std::string subscription;
    delivery_status status = delivery_status::not_run;
    std::uint32_t attempts = 0;  ///< handler calls made (0 when parked or not run)
    std::string error;           ///< the last error; empty on success
};

/// Each subscription's outcome for one event, in subscription order. Subscriptions that
/// were unsubscribed before their turn, or that the post excluded, have no entry.
struct delivery_report {
    event_id event;
    std::vector<subscription_outcome> outcomes;

    [[nodiscard]] bool all_succeeded() const noexcept {
        for (const auto& o : outcomes) {
            if (o.status != delivery_status::succeeded) return false;
        }
        return true;
    }
};

/// What the outcome observer sees: a view of one final outcome, valid during the call.
struct delivery_outcome {
    const metadata& meta;
    std::string_view subscription;
    delivery_status status;  ///< succeeded or dead_lettered
    std::uint32_t attempts;
    std::string_view error;        ///< the last error; empty on success
    std::uint64_t dead_letter_id;  ///< the store's id when dead-lettered, else 0
};

/// Called on a shard's worker after each subscription finished an event for good (succeeded
/// or dead-lettered): the hook a durable outbox uses to record completion per (event,
/// subscription). It runs on the hot path: keep it short. An exception it throws is caught
/// and reported to the error sink.
using outcome_observer = std::function<void(const delivery_outcome&)>;

/// What stop() left undone. Every id here is also recorded in the bus's error sink.
struct stop_report {
    bool drained = false;           ///< everything accepted ran before the deadline
    std::vector<event_id> not_run;  ///< accepted events (or retries) cut off by the deadline
    std::vector<event_id> parked;   ///< events still held behind a dead letter
    [[nodiscard]] bool complete() const noexcept { return not_run.empty() && parked.empty(); }
};

/// A shard whose current handler call has run longer than engine_options::stuck_after.
struct stuck_shard {
    std::size_t shard = 0;
    event_id event;
    std::string event_name;
    std::string subscription;
    std::chrono::nanoseconds running_for{0};
};

struct engine_health {
    bool accepting = false;          ///< false once stop() began
    std::vector<stuck_shard> stuck;  ///< empty when every shard makes progress
    [[nodiscard]] bool healthy() const noexcept { return accepting && stuck.empty(); }
};

/// Counters of one shard since the engine started. Each is monotonic but accepted, which is
/// the ring's claims less its non-events (drain markers, release notices, posts refused
/// after stop() began), each counted just after its claim: while one is being counted,
/// accepted may read one too high, and lower again in the next snapshot. Together they are
/// a racy snapshot (read one by one while the worker runs). Every accepted event ends up
/// counted once, in handled or in not_run, so after stop() accepted == handled + not_run. A
/// parked delivery counts as finished: an event released from a park and then cut off by
/// stop() is listed in stop_report::not_run but stays counted in handled.
struct shard_metrics {
    std::size_t shard = 0;
    std::uint64_t accepted = 0;       ///< events posted or requeued into this shard
    std::uint64_t handled = 0;        ///< events whose every subscription finished or parked
    std::uint64_t failed = 0;         ///< failed handler attempts
    std::uint64_t retried = 0;        ///< retries made
    std::uint64_t dead_lettered = 0;  ///< deliveries written to the dead-letter store
    std::uint64_t parked = 0;         ///< deliveries held behind a dead letter
    std::uint64_t not_run = 0;        ///< events cut off by stop()'s deadline
    std::size_t queue_depth = 0;      ///< approximate events waiting in the ring
    std::size_t waiting_posts = 0;    ///< post() calls waiting for ring space now
};

/// Counters of one subscription (by name) summed over all shards.
struct subscription_metrics {
    std::string name;
    std::uint64_t handled = 0;  ///< deliveries that succeeded
    std::uint64_t failed = 0;   ///< failed attempts
    std::uint64_t retried = 0;
    std::uint64_t dead_lettered = 0;
    std::uint64_t parked = 0;
    /// Duration of each handler call, failed ones included. A call is timed from the end of
    /// the shard's previous call (or the start of the worker's batch) to its own end, one
    /// clock read per call, so it includes the few dispatch steps in between (tens of ns).
    latency_summary latency;
};

struct engine_metrics {
    std::vector<shard_metrics> shards;                ///< by shard index
    std::vector<subscription_metrics> subscriptions;  ///< by name

    /// The entry for `name`, or nullptr. O(subscriptions).
    [[nodiscard]] const subscription_metrics* subscription(std::string_view name) const noexcept {
        for (const auto& s : subscriptions) {
            if (s.name == name) return &s;
        }
        return nullptr;
    }
};

}  // namespace evbus

template <>
struct std::is_error_code_enum<evbus::engine_errc> : std::true_type {};
