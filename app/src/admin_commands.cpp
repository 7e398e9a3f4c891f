// The operator's commands: dead letters, the analytics replay, and the metrics snapshot.
#include <chrono>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <ostream>

#include <nlohmann/json.hpp>

#include "checks.hpp"
#include "commands.hpp"

namespace payments::app {

namespace {

std::string when(evbus::store_clock::time_point t) {
    const std::time_t secs = evbus::store_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
    return buf;
}

std::vector<evbus::dead_letter_entry> select(application& app, const dead_letter_selection& sel) {
    evbus::dead_letter_filter f;
    f.subscription = sel.subscription;
    f.limit = sel.ids.empty() ? sel.limit : 1'000'000'000;
    auto all = app.store().dead_letters(f);
    if (sel.ids.empty()) return all;
    std::vector<evbus::dead_letter_entry> out;
    for (auto& d : all) {
        for (const auto id : sel.ids) {
            if (d.id == id) out.push_back(std::move(d));
        }
    }
    return out;
}

// Ids the user named that are not dead letters (any more): worth saying.
void report_unknown(const dead_letter_selection& sel,
                    const std::vector<evbus::dead_letter_entry>& found, std::ostream& out) {
    for (const auto id : sel.ids) {
        bool seen = false;
        for (const auto& d : found) seen = seen || d.id == id;
        if (!seen) out << "  no dead letter with id " << id << '\n';
    }
}

void print_checks(const verification& v, std::ostream& out) {
    out << "checks\n";
    for (const auto& c : v.checks) {
        out << "  [" << (c.ok ? "ok" : "FAILED") << "] " << c.name << ": " << c.detail << '\n';
    }
}

}  // namespace

int list_dead_letters(const settings& s, const dead_letter_selection& sel, std::ostream& out) {
    application app(s);
    const auto letters = select(app, sel);
    out << grouped(letters.size()) << " dead letter" << (letters.size() == 1 ? "" : "s") << '\n';
    for (const auto& d : letters) {
        out << "  #" << d.id << "  "
            << (d.subscription.empty() ? "(no subscription)" : d.subscription) << "  "
            << d.event.name << " v" << d.event.version << "  key " << d.event.key << "  event "
            << d.event.id.to_string() << '\n'
            << "      " << d.attempts << " attempt" << (d.attempts == 1 ? "" : "s")
            << ", first failure " << when(d.first_failure) << ", last " << when(d.last_failure)
            << "\n      error: " << d.error << '\n';
    }
    report_unknown(sel, letters, out);
    return sel.ids.empty() || letters.size() == sel.ids.size() ? exit_ok : exit_check_failed;
}

int requeue_dead_letters(const settings& s, const dead_letter_selection& sel, std::ostream& out) {
    application app(s);
    // Pending again in the database before delivery starts: start() resubmits each requeued
    // delivery exactly like one a crash left unfinished, through the same path.
    const auto letters = select(app, sel);
    std::size_t requeued = 0;
    for (const auto& d : letters) requeued += app.store().requeue(d.id) ? 1 : 0;
    app.start();
    const bool drained = app.drain(std::chrono::minutes(5));
    app.stop();
    const auto stats = app.delivery().stats();
    out << "requeued " << grouped(requeued) << " dead letter" << (requeued == 1 ? "" : "s") << "; "
        << grouped(stats.delivered) << " handler calls succeeded, " << grouped(stats.dead_lettered)
        << " dead-lettered again\n";
    report_unknown(sel, letters, out);
    const auto v = verify(app);
    print_checks(v, out);
    if (!drained) out << "  [FAILED] delivery drained within 300 s\n";
    const bool ok = drained && v.passed() && (sel.ids.empty() || letters.size() == sel.ids.size());
    out << (ok ? "all checks passed\n" : "some checks FAILED\n");
    return ok ? exit_ok : exit_check_failed;
}

int discard_dead_letters(const settings& s, const dead_letter_selection& sel, std::ostream& out) {
    application app(s);
    const auto letters = select(app, sel);
    std::size_t discarded = 0;
    for (const auto& d : letters) discarded += app.delivery().discard(d.id) ? 1 : 0;
    out << "discarded " << grouped(discarded) << " dead letter" << (discarded == 1 ? "" : "s")
        << "; their deliveries will not run\n";
    report_unknown(sel, letters, out);
    return sel.ids.empty() || letters.size() == sel.ids.size() ? exit_ok : exit_check_failed;
}

int replay_analytics(const settings& s, bool replace, std::ostream& out) {
    application app(s);  // not started: the replay must not race live deliveries
    const auto pending = app.store().unfinished(std::nullopt, 1);
    evbus::dead_letter_filter f;
    f.subscription = std::string(analytics::totals_subscription);
    f.limit = 1;
    const bool analytics_dead = !app.store().dead_letters(f).empty();

    const auto r = analytics::rebuild(app.wiring(), replace);
    out << "rebuilt the analytics projection from " << grouped(r.events)
        << " transfer.moneyTransferred events in the history: " << grouped(r.rebuilt.size())
        << " users\n";
    for (const auto& e : r.errors) out << "  unreadable history row: " << e << '\n';
    if (r.equal()) {
        out << "  equal to the live projection\n";
    } else {
        out << "  differs from the live projection for " << grouped(r.differences.size())
            << " users:\n";
        std::size_t shown = 0;
        for (const auto& d : r.differences) {
            if (++shown > 10) {
                out << "    ...\n";
                break;
            }
            out << "    " << d << '\n';
        }
        if (!pending.empty() || analytics_dead) {
            out << "  note: events still pending or dead-lettered are not in the history yet; "
                   "requeue and run again\n";
        }
    }
    if (r.replaced) out << "  the live projection was replaced by the rebuilt one\n";
    return r.equal() || r.replaced ? exit_ok : exit_check_failed;
}

int show_stats(const settings& s, std::ostream& out) {
    application app(s);
    const auto path = metrics_file(s);
    std::ifstream f(path);
    if (f) {
        out << "metrics of the latest run (" << path.string() << "):\n";
        try {
            const auto j = nlohmann::json::parse(f);
            out << j.dump(2) << '\n';
        } catch (const nlohmann::json::exception& e) {
            out << "  (unreadable: " << e.what() << ")\n";
        }
    } else {
        out << "no run has recorded metrics in " << s.data_dir.string() << " yet\n";
    }
    const auto v = verify(app);
    out << "database " << app.database_path().string() << ": " << grouped(v.transfers)
        << " transfers, " << grouped(v.receipts) << " receipts, " << grouped(v.users)
        << " users with transfers, " << grouped(v.dead_letter_total()) << " dead letters\n";
    print_checks(v, out);
    return v.passed() ? exit_ok : exit_check_failed;
}

}  // namespace payments::app
