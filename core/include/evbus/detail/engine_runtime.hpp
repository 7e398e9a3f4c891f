// evbus/detail/engine_runtime.hpp — the non-template half of evbus::engine<Set>.
//
// engine_runtime owns what does not depend on the event set: the lifecycle flags, the
// registration of the callers stop() waits for (drain(), requeue(), posts waiting for ring
// space), drain tickets, the retry sleep, the watchdog thread, health and metrics.
// shard_runtime is the untyped part of one shard: its counters, its cached dispatch table
// with per-subscription statistics, the published "current call" record the watchdog reads,
// its stop source, and run(), which calls one subscription for one event with timeouts,
// retries and failure reports. The typed shard (in engine.hpp) adds the ring, the worker
// thread and parking.
//
// Memory ordering:
// - post() vs stop (Dekker through the ring). A post claims its ring position (a seq_cst
//   RMW on the ring's tail) and then reads closed_ (seq_cst); stop stores closed_ (seq_cst)
//   and then claims a position for its drain marker. Either the post's load follows the
//   store in the single total order, and it sees closed_ and fills its slot with a
//   refusal, or its claim precedes the store and so the marker's claim: the event lies
//   before the marker and is handled before the shard reaches it. A post thus costs no
//   atomic operation of its own beyond the ring's.
// - drain(), requeue() and posts about to wait for ring space vs stop (Dekker). They
//   increment their shard's producer count and then read closed_; stop stores closed_ and
//   then reads every shard's count; all seq_cst, so either the caller sees closed_ (and
//   backs out) or stop sees it (and waits for it to leave). A caller leaves by decrementing
//   under the drain mutex, under which stop reads the counts: stop cannot see the last one
//   leave, return, and let the engine be destroyed while that caller still touches it.
// - Accepted events are counted without a per-post RMW: ring claims minus the claims that
//   carried no event (markers, release notices, refusals). Each of those is counted after
//   its claim, with a release increment; metrics() reads that count with acquire before the
//   claims, so it never sees a non-event whose claim it misses.
// - The call record (a seqlock with one writer, the worker, and no fences, which TSan cannot
//   check). begin_call() writes the fields with release stores and then publishes an odd
//   generation (release); end_call() stores the next even one. A reader loads the
//   generation (acquire, pairs with the publishing store), then the fields with acquire
//   loads, then the generation again: equal and odd means the fields describe one call
//   that was running. If a field load saw a later call's write, it synchronises with that
//   release store, so the end_call() store before it happens before the reload, which
//   therefore differs. On x86 all of these are plain moves.
// - Counters are relaxed: statistics, no reader derives an ordering from them. Per-shard
//   counters other than `accepted` have one writer (the worker), which updates by load +
//   store rather than a locked RMW.
// - abort_ is a flag read on the worker's path with acquire (pairs with the release store in
//   abort()); a stale read only lets one more handler start, which stop() tolerates.
// - Everything else (drain tickets, stop sources, stats maps, the watchdog) uses mutexes.
//
// Thread-safety: each member says who may call it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <evbus/detail/cycle_clock.hpp>
#include <evbus/detail/deadline.hpp>
#include <evbus/detail/dispatch_context.hpp>
#include <evbus/detail/registry.hpp>
#include <evbus/engine_types.hpp>
#include <evbus/error_sink.hpp>
#include <evbus/handler.hpp>
#include <evbus/latency_histogram.hpp>
#include <evbus/metadata.hpp>

