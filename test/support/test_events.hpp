// Test payloads shared by the unit tests: a small event set in the style of the example app.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <evbus/event_set.hpp>

namespace evbus_test {

struct deposited {
    static constexpr std::string_view event_name = "test.deposited";
    static constexpr std::uint32_t event_version = 2;
    std::string user;
    std::int64_t cents = 0;
    [[nodiscard]] std::string_view event_key() const { return user; }
};

struct withdrawn {
    static constexpr std::string_view event_name = "test.withdrawn";
    std::string user;
    std::int64_t cents = 0;
    [[nodiscard]] std::string_view event_key() const { return user; }
};

struct audited {
    static constexpr std::string_view event_name = "test.audited";
    std::uint64_t account = 0;
    [[nodiscard]] std::uint64_t event_key() const { return account; }
};

struct pinged {
    static constexpr std::string_view event_name = "test.pinged";
    int n = 0;
};

using events = evbus::event_set<deposited, withdrawn, audited, pinged>;

}  // namespace evbus_test
