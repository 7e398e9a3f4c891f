#include <evbus/bus.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "test_events.hpp"

using namespace evbus_test;
using test_bus = evbus::bus<events>;

namespace {

// A struct overload set: two of the four event types.
struct ledger {
    std::vector<std::string>* seen;
    void operator()(const deposited& e) const { seen->push_back("deposit:" + e.user); }
    void operator()(const withdrawn& e, const evbus::metadata& m) const {
        seen->push_back("withdraw:" + e.user + ":" + std::string(m.event_name));
    }
};

// A payload derived from another payload of its set.
struct paid {
    static constexpr std::string_view event_name = "test.paid";
    std::string user;
};
struct paid_express : paid {
    static constexpr std::string_view event_name = "test.paidExpress";
};
using payment_events = evbus::event_set<paid, paid_express>;

int pinged_total = 0;
void on_pinged(const pinged& p) {
    pinged_total += p.n;
}
int withdrawn_calls = 0;
evbus::handler_result on_withdrawn(const withdrawn&, const evbus::metadata&) noexcept {
    ++withdrawn_calls;
    return evbus::handler_result::ok();
}

}  // namespace

TEST_CASE("bus: dispatch reaches exactly the handlers of the event's type", "[core][bus]") {
    test_bus bus;
    std::vector<std::string> seen;
    auto sub = bus.subscribe("ledger", ledger{&seen});
    int pings = 0;
    auto ping_sub = bus.subscribe("pings", [&pings](const pinged& p) { pings += p.n; });

    CHECK(bus.emit(deposited{"alice", 10}).handled == 1);
    CHECK(bus.emit(withdrawn{"bob", 3}).handled == 1);
    CHECK(bus.emit(audited{7}).handled == 0);
    CHECK(bus.emit(pinged{5}).handled == 1);

    CHECK(seen == std::vector<std::string>{"deposit:alice", "withdraw:bob:test.withdrawn"});
    CHECK(pings == 5);
}

TEST_CASE("bus: several subscribers run in subscription order", "[core][bus]") {
    test_bus bus;
    std::vector<int> order;
    auto a = bus.subscribe("a", [&](const pinged&) { order.push_back(1); });
    auto b = bus.subscribe("b", [&](const pinged&) { order.push_back(2); });
    auto c = bus.subscribe("c", evbus::overload([&](const pinged&) { order.push_back(3); },
                                                [&](const deposited&) { order.push_back(-1); }));
    const auto report = bus.emit(pinged{});
    CHECK(report.handled == 3);
    CHECK(order == std::vector<int>{1, 2, 3});
}

TEST_CASE("bus: a variant is dispatched by the alternative it holds", "[core][bus]") {
    test_bus bus;
    std::vector<std::string> seen;
    auto sub = bus.subscribe("ledger", ledger{&seen});
    const events::variant_type v = withdrawn{"carol", 1};
    CHECK(bus.emit(v).handled == 1);
    CHECK(seen == std::vector<std::string>{"withdraw:carol:test.withdrawn"});
}

TEST_CASE("bus: a base payload's handler takes derived alternatives unless they have their own",
          "[core][bus]") {
    evbus::bus<payment_events> bus;
    std::vector<std::string> seen;
    auto any_payment =
        bus.subscribe("any", [&](const paid& p) { seen.push_back("any:" + p.user); });
    auto split = bus.subscribe(
        "split",
        evbus::overload([&](const paid& p) { seen.push_back("plain:" + p.user); },
                        [&](const paid_express& p) { seen.push_back("express:" + p.user); }));
    CHECK(bus.emit(paid_express{{"alice"}}).handled == 2);
    CHECK(bus.emit(paid{"bob"}).handled == 2);
    CHECK(seen == std::vector<std::string>{"any:alice", "express:alice", "any:bob", "plain:bob"});
}

TEST_CASE("bus: a duplicate subscription name is an error naming it", "[core][bus]") {
    test_bus bus;
    auto first = bus.subscribe("analytics.totals", [](const pinged&) {});
    CHECK_THROWS_WITH(bus.subscribe("analytics.totals", [](const deposited&) {}),
                      Catch::Contains("'analytics.totals' already exists"));
    CHECK_THROWS_AS(bus.subscribe("", [](const deposited&) {}), std::invalid_argument);
    first.reset();
    auto again = bus.subscribe("analytics.totals", [](const deposited&) {});
    CHECK(again.name() == "analytics.totals");
}

