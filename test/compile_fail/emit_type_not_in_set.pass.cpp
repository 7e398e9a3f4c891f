// Compile-fail case emit_type_not_in_set:
// emitting a payload type that is not in the bus's event set.
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
struct order_cancelled {
    static constexpr std::string_view event_name = "shop.orderCancelled";
    int order = 0;
};
using events = evbus::event_set<order_placed, order_shipped>;

}  // namespace cf_ns

int main() {
    evbus::bus<cf_ns::events> bus;
    bus.emit(cf_ns::order_shipped{7});  // case line
    return 0;
}
