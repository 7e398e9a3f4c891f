// evbus/engine.hpp — asynchronous delivery: per-key worker shards fed by lock-free rings.
//
// engine<Set> delivers the events of a bus<Set> on N worker threads ("shards"). post()
// stamps the event (as emit() does), routes it by its key (evbus/routing.hpp: XXH3 of the
// key mod N; keyless events by their id) and queues it in that shard's bounded MPSC ring;
// the shard's worker runs the bus's subscriptions for it — the same overload sets as sync
// emit, through the same dispatch table — one event at a time, in ring order.
//
//     evbus::bus<events> bus;
//     auto sub = bus.subscribe("notification.receipts", send_receipt,
//                              {.retry = {.max_attempts = 5}, .park_key_on_failure = true});
//     evbus::engine<events> engine(bus, {.shards = 4});
//     engine.post(money_transferred{...});                 // key from event_key()
//     engine.drain();                                      // everything posted so far ran
//
// Guarantees
// - Per-key order: events with equal keys go to one shard and are handled in post order
//   (per producer; posts of one key from several threads are ordered by their ring claim).
//   A retry keeps the key's place: the shard's worker waits out the backoff before it goes
//   on, so the shard's other keys wait too, while other shards go on. Keyless events have
//   no order among themselves.
// - Backpressure: post() blocks while the shard's ring is full; try_post() returns
//   engine_errc::full instead. Nothing accepted is dropped silently.
// - Zero allocations per post on the ring path: an event whose payload does not allocate
//   is moved into a ring slot (variant + metadata) and delivered without touching the heap.
//   post_to(), post_tracked() and requeue() allocate (their bookkeeping); failures allocate.
// - Around every handler call: a timeout budget (subscribe_options::timeout; the handler
//   sees the deadline and a stop_token in its handler_context, requested by the watchdog
//   when the deadline passes and by stop() when its deadline passes); an overrun counts as
//   a failure (unless the call had committed its effects with its completion: an outbox
//   transactional handler's; that overrun is reported only). Failures — a
//   handler_result::retry/fail, an exception of any type, an overrun — are retried under the
//   subscription's retry_policy (evbus/retry.hpp); each failed attempt is reported to the bus's
//   error_sink; after the last one the delivery becomes a dead letter in the engine's
//   dead_letter_store. Nothing a handler throws leaves the worker.
// - Parking (subscribe_options::park_key_on_failure, keyed events only): after a dead
//   letter, later events of the same key for the same subscription wait, in order, behind
//   it, until requeue() delivers it successfully or discard() drops it; then they run in
//   order. Other keys and other subscriptions flow. Parking state lives in the shard's
//   worker; on construction the engine re-parks keys whose head letter is in the store.
// - A watchdog thread (engine_options::watchdog_interval) requests stop on calls past
//   their deadline and reports a shard whose current call runs longer than stuck_after
//   to the error sink; health() lists such shards. A handler that never returns is
//   reported, not hidden; it still holds its shard (C++ cannot cancel a thread).
//
// Lifecycle: the engine starts its workers in the constructor. drain() returns when every
// event accepted before the call has been handled (succeeded, dead-lettered or parked).
// stop(deadline) refuses new posts (post() then throws std::system_error with
// engine_errc::closed; try_post() returns it), drains until the deadline, then cuts off what
// has not started and returns a stop_report listing the ids that did not run and those still
// parked (each also reported to the error sink). The destructor calls stop() with
// engine_options::shutdown_budget. Handlers that post during stop() get `closed`.
//
// Shutdown without a per-post registration: a post's ring claim is its registration. It
// claims a slot, then reads the engine's closed flag (both seq_cst, the Dekker pair of
// detail/engine_runtime.hpp); stop() sets the flag, then queues a drain marker in every
// shard. A post that still saw the engine open therefore claimed before the marker and is
// handled (or reported) before the shard reaches it; a post that sees the flag fills its
// claimed slot with a refusal the worker skips and returns `closed`. Posts waiting for
// ring space are woken by stop() and return `closed` without claiming. requeue() and posts
// about to wait for space register with a counter that stop() waits for, as they are rare,
// and drain() with another for its whole call: when stop() returns, none of them is still
// inside the engine. A post on the fast path has no registration, so destroy the engine
// only after the threads that post have returned from it (stop() first, to wake those
// waiting for space, then join them).
//
// Limits: a handler must not post with post() into its own shard when that ring is full
// (it would wait for itself): post() then throws engine_errc::full instead of blocking;
// try_post() is the tool there. Two shards whose handlers block posting into each other's
// full rings deadlock; size rings for handler fan-out. drain(), stop() and post_and_wait()
// must not be called from a handler of the same engine (asserted).
//
// Thread-safety: every public member is thread-safe, including concurrent post, drain and
// stop. The bus must outlive the engine.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <evbus/assert.hpp>
#include <evbus/bus.hpp>
#include <evbus/dead_letter_store.hpp>
#include <evbus/detail/deadline.hpp>
#include <evbus/detail/engine_runtime.hpp>
#include <evbus/detail/handler_traits.hpp>
#include <evbus/detail/registry.hpp>
#include <evbus/engine_types.hpp>
#include <evbus/error_sink.hpp>
#include <evbus/event_set.hpp>
#include <evbus/metadata.hpp>
#include <evbus/mpsc_ring.hpp>
#include <evbus/routing.hpp>

namespace evbus {

template <class Set>
struct engine_options {
    /// Most shards an engine runs (each is a thread).
    static constexpr std::size_t max_shards = 4096;
    /// Most slots in one shard's ring (2^30).
    static constexpr std::size_t max_ring_capacity = std::size_t{1} << 30;

