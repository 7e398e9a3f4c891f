// evbus/sql.hpp — the small SQL handle a module gets inside a unit of work.
//
// A module changes its own tables through the connection of its transaction: exec() for
// statements without results, prepare() + bind() + step() + column_*() for the rest. The
// handle wraps the store's database connection without exposing the backend's header, so
// module code compiles against evbus alone. Indices follow SQL: bind parameters count from 1,
// result columns from 0.
//
// Errors throw evbus::store_error naming the statement, the database file and the database's
// message; misuse (prepare() of several statements or of none, a NUL byte in the text)
// throws std::invalid_argument. Some
// errors make SQLite roll the whole transaction back on its own (a constraint declared ON
// CONFLICT ROLLBACK, RAISE(ROLLBACK), a full disk): after one, a transaction's connection
// refuses every further statement, so nothing runs outside the transaction the module
// believes it is in, and its commit fails.
//
// Thread-safety: a connection and its statements belong to the transaction that handed them
// out and are used by one thread at a time; a statement must not outlive its transaction.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace evbus {

/// A database failure: the message names what was attempted; code() is the backend's code.
class store_error : public std::runtime_error {
public:
    explicit store_error(const std::string& what, int code = 0)
        : std::runtime_error(what), code_(code) {}
    [[nodiscard]] int code() const noexcept { return code_; }

private:
    int code_;
};

class sql_connection;

/// A prepared statement. Move-only; finalized on destruction.
class sql_statement {
public:
    sql_statement() noexcept = default;
    sql_statement(sql_statement&& other) noexcept;
    sql_statement& operator=(sql_statement&& other) noexcept;
    sql_statement(const sql_statement&) = delete;
    sql_statement& operator=(const sql_statement&) = delete;
    ~sql_statement();

    sql_statement& bind(int index, std::int64_t value);
    sql_statement& bind(int index, int value) { return bind(index, std::int64_t{value}); }
    sql_statement& bind(int index, double value);
    /// Binds a copy of `text` (the statement may outlive the caller's buffer).
    sql_statement& bind(int index, std::string_view text);
    sql_statement& bind(int index, const char* text) { return bind(index, std::string_view(text)); }
    sql_statement& bind_null(int index);

    /// Runs to the next row: true when a row is available, false when done.
    bool step();
    /// Runs a statement that returns no rows (or ignores them), then resets it.
    void run();
    /// Makes the statement runnable again and clears its bindings.
    void reset() noexcept;

    [[nodiscard]] int column_count() const noexcept;
    [[nodiscard]] bool column_is_null(int column) const noexcept;
    [[nodiscard]] std::int64_t column_int64(int column) const noexcept;
    [[nodiscard]] double column_double(int column) const noexcept;
    /// Valid until the next step(), reset() or destruction.
    [[nodiscard]] std::string_view column_text(int column) const noexcept;

    [[nodiscard]] explicit operator bool() const noexcept { return stmt_ != nullptr; }

private:
    friend class sql_connection;
    sql_statement(void* stmt, void* db, bool in_transaction) noexcept
        : stmt_(stmt), db_(db), in_transaction_(in_transaction) {}
    [[noreturn]] void fail(const char* action, int rc) const;

    void* stmt_ = nullptr;  // the backend's statement; opaque so its header stays private
    void* db_ = nullptr;
    bool in_transaction_ = false;  // runs only while its connection's transaction is open
};

/// The connection of one transaction. Non-owning; valid while the transaction is open.
class sql_connection {
public:
    /// `in_transaction`: the connection belongs to an open transaction, and its statements
    /// refuse to run once that transaction is over.
    explicit sql_connection(void* db, bool in_transaction = false) noexcept
        : db_(db), in_transaction_(in_transaction) {}

    /// Runs one or more statements that return no rows.
    void exec(std::string_view sql);
    /// Compiles exactly one statement (white space, comments and a ';' may follow it).
    [[nodiscard]] sql_statement prepare(std::string_view sql);
    [[nodiscard]] std::int64_t last_insert_rowid() const noexcept;
    /// Rows changed by the most recent INSERT, UPDATE or DELETE.
    [[nodiscard]] std::int64_t changes() const noexcept;

private:
    void* db_;
    bool in_transaction_;
};

}  // namespace evbus
