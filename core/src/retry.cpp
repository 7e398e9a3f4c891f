#include <evbus/retry.hpp>

#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>

#include <evbus/handler.hpp>

namespace evbus {
namespace {

[[noreturn]] void bad_option(const std::string& what) {
    throw std::invalid_argument("evbus: subscribe_options." + what);
}

std::string ns_text(std::chrono::nanoseconds d) {
    return std::to_string(d.count()) + " ns";
}

// The shortest text that reads back as `x`: std::to_string's six decimals would show a
// rejected 0.9999999 as 1.000000.
std::string number_text(double x) {
    std::array<char, 32> buffer{};
    const auto [end, error] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), x);
    if (error != std::errc{}) return std::to_string(x);
    return {buffer.data(), end};
}

}  // namespace

void validate(const subscribe_options& options) {
    const retry_policy& r = options.retry;
    if (r.max_attempts < 1) bad_option("retry.max_attempts is 0; it must be >= 1 (1 = no retry)");
    if (r.initial_delay.count() < 0) {
        bad_option("retry.initial_delay is " + ns_text(r.initial_delay) + "; it must be >= 0");
    }
    if (r.max_delay.count() < 0) {
        bad_option("retry.max_delay is " + ns_text(r.max_delay) + "; it must be >= 0");
    }
    if (!(r.multiplier >= 1.0) || !std::isfinite(r.multiplier)) {
        bad_option("retry.multiplier is " + number_text(r.multiplier) +
                   "; it must be a finite number >= 1");
    }
    if (!(r.jitter >= 0.0 && r.jitter <= 1.0)) {
        bad_option("retry.jitter is " + number_text(r.jitter) + "; it must be in [0, 1]");
    }
    if (options.timeout.count() < 0) {
        bad_option("timeout is " + ns_text(options.timeout) + "; it must be >= 0 (0 = none)");
    }
}

std::chrono::nanoseconds backoff_delay(const retry_policy& policy, std::uint32_t attempt,
                                       double unit_random) noexcept {
    // A zero initial delay stays zero: 0 * pow() would be NaN once pow() overflows.
    if (attempt <= 1 || policy.initial_delay.count() == 0) return std::chrono::nanoseconds{0};
    const double cap = static_cast<double>(policy.max_delay.count());
    // pow() of a large exponent gives inf, and min() then picks the cap: no overflow.
    double base = static_cast<double>(policy.initial_delay.count()) *
                  std::pow(policy.multiplier, static_cast<double>(attempt - 2));
    if (!(base <= cap)) base = cap;  // also catches NaN
    double delay = base;
    if (policy.jitter > 0.0) {
        double u = unit_random;
        if (!(u >= 0.0)) u = 0.0;
        if (u >= 1.0) u = std::nextafter(1.0, 0.0);
        delay = base * (1.0 + policy.jitter * (2.0 * u - 1.0));
    }
    if (delay <= 0.0) return std::chrono::nanoseconds{0};
    constexpr double limit = static_cast<double>(std::numeric_limits<std::int64_t>::max() / 2);
    if (delay >= limit) return std::chrono::nanoseconds{static_cast<std::int64_t>(limit)};
    return std::chrono::nanoseconds{static_cast<std::int64_t>(delay)};
}

bool is_retryable(const std::exception_ptr& error, const retry_policy& policy) noexcept {
    if (!error) return false;
    try {
        std::rethrow_exception(error);
    } catch (const permanent_error&) {
        return false;
    } catch (...) {
        // Any other type: the classifier (if any) decides, below.
    }
    if (policy.retryable == nullptr) return true;
    try {
        return policy.retryable(error);
    } catch (...) {
        return false;
    }
}

}  // namespace evbus
