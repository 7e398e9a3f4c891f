// The SQLite store. Private: sqlite3.h is included here and nowhere public.
//
// Why positions are commit order here: SQLite admits one writer at a time, and a writer keeps
// the write lock from its first write until COMMIT returns. Outbox rows are inserted at commit
// (after the module's own writes, under that lock), and AUTOINCREMENT assigns max-ever + 1
// (never reusing a deleted maximum, which a plain rowid would do after the dispatcher has
// deleted completed rows). So no transaction can commit between another's insert and its
// commit: a row with a lower position was committed earlier, and a dispatcher that has seen
// position p has already seen every committed row below p. Rolled-back inserts leave no gap
// either, since the sequence update rolls back with them.
#include <evbus/sqlite_store.hpp>

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include <evbus/detail/deadline.hpp>

namespace evbus {
namespace {

std::int64_t to_ns(store_clock::time_point t) noexcept {
    if (t == store_clock::time_point::min()) return INT64_MIN;
    if (t == store_clock::time_point::max()) return INT64_MAX;
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

store_clock::time_point from_ns(std::int64_t ns) noexcept {
    return store_clock::time_point(
        std::chrono::duration_cast<store_clock::duration>(std::chrono::nanoseconds(ns)));
}

// Text that is not an id reads as nil, as a root event's causation id is; an event whose own
// id is nil is rejected, naming its row, when it is decoded (decode_row).
event_id parse_id(std::string_view text) {
    return event_id::parse(text).value_or(event_id{});
}

// ---- schema --------------------------------------------------------------------------------
// Each entry migrates from version (index) to version (index + 1). Append, never edit.
constexpr const char* migrations[] = {
    R"sql(
CREATE TABLE evbus_outbox(
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, key TEXT NOT NULL,
    correlation_id TEXT NOT NULL, causation_id TEXT NOT NULL, trace_id TEXT NOT NULL,
    source TEXT NOT NULL, occurred_at INTEGER NOT NULL, payload TEXT NOT NULL);
CREATE TABLE evbus_cursor(id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL);
INSERT INTO evbus_cursor(id, position) VALUES (1, 0);
CREATE TABLE evbus_delivery(
    position INTEGER NOT NULL, subscription TEXT NOT NULL,
    PRIMARY KEY (position, subscription)) WITHOUT ROWID;
CREATE TABLE evbus_dead_letter(
    id INTEGER PRIMARY KEY AUTOINCREMENT, position INTEGER NOT NULL,
    subscription TEXT NOT NULL, attempts INTEGER NOT NULL, error TEXT NOT NULL,
    first_failure INTEGER NOT NULL, last_failure INTEGER NOT NULL);
CREATE INDEX evbus_dead_letter_position ON evbus_dead_letter(position);
CREATE INDEX evbus_dead_letter_subscription ON evbus_dead_letter(subscription, id);
CREATE TABLE evbus_inbox(
    event_id TEXT NOT NULL, subscription TEXT NOT NULL, at INTEGER NOT NULL,
    PRIMARY KEY (event_id, subscription)) WITHOUT ROWID;
CREATE INDEX evbus_inbox_at ON evbus_inbox(at);
CREATE TABLE evbus_history(
    position INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, key TEXT NOT NULL,
    correlation_id TEXT NOT NULL, causation_id TEXT NOT NULL, trace_id TEXT NOT NULL,
    source TEXT NOT NULL, occurred_at INTEGER NOT NULL, payload TEXT NOT NULL,
    completed_at INTEGER NOT NULL);
CREATE INDEX evbus_history_key ON evbus_history(key, position);
CREATE INDEX evbus_history_completed ON evbus_history(completed_at);
)sql",
};
static_assert(std::size(migrations) == sqlite_schema_version, "one migration per schema version");

constexpr const char* event_columns =
    "event_id, name, version, key, correlation_id, causation_id, trace_id, source, "
    "occurred_at, payload";

// ---- SQL the store runs (cached per connection; keyed by these pointers) --------------------
constexpr const char* sql_insert_event =
    "INSERT INTO evbus_outbox(event_id, name, version, key, correlation_id, causation_id, "
    "trace_id, source, occurred_at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
constexpr const char* sql_cursor = "SELECT position FROM evbus_cursor WHERE id = 1";
constexpr const char* sql_claim =
    "SELECT position, event_id, name, version, key, correlation_id, causation_id, trace_id, "
    "source, occurred_at, payload FROM evbus_outbox WHERE position > ?1 ORDER BY position "
    "LIMIT ?2";
constexpr const char* sql_add_delivery =
    "INSERT OR IGNORE INTO evbus_delivery(position, subscription) VALUES (?1, ?2)";
constexpr const char* sql_delete_delivery =
    "DELETE FROM evbus_delivery WHERE position = ?1 AND subscription = ?2";
constexpr const char* sql_add_dead_letter =
    "INSERT INTO evbus_dead_letter(position, subscription, attempts, error, first_failure, "
    "last_failure) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
constexpr const char* sql_advance_cursor =
    "UPDATE evbus_cursor SET position = max(position, ?1) WHERE id = 1";
// An event is finished when it is confirmed and owes no delivery and has no dead letter.
constexpr const char* sql_archive =
    "INSERT INTO evbus_history(position, event_id, name, version, key, correlation_id, "
    "causation_id, trace_id, source, occurred_at, payload, completed_at) "
    "SELECT position, event_id, name, version, key, correlation_id, causation_id, trace_id, "
    "source, occurred_at, payload, ?3 FROM evbus_outbox o "
    "WHERE o.position > ?1 AND o.position <= ?2 "
    "AND o.position <= (SELECT position FROM evbus_cursor WHERE id = 1) "
    "AND NOT EXISTS (SELECT 1 FROM evbus_delivery d WHERE d.position = o.position) "
    "AND NOT EXISTS (SELECT 1 FROM evbus_dead_letter l WHERE l.position = o.position)";
constexpr const char* sql_finish =
    "DELETE FROM evbus_outbox "
    "WHERE position > ?1 AND position <= ?2 "
    "AND position <= (SELECT position FROM evbus_cursor WHERE id = 1) "
    "AND NOT EXISTS (SELECT 1 FROM evbus_delivery d WHERE d.position = evbus_outbox.position) "
    "AND NOT EXISTS (SELECT 1 FROM evbus_dead_letter l "
    "WHERE l.position = evbus_outbox.position)";
constexpr const char* sql_unfinished =
    "SELECT o.position, o.event_id, o.name, o.version, o.key, o.correlation_id, "
    "o.causation_id, o.trace_id, o.source, o.occurred_at, o.payload, d.subscription "
    "FROM evbus_delivery d JOIN evbus_outbox o ON o.position = d.position "
    "WHERE (d.position, d.subscription) > (?1, ?2) "
    "ORDER BY d.position, d.subscription LIMIT ?3";
constexpr const char* sql_mark_processed =
    "INSERT OR IGNORE INTO evbus_inbox(event_id, subscription, at) VALUES (?1, ?2, ?3)";
constexpr const char* sql_dead_letters =
    "SELECT o.position, o.event_id, o.name, o.version, o.key, o.correlation_id, "
    "o.causation_id, o.trace_id, o.source, o.occurred_at, o.payload, "
    "l.id, l.subscription, l.attempts, l.error, l.first_failure, l.last_failure "
    "FROM evbus_dead_letter l JOIN evbus_outbox o ON o.position = l.position "
    "WHERE (?1 IS NULL OR l.subscription = ?1) AND (?2 IS NULL OR o.key = ?2) "
    "AND (?3 IS NULL OR o.name = ?3) AND l.id BETWEEN ?4 AND ?6 ORDER BY l.id LIMIT ?5";
constexpr const char* sql_delete_dead_letter = "DELETE FROM evbus_dead_letter WHERE id = ?1";
constexpr const char* sql_history =
    "SELECT position, event_id, name, version, key, correlation_id, causation_id, trace_id, "
    "source, occurred_at, payload FROM evbus_history "
    "WHERE position > ?1 AND (?2 IS NULL OR key = ?2) AND occurred_at >= ?3 "
    "AND occurred_at < ?4 ORDER BY position LIMIT ?5";

void read_event(const sql_statement& row, stored_event& e) {
    e.position = row.column_int64(0);
    e.id = parse_id(row.column_text(1));
    e.name = std::string(row.column_text(2));
    e.version = static_cast<std::uint32_t>(row.column_int64(3));
    e.key = std::string(row.column_text(4));
    e.correlation_id = parse_id(row.column_text(5));
    e.causation_id = parse_id(row.column_text(6));
    e.trace_id = parse_id(row.column_text(7));
    e.source = std::string(row.column_text(8));
    e.occurred_at = from_ns(row.column_int64(9));
    e.payload = std::string(row.column_text(10));
}

// Resets a cached statement when the scope ends, which also ends its implicit read.
class using_stmt {
public:
    explicit using_stmt(sql_statement& s) noexcept : s_(s) {}
    using_stmt(const using_stmt&) = delete;
    using_stmt& operator=(const using_stmt&) = delete;
    ~using_stmt() { s_.reset(); }
    sql_statement* operator->() const noexcept { return &s_; }
    sql_statement& operator*() const noexcept { return s_; }

private:
    sql_statement& s_;
};

}  // namespace

// ---- one pooled connection -----------------------------------------------------------------
struct pooled_connection {
    sqlite3* db = nullptr;
    sql_connection sql{nullptr};
    std::unordered_map<const char*, sql_statement> cache;

