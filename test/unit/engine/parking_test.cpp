#include <evbus/engine.hpp>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "engine_test_support.hpp"

using namespace engine_test;

namespace {

evbus::subscribe_options parking() {
    evbus::subscribe_options o;
    o.park_key_on_failure = true;
    return o;
}

// Handles step events; fails the ones listed in `failing` (by key + n) while listed.
struct ledger {
    std::vector<std::string>* handled;
    std::set<std::string>* failing;
    void operator()(const step& s) const {
        const std::string id = s.key + std::to_string(s.n);
        if (failing->count(id) != 0) throw std::runtime_error("cannot book " + id);
        handled->push_back(id);
    }
};

}  // namespace

TEST_CASE(
    "parking: a failed head on key A holds later A events while key B flows, and a "
    "requeue releases A in order",
    "[engine][parking]") {
    test_bus bus;
    // One shard, so A and B share a worker: B flowing shows that parking is per key.
    std::vector<std::string> handled;  // written by the one worker, read after drain()
    std::set<std::string> failing{"A1"};
    auto sub = bus.subscribe("ledger", ledger{&handled, &failing}, parking());
    test_engine engine(bus, {.shards = 1});

    engine.post(step{"A", 1});
    engine.post(step{"A", 2});
    engine.post(step{"B", 1});
    engine.post(step{"A", 3});
    engine.post(step{"B", 2});
    engine.drain();
    CHECK(handled == std::vector<std::string>{"B1", "B2"});

    const auto letters = engine.dead_letters().list();
    REQUIRE(letters.size() == 1);  // A2 and A3 wait; they are not dead letters
    CHECK(std::get<step>(letters[0].event).n == 1);
    CHECK(letters[0].parks_key);
    const auto m = engine.metrics();
    REQUIRE(m.subscription("ledger") != nullptr);
    CHECK(m.subscription("ledger")->parked == 2);
    CHECK(m.subscription("ledger")->dead_lettered == 1);

    // An A event posted now also waits behind the head.
    engine.post(step{"A", 4});
    engine.drain();
    CHECK(handled == std::vector<std::string>{"B1", "B2"});

    failing.clear();  // safe: the worker is idle (drained), and requeue() hands over in order
    REQUIRE_FALSE(engine.requeue(letters[0].id));
    engine.post(step{"A", 5});
    engine.drain();
    CHECK(handled == std::vector<std::string>{"B1", "B2", "A1", "A2", "A3", "A4", "A5"});
    CHECK(engine.dead_letters().size() == 0);
    CHECK(engine.requeue(letters[0].id) == evbus::engine_errc::no_such_dead_letter);
}

TEST_CASE("parking: discarding the head releases the parked events in order", "[engine][parking]") {
    test_bus bus;
    std::vector<std::string> handled;
    std::set<std::string> failing{"A1"};
    auto sub = bus.subscribe("ledger", ledger{&handled, &failing}, parking());
    test_engine engine(bus, {.shards = 2});
    for (int n = 1; n <= 3; ++n) engine.post(step{"A", n});
    engine.drain();
    CHECK(handled.empty());
    const auto letters = engine.dead_letters().list();
    REQUIRE(letters.size() == 1);
    REQUIRE_FALSE(engine.discard(letters[0].id));
    engine.drain();
    CHECK(handled == std::vector<std::string>{"A2", "A3"});
    CHECK(engine.dead_letters().size() == 0);
    CHECK(engine.discard(letters[0].id) == evbus::engine_errc::no_such_dead_letter);
}

TEST_CASE("parking: a released event that fails again becomes the new head", "[engine][parking]") {
    test_bus bus;
    std::vector<std::string> handled;
    std::set<std::string> failing{"A1", "A2"};
    auto sub = bus.subscribe("ledger", ledger{&handled, &failing}, parking());
    test_engine engine(bus, {.shards = 1});
    for (int n = 1; n <= 3; ++n) engine.post(step{"A", n});
    engine.drain();
    auto letters = engine.dead_letters().list();
    REQUIRE(letters.size() == 1);

    failing.erase("A1");
    REQUIRE_FALSE(engine.requeue(letters[0].id));
    engine.drain();
    // A1 succeeds, A2 fails again and now heads the key; A3 still waits.
    CHECK(handled == std::vector<std::string>{"A1"});
    letters = engine.dead_letters().list();
    REQUIRE(letters.size() == 1);
    CHECK(std::get<step>(letters[0].event).n == 2);
    CHECK(letters[0].parks_key);

    failing.clear();
    REQUIRE_FALSE(engine.requeue(letters[0].id));
    engine.drain();
    CHECK(handled == std::vector<std::string>{"A1", "A2", "A3"});
}

