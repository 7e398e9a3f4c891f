// evbus/retry.hpp — backoff arithmetic and error classification for retried deliveries.
//
// The async engine (and later the durable dispatcher) retries a failed handler under its
// subscription's retry_policy. Attempt 1 runs at once; before attempt n+1 (the n-th retry)
// the worker waits
//
//     base(n)  = min(initial_delay * multiplier^(n-1), max_delay)
//     delay(n) = base(n) * (1 + jitter * (2u - 1)),   u uniform in [0, 1)
//
// so with jitter j the delay lies in [base(n) * (1 - j), base(n) * (1 + j)], and with no
// jitter it is base(n), in whole nanoseconds. Every delay is capped at 2^62 ns (146 years),
// so that adding it to a clock reading cannot overflow. Jitter spreads retries of many keys
// that failed together (a database restart) so they do not all come back in the same instant.
//
// An error is retryable unless it is evbus::permanent_error, a handler_result::fail, or the
// policy's classifier says no.
//
// Thread-safety: pure functions; safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>

#include <evbus/subscription.hpp>

namespace evbus {

/// How long to wait before attempt `attempt` (1-based) under `policy`; `unit_random` is a
/// uniform draw in [0, 1) that only matters when policy.jitter > 0. Attempt 1 (and 0) is
/// never delayed. Saturates instead of overflowing for huge attempt numbers. O(1).
[[nodiscard]] std::chrono::nanoseconds backoff_delay(const retry_policy& policy,
                                                     std::uint32_t attempt,
                                                     double unit_random) noexcept;

/// Whether a handler's exception should be retried under `policy`: never for
/// evbus::permanent_error or a null pointer, otherwise the policy's classifier (a throwing
/// classifier means no), or yes when it has none.
[[nodiscard]] bool is_retryable(const std::exception_ptr& error,
                                const retry_policy& policy) noexcept;

}  // namespace evbus
