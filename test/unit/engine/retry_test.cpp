#include <evbus/retry.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "engine_test_support.hpp"

using namespace engine_test;
using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

evbus::subscribe_options retrying(std::uint32_t attempts, nanoseconds initial = 1ms) {
    evbus::subscribe_options o;
    o.retry.max_attempts = attempts;
    o.retry.initial_delay = initial;
    o.retry.max_delay = 4ms;
    return o;
}

struct flaky_io : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct bad_input : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace

TEST_CASE("retry: without jitter the delay doubles from the initial delay up to the cap",
          "[engine][retry]") {
    evbus::retry_policy p;
    p.initial_delay = 10ms;
    p.multiplier = 2.0;
    p.max_delay = 100ms;
    CHECK(evbus::backoff_delay(p, 0, 0.5) == 0ns);
    CHECK(evbus::backoff_delay(p, 1, 0.5) == 0ns);  // the first attempt is never delayed
    CHECK(evbus::backoff_delay(p, 2, 0.5) == 10ms);
    CHECK(evbus::backoff_delay(p, 3, 0.5) == 20ms);
    CHECK(evbus::backoff_delay(p, 4, 0.5) == 40ms);
    CHECK(evbus::backoff_delay(p, 5, 0.5) == 80ms);
    CHECK(evbus::backoff_delay(p, 6, 0.5) == 100ms);
    CHECK(evbus::backoff_delay(p, 7, 0.0) == 100ms);
    CHECK(evbus::backoff_delay(p, 4'000'000'000U, 0.9) == 100ms);  // saturates, no overflow
}

TEST_CASE("retry: a zero initial delay stays zero however many attempts", "[engine][retry]") {
    evbus::retry_policy p;
    p.initial_delay = 0ns;
    p.multiplier = 2.0;
    p.max_delay = 30s;
    p.jitter = 0.5;
    CHECK(evbus::backoff_delay(p, 2, 0.9) == 0ns);
    CHECK(evbus::backoff_delay(p, 1026, 0.9) == 0ns);  // past where 2^n overflows a double
    CHECK(evbus::backoff_delay(p, 4'000'000'000U, 0.9) == 0ns);
}

TEST_CASE("retry: with jitter the delay stays within +-jitter of the undisturbed delay",
          "[engine][retry]") {
    evbus::retry_policy p;
    p.initial_delay = 1ms;
    p.multiplier = 3.0;
    p.max_delay = 50ms;
    p.jitter = 0.25;
    evbus::retry_policy plain = p;
    plain.jitter = 0.0;
    for (std::uint32_t attempt = 2; attempt <= 8; ++attempt) {
        const auto base = static_cast<double>(evbus::backoff_delay(plain, attempt, 0.0).count());
        double low = 1e300;
        double high = 0.0;
        for (int i = 0; i <= 1000; ++i) {
            const double u = i / 1000.0;  // includes 0 and 1 (clamped below 1)
            const auto d = static_cast<double>(evbus::backoff_delay(p, attempt, u).count());
            INFO("attempt " << attempt << " u " << u);
            CHECK(d >= base * 0.75 - 1.0);
            CHECK(d <= base * 1.25 + 1.0);
            low = std::min(low, d);
            high = std::max(high, d);
        }
        // The jitter really spreads: the extremes are near the bounds.
        CHECK(low <= base * 0.76);
        CHECK(high >= base * 1.24);
    }
    CHECK(evbus::backoff_delay(p, 1, 0.99) == 0ns);  // jitter never delays the first attempt
}

TEST_CASE("retry: a handler that always fails is called max_attempts times, then dead-lettered",
          "[engine][retry]") {
    auto sink = std::make_shared<evbus::dead_letter_list>();
    test_bus bus({sink});
    std::vector<std::uint32_t> attempts;  // one key, one worker
    auto sub = bus.subscribe(
        "always-failing",
        [&](const step&, evbus::handler_context& ctx) {
            attempts.push_back(ctx.attempt());
            throw flaky_io("database unavailable");
        },
        retrying(4));
    test_engine engine(bus, {.shards = 2});
    engine.post(step{"frank", 1});
    engine.drain();
    CHECK(attempts == std::vector<std::uint32_t>{1, 2, 3, 4});
    const auto letters = engine.dead_letters().list();
    REQUIRE(letters.size() == 1);
    CHECK(letters[0].attempts == 4);
    CHECK(letters[0].last_error == "database unavailable");
    CHECK(letters[0].first_failure <= letters[0].last_failure);
    const auto records = sink->records();
    REQUIRE(records.size() == 4);
    for (std::uint32_t i = 0; i < 4; ++i) CHECK(records[i].attempt == i + 1);
}

TEST_CASE("retry: a handler that succeeds on its third attempt is not dead-lettered",
          "[engine][retry]") {
    test_bus bus;
    int calls = 0;
    auto sub = bus.subscribe(
        "third-time-lucky",
        [&](const step&) -> evbus::handler_result {
            return ++calls < 3 ? evbus::handler_result::retry("not yet")
                               : evbus::handler_result::ok();
        },
        retrying(5));
    test_engine engine(bus, {.shards = 1});
    const auto report = engine.post_and_wait(step{"gina", 1});
    CHECK(calls == 3);
    REQUIRE(report.outcomes.size() == 1);
    CHECK(report.outcomes[0].status == evbus::delivery_status::succeeded);
    CHECK(report.outcomes[0].attempts == 3);
    CHECK(engine.dead_letters().size() == 0);
}

TEST_CASE("retry: the first attempt is not delayed by the backoff", "[engine][retry]") {
    test_bus bus;
    // An hour of initial delay: if the first attempt waited for it, the future below would
    // not be ready within the (generous) patience.
    auto sub = bus.subscribe(
        "prompt", [](const step&) {}, retrying(3, std::chrono::hours(1)));
    test_engine engine(bus, {.shards = 1});
    auto outcome = engine.post_tracked(step{"hank", 1});
    REQUIRE(outcome.wait_for(patience) == std::future_status::ready);
    const auto report = outcome.get();
    REQUIRE(report.outcomes.size() == 1);
    CHECK(report.outcomes[0].attempts == 1);
    CHECK(report.all_succeeded());
}

TEST_CASE("retry: the longest backoff waits for stop(), it does not retry at once",
          "[engine][retry]") {
    test_bus bus;
    std::atomic<int> calls{0};
    evbus::subscribe_options o;
    o.retry.max_attempts = 2;
    o.retry.initial_delay = nanoseconds::max();
    o.retry.max_delay = nanoseconds::max();
    auto sub = bus.subscribe(
        "patient",
        [&](const step&) {
            ++calls;
            throw flaky_io("down");
        },
        o);
    test_engine engine(bus, {.shards = 1});
    evbus::metadata m = evbus::metadata::with_key("ivy");
    m.id = evbus::event_id::generate();
    engine.post(step{"ivy", 1}, m);
    REQUIRE(wait_until([&] { return calls.load() >= 1; }));
    // The worker is in the backoff sleep now; stop() interrupts it.
    const evbus::stop_report report = engine.stop(std::chrono::steady_clock::now());
    CHECK(calls == 1);
    CHECK(report.not_run == std::vector<evbus::event_id>{m.id});
    CHECK(engine.dead_letters().size() == 0);
}

TEST_CASE("retry: non-retryable errors go straight to the dead letters", "[engine][retry]") {
    test_bus bus;
    std::atomic<int> permanent_calls{0};
    std::atomic<int> fail_calls{0};
    std::atomic<int> classified_calls{0};
    auto permanent = bus.subscribe(
        "permanent",
        [&](const step&) {
            ++permanent_calls;
            throw evbus::permanent_error("malformed account number");
        },
        retrying(5));
    auto failing = bus.subscribe(
        "fail-result",
        [&](const step&) {
            ++fail_calls;
            return evbus::handler_result::fail("rejected");
        },
        retrying(5));
    evbus::subscribe_options classified = retrying(5);
    classified.retry.retryable = [](const std::exception_ptr& e) {
        try {
            std::rethrow_exception(e);
        } catch (const bad_input&) {
            return false;
        } catch (...) {
            return true;
        }
    };
    auto classifier = bus.subscribe(
        "classified",
        [&](const step&) {
            ++classified_calls;
            throw bad_input("negative amount");
        },
        classified);
    test_engine engine(bus, {.shards = 1});
    const auto report = engine.post_and_wait(step{"ivan", 1});
    CHECK(permanent_calls == 1);
    CHECK(fail_calls == 1);
    CHECK(classified_calls == 1);
    REQUIRE(report.outcomes.size() == 3);
    for (const auto& o : report.outcomes) {
        INFO(o.subscription);
        CHECK(o.status == evbus::delivery_status::dead_lettered);
        CHECK(o.attempts == 1);
    }
    CHECK(engine.dead_letters().size() == 3);
}

TEST_CASE("retry: a retried event keeps its key's order", "[engine][retry][order]") {
    test_bus bus;
    std::vector<std::string> log;  // one key, one worker
    int first_calls = 0;
    auto sub = bus.subscribe(
        "ordered",
        [&](const step& s) -> evbus::handler_result {
            if (s.n == 1 && ++first_calls < 3) {
                log.push_back("1-failed");
                return evbus::handler_result::retry("later");
            }
            log.push_back(std::to_string(s.n));
            return evbus::handler_result::ok();
        },
        retrying(3));
    test_engine engine(bus, {.shards = 2});
    for (int n = 1; n <= 3; ++n) engine.post(step{"jane", n});
    engine.drain();
    CHECK(log == std::vector<std::string>{"1-failed", "1-failed", "1", "2", "3"});
}
