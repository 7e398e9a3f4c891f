// The store interface, on both stores where the behaviour is shared, plus what only the
// SQLite file does (durability across reopen, bad files, schema versions).
#include <evbus/forwarding_store.hpp>
#include <evbus/memory_store.hpp>
#include <evbus/sqlite_store.hpp>
#include <evbus/unit_of_work.hpp>

#include <sys/stat.h>

#include <cstdint>
#include <exception>
#include <filesystem>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "outbox_events.hpp"

using namespace outbox_test;
using evbus::delivery_ref;

namespace {

std::unique_ptr<evbus::event_store> make_store(bool sqlite, std::string_view name,
                                               std::chrono::seconds retention = {}) {
    if (!sqlite) return std::make_unique<evbus::memory_store>(retention);
    evbus::sqlite_options options;
    options.sync = evbus::sync_mode::normal;
    options.history_retention = retention;
    return std::make_unique<evbus::sqlite_store>((fresh_dir(name) / "app.db").string(), options);
}

std::vector<std::string> claimed_users(evbus::event_store& store) {
    std::vector<std::string> users;
    for (const auto& e : store.claim(100)) {
        const auto decoded = evbus::payload_codec<events>::decode(e.name, e.version, e.payload);
        users.push_back(std::get<money_transferred>(std::get<0>(decoded)).user_id);
    }
    return users;
}

}  // namespace

TEST_CASE("store: a rolled-back unit of work leaves no event, a committed one leaves one",
          "[outbox][store]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "rollback");
    {
        evbus::unit_of_work<events> tx(*store);
        tx.append(money_transferred{"alice", 1, "EUR"});
        tx.rollback();
    }
    {
        evbus::unit_of_work<events> tx(*store);
        tx.append(money_transferred{"bob", 2, "EUR"});
    }  // destroyed without commit
    CHECK(store->claim(10).empty());
    const auto before = store->commits().generation();
    {
        evbus::unit_of_work<events> tx(*store);
        tx.append(money_transferred{"carol", 3, "EUR"});
        tx.commit();
    }
    CHECK(store->commits().generation() == before + 1);
    const auto rows = store->claim(10);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].name == "transfer.moneyTransferred");
    CHECK(rows[0].version == 2);
    CHECK(rows[0].key == "carol");
    CHECK_FALSE(rows[0].id.is_nil());
    CHECK(rows[0].correlation_id == rows[0].id);
}

TEST_CASE("forwarding_store: its commits raise its own signal and report their events",
          "[outbox][store][forwarding]") {
    const bool sqlite = GENERATE(false, true);
    struct observing final : evbus::forwarding_store {
        using forwarding_store::forwarding_store;
        std::vector<std::uint64_t> seen = std::vector<std::uint64_t>(4);  // no growth below
        std::size_t calls = 0;
        void committed(std::uint64_t appended) noexcept override {
            seen.at(calls++) = appended;
            forwarding_store::committed(appended);
        }
    };
    observing store(make_store(sqlite, "forwarding"));
    const auto before = store.commits().generation();
    const auto inner_before = store.inner().commits().generation();
    {
        evbus::unit_of_work<events> tx(store);
        tx.append(money_transferred{"alice", 1, "EUR"});
        tx.append(money_transferred{"bob", 2, "EUR"});
        tx.commit();
    }
    {
        evbus::unit_of_work<events> tx(store);  // no event: nothing for the dispatcher
        tx.commit();
    }
    {
        evbus::unit_of_work<events> tx(store);
        tx.append(money_transferred{"carol", 3, "EUR"});
        tx.rollback();
    }
    CHECK(store.calls == 2);
    CHECK(store.seen[0] == 2);
    CHECK(store.seen[1] == 0);
    CHECK(store.commits().generation() == before + 1);
    CHECK(store.inner().commits().generation() == inner_before + 1);
    CHECK(claimed_users(store) == std::vector<std::string>{"alice", "bob"});
}

