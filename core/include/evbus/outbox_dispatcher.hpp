// evbus/outbox_dispatcher.hpp — delivers committed outbox events to a bus's subscriptions and
// records completion per (event, subscription).
//
//     evbus::sqlite_store store("app.db");
//     evbus::bus<events> bus;
//     evbus::outbox_dispatcher<events> dispatcher(bus, store);
//     auto mail = bus.subscribe("notification.mail", send_mail);          // at least once
//     auto ledger = dispatcher.subscribe_transactional("analytics.ledger",  // exactly once
//         [](const money_transferred& e, evbus::unit_of_work<events>& tx) { ...tx.sql()... });
//     dispatcher.start();   // resubmits unfinished deliveries, then follows the outbox
//
// The loop, on one dispatcher thread:
//   1. claim committed rows after the last confirmed position, in position (= commit) order;
//   2. decode each (payload_codec<Set>); a row that does not decode becomes a dead letter whose
//      reason names the row, the event id and the cause, and the other rows go on;
//   3. confirm: record one pending delivery per subscription that handles the event's type,
//      and move the claim position, in one store transaction;
//   4. post the events, in position order, to an evbus::engine<Set> the dispatcher owns: its
//      shards run the handlers, so per-key order holds while other keys run in parallel, and
//      the engine's retries, backoff, timeouts and parking apply (a failing subscription
//      holds back only its own key, and only on its shard);
//   5. the engine's outcome observer records each (event, subscription) that succeeded; the
//      loop writes those completions in one store transaction per round; an event whose
//      deliveries are all complete moves to history or is deleted, per the store's retention.
// A commit in this process wakes the loop (no busy polling); poll_interval bounds the wait for
// commits made by other processes or connections the store does not see.
//
// Dead letters: the engine's dead_letter_store is an adapter over the store's dead-letter
// table, so a delivery whose retries ran out is recorded durably (it survives a restart), and
// requeue() and discard() go through the engine: a requeued letter is delivered on the shard
// that owns its key, behind the key's earlier events, and a key parked behind it is released.
//
// Crash guarantees: after confirm, a delivery stays pending until its subscription completes
// it, so a restart (start() with resubmit_unfinished) resubmits exactly the unfinished
// (event, subscription) pairs, each event to just those subscriptions. A transactional
// subscription commits its writes and its completion mark in one transaction (on the shard's
// worker): its effects happen exactly once. Other subscriptions are at least once and dedupe
// with evbus::inbox.
//
// Subscribe before start(): a pending delivery whose subscription is not subscribed stays
// pending until it is.
//
// Thread-safety: every public member is thread-safe unless its contract says otherwise;
// handlers run on the engine's shard workers (replay(): on the caller's thread).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <evbus/bus.hpp>
#include <evbus/codec.hpp>
#include <evbus/dead_letter_store.hpp>
#include <evbus/detail/deadline.hpp>
#include <evbus/detail/dispatch_context.hpp>
#include <evbus/detail/registry.hpp>
#include <evbus/detail/thread_name.hpp>
#include <evbus/engine.hpp>
#include <evbus/error_sink.hpp>
#include <evbus/event_history.hpp>
#include <evbus/handler.hpp>
#include <evbus/store.hpp>
#include <evbus/unit_of_work.hpp>

