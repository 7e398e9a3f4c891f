// analytics/analytics.hpp — the analytics module: running transfer totals per user.
//
// On transfer.moneyTransferred, subscription "analytics.user-totals" adds the amount to the
// user's row in analytics_user_totals (total cents, count) and appends
// analytics.userTransferUpdated with the new totals, in the delivery's own transaction (a
// transactional subscription), so every transfer counts exactly once across crashes, retries
// and redeliveries.
//
// The projection is derived data: rebuild() folds the same function over the event history
// and compares (or replaces). The history holds finished events only, so the rebuilt
// projection equals the live one when no moneyTransferred delivery is pending or
// dead-lettered, and none was discarded.
//
// Thread-safety: the handler runs on the delivery threads; projection() is thread-safe;
// rebuild() must run while the dispatcher is stopped (see its contract).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <contract/events.hpp>
#include <contract/wiring.hpp>
#include <evbus/store.hpp>
#include <evbus/subscription.hpp>

namespace payments::analytics {

struct user_totals {
    std::int64_t total_cents = 0;
    std::int64_t count = 0;
    friend bool operator==(const user_totals&, const user_totals&) = default;
};

/// Per user id.
using projection_map = std::map<std::string, user_totals>;

struct options {
    evbus::subscribe_options delivery;  ///< retries and timeout of analytics.user-totals
};

inline constexpr std::string_view totals_subscription = "analytics.user-totals";

/// The wired module; its subscription ends with it.
class module {
public:
    explicit module(evbus::subscription totals) noexcept : totals_(std::move(totals)) {}

private:
    evbus::subscription totals_;
};

/// Creates or migrates the module's tables and subscribes its handler. Subscribe before the
/// dispatcher starts. Throws contract::module_schema_error for a newer database.
[[nodiscard]] module wire(const contract::wiring& wiring, options opts = {});

/// The live projection. Thread-safe.
[[nodiscard]] projection_map projection(evbus::event_store& store);

struct rebuild_report {
    std::size_t events = 0;      ///< moneyTransferred events folded from the history
    std::size_t unreadable = 0;  ///< history rows that did not decode (named in errors)
    projection_map rebuilt;
    std::vector<std::string> differences;  ///< "user u-7: live 1200 cents / 3, rebuilt ..."
    std::vector<std::string> errors;
    bool replaced = false;
    [[nodiscard]] bool equal() const noexcept { return differences.empty(); }
};

/// Rebuilds the projection from the event history and compares it with the live one; with
/// `replace`, the live projection becomes the rebuilt one (one transaction). Replays through
/// a temporary subscription, so call it with the dispatcher stopped (a subscription present
/// while the dispatcher confirms new events would be owed their deliveries).
[[nodiscard]] rebuild_report rebuild(const contract::wiring& wiring, bool replace = false);

}  // namespace payments::analytics
