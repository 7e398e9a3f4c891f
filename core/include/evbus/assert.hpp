// evbus/assert.hpp — precondition checks with a replaceable handler.
//
// EVBUS_ASSERT(cond, msg) guards programming errors (a precondition a caller broke). A failed
// check calls the installed handler; the default prints the message and aborts. Tests install
// a handler that throws, so preconditions are testable without death tests. A handler that
// returns normally is treated like the default: the process aborts.
//
// Thread-safety: set_assert_handler() is thread-safe; the handler runs on the failing thread.
#pragma once

namespace evbus {

/// Called with the failed expression, the message and the source location.
using assert_handler = void (*)(const char* expr, const char* msg, const char* file, int line);

/// Installs `handler` (nullptr restores the default) and returns the previous one. Thread-safe.
assert_handler set_assert_handler(assert_handler handler) noexcept;

namespace detail {
[[noreturn]] void assert_failed(const char* expr, const char* msg, const char* file, int line);
}  // namespace detail

}  // namespace evbus

#define EVBUS_ASSERT(cond, msg) \
    ((cond) ? static_cast<void>(0) : ::evbus::detail::assert_failed(#cond, msg, __FILE__, __LINE__))
