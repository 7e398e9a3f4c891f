#include <evbus/sql.hpp>

#include <sqlite3.h>

#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace evbus {
namespace {

sqlite3_stmt* as_stmt(void* p) noexcept {
    return static_cast<sqlite3_stmt*>(p);
}
sqlite3* as_db(void* p) noexcept {
    return static_cast<sqlite3*>(p);
}

std::string statement_text(sqlite3_stmt* stmt) {
    const char* text = stmt != nullptr ? sqlite3_sql(stmt) : nullptr;
    return text != nullptr ? std::string(text) : std::string("?");
}

// " in database '<file>'" for an error's text: which file failed matters as much as which
// statement, once an application opens more than one.
std::string in_database(void* db) {
    const char* file = db != nullptr ? sqlite3_db_filename(as_db(db), "main") : nullptr;
    if (file == nullptr || *file == '\0') return {};
    return std::string(" in database '") + file + "'";
}

// Whether `rest`, the text after a statement, holds nothing but white space and comments.
bool only_comments(std::string_view rest) {
    while (!rest.empty()) {
        const char c = rest.front();
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == ';') {
            rest.remove_prefix(1);
        } else if (rest.starts_with("--")) {
            const auto end = rest.find('\n');
            rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
        } else if (rest.starts_with("/*")) {
            const auto end = rest.find("*/", 2);
            rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 2);
        } else {
            return false;
        }
    }
    return true;
}

// Throws unless the connection is inside a transaction: SQLite rolls a transaction back on
// its own after some errors, and a statement run then would commit by itself.
void require_transaction(void* db, std::string_view sql) {
    if (sqlite3_get_autocommit(as_db(db)) == 0) return;
    throw store_error("evbus: SQL '" + std::string(sql) + "'" + in_database(db) +
                          " was not run: SQLite already rolled this transaction back after an "
                          "earlier error (a constraint ON CONFLICT ROLLBACK, RAISE(ROLLBACK), a "
                          "full disk or an I/O error); nothing of it will be committed",
                      SQLITE_ABORT_ROLLBACK);
}

}  // namespace

sql_statement::sql_statement(sql_statement&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)),
      db_(std::exchange(other.db_, nullptr)),
      in_transaction_(other.in_transaction_) {}

sql_statement& sql_statement::operator=(sql_statement&& other) noexcept {
    if (this != &other) {
        sqlite3_finalize(as_stmt(stmt_));
        stmt_ = std::exchange(other.stmt_, nullptr);
        db_ = std::exchange(other.db_, nullptr);
        in_transaction_ = other.in_transaction_;
    }
    return *this;
}

sql_statement::~sql_statement() {
    sqlite3_finalize(as_stmt(stmt_));
}

void sql_statement::fail(const char* action, int rc) const {
    throw store_error(std::string("evbus: SQL ") + action + " failed for '" +
                          statement_text(as_stmt(stmt_)) + "'" + in_database(db_) + ": " +
                          sqlite3_errmsg(as_db(db_)) + " (" + sqlite3_errstr(rc) + ")",
                      rc);
}

sql_statement& sql_statement::bind(int index, std::int64_t value) {
    if (const int rc = sqlite3_bind_int64(as_stmt(stmt_), index, value); rc != SQLITE_OK) {
        fail("bind", rc);
    }
    return *this;
}

sql_statement& sql_statement::bind(int index, double value) {
    if (const int rc = sqlite3_bind_double(as_stmt(stmt_), index, value); rc != SQLITE_OK) {
        fail("bind", rc);
    }
    return *this;
}

sql_statement& sql_statement::bind(int index, std::string_view text) {
    // An empty view may have a null data(), which SQLite would bind as NULL, not as ''.
    const char* data = text.data() != nullptr ? text.data() : "";
    const int rc = sqlite3_bind_text64(as_stmt(stmt_), index, data, text.size(), SQLITE_TRANSIENT,
                                       SQLITE_UTF8);
    if (rc != SQLITE_OK) fail("bind", rc);
    return *this;
}