namespace evbus {

/// Points in the dispatch loop an observer may watch (tests kill the process at them).
enum class dispatch_stage : std::uint8_t {
    confirmed,  ///< deliveries of a batch recorded, none of its events posted yet
    delivered,  ///< handlers succeeded for some deliveries, their completions not recorded yet
    completed,  ///< those completions recorded
};

/// Checked by outbox_dispatcher's constructor (std::invalid_argument naming the field and its
/// value).
struct dispatcher_options {
    /// Rows claimed per store transaction; at least 1.
    std::size_t batch_size = 256;
    /// Longest sleep between looks at the outbox when no commit of this process wakes it,
    /// and the pause before retrying after a store failure; positive (a zero or negative
    /// interval would poll the store without pause). An interval too long for nanoseconds
    /// (milliseconds::max()) waits as long as nanoseconds::max(), about 292 years.
    std::chrono::milliseconds poll_interval{200};
    /// At start(), deliver again what was confirmed but not completed before (a crash).
    bool resubmit_unfinished = true;
    /// How often history and inbox rows older than `retention` are pruned; zero retention
    /// takes the store's event_store::history_retention(), and when both are zero nothing is
    /// pruned (a store that keeps no history then keeps its inbox rows for good). Neither may
    /// be negative; prune_every zero prunes on every round of the dispatch loop.
    std::chrono::seconds retention{0};
    std::chrono::seconds prune_every{60};
    /// The engine's shards (worker threads running the handlers); 0: one per hardware thread;
    /// at most engine_options::max_shards.
    std::size_t shards = 0;
    /// Slots per shard ring, a power of two from 2 to engine_options::max_ring_capacity;
    /// posting waits while a shard's ring is full.
    std::size_t ring_capacity = 1024;
    /// Called at each stage (on the dispatcher thread, or on drain()'s caller when it records
    /// the last completions); must not throw.
    std::function<void(dispatch_stage)> observer{};
};

/// Counters since construction. Racy snapshot.
struct dispatcher_stats {
    std::uint64_t claimed = 0;        ///< outbox rows claimed
    std::uint64_t rejected = 0;       ///< rows that did not decode (dead letters)
    std::uint64_t delivered = 0;      ///< deliveries that succeeded
    std::uint64_t failed = 0;         ///< failed attempts
    std::uint64_t dead_lettered = 0;  ///< deliveries that failed for good, letters stored
    std::uint64_t resubmitted = 0;    ///< pending deliveries resubmitted at start or requeued
};

/// Thrown by outbox_dispatcher::requeue(id), which keeps the letter, while another event with
/// the letter's event id is being delivered (event ids must be unique; see
/// docs/outbox.md). Requeue the letter again once that event is done.
class event_id_in_flight : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

/// What outbox_dispatcher::requeue(filter) did with the letters the filter selected.
struct requeue_report {
    /// A letter left in the store, and why (event_id_in_flight's message).
    struct refusal {
        std::int64_t dead_letter_id = 0;
        std::string reason;
    };
    std::size_t requeued = 0;      ///< letters made pending again
    std::vector<refusal> refused;  ///< letters kept because their event id is in flight
};

namespace detail {

/// The store position of each event the dispatcher posted to its engine and whose
/// deliveries have not all finished, by event id: the outcome observer, the dead-letter
/// adapter and transactional handlers (on the shard workers) find a delivery's row by it.
/// Thread-safe (one mutex); O(log n) per call.
class outbox_positions {
public:
    /// Notes that `deliveries` more deliveries of event `id` (at `position`) are under way.
    /// When another event (at another position) with the same id is under way, notes nothing
    /// and returns that event's position: the outcomes, which name the event by its id, could
    /// not be told apart.
    [[nodiscard]] std::optional<std::int64_t> add(const event_id& id, std::int64_t position,
                                                  std::size_t deliveries) {
        const std::lock_guard lock(mutex_);
        const auto [it, inserted] = entries_.try_emplace(id);
        if (!inserted && it->second.position != position) return it->second.position;
        it->second.position = position;
        it->second.open += deliveries;
        return std::nullopt;
    }
    /// The position of event `id` while a delivery of it is under way.
    [[nodiscard]] std::optional<std::int64_t> find(const event_id& id) const {
        const std::lock_guard lock(mutex_);
        const auto it = entries_.find(id);
        if (it == entries_.end()) return std::nullopt;
        return it->second.position;
    }
    /// One delivery of event `id` finished: returns its position, forgetting the event after
    /// its last delivery.
    std::optional<std::int64_t> finish(const event_id& id) {
        const std::lock_guard lock(mutex_);
        const auto it = entries_.find(id);
        if (it == entries_.end()) return std::nullopt;
        const std::int64_t position = it->second.position;
        if (--it->second.open == 0) entries_.erase(it);
        return position;
    }
    /// Forgets everything (the engine that ran the deliveries is gone).
    void clear() {
        const std::lock_guard lock(mutex_);
        entries_.clear();
    }

private:
    struct entry {
        std::int64_t position = 0;
        std::size_t open = 0;
    };
    mutable std::mutex mutex_;
    std::map<event_id, entry> entries_;
};

/// Every dead letter of `store` (operators page with filters; the adapter's list() needs them
/// all).
inline std::vector<dead_letter_entry> all_dead_letters(event_store& store) {
    dead_letter_filter filter;
    filter.limit = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
    return store.dead_letters(filter);
}

/// The dead letter with `id`, whatever its subscription; nullopt when there is none.
inline std::optional<dead_letter_entry> dead_letter_by_id(event_store& store, std::int64_t id) {
    dead_letter_filter filter;
    filter.id = id;
    auto found = store.dead_letters(filter);
    if (found.empty()) return std::nullopt;
    return std::move(found.front());
}

/// Says that the event at `position` shares its id with the event at `other`.
inline std::string duplicate_id(const event_id& id, std::int64_t position, std::int64_t other) {
    return "event at outbox position " + std::to_string(position) + " has the id " +
           id.to_string() + ", which the event at position " + std::to_string(other) +
           " has too and is still being delivered (event ids must be unique)";
}

/// Set while outbox_dispatcher::discard() has the engine take a letter: the adapter's take()
/// then deletes the letter instead of making its delivery pending again.
inline thread_local bool t_discarding_dead_letter = false;

/// The engine's dead_letter_store over the event store's dead-letter table: add() turns the
/// pending delivery into a durable dead letter, take() makes it pending again (requeue) or
/// deletes it (discard), list() reads them back typed after a restart. Rows that did not
/// decode (no subscription) are not typed letters and stay with the dispatcher. A letter
/// parks its key when its subscription (as subscribed now) parks keys on failure.
/// Thread-safe (the store is). add/find/take touch one letter (a key lookup in the store);
/// list and size read them all.
template <class Set>
class outbox_dead_letters final : public dead_letter_store<Set> {
public:
    using letter = dead_letter<Set>;

    outbox_dead_letters(event_store& store, outbox_positions& positions,
                        std::shared_ptr<registry> table)
        : store_(store), positions_(positions), table_(std::move(table)) {}

