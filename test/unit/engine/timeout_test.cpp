#include <evbus/detail/deadline.hpp>
#include <evbus/engine.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "engine_test_support.hpp"

using namespace engine_test;
using namespace std::chrono_literals;

namespace {

// Blocks until the call's stop token is requested (the watchdog does it once the deadline
// passed), bounded by `patience`; returns whether it was requested.
bool wait_for_stop(const evbus::handler_context& ctx) {
    const auto give_up = std::chrono::steady_clock::now() + patience;
    while (!ctx.stop_token().stop_requested()) {
        if (std::chrono::steady_clock::now() > give_up) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

std::size_t records_containing(const evbus::dead_letter_list& sink, const std::string& text) {
    std::size_t n = 0;
    for (const auto& r : sink.records()) {
        if (r.error.find(text) != std::string::npos) ++n;
    }
    return n;
}

}  // namespace

TEST_CASE(
    "timeout: an overrun is a failure, reported with event id and subscription, and "
    "retried",
    "[engine][timeout]") {
    auto sink = std::make_shared<evbus::dead_letter_list>();
    test_bus bus({sink});
    std::atomic<int> calls{0};
    std::atomic<bool> stop_seen{false};
    std::atomic<bool> deadline_set{false};
    evbus::subscribe_options o;
    o.timeout = 20ms;
    // Later attempts return at once; the spare attempts only absorb a 20 ms preemption on a
    // busy machine.
    o.retry.max_attempts = 10;
    o.retry.initial_delay = 1ms;
    o.retry.max_delay = 1ms;
    auto sub = bus.subscribe(
        "budgeted",
        [&](const step&, evbus::handler_context& ctx) {
            deadline_set = ctx.deadline() != evbus::handler_context::clock::time_point::max();
            if (++calls == 1 && wait_for_stop(ctx)) stop_seen = true;  // overruns once
        },
        o);
    test_engine engine(bus, {.shards = 1, .watchdog_interval = 2ms});
    evbus::metadata m = evbus::metadata::with_key("k");
    m.id = evbus::event_id::generate();
    const auto report = engine.post_and_wait(step{"k", 1}, m);

    CHECK(deadline_set);
    CHECK(stop_seen);
    CHECK(calls >= 2);
    REQUIRE(report.outcomes.size() == 1);
    CHECK(report.outcomes[0].status == evbus::delivery_status::succeeded);
    CHECK(report.outcomes[0].attempts == static_cast<std::uint32_t>(calls.load()));
    const auto records = sink->records();
    REQUIRE(records.size() == static_cast<std::size_t>(calls.load()) - 1);
    CHECK(records[0].event == m.id);
    CHECK(records[0].subscription == "budgeted");
    CHECK(records[0].attempt == 1);
    CHECK_THAT(records[0].error, Catch::Contains("timeout") && Catch::Contains("budget is 20 ms"));
}

TEST_CASE("timeout: a handler that always overruns ends in the dead letters", "[engine][timeout]") {
    test_bus bus;
    evbus::subscribe_options o;
    o.timeout = 5ms;
    o.retry.max_attempts = 2;
    o.retry.initial_delay = 1ms;
    auto sub = bus.subscribe(
        "too-slow", [](const step&, evbus::handler_context& ctx) { (void)wait_for_stop(ctx); }, o);
    test_engine engine(bus, {.shards = 1, .watchdog_interval = 2ms});
    engine.post(step{"k", 1});
    engine.drain();
    const auto letters = engine.dead_letters().list();
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].attempts == 2);
    CHECK_THAT(letters[0].last_error, Catch::Contains("timeout"));
}

TEST_CASE("deadline_after: a duration too long to add gives time_point::max()",
          "[engine][timeout]") {
    using time_point = std::chrono::steady_clock::time_point;
    const time_point now = std::chrono::steady_clock::now();
    CHECK(evbus::detail::deadline_after(now, 5ms) == now + 5ms);
    CHECK(evbus::detail::deadline_after(now, 0ns) == now);
    CHECK(evbus::detail::deadline_after(now, std::chrono::nanoseconds::max()) == time_point::max());
    CHECK(evbus::detail::deadline_after(time_point::max() - 1ns, 1ns) == time_point::max());
    CHECK(evbus::detail::deadline_after(time_point::max() - 1ns, 2ns) == time_point::max());
}

