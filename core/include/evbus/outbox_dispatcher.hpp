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
//   4. deliver to exactly those subscriptions, in position order (so per-key order holds),
//      retrying under each subscription's retry_policy; the last failure becomes a dead letter;
//   5. record the completions of the batch in one store transaction; an event whose
//      deliveries are all complete moves to history or is deleted, per the store's retention.
// A commit in this process wakes the loop (no busy polling); poll_interval bounds the wait for
// commits made by other processes or connections the store does not see.
//
// Crash guarantees: after confirm, a delivery stays pending until its subscription completes
// it, so a restart (start() with resubmit_unfinished) resubmits exactly the unfinished
// (event, subscription) pairs. A transactional subscription commits its writes and its
// completion mark in one transaction: its effects happen exactly once. Other subscriptions are
// at least once and dedupe with evbus::inbox.
//
// Subscribe before start(): a pending delivery whose subscription is not subscribed stays
// pending until it is.
//
// Thread-safety: every public member is thread-safe unless its contract says otherwise;
// handlers run on the dispatcher thread (replay(): on the caller's).
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
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <evbus/bus.hpp>
#include <evbus/codec.hpp>
#include <evbus/detail/dispatch_context.hpp>
#include <evbus/detail/registry.hpp>
#include <evbus/error_sink.hpp>
#include <evbus/event_history.hpp>
#include <evbus/handler.hpp>
#include <evbus/store.hpp>
#include <evbus/unit_of_work.hpp>

namespace evbus {

/// Points in the dispatch loop an observer may watch (tests kill the process at them).
enum class dispatch_stage : std::uint8_t {
    confirmed,  ///< deliveries of a batch recorded, no handler has run yet
    delivered,  ///< handlers of a batch ran, their completions are not recorded yet
    completed,  ///< completions of a batch recorded
};

struct dispatcher_options {
    /// Rows claimed, and completions recorded, per store transaction.
    std::size_t batch_size = 256;
    /// Longest sleep between looks at the outbox when no commit of this process wakes it.
    std::chrono::milliseconds poll_interval{200};
    /// At start(), deliver again what was confirmed but not completed before (a crash).
    bool resubmit_unfinished = true;
    /// How often history and inbox rows older than `retention` are pruned (stores that keep
    /// history); zero retention never prunes.
    std::chrono::seconds retention{0};
    std::chrono::seconds prune_every{60};
    /// Called on the dispatcher thread at each stage; must not throw.
    std::function<void(dispatch_stage)> observer;
};

/// Counters since construction. Racy snapshot.
struct dispatcher_stats {
    std::uint64_t claimed = 0;        ///< outbox rows claimed
    std::uint64_t rejected = 0;       ///< rows that did not decode (dead letters)
    std::uint64_t delivered = 0;      ///< successful handler calls
    std::uint64_t failed = 0;         ///< failed attempts
    std::uint64_t dead_lettered = 0;  ///< deliveries that failed for good
    std::uint64_t resubmitted = 0;    ///< pending deliveries resubmitted at start or requeued
};

namespace detail {

/// The durable delivery running on this thread, for transactional handlers.
struct durable_delivery {
    const event_id* id = nullptr;
    std::int64_t position = 0;
};
inline thread_local durable_delivery t_durable_delivery{};

class durable_delivery_scope {
public:
    durable_delivery_scope(const event_id& id, std::int64_t position) noexcept
        : saved_(t_durable_delivery) {
        t_durable_delivery = {&id, position};
    }
    durable_delivery_scope(const durable_delivery_scope&) = delete;
    durable_delivery_scope& operator=(const durable_delivery_scope&) = delete;
    ~durable_delivery_scope() { t_durable_delivery = saved_; }

private:
    durable_delivery saved_;
};

/// Runs `body(tx)` in a transaction on `store` that also completes the current durable
/// delivery of `ctx`'s subscription; skips the body when that delivery was already completed.
template <class Set, class Body>
handler_result run_transactional(event_store& store, const handler_context& ctx, Body&& body) {
    unit_of_work<Set> tx(store);
    const durable_delivery& d = t_durable_delivery;
    if (d.id != nullptr && *d.id == ctx.meta().id) {
        if (!tx.tx().complete(delivery_ref{d.position, std::string(ctx.subscription())})) {
            return handler_result::ok();  // completed before (a redelivery): effects stand
        }
    }
    using R = decltype(body(tx));
    if constexpr (std::is_void_v<R>) {
        body(tx);
        tx.commit();
        return handler_result::ok();
    } else {
        handler_result result = body(tx);
        if (result.succeeded()) tx.commit();
        return result;
    }
}

template <class Set, class H>
struct transactional_adapter {
    H handlers;
    event_store* store;

