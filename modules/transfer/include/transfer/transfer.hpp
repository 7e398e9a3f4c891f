// transfer/transfer.hpp — the transfer module: wallets, and money moved between them.
//
// A transfer is validated (positive amount, two distinct existing wallets, the first owned by
// the requesting user, enough funds, a client idempotency key), then one unit of work moves
// the money, records the transfer and appends contract::money_transferred. Either all three
// happen or none does. The module never calls another module or the bus: whoever cares about
// transfers subscribes to the event.
//
// Idempotency: the client picks a key per logical request and resends the same key when it
// retries. A request whose key was seen before moves no money: the same request gets
// status::already_applied with the original transfer id; a different request reusing the key
// is rejected (reason::idempotency_key_reused).
//
// Tables (SQL, migrated by wire()): transfer_wallets(id, user_id, balance_cents) and
// transfer_transfers(id, idempotency_key UNIQUE, user_id, from_wallet, to_wallet,
// amount_cents, created_at_ms).
//
// Thread-safety: transfer_service is thread-safe; concurrent transfers are serialised by the
// store's write lock.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <evbus/store.hpp>

namespace payments::transfer {

struct transfer_request {
    std::string idempotency_key;  ///< chosen by the client; a retry resends the same key
    std::string user_id;          ///< who asks; must own from_wallet
    std::string from_wallet;
    std::string to_wallet;
    std::int64_t amount_cents = 0;
};

enum class status : std::uint8_t {
    committed,        ///< the money moved and the event was appended
    already_applied,  ///< this request was committed before; nothing moved this time
    rejected,         ///< invalid; nothing changed and no event was appended
};

enum class reason : std::uint8_t {
    none,
    missing_field,  ///< an empty idempotency key, user or wallet id
    non_positive_amount,
    same_wallet,
    unknown_wallet,
    not_wallet_owner,
    insufficient_funds,
    idempotency_key_reused,  ///< the key belongs to a different request
    balance_overflow,        ///< the receiving wallet would pass the largest balance (int64)
};

struct transfer_result {
    status outcome = status::rejected;
    enum reason why = reason::none;
    std::string transfer_id;  ///< committed or already_applied: the transfer
    std::string message;      ///< rejected: what was wrong, naming the field and the value

    [[nodiscard]] bool ok() const noexcept { return outcome != status::rejected; }
};

/// One user's transfers, summed by SQL.
struct user_aggregate {
    std::int64_t total_cents = 0;
    std::int64_t count = 0;
};

/// The name of a reason, for logs and errors ("insufficient_funds").
[[nodiscard]] std::string_view to_string(reason r) noexcept;

class transfer_service {
public:
    explicit transfer_service(evbus::event_store& store) noexcept : store_(&store) {}

    /// Validates and, when valid, commits the transfer with its event. Throws
    /// evbus::store_error when the database fails (busy past its timeout, disk full); a
    /// request that was invalid never throws. Thread-safe.
    transfer_result transfer(const transfer_request& request);

    /// Opens a wallet for `user_id` with an initial balance. Opening an existing wallet again
    /// with the same owner changes nothing and returns false; a different owner throws
    /// std::invalid_argument. Thread-safe.
    bool open_wallet(std::string_view wallet_id, std::string_view user_id,
                     std::int64_t initial_cents);

    /// The wallet's balance; nullopt for an unknown wallet. Thread-safe.
    [[nodiscard]] std::optional<std::int64_t> balance(std::string_view wallet_id);

    /// SQL aggregate over the transfers table: per user, the sum of amounts and the number
    /// of transfers. Thread-safe.
    [[nodiscard]] std::map<std::string, user_aggregate> totals_by_user();
    /// The ids of all recorded transfers. Thread-safe.
    [[nodiscard]] std::vector<std::string> transfer_ids();
    /// The sum of all wallet balances (constant under transfers). Thread-safe.
    [[nodiscard]] std::int64_t money_in_wallets();
    /// The number of wallets. Thread-safe.
    [[nodiscard]] std::int64_t wallet_count();

private:
    evbus::event_store* store_;
};

/// Creates or migrates the module's tables in `store` and returns the service. Throws
/// contract::module_schema_error when the database's transfer tables are newer than this build.
[[nodiscard]] transfer_service wire(evbus::event_store& store);

}  // namespace payments::transfer
