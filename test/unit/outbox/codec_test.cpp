#include <evbus/codec.hpp>
#include <evbus/memory_store.hpp>
#include <evbus/unit_of_work.hpp>

#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "outbox_events.hpp"

using namespace outbox_test;
using codec = evbus::payload_codec<events>;

namespace codec_test {

enum class tier : std::uint8_t { basic, gold };

struct leg {
    std::int64_t cents = 0;
    double share = 0;
};
EVBUS_DESCRIBE(leg, cents, share)

// One field of each kind the strict decoding covers.
struct order_placed {
    static constexpr std::string_view event_name = "shop.orderPlaced";
    std::int64_t cents = 0;
    std::uint32_t count = 0;
    double ratio = 0;
    float weight = 0;
    bool gift = false;
    tier level = tier::basic;
    leg first;
    std::vector<leg> legs;
    std::vector<std::int32_t> codes;
    std::map<std::string, std::int64_t> totals;
};
EVBUS_DESCRIBE(order_placed, cents, count, ratio, weight, gift, level, first, legs, codes, totals)

using order_codec = evbus::payload_codec<evbus::event_set<order_placed>>;

// Values nlohmann-json reads from fixed-length arrays.
struct tiers_set {
    static constexpr std::string_view event_name = "shop.tiersSet";
    std::pair<std::int32_t, std::uint32_t> range;
    std::tuple<std::uint8_t, leg> band;
    std::map<std::int32_t, std::uint32_t> limits;  // written as [[key, value], ...]
};
EVBUS_DESCRIBE(tiers_set, range, band, limits)

namespace {

// A valid order payload with the value at `pointer` replaced by the JSON text `value`.
std::string order_with(const std::string& pointer, const std::string& value) {
    auto j = nlohmann::json::parse(R"({"cents":1,"count":1,"ratio":0.5,"weight":1,"gift":false,
        "level":0,"first":{"cents":1,"share":1},"legs":[{"cents":1,"share":1},{"cents":2,
        "share":1}],"codes":[7],"totals":{"usd":1}})");
    j[nlohmann::json::json_pointer(pointer)] = nlohmann::json::parse(value);
    return j.dump();
}

// The error text decoding that payload gives, or "decoded" when it decodes.
std::string order_error(const std::string& pointer, const std::string& value) {
    const auto r = order_codec::decode("shop.orderPlaced", 1, order_with(pointer, value));
    return r.index() == 1 ? std::get<1>(r) : "decoded";
}

}  // namespace

}  // namespace codec_test

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
    SECTION("old payload its upcast refuses") {
        const auto r = codec::decode("transfer.moneyTransferred", 1, R"({"cents":-5,"user":"x"})");
        REQUIRE(r.index() == 1);
        CHECK(std::get<1>(r) ==
              "reading 'transfer.moneyTransferred' version 1 and upcasting it to version 2 "
              "threw: a version 1 transfer of -5 cents");
    }
}

TEST_CASE("codec: an integer field takes only a JSON integer in its type's range",
          "[outbox][codec]") {
    using codec_test::order_error;
    const std::string bad = "corrupt payload for 'shop.orderPlaced' version 1: field ";
    const std::string int64 =
        "; expected an integer from -9223372036854775808 to "
        "9223372036854775807";
    CHECK(order_error("/cents", "12.99") == bad + "'cents' holds 12.99" + int64);
    CHECK(order_error("/cents", "1e30") == bad + "'cents' holds 1e+30" + int64);
    CHECK(order_error("/cents", "18446744073709551615") ==
          bad + "'cents' holds 18446744073709551615" + int64);
    CHECK(order_error("/cents", R"("12")") == bad + "'cents' holds a string" + int64);
    const std::string uint32 = "; expected an integer from 0 to 4294967295";
    CHECK(order_error("/count", "-1") == bad + "'count' holds -1" + uint32);
    CHECK(order_error("/count", "4294967297") == bad + "'count' holds 4294967297" + uint32);
    CHECK(order_error("/count", "null") == bad + "'count' holds null" + uint32);
    CHECK(order_error("/level", "256") ==
          bad + "'level' holds 256; expected an integer from 0 to 255");
}

