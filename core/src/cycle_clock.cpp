#include <evbus/detail/cycle_clock.hpp>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace evbus::detail {
namespace {

bool invariant_counter() noexcept {
#if defined(__x86_64__)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_max(0x80000000U, nullptr) < 0x80000007U) return false;
    __cpuid(0x80000007U, eax, ebx, ecx, edx);
    return (edx & (1U << 8U)) != 0;  // invariant TSC: constant rate, runs in idle states
#else
    return false;
#endif
}

}  // namespace

cycle_clock cycle_clock::calibrated() noexcept {
    static const cycle_clock c = [] {
        cycle_clock out;
#if defined(__x86_64__)
        if (!invariant_counter()) return out;
        using clock = std::chrono::steady_clock;
        const auto t0 = clock::now();
        const std::uint64_t c0 = __builtin_ia32_rdtsc();
        auto t1 = t0;
        while (t1 - t0 < calibration_time) t1 = clock::now();
        const std::uint64_t c1 = __builtin_ia32_rdtsc();
        if (c1 <= c0) return out;  // a counter that does not advance: keep steady_clock
        out.ns_per_tick_ =
            static_cast<double>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()) /
            static_cast<double>(c1 - c0);
        out.counter_ = true;
#endif
        return out;
    }();
    return c;
}

}  // namespace evbus::detail
