#include <evbus/engine.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "engine_test_support.hpp"
#include "thread_names.hpp"

using namespace engine_test;
using namespace std::chrono_literals;

TEST_CASE("shutdown: 300 buffered events, then drain: all 300 are handled", "[engine][lifecycle]") {
    test_bus bus;
    gate stall;
    std::atomic<bool> gave_up{false};
    std::atomic<int> handled{0};
    auto sub = bus.subscribe("counter", [&](const step& s) {
        if (s.n == 0 && !stall.wait()) gave_up = true;
        ++handled;
    });
    test_engine engine(bus, {.shards = 2, .ring_capacity = 512});
    for (int n = 0; n < 300; ++n) engine.post(step{"key-" + std::to_string(n % 7), n});
    CHECK(handled < 300);  // the stalled shard holds its events in the ring
    stall.open();
    engine.drain();
    CHECK_FALSE(gave_up);
    CHECK(handled == 300);
    const auto m = engine.metrics();
    std::uint64_t accepted = 0;
    std::uint64_t done = 0;
    for (const auto& s : m.shards) {
        accepted += s.accepted;
        done += s.handled;
        CHECK(s.queue_depth == 0);
    }
    CHECK(accepted == 300);
    CHECK(done == 300);
}

TEST_CASE("shutdown: stop racing post and drain, 15 runs: no crash, nothing lost silently",
          "[engine][lifecycle][race]") {
    for (int run = 0; run < 15; ++run) {
        INFO("run " << run);
        test_bus bus;
        std::atomic<std::uint64_t> handled{0};
        auto sub = bus.subscribe("counter", [&](const step&) { ++handled; });
        auto engine = std::make_unique<test_engine>(
            bus, evbus::engine_options<events>{.shards = 2, .ring_capacity = 64});

        std::atomic<std::uint64_t> accepted{0};
        std::atomic<std::uint64_t> refused{0};
        std::atomic<bool> other_error{false};
        std::vector<std::thread> threads;
        for (int p = 0; p < 2; ++p) {
            threads.emplace_back([&, p] {
                for (int n = 0;; ++n) {
                    try {
                        engine->post(
                            step{"p" + std::to_string(p) + "-" + std::to_string(n % 5), n});
                        ++accepted;
                    } catch (const std::system_error& e) {
                        if (e.code() == evbus::engine_errc::closed) {
                            ++refused;
                        } else {
                            other_error = true;
                        }
                        return;
                    }
                }
            });
        }
        std::atomic<bool> stopped{false};
        threads.emplace_back([&] {
            while (!stopped) engine->drain();
        });
        const auto enough = static_cast<std::uint64_t>(50 + 20 * run);
        REQUIRE(wait_until([&] { return accepted.load() >= enough; }));
        const evbus::stop_report report = engine->stop(std::chrono::steady_clock::now() + 30s);
        stopped = true;
        for (auto& t : threads) t.join();

        CHECK_FALSE(other_error);
        CHECK(refused == 2);
        CHECK(report.drained);
        CHECK(report.complete());
        CHECK(handled == accepted);
        CHECK_FALSE(engine->health().accepting);
        engine.reset();  // the destructor after stop() is a no-op
    }
}

TEST_CASE("lifecycle: a post after stop gets a clear 'closed' error", "[engine][lifecycle]") {
    test_bus bus;
    auto sub = bus.subscribe("any", [](const step&) {});
    test_engine engine(bus, {.shards = 1});
    engine.post(step{"k", 1});
    const auto report = engine.stop();
    CHECK(report.complete());
    CHECK(engine.try_post(step{"k", 2}) == evbus::engine_errc::closed);
    try {
        engine.post(step{"k", 3});
        FAIL("post after stop() did not throw");
    } catch (const std::system_error& e) {
        CHECK(e.code() == evbus::engine_errc::closed);
        CHECK_THAT(e.what(), Catch::Contains("stop()"));
    }
    engine.drain();  // returns at once: nothing can be pending
    const auto again = engine.stop();
    CHECK(again.complete());
}

