// Compile-fail case final_handler_class:
// a final handler class with several operator() (its overloads cannot be checked for
// ambiguity, which derives from the class).
// The .fail.cpp and .pass.cpp files of a case differ only in the line marked "case line";
// CTest checks that the control builds and that the failing file stops with evbus's message.
#include <evbus/bus.hpp>

#include <string_view>

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

struct stats_handler {  // case line
    int* counted;
    void operator()(const order_placed&) const { ++*counted; }
    void operator()(const order_shipped&) const { ++*counted; }
};

}  // namespace cf_ns

int main() {
    evbus::bus<cf_ns::events> bus;
    int counted = 0;
    auto sub = bus.subscribe("shop.stats", cf_ns::stats_handler{&counted});
    return counted;
}