    /// Number of shards (worker threads, the concurrency cap), at most max_shards; 0: one
    /// per hardware thread.
    std::size_t shards = 0;
    /// Slots per shard ring; a power of two, 2 to max_ring_capacity. Each slot holds one
    /// event and its metadata.
    std::size_t ring_capacity = 1024;
    /// Most events a worker takes from its ring in one go.
    std::size_t batch_size = 64;
    /// Where dead letters go; null: a fresh in_memory_dead_letter_store.
    std::shared_ptr<dead_letter_store<Set>> dead_letters{};

    // The durations below must not be negative; nanoseconds::max() means no limit.
    /// A call running longer than this makes its shard "stuck" (health(), error sink); 0: off.
    std::chrono::nanoseconds stuck_after = std::chrono::seconds(30);
    /// How often the watchdog looks at the shards; 0: no watchdog thread (deadline stop
    /// requests and stuck reports then only come from health() calls: none).
    std::chrono::nanoseconds watchdog_interval = std::chrono::milliseconds(50);
    /// The drain deadline the destructor and stop() without arguments give stop(deadline).
    std::chrono::nanoseconds shutdown_budget = std::chrono::seconds(10);
    /// Called on the worker after each final (event, subscription) outcome; see
    /// outcome_observer.
    outcome_observer on_outcome{};
    /// Seeds the retry jitter; 0: a random seed.
    std::uint64_t jitter_seed = 0;
};

namespace detail {

/// Throws std::invalid_argument naming `owner`'s field and its value unless `shards` (after
/// 0 became the hardware's thread count) and `ring_capacity` are within engine_options'
/// bounds. Shared by the engine and the options structs that feed it, so the rule is stated
/// once. Thread-safe; O(1).
template <class Set>
void check_shard_sizes(std::size_t shards, std::size_t ring_capacity, const char* owner) {
    using options = engine_options<Set>;
    if (shards > options::max_shards) {
        throw std::invalid_argument("evbus: " + std::string(owner) + ".shards is " +
                                    std::to_string(shards) + "; it must be at most " +
                                    std::to_string(options::max_shards));
    }
    if (ring_capacity < 2 || (ring_capacity & (ring_capacity - 1)) != 0 ||
        ring_capacity > options::max_ring_capacity) {
        throw std::invalid_argument(
            "evbus: " + std::string(owner) + ".ring_capacity is " + std::to_string(ring_capacity) +
            "; it must be a power of two from 2 to " + std::to_string(options::max_ring_capacity));
    }
}

/// A ring entry that carries no event: a drain marker (ticket set), a parking release
/// notice (ticket null; the delivery_extras say which letter), or a post refused because
/// stop() began after it claimed its slot (ticket and extras null).
struct control_entry {
    drain_ticket* ticket = nullptr;
};

template <class S>
struct slot_variant;
template <class... Es>
struct slot_variant<event_set<Es...>> {
    // The payloads keep their indices (the dispatch table's rows); control goes last.
    using type = std::variant<Es..., control_entry>;
};

/// Bookkeeping for the less common posts; absent (null) on the plain post path.
struct delivery_extras {
    enum class purpose : std::uint8_t { deliver, requeue, release };
    /// A requeued dead letter as the store held it, but for its event (the delivery's own):
    /// what goes back to the store if stop() cuts the requeued delivery off.
    struct letter_record {
        metadata meta;
        std::uint32_t attempts = 0;
        std::string last_error;
        std::chrono::system_clock::time_point first_failure{};
        std::chrono::system_clock::time_point last_failure{};
        bool parks_key = false;
    };
    purpose what = purpose::deliver;
    std::vector<std::string> only;        ///< subscriptions to deliver to; empty: all
    std::uint64_t letter_id = 0;          ///< requeue / release: the dead letter it comes from
    std::optional<letter_record> letter;  ///< requeue only
    bool tracked = false;
    std::promise<delivery_report> promise;
    delivery_report report;
};

template <class Set>
struct delivery {
    using event_type = typename slot_variant<Set>::type;

    template <class T, class E>
    delivery(std::in_place_type_t<T> type, E&& e, const metadata& m,
             std::unique_ptr<delivery_extras>&& x) noexcept(std::is_nothrow_constructible_v<T, E&&>)
        : event(type, std::forward<E>(e)), meta(m), extras(std::move(x)) {}

    event_type event;
    metadata meta;
    std::unique_ptr<delivery_extras> extras;
};

}  // namespace detail

template <class Set>
class engine {
    static_assert(is_event_set<Set>,
                  "evbus: engine<Set> needs an evbus::event_set<...>; use the bus's event set");
    static_assert(std::is_copy_constructible_v<typename Set::variant_type>,
                  "evbus: engine<Set> needs copyable payloads: dead letters and parked events "
                  "keep a copy of the event");

public:
    using events = Set;
    using variant_type = typename Set::variant_type;
    using letter = dead_letter<Set>;
    using clock = std::chrono::steady_clock;

    /// Starts the shards. Throws std::invalid_argument naming a bad option and its value,
    /// std::bad_alloc when the rings do not fit in memory, std::system_error when a thread
    /// cannot start. The bus must outlive the engine.
    explicit engine(bus<Set>& source, engine_options<Set> options = {})
        : options_(checked(std::move(options))),
          registry_(source.table()),
          store_(options_.dead_letters ? options_.dead_letters
                                       : std::make_shared<in_memory_dead_letter_store<Set>>()),
          runtime_(*registry_, source.errors(), settings_of(options_)) {
        shards_.reserve(options_.shards);
        std::vector<detail::shard_runtime*> raw;
        for (std::size_t i = 0; i < options_.shards; ++i) {
            shards_.push_back(std::make_unique<shard>(*this, i, options_.ring_capacity));
            raw.push_back(shards_.back().get());
        }
        runtime_.attach(std::move(raw));
        repark_from_store();
        try {
            for (auto& s : shards_) s->start();
            runtime_.start_watchdog();
        } catch (...) {
            runtime_.abort();
            for (auto& s : shards_) s->finish_and_join();
            throw;
        }
    }

    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    /// stop(now + shutdown_budget) unless stopped already; what did not run goes to the
    /// error sink.
    ~engine() {
        try {
            stop(detail::deadline_in(options_.shutdown_budget));
        } catch (...) {
            // Out of memory while building the report: still never leave threads running.
            runtime_.abort();
            for (auto& s : shards_) s->finish_and_join();
            runtime_.stop_watchdog();
        }
    }

