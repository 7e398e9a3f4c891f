// run_plan — what `run` is asked to do, recorded in the database before the first transfer so
// a run killed half-way is resumed by the next `run` exactly as it was planned.
//
// Transfer i of a plan is a pure function of (seed, i): the user, the two wallets, the amount
// and the idempotency key "run<id>-<i>". Resuming re-sends every transfer of the plan; those
// committed before the crash come back as already applied, so no money moves twice.
//
// Thread-safety: plain values; the load/save functions use their own transactions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <evbus/store.hpp>
#include <transfer/transfer.hpp>

namespace payments::app {

struct run_plan {
    std::int64_t id = 0;
    std::uint64_t transfers = 0;
    std::uint32_t users = 0;
    std::uint64_t seed = 0;

    [[nodiscard]] transfer::transfer_request request(std::uint64_t i) const;
    [[nodiscard]] static std::string user_id(std::uint32_t u);
    [[nodiscard]] static std::string wallet_id(std::uint32_t u);
};

/// Every wallet starts with this much; enough that no planned transfer lacks funds.
inline constexpr std::int64_t initial_balance_cents = 1'000'000'000'000;
/// The largest planned amount.
inline constexpr std::int64_t max_amount_cents = 10'000;

/// Creates the program's table (once) and refuses a newer one.
void migrate_run_table(evbus::event_store& store);
/// The plan of a run that has not finished, if any.
[[nodiscard]] std::optional<run_plan> unfinished_run(evbus::event_store& store);
/// Records a new plan and returns it with its id.
[[nodiscard]] run_plan create_run(evbus::event_store& store, std::uint64_t transfers,
                                  std::uint32_t users, std::uint64_t seed);
/// Marks a run finished.
void finish_run(evbus::event_store& store, std::int64_t id);

}  // namespace payments::app
