// The analytics module's tables and SQL. Private to the module.
#pragma once

#include <array>
#include <string_view>

namespace payments::analytics::totals_table {

inline constexpr std::string_view module_name = "analytics";

// Entry i migrates the module's tables from version i to i + 1. Append, never edit.
inline constexpr std::array<std::string_view, 1> migrations{
    R"sql(
CREATE TABLE analytics_user_totals(
    user_id TEXT PRIMARY KEY,
    total_cents INTEGER NOT NULL,
    count INTEGER NOT NULL);
)sql",
};

inline constexpr std::string_view add_transfer =
    "INSERT INTO analytics_user_totals(user_id, total_cents, count) VALUES (?1, ?2, 1) "
    "ON CONFLICT(user_id) DO UPDATE SET total_cents = total_cents + excluded.total_cents, "
    "count = count + 1 RETURNING total_cents, count";
inline constexpr std::string_view select_all =
    "SELECT user_id, total_cents, count FROM analytics_user_totals";
inline constexpr std::string_view delete_all = "DELETE FROM analytics_user_totals";
inline constexpr std::string_view insert_row =
    "INSERT INTO analytics_user_totals(user_id, total_cents, count) VALUES (?1, ?2, ?3)";

}  // namespace payments::analytics::totals_table
