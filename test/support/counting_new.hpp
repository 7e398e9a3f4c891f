// Counts global allocations, so a test can prove a path allocates nothing, and fails one on
// request, so a test can prove a path survives that. Link
// counting_new.cpp into the test executable: it replaces every non-aligned global operator
// new/delete for the whole executable.
#pragma once

#include <cstddef>

namespace evbus_test {

/// Global allocations made so far by any thread. Relaxed: a statistic read after joins or
/// latches that already order the work being counted.
std::size_t allocation_count() noexcept;

/// Makes the next global allocation on the calling thread fail with std::bad_alloc (once),
/// as running out of memory at that point would.
void fail_next_allocation_here() noexcept;
/// Disarms fail_next_allocation_here(); true when it was still armed, i.e. nothing on this
/// thread allocated since.
bool disarm_allocation_failure() noexcept;

}  // namespace evbus_test