    // ---- posting -------------------------------------------------------------------------

    /// Queues `event` (a payload of the set, or the set's variant) for every subscription of
    /// its type; blocks while the shard's ring is full. Throws std::system_error with
    /// engine_errc::closed after stop(), or engine_errc::full when called from a handler
    /// into its own full shard. Thread-safe; never allocates for a non-allocating payload.
    template <class E>
    void post(E&& event, metadata meta = {}) {
        throw_if(submit(std::forward<E>(event), meta, nullptr, true), "post");
    }

    /// Like post(), but returns engine_errc::full instead of blocking, engine_errc::closed
    /// after stop(), and an empty code when the event was queued. Thread-safe; lock-free on
    /// the ring; never allocates for a non-allocating payload.
    template <class E>
    [[nodiscard]] std::error_code try_post(E&& event, metadata meta = {}) {
        return submit(std::forward<E>(event), meta, nullptr, false);
    }

    /// Like post(), for the named subscriptions only (names not subscribed are ignored): a
    /// durable outbox resubmits just the unfinished deliveries of an event. An empty list
    /// throws std::invalid_argument and queues nothing (post() is the call for every
    /// subscription). Allocates.
    template <class E>
    void post_to(std::vector<std::string> subscriptions, E&& event, metadata meta = {}) {
        if (subscriptions.empty()) {
            throw std::invalid_argument(
                "evbus: engine::post_to() got no subscription names; nothing was queued (use "
                "post() to deliver to every subscription)");
        }
        auto x = std::make_unique<detail::delivery_extras>();
        x->only = std::move(subscriptions);
        throw_if(submit(std::forward<E>(event), meta, std::move(x), true), "post_to");
    }

    /// Like post(), and the future gets each subscription's outcome once all of them
    /// finished (or were cut off by stop()). Allocates.
    template <class E>
    [[nodiscard]] std::future<delivery_report> post_tracked(E&& event, metadata meta = {}) {
        auto x = std::make_unique<detail::delivery_extras>();
        x->tracked = true;
        std::future<delivery_report> result = x->promise.get_future();
        throw_if(submit(std::forward<E>(event), meta, std::move(x), true), "post_tracked");
        return result;
    }

    /// post_tracked(...).get(). Must not be called from a handler of this engine.
    template <class E>
    delivery_report post_and_wait(E&& event, metadata meta = {}) {
        EVBUS_ASSERT(!runtime_.on_worker(),
                     "evbus: engine::post_and_wait() from one of the engine's own handlers "
                     "could wait for itself; use post_tracked() and do not block on it there");
        return post_tracked(std::forward<E>(event), std::move(meta)).get();
    }

    // ---- lifecycle -----------------------------------------------------------------------

    /// Returns when every event accepted before the call has been handled (succeeded,
    /// dead-lettered, or parked); after stop() began, when stop() finished. Must not be
    /// called from a handler of this engine. Thread-safe; does not allocate.
    void drain() {
        EVBUS_ASSERT(!runtime_.on_worker(),
                     "evbus: engine::drain() from one of the engine's own handlers would wait "
                     "for itself");
        const detail::drain_registration registered(runtime_);
        detail::drain_ticket ticket;
        ticket.remaining = shards_.size();  // before the first marker is visible to a worker
        for (auto& s : shards_) {
            const detail::post_guard guard(*s);
            if (!guard.entered()) {
                // stop() began: it finishes every accepted event (or reports it) and joins
                // the workers, which also consumes the markers pushed so far.
                runtime_.wait_stopped();
                return;
            }
            s->push_marker(ticket);
        }
        runtime_.wait_ticket(ticket);
    }

    /// Stops: refuses new posts, drains until `deadline`, then cuts off what has not started
    /// (running handlers see their stop_token requested and are waited for), joins the
    /// workers and reports what did not run. Later calls return the first call's report.
    /// Must not be called from a handler of this engine. Thread-safe.
    stop_report stop(clock::time_point deadline) {
        EVBUS_ASSERT(!runtime_.on_worker(),
                     "evbus: engine::stop() from one of the engine's own handlers would wait "
                     "for itself");
        const std::lock_guard lock(lifecycle_);
        if (stopped_) return report_;
        // Every post that will be accepted claimed its ring position before close() set the
        // flag (see "Shutdown" above), so it lies before the marker each shard gets below:
        // a shard that reached its marker has handled everything it accepted.
        bool in_time = runtime_.close(deadline);
        detail::drain_ticket ticket;
        // Set before the first marker is visible to a worker (the ring publishes it).
        ticket.remaining = shards_.size();
        std::size_t marked = 0;
        if (in_time) {
            while (marked < shards_.size() &&
                   shards_[marked]->push_marker_until(ticket, deadline)) {
                ++marked;
            }
            in_time = marked == shards_.size() && runtime_.wait_ticket(ticket, deadline);
        }
        if (!in_time) {
            // Past the deadline: workers now cut off what has not started, so the markers
            // still missing get through and are reached without running handlers.
            runtime_.abort();
            runtime_.wait_producers();
            for (; marked < shards_.size(); ++marked) shards_[marked]->push_marker(ticket);
            runtime_.wait_ticket(ticket);
        }
        for (auto& s : shards_) s->finish_and_join();
        runtime_.stop_watchdog();

        stop_report r;
        r.drained = in_time;
        for (auto& s : shards_) {
            auto ids = s->take_not_run();
            r.not_run.insert(r.not_run.end(), ids.begin(), ids.end());
            s->collect_parked(r.parked);
        }
        r.drained = r.drained && r.not_run.empty();
        report_ = r;
        stopped_ = true;
        runtime_.mark_stopped();
        runtime_.wait_drainers();  // none is left inside the engine when stop() returns
        return r;
    }