TEST_CASE("lifecycle: when stop's deadline passes, what did not run is reported, not dropped",
          "[engine][lifecycle]") {
    auto sink = std::make_shared<evbus::dead_letter_list>();
    test_bus bus({sink});
    std::atomic<bool> started{false};
    std::atomic<bool> saw_stop{false};
    std::atomic<int> handled{0};
    auto sub = bus.subscribe("slow", [&](const step& s, evbus::handler_context& ctx) {
        if (s.n == 0) {
            started = true;
            // Cooperative: returns once stop() requests it.
            const auto give_up = std::chrono::steady_clock::now() + patience;
            while (!ctx.stop_token().stop_requested() &&
                   std::chrono::steady_clock::now() < give_up) {
                std::this_thread::sleep_for(1ms);
            }
            saw_stop = ctx.stop_token().stop_requested();
        }
        ++handled;
    });
    test_engine engine(bus, {.shards = 1});
    std::vector<evbus::event_id> ids;
    for (int n = 0; n < 10; ++n) {
        evbus::metadata m = evbus::metadata::with_key("k");
        m.id = evbus::event_id::generate();
        ids.push_back(m.id);
        engine.post(step{"k", n}, m);
    }
    REQUIRE(wait_until([&] { return started.load(); }));
    const evbus::stop_report report = engine.stop(std::chrono::steady_clock::now());
    CHECK(saw_stop);
    CHECK(handled == 1);
    CHECK_FALSE(report.drained);
    CHECK(report.not_run == std::vector<evbus::event_id>(ids.begin() + 1, ids.end()));
    std::size_t not_run_records = 0;
    for (const auto& r : sink->records()) {
        if (r.error.find("not run") != std::string::npos) ++not_run_records;
    }
    CHECK(not_run_records == 9);
    CHECK(engine.metrics().shards[0].not_run == 9);
}

TEST_CASE("lifecycle: events still parked at stop are reported", "[engine][lifecycle]") {
    test_bus bus;
    evbus::subscribe_options parking;
    parking.park_key_on_failure = true;
    auto sub = bus.subscribe(
        "parker",
        [](const step& s) {
            if (s.n == 1) throw std::runtime_error("head fails");
        },
        parking);
    test_engine engine(bus, {.shards = 1});
    std::vector<evbus::event_id> waiting;
    for (int n = 1; n <= 3; ++n) {
        evbus::metadata m = evbus::metadata::with_key("A");
        m.id = evbus::event_id::generate();
        if (n > 1) waiting.push_back(m.id);
        engine.post(step{"A", n}, m);
    }
    const auto report = engine.stop();
    CHECK(report.drained);
    CHECK(report.not_run.empty());
    CHECK(report.parked == waiting);
    CHECK_FALSE(report.complete());
}

TEST_CASE("lifecycle: a requeued dead letter that stop() cuts off goes back to the store",
          "[engine][lifecycle][dead_letter]") {
    test_bus bus;
    std::atomic<bool> requeued{false};
    std::atomic<bool> started{false};
    auto sub = bus.subscribe(
        "slow", [&](const step& s, evbus::handler_context& ctx) -> evbus::handler_result {
            if (s.n == 1 && !requeued) return evbus::handler_result::fail("first time");
            if (s.n == 0) {
                started = true;
                // Holds the shard until stop() requests it.
                (void)wait_until([&] { return ctx.stop_token().stop_requested(); });
            }
            return evbus::handler_result::ok();
        });
    test_engine engine(bus, {.shards = 1});
    engine.post(step{"k", 1});
    engine.drain();
    const auto letters = engine.dead_letters().list();
    REQUIRE(letters.size() == 1);
    engine.post(step{"k", 0});
    REQUIRE(wait_until([&] { return started.load(); }));
    requeued = true;
    REQUIRE_FALSE(engine.requeue(letters[0].id));  // queued behind the held event
    const evbus::stop_report report = engine.stop(std::chrono::steady_clock::now());
    CHECK(report.not_run == std::vector<evbus::event_id>{letters[0].meta.id});

    const auto after = engine.dead_letters().list();
    REQUIRE(after.size() == 1);
    CHECK(after[0].id != letters[0].id);  // stored again, under a new id
    CHECK(after[0].meta.id == letters[0].meta.id);
    CHECK(after[0].meta.attempt == letters[0].meta.attempt);
    CHECK(after[0].subscription == "slow");
    CHECK(after[0].attempts == letters[0].attempts);
    CHECK(after[0].last_error == letters[0].last_error);
    CHECK(after[0].first_failure == letters[0].first_failure);
    CHECK(after[0].last_failure == letters[0].last_failure);
    CHECK(std::get<step>(after[0].event).n == 1);
}

TEST_CASE("lifecycle: the destructor drains what was accepted", "[engine][lifecycle]") {
    test_bus bus;
    std::atomic<int> handled{0};
    auto sub = bus.subscribe("counter", [&](const ping&) { ++handled; });
    {
        test_engine engine(bus, {.shards = 2});
        for (int n = 0; n < 100; ++n) engine.post(ping{n});
    }
    CHECK(handled == 100);
}

