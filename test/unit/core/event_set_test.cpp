#include <evbus/event_set.hpp>
#include <evbus/metadata.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>

#include "test_events.hpp"

using evbus_test::events;

TEST_CASE("event_set: types map to their alternative index and back", "[core][event_set]") {
    STATIC_REQUIRE(events::size == 4);
    STATIC_REQUIRE(events::index_of<evbus_test::deposited> == 0);
    STATIC_REQUIRE(events::index_of<evbus_test::pinged> == 3);
    STATIC_REQUIRE(std::is_same_v<events::type_at<1>, evbus_test::withdrawn>);
    STATIC_REQUIRE(events::contains<const evbus_test::audited&>);
    STATIC_REQUIRE_FALSE(events::contains<int>);
}

TEST_CASE("event_set: names and versions are listed per alternative", "[core][event_set]") {
    CHECK(events::names[0] == "test.deposited");
    CHECK(events::versions[0] == 2);
    CHECK(events::versions[1] == 1);  // no event_version declared: 1
    CHECK(events::index_of_name("test.audited") == std::optional<std::size_t>{2});
    CHECK_FALSE(events::index_of_name("test.unknown").has_value());
}

TEST_CASE("event_set: key functions give text or integer keys", "[core][event_set]") {
    evbus::event_key key;
    evbus::key_from_payload(evbus_test::deposited{"alice", 5}, key);
    CHECK(key == "alice");
    evbus::key_from_payload(evbus_test::audited{18446744073709551615ULL}, key);
    CHECK(key == "18446744073709551615");
    evbus::event_key untouched("kept");
    evbus::key_from_payload(evbus_test::pinged{1}, untouched);
    CHECK(untouched == "kept");
}

namespace {

struct by_reference {
    static constexpr std::string_view event_name = "test.byReference";
    std::int64_t id = 0;
    [[nodiscard]] const std::int64_t& event_key() const { return id; }
};
struct non_const_key {
    std::string k;
    std::string_view event_key() { return k; }
};
struct enum_key {
    enum class region { north, south };
    region r = region::north;
    [[nodiscard]] region event_key() const { return r; }
};
__extension__ typedef __int128 int128;  // a GNU extension; -Wpedantic flags it otherwise
struct wide_key {
    [[nodiscard]] int128 event_key() const { return 0; }
};
struct bool_key {
    [[nodiscard]] bool event_key() const { return true; }
};
struct data_member_key {
    std::string event_key;
};

}  // namespace

TEST_CASE("event_set: an event_key that is no key function is told apart from none",
          "[core][event_set]") {
    evbus::event_key key;
    evbus::key_from_payload(by_reference{-9223372036854775807LL - 1}, key);
    CHECK(key == "-9223372036854775808");  // an integer returned by reference is a key too
    // Each of these declares an event_key evbus cannot use: event_set refuses them
    // (test/compile_fail/key_function_not_const) instead of dropping their keys.
    STATIC_REQUIRE(evbus::detail::declares_event_key<non_const_key>);
    STATIC_REQUIRE_FALSE(evbus::keyed_payload<non_const_key>);
    STATIC_REQUIRE(evbus::detail::declares_event_key<enum_key>);
    STATIC_REQUIRE_FALSE(evbus::keyed_payload<enum_key>);
    STATIC_REQUIRE_FALSE(evbus::keyed_payload<wide_key>);
    STATIC_REQUIRE_FALSE(evbus::keyed_payload<bool_key>);
    STATIC_REQUIRE(evbus::detail::declares_event_key<data_member_key>);
    STATIC_REQUIRE_FALSE(evbus::keyed_payload<data_member_key>);
    STATIC_REQUIRE_FALSE(evbus::detail::declares_event_key<evbus_test::pinged>);
}

TEST_CASE("metadata: a key longer than the limit is an error naming it", "[core][metadata]") {
    const std::string long_key(64, 'k');
    CHECK_THROWS_WITH(evbus::metadata::with_key(long_key),
                      Catch::Contains("event key '" + long_key + "' is 64 bytes") &&
                          Catch::Contains("limit is 63"));
    CHECK(evbus::metadata::with_key(std::string(63, 'k')).key.size() == 63);
}

TEST_CASE("metadata: inline strings compare by their text only, a failed assign keeps it",
          "[core][metadata]") {
    evbus::metadata a;
    CHECK(a.key.empty());
    CHECK(a.key.view().empty());
    a.key.assign("a-rather-long-key-that-fills-bytes");
    a.key.assign("short");  // the old bytes past size() stay, and must not count
    evbus::metadata b;
    b.key.assign("short");
    CHECK(a.key == b.key);
    const evbus::metadata copy = a;  // copies only what the value is: equal again
    CHECK(copy.key == "short");
    CHECK_THROWS_WITH(b.key.assign(std::string(64, 'x')), Catch::Contains("limit is 63"));
    CHECK(b.key == "short");
}

TEST_CASE("metadata: a field too long is named however it was set", "[core][metadata]") {
    evbus::metadata m;
    const std::string long_key(64, 'k');
    CHECK_THROWS_WITH(
        m.key = std::string_view(long_key),
        Catch::StartsWith("evbus: event key '" + long_key + "' is 64 bytes; the limit is 63"));
    CHECK_THROWS_WITH(m.key.assign(long_key), Catch::StartsWith("evbus: event key '"));
    const std::string long_source(32, 's');
    CHECK_THROWS_WITH(
        m.source = long_source.c_str(),
        Catch::StartsWith("evbus: source '" + long_source + "' is 32 bytes; the limit is 31"));
    CHECK(m.key.empty());
    CHECK(m.source.empty());
}