    std::uint64_t add(letter l) override {
        const auto position = positions_.find(l.meta.id);
        if (!position) {
            throw std::logic_error("evbus: dead letter for event " + l.meta.id.to_string() +
                                   " that the outbox dispatcher did not post");
        }
        const auto id = store_.dead_letter({*position, l.subscription}, l.attempts, l.last_error,
                                           l.first_failure, l.last_failure);
        if (!id) {
            throw std::logic_error("evbus: delivery of event " + l.meta.id.to_string() + " to '" +
                                   l.subscription + "' was not pending; no dead letter recorded");
        }
        return static_cast<std::uint64_t>(*id);
    }
    [[nodiscard]] std::optional<letter> find(std::uint64_t id) const override {
        const auto e = entry(id);
        if (!e) return std::nullopt;
        return to_letter(*e);
    }
    [[nodiscard]] std::vector<letter> list() const override {
        std::vector<letter> out;
        for (const auto& e : all_dead_letters(store_)) {
            if (auto l = to_letter(e)) out.push_back(std::move(*l));
        }
        return out;
    }
    [[nodiscard]] std::optional<letter> take(std::uint64_t id) override {
        const auto e = entry(id);
        if (!e) return std::nullopt;
        auto l = to_letter(*e);
        if (!l) return std::nullopt;  // does not decode (any more): it stays a dead letter
        const auto sid = static_cast<std::int64_t>(id);
        if (t_discarding_dead_letter) return store_.discard(sid) ? std::move(l) : std::nullopt;
        if (const auto other = positions_.add(l->meta.id, e->event.position, 1)) {
            throw event_id_in_flight("evbus: dead letter " + std::to_string(id) +
                                     " cannot be requeued now: its " +
                                     duplicate_id(l->meta.id, e->event.position, *other) +
                                     "; requeue it when that one is done");
        }
        if (!store_.requeue(sid)) {
            (void)positions_.finish(l->meta.id);
            return std::nullopt;  // taken meanwhile
        }
        return l;
    }
    [[nodiscard]] std::size_t size() const override { return list().size(); }
    /// Nothing to give back: take() made the delivery pending again in the outbox, where it
    /// stays, and the dispatcher resubmits it at its next start().
    void put_back(letter) override {}

private:
    std::optional<dead_letter_entry> entry(std::uint64_t id) const {
        auto e = dead_letter_by_id(store_, static_cast<std::int64_t>(id));
        if (e && e->subscription.empty()) return std::nullopt;
        return e;
    }

    std::optional<letter> to_letter(const dead_letter_entry& e) const {
        if (e.subscription.empty()) return std::nullopt;
        auto decoded = decode_row<Set>(e.event);
        if (decoded.index() == 1) return std::nullopt;
        auto& [event, meta] = std::get<0>(decoded);
        letter l{static_cast<std::uint64_t>(e.id),
                 std::move(event),
                 meta,
                 e.subscription,
                 e.attempts,
                 e.error,
                 e.first_failure,
                 e.last_failure,
                 false};
        l.meta.attempt = e.attempts;
        const auto snapshot = table_->snapshot();
        for (const auto& owner : snapshot->owners) {
            if (owner->name == e.subscription) {
                l.parks_key = owner->options.park_key_on_failure && !l.meta.key.empty();
            }
        }
        return l;
    }

    event_store& store_;
    outbox_positions& positions_;
    std::shared_ptr<registry> table_;
};

/// Runs `body(tx)` in a transaction on `store` that also completes the delivery of the
/// event in `ctx` to `ctx`'s subscription when the dispatcher has it under way; skips the
/// body when that delivery was already completed (a redelivery).
template <class Set, class Body>
handler_result run_transactional(event_store& store, const outbox_positions& positions,
                                 handler_context& ctx, Body&& body) {
    unit_of_work<Set> tx(store, lent_to_handler_t{});
    if (const auto position = positions.find(ctx.meta().id)) {
        if (!tx.tx().complete(delivery_ref{*position, std::string(ctx.subscription())})) {
            return handler_result::ok();  // completed before (a redelivery): effects stand
        }
    }
    using R = decltype(body(tx));
    handler_result result = handler_result::ok();
    if constexpr (std::is_void_v<R>) {
        body(tx);
    } else {
        result = body(tx);
        if (!result.succeeded()) return result;  // rolled back with the unit of work
    }
    // Past its budget the engine counts the call as failed and retries or dead-letters it:
    // its writes must not stand beside that.
    if (handler_context::clock::now() >= ctx.deadline()) {
        return handler_result::retry(
            "evbus: the transaction was rolled back: the handler's time budget ran out before it "
            "could commit");
    }
    tx.tx().commit();  // the unit of work's own commit() refuses: it is lent
    // Committed: the effects stand, so a commit that itself ran past the deadline is reported
    // as an overrun but not failed (retrying would find the delivery completed, and a dead
    // letter would find nothing pending).
    context_access::mark_committed(ctx);
    return result;
}

/// The names of the transactional subscriptions that exist now: their handlers record
/// their completions with their own writes, so the dispatcher records none for them. A name
/// counts once per transactional_mark alive. Thread-safe (one mutex).
class transactional_names {
public:
    [[nodiscard]] bool contains(std::string_view name) const {
        const std::lock_guard lock(mutex_);
        return names_.find(name) != names_.end();
    }

private:
    friend class transactional_mark;
    mutable std::mutex mutex_;
    std::multiset<std::string, std::less<>> names_;
};

/// Makes a name count as transactional for as long as it lives: a transactional adapter and
/// its copies share one, so the name stops counting when the subscription's handler object
/// is destroyed (after a reset, or when subscribing failed).
class transactional_mark {
public:
    transactional_mark(std::shared_ptr<transactional_names> names, std::string name)
        : names_(std::move(names)), name_(std::move(name)) {
        const std::lock_guard lock(names_->mutex_);
        names_->names_.insert(name_);
    }
    transactional_mark(const transactional_mark&) = delete;
    transactional_mark& operator=(const transactional_mark&) = delete;
    ~transactional_mark() {
        const std::lock_guard lock(names_->mutex_);
        names_->names_.erase(names_->names_.find(name_));
    }

private:
    std::shared_ptr<transactional_names> names_;
    std::string name_;
};

template <class Set, class H>
struct transactional_adapter {
    H handlers;
    event_store* store;
    const outbox_positions* positions;
    std::shared_ptr<const transactional_mark> mark;