    /// stop(now + shutdown_budget).
    stop_report stop() { return stop(detail::deadline_in(options_.shutdown_budget)); }

    // ---- dead letters --------------------------------------------------------------------

    /// The dead-letter store (list letters there). Thread-safe.
    [[nodiscard]] dead_letter_store<Set>& dead_letters() const noexcept { return *store_; }

    /// Takes letter `id` out of the store and delivers it again, to its subscription only,
    /// through the shard of its key (so it keeps its place in the key's order; when it heads
    /// a parked key and succeeds, the parked events follow in order). Blocks while the ring
    /// is full. Returns no_such_dead_letter or closed (the letter then stays), else empty.
    /// If stop() cuts the accepted delivery off, the store gets the letter back as it was
    /// (dead_letter_store::put_back) and stop_report::not_run lists its event.
    /// Thread-safe; allocates.
    [[nodiscard]] std::error_code requeue(std::uint64_t id) {
        return resubmit(id, detail::delivery_extras::purpose::requeue);
    }

    /// Removes letter `id` for good; when it heads a parked key, the events parked behind it
    /// run next, in order. Returns no_such_dead_letter or closed, else empty. Thread-safe.
    [[nodiscard]] std::error_code discard(std::uint64_t id) {
        return resubmit(id, detail::delivery_extras::purpose::release);
    }

    // ---- observation ---------------------------------------------------------------------

    /// Counters per shard and per subscription. Thread-safe; allocates.
    [[nodiscard]] engine_metrics metrics() const { return runtime_.metrics(); }
    /// Whether the engine accepts posts and which shards are stuck. Thread-safe.
    [[nodiscard]] engine_health health() const { return runtime_.health(); }
    [[nodiscard]] std::size_t shard_count() const noexcept { return shards_.size(); }
    /// The shard an event with this (stamped) metadata goes to. Thread-safe.
    [[nodiscard]] std::size_t shard_of(const metadata& meta) const noexcept {
        return evbus::shard_of(meta, shards_.size());
    }

private:
    using slot = detail::delivery<Set>;
    using slot_event = typename detail::slot_variant<Set>::type;
    using purpose = detail::delivery_extras::purpose;
    using run_kind = detail::run_result::kind;

    struct parked_event {
        variant_type event;
        metadata meta;
    };
    struct park_state {
        std::uint64_t head = 0;  ///< the dead letter the key waits behind; 0 while releasing
        std::deque<parked_event> waiting;
    };
    // subscription name -> key -> state. Worker only.
    using park_map =
        std::map<std::string, std::map<std::string, park_state, std::less<>>, std::less<>>;

    class shard final : public detail::shard_runtime {
    public:
        shard(engine& owner, std::size_t index, std::size_t capacity)
            : detail::shard_runtime(owner.runtime_, index), owner_(owner), ring_(capacity) {
            reached_.reserve(8);  // concurrent drains; more only allocate
        }

        [[nodiscard]] std::size_t approx_depth() const noexcept override {
            return ring_.approx_size();
        }

        void start() {
            thread_ = std::thread([this] { loop(); });
        }

        void finish_and_join() noexcept {
            finish_.store(true, std::memory_order_seq_cst);  // then wake: see wait_for_items()
            ring_.wake_consumer();
            if (thread_.joinable()) thread_.join();
        }

        // Producers: push an event built from args, blocking or not.
        template <class... A>
        std::error_code push(bool block, A&&... args) {
            if constexpr (std::is_nothrow_constructible_v<slot, A&&...>) {
                // The ring constructs in place only when it has a slot, so the arguments are
                // untouched when it is full and can be used again below.
                if (ring_.try_emplace(std::forward<A>(args)...)) return {};
                if (!block || detail::engine_runtime::on_worker_of(*this)) {
                    return engine_errc::full;
                }
                ring_.push(slot(std::forward<A>(args)...));
            } else {
                slot value(std::forward<A>(args)...);
                if (ring_.try_push(std::move(value))) return {};
                if (!block || detail::engine_runtime::on_worker_of(*this)) {
                    return engine_errc::full;
                }
                ring_.push(std::move(value));
            }
            return {};
        }

        // The post path. The ring claim registers the post with stop(): the engine's flag is
        // read only after the claim (a seq_cst RMW), so either stop()'s marker lies behind
        // this position, or the post sees the engine closed and fills its slot with a
        // refusal the worker skips. See "Shutdown" in engine.hpp's banner.
        template <class... A>
        std::error_code submit(bool block, A&&... args) {
            if constexpr (std::is_nothrow_constructible_v<slot, A&&...>) {
                for (;;) {
                    bool refused = false;
                    // The arguments are used only when the claim succeeded, then we return.
                    const bool claimed = ring_.try_push_with([&](void* storage) noexcept {
                        if (runtime().accepting()) {
                            ::new (storage) slot(std::forward<A>(args)...);
                        } else {
                            ::new (storage) slot(std::in_place_type<detail::control_entry>,
                                                 detail::control_entry{}, metadata{}, nullptr);
                            refused = true;
                        }
                    });
                    if (claimed) {
                        if (!refused) return {};
                        count_non_event();
                        return engine_errc::closed;
                    }
                    if (!block || detail::engine_runtime::on_worker_of(*this)) {
                        // A stop() that began since the claim failed makes this post closed,
                        // not full: retrying would never help.
                        return runtime().accepting() ? engine_errc::full : engine_errc::closed;
                    }
                    // Registered while it waits: stop() wakes it and then waits until it has
                    // left, so an engine destroyed right after stop() (or by its destructor)
                    // has no post still waiting inside it.
                    const detail::post_guard waiting(*this, true);
                    if (!waiting.entered()) return engine_errc::closed;
                    ring_.wait_for_space([this] { return !runtime().accepting(); });
                    if (!runtime().accepting()) return engine_errc::closed;
                }
            } else {
                // Built before the claim, so a throwing constructor never holds a position.
                slot value(std::forward<A>(args)...);
                return submit(block, std::move(value));
            }
        }

