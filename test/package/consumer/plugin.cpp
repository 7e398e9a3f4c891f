// A shared library that links evbus: the add_subdirectory consumer builds evbus with
// CMAKE_POSITION_INDEPENDENT_CODE, as README.md tells users who do this.
#include <string_view>

#include <evbus/bus.hpp>

namespace plugin {

struct started {
    static constexpr std::string_view event_name = "plugin.started";
};
using events = evbus::event_set<started>;

}  // namespace plugin

int plugin_events_seen() {
    evbus::bus<plugin::events> bus;
    int seen = 0;
    auto sub = bus.subscribe("plugin.counter", [&seen](const plugin::started&) { ++seen; });
    bus.emit(plugin::started{});
    return seen;
}