TEST_CASE("lifecycle: a shutdown_budget of nanoseconds::max() is no limit, not one long gone",
          "[engine][lifecycle]") {
    test_bus bus;
    gate release;
    std::atomic<bool> started{false};
    std::atomic<int> handled{0};
    // The first event holds the worker until stop() is under way, so the other four are
    // still queued when stop() sets its deadline; only a passed deadline would cut them off.
    auto sub = bus.subscribe("any", [&](const step& s) {
        if (s.n == 0) {
            started = true;
            (void)release.wait();
        }
        ++handled;
    });
    test_engine engine(bus, {.shards = 1, .shutdown_budget = std::chrono::nanoseconds::max()});
    for (int n = 0; n < 5; ++n) engine.post(step{"k", n});
    REQUIRE(wait_until([&] { return started.load(); }));
    std::thread opener([&] {
        (void)wait_until([&] { return !engine.health().accepting; });
        release.open();
    });
    const evbus::stop_report report = engine.stop();
    opener.join();
    CHECK(report.complete());
    CHECK(report.not_run.empty());
    CHECK(handled == 5);
}

TEST_CASE("lifecycle: drain() on an idle engine and from several threads returns",
          "[engine][lifecycle]") {
    test_bus bus;
    std::atomic<int> handled{0};
    auto sub = bus.subscribe("counter", [&](const ping&) { ++handled; });
    test_engine engine(bus, {.shards = 3});
    engine.drain();
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
        threads.emplace_back([&] {
            for (int n = 0; n < 50; ++n) engine.post(ping{n});
            engine.drain();
        });
    }
    for (auto& t : threads) t.join();
    engine.drain();
    CHECK(handled == 150);
}

#if defined(__linux__)
TEST_CASE("lifecycle: the engine's threads are named for top, gdb and perf",
          "[engine][lifecycle]") {
    test_bus bus;
    auto sub = bus.subscribe("counter", [](const step&) {});
    test_engine engine(bus, {.shards = 2, .ring_capacity = 64});
    engine.drain();  // each worker has passed its loop's first step, which names it
    const auto names = test_support::thread_names();
    CHECK(names.count("evbus-shard-0") == 1);
    CHECK(names.count("evbus-shard-1") == 1);
    // The watchdog names itself when it first runs; wait for that, generously.
    for (int i = 0; i < 1000 && test_support::thread_names().count("evbus-watchdog") == 0; ++i) {
        std::this_thread::sleep_for(10ms);
    }
    CHECK(test_support::thread_names().count("evbus-watchdog") == 1);
}
#endif

TEST_CASE("lifecycle: drain() does not wait for what was posted after it", "[engine][lifecycle]") {
    test_bus bus;
    gate first_running;
    gate release_first;
    gate drained;
    std::atomic<bool> second_saw_drain{false};
    auto sub = bus.subscribe("s", [&](const step& s) {
        if (s.n == 1) {
            first_running.open();
            (void)release_first.wait();
        } else {
            second_saw_drain = drained.wait();  // waits for the drain() before it
        }
    });
    test_engine engine(bus, {.shards = 1});
    engine.post(step{"a", 1});
    REQUIRE(first_running.wait());
    std::thread drainer([&] {
        engine.drain();
        drained.open();
    });
    // The worker is inside event 1's call, whose batch is not yet freed: a depth of 2 is
    // event 1 and the drain's marker.
    REQUIRE(wait_until([&] { return engine.metrics().shards[0].queue_depth >= 2; }));
    engine.post(step{"b", 2});  // behind the marker
    release_first.open();
    drainer.join();
    engine.drain();
    CHECK(second_saw_drain);
}

TEST_CASE("lifecycle: when stop() returns, no drain() is still inside the engine",
          "[engine][lifecycle][race]") {
    // The engine is destroyed as soon as stop() returns, while a drain() called after stop()
    // began waits for it to finish: that drain() must have left first (the sanitizer builds
    // see a use after free if it had not).
    for (int run = 0; run < 20; ++run) {
        test_bus bus;
        gate release;
        auto sub = bus.subscribe("s", [&](const step&) { (void)release.wait(); });
        auto engine =
            std::make_unique<test_engine>(bus, evbus::engine_options<events>{.shards = 1});
        engine->post(step{"a", 1});
        std::thread stopper([&] {
            (void)engine->stop();  // waits behind the blocked handler
            engine.reset();
        });
        REQUIRE(wait_until([&] {
            return engine->try_post(step{"a", 2}) == evbus::engine_errc::closed;
        }));
        std::thread drainer([e = engine.get()] { e->drain(); });
        std::this_thread::sleep_for(5ms);  // let it reach its wait (a test of nothing if not)
        release.open();
        stopper.join();
        drainer.join();
    }
}