    template <class E>
        requires(Set::template contains<E> &&
                 std::is_invocable_v<H&, const E&, unit_of_work<Set>&>)
    handler_result operator()(const E& event, handler_context& ctx) {
        return run_transactional<Set>(*store, ctx, [&](unit_of_work<Set>& tx) {
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

    outbox_dispatcher(bus<Set>& bus, event_store& store, dispatcher_options options = {})
        : bus_(bus), store_(store), options_(std::move(options)) {
        if (options_.batch_size == 0) {
            throw std::invalid_argument("evbus: dispatcher_options::batch_size must be >= 1");
        }
    }
    outbox_dispatcher(const outbox_dispatcher&) = delete;
    outbox_dispatcher& operator=(const outbox_dispatcher&) = delete;
    ~outbox_dispatcher() { stop(); }

    /// Subscribes a handler that runs inside a store transaction: overloads take
    /// (const E&, evbus::unit_of_work<Set>&) and may return handler_result. Its writes and its
    /// completion mark commit together, so its effects happen exactly once. Thread-safe.
    template <class H>
    [[nodiscard]] subscription subscribe_transactional(std::string name, H&& handlers,
                                                       subscribe_options options = {}) {
        using adapter = detail::transactional_adapter<Set, std::remove_cvref_t<H>>;
        return bus_.subscribe(std::move(name), adapter{std::forward<H>(handlers), &store_},
                              options);
    }

    /// Resubmits unfinished deliveries (if configured) and starts the dispatcher thread.
    /// Not thread-safe against stop(); call once.
    void start() {
        if (thread_.joinable()) throw std::logic_error("evbus: the dispatcher is running");
        stopping_.store(false, std::memory_order_relaxed);  // before the thread exists
        thread_ = std::thread([this] { run(); });
    }

    /// Stops the thread after the delivery in progress; pending deliveries stay pending in
    /// the store. Idempotent. Thread-safe.
    void stop() noexcept {
        {
            const std::lock_guard lock(mutex_);
            stopping_.store(true, std::memory_order_relaxed);  // under mutex_: orders it
        }
        changed_.notify_all();
        store_.notify_commit();  // wake the loop if it waits for commits
        if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
    }

    /// Waits until every event committed in this process before the call has been dispatched
    /// and handled (completed, dead-lettered, or left pending for a missing subscription).
    /// False on timeout or when the dispatcher is not running. Thread-safe; blocks.
    bool drain(std::chrono::nanoseconds timeout) {
        const std::uint64_t target = store_.commits().generation();
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] {
            return stopping_.load(std::memory_order_relaxed) ||
                   (idle_generation_ >= target && requests_.empty() && idle_rounds_ > 0);
        }) && !stopping_.load(std::memory_order_relaxed);
    }

    /// Counters so far. Thread-safe; racy snapshot.
    [[nodiscard]] dispatcher_stats stats() const {
        const std::lock_guard lock(mutex_);
        return stats_;
    }

    // ---- dead letters ----------------------------------------------------------------------
    [[nodiscard]] std::vector<dead_letter_entry> dead_letters(const dead_letter_filter& f = {}) {
        return store_.dead_letters(f);
    }
    /// Makes a dead letter pending again and delivers it on the dispatcher thread (after the
    /// batch in progress). False when there is no such dead letter. Thread-safe.
    bool requeue(std::int64_t dead_letter_id) {
        auto pending = store_.requeue(dead_letter_id);
        if (!pending) return false;
        {
            const std::lock_guard lock(mutex_);
            requests_.push_back(std::move(*pending));
        }
        store_.notify_commit();
        return true;
    }
    /// Requeues every dead letter `filter` selects, oldest first; returns how many.
    std::size_t requeue(const dead_letter_filter& filter) {
        std::size_t n = 0;
        for (const auto& d : store_.dead_letters(filter)) n += requeue(d.id) ? 1 : 0;
        return n;
    }
    bool discard(std::int64_t dead_letter_id) { return store_.discard(dead_letter_id); }
    std::size_t discard(const dead_letter_filter& filter) {
        std::size_t n = 0;
        for (const auto& d : store_.dead_letters(filter)) n += store_.discard(d.id) ? 1 : 0;
        return n;
    }

    // ---- history ---------------------------------------------------------------------------
    /// Completed events kept by the store, decoded, as an input range (see event_history).
    [[nodiscard]] event_history<Set> history(history_query query = {}) {
        return event_history<Set>(store_, std::move(query));
    }

    /// Calls subscription `name`'s handler for every history event `query` selects, in order,
    /// on this thread; records nothing (rebuilds a projection). Returns the calls made. Throws
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

    enum class outcome : std::uint8_t { completed, dead_lettered, pending };

    void stage(dispatch_stage s) {
        if (options_.observer) options_.observer(s);
    }

    void report(const std::string& subscription, const metadata& meta, std::string error) {
        bus_.errors().on_failure(failure_record{std::string(meta.event_name), meta.id,
                                                meta.key.str(), subscription, std::move(error),
                                                meta.attempt, store_clock::now()});
    }

    void run() {
        try {
            if (options_.resubmit_unfinished) resubmit();
        } catch (const std::exception& e) {
            report("evbus.dispatcher", {}, std::string("resubmitting failed: ") + e.what());
        }
        auto next_prune = std::chrono::steady_clock::now();
        while (!stopping_.load(std::memory_order_relaxed)) {
            const std::uint64_t generation = store_.commits().generation();
            bool worked = false;
            try {
                worked = serve_requests();
                worked = dispatch_claimed() || worked;
                if (options_.retention.count() > 0 && store_.keeps_history() &&
                    std::chrono::steady_clock::now() >= next_prune) {
                    store_.prune(store_clock::now() - options_.retention);
                    next_prune = std::chrono::steady_clock::now() + options_.prune_every;
                }
            } catch (const std::exception& e) {
                // A store failure (busy past its timeout, disk full): nothing was confirmed or
                // completed that was not also recorded, so the next round retries it.
                report("evbus.dispatcher", {}, e.what());
                wait_stopping(options_.poll_interval);
                continue;
            }
            if (worked) continue;
            {
                const std::lock_guard lock(mutex_);
                idle_generation_ = generation;
                ++idle_rounds_;
            }
            changed_.notify_all();
            store_.commits().wait(generation, options_.poll_interval);
        }
        changed_.notify_all();
    }

    void wait_stopping(std::chrono::nanoseconds d) {
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, d, [&] { return stopping_.load(std::memory_order_relaxed); });
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
        deliver_all(ready);
        return true;
    }

