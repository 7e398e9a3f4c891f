// The crash test: a child process produces events through the outbox and handles them; the
// parent SIGKILLs it again and again, restarts it, lets it finish, then checks the database
// the way Jepsen's queue checker counts: lost, unexpected, duplicated, out of order.
//
//   evbus_outbox_crash --dir DIR [--kills N] [--events N] [--seed S]
//
// Kill moments (the child kills itself when EVBUS_CRASH_POINT is hit the EVBUS_CRASH_AFTER-th
// time; "random" means the parent kills it after a random delay):
//   after_commit  producer committed domain rows + events, before the dispatcher saw them
//   confirmed     dispatcher recorded the deliveries of a batch, before any handler ran
//   in_handler    inside the transactional handler, its write done, its commit not
//   after_effect  an at-least-once handler's effect committed, its completion mark not
//   delivered     handlers of a batch ran, their completions not recorded
//   random        whatever the child was doing
//
// Subscriptions: "tx" (transactional: effect and completion in one transaction), "inbox"
// (at least once, deduplicated with evbus::inbox), "plain" (at least once, no dedup: its
// duplicates are counted and reported, not failed).
#include <evbus/inbox.hpp>
#include <evbus/outbox_dispatcher.hpp>
#include <evbus/sqlite_store.hpp>
#include <evbus/unit_of_work.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace crash {
namespace {

struct transferred {
    static constexpr std::string_view event_name = "crash.transferred";
    std::string user;
    std::int64_t seq = 0;
    [[nodiscard]] std::string_view event_key() const { return user; }
};
EVBUS_DESCRIBE(transferred, user, seq)

using crash_events = evbus::event_set<transferred>;

constexpr int keys = 50;

std::string key_of(std::int64_t i) {
    return "user-" + std::to_string(i % keys);
}

// ---- child -------------------------------------------------------------------------------

std::string g_point;
long g_after = 0;
std::atomic<long> g_hits{0};

void hit(const char* point) {
    if (g_point != point) return;
    if (g_hits.fetch_add(1, std::memory_order_relaxed) + 1 >= g_after) {  // a counter only
        ::kill(::getpid(), SIGKILL);
    }
}

evbus::sqlite_options store_options() {
    evbus::sqlite_options o;
    // A process crash loses nothing committed in NORMAL mode (WAL); FULL adds power-loss
    // safety this test cannot exercise.
    o.sync = evbus::sync_mode::normal;
    o.busy_timeout = std::chrono::seconds(30);
    return o;
}

std::int64_t scalar(evbus::sql_connection& sql, const char* query) {
    auto q = sql.prepare(query);
    return q.step() ? q.column_int64(0) : 0;
}

// Produces up to `chunk` more events (never past `total`), then waits until everything is
// delivered and exits 0.
int run_child(const std::string& path, std::int64_t total, std::int64_t chunk) {
    if (const char* p = std::getenv("EVBUS_CRASH_POINT")) g_point = p;
    if (const char* n = std::getenv("EVBUS_CRASH_AFTER")) g_after = std::atol(n);

    evbus::sqlite_store store(path, store_options());
    {
        evbus::unit_of_work<crash_events> tx(store);
        tx.sql().exec(
            "CREATE TABLE IF NOT EXISTS produced(user TEXT NOT NULL, seq INTEGER NOT NULL);"
            "CREATE TABLE IF NOT EXISTS effect_tx(user TEXT NOT NULL, seq INTEGER NOT NULL);"
            "CREATE TABLE IF NOT EXISTS effect_inbox(user TEXT NOT NULL, seq INTEGER NOT NULL);"
            "CREATE TABLE IF NOT EXISTS effect_plain(user TEXT NOT NULL, seq INTEGER NOT NULL);");
        tx.commit();
    }
    evbus::bus<crash_events> bus;
    evbus::dispatcher_options options;
    options.batch_size = 64;
    options.poll_interval = std::chrono::milliseconds(50);
    options.observer = [](evbus::dispatch_stage s) {
        if (s == evbus::dispatch_stage::confirmed) hit("confirmed");
        if (s == evbus::dispatch_stage::delivered) hit("delivered");
    };
    evbus::outbox_dispatcher<crash_events> dispatcher(bus, store, options);

    auto tx_sub = dispatcher.subscribe_transactional(
        "tx", [](const transferred& e, evbus::unit_of_work<crash_events>& tx) {
            tx.sql()
                .prepare("INSERT INTO effect_tx VALUES (?1, ?2)")
                .bind(1, e.user)
                .bind(2, e.seq)
                .run();
            hit("in_handler");
        });
    auto inbox_sub = bus.subscribe("inbox", [&](const transferred& e, evbus::handler_context& ctx) {
        evbus::unit_of_work<crash_events> tx(store);
        if (evbus::inbox::processed(tx, ctx)) return;
        tx.sql()
            .prepare("INSERT INTO effect_inbox VALUES (?1, ?2)")
            .bind(1, e.user)
            .bind(2, e.seq)
            .run();
        tx.commit();
        hit("after_effect");
    });
    auto plain_sub = bus.subscribe("plain", [&](const transferred& e) {
        evbus::unit_of_work<crash_events> tx(store);
        tx.sql()
            .prepare("INSERT INTO effect_plain VALUES (?1, ?2)")
            .bind(1, e.user)
            .bind(2, e.seq)
            .run();
        tx.commit();
        hit("after_effect");
    });
    dispatcher.start();

    std::int64_t next = 0;
    {
        evbus::unit_of_work<crash_events> tx(store);
        next = scalar(tx.sql(), "SELECT count(*) FROM produced");
    }
    std::mt19937_64 rng(static_cast<std::uint64_t>(::getpid()));
    const std::int64_t stop_at = std::min(total, next + chunk);
    while (next < stop_at) {
        const std::int64_t batch =
            std::min<std::int64_t>(1 + static_cast<std::int64_t>(rng() % 20), stop_at - next);
        evbus::unit_of_work<crash_events> tx(store);
        auto ins = tx.sql().prepare("INSERT INTO produced VALUES (?1, ?2)");
        for (std::int64_t i = next; i < next + batch; ++i) {
            ins.bind(1, key_of(i)).bind(2, i / keys).run();
            tx.append(transferred{key_of(i), i / keys});
        }
        tx.commit();
        next += batch;
        hit("after_commit");
    }
    // Finish: everything dispatched and no delivery left.
    for (;;) {
        if (!dispatcher.drain(std::chrono::seconds(60))) return 3;
        if (store.unfinished(std::nullopt, 1).empty() && store.claim(1).empty()) break;
    }
    dispatcher.stop();
    return 0;
}

// ---- parent ------------------------------------------------------------------------------

struct effects_report {
    std::size_t rows = 0;
    std::size_t lost = 0;
    std::size_t unexpected = 0;
    std::size_t duplicates = 0;
    std::size_t order_violations = 0;
};

effects_report check_effects(evbus::sql_connection& sql, const std::string& table,
                             const std::set<std::pair<std::string, std::int64_t>>& produced) {
    effects_report r;
    std::set<std::pair<std::string, std::int64_t>> seen;
    std::map<std::string, std::int64_t> last_first;  // per key: seq of the last first delivery
    auto q = sql.prepare("SELECT user, seq FROM " + table + " ORDER BY rowid");
    while (q.step()) {
        ++r.rows;
        std::pair<std::string, std::int64_t> item{std::string(q.column_text(0)), q.column_int64(1)};
        if (!produced.count(item)) ++r.unexpected;
        if (!seen.insert(item).second) {
            ++r.duplicates;
            continue;
        }
        auto [it, fresh] = last_first.emplace(item.first, item.second);
        if (!fresh) {
            if (item.second <= it->second) ++r.order_violations;
            it->second = item.second;
        }
    }
    for (const auto& p : produced) {
        if (!seen.count(p)) ++r.lost;
    }
    return r;
}

int spawn_child(const char* self, const std::string& dir, std::int64_t events, std::int64_t chunk,
                const std::string& point, long after, std::chrono::milliseconds kill_after,
                bool* killed, std::chrono::milliseconds* took = nullptr) {
    const auto start = std::chrono::steady_clock::now();
    const pid_t pid = ::fork();
    if (pid < 0) {
        std::perror("fork");
        std::exit(2);
    }
    if (pid == 0) {
        if (!point.empty()) {
            ::setenv("EVBUS_CRASH_POINT", point.c_str(), 1);
            ::setenv("EVBUS_CRASH_AFTER", std::to_string(after).c_str(), 1);
        }
        const std::string n = std::to_string(events);
        const std::string c = std::to_string(chunk);
        ::execl(self, self, "--child", dir.c_str(), "--events", n.c_str(), "--chunk", c.c_str(),
                static_cast<char*>(nullptr));
        std::perror("execl");
        std::_Exit(2);
    }
    const auto deadline = std::chrono::steady_clock::now() + kill_after;
    int status = 0;
    for (;;) {
        const pid_t done = ::waitpid(pid, &status, WNOHANG);
        if (done == pid) break;
        if (std::chrono::steady_clock::now() >= deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    *killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (took != nullptr) {
        *took = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return -1;
}

int run_parent(const char* self, const std::string& dir, int kills, std::int64_t events,
               std::uint64_t seed) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::mt19937_64 rng(seed);
    const char* points[] = {"after_commit", "confirmed", "in_handler",
                            "after_effect", "delivered", "random"};
    std::map<std::string, int> by_point;
    // Each run produces at most a chunk, so production spans the whole kill plan (a run that
    // finishes its chunk before its kill point also uses one up: hence the slack).
    const std::int64_t chunk = std::max<std::int64_t>(1, events / (kills + 8));
    std::chrono::milliseconds random_window{300};
    int done_kills = 0;
    int clean_runs = 0;
    int runs = 0;
    while (done_kills < kills) {
        if (++runs > kills * 4) {
            std::fprintf(stderr, "crash: could not kill the child %d times in %d runs\n", kills,
                         runs - 1);
            return 1;
        }
        const std::string point = points[done_kills % 6];
        const bool random_time = point == "random";
        // How many hits before the kill: about one chunk's worth at most, per point.
        const long spread = point == "after_commit"                        ? 15
                            : point == "confirmed" || point == "delivered" ? 4
                                                                           : 2 * chunk / 3;
        const long after = 1 + static_cast<long>(rng() % static_cast<std::uint64_t>(spread));
        const auto kill_after =
            random_time
                ? std::chrono::milliseconds(
                      1 +
                      static_cast<long>(rng() % static_cast<std::uint64_t>(random_window.count())))
                : std::chrono::milliseconds(300'000);
        bool killed = false;
        std::chrono::milliseconds took{0};
        const int rc = spawn_child(self, dir, events, chunk, random_time ? "" : point, after,
                                   kill_after, &killed, &took);
        // A random kill that came too late: aim within the time a whole run takes.
        if (random_time && !killed)
            random_window = std::max(took * 4 / 5, std::chrono::milliseconds(2));
        if (killed) {
            ++done_kills;
            ++by_point[point];
        } else if (rc == 0) {
            ++clean_runs;  // the chunk finished before the kill point came
        } else {
            std::fprintf(stderr, "crash: child failed with status %d (point %s)\n", rc,
                         point.c_str());
            return 1;
        }
    }
    bool killed = false;
    const int rc = spawn_child(self, dir, events, events, "", 0, std::chrono::minutes(10), &killed);
    if (rc != 0) {
        std::fprintf(stderr, "crash: final run failed with status %d\n", rc);
        return 1;
    }

    evbus::sqlite_store store(dir + "/app.db", store_options());
    evbus::unit_of_work<crash_events> tx(store);
    std::set<std::pair<std::string, std::int64_t>> produced;
    {
        auto q = tx.sql().prepare("SELECT user, seq FROM produced");
        while (q.step()) produced.emplace(std::string(q.column_text(0)), q.column_int64(1));
    }
    const auto outbox_left = scalar(tx.sql(), "SELECT count(*) FROM evbus_outbox");
    const auto pending = scalar(tx.sql(), "SELECT count(*) FROM evbus_delivery");
    const auto dead = scalar(tx.sql(), "SELECT count(*) FROM evbus_dead_letter");

    std::printf("crash: %d kills in %d runs (%d finished their chunk) (", done_kills, runs,
                clean_runs);
    for (const auto& [p, n] : by_point) std::printf(" %s=%d", p.c_str(), n);
    std::printf(
        " ), %zu events produced over %d keys; outbox rows left %lld, pending %lld, "
        "dead letters %lld\n",
        produced.size(), keys, static_cast<long long>(outbox_left), static_cast<long long>(pending),
        static_cast<long long>(dead));
    bool ok = done_kills >= kills && static_cast<std::int64_t>(produced.size()) == events &&
              outbox_left == 0 && pending == 0 && dead == 0;
    for (const char* table : {"effect_tx", "effect_inbox", "effect_plain"}) {
        const auto r = check_effects(tx.sql(), table, produced);
        const bool dedup = std::string(table) != "effect_plain";
        std::printf("crash: %-12s rows=%zu lost=%zu unexpected=%zu %s=%zu order_violations=%zu\n",
                    table, r.rows, r.lost, r.unexpected,
                    dedup ? "duplicate_effects" : "duplicate_deliveries", r.duplicates,
                    r.order_violations);
        ok = ok && r.lost == 0 && r.unexpected == 0 && r.order_violations == 0 &&
             (!dedup || r.duplicates == 0);
    }
    std::printf("crash: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}

}  // namespace
}  // namespace crash

int main(int argc, char** argv) {
    std::string dir;
    std::string child_dir;
    std::int64_t chunk = 0;
    int kills = 24;
    std::int64_t events = 10'000;  // a few seconds even under TSan, so no scaling down
    std::uint64_t seed = std::random_device{}();
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--dir" && has_value) {
            dir = argv[++i];
        } else if (a == "--child" && has_value) {
            child_dir = argv[++i];
        } else if (a == "--kills" && has_value) {
            kills = std::atoi(argv[++i]);
        } else if (a == "--events" && has_value) {
            events = std::atoll(argv[++i]);
        } else if (a == "--chunk" && has_value) {
            chunk = std::atoll(argv[++i]);
        } else if (a == "--seed" && has_value) {
            seed = std::strtoull(argv[++i], nullptr, 10);
        } else {
            std::fprintf(stderr,
                         "usage: %s --dir DIR [--kills N] [--events N] [--seed S]\n"
                         "  soak: --kills 300 (or more)\n",
                         argv[0]);
            return 2;
        }
    }
    try {
        if (!child_dir.empty()) {
            return crash::run_child(child_dir + "/app.db", events, chunk > 0 ? chunk : events);
        }
        if (dir.empty()) {
            std::fprintf(stderr, "crash: --dir is required\n");
            return 2;
        }
        std::printf("crash: seed %llu, %lld events, %d kills\n",
                    static_cast<unsigned long long>(seed), static_cast<long long>(events), kills);
        std::fflush(stdout);  // before fork(), so children do not inherit a buffered copy
        return crash::run_parent(argv[0], dir, kills, events, seed);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "crash: %s\n", e.what());
        return 2;
    }
}
