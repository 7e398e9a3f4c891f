// Compile-fail case key_function_not_const:
// a payload whose event_key() is not const, which evbus cannot call on a const event (its
// events would otherwise lose their key, and with it their order, without a word).
// The .fail.cpp and .pass.cpp files of a case differ only in the line marked "case line";
// CTest checks that the control builds and that the failing file stops with evbus's message.
#include <evbus/bus.hpp>

#include <string>
#include <string_view>

namespace cf_ns {

struct order_placed {
    static constexpr std::string_view event_name = "shop.orderPlaced";
    std::string user_id;
    std::string_view event_key() const { return user_id; }  // case line
};
using events = evbus::event_set<order_placed>;

}  // namespace cf_ns

int main() {
    evbus::bus<cf_ns::events> bus;
    return 0;
}