    void deliver_all(std::vector<decoded_event>& events) {
        std::vector<delivery_ref> completions;
        for (decoded_event& e : events) {
            deliver(e, completions);
            if (stopping_.load(std::memory_order_relaxed)) break;
        }
        stage(dispatch_stage::delivered);
        store_.complete(completions);
        stage(dispatch_stage::completed);
    }

    void deliver(decoded_event& e, std::vector<delivery_ref>& completions) {
        const auto table = bus_.table()->snapshot();
        for (const std::string& name : e.subscriptions) {
            const detail::dispatch_entry* found = nullptr;
            for (const auto& entry : table->rows[e.event.index()]) {
                if (entry.sub->name == name) found = &entry;
            }
            if (found == nullptr) continue;  // not subscribed (now): stays pending
            if (deliver_one(*found, e) == outcome::completed) {
                completions.push_back({e.position, name});
            }
        }
    }

    outcome deliver_one(const detail::dispatch_entry& entry, decoded_event& e) {
        detail::subscription_state& sub = *entry.sub;
        const retry_policy& policy = sub.options.retry;
        const std::uint32_t max_attempts = std::max<std::uint32_t>(policy.max_attempts, 1);
        store_clock::time_point first_failure{};
        std::string error;
        for (std::uint32_t attempt = 1;; ++attempt) {
            e.meta.attempt = attempt;
            bool retryable = true;
            {
                const detail::call_guard guard(sub);
                if (!guard.entered()) return outcome::pending;
                const detail::frame_guard frame(e.meta, &sub);
                const detail::durable_delivery_scope durable(e.meta.id, e.position);
                const auto deadline = sub.options.timeout.count() > 0
                                          ? handler_context::clock::now() + sub.options.timeout
                                          : handler_context::clock::time_point::max();
                handler_context ctx(e.meta, sub.name, deadline);
                try {
                    const handler_result result = std::visit(
                        [&](const auto& ev) { return entry.invoke(sub.handler, &ev, ctx); },
                        e.event);
                    if (result.succeeded()) {
                        const std::lock_guard lock(mutex_);
                        ++stats_.delivered;
                        return outcome::completed;
                    }
                    error = result.reason();
                    retryable = result.outcome() == handler_result::kind::retry;
                } catch (const permanent_error& ex) {
                    error = ex.what();
                    retryable = false;
                } catch (...) {
                    error = describe_exception(std::current_exception());
                }
            }
            const auto now = store_clock::now();
            if (attempt == 1) first_failure = now;
            report(sub.name, e.meta, error);
            {
                const std::lock_guard lock(mutex_);
                ++stats_.failed;
            }
            if (!retryable || attempt >= max_attempts) {
                store_.dead_letter({e.position, sub.name}, attempt, error, first_failure, now);
                const std::lock_guard lock(mutex_);
                ++stats_.dead_lettered;
                return outcome::dead_lettered;
            }
            wait_stopping(backoff(policy, attempt));
            if (stopping_.load(std::memory_order_relaxed)) return outcome::pending;
        }
    }