namespace evbus::detail {

/// The engine options that the untyped half needs.
struct engine_settings {
    std::size_t shards = 1;
    std::size_t batch_size = 64;
    std::chrono::nanoseconds stuck_after{0};        ///< 0: never report a shard as stuck
    std::chrono::nanoseconds watchdog_interval{0};  ///< 0: no watchdog thread
    outcome_observer on_outcome;
    std::uint64_t seed = 0;
};

/// Adds `n` to a counter that has exactly one writer. Relaxed: a statistic (see the banner);
/// load + store instead of fetch_add keeps bus-locked instructions off the worker's path.
inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

/// Per-(shard, subscription) statistics. One writer: the shard's worker.
struct subscription_stats {
    std::atomic<std::uint64_t> handled{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> retried{0};
    std::atomic<std::uint64_t> dead_lettered{0};
    std::atomic<std::uint64_t> parked{0};
    latency_histogram latency;
};

/// What calling one subscription for one event came to, retries included. How the attempts
/// failed is in shard_runtime::failure(), so a success builds no string.
struct run_result {
    enum class kind : std::uint8_t {
        succeeded,
        failed,       ///< retries ran out or the error was permanent: dead-letter it
        interrupted,  ///< stop()'s deadline passed while it waited to retry
        skipped,      ///< the subscription was gone (unsubscribed) before its turn
    };
    kind outcome = kind::skipped;
    std::uint32_t attempts = 0;
};

/// How the attempts of a run that did not succeed failed.
struct failure_detail {
    std::string error;  ///< the last failed attempt's error
    std::chrono::system_clock::time_point first{};
    std::chrono::system_clock::time_point last{};
};

/// A steady_clock time in nanoseconds since the clock's epoch, as the call record keeps it.
inline std::int64_t to_ns(std::chrono::steady_clock::time_point t) noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

/// The call record's deadline of a call without a timeout.
inline constexpr std::int64_t no_deadline = INT64_MAX;

/// A drain in progress: how many shards still have to reach its marker. Guarded by the
/// engine_runtime's drain mutex; lives on the draining thread's stack until every marker
/// pushed for it was consumed.
struct drain_ticket {
    std::size_t remaining = 0;
};

class engine_runtime;

class shard_runtime {
public:
    shard_runtime(engine_runtime& engine, std::size_t index);
    shard_runtime(const shard_runtime&) = delete;
    shard_runtime& operator=(const shard_runtime&) = delete;
    virtual ~shard_runtime();

    [[nodiscard]] std::size_t index() const noexcept { return index_; }
    [[nodiscard]] engine_runtime& runtime() const noexcept { return engine_; }

    /// Approximate number of queued entries. Thread-safe (racy, see the ring).
    [[nodiscard]] virtual std::size_t approx_depth() const noexcept = 0;

    /// Marks the calling thread as this shard's worker and names it "evbus-shard-<index>".
    /// Worker only, once, at start.
    void enter_worker_thread() noexcept;

    /// The dispatch table, reloaded only when the registry changed (then the statistics rows
    /// are rebuilt, which allocates). Worker only. Inline: the worker asks for every event.
    const dispatch_table& table() {
        if (table_ && registry_.version() == version_) return *table_;
        return reload_table();
    }
    /// Statistics aligned with table().rows[index]. Worker only, after table().
    [[nodiscard]] const std::vector<subscription_stats*>& stats_row(std::size_t index) const {
        return stats_rows_[index];
    }

    /// Calls `entry` for one event under its subscription's timeout and retry policy.
    /// `meta.attempt` is set for every attempt. Every failed attempt goes to the error sink.
    /// Clock: a call without a timeout starts at the worker's last clock reading (the end of
    /// the previous call, or restart_clock(), which the idle loop calls between its looks at
    /// the ring), so it costs one clock read; its measured latency thus includes what the
    /// worker did since that reading (a few dispatch steps; after an idle wait, one look at
    /// the ring; the previous event's destruction). That read is the cycle_clock
    /// (detail/cycle_clock.hpp), whose duration extends the steady_clock reading of the
    /// call's start; a call longer than cycle_clock::resync_after reads steady_clock after
    /// itself. A call with a timeout also reads the counter before itself (and steady_clock
    /// too when the last reading is older than resync_after) and steady_clock after itself,
    /// so its deadline and overrun count its own time only.
    /// Never throws on behalf of the handler (anything it throws is caught); may throw
    /// std::bad_alloc while describing a failure. Worker only.
    /// The first attempt, which usually succeeds, is inline and builds nothing on the heap
    /// or in a string; what follows a failed one (describing it, reporting it, backing off,
    /// retrying) is out of line in retry().
    run_result run(const dispatch_entry& entry, subscription_stats& stats, const void* payload,
                   metadata& meta) {
        switch (attempt(entry, stats, payload, meta, 1)) {
            case attempt_outcome::succeeded:
                return {run_result::kind::succeeded, 1};
            case attempt_outcome::skipped:
                return {run_result::kind::skipped, 0};
            case attempt_outcome::failed:
                break;
        }
        return retry(entry, stats, payload, meta);
    }

