// evbus_consumer — subscribes, emits, and fails unless the handlers saw the events with the
// metadata the bus stamps. Built by ctest against the installed package and as a subproject.
#include <cstdint>
#include <cstdio>
#include <string_view>

#include <evbus/bus.hpp>

namespace shop {

struct order_placed {
    static constexpr std::string_view event_name = "shop.orderPlaced";
    int order = 0;
};
struct order_shipped {
    static constexpr std::string_view event_name = "shop.orderShipped";
    static constexpr std::uint32_t event_version = 2;
    int order = 0;
};

using events = evbus::event_set<order_placed, order_shipped>;

}  // namespace shop

int main() {
    evbus::bus<shop::events> bus;
    int placed = 0;
    int shipped = 0;
    std::uint32_t shipped_version = 0;
    auto sub =
        bus.subscribe("consumer.counter",
                      evbus::overload([&placed](const shop::order_placed& e) { placed += e.order; },
                                      [&](const shop::order_shipped&, const evbus::metadata& m) {
                                          ++shipped;
                                          shipped_version = m.schema_version;
                                      }));

    bus.emit(shop::order_placed{40});
    bus.emit(shop::order_placed{2});
    bus.emit(shop::events::variant_type{shop::order_shipped{7}});

    if (placed != 42 || shipped != 1 || shipped_version != 2) {
        std::fprintf(stderr, "evbus consumer: FAILED (placed %d, shipped %d, version %u)\n", placed,
                     shipped, static_cast<unsigned>(shipped_version));
        return 1;
    }
    std::printf("evbus consumer: ok\n");
    return 0;
}
