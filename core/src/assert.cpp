#include <evbus/assert.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace evbus {
namespace {

void default_handler(const char* expr, const char* msg, const char* file, int line) {
    std::fprintf(stderr, "%s:%d: evbus assertion `%s` failed: %s\n", file, line, expr, msg);
    std::fflush(stderr);
}

std::atomic<assert_handler> g_handler{&default_handler};

}  // namespace

assert_handler set_assert_handler(assert_handler handler) noexcept {
    return g_handler.exchange(handler != nullptr ? handler : &default_handler);
}

namespace detail {

void assert_failed(const char* expr, const char* msg, const char* file, int line) {
    g_handler.load()(expr, msg, file, line);
    std::abort();
}

}  // namespace detail
}  // namespace evbus