    /// How the last run() that did not succeed failed. Worker only; valid until the next run().
    [[nodiscard]] const failure_detail& failure() const noexcept { return failure_; }

    /// Records an event cut off by stop()'s deadline: kept for the stop report and sent to
    /// the error sink, and counted in not_run unless `already_handled` (an event released
    /// from a park: parking it counted it in handled, and each event counts once). Worker
    /// only.
    void note_not_run(const metadata& meta, std::string_view subscription,
                      bool already_handled = false);
    /// The ids noted by note_not_run(). Only after the worker was joined.
    [[nodiscard]] std::vector<event_id> take_not_run() { return std::move(not_run_ids_); }

    /// Registers a caller stop() must wait for (drain(), requeue(), a post about to wait for
    /// ring space) with this shard; false (nothing registered) once the engine is closed.
    /// Thread-safe, lock-free: one seq_cst RMW.
    [[nodiscard]] bool enter_post() noexcept;
    /// Ends a registration; the caller's last touch of the engine. Thread-safe; one RMW under
    /// the engine's drain mutex.
    void leave_post() noexcept;
    /// Callers registered now. Thread-safe (seq_cst, for stop()'s side of the Dekker pair).
    [[nodiscard]] std::uint64_t producers() const noexcept {
        return producers_.load(std::memory_order_seq_cst);
    }

    /// Wakes posts waiting for ring space, so they see the engine closed. Thread-safe.
    virtual void wake_producers() noexcept = 0;
    /// Positions claimed in the ring so far (see "Memory ordering"). Thread-safe, racy.
    [[nodiscard]] virtual std::uint64_t ring_claims() const noexcept = 0;
    /// Counts one ring claim that carried no event; call after the claim. Thread-safe.
    void count_non_event() noexcept {
        // Release: pairs with the acquire in engine_runtime::metrics() (see the banner).
        non_events_.fetch_add(1, std::memory_order_release);
    }

    /// Restarts the worker's chained clock (see run()): call before a batch, and after
    /// anything slow that is not a handler call. Worker only. A steady_clock and a
    /// cycle_clock read.
    void restart_clock() noexcept {
        tick_ = std::chrono::steady_clock::now();
        cycles_ = clock_.now();
    }

    // handled, dead_lettered and parked: the worker-written counters, declared last (below).

private:
    friend class engine_runtime;
    friend class post_guard;

    struct call_snapshot {
        std::uint64_t generation = 0;
        std::int64_t started_ns = 0;
        std::int64_t deadline_ns = 0;
        const subscription_state* sub = nullptr;
        event_id id;
        std::string_view event_name;
    };

    enum class attempt_outcome : std::uint8_t { succeeded, failed, skipped };

    // Attempt `n` of `entry` for one event, under the subscription's in-flight guard (one per
    // attempt, so unsubscribing never waits for a retry's sleep).
    attempt_outcome attempt(const dispatch_entry& entry, subscription_stats& stats,
                            const void* payload, metadata& meta, std::uint32_t n) {
        const call_guard guard(*entry.sub);
        if (!guard.entered()) return attempt_outcome::skipped;
        // Written only when it changes: `meta` lives in the ring slot, and a store would
        // pull the slot's line over from the producer's core and send it back modified.
        // prepare() stamped attempt 1 already.
        if (meta.attempt != n) meta.attempt = n;
        if (!call_once(entry, stats, payload, meta)) return attempt_outcome::failed;
        bump(stats.handled);
        return attempt_outcome::succeeded;
    }