TEST_CASE("parking: other subscriptions of a parked key are not held", "[engine][parking]") {
    test_bus bus;
    std::vector<std::string> handled;
    std::set<std::string> failing{"A1"};
    std::atomic<int> audit{0};
    auto sub = bus.subscribe("ledger", ledger{&handled, &failing}, parking());
    auto other = bus.subscribe("audit", [&](const step&) { ++audit; });
    test_engine engine(bus, {.shards = 1});
    for (int n = 1; n <= 3; ++n) engine.post(step{"A", n});
    engine.drain();
    CHECK(handled.empty());
    CHECK(audit == 3);
}

TEST_CASE("parking: a restarted engine keeps a key parked behind its stored head",
          "[engine][parking]") {
    test_bus bus;
    std::vector<std::string> handled;
    std::set<std::string> failing{"A1"};
    auto sub = bus.subscribe("ledger", ledger{&handled, &failing}, parking());
    auto store = std::make_shared<evbus::in_memory_dead_letter_store<events>>();
    {
        test_engine first(bus, {.shards = 2, .dead_letters = store});
        first.post(step{"A", 1});
        first.drain();
    }
    REQUIRE(store->size() == 1);
    test_engine second(bus, {.shards = 2, .dead_letters = store});
    second.post(step{"A", 2});
    second.drain();
    CHECK(handled.empty());  // A2 waits behind the stored A1
    failing.clear();
    REQUIRE_FALSE(second.requeue(store->list().front().id));
    second.drain();
    CHECK(handled == std::vector<std::string>{"A1", "A2"});
}

TEST_CASE("parking: an event cut off by stop() while requeued or released counts once",
          "[engine][parking][metrics]") {
    // "requeued": the requeued head itself waits out a retry backoff when stop() comes.
    // "released": the head succeeds, and the event parked behind it waits out the backoff.
    const bool head_waits = GENERATE(true, false);
    CAPTURE(head_waits);
    test_bus bus;
    std::atomic<bool> requeued{false};
    std::atomic<bool> in_backoff{false};
    evbus::subscribe_options o = parking();
    o.retry.max_attempts = 3;
    o.retry.initial_delay = std::chrono::hours(1);  // only stop() ends the backoff
    auto sub = bus.subscribe(
        "ledger",
        [&](const step& s) -> evbus::handler_result {
            if (!requeued) {
                if (s.n == 1) return evbus::handler_result::fail("first time");
                return evbus::handler_result::ok();
            }
            if (s.n == (head_waits ? 1 : 2)) {
                in_backoff = true;
                return evbus::handler_result::retry("later");
            }
            return evbus::handler_result::ok();
        },
        o);
    test_engine engine(bus, {.shards = 1});
    engine.post(step{"A", 1});
    engine.post(step{"A", 2});  // parked behind A1
    engine.drain();
    const auto letters = engine.dead_letters().list();
    REQUIRE(letters.size() == 1);
    requeued = true;
    REQUIRE_FALSE(engine.requeue(letters[0].id));
    REQUIRE(wait_until([&] { return in_backoff.load(); }));
    const evbus::stop_report report = engine.stop(std::chrono::steady_clock::now());
    CHECK(report.not_run.size() == 1);

    const evbus::shard_metrics m = engine.metrics().shards.at(0);
    CHECK(m.accepted == 3);  // A1, A2, and A1 again (requeued)
    CHECK(m.accepted == m.handled + m.not_run);
    CHECK(m.not_run == (head_waits ? 1 : 0));  // a released A2 counted in handled when parked

    const auto after = engine.dead_letters().list();
    if (head_waits) {
        // The requeued head goes back to the store as it was, still heading its key.
        REQUIRE(after.size() == 1);
        CHECK(after[0].meta.id == letters[0].meta.id);
        CHECK(after[0].attempts == letters[0].attempts);
        CHECK(after[0].last_error == letters[0].last_error);
        CHECK(after[0].parks_key);
        CHECK(std::get<step>(after[0].event).n == 1);
    } else {
        CHECK(after.empty());  // A1 succeeded; A2 was never a dead letter
    }
}
