#include "counting_new.hpp"

#include <atomic>
#include <cstdlib>
#include <new>
#include <utility>

namespace {
std::atomic<std::size_t> allocations{0};
thread_local bool fail_next = false;

// Whether this allocation is the one to fail (and disarms it).
bool failing() noexcept {
    if (!fail_next) return false;
    fail_next = false;
    return true;
}

void* counted_alloc(std::size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);  // a count, no ordering needed
    if (failing()) throw std::bad_alloc();
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    throw std::bad_alloc();
}
}  // namespace

std::size_t evbus_test::allocation_count() noexcept {
    return allocations.load(std::memory_order_relaxed);  // see the header
}

void evbus_test::fail_next_allocation_here() noexcept {
    fail_next = true;
}

bool evbus_test::disarm_allocation_failure() noexcept {
    return std::exchange(fail_next, false);
}

// Every non-aligned form is replaced so new and delete stay paired under the sanitizers;
// GCC cannot see that malloc and free are this file's own pairing, hence the pragma.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
    return counted_alloc(n);
}
void* operator new[](std::size_t n) {
    return counted_alloc(n);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    allocations.fetch_add(1, std::memory_order_relaxed);  // as in counted_alloc
    return failing() ? nullptr : std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n, const std::nothrow_t& tag) noexcept {
    return operator new(n, tag);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
#pragma GCC diagnostic pop
