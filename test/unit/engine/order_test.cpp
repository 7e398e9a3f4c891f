#include <evbus/engine.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "engine_test_support.hpp"

using namespace engine_test;
using namespace std::chrono_literals;

TEST_CASE("engine: five events with one key are handled in order 1..5", "[engine][order]") {
    test_bus bus;
    std::vector<int> seen;  // one key: touched by one worker only, read after drain()
    auto sub = bus.subscribe("recorder", [&](const step& s) { seen.push_back(s.n); });
    test_engine engine(bus, {.shards = 4});
    for (int n = 1; n <= 5; ++n) engine.post(step{"alice", n});
    engine.drain();
    CHECK(seen == std::vector<int>{1, 2, 3, 4, 5});
}

TEST_CASE("engine: two keys on different shards run at the same time, each in order",
          "[engine][order][concurrency]") {
    test_bus bus;
    rendezvous both;
    std::atomic<bool> met{false};
    std::atomic<int> running{0};
    std::atomic<int> most{0};
    std::mutex seen_mutex;
    std::map<std::string, std::vector<int>> seen;
    auto sub = bus.subscribe("blocking", [&](const step& s) {
        const int now = running.fetch_add(1) + 1;
        int prev = most.load();
        while (now > prev && !most.compare_exchange_weak(prev, now)) {
        }
        // The first event of each key waits until the other key's first event is running
        // too: only possible when two handlers run at once.
        if (s.n == 1 && both.arrive_and_wait(2)) met = true;
        {
            const std::lock_guard lock(seen_mutex);
            seen[s.key].push_back(s.n);
        }
        running.fetch_sub(1);
    });
    test_engine engine(bus, {.shards = 2});
    const auto keys = keys_on_distinct_shards(engine, 2);
    REQUIRE(engine.shard_of(evbus::metadata::with_key(keys[0])) !=
            engine.shard_of(evbus::metadata::with_key(keys[1])));
    for (int n = 1; n <= 4; ++n) {
        engine.post(step{keys[0], n});
        engine.post(step{keys[1], n});
    }
    engine.drain();
    CHECK(met);
    CHECK(most == 2);
    CHECK(seen[keys[0]] == std::vector<int>{1, 2, 3, 4});
    CHECK(seen[keys[1]] == std::vector<int>{1, 2, 3, 4});
}

TEST_CASE("engine: with one shard never more than one handler runs at once",
          "[engine][order][concurrency]") {
    test_bus bus;
    std::atomic<int> running{0};
    std::atomic<int> most{0};
    std::map<std::string, std::vector<int>> seen;  // one worker writes, read after drain()
    auto sub = bus.subscribe("serial", [&](const step& s) {
        const int now = running.fetch_add(1) + 1;
        int prev = most.load();
        while (now > prev && !most.compare_exchange_weak(prev, now)) {
        }
        std::this_thread::yield();  // give a second runner, if there were one, a chance
        seen[s.key].push_back(s.n);
        running.fetch_sub(1);
    });
    test_engine engine(bus, {.shards = 1});
    std::vector<std::thread> producers;
    for (int p = 0; p < 3; ++p) {
        producers.emplace_back([&engine, p] {
            const std::string key = "k" + std::to_string(p);
            for (int n = 1; n <= 200; ++n) engine.post(step{key, n});
        });
    }
    for (auto& t : producers) t.join();
    engine.drain();
    CHECK(most == 1);
    REQUIRE(seen.size() == 3);
    for (const auto& [key, ns] : seen) {
        INFO("key " << key);
        CHECK(ns.size() == 200);
        CHECK(std::is_sorted(ns.begin(), ns.end()));
        CHECK(std::adjacent_find(ns.begin(), ns.end()) == ns.end());
    }
}

TEST_CASE("engine: a handler that throws on event 2 of 3 dead-letters only event 2",
          "[engine][failure]") {
    auto sink = std::make_shared<evbus::dead_letter_list>();
    test_bus bus({sink});
    std::vector<int> handled;
    auto sub = bus.subscribe("picky", [&](const step& s) {
        if (s.n == 2) throw 42;  // not even a std::exception
        handled.push_back(s.n);
    });
    test_engine engine(bus, {.shards = 2});
    evbus::metadata second = evbus::metadata::with_key("bob");
    for (int n = 1; n <= 3; ++n) {
        if (n == 2) {
            engine.post(step{"bob", n}, second);
        } else {
            engine.post(step{"bob", n});
        }
    }
    engine.drain();
    CHECK(handled == std::vector<int>{1, 3});

    const auto letters = engine.dead_letters().list();
    REQUIRE(letters.size() == 1);
    const auto& l = letters.front();
    REQUIRE(std::holds_alternative<step>(l.event));
    CHECK(std::get<step>(l.event).n == 2);
    CHECK(l.subscription == "picky");
    CHECK(l.attempts == 1);
    CHECK(l.meta.key == "bob");
    CHECK(l.meta.event_name == "test.step");
    CHECK(l.last_error.find("unknown exception") != std::string::npos);
    CHECK(l.first_failure <= l.last_failure);
    CHECK(l.id != 0);

    // Every failed attempt is also in the bus's error sink.
    const auto records = sink->records();
    REQUIRE(records.size() == 1);
    CHECK(records.front().subscription == "picky");
    CHECK(records.front().event == l.meta.id);

    // The worker runs on.
    engine.post(step{"bob", 4});
    engine.drain();
    CHECK(handled == std::vector<int>{1, 3, 4});
}