        void wake_producers() noexcept override { ring_.wake_producers(); }

        [[nodiscard]] std::uint64_t ring_claims() const noexcept override {
            return ring_.claimed();
        }

        // Not from a worker (drain() and stop() assert it), so the blocking push succeeds.
        void push_marker(detail::drain_ticket& ticket) {
            const std::error_code ec = push_marker(true, ticket);
            EVBUS_ASSERT(!ec, "evbus: drain marker could not be queued");
        }

        bool push_marker_until(detail::drain_ticket& ticket, clock::time_point deadline) {
            auto pause = std::chrono::microseconds(50);
            for (;;) {
                if (!push_marker(false, ticket)) return true;
                if (clock::now() >= deadline) return false;
                std::this_thread::sleep_for(pause);
                if (pause < std::chrono::milliseconds(5)) pause *= 2;
            }
        }

        // After join: the ids of parked events, each reported to the error sink.
        void collect_parked(std::vector<event_id>& out) {
            for (auto& [sub, keys] : parks_) {
                for (auto& [key, st] : keys) {
                    for (const parked_event& p : st.waiting) {
                        out.push_back(p.meta.id);
                        runtime().report(p.meta, sub,
                                         "evbus: not run: still parked behind dead letter " +
                                             std::to_string(st.head) + " when the engine stopped",
                                         0);
                    }
                }
            }
            parks_.clear();
        }

        // Makes dead letter `id` the head `key` waits behind for `sub`: always after a new
        // failure (`replace`), or the oldest one when re-parking from the store.
        void park_head(const std::string& sub, std::string_view key, std::uint64_t id,
                       bool replace) {
            auto& keys = parks_[sub];
            auto it = keys.find(key);
            if (it == keys.end()) it = keys.emplace(std::string(key), park_state{}).first;
            if (replace || it->second.head == 0 || id < it->second.head) it->second.head = id;
        }

    private:
        std::error_code push_marker(bool block, detail::drain_ticket& ticket) {
            const std::error_code ec = push(block, std::in_place_type<detail::control_entry>,
                                            detail::control_entry{&ticket}, metadata{}, nullptr);
            if (!ec) count_non_event();
            return ec;
        }

        void loop() noexcept {
            enter_worker_thread();
            const std::size_t batch = runtime().settings().batch_size;
            // A batch ends at a drain marker: the marker's drain() then returns once the
            // events before it are done, not after those queued behind it in the batch.
            const auto process = [this](slot& d) noexcept {
                handle(d);
                return reached_.empty();
            };
            // The clock (see "Clock" at shard_runtime::run): a batch's first call starts at a
            // reading taken after the previous batch, or, after an idle wait, at the idle
            // loop's last reading, taken in place of a CPU pause before the event was seen,
            // so an event that arrives at a waiting worker does not wait for a clock read.
            // Read after every batch, calls or not, a reading is never more than one batch
            // old (entries without a call, e.g. events nobody subscribed to, leave it as is).
            restart_clock();
            for (;;) {
                const std::size_t n = ring_.consume(process, batch);
                arrive_at_markers();
                if (n > 0) {
                    restart_clock();
                    continue;
                }
                if (!ring_.wait_for_items(finish_, [this]() noexcept { restart_clock(); })) break;
            }
            // finish_ is set only after every producer left: what is queued now is all.
            for (;;) {
                restart_clock();
                if (ring_.consume(process, batch) == 0) break;
                arrive_at_markers();
            }
        }

        // Drain markers reached in the last batch count only once consume() freed the batch,
        // so a drain() returns after the events before its marker were handled and their
        // slots (payloads included) destroyed.
        void arrive_at_markers() noexcept {
            for (detail::drain_ticket* t : reached_) runtime().arrive(*t);
            reached_.clear();
        }

        void handle(slot& d) noexcept {
            try {
                if (auto* c = std::get_if<detail::control_entry>(&d.event)) {
                    if (c->ticket != nullptr) {
                        try {
                            reached_.push_back(c->ticket);  // see arrive_at_markers()
                        } catch (...) {
                            runtime().arrive(*c->ticket);  // out of memory: arrive right away
                        }
                    } else if (d.extras) {
                        released(d);
                    }  // else a post refused after stop() began (shard::submit): nothing to do
                    return;
                }
                if (runtime().aborting()) {
                    put_back(d);
                    cut_off(d, 0);
                    return;
                }
                if (d.extras && d.extras->what == purpose::requeue) {
                    requeued(d);
                } else {
                    deliver(d);
                }
            } catch (...) {
                // Out of memory while describing a failure or noting an outcome: keep the
                // worker alive and say what happened. An event still counts as handled (it
                // throws before deliver() and requeued() count it, never after), so that
                // accepted == handled + not_run holds.
                try {
                    runtime().report(d.meta, "",
                                     "evbus: internal error while delivering: " +
                                         describe_exception(std::current_exception()),
                                     d.meta.attempt);
                } catch (...) {
                    // Nothing left to report with.
                }
                if (!std::holds_alternative<detail::control_entry>(d.event)) detail::bump(handled);
                finish_report(d);
            }
        }

        static bool wanted(const detail::delivery_extras* x, const std::string& name) noexcept {
            if (x == nullptr || x->only.empty()) return true;
            for (const auto& n : x->only) {
                if (n == name) return true;
            }
            return false;
        }

