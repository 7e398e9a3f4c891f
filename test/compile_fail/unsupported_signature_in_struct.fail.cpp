// Compile-fail case unsupported_signature_in_struct:
// a struct with several operator(), one of them taking the metadata by non-const reference.
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
using events = evbus::event_set<order_placed, order_shipped>;

struct order_audit {
    void operator()(const order_placed&) const {}
    void operator()(const order_shipped&, evbus::metadata&) const {}  // case line
};

}  // namespace cf_ns

int main() {
    evbus::bus<cf_ns::events> bus;
    auto sub = bus.subscribe("shop.audit", cf_ns::order_audit{});
    return 0;
}
