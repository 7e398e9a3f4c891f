#include <evbus/codec.hpp>

#include <string>
#include <variant>

#include <catch2/catch.hpp>

#include "outbox_events.hpp"

using namespace outbox_test;
using codec = evbus::payload_codec<events>;

TEST_CASE("codec: a payload survives encode and decode", "[outbox][codec]") {
    const std::string json = codec::encode(money_transferred{"alice", 250, "USD"});
    const auto result = codec::decode("transfer.moneyTransferred", 2, json);
    REQUIRE(result.index() == 0);
    const auto& event = std::get<money_transferred>(std::get<0>(result));
    CHECK(event.user_id == "alice");
    CHECK(event.cents == 250);
    CHECK(event.currency == "USD");
}

TEST_CASE("codec: a v1 payload decodes as the current version through its upcast",
          "[outbox][codec][versioning]") {
    const std::string v1 = codec::encode(money_transferred_v1{"bob", 99});
    CHECK(v1 == R"({"cents":99,"user":"bob"})");
    const auto result = codec::decode("transfer.moneyTransferred", 1, v1);
    REQUIRE(result.index() == 0);
    const auto& event = std::get<money_transferred>(std::get<0>(result));
    CHECK(event.user_id == "bob");
    CHECK(event.cents == 99);
    CHECK(event.currency == "EUR");
}

TEST_CASE("codec: bad rows give an error naming the cause", "[outbox][codec]") {
    SECTION("unknown event name") {
        const auto r = codec::decode("transfer.moneyBurned", 1, "{}");
        REQUIRE(r.index() == 1);
        CHECK(std::get<1>(r) == "unknown event name 'transfer.moneyBurned'");
    }
    SECTION("unknown version") {
        const auto r = codec::decode("transfer.moneyTransferred", 7, "{}");
        REQUIRE(r.index() == 1);
        CHECK(std::get<1>(r) ==
              "unknown version 7 of event 'transfer.moneyTransferred' (this build knows "
              "versions 1, 2)");
    }
    SECTION("payload that is not JSON") {
        const auto r = codec::decode("notification.receiptSent", 1, "{\"user_id\": tru");
        REQUIRE(r.index() == 1);
        CHECK_THAT(std::get<1>(r),
                   Catch::StartsWith("corrupt payload for 'notification.receiptSent' version 1: "
                                     "[json.exception.parse_error"));
    }
    SECTION("payload missing a field") {
        const auto r = codec::decode("notification.receiptSent", 1, R"({"user_id":"x"})");
        REQUIRE(r.index() == 1);
        CHECK_THAT(std::get<1>(r), Catch::Contains("key 'seq' not found"));
    }
}