TEST_CASE("forwarding_store: a null inner store is refused", "[outbox][store][forwarding]") {
    CHECK_THROWS_WITH(evbus::forwarding_store(std::unique_ptr<evbus::event_store>{}),
                      Catch::Contains("the inner store is null"));
}

TEST_CASE("store: domain rows and events commit or roll back together", "[outbox][store]") {
    auto store = make_store(true, "domain");
    {
        evbus::unit_of_work<events> tx(*store);
        tx.sql().exec("CREATE TABLE account(id TEXT PRIMARY KEY, cents INTEGER NOT NULL)");
        tx.commit();
    }
    auto balance_rows = [&] {
        evbus::unit_of_work<events> tx(*store);
        auto q = tx.sql().prepare("SELECT count(*) FROM account");
        REQUIRE(q.step());
        return q.column_int64(0);
    };
    {
        evbus::unit_of_work<events> tx(*store);
        tx.sql().prepare("INSERT INTO account VALUES (?1, ?2)").bind(1, "alice").bind(2, 5).run();
        tx.append(money_transferred{"alice", 5, "EUR"});
    }
    CHECK(balance_rows() == 0);
    CHECK(store->claim(10).empty());
    {
        evbus::unit_of_work<events> tx(*store);
        tx.sql().prepare("INSERT INTO account VALUES (?1, ?2)").bind(1, "alice").bind(2, 5).run();
        tx.append(money_transferred{"alice", 5, "EUR"});
        tx.commit();
    }
    CHECK(balance_rows() == 1);
    CHECK(store->claim(10).size() == 1);
}

TEST_CASE("store: the memory store has no SQL and says so", "[outbox][store]") {
    evbus::memory_store store;
    evbus::unit_of_work<events> tx(store);
    CHECK_THROWS_WITH(tx.sql(), Catch::Contains("memory_store has no SQL"));
}

TEST_CASE("store: out-of-order commits are claimed in commit order and none is skipped",
          "[outbox][store][order]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "order");
    // Deferred: the SQLite write lock is taken at commit, so all four can be open at once on
    // four connections of the same file.
    evbus::unit_of_work<events> t0(*store, evbus::begin_mode::deferred);
    evbus::unit_of_work<events> t1(*store, evbus::begin_mode::deferred);
    evbus::unit_of_work<events> tr(*store, evbus::begin_mode::deferred);
    evbus::unit_of_work<events> t2(*store, evbus::begin_mode::deferred);
    t0.append(money_transferred{"t0", 0, "EUR"});
    t1.append(money_transferred{"t1", 1, "EUR"});
    tr.append(money_transferred{"tR", 9, "EUR"});
    t2.append(money_transferred{"t2", 2, "EUR"});

    t2.commit();
    // The dispatcher claims t2 and confirms it before the others commit.
    const auto first = store->claim(10);
    REQUIRE(first.size() == 1);
    store->confirm({first[0].position, {}, {}});
    tr.rollback();
    t1.commit();
    t0.commit();
    CHECK(claimed_users(*store) == std::vector<std::string>{"t1", "t0"});
}

TEST_CASE("store: deliveries complete one subscription at a time, the event goes last",
          "[outbox][store]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "complete", std::chrono::hours(1));
    {
        evbus::unit_of_work<events> tx(*store);
        tx.append(money_transferred{"alice", 1, "EUR"});
        tx.commit();
    }
    const auto rows = store->claim(10);
    REQUIRE(rows.size() == 1);
    const auto p = rows[0].position;
    store->confirm({p, {{p, "a"}, {p, "b"}}, {}});
    CHECK(store->claim(10).empty());
    CHECK(store->unfinished(std::nullopt, 10).size() == 2);

    const delivery_ref a{p, "a"};
    store->complete({&a, 1});
    const auto left = store->unfinished(std::nullopt, 10);
    REQUIRE(left.size() == 1);
    CHECK(left[0].subscription == "b");
    CHECK(store->history({}).empty());

    // b completes inside a transaction, exactly once.
    {
        auto tx = store->begin();
        CHECK(tx->complete({p, "b"}));
        CHECK_FALSE(tx->complete({p, "b"}));
        tx->commit();
    }
    CHECK(store->unfinished(std::nullopt, 10).empty());
    const auto history = store->history({});
    REQUIRE(history.size() == 1);
    CHECK(history[0].id == rows[0].id);
    CHECK(store->prune(evbus::store_clock::now() + std::chrono::seconds(1)) == 1);
    CHECK(store->history({}).empty());
}

