// contract/module_schema.hpp — versioned tables for each module, in the application database.
//
// Each module owns its tables and lists their migrations: entry i takes the module's tables
// from version i to version i + 1. migrate_module() applies the missing ones inside the
// caller's unit of work and records the version in payments_schema(module, version). A
// database whose version for the module is newer than the build knows is refused with a
// module_schema_error naming the module and both versions, before anything is written.
//
// Thread-safety: runs in the caller's transaction, on the caller's thread.
#pragma once

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include <evbus/sql.hpp>

namespace payments::contract {

/// The database holds a module schema this build cannot use.
class module_schema_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Brings `module`'s tables up to version migrations.size(); returns the version found before.
/// Throws module_schema_error for a newer database, evbus::store_error for SQL failures.
int migrate_module(evbus::sql_connection& sql, std::string_view module,
                   std::span<const std::string_view> migrations);

/// The version recorded for `module`; 0 when it has none.
[[nodiscard]] int module_schema_version(evbus::sql_connection& sql, std::string_view module);

}  // namespace payments::contract