sql_statement& sql_statement::bind_null(int index) {
    if (const int rc = sqlite3_bind_null(as_stmt(stmt_), index); rc != SQLITE_OK) {
        fail("bind", rc);
    }
    return *this;
}

bool sql_statement::step() {
    if (in_transaction_) require_transaction(db_, statement_text(as_stmt(stmt_)));
    const int rc = sqlite3_step(as_stmt(stmt_));
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail("step", rc);
}

void sql_statement::run() {
    while (step()) {
    }
    reset();
}

void sql_statement::reset() noexcept {
    sqlite3_reset(as_stmt(stmt_));
    sqlite3_clear_bindings(as_stmt(stmt_));
}

int sql_statement::column_count() const noexcept {
    return sqlite3_column_count(as_stmt(stmt_));
}

bool sql_statement::column_is_null(int column) const noexcept {
    return sqlite3_column_type(as_stmt(stmt_), column) == SQLITE_NULL;
}

std::int64_t sql_statement::column_int64(int column) const noexcept {
    return sqlite3_column_int64(as_stmt(stmt_), column);
}

double sql_statement::column_double(int column) const noexcept {
    return sqlite3_column_double(as_stmt(stmt_), column);
}

std::string_view sql_statement::column_text(int column) const noexcept {
    const auto* text = sqlite3_column_text(as_stmt(stmt_), column);
    if (text == nullptr) return {};
    return {reinterpret_cast<const char*>(text),
            static_cast<std::size_t>(sqlite3_column_bytes(as_stmt(stmt_), column))};
}

void sql_connection::exec(std::string_view sql) {
    if (sql.find('\0') != std::string_view::npos) {
        throw std::invalid_argument("evbus: SQL '" + std::string(sql.substr(0, sql.find('\0'))) +
                                    "...' holds a NUL byte; SQLite would stop reading there");
    }
    if (in_transaction_) require_transaction(db_, sql);
    const std::string text(sql);
    char* error = nullptr;
    const int rc = sqlite3_exec(as_db(db_), text.c_str(), nullptr, nullptr, &error);
    if (rc != SQLITE_OK) {
        std::string message = error != nullptr ? error : sqlite3_errstr(rc);
        sqlite3_free(error);
        throw store_error(
            "evbus: SQL failed for '" + text + "'" + in_database(db_) + ": " + message, rc);
    }
}

sql_statement sql_connection::prepare(std::string_view sql) {
    if (sql.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        throw std::invalid_argument("evbus: SQL statement of " + std::to_string(sql.size()) +
                                    " bytes; SQLite takes at most 2^31 - 1");
    }
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    const int rc =
        sqlite3_prepare_v2(as_db(db_), sql.data(), static_cast<int>(sql.size()), &stmt, &tail);
    if (rc != SQLITE_OK) {
        throw store_error("evbus: SQL prepare failed for '" + std::string(sql) + "'" +
                              in_database(db_) + ": " + sqlite3_errmsg(as_db(db_)),
                          rc);
    }
    sql_statement statement(stmt, db_, in_transaction_);  // finalizes it if we throw below
    if (stmt == nullptr) {
        throw std::invalid_argument("evbus: SQL '" + std::string(sql) +
                                    "' holds no statement (only white space or comments)");
    }
    const auto rest = sql.substr(static_cast<std::size_t>(tail - sql.data()));
    if (!only_comments(rest)) {
        throw std::invalid_argument("evbus: prepare() takes one SQL statement; '" +
                                    std::string(rest) +
                                    "' follows the first (use exec() for "
                                    "several)");
    }
    return statement;
}

std::int64_t sql_connection::last_insert_rowid() const noexcept {
    return sqlite3_last_insert_rowid(as_db(db_));
}

std::int64_t sql_connection::changes() const noexcept {
    return sqlite3_changes64(as_db(db_));
}

}  // namespace evbus