TEST_CASE("memory_store: a completion not yet committed holds its event back", "[outbox][store]") {
    evbus::memory_store store(std::chrono::hours(1));
    {
        evbus::unit_of_work<events> tx(store);
        tx.append(money_transferred{"alice", 1, "EUR"});
        tx.commit();
    }
    const auto rows = store.claim(10);
    REQUIRE(rows.size() == 1);
    const auto p = rows[0].position;
    store.confirm({p, {{p, "ledger"}, {p, "mail"}}, {}});

    auto tx = store.begin();
    CHECK(tx->complete({p, "ledger"}));  // a transactional handler, not committed yet
    const delivery_ref mail{p, "mail"};
    store.complete({&mail, 1});  // the other subscription finishes meanwhile
    CHECK(store.history({}).empty());
    tx->rollback();  // the handler failed: ledger still owes the event
    const auto left = store.unfinished(std::nullopt, 10);
    REQUIRE(left.size() == 1);
    CHECK(left[0].subscription == "ledger");
    CHECK(left[0].event.id == rows[0].id);
    CHECK(store.history({}).empty());

    auto again = store.begin();
    CHECK(again->complete({p, "ledger"}));
    again->commit();
    CHECK(store.unfinished(std::nullopt, 10).empty());
    CHECK(store.history({}).size() == 1);
}

TEST_CASE("store: history is read back by key and time range", "[outbox][store][history]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "history", std::chrono::hours(1));
    const auto t0 = evbus::store_clock::now();
    for (int i = 0; i < 6; ++i) {
        evbus::unit_of_work<events> tx(*store);
        evbus::metadata meta;
        meta.occurred_at = t0 + std::chrono::seconds(i);
        tx.append(money_transferred{i % 2 == 0 ? "even" : "odd", i, "EUR"}, meta);
        tx.commit();
    }
    const auto rows = store->claim(10);
    store->confirm({rows.back().position, {}, {}});  // nobody subscribed: finished at once

    evbus::history_query q;
    q.key = "even";
    q.from = t0 + std::chrono::seconds(1);
    q.to = t0 + std::chrono::seconds(5);
    const auto found = store->history(q);
    REQUIRE(found.size() == 2);
    CHECK(found[0].occurred_at == t0 + std::chrono::seconds(2));
    CHECK(found[1].occurred_at == t0 + std::chrono::seconds(4));
    q = {};
    q.limit = 4;
    const auto page = store->history(q);
    REQUIRE(page.size() == 4);
    q.after_position = page.back().position;
    CHECK(store->history(q).size() == 2);
}

