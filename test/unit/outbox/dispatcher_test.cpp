// The dispatcher on real SQLite files (and the memory store where behaviour is shared).
#include <evbus/inbox.hpp>
#include <evbus/memory_store.hpp>
#include <evbus/outbox_dispatcher.hpp>
#include <evbus/routing.hpp>
#include <evbus/sqlite_store.hpp>
#include <evbus/unit_of_work.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <range/v3/view/filter.hpp>
#include <range/v3/view/transform.hpp>

#include "hooked_store.hpp"
#include "outbox_events.hpp"
#include "thread_names.hpp"

using namespace outbox_test;
using namespace std::chrono_literals;
using test_bus = evbus::bus<events>;
using dispatcher = evbus::outbox_dispatcher<events>;

namespace {

constexpr auto drain_timeout = 60s;

// Polls `pred` until it holds or drain_timeout has passed; returns whether it held.
template <class Pred>
bool eventually(Pred pred) {
    const auto give_up = std::chrono::steady_clock::now() + drain_timeout;
    while (!pred() && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(1ms);
    }
    return pred();
}

std::unique_ptr<evbus::event_store> make_store(bool sqlite, std::string_view name,
                                               std::chrono::seconds retention = {}) {
    if (!sqlite) return std::make_unique<evbus::memory_store>(retention);
    evbus::sqlite_options options;
    options.sync = evbus::sync_mode::normal;
    options.history_retention = retention;
    return std::make_unique<evbus::sqlite_store>((fresh_dir(name) / "app.db").string(), options);
}

evbus::dispatcher_options fast_poll() {
    evbus::dispatcher_options o;
    o.poll_interval = 20ms;
    return o;
}

// A thread-safe list of what a handler saw.
struct seen_list {
    std::mutex mutex;
    std::vector<std::string> items;
    void add(std::string s) {
        const std::lock_guard lock(mutex);
        items.push_back(std::move(s));
    }
    std::vector<std::string> get() {
        const std::lock_guard lock(mutex);
        return items;
    }
};

void insert_raw(evbus::event_store& store, const std::string& name, int version,
                const std::string& key, const std::string& payload) {
    evbus::unit_of_work<events> tx(store);
    auto ins = tx.sql().prepare(
        "INSERT INTO evbus_outbox(event_id, name, version, key, correlation_id, causation_id, "
        "trace_id, source, occurred_at, payload) VALUES (?1, ?2, ?3, ?4, ?1, ?5, ?1, '', 0, ?6)");
    ins.bind(1, evbus::event_id::generate().to_string())
        .bind(2, name)
        .bind(3, version)
        .bind(4, key)
        .bind(5, evbus::event_id{}.to_string())
        .bind(6, payload)
        .run();
    tx.commit();
}

}  // namespace

TEST_CASE("dispatcher: a rolled-back event is never delivered, a committed one once",
          "[outbox][dispatcher]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-rollback");
    test_bus bus;
    seen_list seen;
    auto sub = bus.subscribe("ledger", [&](const money_transferred& e) { seen.add(e.user_id); });
    dispatcher d(bus, *store, fast_poll());
    d.start();
    {
        evbus::unit_of_work<events> tx(*store);
        tx.append(money_transferred{"rolled-back", 1, "EUR"});
    }
    commit_one(*store, {"committed", 2, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    CHECK(seen.get() == std::vector<std::string>{"committed"});
    CHECK(store->unfinished(std::nullopt, 10).empty());
}

#if defined(__linux__)
TEST_CASE("dispatcher: its thread is named evbus-outbox", "[outbox][dispatcher]") {
    auto store = make_store(false, "d-thread-name");
    test_bus bus;
    auto sub = bus.subscribe("ledger", [](const money_transferred&) {});
    dispatcher d(bus, *store, fast_poll());
    d.start();
    commit_one(*store, {"named", 1, "EUR"});
    REQUIRE(d.drain(drain_timeout));  // the thread has run, and named itself first
    CHECK(test_support::thread_names().count("evbus-outbox") == 1);
}
#endif

TEST_CASE("dispatcher: out-of-order commits t0 t1 tR t2 deliver t0 t1 t2, nothing skipped",
          "[outbox][dispatcher][order]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-order");
    test_bus bus;
    seen_list seen;
    // One key (the user), so the engine's shards deliver in claim order; the currency field
    // labels the transaction.
    auto sub = bus.subscribe("ledger", [&](const money_transferred& e) { seen.add(e.currency); });
    dispatcher d(bus, *store, fast_poll());
    d.start();
    // Four transactions open at once on four connections; commits run in another order.
    evbus::unit_of_work<events> t0(*store, evbus::begin_mode::deferred);
    evbus::unit_of_work<events> t1(*store, evbus::begin_mode::deferred);
    evbus::unit_of_work<events> tr(*store, evbus::begin_mode::deferred);
    evbus::unit_of_work<events> t2(*store, evbus::begin_mode::deferred);
    t0.append(money_transferred{"acct", 0, "t0"});
    t1.append(money_transferred{"acct", 1, "t1"});
    tr.append(money_transferred{"acct", 9, "tR"});
    t2.append(money_transferred{"acct", 2, "t2"});
    t2.commit();
    REQUIRE(d.drain(drain_timeout));  // t2 dispatched before the others commit
    tr.rollback();
    t1.commit();
    t0.commit();
    REQUIRE(d.drain(drain_timeout));
    CHECK(seen.get() == std::vector<std::string>{"t2", "t1", "t0"});
}

