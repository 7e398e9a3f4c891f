// evbus_consumer — subscribes, emits, and fails unless the handlers saw the events with the
// metadata the bus stamps; then stores an event through the outbox in a SQLite file under the
// directory given as its argument and reads it back. Built by ctest against the installed
// package and as a subproject (which also links evbus into a shared library, plugin.cpp).
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <variant>

#include <evbus/bus.hpp>
#include <evbus/codec.hpp>
#include <evbus/outbox_dispatcher.hpp>
#include <evbus/sqlite_store.hpp>
#include <evbus/unit_of_work.hpp>

#ifdef EVBUS_CONSUMER_PLUGIN
int plugin_events_seen();  // plugin.cpp, in a shared library
#endif

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

EVBUS_DESCRIBE(order_placed, order)
using stored_events = evbus::event_set<order_placed>;

}  // namespace shop

namespace {

// The outbox round trip, with the options spelled as C++20 designated initializers (under the
// consumer's -Wextra, every field left out must have a default).
bool outbox_round_trip(const std::filesystem::path& dir) {
    const auto path = dir / "consumer.db";
    for (const char* suffix : {"", "-wal", "-shm"}) {
        std::filesystem::remove(path.string() + suffix);
    }
    evbus::sqlite_store store(path.string(), {.sync = evbus::sync_mode::normal});
    {
        evbus::unit_of_work<shop::stored_events> tx(store);
        tx.append(shop::order_placed{5}, evbus::metadata{.key = "customer-1"});
        tx.commit();
    }
    const auto rows = store.claim(10);
    if (rows.size() != 1 || rows[0].key != "customer-1") return false;
    const auto decoded = evbus::payload_codec<shop::stored_events>::decode(
        rows[0].name, rows[0].version, rows[0].payload);
    if (decoded.index() != 0) return false;
    const auto& event = std::get<0>(decoded);
    [[maybe_unused]] const evbus::dispatcher_options options{.shards = 1};
    return std::get<shop::order_placed>(event).order == 5 &&
           store.dead_letters({.key = "customer-1"}).empty() &&
           store.history({.limit = 10}).empty();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: evbus_consumer <scratch directory>\n");
        return 2;
    }
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
    if (!outbox_round_trip(argv[1])) {
        std::fprintf(stderr, "evbus consumer: FAILED (the outbox round trip)\n");
        return 1;
    }
#ifdef EVBUS_CONSUMER_PLUGIN
    if (plugin_events_seen() != 1) {
        std::fprintf(stderr, "evbus consumer: FAILED (the shared library's bus)\n");
        return 1;
    }
#endif
    std::printf("evbus consumer: ok\n");
    return 0;
}
