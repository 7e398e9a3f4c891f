// Payloads for the durable-path tests: described for the codec, one with an old version.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

#include <evbus/codec.hpp>
#include <evbus/event_set.hpp>
#include <evbus/store.hpp>
#include <evbus/unit_of_work.hpp>

namespace outbox_test {

struct money_transferred_v1 {
    static constexpr std::string_view event_name = "transfer.moneyTransferred";
    static constexpr std::uint32_t event_version = 1;
    std::string user;
    std::int64_t cents = 0;
};
EVBUS_DESCRIBE(money_transferred_v1, user, cents)

struct money_transferred {
    static constexpr std::string_view event_name = "transfer.moneyTransferred";
    static constexpr std::uint32_t event_version = 2;
    using previous_versions = evbus::versions<money_transferred_v1>;
    std::string user_id;
    std::int64_t cents = 0;
    std::string currency;
    [[nodiscard]] std::string_view event_key() const { return user_id; }
};
EVBUS_DESCRIBE(money_transferred, user_id, cents, currency)

// Version 1 had no refunds: an old row below zero is damaged, and the upcast says so.
inline money_transferred upcast(const money_transferred_v1& old) {
    if (old.cents < 0) {
        throw std::invalid_argument("a version 1 transfer of " + std::to_string(old.cents) +
                                    " cents");
    }
    return money_transferred{old.user, old.cents, "EUR"};
}

struct receipt_sent {
    static constexpr std::string_view event_name = "notification.receiptSent";
    std::string user_id;
    std::int64_t seq = 0;
    [[nodiscard]] std::string_view event_key() const { return user_id; }
};
EVBUS_DESCRIBE(receipt_sent, user_id, seq)

using events = evbus::event_set<money_transferred, receipt_sent>;

/// Appends `e` in a unit of work of its own and commits it.
inline void commit_one(evbus::event_store& store, const money_transferred& e) {
    evbus::unit_of_work<events> tx(store);
    tx.append(e);
    tx.commit();
}

/// A fresh directory for database files under the build tree (EVBUS_OUTBOX_TEST_DIR).
inline std::filesystem::path fresh_dir(std::string_view name) {
    const auto dir = std::filesystem::path(EVBUS_OUTBOX_TEST_DIR) / std::string(name);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

}  // namespace outbox_test