    // Calls the handler once, timed (see "Clock" at run()); false when it failed, which
    // note_failure() then described and reported.
    bool call_once(const dispatch_entry& entry, subscription_stats& stats, const void* payload,
                   metadata& meta) {
        const subscription_state& sub = *entry.sub;
        const std::chrono::nanoseconds timeout = sub.options.timeout;
        const bool bounded = timeout.count() > 0;
        if (token_.stop_requested()) renew_stop_token();

        auto start = tick_;
        std::uint64_t start_cycles = cycles_;
        if (bounded) {
            // A deadline starts at the call: the chained reading may have aged by whatever
            // the worker did since it (the previous event's destruction, for one), which must
            // not count against this handler's budget. The counter says by how much; a long
            // gap is read again on steady_clock, as a long call is.
            const std::uint64_t now_cycles = clock_.now();
            const std::chrono::nanoseconds aged = clock_.between(cycles_, now_cycles);
            if (aged >= cycle_clock::resync_after) {
                restart_clock();
                start = tick_;
                start_cycles = cycles_;
            } else {
                start += aged;
                start_cycles = now_cycles;
            }
        }
        const auto deadline =
            bounded ? deadline_after(start, timeout) : std::chrono::steady_clock::time_point::max();
        begin_call(sub, meta, to_ns(start), bounded ? to_ns(deadline) : no_deadline);
        std::exception_ptr thrown;
        handler_context ctx(meta, sub.name, deadline, token_);
        const handler_result result = invoke_caught(entry, payload, ctx, thrown);
        const std::uint64_t end_cycles = clock_.now();
        std::chrono::nanoseconds took = clock_.between(start_cycles, end_cycles);
        auto end = start + took;
        if (bounded || took >= cycle_clock::resync_after) {
            // A deadline to check, or a call long enough for the counter's rate error to show.
            end = std::chrono::steady_clock::now();
            took = end - start;
        }
        tick_ = end;
        cycles_ = end_cycles;
        end_call(bounded);
        stats.latency.record(took);

        const bool overran = bounded && end > deadline;
        if (!thrown && result.succeeded()) {
            if (!overran) return true;
            if (context_access::committed(ctx)) {  // its effects stand: late, not failed
                note_late_commit(sub, meta, took);
                return true;
            }
        }
        note_failure(sub, stats, meta, thrown, result,
                     overran ? took : std::chrono::nanoseconds{0});
        return false;
    }

    // Calls the handler in its frame and context and returns its result, built in place;
    // anything it throws lands in `thrown`, and the result then says ok.
    static handler_result invoke_caught(const dispatch_entry& entry, const void* payload,
                                        handler_context& ctx, std::exception_ptr& thrown) noexcept {
        const frame_guard frame(ctx.meta(), entry.sub);
        try {
            return entry.invoke(entry.sub->handler, payload, ctx);
        } catch (...) {
            thrown = std::current_exception();
            return handler_result::ok();
        }
    }

    // A failed attempt (meta.attempt says which): describes it into failure_ (an overrun by
    // `overran_after`, when that is not zero), decides retryable_, counts it and reports it.
    void note_failure(const subscription_state& sub, subscription_stats& stats,
                      const metadata& meta, const std::exception_ptr& thrown,
                      const handler_result& result, std::chrono::nanoseconds overran_after);
    // A call that ran past its budget after committing its effects: reported, not failed.
    void note_late_commit(const subscription_state& sub, const metadata& meta,
                          std::chrono::nanoseconds took);
    // What follows a failed first attempt: backoff and further attempts while the error is
    // retryable and the policy allows.
    run_result retry(const dispatch_entry& entry, subscription_stats& stats, const void* payload,
                     metadata& meta);