    pooled_connection() = default;
    pooled_connection(const pooled_connection&) = delete;
    pooled_connection& operator=(const pooled_connection&) = delete;
    ~pooled_connection() {
        cache.clear();  // statements before the connection
        sqlite3_close_v2(db);
    }

    using_stmt stmt(const char* text) {
        auto it = cache.find(text);
        if (it == cache.end()) it = cache.emplace(text, sql.prepare(text)).first;
        return using_stmt(it->second);
    }
};

// Queues this store's writers inside the process. SQLite admits one writer at a time too,
// but a connection that finds the write lock taken sleeps in SQLite's busy handler (1, 2, 5,
// 10 ... ms) and is not woken when the lock is freed, so the dispatcher's confirm and
// complete transactions and the modules' units of work, all short, kept sleeping whole
// milliseconds behind each other. Here a waiting writer is woken as soon as the one before
// it ends. Writers in other processes, or behind another sqlite_store object on the same
// file, still meet SQLite's busy handler.
//
// Not first come, first served: a writer that finds the gate free goes in, even past a
// waiting one that has been woken but not yet run, as with SQLite's own lock. Strict order
// costs a thread switch on every pass; measured here with the payments demo (three runs
// each), it cut the throughput by about a third (2,734 -> 1,748 transfers/s, medians) while
// the p99 latency fell from 67-75 to 29-46 ms. A version that handed the gate to the longest
// waiter once it had waited 1 ms (as Go's sync.Mutex does) measured worse on both counts
// (2,147-2,325 transfers/s, p99 537-638 ms). A waiter's wait is bounded by busy_timeout, not
// by its place in a queue.
//
// The gate is not tied to a thread: a transaction may end on another thread than the one
// that began it. A thread that begins a second write transaction while its first is open
// waits here like any other writer, and fails after busy_timeout as it would in SQLite.
class writer_gate {
public:
    // Waits until no other writer of this store is inside, at most `timeout`, and enters.
    // Throws store_error (SQLITE_BUSY) when the wait times out.
    void enter(std::chrono::milliseconds timeout, const std::string& path) {
        std::unique_lock lock(mutex_);
        // wait_until a saturated deadline: wait_for(milliseconds::max()) overflows and
        // times out at once.
        const auto deadline = detail::deadline_in(detail::saturating_ns(timeout));
        if (!free_.wait_until(lock, deadline, [this] { return !inside_; })) {
            throw store_error("evbus: database '" + path +
                                  "' is locked: another transaction of this store held the "
                                  "write lock for longer than busy_timeout (" +
                                  std::to_string(timeout.count()) + " ms)",
                              SQLITE_BUSY);
        }
        inside_ = true;
    }

