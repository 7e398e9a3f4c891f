// evbus/detail/thread_name.hpp — names the threads evbus starts, for top, gdb and perf.
//
// Names: "evbus-shard-<i>" (a shard's worker), "evbus-watchdog", "evbus-outbox" (the outbox
// dispatcher's thread). Linux keeps at most 15 characters; a longer name is cut there.
#pragma once

namespace evbus::detail {

/// Names the calling thread; does nothing where the platform has no thread names, and
/// ignores a refusal (a name is a debugging aid, never a reason to fail).
void name_this_thread(const char* name) noexcept;

}  // namespace evbus::detail