    void begin_call(const subscription_state& sub, const metadata& meta, std::int64_t start_ns,
                    std::int64_t deadline_ns) noexcept {
        // Relaxed: only this thread writes the generation.
        const std::uint64_t g = call_generation_.load(std::memory_order_relaxed);
        // [R2] release, each: a reader whose acquire load [A2] sees one of these values also
        // sees the end_call() store before it (see "Memory ordering" above).
        call_started_ns_.store(start_ns, std::memory_order_release);
        call_deadline_ns_.store(deadline_ns, std::memory_order_release);
        call_sub_.store(&sub, std::memory_order_release);
        call_id_high_.store(meta.id.high(), std::memory_order_release);
        call_id_low_.store(meta.id.low(), std::memory_order_release);
        call_name_data_.store(meta.event_name.data(), std::memory_order_release);
        call_name_size_.store(meta.event_name.size(), std::memory_order_release);
        // [R1] publishes the fields; pairs with [A1] in read_call().
        call_generation_.store(g + 1, std::memory_order_release);
    }

    void end_call(bool bounded) noexcept {
        const std::uint64_t g = call_generation_.load(std::memory_order_relaxed);  // own writes
        if (bounded) {
            // Under the mutex: the watchdog requests a stop only while it holds it and sees
            // this call running, so its request can never land on the next call.
            const std::lock_guard lock(mutex_);
            // Relaxed: the next begin_call()'s release stores [R2] order it for readers that
            // see them; the mutex orders it for the watchdog.
            call_generation_.store(g + 1, std::memory_order_relaxed);
        } else {
            call_generation_.store(g + 1, std::memory_order_relaxed);  // as above
        }
    }

    // table()'s slow path: takes the registry's current snapshot.
    const dispatch_table& reload_table();

    /// The running call, if any, as one consistent snapshot. Any thread.
    [[nodiscard]] bool read_call(call_snapshot& out) const noexcept;
    /// The name of `sub` if it is in the current table; call with mutex_ held.
    [[nodiscard]] std::string name_of(const subscription_state* sub) const;
    void renew_stop_token();
    subscription_stats& stats_for(const std::string& name);
    double next_unit() noexcept;

    engine_runtime& engine_;
    const std::size_t index_;
    const registry& registry_;  // engine_.table_source(), read-only like the two above

    // Guards table_ (written by the worker, read by the watchdog), source_, stats_, and the
    // end of calls that have a deadline (so the watchdog's stop request cannot hit the next
    // call). From here on the members are written while the engine runs; engine_ and index_
    // above, which every post reads, keep the first cache line to themselves.
    alignas(64) mutable std::mutex mutex_;
    std::shared_ptr<const dispatch_table> table_;
    std::stop_source source_;
    std::map<std::string, std::unique_ptr<subscription_stats>, std::less<>> stats_;

    // Worker only. tick_ and cycles_: the same moment on both clocks (see run()).
    std::chrono::steady_clock::time_point tick_{};
    std::uint64_t cycles_ = 0;
    const cycle_clock clock_ = cycle_clock::calibrated();
    std::uint64_t version_ = 0;
    std::vector<std::vector<subscription_stats*>> stats_rows_;
    std::stop_token token_;
    std::uint64_t rng_;
    std::vector<event_id> not_run_ids_;
    failure_detail failure_;
    bool retryable_ = false;  // whether the last failed attempt may be retried

    // The call record (see "Memory ordering").
    std::atomic<std::uint64_t> call_generation_{0};
    std::atomic<std::int64_t> call_started_ns_{0};
    std::atomic<std::int64_t> call_deadline_ns_{0};
    std::atomic<const subscription_state*> call_sub_{nullptr};
    std::atomic<std::uint64_t> call_id_high_{0};
    std::atomic<std::uint64_t> call_id_low_{0};
    std::atomic<const char*> call_name_data_{nullptr};
    std::atomic<std::size_t> call_name_size_{0};

    // Watchdog only: the generation of the last call reported as stuck.
    std::uint64_t reported_generation_ = 0;