TEST_CASE("dispatcher: five subscriptions, two failing: a restart resubmits only those two",
          "[outbox][dispatcher][restart]") {
    const auto path = (fresh_dir("d-five") / "app.db").string();
    constexpr std::size_t shards = 4;
    // Keys on other shards than alice's: the failing subscriptions retry alice's event on
    // her shard, and these keys must not wait behind it.
    std::vector<std::string> others;
    const auto shard_of_key = [&](const std::string& key) {
        return evbus::shard_of(evbus::metadata::with_key(key), shards);
    };
    for (int i = 0; others.size() < 3 && i < 1000; ++i) {
        const std::string key = "user-" + std::to_string(i);
        if (shard_of_key(key) != shard_of_key("alice")) others.push_back(key);
    }
    REQUIRE(others.size() == 3);
    std::atomic<bool> healthy{false};
    std::map<std::string, std::map<std::string, int>> calls;  // subscription -> key -> calls
    std::mutex calls_mutex;
    auto count = [&](const std::string& name, const money_transferred& e) {
        const std::lock_guard lock(calls_mutex);
        ++calls[name][e.user_id];
    };
    auto subscribe_all = [&](test_bus& bus, std::vector<evbus::subscription>& subs) {
        for (const char* name : {"a", "b", "c"}) {
            subs.push_back(bus.subscribe(
                name, [&, n = std::string(name)](const money_transferred& e) { count(n, e); }));
        }
        evbus::subscribe_options retry_forever;
        retry_forever.retry.max_attempts = 1'000'000;
        retry_forever.retry.initial_delay = 1ms;
        retry_forever.retry.max_delay = 5ms;
        for (const char* name : {"d", "e"}) {
            subs.push_back(bus.subscribe(
                name,
                [&, n = std::string(name)](const money_transferred& e) {
                    count(n, e);
                    return healthy.load() || e.user_id != "alice"
                               ? evbus::handler_result::ok()
                               : evbus::handler_result::retry("downstream is down");
                },
                retry_forever));
        }
    };
    auto options = fast_poll();
    options.shards = shards;
    {
        evbus::sqlite_store store(path);
        test_bus bus;
        std::vector<evbus::subscription> subs;
        subscribe_all(bus, subs);
        dispatcher d(bus, store, options);
        d.start();
        commit_one(store, {"alice", 1, "EUR"});
        for (const auto& key : others) commit_one(store, {key, 1, "EUR"});
        // Wait until "d" has retried alice's event a few times and every subscription has
        // handled the other keys' events, then stop (a crash would leave the same state).
        for (;;) {
            {
                const std::lock_guard lock(calls_mutex);
                bool others_done = true;
                for (const char* name : {"a", "b", "c", "d", "e"}) {
                    for (const auto& key : others)
                        others_done = others_done && calls[name][key] == 1;
                }
                if (calls["d"]["alice"] >= 3 && others_done) break;
            }
            std::this_thread::sleep_for(1ms);
        }
        d.stop();
        std::set<std::pair<std::string, std::string>> pending;
        for (const auto& p : store.unfinished(std::nullopt, 10)) {
            pending.insert({p.subscription, p.event.key});
        }
        CHECK(pending ==
              std::set<std::pair<std::string, std::string>>{{"d", "alice"}, {"e", "alice"}});
        const std::lock_guard lock(calls_mutex);
        for (const char* name : {"a", "b", "c"}) CHECK(calls[name]["alice"] == 1);
    }
    calls.clear();
    healthy = true;
    evbus::sqlite_store store(path);
    test_bus bus;
    std::vector<evbus::subscription> subs;
    subscribe_all(bus, subs);
    dispatcher d(bus, store, options);
    d.start();
    REQUIRE(d.drain(drain_timeout));
    using call_map = std::map<std::string, std::map<std::string, int>>;
    CHECK(calls == call_map{{"d", {{"alice", 1}}}, {"e", {{"alice", 1}}}});
    CHECK(store.unfinished(std::nullopt, 10).empty());
}

TEST_CASE("dispatcher: bad rows become dead letters naming row and cause, others flow",
          "[outbox][dispatcher][errors]") {
    auto store = make_store(true, "d-bad");
    test_bus bus;
    seen_list seen;
    auto sub = bus.subscribe("ledger", [&](const money_transferred& e) { seen.add(e.user_id); });
    dispatcher d(bus, *store, fast_poll());
    commit_one(*store, {"first", 1, "EUR"});
    insert_raw(*store, "transfer.moneyTransferred", 2, "x", "{\"user_id\": \"x\", \"cents\": ");
    insert_raw(*store, "transfer.moneyBurned", 1, "y", "{}");
    insert_raw(*store, "transfer.moneyTransferred", 9, "z", "{}");
    // An old row its upcast refuses (it throws), and a row whose event id is not an id.
    insert_raw(*store, "transfer.moneyTransferred", 1, "v",
               evbus::payload_codec<events>::encode(money_transferred_v1{"v", -5}));
    {
        evbus::unit_of_work<events> tx(*store);
        tx.sql()
            .prepare(
                "INSERT INTO evbus_outbox(event_id, name, version, key, correlation_id, "
                "causation_id, trace_id, source, occurred_at, payload) VALUES ('not-an-id', "
                "?1, 2, 'w', '', '', '', '', 0, ?2)")
            .bind(1, std::string(money_transferred::event_name))
            .bind(2, evbus::payload_codec<events>::encode(money_transferred{"w", 1, "EUR"}))
            .run();
        tx.commit();
    }
    commit_one(*store, {"last", 2, "EUR"});
    d.start();
    REQUIRE(d.drain(drain_timeout));
    auto good = seen.get();  // two keys: the shards may deliver them in either order
    std::sort(good.begin(), good.end());
    CHECK(good == std::vector<std::string>{"first", "last"});

    const auto dead = d.dead_letters();
    REQUIRE(dead.size() == 5);
    for (const auto& letter : dead) {
        CHECK(letter.subscription.empty());
        CHECK_THAT(letter.error,
                   Catch::StartsWith("outbox row " + std::to_string(letter.event.position) +
                                     " (event " + letter.event.id.to_string()));
    }
    CHECK_THAT(dead[0].error, Catch::Contains("corrupt payload"));
    CHECK_THAT(dead[1].error, Catch::Contains("unknown event name 'transfer.moneyBurned'"));
    CHECK_THAT(dead[2].error, Catch::Contains("unknown version 9"));
    CHECK_THAT(dead[3].error, Catch::Contains("reading 'transfer.moneyTransferred' version 1 and "
                                              "upcasting it to version 2 threw: a version 1 "
                                              "transfer of -5 cents"));
    CHECK_THAT(dead[4].error, Catch::Contains("its event id is missing or not a valid id"));
    CHECK(d.stats().rejected == 5);
}

TEST_CASE("dispatcher: a v1 row written by an older build reaches handlers as v2",
          "[outbox][dispatcher][versioning]") {
    auto store = make_store(true, "d-v1");
    test_bus bus;
    std::vector<money_transferred> seen;
    std::mutex m;
    auto sub =
        bus.subscribe("ledger", [&](const money_transferred& e, const evbus::metadata& meta) {
            const std::lock_guard lock(m);
            seen.push_back(e);
            CHECK(meta.schema_version == 2);
        });
    insert_raw(*store, "transfer.moneyTransferred", 1, "old",
               evbus::payload_codec<events>::encode(money_transferred_v1{"old", 42}));
    dispatcher d(bus, *store, fast_poll());
    d.start();
    REQUIRE(d.drain(drain_timeout));
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].user_id == "old");
    CHECK(seen[0].cents == 42);
    CHECK(seen[0].currency == "EUR");
}

