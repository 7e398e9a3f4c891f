// application — the composition root: the one place that knows every module.
//
// It opens the database (creating the data directory), wires transfer, notification and
// analytics to one bus, one outbox dispatcher and one store, and adds the program's own
// latency probe. Modules never see each other; they meet only through contract::events.
//
//     application app(settings);       // opens, migrates, subscribes
//     app.start();                     // resubmits unfinished deliveries, follows the outbox
//     app.transfers().transfer(...);   // the only module with an API besides its events
//     app.drain(timeout);              // everything committed so far is handled
//
// Thread-safety: transfers(), drain(), metrics and the store are thread-safe; start() and
// stop() are called by the owning thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <analytics/analytics.hpp>
#include <contract/wiring.hpp>
#include <evbus/latency_histogram.hpp>
#include <evbus/sqlite_store.hpp>
#include <notification/notification.hpp>
#include <transfer/transfer.hpp>

#include "counting_store.hpp"

namespace payments::app {

/// The program cannot start: a bad data directory, a database it cannot use.
class startup_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct settings {
    std::filesystem::path data_dir = "payments-data";
    /// NORMAL: a commit survives a crash of the process (what the demo's kills test), not
    /// necessarily a power loss; FULL adds one fsync per transaction.
    evbus::sync_mode sync = evbus::sync_mode::normal;
    std::uint32_t attempts = 3;                    ///< per delivery, first one included
    std::chrono::milliseconds retry_delay{2};      ///< before the first retry; doubles
    std::chrono::milliseconds handler_timeout{0};  ///< zero: no time budget
    std::size_t shards = 2;         ///< the engine's worker threads that run the handlers
    contract::handler_probe probe;  ///< fault injection; null: none
    std::shared_ptr<notification::receipt_sink> sink;  ///< null: receipts.log in data_dir
};

/// Post-to-handler latency of transfer.moneyTransferred: from the append (when the event is
/// stamped, before its commit) to the start of a handler call, in evbus's log-linear
/// histogram (fixed 4 KiB; a quantile is a bucket's upper bound, at most 12.5 % above the
/// true value). Thread-safe: handlers may record from several threads.
class latency_probe {
public:
    void record(std::chrono::nanoseconds d);
    [[nodiscard]] evbus::latency_summary summarize() const;

private:
    mutable std::mutex mutex_;  // latency_histogram has one writer; this makes it any thread
    evbus::latency_histogram histogram_;
};

/// The receipts sink of the program: one line per receipt appended to a file.
class receipt_file final : public notification::receipt_sink {
public:
    explicit receipt_file(std::filesystem::path path);
    void send(const contract::receipt_sent& receipt) override;
    [[nodiscard]] std::uint64_t sent() const;
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
    mutable std::mutex mutex_;
    std::ofstream out_;
    std::uint64_t sent_ = 0;
};

inline constexpr std::string_view latency_subscription = "app.latency";
inline constexpr const char* database_file = "payments.db";

class application {
public:
    /// Opens or creates the database in settings.data_dir and wires the modules. Throws
    /// startup_error naming the path and the cause.
    explicit application(settings s);
    application(const application&) = delete;
    application& operator=(const application&) = delete;
    ~application();

    /// Starts delivery: unfinished deliveries of an earlier process first.
    void start();
    /// Waits until every committed event, including those its handlers append, is handled
    /// (completed or dead-lettered). False on timeout.
    bool drain(std::chrono::nanoseconds timeout);
    /// Stops delivery; what is pending stays pending in the database.
    void stop() noexcept;

    [[nodiscard]] transfer::transfer_service& transfers() noexcept { return transfers_; }
    [[nodiscard]] contract::dispatcher& delivery() noexcept { return dispatcher_; }
    [[nodiscard]] evbus::event_store& store() noexcept { return counting_; }
    [[nodiscard]] contract::wiring wiring() noexcept;
    [[nodiscard]] const settings& config() const noexcept { return settings_; }
    [[nodiscard]] const std::filesystem::path& database_path() const noexcept { return db_path_; }
    [[nodiscard]] std::uint64_t events_appended() const noexcept { return counting_.appended(); }
    [[nodiscard]] const latency_probe& latency() const noexcept { return latency_; }
    /// Receipts handed to the program's file sink by this process (0 with a custom sink).
    [[nodiscard]] std::uint64_t receipts_sent() const;

private:
    static std::filesystem::path prepare_data_dir(const std::filesystem::path& dir);
    evbus::subscribe_options delivery_options() const;

    settings settings_;
    std::filesystem::path db_path_;
    evbus::sqlite_store sqlite_;
    counting_store counting_;
    contract::bus bus_;
    contract::dispatcher dispatcher_;
    std::shared_ptr<receipt_file> receipt_file_;
    latency_probe latency_;
    std::chrono::system_clock::time_point started_at_;
    transfer::transfer_service transfers_;
    notification::module notification_;
    analytics::module analytics_;
    evbus::subscription latency_subscription_;
    bool running_ = false;
};

}  // namespace payments::app