    template <class E>
    requires(Set::template contains<E>&& std::is_invocable_v<H&, const E&, unit_of_work<Set>&>)
        handler_result
        operator()(const E& event, handler_context& ctx) {
        return run_transactional<Set>(*store, *positions, ctx, [&](unit_of_work<Set>& tx) {
            return std::invoke(handlers, event, tx);
        });
    }
};

}  // namespace detail

template <class Set>
class outbox_dispatcher {
public:
    using codec = payload_codec<Set>;
    using variant_type = typename Set::variant_type;

    /// Throws std::invalid_argument naming a bad option and its value.
    outbox_dispatcher(bus<Set>& bus, event_store& store, dispatcher_options options = {})
        : bus_(bus), store_(store), options_(checked(std::move(options))) {}
    outbox_dispatcher(const outbox_dispatcher&) = delete;
    outbox_dispatcher& operator=(const outbox_dispatcher&) = delete;
    ~outbox_dispatcher() { stop(); }

    /// Subscribes a handler that runs inside a store transaction: overloads take
    /// (const E&, evbus::unit_of_work<Set>&) and may return handler_result. Its writes and its
    /// completion mark commit together, so its effects happen exactly once. A call that is
    /// past its timeout when it returns rolls back instead of committing: the overrun is a
    /// failure, retried or dead-lettered like any other. A commit that itself ends past the
    /// deadline leaves a handled delivery and a timeout report. Thread-safe.
    template <class H>
    [[nodiscard]] subscription subscribe_transactional(std::string name, H&& handlers,
                                                       subscribe_options options = {}) {
        using adapter = detail::transactional_adapter<Set, std::remove_cvref_t<H>>;
        // Marked before it can run; the mark goes with the handler object: when subscribing
        // fails (the name is taken) or once the subscription is reset and its handler gone,
        // a plain subscription of that name has its completions recorded again.
        auto mark = std::make_shared<const detail::transactional_mark>(transactional_, name);
        return bus_.subscribe(
            std::move(name),
            adapter{std::forward<H>(handlers), &store_, &positions_, std::move(mark)}, options);
    }

    /// Starts the engine's shards and the dispatcher thread, which first resubmits unfinished
    /// deliveries (if configured). Throws std::invalid_argument for bad engine options. Not
    /// thread-safe against stop() or drain(); call once (again after stop()).
    void start() {
        if (thread_.joinable()) throw std::logic_error("evbus: the dispatcher is running");
        engine_options<Set> eo;
        eo.shards = options_.shards;
        eo.ring_capacity = options_.ring_capacity;
        eo.dead_letters =
            std::make_shared<detail::outbox_dead_letters<Set>>(store_, positions_, bus_.table());
        eo.on_outcome = [this](const delivery_outcome& o) { observe(o); };
        auto e = std::make_shared<engine<Set>>(bus_, std::move(eo));
        {
            const std::lock_guard lock(mutex_);
            engine_ = std::move(e);
            stopping_.store(false, std::memory_order_relaxed);  // before the thread exists
        }
        thread_ = std::thread([this] { run(); });
    }

    /// Stops the engine without waiting for what it has not started (a running handler
    /// finishes; a retry backoff ends), then the dispatcher thread; completions already
    /// observed are recorded, and every other delivery stays pending in the store. Idempotent.
    /// Thread-safe, except against start() and drain().
    void stop() noexcept {
        {
            const std::lock_guard lock(mutex_);
            stopping_.store(true, std::memory_order_relaxed);  // under mutex_: orders it
        }
        changed_.notify_all();
        store_.notify_commit();  // wake the loop if it waits for commits
        // The engine stops before the loop is joined: the loop may be waiting in post() for
        // ring space behind a handler's retry backoff, which only the engine's stop() ends
        // (the post then gets `closed`, and its deliveries stay pending).
        if (engine_) (void)engine_->stop(engine<Set>::clock::now());
        if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
        if (engine_) {
            try {
                flush_completions();
            } catch (const std::exception& e) {
                report("evbus.dispatcher", {}, e.what());  // they stay pending: redelivered
            }
            // Dropped outside the lock. A requeue() or discard() may still hold the engine,
            // past its post guard (it is closed, so the call leaves the letter pending or
            // discards it in the store); the last holder destroys it.
            std::shared_ptr<engine<Set>> last;
            {
                const std::lock_guard lock(mutex_);
                last = std::move(engine_);
                requests_.clear();  // pending in the store: the next start() resubmits them
            }
        }
        positions_.clear();
    }

