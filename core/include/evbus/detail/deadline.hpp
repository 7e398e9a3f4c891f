// evbus/detail/deadline.hpp — a point in time some user-given duration after another.
//
// Options take durations, and std::chrono::nanoseconds::max() is the natural way to say "no
// limit". `now + max()` overflows (undefined behaviour; in practice a time far in the past),
// and std::condition_variable::wait_for computes exactly that sum inside: a "no limit"
// timeout would then expire at once. Every deadline the library derives from an option goes
// through deadline_after(), which stops at time_point::max() instead, and waits use
// wait_until() on the result.
#pragma once

#include <chrono>
#include <ratio>

namespace evbus::detail {

/// `d` in nanoseconds, or nanoseconds::max() (min()) when it does not fit: an option given
/// in coarser units, e.g. milliseconds::max(), then also means "no limit" instead of
/// overflowing in the conversion. Thread-safe; O(1).
template <class Rep, class Period>
[[nodiscard]] constexpr std::chrono::nanoseconds saturating_ns(
    std::chrono::duration<Rep, Period> d) noexcept {
    static_assert(std::ratio_greater_equal_v<Period, std::nano>,
                  "evbus: saturating_ns takes units of a nanosecond or coarser");
    using std::chrono::nanoseconds;
    constexpr auto most =
        std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(nanoseconds::max());
    constexpr auto least =
        std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(nanoseconds::min());
    if (d >= most) return nanoseconds::max();
    if (d <= least) return nanoseconds::min();
    return std::chrono::duration_cast<nanoseconds>(d);
}

/// `from + d`, or time_point::max() when that sum would not fit. `d` must not be negative
/// (the options that feed it are checked for that). Thread-safe; O(1).
[[nodiscard]] inline std::chrono::steady_clock::time_point deadline_after(
    std::chrono::steady_clock::time_point from, std::chrono::nanoseconds d) noexcept {
    using time_point = std::chrono::steady_clock::time_point;
    const auto step = std::chrono::duration_cast<time_point::duration>(d);
    if (step > time_point::max() - from) return time_point::max();
    return from + step;
}

/// deadline_after(now, d): the deadline of a wait of `d` that starts now.
[[nodiscard]] inline std::chrono::steady_clock::time_point deadline_in(
    std::chrono::nanoseconds d) noexcept {
    return deadline_after(std::chrono::steady_clock::now(), d);
}

}  // namespace evbus::detail
