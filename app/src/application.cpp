#include "application.hpp"

#include <system_error>
#include <utility>

#include <contract/module_schema.hpp>

namespace payments::app {

namespace {

evbus::sqlite_options store_options(const settings& s) {
    evbus::sqlite_options o;
    o.sync = s.sync;
    // Keep finished events as history so `replay analytics` can rebuild the projection.
    o.history_retention = std::chrono::hours(24 * 365);
    return o;
}

// Runs a wiring step, turning the errors a user can act on into startup_error.
template <class F>
auto or_startup_error(const std::filesystem::path& db, F&& step) {
    try {
        return step();
    } catch (const contract::module_schema_error& e) {
        throw startup_error("database '" + db.string() + "': " + e.what());
    } catch (const evbus::store_error& e) {
        throw startup_error(e.what());
    }
}

evbus::dispatcher_options dispatcher_options(const settings& s) {
    evbus::dispatcher_options o;
    o.shards = s.shards;
    return o;
}

}  // namespace

// ---- latency_probe ---------------------------------------------------------------------------

void latency_probe::record(std::chrono::nanoseconds d) {
    const std::lock_guard lock(mutex_);
    histogram_.record(d);
}

evbus::latency_summary latency_probe::summarize() const {
    return histogram_.summary();
}

// ---- receipt_file ----------------------------------------------------------------------------

receipt_file::receipt_file(std::filesystem::path path)
    : path_(std::move(path)), out_(path_, std::ios::app) {
    if (!out_) throw startup_error("cannot open the receipts file '" + path_.string() + "'");
}

void receipt_file::send(const contract::receipt_sent& r) {
    const std::lock_guard lock(mutex_);
    auto& out = out_;
    out << "receipt transfer=" << r.transfer_id << " user=" << r.user_id << " channel=" << r.channel
        << " at_ms=" << r.at_ms << '\n';
    out.flush();
    if (!out) {
        out.clear();  // let the retry try again
        throw std::runtime_error("cannot append to the receipts file '" + path_.string() + "'");
    }
    ++sent_;
}

std::uint64_t receipt_file::sent() const {
    const std::lock_guard lock(mutex_);
    return sent_;
}

// ---- application -----------------------------------------------------------------------------

std::filesystem::path application::prepare_data_dir(const std::filesystem::path& dir) {
    if (dir.empty()) throw startup_error("the data directory is empty; name one with --data-dir");
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
        throw startup_error("cannot create the data directory '" + dir.string() +
                            "': " + ec.message());
    }
    if (!std::filesystem::is_directory(dir, ec)) {
        throw startup_error("the data directory '" + dir.string() + "' is not a directory");
    }
    return dir / database_file;
}

application::application(settings s)
    : settings_(std::move(s)),
      db_path_(prepare_data_dir(settings_.data_dir)),
      sqlite_(or_startup_error(
          db_path_,
          [&] { return evbus::sqlite_store(db_path_.string(), store_options(settings_)); })),
      counting_(sqlite_),
      dispatcher_(bus_, counting_, dispatcher_options(settings_)),
      receipt_file_(settings_.sink
                        ? nullptr
                        : std::make_shared<receipt_file>(settings_.data_dir / "receipts.log")),
      started_at_(std::chrono::system_clock::now()),
      transfers_(or_startup_error(db_path_, [&] { return transfer::wire(counting_); })),
      notification_(or_startup_error(db_path_,
                                     [&] {
                                         notification::options o;
                                         o.sink = settings_.sink ? settings_.sink : receipt_file_;
                                         o.receipts = delivery_options();
                                         o.sender = delivery_options();
                                         return notification::wire(wiring(), std::move(o));
                                     })),
      analytics_(or_startup_error(db_path_,
                                  [&] {
                                      analytics::options o;
                                      o.delivery = delivery_options();
                                      return analytics::wire(wiring(), o);
                                  })),
      latency_subscription_(bus_.subscribe(
          std::string(latency_subscription),
          [this](const contract::money_transferred&, const evbus::metadata& meta) {
              // Events from before this process (a resumed run) would measure the downtime.
              if (meta.occurred_at >= started_at_) {
                  latency_.record(std::chrono::system_clock::now() - meta.occurred_at);
              }
          })) {}

application::~application() {
    stop();
}

evbus::subscribe_options application::delivery_options() const {
    evbus::subscribe_options o;
    o.retry.max_attempts = settings_.attempts;
    o.retry.initial_delay = settings_.retry_delay;
    o.retry.max_delay = std::chrono::milliseconds(200);
    o.timeout = settings_.handler_timeout;
    return o;
}

contract::wiring application::wiring() noexcept {
    return contract::wiring{bus_, dispatcher_, counting_, settings_.probe};
}

void application::start() {
    dispatcher_.start();
    running_ = true;
}

bool application::drain(std::chrono::nanoseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    // The dispatcher's drain covers what was committed before it began; handlers append
    // events of their own meanwhile (receiptSent, userTransferUpdated). Done after a drain
    // during which nothing new was committed.
    for (;;) {
        const auto left = deadline - std::chrono::steady_clock::now();
        if (left <= decltype(left)::zero()) return false;
        const std::uint64_t before = counting_.appended();
        if (!dispatcher_.drain(left)) return false;
        if (counting_.appended() == before && counting_.claim(1).empty()) return true;
    }
}

void application::stop() noexcept {
    if (!running_) return;
    dispatcher_.stop();
    running_ = false;
}

std::uint64_t application::receipts_sent() const {
    return receipt_file_ ? receipt_file_->sent() : 0;
}

}  // namespace payments::app
