// Counts global allocations, so a test can prove a path allocates nothing. Link
// counting_new.cpp into the test executable: it replaces every non-aligned global operator
// new/delete for the whole executable.
#pragma once

#include <cstddef>

namespace evbus_test {

/// Global allocations made so far by any thread. Relaxed: a statistic read after joins or
/// latches that already order the work being counted.
std::size_t allocation_count() noexcept;

}  // namespace evbus_test