TEST_CASE("store: dead letters are listed, requeued and discarded by id and filter",
          "[outbox][store][dead_letter]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "dead");
    for (const char* user : {"alice", "bob"}) {
        evbus::unit_of_work<events> tx(*store);
        tx.append(money_transferred{user, 1, "EUR"});
        tx.commit();
    }
    const auto rows = store->claim(10);
    REQUIRE(rows.size() == 2);
    const auto pa = rows[0].position;
    const auto pb = rows[1].position;
    store->confirm({pb, {{pa, "ledger"}, {pa, "mail"}, {pb, "ledger"}}, {}});
    const auto t = evbus::store_clock::now();
    const auto alice_id = store->dead_letter({pa, "ledger"}, 3, "boom", t, t);
    const auto bob_id = store->dead_letter({pb, "ledger"}, 2, "bang", t, t);
    CHECK_FALSE(store->dead_letter({pa, "nobody"}, 1, "not pending: ignored", t, t));
    REQUIRE(alice_id);
    REQUIRE(bob_id);
    CHECK(*alice_id != *bob_id);

    const auto all = store->dead_letters({});
    REQUIRE(all.size() == 2);
    CHECK(all[0].id == *alice_id);
    CHECK(all[1].id == *bob_id);
    evbus::dead_letter_filter by_id;
    by_id.id = *bob_id;
    const auto just_bob = store->dead_letters(by_id);
    REQUIRE(just_bob.size() == 1);
    CHECK(just_bob[0].event.key == "bob");
    by_id.subscription = "mail";  // the id's letter is for "ledger": no match
    CHECK(store->dead_letters(by_id).empty());
    by_id = {};
    by_id.id = *alice_id + *bob_id;  // no letter has it
    CHECK(store->dead_letters(by_id).empty());
    evbus::dead_letter_filter by_key;
    by_key.key = "bob";
    const auto bobs = store->dead_letters(by_key);
    REQUIRE(bobs.size() == 1);
    CHECK(bobs[0].error == "bang");
    CHECK(bobs[0].attempts == 2);
    CHECK(bobs[0].subscription == "ledger");
    CHECK(bobs[0].event.key == "bob");

    const auto back = store->requeue(bobs[0].id);
    REQUIRE(back);
    CHECK(back->subscription == "ledger");
    CHECK(back->event.position == pb);
    CHECK_FALSE(store->requeue(bobs[0].id));
    CHECK(store->dead_letters({}).size() == 1);

    const auto alices = store->dead_letters({});
    CHECK(store->discard(alices[0].id));
    CHECK_FALSE(store->discard(alices[0].id));
    CHECK(store->dead_letters({}).empty());
    // alice still owes "mail"; bob owes "ledger" again.
    CHECK(store->unfinished(std::nullopt, 10).size() == 2);
}

TEST_CASE("store: the inbox remembers a processed event, and a rollback forgets it",
          "[outbox][store][inbox]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "inbox");
    const auto id = evbus::event_id::generate();
    {
        auto tx = store->begin();
        CHECK(tx->mark_processed(id, "mail"));
        tx->rollback();
    }
    {
        auto tx = store->begin();
        CHECK(tx->mark_processed(id, "mail"));
        CHECK(tx->mark_processed(id, "sms"));
        tx->commit();
    }
    auto tx = store->begin();
    CHECK_FALSE(tx->mark_processed(id, "mail"));
}

TEST_CASE("store: a mark another open transaction is making waits for its outcome",
          "[outbox][store][inbox]") {
    const bool sqlite = GENERATE(false, true);
    const bool first_commits = GENERATE(false, true);
    auto store = make_store(sqlite, "inbox-wait");
    const auto id = evbus::event_id::generate();
    auto first = store->begin();
    REQUIRE(first->mark_processed(id, "mail"));
    std::latch started(1);
    std::optional<bool> second_marked;
    std::thread second([&] {
        started.count_down();
        auto tx = store->begin();  // SQLite waits here, for the write lock
        second_marked = tx->mark_processed(id, "mail");
        tx->commit();
    });
    started.wait();
    // Let the second get to its wait; the outcome does not depend on whether it did.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (first_commits) {
        first->commit();
    } else {
        first->rollback();
    }
    second.join();
    REQUIRE(second_marked.has_value());
    // Marked once in all: by the first if it committed, else by the second.
    CHECK(*second_marked == !first_commits);
    auto tx = store->begin();
    CHECK_FALSE(tx->mark_processed(id, "mail"));
}

TEST_CASE("memory_store: a second open transaction of one thread may not wait for the first's mark",
          "[outbox][store][inbox]") {
    evbus::memory_store store;
    const auto id = evbus::event_id::generate();
    auto first = store.begin();
    REQUIRE(first->mark_processed(id, "mail"));
    {
        auto second = store.begin();
        CHECK_THROWS_WITH(second->mark_processed(id, "mail"),
                          Catch::Contains("by another open transaction of this thread") &&
                              Catch::Contains(id.to_string()) && Catch::Contains("'mail'"));
        CHECK(second->mark_processed(id, "sms"));  // the failed mark changed nothing else
    }
    first->commit();
    auto tx = store.begin();
    CHECK_FALSE(tx->mark_processed(id, "mail"));
    CHECK(tx->mark_processed(id, "sms"));  // the second rolled back
}

