// evbus/metadata.hpp — what every event carries besides its payload.
//
// A caller fills what it knows (usually the key, sometimes a correlation id or a source) and
// the bus stamps the rest when the event is accepted: a fresh id, the time, the payload's
// schema version, and — when the event is emitted from inside a handler — the handled
// event's correlation and trace ids, with the handled event's id as causation id.
//
// Metadata is a fixed-size value (no heap member), so events travel without allocating.
// Thread-safety: a value type.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include <evbus/event_id.hpp>
#include <evbus/inline_string.hpp>

namespace evbus {

/// Ordering key: events with equal keys are handled in order. At most 63 bytes.
using event_key = inline_string<63, "event key">;
/// Name of the module that produced the event. At most 31 bytes.
using source_name = inline_string<31, "source">;

struct metadata {
    /// Unique, time-ordered; stamped on accept when nil, and also when it is the id of the
    /// event whose handler is emitting (its metadata passed on): then the handled event
    /// becomes the causation and the time is stamped afresh.
    event_id id{};
    event_id correlation_id{};  ///< the conversation; a root event's correlation id is its own id
    event_id causation_id{};    ///< the event whose handler emitted this one; nil for a root event
    event_id trace_id{};        ///< distributed-trace id; inherited like the correlation id
    event_key key{};            ///< ordering key; empty: taken from the payload's key function
    source_name source{};       ///< emitting module, as the emitter names it (may be empty)
    std::chrono::system_clock::time_point occurred_at{};  ///< stamped on accept when zero
    std::string_view event_name{};     ///< the payload's stable name (static storage); stamped
    std::uint32_t schema_version = 0;  ///< the payload's version; stamped on accept
    std::uint32_t attempt = 0;         ///< 1 for the first delivery, 2 for the first retry, ...

    /// Convenience for the common case: `bus.emit(e, evbus::metadata::with_key("user-7"))`.
    [[nodiscard]] static metadata with_key(std::string_view k) {
        metadata m;
        m.key = event_key(k);
        return m;
    }
};

}  // namespace evbus
