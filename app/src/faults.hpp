// faults — the fault injection of `run`: a failure rate for one handler, a slow handler, and
// (in run_command) a crash after K transfers.
//
// The injector is the handler probe the modules call at the start of each handler (see
// contract::handler_probe). For the chosen subscription it throws an injected_failure with
// probability fail_rate (the attempt fails and is retried or dead-lettered), and with
// probability slow_rate it is slow: it takes slow_for, but like any well-behaved handler it
// honours its time budget and gives up with a timeout error when the budget ends first.
// Draws come from one seeded counter-based sequence, so a seed gives the same draws in the
// same order of calls.
//
// Thread-safety: probe() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include <contract/wiring.hpp>

namespace payments::app {

struct fault_plan {
    std::string fail_subscription;  ///< empty: no injected failures
    double fail_rate = 0.0;
    std::string slow_subscription;  ///< empty: no slow calls
    double slow_rate = 0.0;
    std::chrono::milliseconds slow_for{0};
    std::chrono::milliseconds budget{0};  ///< the handlers' time budget; zero: none
    std::uint64_t seed = 1;

    [[nodiscard]] bool any() const noexcept {
        return (!fail_subscription.empty() && fail_rate > 0) ||
               (!slow_subscription.empty() && slow_rate > 0);
    }
};

/// What an injected failure throws, so reports can tell it from a real one.
class injected_failure : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class fault_injector {
public:
    explicit fault_injector(fault_plan plan) : plan_(std::move(plan)) {}

    /// The probe to hand the modules; valid while this injector lives.
    [[nodiscard]] contract::handler_probe probe();

    [[nodiscard]] std::uint64_t failures() const noexcept {
        return failures_.load(std::memory_order_relaxed);  // a statistic; orders nothing
    }
    [[nodiscard]] std::uint64_t slow_calls() const noexcept {
        return slow_.load(std::memory_order_relaxed);  // a statistic; orders nothing
    }
    [[nodiscard]] std::uint64_t timeouts() const noexcept {
        return timeouts_.load(std::memory_order_relaxed);  // a statistic; orders nothing
    }

private:
    void on_call(std::string_view subscription);
    double draw() noexcept;

    const fault_plan plan_;
    std::atomic<std::uint64_t> draws_{0};
    std::atomic<std::uint64_t> failures_{0};
    std::atomic<std::uint64_t> slow_{0};
    std::atomic<std::uint64_t> timeouts_{0};
};

}  // namespace payments::app