    /// Waits until every event committed in this process before the call has been dispatched
    /// and handled (completed, dead-lettered, parked, or left pending for a missing
    /// subscription) and its completions are recorded. `timeout` bounds the wait for the
    /// dispatcher to post them; the engine's drain then waits for their handlers. False on
    /// timeout or when the dispatcher is not running. Blocks; must not be called from a
    /// handler. Thread-safe, except against start() and stop().
    bool drain(std::chrono::nanoseconds timeout) {
        if (!engine_) return false;
        const std::uint64_t target = store_.commits().generation();
        {
            std::unique_lock lock(mutex_);
            const auto deadline = detail::deadline_in(timeout);
            const bool idle = changed_.wait_until(lock, deadline, [&] {
                return stopping_.load(std::memory_order_relaxed) ||
                       (idle_generation_ >= target && requests_.empty() && idle_rounds_ > 0);
            });
            if (!idle || stopping_.load(std::memory_order_relaxed)) return false;
        }
        engine_->drain();
        flush_completions();
        return true;
    }

    /// Counters so far. Thread-safe; racy snapshot.
    [[nodiscard]] dispatcher_stats stats() const {
        const std::lock_guard lock(mutex_);
        return stats_;
    }

    /// The delivering engine's per-shard and per-subscription metrics (evbus/engine.hpp);
    /// empty when the dispatcher is not running. Thread-safe, except against start() and
    /// stop(); racy snapshot.
    [[nodiscard]] engine_metrics metrics() const {
        return engine_ ? engine_->metrics() : engine_metrics{};
    }

    // ---- dead letters ----------------------------------------------------------------------
    [[nodiscard]] std::vector<dead_letter_entry> dead_letters(const dead_letter_filter& f = {}) {
        return store_.dead_letters(f);
    }
    /// Makes a dead letter pending again and delivers it through the shard of its key, after
    /// the events of that key already queued there (a parked key is released once it
    /// succeeds). Before start(), or while stopping, it stays pending for the next start(). A
    /// row that did not decode is decoded again on the dispatcher thread. False when there is
    /// no such dead letter. Throws event_id_in_flight, keeping the letter, while another event
    /// with the same id is being delivered. Must not be called from a handler. Thread-safe.
    bool requeue(std::int64_t dead_letter_id) {
        const auto entry = detail::dead_letter_by_id(store_, dead_letter_id);
        if (!entry) return false;
        const std::shared_ptr<engine<Set>> e = running_engine();
        bool done = false;
        // A row that does not decode (now), whatever its subscription: the dispatcher thread
        // decodes it again and dead-letters it anew, with the cause, if it still fails.
        const auto decode_again = [&] {
            auto pending = store_.requeue(dead_letter_id);
            if (!pending) return false;  // taken meanwhile
            {
                const std::lock_guard lock(mutex_);
                // Stopped or stopping: the next start() resubmits it with the rest of what is
                // pending.
                if (engine_ == nullptr || stopping_.load(std::memory_order_relaxed)) return true;
                requests_.push_back(std::move(*pending));
            }
            store_.notify_commit();
            return true;
        };
        if (entry->subscription.empty()) {
            done = decode_again();
        } else if (e) {
            const std::error_code ec = e->requeue(static_cast<std::uint64_t>(dead_letter_id));
            if (ec == engine_errc::closed) {
                done = store_.requeue(dead_letter_id).has_value();
            } else if (ec == engine_errc::no_such_dead_letter) {
                done = decode_again();  // listed, but the engine could not decode it
            } else {
                done = !ec;
            }
        } else {
            done = store_.requeue(dead_letter_id).has_value();
        }
        if (done) {
            const std::lock_guard lock(mutex_);
            ++stats_.resubmitted;
        }
        return done;
    }
    /// Requeues every dead letter `filter` selects, oldest first. A letter whose requeue is
    /// refused (event_id_in_flight) stays in the store and is reported; the letters after it
    /// are still requeued. Letters taken meanwhile by another call are in neither count.
    requeue_report requeue(const dead_letter_filter& filter) {
        requeue_report report;
        for (const auto& d : store_.dead_letters(filter)) {
            try {
                report.requeued += requeue(d.id) ? 1 : 0;
            } catch (const event_id_in_flight& e) {
                report.refused.push_back({d.id, e.what()});
            }
        }
        return report;
    }
    /// Deletes a dead letter (through the engine, so a key parked behind it moves on). False
    /// when there is none. Must not be called from a handler. Thread-safe.
    bool discard(std::int64_t dead_letter_id) {
        const auto entry = detail::dead_letter_by_id(store_, dead_letter_id);
        if (!entry) return false;
        const std::shared_ptr<engine<Set>> e = running_engine();
        if (entry->subscription.empty() || !e) return store_.discard(dead_letter_id);
        const bool saved = detail::t_discarding_dead_letter;
        detail::t_discarding_dead_letter = true;
        std::error_code ec;
        try {
            ec = e->discard(static_cast<std::uint64_t>(dead_letter_id));
        } catch (...) {
            detail::t_discarding_dead_letter = saved;
            throw;
        }
        detail::t_discarding_dead_letter = saved;
        // Closed, or a letter the engine could not decode (it parks no key there): the store
        // deletes it directly.
        if (ec == engine_errc::closed || ec == engine_errc::no_such_dead_letter) {
            return store_.discard(dead_letter_id);
        }
        return !ec;
    }
    /// Discards every dead letter `filter` selects, oldest first; returns how many (letters
    /// taken meanwhile by another call are not counted).
    std::size_t discard(const dead_letter_filter& filter) {
        std::size_t n = 0;
        for (const auto& d : store_.dead_letters(filter)) n += discard(d.id) ? 1 : 0;
        return n;
    }

    // ---- history ---------------------------------------------------------------------------
    /// Completed events kept by the store, decoded, as an input range (see event_history).
    [[nodiscard]] event_history<Set> history(history_query query = {}) {
        return event_history<Set>(store_, std::move(query));
    }

