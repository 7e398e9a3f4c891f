// contract/events.hpp — the events the payment modules announce to each other.
//
// This is the whole of what one module may know about another: three payload types in one
// closed evbus::event_set. Each payload names itself "<module>.<event>", carries a schema
// version, and is keyed by the user it concerns, so every event about one user is handled in
// order on one shard.
//
//     transfer.moneyTransferred        transfer  -> notification, analytics
//     notification.receiptSent         notification -> (anyone)
//     analytics.userTransferUpdated    analytics -> (anyone)
//
// Times are Unix milliseconds (UTC), so a stored payload reads the same in every process.
// Each payload is stored as JSON; its EVBUS_DESCRIBE line lists the fields that are stored.
// Thread-safety: plain value types.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <evbus/codec.hpp>
#include <evbus/event_set.hpp>

namespace payments::contract {

/// Money moved from one wallet to another; appended by `transfer` with the move itself.
struct money_transferred {
    static constexpr std::string_view event_name = "transfer.moneyTransferred";
    static constexpr std::uint32_t event_version = 1;

    std::string transfer_id;
    std::string user_id;  ///< the user who asked for the transfer (owner of from_wallet)
    std::int64_t amount_cents = 0;
    std::string from_wallet;
    std::string to_wallet;
    std::int64_t created_at_ms = 0;

    [[nodiscard]] std::string_view event_key() const noexcept { return user_id; }
};

/// A receipt for one transfer went out; appended by `notification` with its receipts row.
struct receipt_sent {
    static constexpr std::string_view event_name = "notification.receiptSent";
    static constexpr std::uint32_t event_version = 1;

    std::string transfer_id;
    std::string user_id;
    std::string channel;  ///< where the receipt went, e.g. "email"
    std::int64_t at_ms = 0;

    [[nodiscard]] std::string_view event_key() const noexcept { return user_id; }
};

/// A user's running transfer totals changed; appended by `analytics` with its projection row.
struct user_transfer_updated {
    static constexpr std::string_view event_name = "analytics.userTransferUpdated";
    static constexpr std::uint32_t event_version = 1;

    std::string user_id;
    std::int64_t total_cents = 0;
    std::int64_t count = 0;

    [[nodiscard]] std::string_view event_key() const noexcept { return user_id; }
};

EVBUS_DESCRIBE(money_transferred, transfer_id, user_id, amount_cents, from_wallet, to_wallet,
               created_at_ms)
EVBUS_DESCRIBE(receipt_sent, transfer_id, user_id, channel, at_ms)
EVBUS_DESCRIBE(user_transfer_updated, user_id, total_cents, count)

using events = evbus::event_set<money_transferred, receipt_sent, user_transfer_updated>;

}  // namespace payments::contract