TEST_CASE("memory_store: two transactions waiting for each other's marks: one fails, one goes on",
          "[outbox][store][inbox]") {
    evbus::memory_store store;
    const auto a = evbus::event_id::generate();
    const auto b = evbus::event_id::generate();
    std::latch both_marked(2);
    // Marks `own`, then the other's event; returns whether that second mark threw.
    const auto run = [&](const evbus::event_id& own, const evbus::event_id& other,
                         std::string& error) {
        auto tx = store.begin();
        const bool marked = tx->mark_processed(own, "mail");
        both_marked.arrive_and_wait();
        try {
            const bool second = tx->mark_processed(other, "mail");
            if (marked && second) tx->commit();  // else the check below fails: roll back
        } catch (const evbus::store_error& e) {
            error = e.what();
        }
    };
    std::string error_a, error_b;
    std::thread other([&] { run(b, a, error_b); });
    run(a, b, error_a);
    other.join();
    // Whichever closed the cycle failed and rolled back; the other then marked both.
    CHECK(error_a.empty() != error_b.empty());
    CHECK_THAT(error_a + error_b, Catch::Contains("(a deadlock)") && Catch::Contains("'mail'"));
    auto tx = store.begin();
    CHECK_FALSE(tx->mark_processed(a, "mail"));
    CHECK_FALSE(tx->mark_processed(b, "mail"));
}

TEST_CASE("sqlite_store: what was committed survives closing and reopening the file",
          "[outbox][sqlite]") {
    const auto path = (fresh_dir("reopen") / "app.db").string();
    {
        evbus::sqlite_store store(path);
        evbus::unit_of_work<events> tx(store);
        tx.append(money_transferred{"alice", 1, "EUR"});
        tx.commit();
        const auto rows = store.claim(10);
        store.confirm({rows[0].position, {{rows[0].position, "ledger"}}, {}});
        const auto t = evbus::store_clock::now();
        store.dead_letter({rows[0].position, "ledger"}, 4, "boom", t, t);
    }
    evbus::sqlite_store store(path);
    const auto dead = store.dead_letters({});
    REQUIRE(dead.size() == 1);
    CHECK(dead[0].error == "boom");
    CHECK(dead[0].event.key == "alice");
    CHECK(store.claim(10).empty());
}

TEST_CASE("sqlite_store: a transaction SQLite rolled back on its own commits nothing after",
          "[outbox][sqlite][errors]") {
    auto store = make_store(true, "auto-rollback");
    {
        evbus::unit_of_work<events> tx(*store);
        tx.sql().exec(
            "CREATE TABLE account(cents INTEGER); INSERT INTO account VALUES (100);"
            "CREATE TABLE seen(k TEXT UNIQUE ON CONFLICT ROLLBACK); INSERT INTO seen VALUES ('a')");
        tx.commit();
    }
    {
        evbus::unit_of_work<events> tx(*store);
        tx.sql().exec("UPDATE account SET cents = cents - 40");
        // The duplicate makes SQLite roll the whole transaction back; the module catches it.
        CHECK_THROWS_AS(tx.sql().exec("INSERT INTO seen VALUES ('a')"), evbus::store_error);
        const std::string over = "SQLite already rolled this transaction back";
        CHECK_THROWS_WITH(
            tx.sql().exec("UPDATE account SET cents = cents - 1"),
            Catch::Contains("UPDATE account SET cents = cents - 1") && Catch::Contains(over));
        auto insert = tx.sql().prepare("INSERT INTO seen VALUES ('b')");
        CHECK_THROWS_WITH(insert.step(), Catch::Contains(over));
        CHECK_THROWS_WITH(tx.tx().mark_processed(evbus::event_id::generate(), "mail"),
                          Catch::Contains(over));
        tx.append(money_transferred{"alice", 1, "EUR"});
        CHECK_THROWS_WITH(tx.commit(), Catch::Contains(over));
    }

    CHECK(store->claim(10).empty());  // the event was not committed by itself
    evbus::unit_of_work<events> check(*store);
    auto cents = check.sql().prepare("SELECT cents FROM account");
    REQUIRE(cents.step());
    CHECK(cents.column_int64(0) == 100);  // nor the writes after the rollback
    auto seen = check.sql().prepare("SELECT count(*) FROM seen");
    REQUIRE(seen.step());
    CHECK(seen.column_int64(0) == 1);
}