    /// Calls subscription `name`'s handler for every history event `query` selects, in order,
    /// on this thread; records no delivery or completion (rebuilds a projection). A
    /// transactional handler's unit of work commits as in delivery, events it appends
    /// included: replay those that append only if announcing again is what you want.
    /// Returns the calls made. Throws
    /// std::invalid_argument when no subscription has that name; a handler's failure
    /// propagates. Thread-safe with respect to the dispatcher.
    std::size_t replay(std::string_view name, history_query query = {}) {
        const auto table = bus_.table()->snapshot();
        detail::subscription_state* sub = nullptr;
        for (const auto& owner : table->owners) {
            if (owner->name == name) sub = owner.get();
        }
        if (sub == nullptr) {
            throw std::invalid_argument("evbus: replay: no subscription named '" +
                                        std::string(name) + "'");
        }
        std::size_t calls = 0;
        for (const auto& entry : history(std::move(query))) {
            if (!entry.event) continue;
            const auto invoke = sub->invokers[entry.event->index()];
            if (invoke == nullptr) continue;
            const detail::call_guard guard(*sub);
            if (!guard.entered()) break;
            const detail::frame_guard frame(entry.meta, sub);
            handler_context ctx(entry.meta, sub->name);
            const handler_result result = std::visit(
                [&](const auto& e) { return invoke(sub->handler, &e, ctx); }, *entry.event);
            if (!result.succeeded()) {
                throw handler_error("evbus: replay of '" + sub->name + "' failed on event " +
                                    entry.meta.id.to_string() + ": " + result.reason());
            }
            ++calls;
        }
        return calls;
    }

private:
    struct decoded_event {
        std::int64_t position = 0;
        variant_type event;
        metadata meta;
        std::vector<std::string> subscriptions;
    };

    // The engine while running; kept alive by the caller even if stop() runs meanwhile.
    std::shared_ptr<engine<Set>> running_engine() const {
        const std::lock_guard lock(mutex_);
        return engine_;
    }

    void stage(dispatch_stage s) {
        if (options_.observer) options_.observer(s);
    }

    void report(const std::string& subscription, const metadata& meta, std::string error) {
        bus_.errors().on_failure(failure_record{std::string(meta.event_name), meta.id,
                                                meta.key.str(), subscription, std::move(error),
                                                meta.attempt, store_clock::now()});
    }

    // The engine's outcome observer, on a shard worker: note the completion (written by the
    // loop in one transaction per round) and count.
    void observe(const delivery_outcome& o) {
        const auto position = positions_.finish(o.meta.id);
        bool wake = false;
        {
            const std::lock_guard lock(mutex_);
            if (o.status == delivery_status::succeeded) {
                ++stats_.delivered;
                stats_.failed += o.attempts > 0 ? o.attempts - 1 : 0;
                // A transactional subscription completed its delivery in its own transaction.
                if (position && !transactional_->contains(o.subscription)) {
                    wake = completions_.empty();
                    completions_.push_back({*position, std::string(o.subscription)});
                }
            } else if (o.status == delivery_status::dead_lettered) {
                stats_.failed += o.attempts;
                // Only a letter the store took; a failed add() was reported as lost.
                if (o.dead_letter_id != 0) ++stats_.dead_lettered;
            }
        }
        if (wake) store_.notify_commit();
    }

    // Records the completions observed so far in one store transaction.
    void flush_completions() {
        const std::lock_guard flushing(flush_mutex_);
        std::vector<delivery_ref> done;
        {
            const std::lock_guard lock(mutex_);
            done.swap(completions_);
        }
        if (done.empty()) return;
        stage(dispatch_stage::delivered);
        try {
            store_.complete(done);
        } catch (...) {
            const std::lock_guard lock(mutex_);  // retried next round
            completions_.insert(completions_.end(), done.begin(), done.end());
            throw;
        }
        stage(dispatch_stage::completed);
    }

    static dispatcher_options checked(dispatcher_options o) {
        if (o.batch_size == 0) {
            throw std::invalid_argument(
                "evbus: dispatcher_options.batch_size is 0; it must be >= 1");
        }
        if (o.poll_interval.count() <= 0) {
            throw std::invalid_argument("evbus: dispatcher_options.poll_interval is " +
                                        std::to_string(o.poll_interval.count()) +
                                        " ms; it must be positive");
        }
        const auto not_negative = [](std::chrono::seconds d, const char* name) {
            if (d.count() < 0) {
                throw std::invalid_argument("evbus: dispatcher_options." + std::string(name) +
                                            " is " + std::to_string(d.count()) +
                                            " s; it must not be negative");
            }
        };
        not_negative(o.retention, "retention");
        not_negative(o.prune_every, "prune_every");
        detail::check_shard_sizes<Set>(o.shards, o.ring_capacity, "dispatcher_options");
        return o;
    }

