// evbus/detail/cycle_clock.hpp — a cheap clock for handler durations.
//
// The worker times every handler call (the latency histogram, the next call's start). A
// steady_clock read is a vDSO call of about 36 ns on the 2-vCPU VM this was measured on,
// about 30% of the worker's time per event with a trivial handler (without it a backlog
// drained at 11.5 M/s instead of 8.1); the CPU's time-stamp counter costs about 15 ns
// there. Where the counter ticks at a constant rate that does not stop in idle states
// (x86-64 CPUID 0x80000007 EDX bit 8, "invariant TSC"), cycle_clock reads it and converts
// ticks to nanoseconds with a rate measured once per process against steady_clock;
// elsewhere it reads steady_clock itself.
//
// Only durations come from it, and only short ones: the worker reads steady_clock again
// after any call longer than resync_after or with a timeout, and at every batch and idle
// look (shard_runtime::restart_clock), so a conversion error never accumulates past one
// batch of short calls.
//
// Thread-safety: calibrated() is thread-safe (its first caller measures, the others wait
// for it); a cycle_clock is an immutable value.
#pragma once

#include <chrono>
#include <cstdint>

namespace evbus::detail {

class cycle_clock {
public:
    /// Calls longer than this are timed with steady_clock (see the banner).
    static constexpr std::chrono::microseconds resync_after{100};
    /// How long calibrated() compares the counter with steady_clock.
    static constexpr std::chrono::milliseconds calibration_time{2};

    /// A clock that reads steady_clock (no counter).
    cycle_clock() noexcept = default;

    /// The process's clock: the counter where it is usable, with its rate measured on the
    /// first call (which blocks about calibration_time; later calls return at once).
    [[nodiscard]] static cycle_clock calibrated() noexcept;

    /// Reads the counter, or steady_clock's nanoseconds.
    [[nodiscard]] std::uint64_t now() const noexcept {
#if defined(__x86_64__)
        if (counter_) return __builtin_ia32_rdtsc();
#endif
        return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                              std::chrono::steady_clock::now().time_since_epoch())
                                              .count());
    }

    /// The time between two now() readings; zero if `to` is not after `from` (a counter
    /// read on another core that is behind).
    [[nodiscard]] std::chrono::nanoseconds between(std::uint64_t from,
                                                   std::uint64_t to) const noexcept {
        if (to <= from) return std::chrono::nanoseconds{0};
        return std::chrono::nanoseconds{
            static_cast<std::int64_t>(static_cast<double>(to - from) * ns_per_tick_)};
    }

    /// Whether now() reads the time-stamp counter.
    [[nodiscard]] bool uses_counter() const noexcept {
        return counter_;
    }

private:
    bool counter_ = false;
    double ns_per_tick_ = 1.0;
};

}  // namespace evbus::detail
