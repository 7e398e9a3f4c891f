// Compile-fail case bus_over_plain_variant:
// a bus instantiated with a std::variant instead of an evbus::event_set.
// The .fail.cpp and .pass.cpp files of a case differ only in the line marked "case line";
// CTest checks that the control builds and that the failing file stops with evbus's message.
#include <evbus/bus.hpp>

#include <string_view>
#include <variant>

namespace cf_ns {

struct order_placed {
    static constexpr std::string_view event_name = "shop.orderPlaced";
    int order = 0;
};
struct order_shipped {
    static constexpr std::string_view event_name = "shop.orderShipped";
    int order = 0;
};
using events = std::variant<order_placed, order_shipped>;  // case line

}  // namespace cf_ns

int main() {
    evbus::bus<cf_ns::events> bus;
    return 0;
}
