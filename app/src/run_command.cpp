// The `run` command: a planned workload of transfers, live progress, the report and checks.
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <mutex>
#include <ostream>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "checks.hpp"
#include "commands.hpp"
#include "run_plan.hpp"

namespace payments::app {

namespace {

using clock = std::chrono::steady_clock;

struct client_counts {
    std::atomic<std::uint64_t> next{0};             // the next transfer index to send
    std::atomic<std::uint64_t> committed{0};        // by this process
    std::atomic<std::uint64_t> already_applied{0};  // committed before (a resumed run)
    std::atomic<std::uint64_t> rejected{0};
    std::atomic<std::uint64_t> store_errors{0};
    std::mutex mutex;  // guards first_error
    std::string first_error;
};

// Every failed attempt but the last of a dead-lettered delivery was followed by a retry.
std::uint64_t retries(const evbus::dispatcher_stats& d) {
    return d.failed > d.dead_lettered ? d.failed - d.dead_lettered : 0;
}

std::string millis(std::chrono::nanoseconds d) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(2) << static_cast<double>(d.count()) / 1e6 << " ms";
    return s.str();
}

std::string per_second(std::uint64_t n, double seconds) {
    return grouped(seconds > 0 ? static_cast<std::uint64_t>(static_cast<double>(n) / seconds) : 0) +
           "/s";
}

// Users do not outrun delivery by more than this many events: a client waits while the
// outbox holds more committed events the dispatcher has not taken. Without it the clients,
// which only ever write, keep SQLite's write lock busy and the dispatcher, which waits for
// that lock in SQLite's sleeping busy handler, falls ever further behind. Measured here
// (release, 10,000 transfers, synchronous=NORMAL): a window of 96 events gave p50 latencies
// of 34-46 ms against 84-109 ms with 256 and 235 ms with 768, at the same throughput within
// the machine's noise.
constexpr std::uint64_t max_outstanding_events = 96;

void wait_for_delivery(application& app) {
    for (;;) {
        const std::uint64_t claimed = app.delivery().stats().claimed;
        if (app.events_appended() <= claimed + max_outstanding_events) return;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

// Sends transfers of the plan until none is left. Invalid transfers are counted, not retried;
// a database error (busy past the store's timeout on a loaded machine) is retried, which the
// idempotency key makes safe, and recorded when it persists.
void client_loop(application& app, const run_plan& plan, const run_options& o,
                 client_counts& counts, std::ostream& err) {
    constexpr int max_attempts = 20;
    for (;;) {
        // relaxed: the counter hands out distinct indices; results are read after join().
        const std::uint64_t i = counts.next.fetch_add(1, std::memory_order_relaxed);
        if (i >= plan.transfers) return;
        const auto request = plan.request(i);
        wait_for_delivery(app);
        for (int attempt = 1;; ++attempt) {
            try {
                const auto r = app.transfers().transfer(request);
                if (r.outcome == transfer::status::committed) {
                    const auto n = counts.committed.fetch_add(1, std::memory_order_relaxed) + 1;
                    if (o.crash_after && n == *o.crash_after) {
                        err << "\ncrash-after: killing this process (SIGKILL) after " << grouped(n)
                            << " transfers committed; run again to resume" << std::endl;
                        std::raise(SIGKILL);
                    }
                } else if (r.outcome == transfer::status::already_applied) {
                    counts.already_applied.fetch_add(1, std::memory_order_relaxed);
                } else {
                    counts.rejected.fetch_add(1, std::memory_order_relaxed);
                    const std::lock_guard lock(counts.mutex);
                    if (counts.first_error.empty()) {
                        counts.first_error = request.idempotency_key + ": " + r.message;
                    }
                }
                break;
            } catch (const evbus::store_error& e) {
                counts.store_errors.fetch_add(1, std::memory_order_relaxed);
                if (attempt == max_attempts) {
                    const std::lock_guard lock(counts.mutex);
                    if (counts.first_error.empty()) {
                        counts.first_error = request.idempotency_key + ": " + e.what();
                    }
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(10 * attempt));
            }
        }
    }
}

// The engine's counters per shard and per subscription (empty once delivery stopped).
nlohmann::json engine_json(const evbus::engine_metrics& m) {
    nlohmann::json shards = nlohmann::json::array();
    for (const auto& sh : m.shards) {
        shards.push_back({{"shard", sh.shard},
                          {"accepted", sh.accepted},
                          {"handled", sh.handled},
                          {"failed", sh.failed},
                          {"retried", sh.retried},
                          {"dead_lettered", sh.dead_lettered},
                          {"parked", sh.parked},
                          {"queue_depth", sh.queue_depth},
                          {"waiting_posts", sh.waiting_posts}});
    }
    nlohmann::json subscriptions = nlohmann::json::array();
    for (const auto& su : m.subscriptions) {
        subscriptions.push_back({{"name", su.name},
                                 {"handled", su.handled},
                                 {"failed", su.failed},
                                 {"retried", su.retried},
                                 {"dead_lettered", su.dead_lettered},
                                 {"parked", su.parked},
                                 {"handler_latency_ns",
                                  {{"count", su.latency.count},
                                   {"p50", su.latency.p50.count()},
                                   {"p99", su.latency.p99.count()},
                                   {"p999", su.latency.p999.count()}}}});
    }
    return {{"shards", std::move(shards)}, {"subscriptions", std::move(subscriptions)}};
}

nlohmann::json snapshot(application& app, const run_plan& plan, const client_counts& counts,
                        const fault_injector& faults, double seconds, bool finished) {
    const auto d = app.delivery().stats();
    const auto lat = app.latency().summarize();
    nlohmann::json j;
    j["run"] = plan.id;
    j["finished"] = finished;
    j["elapsed_s"] = seconds;
    j["plan"] = {{"transfers", plan.transfers}, {"users", plan.users}, {"seed", plan.seed}};
    j["transfers"] = {{"committed", counts.committed.load(std::memory_order_relaxed)},
                      {"already_applied", counts.already_applied.load(std::memory_order_relaxed)},
                      {"rejected", counts.rejected.load(std::memory_order_relaxed)},
                      {"store_errors", counts.store_errors.load(std::memory_order_relaxed)}};
    j["events_appended"] = app.events_appended();
    j["dispatcher"] = {{"claimed", d.claimed},        {"rejected", d.rejected},
                       {"delivered", d.delivered},    {"failed", d.failed},
                       {"retried", retries(d)},       {"dead_lettered", d.dead_lettered},
                       {"resubmitted", d.resubmitted}};
    j["latency_append_to_handler_ns"] = {{"count", lat.count},
                                         {"p50", lat.p50.count()},
                                         {"p99", lat.p99.count()},
                                         {"p999", lat.p999.count()},
                                         {"max", lat.max.count()}};
    j["faults"] = {{"injected_failures", faults.failures()},
                   {"slow_calls", faults.slow_calls()},
                   {"timeouts", faults.timeouts()}};
    j["receipts_sent_to_file"] = app.receipts_sent();

    j["engine"] = engine_json(app.delivery().metrics());
    return j;
}

void save_snapshot(const std::filesystem::path& path, const nlohmann::json& j) {
    // Write then rename, so a reader (or a crash) never sees half a file.
    const auto tmp = std::filesystem::path(path.string() + ".tmp");
    {
        std::ofstream f(tmp, std::ios::trunc);
        f << j.dump(2) << '\n';
        if (!f) return;  // a statistic; the run goes on without it
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
}

// Prints progress (when asked) and saves the metrics snapshot until stopped.
class monitor {
public:
    monitor(application& app, const run_plan& plan, const client_counts& counts,
            const fault_injector& faults, const run_options& o, const settings& s,
            std::ostream& err)
        : app_(app),
          plan_(plan),
          counts_(counts),
          faults_(faults),
          progress_(o.progress),
          path_(metrics_file(s)),
          err_(err),
          start_(clock::now()),
          thread_([this] { loop(); }) {}
    monitor(const monitor&) = delete;
    monitor& operator=(const monitor&) = delete;
    ~monitor() { stop(); }

    void stop() {
        {
            const std::lock_guard lock(mutex_);
            if (stopping_) return;
            stopping_ = true;
        }
        wake_.notify_all();
        thread_.join();
        if (printed_) err_ << '\n';
    }

private:
    void loop() {
        auto next_save = clock::now();
        std::unique_lock lock(mutex_);
        while (!wake_.wait_for(lock, std::chrono::milliseconds(250), [&] { return stopping_; })) {
            lock.unlock();
            const double seconds = std::chrono::duration<double>(clock::now() - start_).count();
            if (progress_) print(seconds);
            if (clock::now() >= next_save) {
                save_snapshot(path_, snapshot(app_, plan_, counts_, faults_, seconds, false));
                next_save = clock::now() + std::chrono::seconds(1);
            }
            lock.lock();
        }
    }

    void print(double seconds) {
        const auto d = app_.delivery().stats();
        const std::uint64_t appended = app_.events_appended();
        const std::uint64_t waiting = appended > d.claimed ? appended - d.claimed : 0;
        const std::uint64_t done = counts_.committed.load(std::memory_order_relaxed) +
                                   counts_.already_applied.load(std::memory_order_relaxed) +
                                   counts_.rejected.load(std::memory_order_relaxed);
        err_ << "\r  transfers " << grouped(done) << "/" << grouped(plan_.transfers)
             << " | appended " << grouped(appended) << " | delivered " << grouped(d.delivered)
             << " | in flight " << grouped(waiting) << " | dead-lettered "
             << grouped(d.dead_lettered) << " | "
             << per_second(counts_.committed.load(std::memory_order_relaxed), seconds)
             << " transfers   " << std::flush;
        printed_ = true;
    }

    application& app_;
    const run_plan& plan_;
    const client_counts& counts_;
    const fault_injector& faults_;
    const bool progress_;
    const std::filesystem::path path_;
    std::ostream& err_;
    const clock::time_point start_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    bool printed_ = false;  // only the monitor thread writes it before join()
    std::thread thread_;    // last: starts once everything above is set
};

void print_faults(const run_options& o, const fault_injector& faults, std::ostream& out) {
    if (!o.faults.any()) return;
    out << "  faults         ";
    if (!o.faults.fail_subscription.empty() && o.faults.fail_rate > 0) {
        out << grouped(faults.failures()) << " injected failures in " << o.faults.fail_subscription;
    }
    if (!o.faults.slow_subscription.empty() && o.faults.slow_rate > 0) {
        if (!o.faults.fail_subscription.empty() && o.faults.fail_rate > 0) out << "; ";
        out << grouped(faults.slow_calls()) << " slow calls of " << o.faults.slow_subscription
            << " (" << o.faults.slow_for.count() << " ms), " << grouped(faults.timeouts())
            << " timed out";
    }
    out << '\n';
}

}  // namespace

std::filesystem::path metrics_file(const settings& s) {
    return s.data_dir / "metrics.json";
}

int run_command(const settings& base, const run_options& o, std::ostream& out, std::ostream& err) {
    if (o.users < 2) {
        throw startup_error("a run needs at least 2 users (got " + std::to_string(o.users) +
                            "): every transfer goes to another user's wallet");
    }
    if (o.transfers == 0 || o.clients == 0) {
        throw startup_error("a run needs at least 1 transfer and 1 client");
    }
    fault_injector faults(o.faults);
    settings s = base;
    if (o.faults.any()) s.probe = faults.probe();
    application app(s);
    migrate_run_table(app.store());

    auto plan = unfinished_run(app.store());
    const bool resumed = plan.has_value();
    if (!plan) plan = create_run(app.store(), o.transfers, o.users, o.seed);

    out << (resumed ? "resuming run " : "run ") << plan->id << ": " << grouped(plan->transfers)
        << " transfers from " << grouped(plan->users) << " users over " << s.shards
        << " shards (seed " << plan->seed << ")"
        << ", database " << app.database_path().string()
        << " (synchronous=" << (s.sync == evbus::sync_mode::full ? "FULL" : "NORMAL") << ")\n";
    if (resumed && (plan->transfers != o.transfers || plan->users != o.users)) {
        out << "  (an unfinished run is resumed as it was planned; --transfers and --users apply "
               "to the next new run)\n";
    }
    out << std::flush;

    for (std::uint32_t u = 0; u < plan->users; ++u) {
        (void)app.transfers().open_wallet(run_plan::wallet_id(u), run_plan::user_id(u),
                                          initial_balance_cents);
    }

    client_counts counts;
    const auto start = clock::now();
    app.start();
    bool drained = false;
    {
        monitor mon(app, *plan, counts, faults, o, s, err);
        std::vector<std::thread> clients;
        for (std::uint32_t c = 0; c < o.clients; ++c) {
            clients.emplace_back([&] { client_loop(app, *plan, o, counts, err); });
        }
        for (auto& t : clients) t.join();
        drained = app.drain(o.drain_timeout);
        mon.stop();
    }
    const double seconds = std::chrono::duration<double>(clock::now() - start).count();
    const auto final_metrics = app.delivery().metrics();  // the engine stops with delivery
    app.stop();

    const bool all_sent = counts.rejected.load() == 0 && counts.first_error.empty();
    if (drained && all_sent) finish_run(app.store(), plan->id);

    const auto d = app.delivery().stats();
    const auto lat = app.latency().summarize();
    const auto v = verify(app);
    const std::uint64_t committed = counts.committed.load();

    out << "report\n";
    out << "  transfers      " << grouped(committed) << " committed by this process";
    if (counts.already_applied.load() > 0) {
        out << ", " << grouped(counts.already_applied.load())
            << " already applied before (resent with the same idempotency key)";
    }
    out << "; " << grouped(v.transfers) << " in the database\n";
    out << "  throughput     " << per_second(committed, seconds) << " transfers, "
        << per_second(d.delivered, seconds) << " handler calls (" << std::fixed
        << std::setprecision(2) << seconds << " s)\n";
    out << "  events         " << grouped(app.events_appended()) << " appended, "
        << grouped(d.claimed) << " dispatched, " << grouped(d.resubmitted)
        << " resubmitted after a restart\n";
    if (lat.count > 0) {
        out << "  latency        append to handler start (transfer.moneyTransferred): p50 "
            << millis(lat.p50) << ", p99 " << millis(lat.p99) << " over " << grouped(lat.count)
            << " events\n";
    }
    out << "  receipts       " << grouped(v.receipts) << " recorded; "
        << grouped(app.receipts_sent()) << " sent to " << (s.data_dir / "receipts.log").string()
        << " by this process\n";
    print_faults(o, faults, out);
    out << "  retries        " << grouped(retries(d)) << " (" << grouped(d.failed)
        << " failed attempts)\n";
    out << "  dead letters   " << grouped(v.dead_letter_total());
    if (v.dead_letter_total() > 0) {
        out << " (";
        bool first = true;
        for (const auto& [sub, n] : v.dead_letters) {
            out << (first ? "" : ", ") << sub << " " << grouped(n);
            first = false;
        }
        out << "); see `dead-letters list`, then `dead-letters requeue --all`";
    }
    out << '\n';

    out << "checks\n";
    bool ok = v.passed();
    for (const auto& c : v.checks) {
        out << "  [" << (c.ok ? "ok" : "FAILED") << "] " << c.name << ": " << c.detail << '\n';
    }
    if (!drained) {
        ok = false;
        out << "  [FAILED] delivery drained within " << o.drain_timeout.count() << " s\n";
    }
    if (!all_sent) {
        ok = false;
        out << "  [FAILED] every planned transfer was accepted: " << grouped(counts.rejected.load())
            << " rejected; first: " << counts.first_error << '\n';
    }
    out << (ok ? "all checks passed\n" : "some checks FAILED\n");

    auto final_snapshot = snapshot(app, *plan, counts, faults, seconds, true);
    final_snapshot["engine"] = engine_json(final_metrics);
    save_snapshot(metrics_file(s), final_snapshot);
    return ok ? exit_ok : exit_check_failed;
}

}  // namespace payments::app
