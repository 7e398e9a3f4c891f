#include <evbus/detail/engine_runtime.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <random>
#include <string>
#include <utility>

#include <evbus/detail/deadline.hpp>
#include <evbus/detail/dispatch_context.hpp>
#include <evbus/detail/thread_name.hpp>
#include <evbus/handler.hpp>
#include <evbus/retry.hpp>

namespace evbus {
namespace {

class engine_category_impl final : public std::error_category {
public:
    [[nodiscard]] const char* name() const noexcept override { return "evbus.engine"; }
    [[nodiscard]] std::string message(int code) const override {
        switch (static_cast<engine_errc>(code)) {
            case engine_errc::full:
                return "the shard's ring is full; nothing was queued (retry later, or use the "
                       "blocking post)";
            case engine_errc::closed:
                return "the engine is stopped and accepts no more events (post after stop())";
            case engine_errc::no_such_dead_letter:
                return "no dead letter with that id in the engine's dead-letter store";
        }
        return "unknown evbus.engine error " + std::to_string(code);
    }
};

std::string duration_text(std::chrono::nanoseconds d) {
    const auto ns = d.count();
    if (ns >= 10'000'000'000) return std::to_string(ns / 1'000'000'000) + " s";
    if (ns >= 10'000'000) return std::to_string(ns / 1'000'000) + " ms";
    if (ns >= 10'000) return std::to_string(ns / 1'000) + " us";
    return std::to_string(ns) + " ns";
}

thread_local const detail::shard_runtime* t_worker = nullptr;

std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31U);
}

}  // namespace

const std::error_category& engine_category() noexcept {
    static const engine_category_impl category;
    return category;
}

std::error_code make_error_code(engine_errc e) noexcept {
    return {static_cast<int>(e), engine_category()};
}

std::string_view to_string(delivery_status s) noexcept {
    switch (s) {
        case delivery_status::succeeded:
            return "succeeded";
        case delivery_status::dead_lettered:
            return "dead_lettered";
        case delivery_status::parked:
            return "parked";
        case delivery_status::not_run:
            return "not_run";
    }
    return "unknown";
}

