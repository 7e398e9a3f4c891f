// The transfer module on a real SQLite file: valid transfers move money and append exactly one
// event; invalid ones are rejected with a message naming the problem, change nothing and
// append nothing.
#include <cstdint>
#include <limits>

#include <catch2/catch.hpp>

#include <contract/events.hpp>
#include <contract/module_schema.hpp>
#include <evbus/codec.hpp>
#include <evbus/sqlite_store.hpp>
#include <evbus/unit_of_work.hpp>
#include <transfer/transfer.hpp>

#include "scratch_dir.hpp"

namespace {

using namespace payments;
using transfer::reason;
using transfer::status;

struct bank {
    payments_test::scratch_dir dir{"transfer"};
    evbus::sqlite_store store{dir.file("bank.db")};
    transfer::transfer_service service = transfer::wire(store);

    bank() {
        service.open_wallet("w-alice", "alice", 10'000);
        service.open_wallet("w-bob", "bob", 500);
    }

    std::int64_t count(const char* sql) {
        evbus::unit_of_work<contract::events> uow(store, evbus::begin_mode::deferred);
        auto stmt = uow.sql().prepare(sql);
        REQUIRE(stmt.step());
        return stmt.column_int64(0);
    }
    std::int64_t transfers() { return count("SELECT count(*) FROM transfer_transfers"); }
    std::size_t events() { return store.claim(100'000).size(); }
};

transfer::transfer_request request(std::string key, std::int64_t cents,
                                   std::string from = "w-alice", std::string to = "w-bob",
                                   std::string user = "alice") {
    return {std::move(key), std::move(user), std::move(from), std::move(to), cents};
}

}  // namespace

TEST_CASE("transfer: a valid transfer moves the money and appends one moneyTransferred",
          "[app][transfer]") {
    bank b;
    const auto r = b.service.transfer(request("k-1", 1'250));
    REQUIRE(r.outcome == status::committed);
    CHECK(r.why == reason::none);
    CHECK(b.service.balance("w-alice") == 8'750);
    CHECK(b.service.balance("w-bob") == 1'750);
    CHECK(b.transfers() == 1);

    const auto stored = b.store.claim(10);
    REQUIRE(stored.size() == 1);
    CHECK(stored[0].name == "transfer.moneyTransferred");
    CHECK(stored[0].key == "alice");
    CHECK(stored[0].source == "transfer");
    const auto decoded = evbus::payload_codec<contract::events>::decode(
        stored[0].name, stored[0].version, stored[0].payload);
    REQUIRE(decoded.index() == 0);
    const auto& e = std::get<contract::money_transferred>(std::get<0>(decoded));
    CHECK(e.transfer_id == r.transfer_id);
    CHECK(e.user_id == "alice");
    CHECK(e.amount_cents == 1'250);
    CHECK(e.from_wallet == "w-alice");
    CHECK(e.to_wallet == "w-bob");
    CHECK(e.created_at_ms > 0);
}

TEST_CASE("transfer: a credit past the largest balance is refused, not rounded",
          "[app][transfer]") {
    bank b;
    constexpr std::int64_t top = std::numeric_limits<std::int64_t>::max();
    b.service.open_wallet("w-rich", "rich", top - 5);
    const auto r = b.service.transfer(request("k-over", 100, "w-bob", "w-rich", "bob"));
    CHECK(r.outcome == status::rejected);
    CHECK(r.why == reason::balance_overflow);
    CHECK_THAT(r.message, Catch::Contains("wallet 'w-rich' holds 9223372036854775802 cents; "
                                          "receiving 100 more would pass the largest balance"));
    CHECK(b.service.balance("w-rich") == top - 5);
    CHECK(b.service.balance("w-bob") == 500);
    CHECK(b.transfers() == 0);
    // Up to the largest balance exactly is fine.
    CHECK(b.service.transfer(request("k-top", 5, "w-bob", "w-rich", "bob")).outcome ==
          status::committed);
    CHECK(b.service.balance("w-rich") == top);
}

TEST_CASE("transfer: an invalid transfer is rejected with a clear error, no change and no event",
          "[app][transfer]") {
    bank b;
    struct invalid_case {
        const char* label;
        transfer::transfer_request req;
        reason why;
        const char* message_part;
    };
    const invalid_case cases[] = {
        {"negative amount", request("k-neg", -5), reason::non_positive_amount, "-5 cents"},
        {"zero amount", request("k-zero", 0), reason::non_positive_amount, "must be positive"},
        {"same wallet", request("k-same", 10, "w-alice", "w-alice"), reason::same_wallet,
         "'w-alice'"},
        {"insufficient funds", request("k-poor", 600, "w-bob", "w-alice", "bob"),
         reason::insufficient_funds, "holds 500 cents; the transfer needs 600"},
        {"unknown from wallet", request("k-nofrom", 10, "w-carol", "w-bob", "carol"),
         reason::unknown_wallet, "no wallet 'w-carol' (from)"},
        {"unknown to wallet", request("k-noto", 10, "w-alice", "w-nobody"), reason::unknown_wallet,
         "no wallet 'w-nobody' (to)"},
        {"someone else's wallet", request("k-theft", 10, "w-bob", "w-alice", "alice"),
         reason::not_wallet_owner, "does not belong to user 'alice'"},
        {"empty idempotency key", request("", 10), reason::missing_field, "idempotency key"},
    };
    for (const auto& c : cases) {
        INFO(c.label);
        const auto r = b.service.transfer(c.req);
        CHECK(r.outcome == status::rejected);
        CHECK(r.why == c.why);
        CHECK_THAT(r.message, Catch::Contains(c.message_part));
        CHECK(r.transfer_id.empty());
    }
    CHECK(b.service.balance("w-alice") == 10'000);
    CHECK(b.service.balance("w-bob") == 500);
    CHECK(b.transfers() == 0);
    CHECK(b.events() == 0);
}

TEST_CASE("transfer: a repeated idempotency key moves no money twice and appends no event",
          "[app][transfer]") {
    bank b;
    const auto first = b.service.transfer(request("k-1", 300));
    REQUIRE(first.outcome == status::committed);
    REQUIRE(b.events() == 1);

    SECTION("the same request again is answered with the first transfer") {
        const auto again = b.service.transfer(request("k-1", 300));
        CHECK(again.outcome == status::already_applied);
        CHECK(again.transfer_id == first.transfer_id);
    }
    SECTION("a different request with the key is rejected and names the first transfer") {
        const auto other = b.service.transfer(request("k-1", 301));
        CHECK(other.outcome == status::rejected);
        CHECK(other.why == reason::idempotency_key_reused);
        CHECK_THAT(other.message, Catch::Contains(first.transfer_id) && Catch::Contains("'k-1'"));
    }
    CHECK(b.service.balance("w-alice") == 9'700);
    CHECK(b.service.balance("w-bob") == 800);
    CHECK(b.transfers() == 1);
    CHECK(b.events() == 1);
}

TEST_CASE("transfer: opening a wallet twice is harmless, with another owner an error",
          "[app][transfer]") {
    bank b;
    CHECK_FALSE(b.service.open_wallet("w-alice", "alice", 99));
    CHECK(b.service.balance("w-alice") == 10'000);
    CHECK_THROWS_WITH(b.service.open_wallet("w-alice", "mallory", 1),
                      Catch::Contains("belongs to user 'alice', not 'mallory'"));
    CHECK_THROWS_WITH(b.service.open_wallet("w-x", "x", -1), Catch::Contains("negative balance"));
    CHECK_FALSE(b.service.balance("w-x").has_value());
}

TEST_CASE("transfer: a database with newer transfer tables is refused, naming both versions",
          "[app][transfer]") {
    payments_test::scratch_dir dir("transfer-schema");
    const auto path = dir.file("bank.db");
    {
        evbus::sqlite_store store(path);
        (void)transfer::wire(store);
        evbus::unit_of_work<contract::events> uow(store);
        uow.sql().exec("UPDATE payments_schema SET version = 7 WHERE module = 'transfer'");
        uow.commit();
    }
    evbus::sqlite_store store(path);
    CHECK_THROWS_MATCHES(transfer::wire(store), contract::module_schema_error,
                         Catch::Message("the database's tables for module 'transfer' are at "
                                        "schema version 7, newer than this build knows (1); "
                                        "use a newer build of the program or another database"));
}