    void leave() noexcept {
        {
            const std::lock_guard lock(mutex_);
            inside_ = false;
        }
        free_.notify_one();
    }

private:
    std::mutex mutex_;
    std::condition_variable free_;
    bool inside_ = false;
};

struct sqlite_store::impl {
    std::string path;
    sqlite_options options;
    writer_gate writers;
    std::mutex pool_mutex;
    std::vector<std::unique_ptr<pooled_connection>> pool;  // idle connections
    sqlite_store* owner = nullptr;

    [[noreturn]] void fail_open(const std::string& cause, int rc = 0) const {
        throw store_error("evbus: cannot open database '" + path + "': " + cause, rc);
    }

    std::unique_ptr<pooled_connection> open_connection() {
        auto c = std::make_unique<pooled_connection>();
        const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
        const int rc = sqlite3_open_v2(path.c_str(), &c->db, flags, nullptr);
        if (rc != SQLITE_OK) {
            fail_open(c->db != nullptr ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc), rc);
        }
        c->sql = sql_connection(c->db);
        if (sqlite3_db_readonly(c->db, "main") == 1) {
            fail_open("the file is read-only; evbus writes its outbox there, make it writable",
                      SQLITE_READONLY);
        }
        sqlite3_extended_result_codes(c->db, 1);
        // SQLite takes an int of milliseconds (about 24.8 days); a longer timeout gets that.
        constexpr std::int64_t longest = std::numeric_limits<int>::max();
        sqlite3_busy_timeout(
            c->db, static_cast<int>(std::min<std::int64_t>(options.busy_timeout.count(), longest)));
        try {
            auto mode = c->sql.prepare("PRAGMA journal_mode=WAL");
            const std::string journal = mode.step() ? std::string(mode.column_text(0)) : "";
            if (journal != "wal") {
                fail_open("could not switch to WAL mode (journal mode is '" + journal + "')");
            }
            c->sql.exec(options.sync == sync_mode::full ? "PRAGMA synchronous=FULL"
                                                        : "PRAGMA synchronous=NORMAL");
        } catch (const store_error& e) {
            if ((e.code() & 0xff) == SQLITE_NOTADB) {
                fail_open("the file is not an SQLite database", e.code());
            }
            if ((e.code() & 0xff) == SQLITE_READONLY || (e.code() & 0xff) == SQLITE_CANTOPEN) {
                fail_open(
                    std::string("the file or its directory is not writable (") + e.what() + ")",
                    e.code());
            }
            throw;
        }
        return c;
    }