namespace detail {

// ---- shard_runtime -----------------------------------------------------------------------

shard_runtime::shard_runtime(engine_runtime& engine, std::size_t index)
    : engine_(engine),
      index_(index),
      registry_(engine.table_source()),
      token_(source_.get_token()) {
    std::uint64_t seed = engine.settings().seed;
    if (seed == 0) {
        std::random_device rd;
        seed = (static_cast<std::uint64_t>(rd()) << 32U) ^ rd();
    }
    rng_ = seed + 0x632BE59BD9B4E019ULL * (index + 1);
}

shard_runtime::~shard_runtime() = default;

void shard_runtime::enter_worker_thread() noexcept {
    t_worker = this;
    char name[32];
    std::snprintf(name, sizeof name, "evbus-shard-%zu", index_);
    name_this_thread(name);
}

bool shard_runtime::enter_post() noexcept {
    // seq_cst: the Dekker pair with engine_runtime::close(); see the header.
    producers_.fetch_add(1, std::memory_order_seq_cst);
    if (engine_.accepting()) return true;
    leave_post();
    return false;
}

void shard_runtime::leave_post() noexcept {
    engine_.leave(*this);
}

const dispatch_table& shard_runtime::reload_table() {
    const std::uint64_t v = registry_.version();
    // The snapshot may be newer than `v`; then the next call reloads once more, harmlessly.
    std::shared_ptr<const dispatch_table> next = registry_.snapshot();
    std::vector<std::vector<subscription_stats*>> rows(next->rows.size());
    for (std::size_t r = 0; r < next->rows.size(); ++r) {
        rows[r].reserve(next->rows[r].size());
        for (const dispatch_entry& e : next->rows[r]) rows[r].push_back(&stats_for(e.sub->name));
    }
    {
        const std::lock_guard lock(mutex_);
        table_.swap(next);
    }
    stats_rows_ = std::move(rows);
    version_ = v;
    return *table_;  // `next` (the old table) is released here, outside the lock
}

subscription_stats& shard_runtime::stats_for(const std::string& name) {
    const std::lock_guard lock(mutex_);
    auto it = stats_.find(name);
    if (it == stats_.end()) {
        it = stats_.emplace(name, std::make_unique<subscription_stats>()).first;
    }
    return *it->second;
}

double shard_runtime::next_unit() noexcept {
    return static_cast<double>(splitmix64(rng_) >> 11U) * 0x1.0p-53;
}

void shard_runtime::renew_stop_token() {
    const std::lock_guard lock(mutex_);
    if (engine_.aborting()) return;  // the engine is stopping: keep the request visible
    source_ = std::stop_source();
    token_ = source_.get_token();
}

bool shard_runtime::read_call(call_snapshot& out) const noexcept {
    for (int tries = 0; tries < 8; ++tries) {
        // [A1] pairs with [R1] in begin_call().
        const std::uint64_t g1 = call_generation_.load(std::memory_order_acquire);
        if ((g1 & 1U) == 0) return false;  // between calls
        // [A2] acquire, each: pairs with [R2]; validated by the reload below.
        out.started_ns = call_started_ns_.load(std::memory_order_acquire);
        out.deadline_ns = call_deadline_ns_.load(std::memory_order_acquire);
        out.sub = call_sub_.load(std::memory_order_acquire);
        const std::uint64_t hi = call_id_high_.load(std::memory_order_acquire);
        const std::uint64_t lo = call_id_low_.load(std::memory_order_acquire);
        const char* name = call_name_data_.load(std::memory_order_acquire);
        const std::size_t size = call_name_size_.load(std::memory_order_acquire);
        // Relaxed: ordered after the acquire loads above, which is all the check needs.
        if (call_generation_.load(std::memory_order_relaxed) == g1) {
            out.generation = g1;
            out.id = event_id(hi, lo);
            out.event_name = std::string_view(name, size);
            return true;
        }
    }
    return false;  // the worker moves on quickly: it is not stuck
}

std::string shard_runtime::name_of(const subscription_state* sub) const {
    // With mutex_ held the worker cannot swap tables, and a subscription of a call that
    // read_call() saw running belongs to the current table, which keeps it alive.
    if (table_) {
        for (const auto& owner : table_->owners) {
            if (owner.get() == sub) return owner->name;
        }
    }
    return "(unknown subscription)";
}

void shard_runtime::note_failure(const subscription_state& sub, subscription_stats& stats,
                                 const metadata& meta, const std::exception_ptr& thrown,
                                 const handler_result& result,
                                 std::chrono::nanoseconds overran_after) {
    std::string& error = failure_.error;
    if (thrown) {
        error = describe_exception(thrown);
        retryable_ = is_retryable(thrown, sub.options.retry);
    } else if (!result.succeeded()) {
        const bool transient = result.outcome() == handler_result::kind::retry;
        error = result.reason().empty()
                    ? std::string(transient ? "handler_result::retry" : "handler_result::fail")
                    : result.reason();
        retryable_ = transient;
    } else {
        error.clear();      // it may hold an earlier attempt's text
        retryable_ = true;  // it did its work, but too late: an overrun is worth another try
    }
    if (overran_after.count() > 0) {
        std::string text = "evbus: timeout: the call took " + duration_text(overran_after) +
                           ", its budget is " + duration_text(sub.options.timeout);
        if (!error.empty()) text += "; " + error;
        error = std::move(text);
    }
    const auto now = std::chrono::system_clock::now();
    if (meta.attempt == 1) failure_.first = now;
    failure_.last = now;
    bump(stats.failed);
    bump(failed_);
    engine_.report(meta, sub.name, error, meta.attempt);
}

void shard_runtime::note_late_commit(const subscription_state& sub, const metadata& meta,
                                     std::chrono::nanoseconds took) {
    engine_.report(meta, sub.name,
                   "evbus: timeout: the call took " + duration_text(took) + ", its budget is " +
                       duration_text(sub.options.timeout) +
                       "; its transaction had committed, so the delivery counts as handled",
                   meta.attempt);
}

run_result shard_runtime::retry(const dispatch_entry& entry, subscription_stats& stats,
                                const void* payload, metadata& meta) {
    const retry_policy& policy = entry.sub->options.retry;
    // `made` attempts failed. Counting those made, not the next one's number, means no
    // counter passes max_attempts: with max_attempts at its type's maximum, a next-attempt
    // counter would wrap to 0 after the last attempt and retry forever.
    for (std::uint32_t made = 1;; ++made) {
        if (!retryable_ || made >= policy.max_attempts) return {run_result::kind::failed, made};
        const std::uint32_t n = made + 1;
        if (!engine_.sleep_for_retry(backoff_delay(policy, n, next_unit()))) {
            return {run_result::kind::interrupted, made};
        }
        bump(stats.retried);
        bump(retried_);
        restart_clock();  // the sleep is not the next call's time
        switch (attempt(entry, stats, payload, meta, n)) {
            case attempt_outcome::succeeded:
                return {run_result::kind::succeeded, n};
            case attempt_outcome::skipped:
                return {run_result::kind::skipped, made};
            case attempt_outcome::failed:
                break;
        }
    }
}

void shard_runtime::note_not_run(const metadata& meta, std::string_view subscription,
                                 bool already_handled) {
    not_run_ids_.push_back(meta.id);
    if (!already_handled) bump(not_run_);
    engine_.report(meta, subscription,
                   "evbus: not run: the engine's stop() deadline passed before this event was "
                   "handled",
                   0);
}

// ---- engine_runtime ------------------------------------------------------------------

engine_runtime::engine_runtime(const registry& reg, error_sink& errors, engine_settings settings)
    : registry_(reg), errors_(errors), settings_(std::move(settings)) {}

engine_runtime::~engine_runtime() {
    stop_watchdog();
}

void engine_runtime::attach(std::vector<shard_runtime*> shards) {
    shards_ = std::move(shards);
}

void engine_runtime::start_watchdog() {
    if (settings_.watchdog_interval.count() <= 0) return;
    watchdog_ = std::thread([this] { watchdog_loop(); });
}

void engine_runtime::stop_watchdog() noexcept {
    {
        const std::lock_guard lock(watch_mutex_);
        watch_stop_ = true;
    }
    watch_cv_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
}

void engine_runtime::watchdog_loop() {
    name_this_thread("evbus-watchdog");
    std::unique_lock lock(watch_mutex_);
    while (!watch_stop_) {
        watch_cv_.wait_until(lock, deadline_in(settings_.watchdog_interval),
                             [this] { return watch_stop_; });
        if (watch_stop_) break;
        lock.unlock();
        watch_once();
        lock.lock();
    }
}

void engine_runtime::watch_once() {
    const std::int64_t now = to_ns(std::chrono::steady_clock::now());
    const std::int64_t limit = settings_.stuck_after.count();
    for (shard_runtime* s : shards_) {
        failure_record stuck;
        bool report_stuck = false;
        {
            const std::lock_guard lock(s->mutex_);
            shard_runtime::call_snapshot c;
            if (!s->read_call(c)) continue;
            if (c.deadline_ns != no_deadline && now > c.deadline_ns &&
                !s->source_.stop_requested()) {
                s->source_.request_stop();  // the running call's budget is spent
            }
            if (limit > 0 && now - c.started_ns > limit &&
                s->reported_generation_ != c.generation) {
                s->reported_generation_ = c.generation;
                report_stuck = true;
                stuck.event_name = std::string(c.event_name);
                stuck.event = c.id;
                stuck.subscription = s->name_of(c.sub);
                stuck.error = "evbus: shard " + std::to_string(s->index()) +
                              " is stuck: one handler call has run for " +
                              duration_text(std::chrono::nanoseconds(now - c.started_ns)) +
                              " (stuck_after is " + duration_text(settings_.stuck_after) + ")";
                stuck.at = std::chrono::system_clock::now();
            }
        }
        if (report_stuck) errors_.on_failure(stuck);
    }
}

bool engine_runtime::no_producers() const noexcept {
    for (const shard_runtime* s : shards_) {
        if (s->producers() != 0) return false;
    }
    return true;
}

void engine_runtime::leave(shard_runtime& shard) noexcept {
    // Under the mutex that close() and wait_producers() hold while they read the counts: once
    // they see this registration gone, this call is done with the engine (notify included).
    const std::lock_guard lock(drain_mutex_);
    // seq_cst: the other half of the Dekker pair (stop() must see the registration gone).
    shard.producers_.fetch_sub(1, std::memory_order_seq_cst);
    if (!accepting()) drain_cv_.notify_all();
}

bool engine_runtime::close(std::chrono::steady_clock::time_point deadline) {
    // seq_cst: the Dekker pairs with posts (shard::submit) and shard_runtime::enter_post().
    closed_.store(true, std::memory_order_seq_cst);
    for (shard_runtime* s : shards_) s->wake_producers();  // after the store: see the ring
    std::unique_lock lock(drain_mutex_);
    return drain_cv_.wait_until(lock, deadline, [this] { return no_producers(); });
}

void engine_runtime::wait_producers() {
    std::unique_lock lock(drain_mutex_);
    drain_cv_.wait(lock, [this] { return no_producers(); });
}

void engine_runtime::abort() noexcept {
    abort_.store(true, std::memory_order_release);  // pairs with the acquire in aborting()
    { const std::lock_guard lock(retry_mutex_); }   // a sleeper either sees the flag or waits
    retry_cv_.notify_all();
    for (shard_runtime* s : shards_) {
        const std::lock_guard lock(s->mutex_);
        s->source_.request_stop();
    }
}

void engine_runtime::mark_stopped() noexcept {
    {
        const std::lock_guard lock(drain_mutex_);
        stopped_ = true;
    }
    drain_cv_.notify_all();
}

void engine_runtime::wait_stopped() {
    std::unique_lock lock(drain_mutex_);
    drain_cv_.wait(lock, [this] { return stopped_; });
}

void engine_runtime::enter_drain() noexcept {
    const std::lock_guard lock(drain_mutex_);
    ++drainers_;
}

void engine_runtime::leave_drain() noexcept {
    // Notify under the lock, as in leave(): once wait_drainers() sees the count drop, the
    // engine may be destroyed, which it cannot before this call releases the mutex.
    const std::lock_guard lock(drain_mutex_);
    if (--drainers_ == 0 && stopped_) drain_cv_.notify_all();
}

void engine_runtime::wait_drainers() {
    std::unique_lock lock(drain_mutex_);
    drain_cv_.wait(lock, [this] { return drainers_ == 0; });
}

void engine_runtime::arrive(drain_ticket& ticket) noexcept {
    // Notify under the lock: the drainer owns `ticket` and may destroy it as soon as it sees
    // zero, which it can only do after we release the mutex.
    const std::lock_guard lock(drain_mutex_);
    if (--ticket.remaining == 0) drain_cv_.notify_all();
}

bool engine_runtime::wait_ticket(drain_ticket& ticket,
                                 std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(drain_mutex_);
    return drain_cv_.wait_until(lock, deadline, [&] { return ticket.remaining == 0; });
}

void engine_runtime::wait_ticket(drain_ticket& ticket) {
    std::unique_lock lock(drain_mutex_);
    drain_cv_.wait(lock, [&] { return ticket.remaining == 0; });
}

bool engine_runtime::sleep_for_retry(std::chrono::nanoseconds delay) {
    std::unique_lock lock(retry_mutex_);
    if (delay.count() <= 0) return !aborting();
    return !retry_cv_.wait_until(lock, deadline_in(delay), [this] { return aborting(); });
}

void engine_runtime::report(const metadata& meta, std::string_view subscription,
                            std::string_view error, std::uint32_t attempt) noexcept {
    try {
        errors_.on_failure(failure_record{std::string(meta.event_name), meta.id, meta.key.str(),
                                          std::string(subscription), std::string(error), attempt,
                                          std::chrono::system_clock::now()});
    } catch (...) {
        // Out of memory while building the record: nothing left to report it with.
    }
}

void engine_runtime::observe(const metadata& meta, std::string_view subscription,
                             delivery_status status, std::uint32_t attempts, std::string_view error,
                             std::uint64_t dead_letter_id) noexcept {
    if (!settings_.on_outcome) return;
    try {
        settings_.on_outcome(
            delivery_outcome{meta, subscription, status, attempts, error, dead_letter_id});
    } catch (...) {
        try {
            report(meta, subscription,
                   "evbus: the outcome observer threw: " +
                       describe_exception(std::current_exception()),
                   attempts);
        } catch (...) {
            // Out of memory while describing it; report() already swallows its own failures.
        }
    }
}

engine_health engine_runtime::health() const {
    engine_health h;
    h.accepting = accepting();
    const std::int64_t limit = settings_.stuck_after.count();
    if (limit <= 0) return h;
    const std::int64_t now = to_ns(std::chrono::steady_clock::now());
    for (const shard_runtime* s : shards_) {
        const std::lock_guard lock(s->mutex_);
        shard_runtime::call_snapshot c;
        if (!s->read_call(c) || now - c.started_ns <= limit) continue;
        h.stuck.push_back(stuck_shard{s->index(), c.id, std::string(c.event_name),
                                      s->name_of(c.sub),
                                      std::chrono::nanoseconds(now - c.started_ns)});
    }
    return h;
}

engine_metrics engine_runtime::metrics() const {
    struct merged {
        subscription_metrics m;
        latency_histogram::bucket_counts buckets{};
        std::uint64_t max_ns = 0;
    };
    std::map<std::string, merged, std::less<>> subs;
    engine_metrics out;
    out.shards.reserve(shards_.size());
    // Relaxed loads throughout: a statistic (see the header's "Memory ordering").
    constexpr auto rx = std::memory_order_relaxed;
    for (const shard_runtime* s : shards_) {
        shard_metrics m;
        m.shard = s->index();
        // Acquire, then the claims: see "Memory ordering" in the header.
        const std::uint64_t non_events = s->non_events_.load(std::memory_order_acquire);
        m.accepted = s->ring_claims() - non_events;
        m.handled = s->handled.load(rx);
        m.failed = s->failed_.load(rx);
        m.retried = s->retried_.load(rx);
        m.dead_lettered = s->dead_lettered.load(rx);
        m.parked = s->parked.load(rx);
        m.not_run = s->not_run_.load(rx);
        m.queue_depth = s->approx_depth();
        m.waiting_posts = s->waiting_posts_.load(rx);
        out.shards.push_back(m);

        const std::lock_guard lock(s->mutex_);
        for (const auto& [name, st] : s->stats_) {
            merged& agg = subs[name];
            agg.m.name = name;
            agg.m.handled += st->handled.load(rx);
            agg.m.failed += st->failed.load(rx);
            agg.m.retried += st->retried.load(rx);
            agg.m.dead_lettered += st->dead_lettered.load(rx);
            agg.m.parked += st->parked.load(rx);
            st->latency.add_to(agg.buckets);
            agg.max_ns = std::max(agg.max_ns, st->latency.max_ns());
        }
    }
    out.subscriptions.reserve(subs.size());
    for (auto& [name, agg] : subs) {
        agg.m.latency = latency_histogram::summarize(agg.buckets, agg.max_ns);
        out.subscriptions.push_back(std::move(agg.m));
    }
    return out;
}

bool engine_runtime::on_worker() const noexcept {
    return t_worker != nullptr && &t_worker->runtime() == this;
}

bool engine_runtime::on_worker_of(const shard_runtime& shard) noexcept {
    return t_worker == &shard;
}

}  // namespace detail
}  // namespace evbus
