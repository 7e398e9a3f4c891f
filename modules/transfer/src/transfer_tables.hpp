// The transfer module's tables and the SQL it runs on them. Private to the module.
#pragma once

#include <array>
#include <string_view>

namespace payments::transfer::tables {

inline constexpr std::string_view module_name = "transfer";

// Entry i migrates the module's tables from version i to i + 1. Append, never edit.
inline constexpr std::array<std::string_view, 1> migrations{
    R"sql(
CREATE TABLE transfer_wallets(
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    balance_cents INTEGER NOT NULL CHECK (balance_cents >= 0));
CREATE TABLE transfer_transfers(
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    from_wallet TEXT NOT NULL REFERENCES transfer_wallets(id),
    to_wallet TEXT NOT NULL REFERENCES transfer_wallets(id),
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    created_at_ms INTEGER NOT NULL);
CREATE INDEX transfer_transfers_user ON transfer_transfers(user_id);
)sql",
};

inline constexpr std::string_view find_by_key =
    "SELECT id, user_id, from_wallet, to_wallet, amount_cents FROM transfer_transfers "
    "WHERE idempotency_key = ?1";
inline constexpr std::string_view find_wallet =
    "SELECT user_id, balance_cents FROM transfer_wallets WHERE id = ?1";
inline constexpr std::string_view add_to_balance =
    "UPDATE transfer_wallets SET balance_cents = balance_cents + ?2 WHERE id = ?1";
inline constexpr std::string_view insert_transfer =
    "INSERT INTO transfer_transfers(id, idempotency_key, user_id, from_wallet, to_wallet, "
    "amount_cents, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
inline constexpr std::string_view totals_by_user =
    "SELECT user_id, sum(amount_cents), count(*) FROM transfer_transfers GROUP BY user_id";
inline constexpr std::string_view transfer_ids = "SELECT id FROM transfer_transfers";
inline constexpr std::string_view money_in_wallets =
    "SELECT coalesce(sum(balance_cents), 0) FROM transfer_wallets";
inline constexpr std::string_view wallet_count = "SELECT count(*) FROM transfer_wallets";
inline constexpr std::string_view insert_wallet =
    "INSERT INTO transfer_wallets(id, user_id, balance_cents) VALUES (?1, ?2, ?3)";

}  // namespace payments::transfer::tables
