// Compile-fail case payload_throwing_move:
// a payload whose move constructor may throw.
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
    static constexpr std::string_view event_name = "shop.orderReturned";
    order_returned() = default;
    order_returned(const order_returned&) = default;
    order_returned(order_returned&& other) noexcept : order(other.order) {}  // case line
    order_returned& operator=(const order_returned&) = default;
    order_returned& operator=(order_returned&&) = default;
    ~order_returned() = default;
    int order = 0;
};
using events = evbus::event_set<order_placed, order_shipped, order_returned>;

}  // namespace cf_ns

int main() {
    evbus::bus<cf_ns::events> bus;
    return 0;
}
