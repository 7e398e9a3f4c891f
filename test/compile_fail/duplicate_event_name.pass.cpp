// Compile-fail case duplicate_event_name:
// two payload types in one set that declare the same event name.
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
struct order_placed_v2 {
    static constexpr std::string_view event_name = "shop.orderPlaced.v2";  // case line
    int order = 0;
    int customer = 0;
};
using events = evbus::event_set<order_placed, order_shipped, order_placed_v2>;

}  // namespace cf_ns

int main() {
    evbus::bus<cf_ns::events> bus;
    return 0;
}