TEST_CASE("sqlite_store: writers of one store take turns, none is held past busy_timeout",
          "[outbox][sqlite][writers]") {
    const auto path = (fresh_dir("writers") / "app.db").string();
    evbus::sqlite_options options;
    options.sync = evbus::sync_mode::normal;
    options.busy_timeout = std::chrono::milliseconds(50);

    SECTION("a writer waits for the open unit of work, then goes in") {
        options.busy_timeout = std::chrono::minutes(1);
        evbus::sqlite_store store(path, options);
        std::mutex m;
        std::vector<std::string> steps;
        auto step = [&](const char* s) {
            const std::lock_guard lock(m);
            steps.emplace_back(s);
        };
        evbus::unit_of_work<events> first(store);
        first.append(money_transferred{"alice", 1, "EUR"});
        std::thread second([&] {
            evbus::unit_of_work<events> tx(store);
            step("second begun");
            tx.append(money_transferred{"bob", 1, "EUR"});
            tx.commit();
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it queue
        step("first commits");
        first.commit();
        second.join();
        CHECK(steps == std::vector<std::string>{"first commits", "second begun"});
        CHECK(claimed_users(store) == std::vector<std::string>{"alice", "bob"});
    }
    SECTION("a writer held up past busy_timeout fails naming the file; the holder commits") {
        evbus::sqlite_store store(path, options);
        evbus::unit_of_work<events> holder(store);
        holder.append(money_transferred{"alice", 1, "EUR"});
        std::string error;
        std::thread([&] {
            try {
                commit_one(store, {"bob", 1, "EUR"});
            } catch (const evbus::store_error& e) {
                error = e.what();
            }
        }).join();
        CHECK_THAT(error, Catch::Contains("database '" + path + "' is locked") &&
                              Catch::Contains("busy_timeout (50 ms)"));
        holder.commit();
        commit_one(store, {"carol", 1, "EUR"});
        CHECK(claimed_users(store) == std::vector<std::string>{"alice", "carol"});
    }
    SECTION("a writer of another store on the file, held up past busy_timeout, names the file") {
        evbus::sqlite_store store(path, options);
        evbus::sqlite_store other(path, options);  // its own connections: SQLite's lock
        evbus::unit_of_work<events> holder(store);
        holder.append(money_transferred{"alice", 1, "EUR"});
        CHECK_THROWS_WITH(commit_one(other, {"bob", 1, "EUR"}), Catch::Contains("in database '") &&
                                                                    Catch::Contains("app.db'") &&
                                                                    Catch::Contains("locked"));
        holder.commit();
    }
    SECTION("a busy_timeout too long for SQLite's int, or milliseconds::max(), waits") {
        // SQLite's busy handler took the first as negative (no wait), and the store's own
        // queue overflowed its deadline with the second: both failed at once.
        options.busy_timeout =
            GENERATE(std::chrono::milliseconds(3'000'000'000), std::chrono::milliseconds::max());
        const bool same_store = GENERATE(true, false);
        evbus::sqlite_store store(path, options);
        std::optional<evbus::sqlite_store> other;
        if (!same_store) other.emplace(path, options);
        evbus::event_store& second = same_store ? store : *other;
        evbus::unit_of_work<events> holder(store);
        holder.append(money_transferred{"alice", 1, "EUR"});
        std::string error = "none";
        std::thread writer([&] {
            try {
                commit_one(second, {"bob", 1, "EUR"});
            } catch (const std::exception& e) {
                error = e.what();
            }
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it wait
        holder.commit();
        writer.join();
        CHECK(error == "none");
        CHECK(claimed_users(store) == std::vector<std::string>{"alice", "bob"});
    }
    SECTION("a transaction that ends without a commit lets the next writer in") {
        evbus::sqlite_store store(path, options);
        {
            evbus::unit_of_work<events> dropped(store);
            dropped.append(money_transferred{"alice", 1, "EUR"});
        }
        evbus::unit_of_work<events> rolled_back(store);  // still alive below
        rolled_back.append(money_transferred{"alice", 2, "EUR"});
        rolled_back.rollback();
        CHECK_FALSE(store.requeue(12345).has_value());  // a store call that commits nothing
        commit_one(store, {"bob", 1, "EUR"});
        CHECK(claimed_users(store) == std::vector<std::string>{"bob"});
    }
    SECTION("a transaction may commit on another thread than the one that began it") {
        evbus::sqlite_store store(path, options);
        auto tx = store.begin();
        evbus::unit_of_work<events>(*tx).append(money_transferred{"alice", 1, "EUR"});
        std::thread([&] { tx->commit(); }).join();
        commit_one(store, {"bob", 1, "EUR"});
        CHECK(claimed_users(store) == std::vector<std::string>{"alice", "bob"});
    }
    SECTION("a deferred transaction holds no writer back") {
        evbus::sqlite_store store(path, options);
        auto reader = store.begin(evbus::begin_mode::deferred);
        {
            auto count = reader->sql().prepare("SELECT count(*) FROM evbus_schema");
            REQUIRE(count.step());  // the reader now holds a snapshot of the file
        }
        commit_one(store, {"alice", 1, "EUR"});
        reader->rollback();
        CHECK(claimed_users(store) == std::vector<std::string>{"alice"});
    }
}

TEST_CASE("sqlite_store: bad paths and options are refused, naming them",
          "[outbox][sqlite][errors]") {
    const auto dir = fresh_dir("bad-options");
    CHECK_THROWS_WITH(evbus::sqlite_store(""), Catch::Contains("the database path is empty"));
    const std::string with_nul = (dir / "a.db").string() + std::string(1, '\0') + "tail";
    CHECK_THROWS_WITH(evbus::sqlite_store(with_nul), Catch::Contains("holds a NUL byte"));
    CHECK_FALSE(std::filesystem::exists(dir / "a.db"));
    evbus::sqlite_options o;
    o.busy_timeout = std::chrono::milliseconds(-5);
    CHECK_THROWS_WITH(evbus::sqlite_store((dir / "b.db").string(), o),
                      Catch::Contains("busy_timeout is -5 ms"));
    o = {};
    o.history_retention = std::chrono::seconds(-1);
    CHECK_THROWS_WITH(evbus::sqlite_store((dir / "b.db").string(), o),
                      Catch::Contains("history_retention is -1 s"));
}

TEST_CASE("sqlite_store: SQL misuse is refused instead of half run", "[outbox][sqlite][errors]") {
    auto store = make_store(true, "sql-misuse");
    evbus::unit_of_work<events> tx(*store);
    tx.sql().exec("CREATE TABLE a(x); CREATE TABLE b(x)");
    // SQLite compiles the first statement only; the second was dropped without a word.
    CHECK_THROWS_WITH(
        tx.sql().prepare("INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)"),
        Catch::Contains("takes one SQL statement") && Catch::Contains("INSERT INTO b VALUES (2)"));
    tx.sql().prepare("INSERT INTO a VALUES (1); -- one row\n/* done */ ").run();
    CHECK_THROWS_WITH(tx.sql().prepare("-- nothing"), Catch::Contains("holds no statement"));
    CHECK_THROWS_WITH(tx.sql().exec(std::string("DELETE FROM a") + std::string(1, '\0') + "x"),
                      Catch::Contains("holds a NUL byte"));
    auto count = tx.sql().prepare("SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)");
    REQUIRE(count.step());
    CHECK(count.column_int64(0) == 1);
    CHECK(count.column_int64(1) == 0);
    CHECK_THROWS_WITH(tx.sql().prepare("SELECT * FROM no_such_table"),
                      Catch::Contains("in database '") && Catch::Contains("no such table"));
}

TEST_CASE("store: completing positions no event has changes nothing", "[outbox][store][errors]") {
    const bool sqlite = GENERATE(false, true);
    auto store = make_store(sqlite, "complete-odd");
    commit_one(*store, {"alice", 1, "EUR"});
    const auto rows = store->claim(10);
    REQUIRE(rows.size() == 1);
    store->confirm({rows[0].position, {{rows[0].position, "mail"}}, {}});
    const std::vector<delivery_ref> odd{{INT64_MIN, "mail"}, {0, "mail"}, {INT64_MAX, "mail"}};
    store->complete(odd);  // UBSan: no signed overflow on the way
    CHECK(store->unfinished(std::nullopt, 10).size() == 1);
}

TEST_CASE("sqlite_store: bad files give an error naming the file and the cause",
          "[outbox][sqlite][errors]") {
    const auto dir = fresh_dir("bad");
    SECTION("missing directory") {
        const auto path = (dir / "no-such-dir" / "app.db").string();
        CHECK_THROWS_WITH(evbus::sqlite_store(path),
                          Catch::Contains("cannot open database '" + path + "'") &&
                              Catch::Contains("no-such-dir' does not exist"));
    }
    SECTION("read-only file") {
        const auto path = (dir / "ro.db").string();
        { evbus::sqlite_store store(path); }
        std::filesystem::remove(path + "-wal");
        std::filesystem::remove(path + "-shm");
        REQUIRE(::chmod(path.c_str(), 0444) == 0);
        CHECK_THROWS_WITH(evbus::sqlite_store(path),
                          Catch::Contains(path) && Catch::Contains("read-only"));
        REQUIRE(::chmod(path.c_str(), 0644) == 0);
    }
    SECTION("a file that is not a database") {
        const auto path = (dir / "junk.db").string();
        {
            std::FILE* f = std::fopen(path.c_str(), "wb");
            REQUIRE(f != nullptr);
            const std::string junk(4096, 'x');
            std::fwrite(junk.data(), 1, junk.size(), f);
            std::fclose(f);
        }
        CHECK_THROWS_WITH(evbus::sqlite_store(path),
                          Catch::Contains(path) && Catch::Contains("not an SQLite database"));
    }
    SECTION("a schema version no evbus writes") {
        const auto path = (dir / "odd.db").string();
        {
            evbus::sqlite_store store(path);
            evbus::unit_of_work<events> tx(store);
            tx.sql().exec("UPDATE evbus_schema SET version = -1");  // read migrations[-1]
            tx.commit();
        }
        CHECK_THROWS_WITH(evbus::sqlite_store(path), Catch::Contains(path) &&
                                                         Catch::Contains("schema version is -1") &&
                                                         Catch::Contains("damaged"));
    }
    SECTION("a schema version past 32 bits is newer, not read as a small one") {
        const auto path = (dir / "huge.db").string();
        {
            evbus::sqlite_store store(path);
            evbus::unit_of_work<events> tx(store);
            tx.sql().exec("UPDATE evbus_schema SET version = 4294967297");  // 2^32 + 1
            tx.commit();
        }
        CHECK_THROWS_WITH(evbus::sqlite_store(path),
                          Catch::Contains(path) && Catch::Contains("schema is version 4294967297"));
    }
    SECTION("a schema newer than the library") {
        const auto path = (dir / "future.db").string();
        {
            evbus::sqlite_store store(path);
            evbus::unit_of_work<events> tx(store);
            tx.sql().exec("UPDATE evbus_schema SET version = 99");
            tx.commit();
        }
        CHECK_THROWS_WITH(evbus::sqlite_store(path),
                          Catch::Contains(path) && Catch::Contains("schema is version 99") &&
                              Catch::Contains("newer than this library's 1"));
    }
}
