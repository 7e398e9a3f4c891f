// evbus/detail/dispatch_context.hpp — the event a thread is handling right now.
//
// While a handler runs, its thread has a dispatch_frame naming the event's metadata and the
// subscription. Emitting from inside a handler reads it to propagate correlation, causation,
// and trace id; unsubscribing reads it to avoid waiting for its own caller.
//
// Thread-safety: frames are thread-local; nothing here is shared between threads.
#pragma once

#include <cstdint>
#include <string_view>

#include <evbus/metadata.hpp>

namespace evbus::detail {

struct subscription_state;

struct dispatch_frame {
    const metadata* meta;
    const subscription_state* sub;
    dispatch_frame* prev;
};

/// The innermost frame of this thread, or nullptr outside handlers.
dispatch_frame* current_frame() noexcept;

class frame_guard {
public:
    frame_guard(const metadata& meta, const subscription_state* sub) noexcept;
    frame_guard(const frame_guard&) = delete;
    frame_guard& operator=(const frame_guard&) = delete;
    ~frame_guard();

private:
    dispatch_frame frame_;
};

/// How many frames of this thread are calls of `sub`.
std::uint32_t frames_of(const subscription_state* sub) noexcept;

/// Fills what the caller left empty: id, time, name, version, and — inside a handler — the
/// correlation id, causation id and trace id of the handled event.
void stamp(metadata& meta, std::string_view name, std::uint32_t version) noexcept;

}  // namespace evbus::detail
