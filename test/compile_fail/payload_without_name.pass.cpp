// Compile-fail case payload_without_name:
// a payload type that does not declare event_name.
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
struct order_returned {
    static constexpr std::string_view event_name = "shop.orderReturned";  // case line
    int order = 0;
};
using events = evbus::event_set<order_placed, order_shipped, order_returned>;

}  // namespace cf_ns

int main() {
    evbus::bus<cf_ns::events> bus;
    return 0;
}
