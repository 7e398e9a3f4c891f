#include <transfer/transfer.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include <contract/events.hpp>
#include <contract/module_schema.hpp>
#include <evbus/event_id.hpp>
#include <evbus/unit_of_work.hpp>

#include "transfer_tables.hpp"

namespace payments::transfer {

namespace {

using unit_of_work = evbus::unit_of_work<contract::events>;

transfer_result reject(reason why, std::string message) {
    transfer_result r;
    r.outcome = status::rejected;
    r.why = why;
    r.message = std::move(message);
    return r;
}

// Built by appending: g++ 12 at -O3 misreports `"'" + std::string(s) + "'"` (-Wrestrict).
std::string in_quotes(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '\'';
    out += s;
    out += '\'';
    return out;
}

// Checks that need no database; the first problem found is reported.
std::optional<transfer_result> check_request(const transfer_request& r) {
    if (r.idempotency_key.empty()) {
        return reject(reason::missing_field, "the idempotency key is empty; send one per request");
    }
    if (r.user_id.empty()) return reject(reason::missing_field, "the user id is empty");
    if (r.from_wallet.empty() || r.to_wallet.empty()) {
        return reject(reason::missing_field, "a wallet id is empty");
    }
    if (r.amount_cents <= 0) {
        return reject(reason::non_positive_amount, "the amount must be positive; got " +
                                                       std::to_string(r.amount_cents) + " cents");
    }
    if (r.from_wallet == r.to_wallet) {
        return reject(reason::same_wallet,
                      "from and to are the same wallet " + in_quotes(r.from_wallet));
    }
    return std::nullopt;
}

struct wallet_row {
    std::string user_id;
    std::int64_t balance_cents = 0;
};

std::optional<wallet_row> find_wallet(evbus::sql_connection& sql, std::string_view id) {
    auto stmt = sql.prepare(tables::find_wallet);
    stmt.bind(1, id);
    if (!stmt.step()) return std::nullopt;
    return wallet_row{std::string(stmt.column_text(0)), stmt.column_int64(1)};
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

std::string_view to_string(reason r) noexcept {
    switch (r) {
        case reason::none:
            return "none";
        case reason::missing_field:
            return "missing_field";
        case reason::non_positive_amount:
            return "non_positive_amount";
        case reason::same_wallet:
            return "same_wallet";
        case reason::unknown_wallet:
            return "unknown_wallet";
        case reason::not_wallet_owner:
            return "not_wallet_owner";
        case reason::insufficient_funds:
            return "insufficient_funds";
        case reason::idempotency_key_reused:
            return "idempotency_key_reused";
        case reason::balance_overflow:
            return "balance_overflow";
    }
    return "unknown";
}

transfer_result transfer_service::transfer(const transfer_request& request) {
    if (auto invalid = check_request(request)) return std::move(*invalid);

    unit_of_work uow(*store_);
    auto& sql = uow.sql();

    // A key seen before: the same request is answered with its transfer, anything else is a
    // client bug that must not move money.
    {
        auto stmt = sql.prepare(tables::find_by_key);
        stmt.bind(1, request.idempotency_key);
        if (stmt.step()) {
            const bool same = stmt.column_text(1) == request.user_id &&
                              stmt.column_text(2) == request.from_wallet &&
                              stmt.column_text(3) == request.to_wallet &&
                              stmt.column_int64(4) == request.amount_cents;
            if (!same) {
                return reject(reason::idempotency_key_reused,
                              "the idempotency key " + in_quotes(request.idempotency_key) +
                                  " was used by transfer " + in_quotes(stmt.column_text(0)) +
                                  " with different details; use a new key per request");
            }
            transfer_result r;
            r.outcome = status::already_applied;
            r.transfer_id = std::string(stmt.column_text(0));
            return r;
        }
    }

    const auto from = find_wallet(sql, request.from_wallet);
    if (!from) {
        return reject(reason::unknown_wallet,
                      "no wallet " + in_quotes(request.from_wallet) + " (from)");
    }
    const auto to = find_wallet(sql, request.to_wallet);
    if (!to) {
        return reject(reason::unknown_wallet,
                      "no wallet " + in_quotes(request.to_wallet) + " (to)");
    }
    if (from->user_id != request.user_id) {
        return reject(reason::not_wallet_owner, "wallet " + in_quotes(request.from_wallet) +
                                                    " does not belong to user " +
                                                    in_quotes(request.user_id));
    }
    if (from->balance_cents < request.amount_cents) {
        return reject(reason::insufficient_funds,
                      "wallet " + in_quotes(request.from_wallet) + " holds " +
                          std::to_string(from->balance_cents) + " cents; the transfer needs " +
                          std::to_string(request.amount_cents));
    }
    // SQLite turns an integer sum past 2^63 - 1 into a REAL, which the balance column would
    // take (and read back clamped): money made up. Refused before it is written.
    if (to->balance_cents > std::numeric_limits<std::int64_t>::max() - request.amount_cents) {
        return reject(reason::balance_overflow,
                      "wallet " + in_quotes(request.to_wallet) + " holds " +
                          std::to_string(to->balance_cents) + " cents; receiving " +
                          std::to_string(request.amount_cents) +
                          " more would pass the largest balance, " +
                          std::to_string(std::numeric_limits<std::int64_t>::max()));
    }

    contract::money_transferred event;
    event.transfer_id = evbus::event_id::generate().to_string();
    event.user_id = request.user_id;
    event.amount_cents = request.amount_cents;
    event.from_wallet = request.from_wallet;
    event.to_wallet = request.to_wallet;
    event.created_at_ms = now_ms();

    sql.prepare(tables::add_to_balance)
        .bind(1, request.from_wallet)
        .bind(2, -request.amount_cents)
        .run();
    sql.prepare(tables::add_to_balance)
        .bind(1, request.to_wallet)
        .bind(2, request.amount_cents)
        .run();
    sql.prepare(tables::insert_transfer)
        .bind(1, event.transfer_id)
        .bind(2, request.idempotency_key)
        .bind(3, event.user_id)
        .bind(4, event.from_wallet)
        .bind(5, event.to_wallet)
        .bind(6, event.amount_cents)
        .bind(7, event.created_at_ms)
        .run();
    evbus::metadata meta;
    meta.source = evbus::source_name(tables::module_name);
    uow.append(event, meta);
    uow.commit();

    transfer_result r;
    r.outcome = status::committed;
    r.transfer_id = std::move(event.transfer_id);
    return r;
}

bool transfer_service::open_wallet(std::string_view wallet_id, std::string_view user_id,
                                   std::int64_t initial_cents) {
    if (wallet_id.empty() || user_id.empty()) {
        throw std::invalid_argument("transfer: a wallet needs an id and an owner");
    }
    if (initial_cents < 0) {
        throw std::invalid_argument("transfer: wallet " + in_quotes(wallet_id) +
                                    " cannot open with a negative balance (" +
                                    std::to_string(initial_cents) + " cents)");
    }
    unit_of_work uow(*store_);
    auto& sql = uow.sql();
    if (const auto existing = find_wallet(sql, wallet_id)) {
        if (existing->user_id != user_id) {
            throw std::invalid_argument("transfer: wallet " + in_quotes(wallet_id) +
                                        " belongs to user " + in_quotes(existing->user_id) +
                                        ", not " + in_quotes(user_id));
        }
        return false;
    }
    sql.prepare(tables::insert_wallet)
        .bind(1, wallet_id)
        .bind(2, user_id)
        .bind(3, initial_cents)
        .run();
    uow.commit();
    return true;
}

std::optional<std::int64_t> transfer_service::balance(std::string_view wallet_id) {
    unit_of_work uow(*store_, evbus::begin_mode::deferred);
    const auto w = find_wallet(uow.sql(), wallet_id);
    if (!w) return std::nullopt;
    return w->balance_cents;
}

std::map<std::string, user_aggregate> transfer_service::totals_by_user() {
    unit_of_work uow(*store_, evbus::begin_mode::deferred);
    auto stmt = uow.sql().prepare(tables::totals_by_user);
    std::map<std::string, user_aggregate> out;
    while (stmt.step()) {
        out.emplace(stmt.column_text(0),
                    user_aggregate{stmt.column_int64(1), stmt.column_int64(2)});
    }
    return out;
}

std::vector<std::string> transfer_service::transfer_ids() {
    unit_of_work uow(*store_, evbus::begin_mode::deferred);
    auto stmt = uow.sql().prepare(tables::transfer_ids);
    std::vector<std::string> out;
    while (stmt.step()) out.emplace_back(stmt.column_text(0));
    return out;
}

std::int64_t transfer_service::money_in_wallets() {
    unit_of_work uow(*store_, evbus::begin_mode::deferred);
    auto stmt = uow.sql().prepare(tables::money_in_wallets);
    return stmt.step() ? stmt.column_int64(0) : 0;
}

std::int64_t transfer_service::wallet_count() {
    unit_of_work uow(*store_, evbus::begin_mode::deferred);
    auto stmt = uow.sql().prepare(tables::wallet_count);
    return stmt.step() ? stmt.column_int64(0) : 0;
}

transfer_service wire(evbus::event_store& store) {
    unit_of_work uow(store);
    contract::migrate_module(uow.sql(), tables::module_name, tables::migrations);
    uow.commit();
    return transfer_service(store);
}

}  // namespace payments::transfer
