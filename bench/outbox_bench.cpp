// evbus_outbox_bench: the durable path against the raw SQLite limit of this machine.
//
// Raw: one ~200-byte row per transaction (WAL; synchronous FULL and NORMAL), and 100 rows per
// transaction. evbus end to end, same settings: a module's unit of work appends the event
// (1 or 100 per transaction), the dispatcher claims it, the handler runs, the completion is
// recorded and the outbox row deleted; the clock stops when the last delivery is complete.
// Cases run interleaved, each --runs times; medians, min and max are printed with the ratios.
//
//   evbus_outbox_bench [--dir DIR] [--runs N] [--scale F] [--smoke]
#include <evbus/outbox_dispatcher.hpp>
#include <evbus/sqlite_store.hpp>
#include <evbus/unit_of_work.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace outbox_bench {

struct transferred {
    static constexpr std::string_view event_name = "bench.transferred";
    std::string user;
    std::int64_t cents = 0;
    std::string memo;
    [[nodiscard]] std::string_view event_key() const { return user; }
};
EVBUS_DESCRIBE(transferred, user, cents, memo)

using bench_events = evbus::event_set<transferred>;

namespace {

using clock_type = std::chrono::steady_clock;

// A payload whose stored JSON is about 200 bytes, like the raw rows.
transferred make_event(std::int64_t i) {
    return transferred{"user-" + std::to_string(i % 1000), i, std::string(150, 'm')};
}

void check(int rc, sqlite3* db, const char* what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db));
    }
}

std::string fresh(const std::string& dir, const std::string& name) {
    const auto d = std::filesystem::path(dir) / name;
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return (d / "bench.db").string();
}