    // delay before attempt n + 1: min(initial * multiplier^(n-1), max); no jitter on this
    // single-threaded path, where retries of different keys cannot collide.
    static std::chrono::nanoseconds backoff(const retry_policy& p, std::uint32_t failed) {
        double d = static_cast<double>(p.initial_delay.count());
        for (std::uint32_t i = 1; i < failed && d < static_cast<double>(p.max_delay.count()); ++i) {
            d *= p.multiplier;
        }
        return std::min(std::chrono::nanoseconds(static_cast<std::int64_t>(d)), p.max_delay);
    }

    // Delivers pending (event, subscription) pairs grouped by event, in position order.
    void deliver_pending(std::vector<pending_delivery> pending) {
        std::vector<decoded_event> events;
        std::vector<pending_delivery> redecode;
        for (auto& p : pending) {
            if (p.subscription.empty()) {
                redecode.push_back(std::move(p));
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
        {
            const std::lock_guard lock(mutex_);
            stats_.resubmitted += pending.size();
        }
        for (auto& p : redecode) redecode_rejected(p.event);
        if (!events.empty()) deliver_all(events);
    }

    // A requeued row that had failed to decode: decode it again and owe its deliveries.
    void redecode_rejected(const stored_event& row) {
        auto d = decode(row);
        const delivery_ref marker{row.position, std::string{}};
        if (d.index() == 1) {
            report("", {}, std::get<1>(d));
            store_.dead_letter(marker, 0, std::get<1>(d), store_clock::now(),
                               store_clock::now());
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
        std::vector<decoded_event> one;
        one.push_back(std::move(event));
        deliver_all(one);
    }

    void resubmit() {
        std::optional<delivery_ref> after;
        for (;;) {
            auto page = store_.unfinished(after, options_.batch_size);
            if (page.empty()) return;
            after = delivery_ref{page.back().event.position, page.back().subscription};
            deliver_pending(std::move(page));
            if (stopping_.load(std::memory_order_relaxed)) return;
        }
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
        deliver_pending(std::move(work));
        return true;
    }

    bus<Set>& bus_;
    event_store& store_;
    const dispatcher_options options_;
    std::thread thread_;
    // Memory ordering: stopping_ is written under mutex_ (so condition waits see it) and read
    // relaxed by the loop between batches; a late read only delays the stop by one batch, and
    // the join in stop() orders everything the thread did before it.
    std::atomic<bool> stopping_{false};
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<pending_delivery> requests_;
    std::uint64_t idle_generation_ = 0;
    std::uint64_t idle_rounds_ = 0;
    dispatcher_stats stats_;
};

}  // namespace evbus