namespace {

std::atomic<bool> copies_throw{false};

// A payload whose copy can throw (it owns something whose copy can fail); its move cannot,
// so posting never copies it: only a dead letter or a park does.
struct fragile {
    static constexpr std::string_view event_name = "test.fragile";
    std::string key;
    int n = 0;
    fragile(std::string k, int v) : key(std::move(k)), n(v) {}
    fragile(const fragile& o) : key(o.key), n(o.n) {
        if (copies_throw) throw std::runtime_error("fragile copy failed");
    }
    fragile(fragile&&) noexcept = default;
    fragile& operator=(const fragile&) = default;
    fragile& operator=(fragile&&) noexcept = default;
    ~fragile() = default;
    [[nodiscard]] std::string_view event_key() const { return key; }
};
using fragile_events = evbus::event_set<fragile>;

bool reported(const evbus::dead_letter_list& sink, std::string_view text) {
    const auto records = sink.records();
    return std::any_of(records.begin(), records.end(), [&](const evbus::failure_record& r) {
        return r.error.find(text) != std::string::npos;
    });
}

}  // namespace

TEST_CASE("engine: a payload copy that throws loses one delivery, reported, not the row's rest",
          "[engine][failure]") {
    const bool parks = GENERATE(false, true);
    CAPTURE(parks);
    auto sink = std::make_shared<evbus::dead_letter_list>();
    evbus::bus<fragile_events> bus({sink});
    std::vector<int> a_handled;  // one key: one worker; read after drain()
    std::atomic<int> b_handled{0};
    evbus::subscribe_options o;
    o.retry.max_attempts = 1;
    o.park_key_on_failure = parks;
    auto a = bus.subscribe(
        "a",
        [&](const fragile& f) {
            if (f.n == 1) throw std::runtime_error("a fails on 1");
            a_handled.push_back(f.n);
        },
        o);
    auto b = bus.subscribe("b", [&](const fragile&) { ++b_handled; });
    evbus::engine<fragile_events> engine(bus, {.shards = 1});
    if (parks) {
        // The first failure is dead-lettered and parks the key; the copy into the park throws.
        engine.post(fragile{"k", 1});
        engine.drain();
        REQUIRE(engine.dead_letters().size() == 1);
        copies_throw = true;
        engine.post(fragile{"k", 2});
    } else {
        // The copy into the dead letter throws.
        copies_throw = true;
        engine.post(fragile{"k", 1});
    }
    engine.drain();
    copies_throw = false;
    CHECK(b_handled == (parks ? 2 : 1));  // the subscription after it still ran
    CHECK(a_handled.empty());
    CHECK(engine.dead_letters().size() == (parks ? 1U : 0U));  // the first one's, if parking
    CHECK(reported(*sink, parks ? "the event could not be parked, the delivery is lost: "
                                  "fragile copy failed"
                                : "the dead letter could not be stored, the delivery is lost: "
                                  "fragile copy failed"));
    engine.post(fragile{"k", 3});  // the worker runs on
    engine.drain();
    CHECK(b_handled == (parks ? 3 : 2));
    const auto m = engine.metrics();
    CHECK(m.shards[0].accepted == m.shards[0].handled);
}

TEST_CASE("engine: post_and_wait returns each subscription's outcome with its error text",
          "[engine][outcome]") {
    test_bus bus;
    auto good = bus.subscribe("good", [](const step&) {});
    auto bad = bus.subscribe("bad", [](const step&) -> evbus::handler_result {
        return evbus::handler_result::fail("card declined");
    });
    std::mutex observed_mutex;
    std::vector<std::string> observed;
    evbus::engine_options<events> options;
    options.shards = 2;
    options.on_outcome = [&](const evbus::delivery_outcome& o) {
        const std::lock_guard lock(observed_mutex);
        observed.push_back(std::string(o.subscription) + ":" +
                           std::string(evbus::to_string(o.status)) + ":" + std::string(o.error));
    };
    test_engine engine(bus, options);

    const evbus::delivery_report report = engine.post_and_wait(step{"carol", 1});
    CHECK_FALSE(report.event.is_nil());
    REQUIRE(report.outcomes.size() == 2);
    CHECK(report.outcomes[0].subscription == "good");
    CHECK(report.outcomes[0].status == evbus::delivery_status::succeeded);
    CHECK(report.outcomes[0].attempts == 1);
    CHECK(report.outcomes[1].subscription == "bad");
    CHECK(report.outcomes[1].status == evbus::delivery_status::dead_lettered);
    CHECK(report.outcomes[1].error == "card declined");
    CHECK_FALSE(report.all_succeeded());

    const std::lock_guard lock(observed_mutex);
    CHECK(observed ==
          std::vector<std::string>{"good:succeeded:", "bad:dead_lettered:card declined"});
}