    void run() {
        detail::name_this_thread("evbus-outbox");
        // Deliveries left unfinished before start() go first, a page per round, before
        // anything new is claimed (so each key keeps its order); after a store failure the
        // same page is tried again, and drain() does not see the dispatcher idle before then.
        bool resubmitting = options_.resubmit_unfinished;
        std::optional<delivery_ref> resubmitted_through;
        std::set<std::int64_t> redecoded;  // rows decoded again while resubmitting
        auto next_prune = std::chrono::steady_clock::now();
        while (!stopping_.load(std::memory_order_relaxed)) {
            const std::uint64_t generation = store_.commits().generation();
            bool worked = false;
            try {
                if (resubmitting) {
                    resubmitting = resubmit_page(resubmitted_through, redecoded);
                    if (resubmitting) continue;
                }
                worked = serve_requests();
                worked = dispatch_claimed() || worked;
                flush_completions();
                if (retention().count() > 0 && std::chrono::steady_clock::now() >= next_prune) {
                    prune();
                    next_prune = detail::deadline_in(detail::saturating_ns(options_.prune_every));
                }
            } catch (const std::exception& e) {
                // A store failure (busy past its timeout, disk full): nothing was confirmed or
                // completed that was not also recorded, so the next round retries it.
                report("evbus.dispatcher", {},
                       resubmitting ? std::string("resubmitting failed: ") + e.what() : e.what());
                wait_stopping(detail::saturating_ns(options_.poll_interval));
                continue;
            }
            if (worked) continue;
            {
                const std::lock_guard lock(mutex_);
                idle_generation_ = generation;
                ++idle_rounds_;
            }
            changed_.notify_all();
            store_.commits().wait(generation, detail::saturating_ns(options_.poll_interval));
        }
        changed_.notify_all();
    }

    // How long history and inbox rows are kept: the options' retention, else the store's;
    // zero: nothing is pruned.
    std::chrono::seconds retention() const noexcept {
        return options_.retention.count() > 0 ? options_.retention : store_.history_retention();
    }

    // Prunes what is older than the retention; a retention reaching back before the clock's
    // epoch (seconds::max(), say) keeps everything instead of overflowing the subtraction.
    void prune() {
        const auto keep =
            std::chrono::duration_cast<store_clock::duration>(detail::saturating_ns(retention()));
        const auto now = store_clock::now();
        if (keep < now.time_since_epoch()) store_.prune(now - keep);
    }

    void wait_stopping(std::chrono::nanoseconds d) {
        std::unique_lock lock(mutex_);
        changed_.wait_until(lock, detail::deadline_in(d),
                            [&] { return stopping_.load(std::memory_order_relaxed); });
    }

    // Turns a stored row into an event and its metadata, or a reason naming the row.
    std::variant<decoded_event, std::string> decode(const stored_event& row) {
        auto result = detail::decode_row<Set>(row);
        if (result.index() == 1) return std::move(std::get<1>(result));
        decoded_event d;
        d.position = row.position;
        d.event = std::move(std::get<0>(result).first);
        d.meta = std::get<0>(result).second;
        return d;
    }

    // Posts `e` to the engine: to every subscription of its type (`all`), or to the listed
    // ones. Blocks while the shard's ring is full.
    void post(decoded_event& e, bool all) {
        const std::size_t deliveries = e.subscriptions.size();
        if (const auto other = positions_.add(e.meta.id, e.position, deliveries)) {
            refuse_duplicate(e, *other);
            return;
        }
        try {
            std::visit(
                [&](auto&& payload) {
                    if (all) {
                        engine_->post(std::move(payload), e.meta);
                    } else {
                        engine_->post_to(std::move(e.subscriptions), std::move(payload), e.meta);
                    }
                },
                std::move(e.event));
        } catch (const std::system_error&) {
            // The engine was closed (stop() began): the deliveries stay pending.
            for (std::size_t i = 0; i < deliveries; ++i) (void)positions_.finish(e.meta.id);
        }
    }

    // Dead-letters each delivery of `e`, whose id the event at `other`, still under way, has
    // too: delivered now, its outcomes would be taken for the other's. Requeued once that one
    // is done, it is delivered as usual. A store failure leaves the deliveries pending.
    void refuse_duplicate(const decoded_event& e, std::int64_t other) {
        const std::string why = "evbus: the " + detail::duplicate_id(e.meta.id, e.position, other);
        const auto now = store_clock::now();
        for (const std::string& sub : e.subscriptions) {
            report(sub, e.meta, why);
            try {
                if (store_.dead_letter({e.position, sub}, 0, why, now, now)) {
                    const std::lock_guard lock(mutex_);
                    ++stats_.dead_lettered;
                }
            } catch (const std::exception& x) {
                report(sub, e.meta, std::string("evbus: could not dead-letter it: ") + x.what());
            }
        }
    }

    bool dispatch_claimed() {
        auto rows = store_.claim(options_.batch_size);
        if (rows.empty()) return false;
        const auto table = bus_.table()->snapshot();
        evbus::dispatch_batch batch;
        batch.through = rows.back().position;
        std::vector<decoded_event> ready;
        ready.reserve(rows.size());
        for (const stored_event& row : rows) {
            auto d = decode(row);
            if (d.index() == 1) {
                report("", {}, std::get<1>(d));
                batch.rejected.push_back({row.position, std::move(std::get<1>(d))});
                continue;
            }
            auto& event = std::get<0>(d);
            for (const auto& entry : table->rows[event.event.index()]) {
                event.subscriptions.push_back(entry.sub->name);
                batch.deliveries.push_back({event.position, entry.sub->name});
            }
            if (!event.subscriptions.empty()) ready.push_back(std::move(event));
        }
        store_.confirm(batch);
        {
            const std::lock_guard lock(mutex_);
            stats_.claimed += rows.size();
            stats_.rejected += batch.rejected.size();
        }
        stage(dispatch_stage::confirmed);
        for (decoded_event& e : ready) {
            if (stopping_.load(std::memory_order_relaxed)) break;  // the rest stays pending
            post(e, true);
        }
        return true;
    }

