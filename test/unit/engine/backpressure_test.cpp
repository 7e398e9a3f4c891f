#include <evbus/engine.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "engine_test_support.hpp"

using namespace engine_test;

namespace {

// An event whose key function waits at a gate when it has one: it holds a post between the
// engine's first "closed?" look and its claim on the ring.
struct held_key {
    static constexpr std::string_view event_name = "test.held_key";
    gate* hold = nullptr;
    std::atomic<bool>* inside = nullptr;
    [[nodiscard]] std::string_view event_key() const {
        if (hold != nullptr) {
            *inside = true;
            (void)hold->wait();
        }
        return "k";
    }
};

}  // namespace

TEST_CASE("backpressure: a stalled shard blocks post(), try_post() says full, nothing is lost",
          "[engine][backpressure]") {
    constexpr std::size_t capacity = 8;
    constexpr int total = 10 * static_cast<int>(capacity);
    test_bus bus;
    gate stall;
    std::atomic<bool> stalled{false};
    std::atomic<bool> gave_up{false};  // Catch2 assertions belong on the test's thread
    std::vector<int> seen;             // one worker writes, read after drain()
    auto sub = bus.subscribe("slow", [&](const step& s) {
        if (s.n == 0) {
            stalled = true;
            if (!stall.wait()) gave_up = true;
        }
        seen.push_back(s.n);
    });
    test_engine engine(bus, {.shards = 1, .ring_capacity = capacity});

    std::atomic<int> posted{0};
    std::thread producer([&] {
        for (int n = 0; n < total; ++n) {
            engine.post(step{"k", n});
            ++posted;
        }
    });
    // The worker holds event 0 in its slot while it handles it, so the ring fills with
    // `capacity` events and the next post() blocks.
    REQUIRE(wait_until([&] { return stalled.load() && posted.load() >= int{capacity}; }));
    CHECK(engine.try_post(step{"k", -1}) == evbus::engine_errc::full);
    CHECK(engine.try_post(step{"other-key", -2}) == evbus::engine_errc::full);  // same shard
    // The producer stays blocked while the shard is stalled (a progress check, not timing).
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(posted.load() == int{capacity});
    CHECK(engine.metrics().shards[0].queue_depth == capacity);
    CHECK(wait_until([&] { return engine.metrics().shards[0].waiting_posts == 1; }));

    stall.open();
    producer.join();
    engine.drain();
    CHECK(engine.metrics().shards[0].waiting_posts == 0);
    CHECK_FALSE(gave_up);
    REQUIRE(seen.size() == static_cast<std::size_t>(total));
    for (int n = 0; n < total; ++n) CHECK(seen[static_cast<std::size_t>(n)] == n);
    CHECK(engine.metrics().shards[0].accepted == static_cast<std::uint64_t>(total));
}

TEST_CASE("backpressure: a post waiting on a full ring gets 'closed' as soon as stop() begins",
          "[engine][backpressure][lifecycle]") {
    constexpr std::size_t capacity = 4;
    test_bus bus;
    gate stall;
    std::atomic<bool> stalled{false};
    std::atomic<bool> gave_up{false};
    std::atomic<int> handled{0};
    auto sub = bus.subscribe("slow", [&](const step& s) {
        if (s.n == 0) {
            stalled = true;
            if (!stall.wait()) gave_up = true;
        }
        ++handled;
    });
    test_engine engine(bus, {.shards = 1, .ring_capacity = capacity});

    std::atomic<int> posted{0};
    std::atomic<bool> refused{false};
    std::thread producer([&] {
        try {
            for (int n = 0;; ++n) {
                engine.post(step{"k", n});
                ++posted;
            }
        } catch (const std::system_error& e) {
            refused = e.code() == evbus::engine_errc::closed;
        }
    });
    REQUIRE(wait_until([&] { return stalled.load() && posted.load() >= int{capacity}; }));

    evbus::stop_report report;
    std::thread stopper([&] { report = engine.stop(std::chrono::steady_clock::now() + patience); });
    // The shard is still stalled, so no slot frees: only stop() can release the producer.
    REQUIRE(wait_until([&] { return refused.load(); }));
    producer.join();
    CHECK(posted.load() == int{capacity});

    stall.open();
    stopper.join();
    CHECK_FALSE(gave_up);
    CHECK(report.drained);
    CHECK(report.complete());
    CHECK(handled.load() == int{capacity});
    CHECK(engine.metrics().shards[0].accepted == capacity);
}