    // Worker-written statistics.
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<std::uint64_t> retried_{0};
    std::atomic<std::uint64_t> not_run_{0};

    // Written by drain(), requeue(), discard(), refused posts and posts waiting for ring space
    // only, on a line of its own.
    alignas(64) std::atomic<std::uint64_t> producers_{0};
    std::atomic<std::uint64_t> non_events_{0};
    std::atomic<std::uint64_t> waiting_posts_{0};

public:
    // Worker-written counters (see shard_metrics); read by metrics(). On a line of their own:
    // written for every event, they used to share the first line with engine_, which every
    // post reads, so that line moved between the worker's core and the producers' twice per
    // event.
    alignas(64) std::atomic<std::uint64_t> handled{0};
    std::atomic<std::uint64_t> dead_lettered{0};
    std::atomic<std::uint64_t> parked{0};
};

class engine_runtime {
public:
    engine_runtime(const registry& reg, error_sink& errors, engine_settings settings);
    engine_runtime(const engine_runtime&) = delete;
    engine_runtime& operator=(const engine_runtime&) = delete;
    ~engine_runtime();

    [[nodiscard]] const engine_settings& settings() const noexcept { return settings_; }
    [[nodiscard]] const registry& table_source() const noexcept { return registry_; }
    [[nodiscard]] error_sink& errors() const noexcept { return errors_; }

    /// Registers the shards (before any worker starts). Not thread-safe; construction only.
    void attach(std::vector<shard_runtime*> shards);
    /// Starts the watchdog thread when settings().watchdog_interval > 0. Construction only.
    void start_watchdog();
    /// Stops and joins the watchdog. Idempotent. Not concurrently with itself.
    void stop_watchdog() noexcept;

    // ---- producers --------------------------------------------------------------------
    /// True until close() began. Thread-safe; seq_cst (the Dekker pairs with posts and with
    /// registered callers).
    [[nodiscard]] bool accepting() const noexcept {
        return !closed_.load(std::memory_order_seq_cst);
    }
    /// Ends a registration with `shard`: decrements its count under the drain mutex and
    /// wakes close() or wait_producers() when the engine is closed (see "Memory ordering").
    /// Thread-safe.
    void leave(shard_runtime& shard) noexcept;

    // ---- lifecycle (engine<Set>::stop runs these in order) ------------------------------
    /// Refuses new posts, wakes those waiting for ring space, and waits until the registered
    /// callers (drain(), requeue(), woken posts) left or `deadline` passed; false on the
    /// deadline.
    /// Thread-safe; one caller at a time.
    bool close(std::chrono::steady_clock::time_point deadline);
    /// Waits, without deadline, until no producer is registered. After close().
    void wait_producers();
    /// True when no producer is registered with any shard.
    [[nodiscard]] bool no_producers() const noexcept;
    /// From now on workers drop what they have not started (noting it as not run), retry
    /// sleeps end, and every shard's stop source is requested. Thread-safe, idempotent.
    void abort() noexcept;
    /// True after abort(). Thread-safe; acquire (pairs with abort()'s release store).
    [[nodiscard]] bool aborting() const noexcept { return abort_.load(std::memory_order_acquire); }
    /// Marks the engine stopped and wakes drain() callers waiting for that. Thread-safe.
    void mark_stopped() noexcept;
    /// Waits until mark_stopped(). Thread-safe.
    void wait_stopped();
    /// drain() registers for its whole call (enter_drain() ... leave_drain()), so that stop()
    /// can wait, after mark_stopped(), until every drain() has left (wait_drainers()): each
    /// one's markers were reached or it was woken by mark_stopped(), so that wait is short,
    /// and the engine may be destroyed once stop() returns. Thread-safe.
    void enter_drain() noexcept;
    void leave_drain() noexcept;
    void wait_drainers();