        static const void* payload_of(const slot_event& e) noexcept {
            return std::visit([](const auto& v) -> const void* { return &v; }, e);
        }
        static const void* payload_of(const variant_type& e) noexcept {
            return std::visit([](const auto& v) -> const void* { return &v; }, e);
        }
        static variant_type to_event(const slot_event& e) {
            return std::visit(
                [](const auto& v) -> variant_type {
                    using T = std::remove_cvref_t<decltype(v)>;
                    if constexpr (std::is_same_v<T, detail::control_entry>) {
                        throw std::logic_error("evbus: a control entry is not an event");
                    } else {
                        return variant_type(std::in_place_type<T>, v);
                    }
                },
                e);
        }
        static const variant_type& to_event(const variant_type& e) noexcept { return e; }

        [[nodiscard]] bool parked_for(const detail::subscription_state& sub,
                                      const metadata& meta) const {
            if (parks_.empty() || !sub.options.park_key_on_failure || meta.key.empty()) {
                return false;
            }
            const auto s = parks_.find(sub.name);
            return s != parks_.end() && s->second.find(meta.key.view()) != s->second.end();
        }

        park_state* park_of(std::string_view sub, std::string_view key) {
            const auto s = parks_.find(sub);
            if (s == parks_.end()) return nullptr;
            const auto k = s->second.find(key);
            return k == s->second.end() ? nullptr : &k->second;
        }

        static void add_outcome(detail::delivery_extras* x, const std::string& sub,
                                delivery_status status, std::uint32_t attempts,
                                std::string_view error) {
            if (x == nullptr || !x->tracked) return;
            x->report.outcomes.push_back(
                subscription_outcome{sub, status, attempts, std::string(error)});
        }

        void finish_report(slot& d) noexcept {
            detail::delivery_extras* x = d.extras.get();
            if (x == nullptr || !x->tracked) return;
            x->tracked = false;  // exactly once
            x->report.event = d.meta.id;
            try {
                x->promise.set_value(std::move(x->report));
            } catch (...) {
                // Already satisfied: nothing to do.
            }
        }

        // Every wanted subscription from row position `from` on did not run.
        void cut_off(slot& d, std::size_t from) {
            const auto& row = table().rows[d.event.index()];
            for (std::size_t i = from; i < row.size(); ++i) {
                if (wanted(d.extras.get(), row[i].sub->name)) {
                    add_outcome(d.extras.get(), row[i].sub->name, delivery_status::not_run, 0,
                                "the engine stopped before it ran");
                }
            }
            note_not_run(d.meta, "");
            finish_report(d);
        }

        void deliver(slot& d) {
            const detail::dispatch_table& t = table();
            const std::size_t index = d.event.index();
            const auto& row = t.rows[index];
            const auto& stats = stats_row(index);
            const void* payload = payload_of(d.event);
            detail::delivery_extras* x = d.extras.get();
            for (std::size_t i = 0; i < row.size(); ++i) {
                const detail::dispatch_entry& entry = row[i];
                if (!wanted(x, entry.sub->name)) continue;
                if (runtime().aborting()) {
                    cut_off(d, i);
                    return;
                }
                if (parked_for(*entry.sub, d.meta)) {
                    park(d.event, d.meta, *entry.sub, *stats[i], x);
                    continue;
                }
                if (deliver_one(d.event, payload, d.meta, entry, *stats[i], x) ==
                    run_kind::interrupted) {
                    cut_off(d, i + 1);
                    return;
                }
            }
            detail::bump(handled);
            finish_report(d);
        }

        template <class V>
        void park(const V& event, const metadata& meta, const detail::subscription_state& sub,
                  detail::subscription_stats& stats, detail::delivery_extras* x) {
            park_state* st = park_of(sub.name, meta.key.view());
            try {
                st->waiting.push_back(parked_event{to_event(event), meta});
            } catch (...) {
                // The payload's copy threw: this delivery is lost, reported; the others of
                // the row go on.
                const std::string why =
                    "evbus: the event could not be parked, the delivery is lost: " +
                    describe_exception(std::current_exception());
                runtime().report(meta, sub.name, why, 0);
                add_outcome(x, sub.name, delivery_status::not_run, 0, why);
                restart_clock();
                return;
            }
            detail::bump(stats.parked);
            detail::bump(parked);
            restart_clock();  // copying into the park is not the next call's time
            add_outcome(x, sub.name, delivery_status::parked, 0,
                        "parked behind dead letter " + std::to_string(st->head));
        }

        // Runs one subscription for one event and settles the outcome: observer, report,
        // dead letter (and the park it may start).
        template <class V>
        run_kind deliver_one(const V& event, const void* payload, metadata& meta,
                             const detail::dispatch_entry& entry, detail::subscription_stats& stats,
                             detail::delivery_extras* x) {
            const detail::run_result r = run(entry, stats, payload, meta);
            // The usual case, with nothing to settle, stays short enough to be inlined.
            if (r.outcome != run_kind::succeeded || observed_ || x != nullptr) {
                settle(event, meta, entry, stats, x, r);
            }
            return r.outcome;
        }

        // deliver_one()'s outcomes other than a plain success.
        template <class V>
        void settle(const V& event, metadata& meta, const detail::dispatch_entry& entry,
                    detail::subscription_stats& stats, detail::delivery_extras* x,
                    const detail::run_result& r) {
            const detail::subscription_state& sub = *entry.sub;
            switch (r.outcome) {
                case run_kind::skipped:
                    break;
                case run_kind::succeeded:
                    if (observed_) {
                        runtime().observe(meta, sub.name, delivery_status::succeeded, r.attempts,
                                          {}, 0);
                        restart_clock();  // the observer's time is not the next call's
                    }
                    add_outcome(x, sub.name, delivery_status::succeeded, r.attempts, {});
                    break;
                case run_kind::failed: {
                    const bool parks = sub.options.park_key_on_failure && !meta.key.empty();
                    const std::uint64_t id = dead_letter_of(event, meta, sub, stats, r, parks);
                    if (parks && id != 0) park_head(sub.name, meta.key.view(), id, true);
                    runtime().observe(meta, sub.name, delivery_status::dead_lettered, r.attempts,
                                      failure().error, id);
                    add_outcome(x, sub.name, delivery_status::dead_lettered, r.attempts,
                                failure().error);
                    restart_clock();  // the store's time is not the next call's
                    break;
                }
                case run_kind::interrupted:
                    add_outcome(x, sub.name, delivery_status::not_run, r.attempts,
                                "the engine stopped while it waited to retry; last error: " +
                                    failure().error);
                    break;
            }
        }