// Rows per second inserting `rows` 200-byte rows, `per_tx` per transaction.
double raw_sqlite(const std::string& path, bool full, std::int64_t rows, int per_tx) {
    sqlite3* db = nullptr;
    check(sqlite3_open(path.c_str(), &db), db, "open");
    check(sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr), db, "wal");
    check(sqlite3_exec(db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", nullptr,
                       nullptr, nullptr),
          db, "sync");
    check(sqlite3_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL)", nullptr,
                       nullptr, nullptr),
          db, "create");
    sqlite3_stmt* ins = nullptr;
    check(sqlite3_prepare_v2(db, "INSERT INTO t(payload) VALUES (?1)", -1, &ins, nullptr), db,
          "prepare");
    const std::string payload(200, 'p');
    const auto start = clock_type::now();
    for (std::int64_t i = 0; i < rows; i += per_tx) {
        check(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
        for (int j = 0; j < per_tx; ++j) {
            sqlite3_bind_text(ins, 1, payload.data(), static_cast<int>(payload.size()),
                              SQLITE_STATIC);
            check(sqlite3_step(ins), db, "insert");
            sqlite3_reset(ins);
        }
        check(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
    }
    const double s = std::chrono::duration<double>(clock_type::now() - start).count();
    sqlite3_finalize(ins);
    sqlite3_close(db);
    return static_cast<double>(rows) / s;
}

// Events per second through the outbox: committed, delivered, completion recorded.
double end_to_end(const std::string& path, bool full, std::int64_t events, int per_tx) {
    evbus::sqlite_options options;
    options.sync = full ? evbus::sync_mode::full : evbus::sync_mode::normal;
    evbus::sqlite_store store(path, options);
    evbus::bus<bench_events> bus;
    std::atomic<std::int64_t> handled{0};
    auto sub = bus.subscribe("bench.counter", [&](const transferred&) {
        handled.fetch_add(1, std::memory_order_relaxed);  // a counter; drain() orders the read
    });
    evbus::dispatcher_options d;
    d.batch_size = 512;
    evbus::outbox_dispatcher<bench_events> dispatcher(bus, store, d);
    dispatcher.start();
    const auto start = clock_type::now();
    for (std::int64_t i = 0; i < events; i += per_tx) {
        evbus::unit_of_work<bench_events> tx(store);
        for (int j = 0; j < per_tx; ++j) tx.append(make_event(i + j));
        tx.commit();
    }
    if (!dispatcher.drain(std::chrono::minutes(10))) throw std::runtime_error("drain timed out");
    const double s = std::chrono::duration<double>(clock_type::now() - start).count();
    dispatcher.stop();
    // relaxed: drain() returned, so the dispatcher thread's increments happened before it.
    const std::int64_t got = handled.load(std::memory_order_relaxed);
    if (got != events) {
        throw std::runtime_error("handled " + std::to_string(got) + " of " +
                                 std::to_string(events));
    }
    if (!store.unfinished(std::nullopt, 1).empty()) throw std::runtime_error("deliveries left");
    return static_cast<double>(events) / s;
}

struct bench_case {
    std::string name;
    std::function<double(const std::string& path)> run;
    std::vector<double> results;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace
}  // namespace outbox_bench

int main(int argc, char** argv) {
    using namespace outbox_bench;
    std::string dir = (std::filesystem::temp_directory_path() / "evbus-outbox-bench").string();
    int runs = 3;
    double scale = 1.0;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--dir" && i + 1 < argc) {
            dir = argv[++i];
        } else if (a == "--runs" && i + 1 < argc) {
            runs = std::max(1, std::atoi(argv[++i]));
        } else if (a == "--scale" && i + 1 < argc) {
            scale = std::atof(argv[++i]);
        } else if (a == "--smoke") {
            runs = 1;
            scale = 0.01;
        } else {
            std::fprintf(stderr, "usage: %s [--dir DIR] [--runs N] [--scale F] [--smoke]\n",
                         argv[0]);
            return 2;
        }
    }
    const auto n = [&](double base) {
        return std::max<std::int64_t>(100, static_cast<std::int64_t>(base * scale) / 100 * 100);
    };
    std::vector<bench_case> cases = {
        {"raw FULL   1 row/tx",
         [&](const std::string& p) { return raw_sqlite(p, true, n(3000), 1); },
         {}},
        {"raw NORMAL 1 row/tx",
         [&](const std::string& p) { return raw_sqlite(p, false, n(30000), 1); },
         {}},
        {"raw FULL   100 rows/tx",
         [&](const std::string& p) { return raw_sqlite(p, true, n(200000), 100); },
         {}},
        {"raw NORMAL 100 rows/tx",
         [&](const std::string& p) { return raw_sqlite(p, false, n(300000), 100); },
         {}},
        {"evbus FULL   1 event/tx",
         [&](const std::string& p) { return end_to_end(p, true, n(3000), 1); },
         {}},
        {"evbus NORMAL 1 event/tx",
         [&](const std::string& p) { return end_to_end(p, false, n(20000), 1); },
         {}},
        {"evbus FULL   100 events/tx",
         [&](const std::string& p) { return end_to_end(p, true, n(100000), 100); },
         {}},
        {"evbus NORMAL 100 events/tx",
         [&](const std::string& p) { return end_to_end(p, false, n(100000), 100); },
         {}},
    };
    std::printf("evbus_outbox_bench: %u hardware threads, SQLite %s, %d runs, dir %s\n",
                std::thread::hardware_concurrency(), sqlite3_libversion(), runs, dir.c_str());
    try {
        for (int r = 0; r < runs; ++r) {
            for (std::size_t c = 0; c < cases.size(); ++c) {
                cases[c].results.push_back(cases[c].run(fresh(dir, "case" + std::to_string(c))));
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "evbus_outbox_bench: %s\n", e.what());
        return 1;
    }
    std::map<std::string, double> med;
    for (const auto& c : cases) {
        med[c.name] = median(c.results);
        std::printf("%-28s median %10.0f /s   min %10.0f   max %10.0f\n", c.name.c_str(),
                    med[c.name], *std::min_element(c.results.begin(), c.results.end()),
                    *std::max_element(c.results.begin(), c.results.end()));
    }
    const auto ratio = [&](const char* what, const char* e2e, const char* raw, double goal) {
        const double r = med[e2e] / med[raw];
        std::printf("ratio %-44s %.3f  (goal >= %.2f: %s)\n", what, r, goal,
                    r >= goal ? "met" : "NOT met");
    };
    ratio("evbus FULL 1/tx vs raw FULL 1 row/tx", "evbus FULL   1 event/tx", "raw FULL   1 row/tx",
          0.5);
    ratio("evbus NORMAL 100/tx vs raw NORMAL 100 rows/tx", "evbus NORMAL 100 events/tx",
          "raw NORMAL 100 rows/tx", 0.25);
    std::printf("ratio %-44s %.3f\n", "evbus NORMAL 1/tx vs raw NORMAL 1 row/tx",
                med["evbus NORMAL 1 event/tx"] / med["raw NORMAL 1 row/tx"]);
    std::printf("ratio %-44s %.3f\n", "evbus FULL 100/tx vs raw FULL 100 rows/tx",
                med["evbus FULL   100 events/tx"] / med["raw FULL   100 rows/tx"]);
    std::filesystem::remove_all(dir);
    return 0;
}
