#include <contract/module_schema.hpp>

namespace payments::contract {

namespace {
void ensure_schema_table(evbus::sql_connection& sql) {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS payments_schema("
        "module TEXT PRIMARY KEY, version INTEGER NOT NULL)");
}
}  // namespace

int module_schema_version(evbus::sql_connection& sql, std::string_view module) {
    ensure_schema_table(sql);
    auto stmt = sql.prepare("SELECT version FROM payments_schema WHERE module = ?1");
    stmt.bind(1, module);
    return stmt.step() ? static_cast<int>(stmt.column_int64(0)) : 0;
}

int migrate_module(evbus::sql_connection& sql, std::string_view module,
                   std::span<const std::string_view> migrations) {
    const int found = module_schema_version(sql, module);
    const int known = static_cast<int>(migrations.size());
    if (found > known) {
        throw module_schema_error("the database's tables for module '" + std::string(module) +
                                  "' are at schema version " + std::to_string(found) +
                                  ", newer than this build knows (" + std::to_string(known) +
                                  "); use a newer build of the program or another database");
    }
    for (int v = found; v < known; ++v) {
        sql.exec(migrations[static_cast<std::size_t>(v)]);
    }
    if (found < known) {
        auto stmt = sql.prepare(
            "INSERT INTO payments_schema(module, version) VALUES (?1, ?2) "
            "ON CONFLICT(module) DO UPDATE SET version = excluded.version");
        stmt.bind(1, module).bind(2, known).run();
    }
    return found;
}

}  // namespace payments::contract