        template <class V>
        std::uint64_t dead_letter_of(const V& event, const metadata& meta,
                                     const detail::subscription_state& sub,
                                     detail::subscription_stats& stats, const detail::run_result& r,
                                     bool parks) {
            std::uint64_t id = 0;
            try {
                // Copying the payload may throw too (a payload's copy constructor, memory):
                // like a failing store, that loses this one delivery, reported, not the
                // subscriptions after it in the row. (Built whole: payloads need no default
                // constructor.)
                id = owner_.store_->add(letter{0, to_event(event), meta, sub.name, r.attempts,
                                               failure().error, failure().first, failure().last,
                                               parks});
            } catch (...) {
                runtime().report(
                    meta, sub.name,
                    "evbus: the dead letter could not be stored, the delivery is lost: " +
                        describe_exception(std::current_exception()),
                    r.attempts);
                return 0;
            }
            detail::bump(dead_lettered);
            detail::bump(stats.dead_lettered);
            return id;
        }

        // The row position of subscription `name` for alternative `index`, if subscribed.
        std::size_t find_entry(std::size_t index, std::string_view name) {
            const auto& row = table().rows[index];
            for (std::size_t i = 0; i < row.size(); ++i) {
                if (row[i].sub->name == name) return i;
            }
            return row.size();
        }

        // A requeued dead letter: its subscription only, through the parking rules.
        void requeued(slot& d) {
            detail::delivery_extras& x = *d.extras;
            const std::string& name = x.only.front();
            const std::size_t index = d.event.index();
            const std::size_t i = find_entry(index, name);
            const auto& row = table().rows[index];
            if (i == row.size()) {
                runtime().report(d.meta, name,
                                 "evbus: requeued dead letter " + std::to_string(x.letter_id) +
                                     " was not delivered: its subscription is gone",
                                 0);
                detail::bump(handled);
                return;
            }
            const detail::dispatch_entry& entry = row[i];
            detail::subscription_stats& stats = *stats_row(index)[i];
            park_state* st = d.meta.key.empty() ? nullptr : park_of(name, d.meta.key.view());
            if (st != nullptr && st->head != x.letter_id) {
                park(d.event, d.meta, *entry.sub, stats, nullptr);  // not the head: wait
            } else {
                const run_kind k =
                    deliver_one(d.event, payload_of(d.event), d.meta, entry, stats, nullptr);
                if (k == run_kind::interrupted) {
                    put_back(d);
                    note_not_run(d.meta, name);
                    return;  // counted in not_run, so not in handled
                }
                if (st != nullptr && k != run_kind::failed) release(name, d.meta.key.view());
            }
            detail::bump(handled);
        }

        // A requeued dead letter that stop() cut off goes back to the store as it was before
        // the requeue (dead_letter_store::put_back), so stopping loses no letter;
        // stop_report::not_run lists it as well. Anything else: nothing to do.
        void put_back(const slot& d) noexcept {
            const detail::delivery_extras* x = d.extras.get();
            if (x == nullptr || !x->letter) return;
            const detail::delivery_extras::letter_record& r = *x->letter;
            try {
                owner_.store_->put_back(letter{0, to_event(d.event), r.meta, x->only.front(),
                                               r.attempts, r.last_error, r.first_failure,
                                               r.last_failure, r.parks_key});
            } catch (...) {
                try {
                    runtime().report(d.meta, x->only.front(),
                                     "evbus: requeued dead letter " + std::to_string(x->letter_id) +
                                         " was cut off by stop() and could not be put back: " +
                                         describe_exception(std::current_exception()),
                                     0);
                } catch (...) {
                    // Nothing left to report with.
                }
            }
        }

        // A discarded dead letter: if it headed a parked key, the key moves on.
        void released(slot& d) {
            const detail::delivery_extras& x = *d.extras;
            const park_state* st = park_of(x.only.front(), d.meta.key.view());
            if (st != nullptr && st->head == x.letter_id) {
                release(x.only.front(), d.meta.key.view());
            }
        }

        // Runs the events parked behind a resolved head, in order, until one fails again
        // (it becomes the new head) or none is left (the key is free again).
        void release(const std::string& name, std::string_view key) {
            const auto s = parks_.find(name);
            if (s == parks_.end()) return;
            const auto k = s->second.find(key);
            if (k == s->second.end()) return;
            park_state& st = k->second;
            st.head = 0;
            while (!st.waiting.empty()) {
                if (runtime().aborting()) return;  // what is left is reported as parked
                parked_event item = std::move(st.waiting.front());
                st.waiting.pop_front();
                const std::size_t index = item.event.index();
                const std::size_t i = find_entry(index, name);
                const auto& row = table().rows[index];
                if (i == row.size()) continue;  // unsubscribed meanwhile: nobody to deliver to
                const run_kind r = deliver_one(item.event, payload_of(item.event), item.meta,
                                               row[i], *stats_row(index)[i], nullptr);
                if (r == run_kind::interrupted) {
                    note_not_run(item.meta, name, true);  // counted in handled when it parked
                    return;
                }
                if (r == run_kind::failed && st.head != 0) return;  // parked again behind it
            }
            s->second.erase(k);
            if (s->second.empty()) parks_.erase(s);
        }