TEST_CASE("engine: post_to delivers to the named subscriptions only", "[engine][outcome]") {
    test_bus bus;
    std::atomic<int> a{0};
    std::atomic<int> b{0};
    auto sa = bus.subscribe("a", [&](const step&) { ++a; });
    auto sb = bus.subscribe("b", [&](const step&) { ++b; });
    test_engine engine(bus, {.shards = 1});
    engine.post_to({"b", "no-such-subscription"}, step{"dave", 1});
    engine.post(step{"dave", 2});
    engine.drain();
    CHECK(a == 1);
    CHECK(b == 2);
    // No names is a mistake, not "every subscription": it is refused and nothing is queued.
    CHECK_THROWS_WITH(engine.post_to({}, step{"dave", 3}),
                      Catch::Contains("post_to() got no subscription names"));
    engine.drain();
    CHECK(a == 1);
    CHECK(b == 2);
    CHECK(engine.metrics().shards[0].accepted == 2);
}

TEST_CASE("engine: a variant is posted as the alternative it holds, and causation propagates",
          "[engine][order]") {
    test_bus bus;
    std::vector<evbus::metadata> metas;  // one key, one worker
    test_engine* engine_ptr = nullptr;
    auto sub = bus.subscribe("chain", evbus::overload(
                                          [&](const step& s, const evbus::metadata& m) {
                                              metas.push_back(m);
                                              if (s.n == 1) engine_ptr->post(step{"erin", 2});
                                          },
                                          [](const ping&) {}));
    test_engine engine(bus, {.shards = 2});
    engine_ptr = &engine;
    const events::variant_type first = step{"erin", 1};
    engine.post(first);
    // The follow-up is posted from a handler: wait until it ran before draining the rest.
    REQUIRE(wait_until([&] {
        const auto m = engine.metrics();
        const evbus::subscription_metrics* chain = m.subscription("chain");
        return chain != nullptr && chain->handled == 2;
    }));
    engine.drain();
    REQUIRE(metas.size() == 2);
    CHECK(metas[1].causation_id == metas[0].id);
    CHECK(metas[1].correlation_id == metas[0].correlation_id);
    CHECK(metas[0].attempt == 1);
}

TEST_CASE("engine: bad options are rejected with a message naming the option",
          "[engine][options]") {
    test_bus bus;
    CHECK_THROWS_WITH(test_engine(bus, {.shards = 1, .ring_capacity = 1000}),
                      Catch::Contains("ring_capacity is 1000"));
    CHECK_THROWS_WITH(test_engine(bus, {.shards = 1, .ring_capacity = std::size_t{1} << 31}),
                      Catch::Contains("ring_capacity is 2147483648"));
    CHECK_THROWS_WITH(test_engine(bus, {.shards = evbus::engine_options<events>::max_shards + 1}),
                      Catch::Contains("shards is 4097"));
    CHECK_THROWS_WITH(test_engine(bus, {.shards = 1, .batch_size = 0}),
                      Catch::Contains("batch_size"));
    CHECK_THROWS_WITH(test_engine(bus, {.shards = 1, .stuck_after = -1ns}),
                      Catch::Contains("stuck_after is -1 ns"));
    CHECK_THROWS_WITH(test_engine(bus, {.shards = 1, .watchdog_interval = -2ns}),
                      Catch::Contains("watchdog_interval is -2 ns"));
    CHECK_THROWS_WITH(test_engine(bus, {.shards = 1, .shutdown_budget = -3ns}),
                      Catch::Contains("shutdown_budget is -3 ns"));
    evbus::subscribe_options bad;
    bad.retry.multiplier = 0.9999999;  // the message shows it as given, not rounded to 1
    CHECK_THROWS_WITH(bus.subscribe(
                          "x", [](const step&) {}, bad),
                      Catch::Contains("retry.multiplier is 0.9999999;"));
    bad = {};
    bad.retry.jitter = 1.0000001;
    CHECK_THROWS_WITH(bus.subscribe(
                          "x", [](const step&) {}, bad),
                      Catch::Contains("retry.jitter is 1.0000001;"));
    bad = {};
    bad.retry.max_attempts = 0;
    CHECK_THROWS_AS(bus.subscribe(
                        "x", [](const step&) {}, bad),
                    std::invalid_argument);
}