    // Posts pending deliveries (resubmission, requests), in position order, each event
    // decoded once and posted to just the subscriptions that still owe it. A row that had
    // failed to decode is decoded again in its place, the events before it posted first, and
    // its position added to `redecoded` once done: deliveries listed there are skipped, being
    // the ones that decoding again just owed and posted (this page or a later one may list
    // them too).
    void deliver_pending(std::vector<pending_delivery> pending, std::set<std::int64_t>& redecoded) {
        {
            const std::lock_guard lock(mutex_);
            stats_.resubmitted += pending.size();
        }
        std::vector<decoded_event> events;
        const auto post_events = [&] {
            for (auto& e : events) {
                if (stopping_.load(std::memory_order_relaxed)) return false;  // rest pending
                post(e, false);
            }
            events.clear();
            return true;
        };
        for (auto& p : pending) {
            if (redecoded.count(p.event.position) != 0) continue;
            if (p.subscription.empty()) {
                if (!post_events()) return;
                redecode_rejected(p.event);
                redecoded.insert(p.event.position);  // only once done: a failure retries it
                continue;
            }
            if (!events.empty() && events.back().position == p.event.position) {
                events.back().subscriptions.push_back(std::move(p.subscription));
                continue;
            }
            auto d = decode(p.event);
            if (d.index() == 1) {
                store_.dead_letter({p.event.position, p.subscription}, 0, std::get<1>(d),
                                   store_clock::now(), store_clock::now());
                continue;
            }
            std::get<0>(d).subscriptions.push_back(std::move(p.subscription));
            events.push_back(std::move(std::get<0>(d)));
        }
        (void)post_events();
    }

    // A requeued row that had failed to decode: decode it again and owe its deliveries.
    void redecode_rejected(const stored_event& row) {
        auto d = decode(row);
        const delivery_ref marker{row.position, std::string{}};
        if (d.index() == 1) {
            report("", {}, std::get<1>(d));
            store_.dead_letter(marker, 0, std::get<1>(d), store_clock::now(), store_clock::now());
            return;
        }
        auto& event = std::get<0>(d);
        evbus::dispatch_batch batch;
        const auto table = bus_.table()->snapshot();
        for (const auto& entry : table->rows[event.event.index()]) {
            event.subscriptions.push_back(entry.sub->name);
            batch.deliveries.push_back({row.position, entry.sub->name});
        }
        store_.confirm(batch);  // through = 0: the claim position does not move
        store_.complete({&marker, 1});
        if (!event.subscriptions.empty()) post(event, false);
    }

    // Hands on the next page of deliveries left unfinished after `after`; false when there
    // are none. `after` moves past a page only once it was handed on, so a page a store
    // failure interrupted comes again (its deliveries posted before the failure then run
    // twice: at-least-once, and transactional handlers skip what they completed).
    bool resubmit_page(std::optional<delivery_ref>& after, std::set<std::int64_t>& redecoded) {
        auto page = store_.unfinished(after, options_.batch_size);
        if (page.empty()) return false;
        delivery_ref last{page.back().event.position, page.back().subscription};
        deliver_pending(std::move(page), redecoded);
        after = std::move(last);
        return true;
    }

    bool serve_requests() {
        std::vector<pending_delivery> work;
        {
            const std::lock_guard lock(mutex_);
            while (!requests_.empty()) {
                work.push_back(std::move(requests_.front()));
                requests_.pop_front();
            }
        }
        if (work.empty()) return false;
        std::stable_sort(work.begin(), work.end(), [](const auto& a, const auto& b) {
            return a.event.position < b.event.position;
        });
        std::set<std::int64_t> redecoded;
        try {
            deliver_pending(work, redecoded);
        } catch (...) {
            // A store failure: what was not decoded again goes back to the front, for the
            // next round. (Requests are rows to decode again, and letters the engine could not
            // decode, dead-lettered again if they still fail: repeating one of those writes
            // nothing twice.)
            const std::lock_guard lock(mutex_);
            for (auto it = work.rbegin(); it != work.rend(); ++it) {
                if (redecoded.count(it->event.position) == 0) requests_.push_front(std::move(*it));
            }
            throw;
        }
        return true;
    }

    bus<Set>& bus_;
    event_store& store_;
    const dispatcher_options options_;
    detail::outbox_positions positions_;
    // Set by start() and dropped by stop(), both under mutex_; requeue() and discard() copy
    // it under mutex_ (they may race stop()); the loop, drain() and metrics() read it
    // without, as start() and stop() are not called concurrently with them.
    std::shared_ptr<engine<Set>> engine_;
    std::thread thread_;
    // Memory ordering: stopping_ is written under mutex_ (so condition waits see it) and read
    // relaxed by the loop between batches; a late read only delays the stop by one batch, and
    // the join in stop() orders everything the thread did before it.
    std::atomic<bool> stopping_{false};
    mutable std::mutex mutex_;
    std::mutex flush_mutex_;  // one completion write at a time (loop, drain(), stop())
    std::condition_variable changed_;
    std::deque<pending_delivery> requests_;
    std::vector<delivery_ref> completions_;  // observed, not yet recorded; under mutex_
    const std::shared_ptr<detail::transactional_names> transactional_ =
        std::make_shared<detail::transactional_names>();
    std::uint64_t idle_generation_ = 0;
    std::uint64_t idle_rounds_ = 0;
    dispatcher_stats stats_;
};

}  // namespace evbus