    void migrate(pooled_connection& c) {
        auto& sql = c.sql;
        sql.exec("BEGIN IMMEDIATE");
        try {
            sql.exec("CREATE TABLE IF NOT EXISTS evbus_schema(version INTEGER NOT NULL)");
            std::int64_t version = 0;
            {
                auto q = sql.prepare("SELECT version FROM evbus_schema");
                if (q.step()) {
                    version = q.column_int64(0);
                } else {
                    sql.exec("INSERT INTO evbus_schema(version) VALUES (0)");
                }
            }
            if (version < 0) {
                fail_open("its evbus schema version is " + std::to_string(version) +
                          ", which no evbus writes: the table evbus_schema is damaged");
            }
            if (version > sqlite_schema_version) {
                fail_open("its evbus schema is version " + std::to_string(version) +
                          ", newer than this library's " + std::to_string(sqlite_schema_version) +
                          "; open it with a newer evbus, or use another file");
            }
            for (auto v = static_cast<int>(version); v < sqlite_schema_version; ++v) {
                sql.exec(migrations[v]);
                auto set = sql.prepare("UPDATE evbus_schema SET version = ?1");
                set.bind(1, v + 1).run();
            }
            sql.exec("COMMIT");
        } catch (...) {
            sqlite3_exec(c.db, "ROLLBACK", nullptr, nullptr, nullptr);
            throw;
        }
    }

    std::unique_ptr<pooled_connection> acquire() {
        {
            const std::lock_guard lock(pool_mutex);
            if (!pool.empty()) {
                auto c = std::move(pool.back());
                pool.pop_back();
                return c;
            }
        }
        return open_connection();
    }

    void release(std::unique_ptr<pooled_connection> c) noexcept {
        if (!c) return;
        if (sqlite3_get_autocommit(c->db) == 0) {
            sqlite3_exec(c->db, "ROLLBACK", nullptr, nullptr, nullptr);
        }
        try {
            const std::lock_guard lock(pool_mutex);
            pool.push_back(std::move(c));
        } catch (...) {
            // Out of memory: the connection is closed instead of pooled.
        }
    }

    std::int64_t now_ns() const noexcept { return to_ns(store_clock::now()); }

