#include <evbus/engine.hpp>

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