TEST_CASE("backpressure: an engine destroyed under posts waiting for space wakes them first",
          "[engine][backpressure][lifecycle]") {
    constexpr int waiting = 4;
    test_bus bus;
    std::atomic<bool> stalled{false};
    // Holds the worker until the destructor's stop() asks it to return.
    auto sub = bus.subscribe("slow", [&](const step& s, evbus::handler_context& ctx) {
        if (s.n != 0) return;
        stalled = true;
        (void)wait_until([&] { return ctx.stop_token().stop_requested(); });
    });
    auto engine = std::make_unique<test_engine>(
        bus, evbus::engine_options<events>{.shards = 1, .ring_capacity = 2, .shutdown_budget = {}});
    engine->post(step{"k", 0});
    REQUIRE(wait_until([&] { return stalled.load(); }));
    int filled = 0;  // the stalled worker frees nothing, so this ends with the ring full
    while (!engine->try_post(step{"k", 1})) ++filled;
    REQUIRE(filled >= 1);
    std::atomic<int> refused{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < waiting; ++p) {
        producers.emplace_back([raw = engine.get(), &refused, p] {
            try {
                raw->post(step{"k", 10 + p});
            } catch (const std::system_error& e) {
                if (e.code() == evbus::engine_errc::closed) ++refused;
            }
        });
    }
    // Every producer is inside post(), waiting; none touches the engine after it returns.
    REQUIRE(wait_until([&] { return engine->metrics().shards[0].waiting_posts == waiting; }));
    engine.reset();  // stop() wakes them and waits until they have left the engine
    for (auto& t : producers) t.join();
    CHECK(refused == waiting);
}

TEST_CASE("backpressure: try_post() on a full ring says closed, not full, once stop() began",
          "[engine][backpressure][lifecycle]") {
    using held_events = evbus::event_set<step, held_key>;
    evbus::bus<held_events> bus;
    gate stall;
    std::atomic<bool> stalled{false};
    std::atomic<bool> gave_up{false};
    auto sub = bus.subscribe("slow", [&](const step& s) {
        if (s.n == 0) {
            stalled = true;
            if (!stall.wait()) gave_up = true;
        }
    });
    evbus::engine<held_events> engine(bus, {.shards = 1, .ring_capacity = 4});
    engine.post(step{"k", 0});
    REQUIRE(wait_until([&] { return stalled.load(); }));
    // Fill the ring (how many fit beside the event being handled is the engine's business).
    int accepted = 1;
    std::error_code filled;
    while (!(filled = engine.try_post(step{"k", accepted})) && accepted < 100) ++accepted;
    REQUIRE(filled == evbus::engine_errc::full);

    // A try_post past the engine's first look, held in the key function.
    gate hold;
    std::atomic<bool> inside{false};
    std::error_code held_result;
    std::thread poster([&] { held_result = engine.try_post(held_key{&hold, &inside}); });
    REQUIRE(wait_until([&] { return inside.load(); }));

    evbus::stop_report report;
    std::thread stopper([&] { report = engine.stop(std::chrono::steady_clock::now() + patience); });
    REQUIRE(wait_until([&] {
        return engine.try_post(step{"k", -1}) == evbus::engine_errc::closed;
    }));
    hold.open();  // the held post now finds the ring still full, and the engine closed
    poster.join();
    CHECK(held_result == evbus::engine_errc::closed);

    stall.open();
    stopper.join();
    CHECK_FALSE(gave_up);
    CHECK(report.complete());
    CHECK(engine.metrics().shards[0].accepted == static_cast<std::uint64_t>(accepted));
}