TEST_CASE("bus: isolate records the failure and goes on with the next handler", "[core][bus]") {
    auto sink = std::make_shared<evbus::dead_letter_list>(8);
    test_bus bus({sink});
    int after = 0;
    auto failing = bus.subscribe(
        "failing", [](const deposited&) { throw std::runtime_error("ledger offline"); });
    auto refusing = bus.subscribe("refusing", [](const deposited&) {
        return evbus::handler_result::fail("amount too large");
    });
    auto next = bus.subscribe("next", [&after](const deposited&) { ++after; });

    const auto meta = evbus::metadata::with_key("alice");
    const auto report = bus.emit(deposited{"alice", 10}, meta);
    CHECK(report.handled == 1);
    CHECK(report.failed == 2);
    CHECK(after == 1);

    const auto records = sink->records();
    REQUIRE(records.size() == 2);
    CHECK(records[0].subscription == "failing");
    CHECK(records[0].error == "ledger offline");
    CHECK(records[0].event_name == "test.deposited");
    CHECK(records[0].key == "alice");
    CHECK(records[0].attempt == 1);
    CHECK_FALSE(records[0].event.is_nil());
    CHECK(records[1].subscription == "refusing");
    CHECK(records[1].error == "amount too large");
}

TEST_CASE("bus: fail-fast stops dispatch and rethrows to the caller", "[core][bus]") {
    auto sink = std::make_shared<evbus::dead_letter_list>(8);
    test_bus bus({sink});
    int after = 0;
    evbus::subscribe_options fail_fast;
    fail_fast.on_error = evbus::error_policy::fail_fast;
    auto failing = bus.subscribe(
        "failing", [](const deposited&) { throw std::logic_error("invariant broken"); }, fail_fast);
    auto next = bus.subscribe("next", [&after](const deposited&) { ++after; });

    CHECK_THROWS_AS(bus.emit(deposited{"alice", 1}), std::logic_error);
    CHECK(after == 0);
    CHECK(sink->size() == 0);

    auto refusing = bus.subscribe(
        "refusing", [](const withdrawn&) { return evbus::handler_result::retry("busy"); },
        fail_fast);
    CHECK_THROWS_WITH(
        bus.emit(withdrawn{"bob", 1}),
        Catch::Contains("'refusing' failed on test.withdrawn") && Catch::Contains("busy"));
}

TEST_CASE("bus: an exception of any type is isolated", "[core][bus]") {
    auto sink = std::make_shared<evbus::dead_letter_list>(8);
    test_bus bus({sink});
    auto odd = bus.subscribe("odd", [](const pinged&) { throw 42; });
    CHECK(bus.emit(pinged{}).failed == 1);
    REQUIRE(sink->size() == 1);
    CHECK(sink->records()[0].error.find("unknown exception") != std::string::npos);
}

TEST_CASE("bus: the dead-letter list is bounded and counts what it drops", "[core][bus]") {
    auto sink = std::make_shared<evbus::dead_letter_list>(3);
    test_bus bus({sink});
    auto failing = bus.subscribe("failing", [](const pinged& p) {
        throw std::runtime_error("fail " + std::to_string(p.n));
    });
    for (int i = 0; i < 5; ++i) (void)bus.emit(pinged{i});
    CHECK(sink->size() == 3);
    CHECK(sink->dropped() == 2);
    CHECK(sink->records().front().error == "fail 2");  // the oldest were dropped
}

TEST_CASE("bus: metadata round-trips and is stamped on accept", "[core][bus][metadata]") {
    test_bus bus;
    evbus::metadata seen;
    auto sub = bus.subscribe("observer",
                             [&seen](const deposited&, const evbus::metadata& m) { seen = m; });
    evbus::metadata given;
    given.source = "ledger";
    given.correlation_id = evbus::event_id::generate();
    const auto before = std::chrono::system_clock::now();
    (void)bus.emit(deposited{"dora", 4}, given);

    CHECK_FALSE(seen.id.is_nil());
    CHECK(seen.correlation_id == given.correlation_id);
    CHECK(seen.causation_id.is_nil());
    CHECK(seen.trace_id == given.correlation_id);
    CHECK(seen.key == "dora");  // from the payload's key function
    CHECK(seen.source == "ledger");
    CHECK(seen.event_name == "test.deposited");
    CHECK(seen.schema_version == 2);
    CHECK(seen.attempt == 1);
    CHECK(seen.occurred_at >= before);

    evbus::metadata explicit_key = evbus::metadata::with_key("override");
    explicit_key.id = evbus::event_id::generate();
    (void)bus.emit(deposited{"dora", 4}, explicit_key);
    CHECK(seen.key == "override");
    CHECK(seen.id == explicit_key.id);
    CHECK(seen.correlation_id == explicit_key.id);  // a root event correlates to itself
}