    // Moves finished events with positions in (from, to] to history (or deletes them).
    void finish(pooled_connection& c, std::int64_t from, std::int64_t to) {
        if (options.history_retention.count() > 0) {
            auto archive = c.stmt(sql_archive);
            archive->bind(1, from).bind(2, to).bind(3, now_ns()).run();
        }
        auto fin = c.stmt(sql_finish);
        fin->bind(1, from).bind(2, to).run();
    }
};

namespace {

// A connection checked out of the pool for one store call or one transaction.
class lease {
public:
    explicit lease(sqlite_store::impl& s) : store_(s), conn_(s.acquire()) {}
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease() { store_.release(std::move(conn_)); }
    pooled_connection* operator->() const noexcept { return conn_.get(); }
    pooled_connection& operator*() const noexcept { return *conn_; }

private:
    sqlite_store::impl& store_;
    std::unique_ptr<pooled_connection> conn_;
};

// A writer's place in the store's writer_gate (or none, for a deferred transaction): entered
// on construction, left by leave() or on destruction.
class write_pass {
public:
    write_pass(sqlite_store::impl& s, bool enter) {
        if (!enter) return;
        s.writers.enter(s.options.busy_timeout, s.path);
        gate_ = &s.writers;
    }
    write_pass(const write_pass&) = delete;
    write_pass& operator=(const write_pass&) = delete;
    ~write_pass() { leave(); }
    void leave() noexcept {
        if (gate_ != nullptr) std::exchange(gate_, nullptr)->leave();
    }

private:
    writer_gate* gate_ = nullptr;
};

// BEGIN IMMEDIATE ... COMMIT around a store call, inside the writer gate; rolls back when the
// scope exits by throwing.
class write_scope {
public:
    write_scope(sqlite_store::impl& s, pooled_connection& c) : pass_(s, true), c_(c) {
        c_.sql.exec("BEGIN IMMEDIATE");
    }
    write_scope(const write_scope&) = delete;
    write_scope& operator=(const write_scope&) = delete;
    ~write_scope() {
        if (!done_) sqlite3_exec(c_.db, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    void commit() {
        c_.sql.exec("COMMIT");
        done_ = true;
        pass_.leave();
    }

private:
    write_pass pass_;  // destroyed after the destructor's ROLLBACK
    pooled_connection& c_;
    bool done_ = false;
};

class sqlite_transaction final : public store_transaction {
public:
    // An immediate transaction waits in the writer gate first, so it takes SQLite's write lock
    // without sleeping in the busy handler behind this store's other writers.
    sqlite_transaction(sqlite_store::impl& s, begin_mode mode)
        : store_(s), pass_(s, mode == begin_mode::immediate), conn_(s.acquire()) {
        try {
            conn_->sql.exec(mode == begin_mode::immediate ? "BEGIN IMMEDIATE" : "BEGIN");
        } catch (...) {
            store_.release(std::move(conn_));
            throw;
        }
        module_sql_ = sql_connection(conn_->db, true);
    }
    sqlite_transaction(const sqlite_transaction&) = delete;
    sqlite_transaction& operator=(const sqlite_transaction&) = delete;
    ~sqlite_transaction() override { rollback(); }

    sql_connection& sql() override {
        open();
        return module_sql_;
    }

    void append(stored_event event) override {
        open();
        events_.push_back(std::move(event));
    }

    bool complete(const delivery_ref& delivery) override {
        auto& c = active();
        {
            auto del = c.stmt(sql_delete_delivery);
            del->bind(1, delivery.position).bind(2, delivery.subscription).run();
        }
        if (c.sql.changes() != 1) return false;
        store_.finish(c, delivery.position - 1, delivery.position);
        return true;
    }

    bool mark_processed(const event_id& event, std::string_view subscription) override {
        auto& c = active();
        const auto id = event.to_chars();
        auto ins = c.stmt(sql_mark_processed);
        ins->bind(1, std::string_view(id.data(), id.size()))
            .bind(2, subscription)
            .bind(3, store_.now_ns())
            .run();
        return c.sql.changes() == 1;
    }

    void commit() override {
        auto& c = open();
        try {
            (void)active();
            if (!events_.empty()) {
                auto ins = c.stmt(sql_insert_event);
                for (const stored_event& e : events_) {
                    const auto id = e.id.to_chars();
                    const auto corr = e.correlation_id.to_chars();
                    const auto cause = e.causation_id.to_chars();
                    const auto trace = e.trace_id.to_chars();
                    ins->bind(1, std::string_view(id.data(), id.size()))
                        .bind(2, e.name)
                        .bind(3, std::int64_t{e.version})
                        .bind(4, e.key)
                        .bind(5, std::string_view(corr.data(), corr.size()))
                        .bind(6, std::string_view(cause.data(), cause.size()))
                        .bind(7, std::string_view(trace.data(), trace.size()))
                        .bind(8, e.source)
                        .bind(9, to_ns(e.occurred_at))
                        .bind(10, e.payload)
                        .run();
                }
            }
            c.sql.exec("COMMIT");
        } catch (...) {
            rollback();
            throw;
        }
        const bool notify = !events_.empty();
        events_.clear();
        store_.release(std::move(conn_));
        pass_.leave();
        if (notify) store_.owner->notify_commit();
    }

    void rollback() noexcept override {
        events_.clear();
        if (conn_) store_.release(std::move(conn_));  // release() rolls back an open transaction
        pass_.leave();
    }

private:
    pooled_connection& open() {
        if (!conn_) {
            throw store_error("evbus: the transaction is over (committed or rolled back)");
        }
        return *conn_;
    }

    // The connection, still inside its transaction: after an error that made SQLite roll it
    // back on its own, a write here would commit by itself, without the module's writes.
    pooled_connection& active() {
        auto& c = open();
        if (sqlite3_get_autocommit(c.db) != 0) {
            throw store_error(
                "evbus: database '" + store_.path +
                    "': SQLite already rolled this transaction back after an earlier error (a "
                    "constraint ON CONFLICT ROLLBACK, RAISE(ROLLBACK), a full disk or an I/O "
                    "error); nothing of it is committed",
                SQLITE_ABORT_ROLLBACK);
        }
        return c;
    }

    sqlite_store::impl& store_;
    write_pass pass_;  // before conn_: entered before the connection is taken
    std::unique_ptr<pooled_connection> conn_;
    sql_connection module_sql_{nullptr, true};  // conn_'s, for the module: refuses to run
                                                // once the transaction is over
    std::vector<stored_event> events_;
};

}  // namespace

sqlite_store::sqlite_store(std::string path, sqlite_options options)
    : impl_(std::make_unique<impl>()) {
    if (path.empty()) {
        throw std::invalid_argument("evbus: sqlite_store: the database path is empty");
    }
    if (path.find('\0') != std::string::npos) {
        throw std::invalid_argument("evbus: sqlite_store: the database path '" +
                                    path.substr(0, path.find('\0')) + "...' holds a NUL byte");
    }
    if (options.busy_timeout.count() < 0) {
        throw std::invalid_argument("evbus: sqlite_options.busy_timeout is " +
                                    std::to_string(options.busy_timeout.count()) +
                                    " ms; it must be >= 0");
    }
    if (options.history_retention.count() < 0) {
        throw std::invalid_argument("evbus: sqlite_options.history_retention is " +
                                    std::to_string(options.history_retention.count()) +
                                    " s; it must be >= 0 (0 = no history)");
    }
    impl_->path = std::move(path);
    impl_->options = options;
    impl_->owner = this;
    namespace fs = std::filesystem;
    const fs::path file(impl_->path);
    const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        impl_->fail_open("directory '" + dir.string() + "' does not exist; create it first");
    }
    struct stat st {};
    if (::stat(impl_->path.c_str(), &st) == 0 && (st.st_mode & 0222) == 0) {
        // Also refused when running as root, who could write it anyway: a file marked
        // read-only is not one evbus should change.
        impl_->fail_open(
            "the file is read-only (no write permission bits); evbus writes its "
            "outbox there, make it writable",
            SQLITE_READONLY);
    }
    auto first = impl_->open_connection();
    impl_->migrate(*first);
    impl_->release(std::move(first));
}

sqlite_store::~sqlite_store() = default;

const std::string& sqlite_store::path() const noexcept {
    return impl_->path;
}
const sqlite_options& sqlite_store::options() const noexcept {
    return impl_->options;
}
std::chrono::seconds sqlite_store::history_retention() const noexcept {
    return impl_->options.history_retention;
}

std::unique_ptr<store_transaction> sqlite_store::begin(begin_mode mode) {
    return std::make_unique<sqlite_transaction>(*impl_, mode);
}

std::vector<stored_event> sqlite_store::claim(std::size_t limit) {
    lease c(*impl_);
    std::vector<stored_event> out;
    c->sql.exec("BEGIN");  // one snapshot for the cursor and the rows
    std::int64_t cursor = 0;
    {
        auto q = c->stmt(sql_cursor);
        if (q->step()) cursor = q->column_int64(0);
    }
    {
        auto q = c->stmt(sql_claim);
        q->bind(1, cursor).bind(2, static_cast<std::int64_t>(limit));
        while (q->step()) read_event(*q, out.emplace_back());
    }
    c->sql.exec("COMMIT");
    return out;
}

void sqlite_store::confirm(const dispatch_batch& batch) {
    lease c(*impl_);
    write_scope tx(*impl_, *c);
    std::int64_t before = 0;
    {
        auto q = c->stmt(sql_cursor);
        if (q->step()) before = q->column_int64(0);
    }
    {
        auto add = c->stmt(sql_add_delivery);
        for (const delivery_ref& d : batch.deliveries) {
            add->bind(1, d.position).bind(2, d.subscription).run();
        }
    }
    if (!batch.rejected.empty()) {
        auto add = c->stmt(sql_add_dead_letter);
        const auto now = impl_->now_ns();
        for (const rejected_event& r : batch.rejected) {
            add->bind(1, r.position)
                .bind(2, std::string_view{})
                .bind(3, std::int64_t{0})
                .bind(4, r.reason)
                .bind(5, now)
                .bind(6, now)
                .run();
        }
    }
    {
        auto adv = c->stmt(sql_advance_cursor);
        adv->bind(1, batch.through).run();
    }
    // Events no subscription wants are finished at once.
    impl_->finish(*c, before, batch.through);
    tx.commit();
}

std::vector<pending_delivery> sqlite_store::unfinished(const std::optional<delivery_ref>& after,
                                                       std::size_t limit) {
    lease c(*impl_);
    std::vector<pending_delivery> out;
    auto q = c->stmt(sql_unfinished);
    q->bind(1, after ? after->position : std::int64_t{0})
        .bind(2, after ? std::string_view(after->subscription) : std::string_view{})
        .bind(3, static_cast<std::int64_t>(limit));
    while (q->step()) {
        auto& p = out.emplace_back();
        read_event(*q, p.event);
        p.subscription = std::string(q->column_text(11));
    }
    return out;
}

void sqlite_store::complete(std::span<const delivery_ref> deliveries) {
    if (deliveries.empty()) return;
    lease c(*impl_);
    write_scope tx(*impl_, *c);
    std::int64_t low = INT64_MAX;
    std::int64_t high = 0;
    {
        auto del = c->stmt(sql_delete_delivery);
        for (const delivery_ref& d : deliveries) {
            del->bind(1, d.position).bind(2, d.subscription).run();
            low = std::min(low, d.position);
            high = std::max(high, d.position);
        }
    }
    // One range statement instead of one per event: a batch's positions are nearly
    // contiguous, and finishing an event that was not in the batch but is finished anyway
    // is correct too.
    impl_->finish(*c, std::max<std::int64_t>(low, 1) - 1, high);  // positions start at 1
    tx.commit();
}

std::optional<std::int64_t> sqlite_store::dead_letter(const delivery_ref& delivery,
                                                      std::uint32_t attempts,
                                                      const std::string& error,
                                                      store_clock::time_point first_failure,
                                                      store_clock::time_point last_failure) {
    lease c(*impl_);
    write_scope tx(*impl_, *c);
    {
        auto del = c->stmt(sql_delete_delivery);
        del->bind(1, delivery.position).bind(2, delivery.subscription).run();
    }
    if (c->sql.changes() != 1) return std::nullopt;  // not pending: nothing to record
    {
        auto add = c->stmt(sql_add_dead_letter);
        add->bind(1, delivery.position)
            .bind(2, delivery.subscription)
            .bind(3, std::int64_t{attempts})
            .bind(4, error)
            .bind(5, to_ns(first_failure))
            .bind(6, to_ns(last_failure))
            .run();
    }
    const std::int64_t id = c->sql.last_insert_rowid();
    tx.commit();
    return id;
}

namespace {

std::vector<dead_letter_entry> query_dead_letters(pooled_connection& c,
                                                  const dead_letter_filter& filter) {
    std::vector<dead_letter_entry> out;
    auto q = c.stmt(sql_dead_letters);
    if (filter.subscription) q->bind(1, *filter.subscription);
    if (filter.key) q->bind(2, *filter.key);
    if (filter.event_name) q->bind(3, *filter.event_name);
    // An id range rather than "?4 IS NULL OR l.id = ?4": SQLite plans a statement before its
    // parameters are bound, and only a plain comparison on the rowid lets it look one letter
    // up by key instead of scanning the table.
    q->bind(4, filter.id.value_or(std::numeric_limits<std::int64_t>::min()));
    q->bind(6, filter.id.value_or(std::numeric_limits<std::int64_t>::max()));
    q->bind(5, static_cast<std::int64_t>(filter.limit));
    while (q->step()) {
        auto& d = out.emplace_back();
        read_event(*q, d.event);
        d.id = q->column_int64(11);
        d.subscription = std::string(q->column_text(12));
        d.attempts = static_cast<std::uint32_t>(q->column_int64(13));
        d.error = std::string(q->column_text(14));
        d.first_failure = from_ns(q->column_int64(15));
        d.last_failure = from_ns(q->column_int64(16));
    }
    return out;
}

dead_letter_filter by_id(std::int64_t id) {
    dead_letter_filter f;
    f.id = id;
    return f;
}

}  // namespace

std::vector<dead_letter_entry> sqlite_store::dead_letters(const dead_letter_filter& filter) {
    lease c(*impl_);
    return query_dead_letters(*c, filter);
}

std::optional<pending_delivery> sqlite_store::requeue(std::int64_t dead_letter_id) {
    lease c(*impl_);
    write_scope tx(*impl_, *c);
    auto found = query_dead_letters(*c, by_id(dead_letter_id));
    if (found.empty()) return std::nullopt;
    {
        auto del = c->stmt(sql_delete_dead_letter);
        del->bind(1, dead_letter_id).run();
    }
    // A rejected row gets the delivery "" (decode again), so a crash before it is decoded
    // leaves it pending instead of orphaned.
    {
        auto add = c->stmt(sql_add_delivery);
        add->bind(1, found.front().event.position).bind(2, found.front().subscription).run();
    }
    tx.commit();
    return pending_delivery{std::move(found.front().event), std::move(found.front().subscription)};
}

bool sqlite_store::discard(std::int64_t dead_letter_id) {
    lease c(*impl_);
    write_scope tx(*impl_, *c);
    auto found = query_dead_letters(*c, by_id(dead_letter_id));
    if (found.empty()) return false;
    {
        auto del = c->stmt(sql_delete_dead_letter);
        del->bind(1, dead_letter_id).run();
    }
    const auto p = found.front().event.position;
    impl_->finish(*c, p - 1, p);
    tx.commit();
    return true;
}

std::vector<stored_event> sqlite_store::history(const history_query& query) {
    lease c(*impl_);
    std::vector<stored_event> out;
    auto q = c->stmt(sql_history);
    q->bind(1, query.after_position);
    if (query.key) q->bind(2, *query.key);
    q->bind(3, to_ns(query.from))
        .bind(4, to_ns(query.to))
        .bind(5, static_cast<std::int64_t>(query.limit));
    while (q->step()) read_event(*q, out.emplace_back());
    return out;
}

std::size_t sqlite_store::prune(store_clock::time_point cutoff) {
    lease c(*impl_);
    write_scope tx(*impl_, *c);
    std::size_t n = 0;
    auto h = c->sql.prepare("DELETE FROM evbus_history WHERE completed_at < ?1");
    h.bind(1, to_ns(cutoff)).run();
    n += static_cast<std::size_t>(c->sql.changes());
    auto i = c->sql.prepare("DELETE FROM evbus_inbox WHERE at < ?1");
    i.bind(1, to_ns(cutoff)).run();
    n += static_cast<std::size_t>(c->sql.changes());
    tx.commit();
    return n;
}

}  // namespace evbus