TEST_CASE("codec: nested fields are checked too and named by their path", "[outbox][codec]") {
    using codec_test::order_error;
    const std::string bad = "corrupt payload for 'shop.orderPlaced' version 1: field ";
    CHECK(order_error("/first/cents", "0.5") ==
          bad +
              "'first.cents' holds 0.5; expected an integer from -9223372036854775808 to "
              "9223372036854775807");
    CHECK(order_error("/legs/1/cents", "2.5") ==
          bad +
              "'legs[1].cents' holds 2.5; expected an integer from -9223372036854775808 to "
              "9223372036854775807");
    CHECK(order_error("/codes/0", "3000000000") ==
          bad +
              "'codes[0]' holds 3000000000; expected an integer from -2147483648 to "
              "2147483647");
    CHECK(order_error("/totals/usd", "1.5") ==
          bad +
              "'totals.usd' holds 1.5; expected an integer from -9223372036854775808 to "
              "9223372036854775807");
}

TEST_CASE("codec: pairs, tuples and maps with non-string keys are checked too", "[outbox][codec]") {
    using tiers_codec = evbus::payload_codec<evbus::event_set<codec_test::tiers_set>>;
    const auto error = [](const std::string& pointer, const std::string& value) {
        auto j = nlohmann::json::parse(
            R"({"range":[1,2],"band":[3,{"cents":1,"share":1}],"limits":[[1,2]]})");
        j[nlohmann::json::json_pointer(pointer)] = nlohmann::json::parse(value);
        const auto r = tiers_codec::decode("shop.tiersSet", 1, j.dump());
        return r.index() == 1 ? std::get<1>(r) : std::string("decoded");
    };
    CHECK(error("/range/0", "1") == "decoded");
    const std::string bad = "corrupt payload for 'shop.tiersSet' version 1: field ";
    CHECK(error("/range/1", "4294967296") ==
          bad + "'range[1]' holds 4294967296; expected an integer from 0 to 4294967295");
    CHECK(error("/range/0", "12.99") ==
          bad + "'range[0]' holds 12.99; expected an integer from -2147483648 to 2147483647");
    CHECK(error("/band/0", "300") ==
          bad + "'band[0]' holds 300; expected an integer from 0 to 255");
    CHECK(error("/band/1/cents", "0.5") ==
          bad +
              "'band[1].cents' holds 0.5; expected an integer from -9223372036854775808 to "
              "9223372036854775807");
    CHECK(error("/limits/0/1", "-1") ==
          bad + "'limits[0][1]' holds -1; expected an integer from 0 to 4294967295");
    CHECK(error("/limits/0/0", "2147483648") ==
          bad +
              "'limits[0][0]' holds 2147483648; expected an integer from -2147483648 to "
              "2147483647");
}

TEST_CASE("codec: a floating field takes any number that fits, a bool field only a boolean",
          "[outbox][codec]") {
    using codec_test::order_error;
    const std::string bad = "corrupt payload for 'shop.orderPlaced' version 1: field ";
    CHECK(order_error("/ratio", R"("0.5")") == bad + "'ratio' holds a string; expected a number");
    CHECK(order_error("/legs/0/share", "[1]") ==
          bad + "'legs[0].share' holds an array; expected a number");
    CHECK(order_error("/weight", "1e300") ==
          bad +
              "'weight' holds 1e+300; expected a number from -3.4028234663852886e+38 to "
              "3.4028234663852886e+38");
    CHECK(order_error("/gift", "1") == bad + "'gift' holds 1; expected true or false");
}

TEST_CASE("codec: encoding a NaN or an infinity throws, naming the event and the field",
          "[outbox][codec]") {
    using codec_test::order_codec;
    using codec_test::order_placed;
    const std::string cannot = "evbus: cannot encode 'shop.orderPlaced': field ";
    const std::string fix = " and JSON has no NaN or infinity; store a finite number";
    order_placed e;
    e.ratio = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_WITH(order_codec::encode(e), cannot + "'ratio' is NaN" + fix);
    e.ratio = -std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH(order_codec::encode(e), cannot + "'ratio' is -infinity" + fix);
    e.ratio = 0;
    e.legs = {{1, 0.5}, {2, std::numeric_limits<double>::infinity()}};
    CHECK_THROWS_AS(order_codec::encode(e), std::invalid_argument);
    CHECK_THROWS_WITH(order_codec::encode(e), cannot + "'legs[1].share' is infinity" + fix);
}

TEST_CASE("codec: an event with a NaN fails append and is never stored", "[outbox][codec]") {
    using codec_test::order_placed;
    evbus::memory_store store;
    evbus::unit_of_work<evbus::event_set<order_placed>> tx(store);
    tx.append(order_placed{});
    order_placed nan;
    nan.ratio = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(tx.append(nan), std::invalid_argument);
    tx.commit();
    CHECK(store.claim(10).size() == 1);
}