TEST_CASE("bus: nested emits inherit correlation and take the parent as causation",
          "[core][bus][metadata]") {
    test_bus bus;
    std::vector<evbus::metadata> seen;
    auto chain = bus.subscribe(
        "chain", evbus::overload(
                     [&](const deposited& e, const evbus::metadata& m) {
                         seen.push_back(m);
                         (void)bus.emit(withdrawn{e.user, e.cents});
                     },
                     [&](const withdrawn&, evbus::handler_context& ctx) {
                         seen.push_back(ctx.meta());
                         (void)bus.emit(pinged{1});
                     },
                     [&](const pinged&, const evbus::metadata& m) { seen.push_back(m); }));
    (void)bus.emit(deposited{"erin", 9});

    REQUIRE(seen.size() == 3);
    const auto& root = seen[0];
    CHECK(root.causation_id.is_nil());
    CHECK(root.correlation_id == root.id);
    CHECK(seen[1].correlation_id == root.id);
    CHECK(seen[1].causation_id == root.id);
    CHECK(seen[1].trace_id == root.trace_id);
    CHECK(seen[2].correlation_id == root.id);
    CHECK(seen[2].causation_id == seen[1].id);
    CHECK(seen[2].id != seen[1].id);

    // Outside any handler nothing is inherited any more.
    (void)bus.emit(pinged{2});
    REQUIRE(seen.size() == 4);
    CHECK(seen[3].causation_id.is_nil());
    CHECK(seen[3].correlation_id == seen[3].id);
}

TEST_CASE("bus: an emit that passes on the handled event's metadata gets its own id",
          "[core][bus][metadata]") {
    test_bus bus;
    std::vector<evbus::metadata> seen;
    auto chain = bus.subscribe(
        "chain", evbus::overload(
                     [&](const deposited& e, const evbus::metadata& m) {
                         seen.push_back(m);
                         (void)bus.emit(withdrawn{e.user, e.cents}, m);  // a copy, for its key
                     },
                     [&](const withdrawn&, const evbus::metadata& m) { seen.push_back(m); }));
    evbus::metadata root_meta = evbus::metadata::with_key("erin");
    root_meta.causation_id = evbus::event_id::generate();  // from somewhere upstream
    (void)bus.emit(deposited{"erin", 9}, root_meta);

    REQUIRE(seen.size() == 2);
    const auto& root = seen[0];
    const auto& child = seen[1];
    CHECK(child.id != root.id);
    CHECK_FALSE(child.id.is_nil());
    CHECK(child.causation_id == root.id);
    CHECK(child.correlation_id == root.correlation_id);
    CHECK(child.trace_id == root.trace_id);
    CHECK(child.key == "erin");
    CHECK(child.event_name == "test.withdrawn");
}

TEST_CASE("bus: handlers see the subscription name and attempt in their context", "[core][bus]") {
    test_bus bus;
    std::string name;
    std::uint32_t attempt = 0;
    bool should_stop = true;
    auto sub = bus.subscribe("ctx.reader", [&](const pinged&, evbus::handler_context& ctx) {
        name = std::string(ctx.subscription());
        attempt = ctx.attempt();
        should_stop = ctx.should_stop();
    });
    (void)bus.emit(pinged{});
    CHECK(name == "ctx.reader");
    CHECK(attempt == 1);
    CHECK_FALSE(should_stop);
}

TEST_CASE("bus: exhaustive subscriptions accept a set that covers every event", "[core][bus]") {
    test_bus bus;
    int calls = 0;
    auto all = bus.subscribe(
        "all", evbus::exhaustive{evbus::overload(
                   [&](const deposited&) { ++calls; }, [&](const withdrawn&) { ++calls; },
                   [&](const audited&) { ++calls; }, [&](const pinged&) { ++calls; })});
    (void)bus.emit(deposited{});
    (void)bus.emit(audited{});
    CHECK(calls == 2);
}

TEST_CASE("bus: a generic overload handles every event it accepts", "[core][bus]") {
    test_bus bus;
    std::vector<std::string_view> names;
    auto sub = bus.subscribe("generic", [&](const auto& e) {
        names.push_back(std::remove_cvref_t<decltype(e)>::event_name);
    });
    (void)bus.emit(pinged{});
    (void)bus.emit(withdrawn{});
    CHECK(names == std::vector<std::string_view>{"test.pinged", "test.withdrawn"});
}

TEST_CASE("bus: a function and a function pointer are handlers", "[core][bus]") {
    test_bus bus;
    pinged_total = 0;
    withdrawn_calls = 0;
    auto by_name = bus.subscribe("function", on_pinged);
    auto by_pointer = bus.subscribe("pointer", &on_withdrawn);
    CHECK(bus.emit(pinged{4}).handled == 1);
    CHECK(bus.emit(withdrawn{"dan", 2}).handled == 1);
    CHECK(bus.emit(deposited{}).handled == 0);
    CHECK(pinged_total == 4);
    CHECK(withdrawn_calls == 1);
}
