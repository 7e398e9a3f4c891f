// checks — the end-of-run verification: did every transfer get exactly one receipt, does the
// analytics projection equal the SQL aggregate over the transfers, is anything left pending.
//
// Dead letters are accounted for, not hidden: a transfer whose receipt delivery is
// dead-lettered counts as "awaiting requeue", not as missing, and the expected projection
// leaves out transfers whose analytics delivery is dead-lettered. Anything else that is off
// (a missing or duplicate receipt, a projection that differs, a delivery still pending) fails
// its check.
//
// Thread-safety: reads the database through the application's store; call after drain().
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "application.hpp"

namespace payments::app {

struct check {
    std::string name;
    bool ok = false;
    std::string detail;
};

struct verification {
    std::uint64_t transfers = 0;
    std::uint64_t receipts = 0;
    std::uint64_t users = 0;
    std::map<std::string, std::uint64_t> dead_letters;  ///< per subscription
    std::vector<check> checks;

    [[nodiscard]] std::uint64_t dead_letter_total() const noexcept {
        std::uint64_t n = 0;
        for (const auto& [sub, count] : dead_letters) n += count;
        return n;
    }
    [[nodiscard]] bool passed() const noexcept {
        for (const auto& c : checks) {
            if (!c.ok) return false;
        }
        return true;
    }
};

[[nodiscard]] verification verify(application& app);

/// "12,345": thousands separated, for reports.
[[nodiscard]] std::string grouped(std::uint64_t n);

}  // namespace payments::app
