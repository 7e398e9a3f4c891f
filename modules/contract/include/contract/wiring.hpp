// contract/wiring.hpp — what the composition root hands each module's wire() function.
//
// A module subscribes its handlers through the dispatcher (transactional: its writes and the
// delivery's completion commit together) or through the bus (at least once), and keeps its
// tables in the store. It gets nothing else: no other module, no engine internals.
//
// Thread-safety: the referenced objects are thread-safe; the wiring itself is a plain view
// that must not outlive them.
#pragma once

#include <functional>
#include <string_view>

#include <contract/events.hpp>
#include <evbus/bus.hpp>
#include <evbus/outbox_dispatcher.hpp>
#include <evbus/store.hpp>

namespace payments::contract {

using bus = evbus::bus<events>;
using dispatcher = evbus::outbox_dispatcher<events>;
using unit_of_work = evbus::unit_of_work<events>;

/// Called by a module's handler before it does its work, with the subscription's name. The
/// composition root uses it to inject faults (throw to fail the attempt, sleep to be slow);
/// null means no probe. Must be thread-safe.
using handler_probe = std::function<void(std::string_view subscription)>;

struct wiring {
    bus& events;
    dispatcher& delivery;
    evbus::event_store& store;
    handler_probe probe;
};

}  // namespace payments::contract