TEST_CASE("dispatcher: a transactional handler's writes and completion commit together",
          "[outbox][dispatcher][transactional]") {
    auto store = make_store(true, "d-tx");
    {
        evbus::unit_of_work<events> tx(*store);
        tx.sql().exec("CREATE TABLE totals(user TEXT PRIMARY KEY, cents INTEGER NOT NULL)");
        tx.commit();
    }
    test_bus bus;
    std::vector<std::set<std::string>> pending_at_delivered;
    evbus::dispatcher_options options = fast_poll();
    options.observer = [&](evbus::dispatch_stage s) {
        if (s != evbus::dispatch_stage::delivered) return;
        std::set<std::string> pending;
        for (const auto& p : store->unfinished(std::nullopt, 10)) pending.insert(p.subscription);
        pending_at_delivered.push_back(pending);
    };
    dispatcher d(bus, *store, options);
    auto totals = d.subscribe_transactional(
        "totals", [](const money_transferred& e, evbus::unit_of_work<events>& tx) {
            tx.sql()
                .prepare(
                    "INSERT INTO totals VALUES (?1, ?2) ON CONFLICT(user) DO UPDATE SET "
                    "cents = cents + excluded.cents")
                .bind(1, e.user_id)
                .bind(2, e.cents)
                .run();
            tx.append(receipt_sent{e.user_id, e.cents});  // a follow-up event, same commit
        });
    seen_list receipts;
    std::vector<evbus::metadata> receipt_meta;
    auto mail = bus.subscribe("mail", [&](const receipt_sent& r, const evbus::metadata& m) {
        receipts.add(r.user_id);
        receipt_meta.push_back(m);
    });
    d.start();
    evbus::unit_of_work<events> tx(*store);
    const auto id = tx.append(money_transferred{"alice", 5, "EUR"});
    tx.commit();
    REQUIRE(d.drain(drain_timeout));
    REQUIRE(d.drain(drain_timeout));
    // The second transfer only after the first is done: the observer lists every unfinished
    // delivery, and a transfer still waiting for "totals" would otherwise show up there
    // whenever the first one's receipt completes before it is handled.
    commit_one(*store, {"alice", 7, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    REQUIRE(d.drain(drain_timeout));

    evbus::unit_of_work<events> check(*store);
    auto q = check.sql().prepare("SELECT cents FROM totals WHERE user = 'alice'");
    REQUIRE(q.step());
    CHECK(q.column_int64(0) == 12);
    CHECK(receipts.get() == std::vector<std::string>{"alice", "alice"});
    REQUIRE(receipt_meta.size() == 2);
    CHECK(receipt_meta[0].causation_id == id);
    CHECK(receipt_meta[0].correlation_id == id);
    // At the "delivered" stage the transactional completion was already committed.
    REQUIRE_FALSE(pending_at_delivered.empty());
    for (const auto& p : pending_at_delivered) CHECK(p.count("totals") == 0);
}

TEST_CASE("dispatcher: an inbox-guarded handler applies a redelivered event once",
          "[outbox][dispatcher][inbox]") {
    auto store = make_store(true, "d-inbox");
    {
        evbus::unit_of_work<events> tx(*store);
        tx.sql().exec("CREATE TABLE effects(event TEXT NOT NULL)");
        tx.commit();
    }
    test_bus bus;
    int calls = 0;
    auto guarded =
        bus.subscribe("guarded", [&](const money_transferred&, evbus::handler_context& ctx) {
            ++calls;
            evbus::unit_of_work<events> tx(*store);
            if (evbus::inbox::processed(tx, ctx)) return;
            tx.sql()
                .prepare("INSERT INTO effects VALUES (?1)")
                .bind(1, ctx.meta().id.to_string())
                .run();
            tx.commit();
        });
    dispatcher d(bus, *store, fast_poll());
    d.start();
    commit_one(*store, {"alice", 1, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    // Redeliver by hand, as a restart after a crash before the completion mark would.
    evbus::metadata meta = evbus::metadata::with_key("alice");
    CHECK(calls == 1);
    evbus::unit_of_work<events> tx(*store);
    auto q = tx.sql().prepare("SELECT event FROM effects");
    REQUIRE(q.step());
    const auto event = evbus::event_id::parse(q.column_text(0)).value();
    q.reset();
    meta.id = event;
    tx.rollback();
    bus.emit(money_transferred{"alice", 1, "EUR"}, meta);  // the same event id again
    CHECK(calls == 2);
    evbus::unit_of_work<events> count(*store);
    auto c = count.sql().prepare("SELECT count(*) FROM effects");
    REQUIRE(c.step());
    CHECK(c.column_int64(0) == 1);
}

TEST_CASE("dispatcher: dead letters are requeued through the dispatcher, or discarded",
          "[outbox][dispatcher][dead_letter]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-requeue");
    test_bus bus;
    std::atomic<bool> healthy{false};
    seen_list seen;
    auto sub = bus.subscribe("ledger", [&](const money_transferred& e) {
        if (!healthy.load()) throw std::runtime_error("ledger offline");
        seen.add(e.user_id);
    });
    dispatcher d(bus, *store, fast_poll());
    d.start();
    for (const char* user : {"alice", "bob", "carol"}) commit_one(*store, {user, 1, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    auto dead = d.dead_letters();
    REQUIRE(dead.size() == 3);
    // Keys fail on different shards in parallel: order the letters by key.
    std::sort(dead.begin(), dead.end(),
              [](const auto& x, const auto& y) { return x.event.key < y.event.key; });
    CHECK(dead[0].error == "ledger offline");
    CHECK(dead[0].subscription == "ledger");
    CHECK(dead[0].attempts == 1);

    healthy = true;
    evbus::dead_letter_filter bob;
    bob.key = "bob";
    CHECK(d.requeue(bob).requeued == 1);
    CHECK(d.requeue(dead[0].id));
    REQUIRE(d.drain(drain_timeout));
    auto delivered = seen.get();  // two separate requeues: either may be served first
    std::sort(delivered.begin(), delivered.end());
    CHECK(delivered == std::vector<std::string>{"alice", "bob"});
    CHECK(d.discard(dead[2].id));
    CHECK(d.dead_letters().empty());
    CHECK(store->unfinished(std::nullopt, 10).empty());
}

TEST_CASE("dispatcher: history reads back by key and replays a subscription",
          "[outbox][dispatcher][history]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-history", std::chrono::hours(24));
    test_bus bus;
    std::map<std::string, std::int64_t> projection;
    std::mutex m;
    auto sub = bus.subscribe("balances", [&](const money_transferred& e) {
        const std::lock_guard lock(m);
        projection[e.user_id] += e.cents;
    });
    dispatcher d(bus, *store, fast_poll());
    d.start();
    for (int i = 1; i <= 10; ++i) commit_one(*store, {i % 2 == 0 ? "even" : "odd", i, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    d.stop();
    const auto built = projection;
    CHECK(built.at("even") == 30);

    evbus::history_query q;
    q.key = "even";
    q.limit = 2;  // several pages
    auto evens = d.history(q);
    auto cents = evens | ranges::views::transform([](const auto& h) {
                     return std::get<money_transferred>(*h.event).cents;
                 }) |
                 ranges::views::filter([](std::int64_t c) { return c > 4; });
    std::vector<std::int64_t> big;
    for (const auto c : cents) big.push_back(c);
    CHECK(big == std::vector<std::int64_t>{6, 8, 10});

    projection.clear();
    CHECK(d.replay("balances") == 10);
    CHECK(projection == built);
    CHECK_THROWS_WITH(d.replay("nobody"), Catch::Contains("no subscription named 'nobody'"));
}

TEST_CASE("dispatcher: a parked key waits behind its persisted dead letter across a restart",
          "[outbox][dispatcher][dead_letter][restart]") {
    const auto path = (fresh_dir("d-park") / "app.db").string();
    std::atomic<bool> healthy{false};
    seen_list seen;
    auto subscribe = [&](test_bus& bus) {
        evbus::subscribe_options park;
        park.retry.max_attempts = 1;
        park.park_key_on_failure = true;
        return bus.subscribe(
            "ledger",
            [&](const money_transferred& e) {
                if (!healthy.load() && e.cents == 1) throw std::runtime_error("ledger offline");
                seen.add(e.user_id + "#" + std::to_string(e.cents));
            },
            park);
    };
    {
        evbus::sqlite_store store(path);
        test_bus bus;
        auto sub = subscribe(bus);
        dispatcher d(bus, store, fast_poll());
        d.start();
        for (long cents : {1, 2, 3}) commit_one(store, {"alice", cents, "EUR"});
        commit_one(store, {"bob", 1, "EUR"});  // bob fails too; his key parks on its own
        commit_one(store, {"bob", 2, "EUR"});
        REQUIRE(d.drain(drain_timeout));
        CHECK(seen.get().empty());  // alice#2, #3 and bob#2 wait behind their keys' letters
        CHECK(d.dead_letters().size() == 2);
        d.stop();
        CHECK(store.unfinished(std::nullopt, 10).size() == 3);
    }
    // A new process: the letters come back from the database and still park their keys.
    evbus::sqlite_store store(path);
    test_bus bus;
    auto sub = subscribe(bus);
    dispatcher d(bus, store, fast_poll());
    d.start();
    REQUIRE(d.drain(drain_timeout));
    CHECK(seen.get().empty());
    healthy = true;
    evbus::dead_letter_filter alice;
    alice.key = "alice";
    REQUIRE(d.requeue(alice).requeued == 1);
    REQUIRE(d.drain(drain_timeout));
    CHECK(seen.get() == std::vector<std::string>{"alice#1", "alice#2", "alice#3"});
    const auto bob = d.dead_letters();
    REQUIRE(bob.size() == 1);
    CHECK(bob[0].event.key == "bob");
    CHECK(d.discard(bob[0].id));  // discarding releases bob's key: bob#2 runs
    REQUIRE(d.drain(drain_timeout));
    CHECK(seen.get() == std::vector<std::string>{"alice#1", "alice#2", "alice#3", "bob#2"});
    CHECK(store.unfinished(std::nullopt, 10).empty());
    CHECK(d.dead_letters().empty());
}

TEST_CASE("dispatcher: bad options are refused, naming the field and its value",
          "[outbox][dispatcher][options]") {
    evbus::memory_store store;
    test_bus bus;
    const auto refused = [&](auto change, const std::string& message) {
        evbus::dispatcher_options o;
        change(o);
        CHECK_THROWS_MATCHES(dispatcher(bus, store, o), std::invalid_argument,
                             Catch::Message("evbus: dispatcher_options." + message));
    };
    refused([](auto& o) { o.batch_size = 0; }, "batch_size is 0; it must be >= 1");
    refused([](auto& o) { o.poll_interval = 0ms; }, "poll_interval is 0 ms; it must be positive");
    refused([](auto& o) { o.poll_interval = -5ms; }, "poll_interval is -5 ms; it must be positive");
    refused([](auto& o) { o.retention = -1s; }, "retention is -1 s; it must not be negative");
    refused([](auto& o) { o.prune_every = -60s; }, "prune_every is -60 s; it must not be negative");
    refused([](auto& o) { o.ring_capacity = 1000; },
            "ring_capacity is 1000; it must be a power of two from 2 to 1073741824");
    refused([](auto& o) { o.shards = 5000; }, "shards is 5000; it must be at most 4096");
}

TEST_CASE("dispatcher: options at their maximum mean no limit", "[outbox][dispatcher][options]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-max-options", std::chrono::hours(24));
    test_bus bus;
    std::atomic<int> seen{0};
    auto sub = bus.subscribe("count", [&](const money_transferred&) { ++seen; });
    evbus::dispatcher_options o;
    // The longest waits there are: only this process's commits wake the dispatcher.
    o.poll_interval = std::chrono::milliseconds::max();
    o.retention = std::chrono::seconds::max();  // keep everything
    o.prune_every = 0s;                         // prune on every round
    dispatcher d(bus, *store, o);
    d.start();
    for (int i = 1; i <= 3; ++i) commit_one(*store, {"max", i, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    d.stop();  // returns although the dispatcher waits without a time limit
    CHECK(seen == 3);
    std::size_t kept = 0;
    for (const auto& h : d.history()) {
        CHECK(h.event.has_value());
        ++kept;
    }
    CHECK(kept == 3);  // nothing pruned
}

TEST_CASE("dispatcher: an event whose id another under way has is dead-lettered, not mixed up",
          "[outbox][dispatcher][dead_letter]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-duplicate-id");
    test_bus bus;
    std::atomic<bool> release{false};
    std::atomic<bool> erin_fails{true};
    seen_list seen;
    auto sub = bus.subscribe("ledger", [&](const money_transferred& e) {
        if (e.user_id == "alice") (void)eventually([&] { return release.load(); });
        if (e.user_id == "erin" && erin_fails) throw std::runtime_error("ledger offline");
        seen.add(e.user_id);
    });
    auto options = fast_poll();
    options.shards = 2;  // erin's shard is not the one alice holds
    REQUIRE(evbus::shard_of(evbus::metadata::with_key("erin"), 2) !=
            evbus::shard_of(evbus::metadata::with_key("alice"), 2));
    dispatcher d(bus, *store, options);
    d.start();
    const auto id = evbus::event_id::generate();
    {
        evbus::metadata meta;
        meta.id = id;
        evbus::unit_of_work<events> tx(*store);
        tx.append(money_transferred{"alice", 1, "EUR"}, meta);  // held in its handler
        tx.append(money_transferred{"bob", 2, "EUR"}, meta);    // the caller's mistake
        tx.commit();
    }
    REQUIRE(eventually([&] { return d.dead_letters().size() == 1; }));
    commit_one(*store, {"erin", 3, "EUR"});  // its letter comes after bob's
    REQUIRE(eventually([&] { return d.dead_letters().size() == 2; }));
    const auto letter = d.dead_letters().at(0);
    CHECK(letter.event.key == "bob");
    CHECK(letter.subscription == "ledger");
    CHECK_THAT(letter.error, Catch::Contains("has the id " + id.to_string()) &&
                                 Catch::Contains("event ids must be unique"));
    CHECK_THROWS_AS(d.requeue(letter.id), evbus::event_id_in_flight);
    CHECK_THROWS_WITH(d.requeue(letter.id),
                      Catch::Contains("cannot be requeued now") && Catch::Contains(id.to_string()));
    CHECK(d.dead_letters().size() == 2);  // the refused requeues kept it

    // Requeueing them all: bob's is refused and kept, erin's behind it still goes.
    erin_fails = false;
    const auto report = d.requeue(evbus::dead_letter_filter{});
    CHECK(report.requeued == 1);
    REQUIRE(report.refused.size() == 1);
    CHECK(report.refused[0].dead_letter_id == letter.id);
    CHECK_THAT(report.refused[0].reason, Catch::Contains("cannot be requeued now"));
    REQUIRE(eventually([&] { return seen.get() == std::vector<std::string>{"erin"}; }));
    REQUIRE(d.dead_letters().size() == 1);
    CHECK(d.dead_letters().at(0).id == letter.id);

    release = true;
    REQUIRE(d.drain(drain_timeout));
    CHECK(seen.get() == std::vector<std::string>{"erin", "alice"});
    CHECK(d.requeue(letter.id));  // alice is done: bob goes through on its own
    REQUIRE(d.drain(drain_timeout));
    CHECK(seen.get() == std::vector<std::string>{"erin", "alice", "bob"});
    CHECK(d.dead_letters().empty());
    CHECK(store->unfinished(std::nullopt, 10).empty());
}

TEST_CASE("dispatcher: a requeue that stop() cuts off stays pending for the next start()",
          "[outbox][dispatcher][dead_letter][restart]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-requeue-cut");
    test_bus bus;
    std::atomic<bool> healthy{false};
    std::atomic<bool> holding{false};
    seen_list seen;
    auto sub =
        bus.subscribe("ledger", [&](const money_transferred& e, evbus::handler_context& ctx) {
            if (e.user_id == "hold") {
                // The first time, holds the only shard until stop() asks it to return.
                if (holding.exchange(true)) return;
                (void)eventually([&] { return ctx.stop_token().stop_requested(); });
                return;
            }
            if (!healthy.load()) throw std::runtime_error("ledger offline");
            seen.add(e.user_id);
        });
    evbus::dispatcher_options o = fast_poll();
    o.shards = 1;
    {
        dispatcher d(bus, *store, o);
        d.start();
        commit_one(*store, {"alice", 1, "EUR"});
        REQUIRE(d.drain(drain_timeout));
        const auto dead = d.dead_letters();
        REQUIRE(dead.size() == 1);
        commit_one(*store, {"hold", 1, "EUR"});
        REQUIRE(eventually([&] { return holding.load(); }));
        healthy = true;
        CHECK(d.requeue(dead[0].id));  // queued behind "hold" on the only shard
        d.stop();                      // cuts the requeued delivery off
    }
    CHECK(seen.get().empty());

    dispatcher again(bus, *store, o);
    again.start();  // resubmits what is pending: the requeued delivery among it
    REQUIRE(again.drain(drain_timeout));
    CHECK(seen.get() == std::vector<std::string>{"alice"});
    CHECK(again.dead_letters().empty());
}

TEST_CASE("dispatcher: a transactional subscription refused for its name changes nothing",
          "[outbox][dispatcher][transactional]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-tx-name");
    test_bus bus;
    std::atomic<int> mailed{0};
    auto mail = bus.subscribe("mail", [&](const money_transferred&) { ++mailed; });
    dispatcher d(bus, *store, fast_poll());
    CHECK_THROWS_AS(d.subscribe_transactional(
                        "mail", [](const money_transferred&, evbus::unit_of_work<events>&) {}),
                    std::invalid_argument);
    d.start();
    commit_one(*store, {"alice", 1, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    CHECK(mailed == 1);
    // The plain subscription's completion is recorded: nothing would be delivered again.
    CHECK(store->unfinished(std::nullopt, 10).empty());
}

TEST_CASE("stores: begin() without an argument starts an immediate transaction",
          "[outbox][store]") {
    evbus::memory_store memory;
    CHECK(memory.begin() != nullptr);
    evbus::sqlite_store sqlite((fresh_dir("d-begin") / "app.db").string());
    CHECK(sqlite.begin() != nullptr);
}

TEST_CASE("dispatcher: stop() does not wait out a retry backoff behind a full ring",
          "[outbox][dispatcher][lifecycle]") {
    auto store = make_store(true, "d-stop-backoff");
    test_bus bus;
    std::atomic<bool> healthy{false};
    std::atomic<bool> in_backoff{false};
    std::atomic<int> handled{0};
    evbus::subscribe_options retrying;
    retrying.retry.max_attempts = 3;
    retrying.retry.initial_delay = std::chrono::hours(1);  // only stop() ends the backoff
    retrying.retry.max_delay = std::chrono::hours(1);
    auto sub = bus.subscribe(
        "flaky",
        [&](const money_transferred& e) -> evbus::handler_result {
            if (e.user_id == "first" && !healthy) {
                in_backoff = true;
                return evbus::handler_result::retry("later");
            }
            ++handled;
            return evbus::handler_result::ok();
        },
        retrying);
    evbus::dispatcher_options o = fast_poll();
    o.shards = 1;
    o.ring_capacity = 2;
    {
        dispatcher d(bus, *store, o);
        d.start();
        commit_one(*store, {"first", 1, "EUR"});
        REQUIRE(eventually([&] { return in_backoff.load(); }));
        for (int i = 0; i < 8; ++i) commit_one(*store, {"later" + std::to_string(i), 1, "EUR"});
        // The dispatcher thread now waits in post() for space in the stalled shard's ring.
        REQUIRE(eventually([&] { return d.metrics().shards.at(0).waiting_posts == 1; }));
        std::atomic<bool> stopped{false};
        std::thread stopper([&] {
            d.stop();
            stopped = true;
        });
        CHECK(eventually([&] { return stopped.load(); }));  // before: after the hour's backoff
        stopper.join();
        CHECK(handled == 0);
    }
    // Nothing was lost: a restarted dispatcher delivers all nine.
    healthy = true;
    dispatcher again(bus, *store, o);
    again.start();
    REQUIRE(again.drain(drain_timeout));
    CHECK(handled == 9);
}

TEST_CASE("dispatcher: a transactional handler cannot commit the unit of work it is lent",
          "[outbox][dispatcher][transactional]") {
    auto store = make_store(true, "d-tx-commit");
    auto sink = std::make_shared<evbus::dead_letter_list>();
    test_bus bus({sink});
    dispatcher d(bus, *store, fast_poll());
    evbus::subscribe_options once;
    once.retry.max_attempts = 1;
    auto sub = d.subscribe_transactional(
        "eager",
        [](const money_transferred& e, evbus::unit_of_work<events>& tx) {
            tx.append(receipt_sent{e.user_id, e.cents});
            tx.commit();  // the dispatcher's to do
        },
        once);
    d.start();
    commit_one(*store, {"alice", 1, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    const auto dead = d.dead_letters();
    REQUIRE(dead.size() == 1);
    CHECK_THAT(dead[0].error, Catch::Contains("must not commit its unit of work"));
    CHECK(d.stats().dead_lettered == 1);
    CHECK(d.stats().delivered == 0);
    for (const auto& r : sink->records()) CHECK_THAT(r.error, !Catch::Contains("lost"));
    d.stop();
    // The handler's append was rolled back with the failed delivery: no receipt was stored.
    evbus::unit_of_work<events> tx(*store);
    auto count = tx.sql().prepare("SELECT COUNT(*) FROM evbus_outbox WHERE name = ?1");
    count.bind(1, std::string(receipt_sent::event_name));
    REQUIRE(count.step());
    CHECK(count.column_int64(0) == 0);
}

TEST_CASE("dispatcher: the store's history retention prunes when the options set none",
          "[outbox][dispatcher][history]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-store-retention", std::chrono::seconds(1));
    test_bus bus;
    auto sub = bus.subscribe("count", [](const money_transferred&) {});
    evbus::dispatcher_options o = fast_poll();
    o.prune_every = 0s;  // look on every round; retention stays zero: the store's applies
    dispatcher d(bus, *store, o);
    d.start();
    commit_one(*store, {"old", 1, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    const auto history_size = [&] {
        std::size_t n = 0;
        for (const auto& h : d.history()) n += h.event ? 1 : 0;
        return n;
    };
    CHECK(history_size() == 1);                              // kept on completion
    CHECK(eventually([&] { return history_size() == 0; }));  // pruned after the store's second
}

TEST_CASE("dispatcher: its retention prunes inbox rows of a store that keeps no history",
          "[outbox][dispatcher][inbox]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-inbox-retention");  // keeps no history
    REQUIRE_FALSE(store->keeps_history());
    test_bus bus;
    std::mutex mutex;
    std::optional<evbus::event_id> handled;
    auto sub = bus.subscribe("guarded", [&](const money_transferred&, evbus::handler_context& ctx) {
        evbus::unit_of_work<events> tx(*store);
        if (evbus::inbox::processed(tx, ctx)) return;
        tx.commit();
        const std::lock_guard lock(mutex);
        handled = ctx.meta().id;
    });
    evbus::dispatcher_options o = fast_poll();
    o.retention = 1s;
    o.prune_every = 0s;  // look on every round
    dispatcher d(bus, *store, o);
    d.start();
    commit_one(*store, {"alice", 1, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    const evbus::event_id id = [&] {
        const std::lock_guard lock(mutex);
        REQUIRE(handled.has_value());
        return *handled;
    }();
    // Whether the inbox still holds the mark; the probe's own mark is rolled back.
    const auto marked = [&] {
        evbus::unit_of_work<events> probe(*store);
        return evbus::inbox::processed(probe, id, "guarded");
    };
    CHECK(marked());
    CHECK(eventually([&] { return !marked(); }));  // pruned when older than the retention
}

TEST_CASE("dispatcher: a dead letter that no longer decodes can be discarded and requeued",
          "[outbox][dispatcher][dead_letter]") {
    const auto path = (fresh_dir("d-undecodable") / "app.db").string();
    evbus::sqlite_options options;
    options.sync = evbus::sync_mode::normal;
    {
        evbus::sqlite_store store(path, options);
        test_bus bus;
        evbus::subscribe_options once;
        once.retry.max_attempts = 1;
        auto mail = bus.subscribe(
            "mail", [](const money_transferred&) { throw std::runtime_error("smtp down"); }, once);
        dispatcher d(bus, store, fast_poll());
        d.start();
        commit_one(store, {"alice", 1, "EUR"});
        commit_one(store, {"bob", 2, "EUR"});
        REQUIRE(d.drain(drain_timeout));
        REQUIRE(d.dead_letters().size() == 2);
    }
    // A later build that no longer has money_transferred.
    using later_events = evbus::event_set<receipt_sent>;
    evbus::sqlite_store store(path, options);
    evbus::bus<later_events> bus;
    auto mail = bus.subscribe("mail", [](const receipt_sent&) {});
    evbus::outbox_dispatcher<later_events> d(bus, store, fast_poll());
    d.start();
    auto dead = d.dead_letters();
    REQUIRE(dead.size() == 2);
    std::sort(dead.begin(), dead.end(),
              [](const auto& x, const auto& y) { return x.event.key < y.event.key; });
    CHECK(d.discard(dead[0].id));  // alice's: gone
    CHECK(d.requeue(dead[1].id));  // bob's: decoded again, and dead-lettered with the cause
    REQUIRE(d.drain(drain_timeout));
    const auto after = d.dead_letters();
    REQUIRE(after.size() == 1);
    CHECK(after[0].event.key == "bob");
    CHECK_THAT(after[0].error, Catch::Contains(std::string(money_transferred::event_name)));
}

TEST_CASE("dispatcher: a store failure while resubmitting is retried, not given up",
          "[outbox][dispatcher][restart]") {
    const auto path = (fresh_dir("d-resubmit-busy") / "app.db").string();
    evbus::sqlite_options options;
    options.sync = evbus::sync_mode::normal;
    options.busy_timeout = 100ms;
    evbus::sqlite_store store(path, options);
    // As a crash leaves them: a rejected row that was requeued (decoding it again writes) and
    // two deliveries confirmed but not completed.
    insert_raw(store, "test.unknown", 1, "k", "{}");
    commit_one(store, {"alice", 1, "EUR"});
    commit_one(store, {"alice", 2, "EUR"});
    const auto rows = store.claim(10);
    REQUIRE(rows.size() == 3);
    store.confirm({rows[2].position,
                   {{rows[1].position, "mail"}, {rows[2].position, "mail"}},
                   {{rows[0].position, "unknown name"}}});
    REQUIRE(store.requeue(store.dead_letters({}).at(0).id));

    // Another writer holds the database past the busy timeout when the dispatcher starts.
    evbus::sqlite_store other(path, options);
    auto held = other.begin(evbus::begin_mode::immediate);
    auto sink = std::make_shared<evbus::dead_letter_list>();
    test_bus bus({sink});
    std::atomic<int> mailed{0};
    auto mail = bus.subscribe("mail", [&](const money_transferred&) { ++mailed; });
    dispatcher d(bus, store, fast_poll());
    d.start();
    const auto reported = [&] {
        for (const auto& r : sink->records()) {
            if (r.error.find("resubmitting failed") != std::string::npos) return true;
        }
        return false;
    };
    REQUIRE(eventually(reported));
    held->rollback();  // the other writer goes away
    held.reset();
    REQUIRE(d.drain(drain_timeout));
    CHECK(mailed == 2);
    CHECK(store.unfinished(std::nullopt, 10).empty());
}

TEST_CASE("dispatcher: a rejected row requeued before start() is delivered once",
          "[outbox][dispatcher][dead_letter][restart]") {
    // Requeued through the dispatcher, or only made pending in the store.
    const bool through_dispatcher = GENERATE(true, false);
    CAPTURE(through_dispatcher);
    const auto path = (fresh_dir("d-requeue-rejected") / "app.db").string();
    evbus::sqlite_options options;
    options.sync = evbus::sync_mode::normal;
    {
        // An older build that does not know money_transferred rejects the row.
        evbus::sqlite_store store(path, options);
        commit_one(store, {"alice", 5, "EUR"});
        using older_events = evbus::event_set<receipt_sent>;
        evbus::bus<older_events> bus;
        auto sub = bus.subscribe("receipts", [](const receipt_sent&) {});
        evbus::outbox_dispatcher<older_events> d(bus, store, fast_poll());
        d.start();
        REQUIRE(d.drain(drain_timeout));
        REQUIRE(store.dead_letters({}).size() == 1);
    }
    evbus::sqlite_store store(path, options);
    test_bus bus;
    std::atomic<int> mailed{0};
    auto mail = bus.subscribe("mail", [&](const money_transferred&) { ++mailed; });
    dispatcher d(bus, store, fast_poll());
    const auto letter = store.dead_letters({}).at(0).id;
    if (through_dispatcher) {
        CHECK(d.requeue(letter));
    } else {
        CHECK(store.requeue(letter).has_value());
    }
    d.start();
    REQUIRE(d.drain(drain_timeout));
    d.stop();  // whatever was still queued has run or is pending again
    CHECK(mailed == 1);
    CHECK(store.unfinished(std::nullopt, 10).empty());
}

TEST_CASE("dispatcher: a plain subscription may take a reset transactional one's name",
          "[outbox][dispatcher][transactional]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-tx-reset");
    test_bus bus;
    dispatcher d(bus, *store, fast_poll());
    {
        auto ledger = d.subscribe_transactional(
            "ledger", [](const money_transferred&, evbus::unit_of_work<events>&) {});
    }  // reset
    std::atomic<int> booked{0};
    auto ledger = bus.subscribe("ledger", [&](const money_transferred&) { ++booked; });
    d.start();
    commit_one(*store, {"alice", 1, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    CHECK(booked == 1);
    // The plain subscription's completion is recorded: nothing would be delivered again.
    CHECK(store->unfinished(std::nullopt, 10).empty());
}

TEST_CASE("dispatcher: requeue() racing stop() leaves the letter pending for the next start()",
          "[outbox][dispatcher][dead_letter][race]") {
    hooked_store store(std::make_unique<evbus::memory_store>());
    test_bus bus;
    std::atomic<bool> down{true};
    std::atomic<int> mailed{0};
    evbus::subscribe_options once;
    once.retry.max_attempts = 1;
    auto mail = bus.subscribe(
        "mail",
        [&](const money_transferred&) {
            if (down) throw std::runtime_error("smtp down");
            ++mailed;
        },
        once);
    // requeue() looks the letter up, then the engine does; the second lookup waits here until
    // stop() has returned, which is when stop() used to have destroyed that engine.
    std::mutex m;
    std::condition_variable cv;
    bool held = false;
    bool stopped = false;
    int lookups = 0;
    store.before_dead_letters = [&](const evbus::dead_letter_filter& f) {
        if (!f.id) return;
        std::unique_lock lock(m);
        if (++lookups != 2) return;
        held = true;
        cv.notify_all();
        cv.wait(lock, [&] { return stopped; });
    };
    dispatcher d(bus, store, fast_poll());
    d.start();
    commit_one(store, {"alice", 1, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    const auto dead = d.dead_letters();
    REQUIRE(dead.size() == 1);
    down = false;

    std::atomic<bool> requeued{false};
    std::thread operator_thread([&] { requeued = d.requeue(dead[0].id); });
    {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return held; });
    }
    d.stop();
    {
        const std::lock_guard lock(m);
        stopped = true;
    }
    cv.notify_all();
    operator_thread.join();
    CHECK(requeued);
    CHECK(store.dead_letters({}).empty());
    d.start();
    REQUIRE(d.drain(drain_timeout));
    CHECK(mailed == 1);
    CHECK(store.unfinished(std::nullopt, 10).empty());
}

TEST_CASE("dispatcher: a requeued rejected row outlives a store failure while decoded again",
          "[outbox][dispatcher][dead_letter]") {
    hooked_store store(make_store(true, "d-requeue-store-failure"));
    std::atomic<bool> fail_once{false};
    store.before_confirm = [&] {
        if (fail_once.exchange(false)) throw evbus::store_error("injected: database is locked");
    };
    // A version this build does not know: rejected.
    insert_raw(store, "transfer.moneyTransferred", 9, "alice",
               evbus::payload_codec<events>::encode(money_transferred{"alice", 1, "EUR"}));
    test_bus bus;
    std::atomic<int> mailed{0};
    auto mail = bus.subscribe("mail", [&](const money_transferred&) { ++mailed; });
    dispatcher d(bus, store, fast_poll());
    d.start();
    REQUIRE(d.drain(drain_timeout));
    const auto dead = d.dead_letters();
    REQUIRE(dead.size() == 1);
    {
        // The fix, deployed: the row now says a version this build knows.
        evbus::unit_of_work<events> tx(store);
        tx.sql().prepare("UPDATE evbus_outbox SET version = 2").run();
        tx.commit();
    }
    fail_once = true;  // decoding it again fails once to confirm its deliveries
    REQUIRE(d.requeue(dead[0].id));
    REQUIRE(d.drain(drain_timeout));
    CHECK_FALSE(fail_once);
    CHECK(mailed == 1);
    CHECK(d.dead_letters().empty());
    CHECK(store.unfinished(std::nullopt, 10).empty());
}

TEST_CASE("dispatcher: a transactional handler past its timeout rolls back its writes",
          "[outbox][dispatcher][transactional][timeout]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "d-tx-overrun");
    auto sink = std::make_shared<evbus::dead_letter_list>();
    test_bus bus({sink});
    std::atomic<int> receipts{0};
    auto count = bus.subscribe("receipts", [&](const receipt_sent&) { ++receipts; });
    dispatcher d(bus, *store, fast_poll());
    evbus::subscribe_options o;
    o.timeout = 10ms;
    o.retry.max_attempts = 1;
    auto mail = d.subscribe_transactional(
        "mail",
        [](const money_transferred& e, evbus::unit_of_work<events>& tx) {
            tx.append(receipt_sent{e.user_id, 1});
            std::this_thread::sleep_for(50ms);  // five times its budget
        },
        o);
    d.start();
    commit_one(*store, {"alice", 1, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    REQUIRE(d.drain(drain_timeout));  // and anything the handler's commit would have appended
    CHECK(receipts == 0);
    const auto dead = d.dead_letters();
    REQUIRE(dead.size() == 1);
    CHECK(dead[0].subscription == "mail");
    CHECK_THAT(dead[0].error, Catch::Contains("timeout"));
    for (const auto& r : sink->records()) {
        CHECK_THAT(r.error, !Catch::Contains("lost"));
    }
}

TEST_CASE("dispatcher: a transactional commit that ends past the timeout is handled, once",
          "[outbox][dispatcher][transactional][timeout]") {
    const bool sqlite = GENERATE(false, true);
    hooked_store store(make_store(sqlite, "d-tx-late-commit"));
    std::atomic<bool> slow_commit{false};
    store.after_commit = [&] {
        if (slow_commit.exchange(false)) std::this_thread::sleep_for(1s);  // 2x the budget
    };
    auto sink = std::make_shared<evbus::dead_letter_list>();
    test_bus bus({sink});
    std::atomic<int> receipts{0};
    auto count = bus.subscribe("receipts", [&](const receipt_sent&) { ++receipts; });
    dispatcher d(bus, store, fast_poll());
    evbus::subscribe_options o;
    o.timeout = 500ms;         // ample for the handler on a busy machine, not for the commit
    o.retry.max_attempts = 1;  // the overrun would be its last attempt
    std::atomic<int> calls{0};
    auto mail = d.subscribe_transactional(
        "mail",
        [&](const money_transferred& e, evbus::unit_of_work<events>& tx) {
            ++calls;
            tx.append(receipt_sent{e.user_id, 1});
            slow_commit = true;  // returns in time; the commit after it does not end in time
        },
        o);
    d.start();
    commit_one(store, {"alice", 1, "EUR"});
    REQUIRE(d.drain(drain_timeout));
    REQUIRE(d.drain(drain_timeout));  // and the receipt the handler's commit appended
    CHECK(calls == 1);
    CHECK(receipts == 1);
    CHECK(d.dead_letters().empty());
    CHECK(store.unfinished(std::nullopt, 10).empty());
    const auto reports = sink->records();
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].subscription == "mail");
    CHECK_THAT(reports[0].error, Catch::Contains("timeout") &&
                                     Catch::Contains("counts as handled") &&
                                     !Catch::Contains("lost"));
}

TEST_CASE("dispatcher: a requeued rejected row is resubmitted in its key's order, once",
          "[outbox][dispatcher][dead_letter][restart][order]") {
    const auto path = (fresh_dir("d-redecode-order") / "app.db").string();
    evbus::sqlite_options options;
    options.sync = evbus::sync_mode::normal;
    evbus::sqlite_store store(path, options);
    commit_one(store, {"alice", 1, "EUR"});
    commit_one(store, {"alice", 2, "EUR"});
    const auto rows = store.claim(10);
    REQUIRE(rows.size() == 2);
    // As a crash leaves them: alice's first event owed to "mail", not delivered; her second
    // rejected (by an older build), requeued, and decoded again as far as owing it to "mail",
    // the requeue's own marker not yet completed.
    store.confirm(
        {rows[1].position, {{rows[0].position, "mail"}}, {{rows[1].position, "unknown name"}}});
    REQUIRE(store.requeue(store.dead_letters({}).at(0).id));
    store.confirm({0, {{rows[1].position, "mail"}}, {}});

    test_bus bus;
    seen_list seen;
    auto mail = bus.subscribe(
        "mail", [&](const money_transferred& e) { seen.add(std::to_string(e.cents)); });
    dispatcher d(bus, store, fast_poll());
    d.start();
    REQUIRE(d.drain(drain_timeout));
    CHECK(seen.get() == std::vector<std::string>{"1", "2"});
    CHECK(d.dead_letters().empty());
    CHECK(store.unfinished(std::nullopt, 10).empty());
}
