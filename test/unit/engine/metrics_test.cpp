#include <evbus/detail/cycle_clock.hpp>
#include <evbus/engine.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include <catch2/catch.hpp>

#include "engine_test_support.hpp"

using namespace engine_test;
using namespace std::chrono_literals;

TEST_CASE("metrics: the counters match what happened", "[engine][metrics]") {
    test_bus bus;
    auto steady = bus.subscribe("steady", [](const step&) {});
    evbus::subscribe_options retrying;
    retrying.retry.max_attempts = 2;
    retrying.retry.initial_delay = 1ms;
    retrying.park_key_on_failure = true;
    int attempts_for_key_b = 0;
    auto flaky = bus.subscribe(
        "flaky",
        [&](const step& s, evbus::handler_context& ctx) {
            if (s.key == "A" && s.n % 2 == 0 && ctx.attempt() == 1) {
                throw std::runtime_error("first attempt of an even event fails");
            }
            if (s.key == "B") {
                ++attempts_for_key_b;
                if (s.n == 1) throw std::runtime_error("B1 always fails");
            }
        },
        retrying);
    test_engine engine(bus, {.shards = 2});
    for (int n = 1; n <= 10; ++n) engine.post(step{"A", n});  // 5 retried, all succeed
    for (int n = 1; n <= 3; ++n) engine.post(step{"B", n});   // B1 dead, B2 and B3 parked
    engine.post(ping{1});                                     // nobody listens
    engine.drain();

    const auto m = engine.metrics();
    REQUIRE(m.shards.size() == 2);
    std::uint64_t accepted = 0;
    std::uint64_t handled = 0;
    std::uint64_t failed = 0;
    std::uint64_t retried = 0;
    std::uint64_t dead = 0;
    std::uint64_t parked = 0;
    for (const auto& s : m.shards) {
        accepted += s.accepted;
        handled += s.handled;
        failed += s.failed;
        retried += s.retried;
        dead += s.dead_lettered;
        parked += s.parked;
        CHECK(s.queue_depth == 0);
        CHECK(s.not_run == 0);
    }
    CHECK(accepted == 14);
    CHECK(handled == 14);
    CHECK(failed == 5 + 2);  // five even A events once, B1 twice
    CHECK(retried == 5 + 1);
    CHECK(dead == 1);
    CHECK(parked == 2);
    CHECK(attempts_for_key_b == 2);

    const auto* st = m.subscription("steady");
    REQUIRE(st != nullptr);
    CHECK(st->handled == 13);
    CHECK(st->failed == 0);
    CHECK(st->latency.count == 13);

    const auto* fl = m.subscription("flaky");
    REQUIRE(fl != nullptr);
    CHECK(fl->handled == 10);  // A1..A10; B1 dead, B2 and B3 parked
    CHECK(fl->failed == 7);
    CHECK(fl->retried == 6);
    CHECK(fl->dead_lettered == 1);
    CHECK(fl->parked == 2);
    CHECK(fl->latency.count == 10 + 5 + 2);  // every call, failed ones included
    CHECK(fl->latency.p50 <= fl->latency.p99);
    CHECK(fl->latency.p99 <= fl->latency.p999);
    CHECK(fl->latency.p999 <= fl->latency.max);
    CHECK(fl->latency.max > 0ns);
}

namespace {

// Spins until steady_clock says `d` has passed, and returns how long it really spun.
std::chrono::nanoseconds spin_for(std::chrono::nanoseconds d) {
    const auto t0 = std::chrono::steady_clock::now();
    auto t = t0;
    while (t - t0 < d) t = std::chrono::steady_clock::now();
    return t - t0;
}

}  // namespace

TEST_CASE("metrics: the cycle clock measures what steady_clock measures",
          "[engine][metrics][clock]") {
    const auto clock = evbus::detail::cycle_clock::calibrated();
    CHECK(clock.uses_counter() == evbus::detail::cycle_clock::calibrated().uses_counter());
    CHECK(evbus::detail::cycle_clock{}.uses_counter() == false);
    // The best of three 2 ms spins: a preemption between the spin and a reading can only
    // make one of them look long. A rate taken from the wrong unit is off by 1000x or more,
    // a bad calibration by far more than the 10% allowed.
    double best = 1e9;
    for (int attempt = 0; attempt < 3; ++attempt) {
        const std::uint64_t c0 = clock.now();
        const auto spun = spin_for(2ms);
        const std::uint64_t c1 = clock.now();
        const double ratio =
            static_cast<double>(clock.between(c0, c1).count()) / static_cast<double>(spun.count());
        best = std::min(best, std::abs(ratio - 1.0));
        CHECK(clock.between(c1, c0) == 0ns);  // a reading behind the other: no negative time
    }
    CHECK(best < 0.1);
}

TEST_CASE("metrics: handler latency is measured for short calls, long ones and timed ones",
          "[engine][metrics][clock]") {
    test_bus bus;
    // 20 us: timed by the cycle clock; 2 ms: past resync_after, timed by steady_clock.
    static_assert(evbus::detail::cycle_clock::resync_after > 20us);
    static_assert(evbus::detail::cycle_clock::resync_after < 2ms);
    std::chrono::nanoseconds shortest_short = 1h;
    std::chrono::nanoseconds shortest_long = 1h;
    std::chrono::nanoseconds shortest_timed = 1h;
    auto short_calls = bus.subscribe(
        "short", [&](const step&) { shortest_short = std::min(shortest_short, spin_for(20us)); });
    auto long_calls = bus.subscribe(
        "long", [&](const ping&) { shortest_long = std::min(shortest_long, spin_for(2ms)); });
    evbus::subscribe_options with_timeout;
    with_timeout.timeout = 10s;
    auto timed_calls = bus.subscribe(
        "timed", [&](const tick&) { shortest_timed = std::min(shortest_timed, spin_for(20us)); },
        with_timeout);
    test_engine engine(bus, {.shards = 1});
    for (int n = 0; n < 20; ++n) {
        engine.post(step{"k", n});
        engine.post(ping{n});
        engine.post(tick{1, 0, static_cast<std::uint32_t>(n)});
    }
    engine.drain();
    const auto m = engine.metrics();
    for (const auto& [name, floor] :
         {std::pair{"short", shortest_short}, {"long", shortest_long}, {"timed", shortest_timed}}) {
        INFO(name);
        const auto* s = m.subscription(name);
        REQUIRE(s != nullptr);
        CHECK(s->latency.count == 20);
        // Each call spun at least `floor` by steady_clock; the histogram's buckets are
        // coarse, so allow it half of that (a unit error would be 1000x off).
        CHECK(s->latency.p50 >= floor / 2);
        CHECK(s->latency.max >= floor * 9 / 10);
    }
}