        engine& owner_;
        mpsc_ring<slot> ring_;
        std::atomic<bool> finish_{false};
        std::thread thread_;
        const bool observed_ = static_cast<bool>(owner_.options_.on_outcome);
        park_map parks_;  // worker only (and the constructor / stop() around it)
        std::vector<detail::drain_ticket*> reached_;  // worker only
    };

    static engine_options<Set> checked(engine_options<Set> o) {
        if (o.shards == 0) o.shards = std::max<std::size_t>(1, std::thread::hardware_concurrency());
        detail::check_shard_sizes<Set>(o.shards, o.ring_capacity, "engine_options");
        if (o.batch_size == 0) {
            throw std::invalid_argument("evbus: engine_options.batch_size is 0; it must be >= 1");
        }
        const auto not_negative = [](std::chrono::nanoseconds d, const char* name) {
            if (d.count() < 0) {
                throw std::invalid_argument("evbus: engine_options." + std::string(name) + " is " +
                                            std::to_string(d.count()) +
                                            " ns; it must not be negative");
            }
        };
        not_negative(o.stuck_after, "stuck_after");
        not_negative(o.watchdog_interval, "watchdog_interval");
        not_negative(o.shutdown_budget, "shutdown_budget");
        return o;
    }

    static detail::engine_settings settings_of(const engine_options<Set>& o) {
        detail::engine_settings s;
        s.shards = o.shards;
        s.batch_size = o.batch_size;
        s.stuck_after = o.stuck_after;
        s.watchdog_interval = o.watchdog_interval;
        s.on_outcome = o.on_outcome;
        s.seed = o.jitter_seed;
        return s;
    }

    static void throw_if(std::error_code ec, const char* what) {
        if (!ec) return;
        if (ec == engine_errc::full) {
            throw std::system_error(ec, std::string("evbus: engine::") + what +
                                            "() from a handler into its own shard's full ring "
                                            "would wait for itself; use try_post() or a larger "
                                            "ring_capacity");
        }
        throw std::system_error(ec, std::string("evbus: engine::") + what);
    }

    // Stamps, routes and queues one event (a payload or the set's variant).
    template <class E>
    std::error_code submit(E&& event, metadata& meta, std::unique_ptr<detail::delivery_extras> x,
                           bool block) {
        using T = std::remove_cvref_t<E>;
        if constexpr (std::is_same_v<T, variant_type>) {
            return std::visit(
                [&](auto&& e) -> std::error_code {
                    return submit(std::forward<decltype(e)>(e), meta, std::move(x), block);
                },
                std::forward<E>(event));
        } else if constexpr (!Set::template contains<T>) {
            static_assert(detail::event_not_in_set<T, Set>::ok);
            return {};
        } else {
            // Checked first so that a post after stop() never touches a ring; the check that
            // counts is the one after the claim (shard::submit).
            if (!runtime_.accepting()) return engine_errc::closed;
            bus<Set>::prepare(event, meta);
            shard& s = *shards_[evbus::shard_of(meta, shards_.size())];
            return s.submit(block, std::in_place_type<T>, std::forward<E>(event), meta,
                            std::move(x));
        }
    }

    std::error_code resubmit(std::uint64_t id, purpose what) {
        EVBUS_ASSERT(!runtime_.on_worker(),
                     "evbus: engine::requeue()/discard() from one of the engine's own handlers "
                     "could wait for its own full shard; call it from another thread");
        std::optional<letter> found = store_->find(id);
        if (!found) return engine_errc::no_such_dead_letter;
        shard& s = *shards_[evbus::shard_of(found->meta, shards_.size())];
        detail::post_guard guard(s);
        if (!guard.entered()) return engine_errc::closed;  // the letter stays in the store
        // Allocated before the letter leaves the store: from take() on nothing may throw, or
        // the letter would be in neither the store nor the ring. (Moves of the payload are
        // noexcept, event_set checks; metadata copies allocate nothing.)
        auto x = std::make_unique<detail::delivery_extras>();
        x->what = what;
        x->only.push_back(found->subscription);  // a letter's subscription never changes
        x->letter_id = id;
        std::optional<letter> l = store_->take(id);
        if (!l) return engine_errc::no_such_dead_letter;  // taken meanwhile by another call
        if (what == purpose::release && !l->parks_key) return {};  // nothing waits behind it
        metadata meta = l->meta;
        meta.attempt = 1;
        // Blocking pushes from a thread that is not a worker always succeed.
        if (what == purpose::release) {
            (void)s.push(true, std::in_place_type<detail::control_entry>, detail::control_entry{},
                         meta, std::move(x));
            s.count_non_event();
            return {};
        }
        x->letter = detail::delivery_extras::letter_record{
            l->meta,          l->attempts,     std::move(l->last_error),
            l->first_failure, l->last_failure, l->parks_key};
        std::visit(
            [&](auto&& e) {
                using T = std::remove_cvref_t<decltype(e)>;
                (void)s.push(true, std::in_place_type<T>, std::move(e), meta, std::move(x));
            },
            std::move(l->event));
        return {};
    }

    // After a restart, a key whose head letter is still in the store stays parked.
    void repark_from_store() {
        for (const letter& l : store_->list()) {
            if (!l.parks_key || l.meta.key.empty()) continue;
            shards_[evbus::shard_of(l.meta, shards_.size())]->park_head(
                l.subscription, l.meta.key.view(), l.id, false);
        }
    }

    const engine_options<Set> options_;
    const std::shared_ptr<detail::registry> registry_;
    const std::shared_ptr<dead_letter_store<Set>> store_;
    detail::engine_runtime runtime_;
    std::vector<std::unique_ptr<shard>> shards_;

    std::mutex lifecycle_;
    bool stopped_ = false;
    stop_report report_;
};

}  // namespace evbus
