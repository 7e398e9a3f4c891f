// Compile-fail case old_version_without_upcast:
// an old payload version with no upcast to a later version.
// The .fail.cpp and .pass.cpp files of a case differ only in the line marked "case line";
// CTest checks that the control builds and that the failing file stops with evbus's message.
#include <evbus/codec.hpp>
#include <evbus/event_set.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace cf_ns {

struct money_sent_v1 {
    static constexpr std::string_view event_name = "pay.moneySent";
    static constexpr std::uint32_t event_version = 1;
    long cents = 0;
};
EVBUS_DESCRIBE(money_sent_v1, cents)

struct money_sent {
    static constexpr std::string_view event_name = "pay.moneySent";
    static constexpr std::uint32_t event_version = 2;
    using previous_versions = evbus::versions<money_sent_v1>;
    long cents = 0;
    std::string currency;
};
EVBUS_DESCRIBE(money_sent, cents, currency)

money_sent upcast(const money_sent_v1& old);  // case line

using events = evbus::event_set<money_sent>;

}  // namespace cf_ns

int main() {
    return sizeof(evbus::payload_codec<cf_ns::events>) > 0 ? 0 : 1;
}
