#include "faults.hpp"

#include <thread>

namespace payments::app {

namespace {
// splitmix64: a well-mixed 64-bit value from a counter (Steele, Lea, Flood 2014).
std::uint64_t mix(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
}  // namespace

contract::handler_probe fault_injector::probe() {
    return [this](std::string_view subscription) { on_call(subscription); };
}

double fault_injector::draw() noexcept {
    // relaxed: the counter only has to hand out distinct draws; nothing is published by it.
    const std::uint64_t n = draws_.fetch_add(1, std::memory_order_relaxed);
    return static_cast<double>(mix(plan_.seed * 0x100000001b3ULL + n) >> 11) * 0x1.0p-53;
}

void fault_injector::on_call(std::string_view subscription) {
    if (subscription == plan_.slow_subscription && draw() < plan_.slow_rate) {
        slow_.fetch_add(1, std::memory_order_relaxed);  // a statistic
        const bool overruns = plan_.budget.count() > 0 && plan_.slow_for >= plan_.budget;
        std::this_thread::sleep_for(overruns ? plan_.budget : plan_.slow_for);
        if (overruns) {
            timeouts_.fetch_add(1, std::memory_order_relaxed);  // a statistic
            throw injected_failure("injected slowness: the handler needed " +
                                   std::to_string(plan_.slow_for.count()) +
                                   " ms and gave up at its " +
                                   std::to_string(plan_.budget.count()) + " ms budget (timeout)");
        }
    }
    if (subscription == plan_.fail_subscription && draw() < plan_.fail_rate) {
        failures_.fetch_add(1, std::memory_order_relaxed);  // a statistic
        throw injected_failure("injected failure in " + std::string(subscription));
    }
}

}  // namespace payments::app
