// The notification module's tables and SQL. Private to the module.
#pragma once

#include <array>
#include <string_view>

namespace payments::notification::receipt_book {

inline constexpr std::string_view module_name = "notification";

// Entry i migrates the module's tables from version i to i + 1. Append, never edit.
// transfer_id is indexed but deliberately not unique: exactly-once comes from the
// transactional subscription, and the application's checks count duplicates instead of
// relying on a constraint to hide them.
inline constexpr std::array<std::string_view, 1> migrations{
    R"sql(
CREATE TABLE notification_receipts(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    sent_at_ms INTEGER NOT NULL);
CREATE INDEX notification_receipts_transfer ON notification_receipts(transfer_id);
)sql",
};

inline constexpr std::string_view insert_receipt =
    "INSERT INTO notification_receipts(transfer_id, user_id, channel, amount_cents, "
    "sent_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)";
inline constexpr std::string_view per_transfer =
    "SELECT transfer_id, count(*) FROM notification_receipts GROUP BY transfer_id";

}  // namespace payments::notification::receipt_book