    // ---- drain tickets ---------------------------------------------------------------
    /// A shard consumed a drain marker of `ticket`. Worker only.
    void arrive(drain_ticket& ticket) noexcept;
    /// Waits until `ticket` has no marker left, or `deadline` passed (false).
    bool wait_ticket(drain_ticket& ticket, std::chrono::steady_clock::time_point deadline);
    void wait_ticket(drain_ticket& ticket);

    /// Sleeps `delay` before a retry; false when abort() cut it short. Worker only.
    bool sleep_for_retry(std::chrono::nanoseconds delay);

    // ---- reporting -------------------------------------------------------------------
    /// Sends one failure to the error sink. Thread-safe; never throws.
    void report(const metadata& meta, std::string_view subscription, std::string_view error,
                std::uint32_t attempt) noexcept;
    /// Tells the outcome observer, if any, about a final outcome; an exception it throws is
    /// reported to the error sink. Worker only.
    void observe(const metadata& meta, std::string_view subscription, delivery_status status,
                 std::uint32_t attempts, std::string_view error,
                 std::uint64_t dead_letter_id) noexcept;

    /// Stuck shards (a call running longer than stuck_after). Thread-safe.
    [[nodiscard]] engine_health health() const;
    /// Counters of every shard and subscription. Thread-safe; allocates.
    [[nodiscard]] engine_metrics metrics() const;

    /// True when the calling thread is a worker of this engine. Thread-safe.
    [[nodiscard]] bool on_worker() const noexcept;
    /// True when the calling thread is the worker of `shard`. Thread-safe.
    [[nodiscard]] static bool on_worker_of(const shard_runtime& shard) noexcept;

private:
    void watchdog_loop();
    void watch_once();

    const registry& registry_;
    error_sink& errors_;
    const engine_settings settings_;
    std::vector<shard_runtime*> shards_;

    // Read on every post and every event, written once: on a line of their own.
    alignas(64) std::atomic<bool> closed_{false};
    std::atomic<bool> abort_{false};

    // Guards drain tickets and stopped_; its condition variable also signals "producers
    // gone" to close().
    alignas(64) std::mutex drain_mutex_;
    std::condition_variable drain_cv_;
    bool stopped_ = false;
    std::size_t drainers_ = 0;  // drain() calls inside the engine; under drain_mutex_

    std::mutex retry_mutex_;
    std::condition_variable retry_cv_;

    std::mutex watch_mutex_;
    std::condition_variable watch_cv_;
    bool watch_stop_ = false;
    std::thread watchdog_;
};

/// RAII registration of a caller stop() waits for with one shard
/// (shard_runtime::enter_post / leave_post); for a post waiting for ring space (`waiting`),
/// also counted in the shard's waiting_posts gauge while registered.
class post_guard {
public:
    explicit post_guard(shard_runtime& shard, bool waiting = false) noexcept
        : shard_(shard), entered_(shard.enter_post()), waiting_(entered_ && waiting) {
        // Relaxed: a gauge for metrics(); nothing is ordered by it.
        if (waiting_) shard_.waiting_posts_.fetch_add(1, std::memory_order_relaxed);
    }
    post_guard(const post_guard&) = delete;
    post_guard& operator=(const post_guard&) = delete;
    ~post_guard() {
        if (waiting_) shard_.waiting_posts_.fetch_sub(1, std::memory_order_relaxed);  // as above
        if (entered_) shard_.leave_post();  // the last touch of the engine
    }
    [[nodiscard]] bool entered() const noexcept { return entered_; }

private:
    shard_runtime& shard_;
    bool entered_;
    bool waiting_;
};

/// RAII registration of a drain() call for its whole length (engine_runtime::enter_drain).
class drain_registration {
public:
    explicit drain_registration(engine_runtime& runtime) noexcept : runtime_(runtime) {
        runtime_.enter_drain();
    }
    drain_registration(const drain_registration&) = delete;
    drain_registration& operator=(const drain_registration&) = delete;
    ~drain_registration() { runtime_.leave_drain(); }  // the last touch of the engine

private:
    engine_runtime& runtime_;
};

}  // namespace evbus::detail
