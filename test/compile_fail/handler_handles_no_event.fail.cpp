// Compile-fail case handler_handles_no_event:
// a struct handler whose overloads all take events of another set.
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
struct user_created {
    static constexpr std::string_view event_name = "users.userCreated";
    int user = 0;
};
struct user_deleted {
    static constexpr std::string_view event_name = "users.userDeleted";
    int user = 0;
};
using events = evbus::event_set<order_placed, order_shipped>;

struct user_handlers {
    void operator()(const user_created&) const {}
    void operator()(const user_deleted&) const {}  // case line
};

}  // namespace cf_ns

int main() {
    evbus::bus<cf_ns::events> bus;
    auto sub = bus.subscribe("users.audit", cf_ns::user_handlers{});
    return 0;
}
