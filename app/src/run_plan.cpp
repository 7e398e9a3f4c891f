#include "run_plan.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <string_view>

#include <contract/module_schema.hpp>
#include <contract/wiring.hpp>

namespace payments::app {

namespace {

constexpr std::string_view table_owner = "app";
constexpr std::array<std::string_view, 1> migrations{
    R"sql(
CREATE TABLE app_runs(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transfers INTEGER NOT NULL,
    users INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER);
)sql",
};

std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64, as in faults.cpp
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

std::string run_plan::user_id(std::uint32_t u) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "user-%04u", u);
    return buf;
}

std::string run_plan::wallet_id(std::uint32_t u) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "wallet-%04u", u);
    return buf;
}

transfer::transfer_request run_plan::request(std::uint64_t i) const {
    const std::uint64_t r = mix(seed ^ mix(i));
    const auto from = static_cast<std::uint32_t>(i % users);
    // Any other user: an offset in [1, users - 1].
    const auto to = static_cast<std::uint32_t>((from + 1 + (r % (users - 1))) % users);
    transfer::transfer_request req;
    req.idempotency_key = "run" + std::to_string(id) + "-" + std::to_string(i);
    req.user_id = user_id(from);
    req.from_wallet = wallet_id(from);
    req.to_wallet = wallet_id(to);
    req.amount_cents = 1 + static_cast<std::int64_t>((r >> 32) % max_amount_cents);
    return req;
}

void migrate_run_table(evbus::event_store& store) {
    contract::unit_of_work uow(store);
    contract::migrate_module(uow.sql(), table_owner, migrations);
    uow.commit();
}

std::optional<run_plan> unfinished_run(evbus::event_store& store) {
    contract::unit_of_work uow(store, evbus::begin_mode::deferred);
    auto q = uow.sql().prepare(
        "SELECT id, transfers, users, seed FROM app_runs WHERE finished_at_ms IS NULL "
        "ORDER BY id LIMIT 1");
    if (!q.step()) return std::nullopt;
    return run_plan{q.column_int64(0), static_cast<std::uint64_t>(q.column_int64(1)),
                    static_cast<std::uint32_t>(q.column_int64(2)),
                    static_cast<std::uint64_t>(q.column_int64(3))};
}

run_plan create_run(evbus::event_store& store, std::uint64_t transfers, std::uint32_t users,
                    std::uint64_t seed) {
    contract::unit_of_work uow(store);
    auto& sql = uow.sql();
    sql.prepare(
           "INSERT INTO app_runs(transfers, users, seed, started_at_ms) VALUES (?1, ?2, ?3, ?4)")
        .bind(1, static_cast<std::int64_t>(transfers))
        .bind(2, static_cast<std::int64_t>(users))
        .bind(3, static_cast<std::int64_t>(seed))
        .bind(4, now_ms())
        .run();
    run_plan plan{sql.last_insert_rowid(), transfers, users, seed};
    uow.commit();
    return plan;
}

void finish_run(evbus::event_store& store, std::int64_t id) {
    contract::unit_of_work uow(store);
    uow.sql()
        .prepare("UPDATE app_runs SET finished_at_ms = ?2 WHERE id = ?1")
        .bind(1, id)
        .bind(2, now_ms())
        .run();
    uow.commit();
}

}  // namespace payments::app