TEST_CASE("saturating_ns: a duration too long for nanoseconds gives max() or min()",
          "[engine][timeout]") {
    using std::chrono::nanoseconds;
    CHECK(evbus::detail::saturating_ns(2ms) == 2'000'000ns);
    CHECK(evbus::detail::saturating_ns(-3s) == -3'000'000'000ns);
    CHECK(evbus::detail::saturating_ns(nanoseconds::max()) == nanoseconds::max());
    CHECK(evbus::detail::saturating_ns(std::chrono::milliseconds::max()) == nanoseconds::max());
    CHECK(evbus::detail::saturating_ns(std::chrono::hours::max()) == nanoseconds::max());
    CHECK(evbus::detail::saturating_ns(std::chrono::seconds::min()) == nanoseconds::min());
    // The largest whole number of seconds that fits converts exactly.
    constexpr auto fits = std::chrono::duration_cast<std::chrono::seconds>(nanoseconds::max());
    CHECK(evbus::detail::saturating_ns(fits - 1s) ==
          std::chrono::duration_cast<nanoseconds>(fits - 1s));
}

TEST_CASE("timeout: nanoseconds::max() is no limit, not a deadline in the past",
          "[engine][timeout]") {
    test_bus bus;
    evbus::subscribe_options o;
    o.timeout = std::chrono::nanoseconds::max();
    auto sub = bus.subscribe(
        "unhurried", [](const step&) {}, o);
    test_engine engine(bus, {.shards = 1});
    auto outcome = engine.post_tracked(step{"k", 1});
    REQUIRE(outcome.wait_for(patience) == std::future_status::ready);
    CHECK(outcome.get().all_succeeded());
    CHECK(engine.dead_letters().size() == 0);
}

TEST_CASE("timeout: an overrun after a thrown attempt reports only its own error",
          "[engine][timeout]") {
    auto sink = std::make_shared<evbus::dead_letter_list>();
    test_bus bus({sink});
    std::atomic<int> calls{0};
    evbus::subscribe_options o;
    o.timeout = 5ms;
    o.retry.max_attempts = 2;
    o.retry.initial_delay = 1ms;
    auto sub = bus.subscribe(
        "throws-then-overruns",
        [&](const step&, evbus::handler_context& ctx) {
            if (++calls == 1) throw std::runtime_error("first attempt failed");
            (void)wait_for_stop(ctx);
        },
        o);
    test_engine engine(bus, {.shards = 1, .watchdog_interval = 2ms});
    engine.post(step{"k", 1});
    engine.drain();

    const auto records = sink->records();
    REQUIRE(records.size() == 2);
    CHECK_THAT(records[0].error, Catch::Contains("first attempt failed"));
    CHECK_THAT(records[1].error,
               Catch::Contains("timeout") && !Catch::Contains("first attempt failed"));
    const auto letters = engine.dead_letters().list();
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].attempts == 2);
    CHECK(letters[0].last_error == records[1].error);
    CHECK(letters[0].first_failure.time_since_epoch().count() > 0);
    CHECK(letters[0].first_failure <= letters[0].last_failure);
}

namespace {

// Sleeps when destroyed: an event that owns it takes that long to drop.
struct slow_release {
    std::chrono::milliseconds takes;
    ~slow_release() { std::this_thread::sleep_for(takes); }
};

// A payload whose destruction is slow (the last owner of a big structure, say).
struct heavy {
    static constexpr std::string_view event_name = "test.heavy";
    std::string key;
    std::shared_ptr<slow_release> owned;
    [[nodiscard]] std::string_view event_key() const { return key; }
};

using heavy_events = evbus::event_set<heavy, step>;

}  // namespace

TEST_CASE("timeout: a deadline counts only the call, not what the worker did before it",
          "[engine][timeout]") {
    evbus::bus<heavy_events> bus;
    auto plain = bus.subscribe("plain", [](const heavy&) {});
    std::atomic<int> calls{0};
    evbus::subscribe_options o;
    o.timeout = 1s;  // far above the call itself, far below what ran before it
    o.retry.max_attempts = 1;
    auto budgeted = bus.subscribe(
        "budgeted", [&](const step&) { ++calls; }, o);
    evbus::engine<heavy_events> engine(bus, {.shards = 1});
    // Same shard and batch: the heavy event's 1.5 s destruction runs on the worker between
    // its own call and the step's.
    engine.post(heavy{"k", std::make_shared<slow_release>(1500ms)});
    engine.post(step{"k", 1});
    engine.drain();
    CHECK(calls == 1);
    CHECK(engine.dead_letters().size() == 0);
    const auto m = engine.metrics();
    const auto* s = m.subscription("budgeted");
    REQUIRE(s != nullptr);
    CHECK(s->handled == 1);
    CHECK(s->failed == 0);
}

TEST_CASE("watchdog: health() reports a shard stuck past the hard limit", "[engine][watchdog]") {
    auto sink = std::make_shared<evbus::dead_letter_list>();
    test_bus bus({sink});
    gate release;
    std::atomic<bool> gave_up{false};
    auto sub = bus.subscribe("stuck", [&](const step&) {
        if (!release.wait()) gave_up = true;
    });
    test_engine engine(bus, {.shards = 2, .stuck_after = 30ms, .watchdog_interval = 5ms});
    evbus::metadata m = evbus::metadata::with_key("k");
    m.id = evbus::event_id::generate();
    engine.post(step{"k", 1}, m);

    evbus::engine_health h;
    REQUIRE(wait_until([&] {
        h = engine.health();
        return !h.stuck.empty();
    }));
    CHECK_FALSE(h.healthy());
    REQUIRE(h.stuck.size() == 1);
    CHECK(h.stuck[0].shard == engine.shard_of(m));
    CHECK(h.stuck[0].event == m.id);
    CHECK(h.stuck[0].event_name == "test.step");
    CHECK(h.stuck[0].subscription == "stuck");
    CHECK(h.stuck[0].running_for >= 30ms);
    // The watchdog also told the error sink, once per stuck call.
    REQUIRE(wait_until([&] { return records_containing(*sink, "is stuck") == 1; }));

    release.open();
    REQUIRE(wait_until([&] { return engine.health().healthy(); }));
    engine.drain();
    CHECK_FALSE(gave_up);
    CHECK(records_containing(*sink, "is stuck") == 1);
}
