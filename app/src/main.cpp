// payments-demo — the evbus example application: transfers between wallets, receipts and
// analytics, three modules that talk only through events.
//
//     payments-demo                       # = payments-demo run, with the defaults
//     payments-demo run --transfers 50000 --users 500
//     payments-demo run --fail-handler notification --fail-rate 0.1 --attempts 3
//     payments-demo run --crash-after 3000  &&  payments-demo run     # crash, then resume
//     payments-demo dead-letters list | requeue --all | discard --id 7
//     payments-demo replay analytics
//     payments-demo stats
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <string>
#include <system_error>

#include <CLI/CLI.hpp>

#include "commands.hpp"

namespace {

using namespace payments::app;

const std::map<std::string, std::string> handler_names{
    {"notification", std::string(payments::notification::receipts_subscription)},
    {"notification.receipts", std::string(payments::notification::receipts_subscription)},
    {"notification.sender", std::string(payments::notification::sender_subscription)},
    {"analytics", std::string(payments::analytics::totals_subscription)},
    {"analytics.user-totals", std::string(payments::analytics::totals_subscription)},
};

// CLI11 reads integers with strtoll/strtoull in base 0, so "010" would be 8 and "0x10" 16,
// and it clamps a value past the type's range. Counts and ids here are decimal: this
// transform, run before the option's checks and its conversion, accepts digits only (no
// sign), drops leading zeros, and refuses a value that does not fit 64 bits.
const CLI::Validator decimal(
    [](std::string& text) -> std::string {
        std::uint64_t value = 0;
        const char* last = text.data() + text.size();
        const auto [end, ec] = std::from_chars(text.data(), last, value);
        if (ec == std::errc::result_out_of_range) return "'" + text + "' is too large";
        if (text.empty() || ec != std::errc{} || end != last) {
            return "'" + text + "' is not a decimal number";
        }
        text = std::to_string(value);
        return {};
    },
    "DECIMAL");

// CLI::Range lets NaN through (no comparison with it is true); a rate must be a number.
const CLI::Validator finite_number(
    [](std::string& text) -> std::string {
        double value = 0;
        const char* last = text.data() + text.size();
        const auto [end, ec] = std::from_chars(text.data(), last, value);
        if (ec != std::errc{} || end != last || !std::isfinite(value)) {
            return "'" + text + "' is not a finite number";
        }
        return {};
    },
    "FINITE");

void add_selection_options(CLI::App& cmd, dead_letter_selection& sel, bool& all,
                           bool needs_choice) {
    cmd.add_option("--id", sel.ids, "a dead letter's id (repeatable)")
        ->transform(decimal)
        ->check(CLI::PositiveNumber);
    cmd.add_option("--subscription", sel.subscription, "only this subscription's dead letters");
    if (needs_choice) {
        cmd.add_flag("--all", all, "every dead letter (of --subscription, if given)");
    } else {
        cmd.add_option("--limit", sel.limit, "list at most this many")
            ->transform(decimal)
            ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}));
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{
        "payments-demo: transfers between wallets with receipts and analytics, three modules "
        "that talk only through evbus events kept in a SQLite outbox"};
    cli.require_subcommand(0, 1);
    cli.fallthrough();  // --data-dir and --sync may also follow the subcommand

    settings s;
    std::string data_dir = "payments-data";
    std::string sync = "normal";
    cli.add_option("--data-dir", data_dir,
                   "working directory for the database (payments.db), created if absent")
        ->capture_default_str();
    cli.add_option("--sync", sync,
                   "SQLite durability: normal survives a process crash, full also a power loss "
                   "(one fsync per transaction)")
        ->check(CLI::IsMember({"full", "normal"}))
        ->capture_default_str();

    run_options run;
    std::string progress = "auto";
    std::uint32_t attempts = 3;
    std::uint32_t timeout_ms = 0;
    std::uint32_t slow_ms = 0;
    std::uint64_t crash_after = 0;
    auto* run_cmd = cli.add_subcommand("run", "run transfers and print the report (the default)");
    run_cmd->add_option("--transfers,-n", run.transfers, "transfers to make")
        ->transform(decimal)
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{10'000'000}))
        ->capture_default_str();
    run_cmd->add_option("--users,-u", run.users, "simulated users, one wallet each")
        ->transform(decimal)
        ->check(CLI::Range(std::uint32_t{2}, std::uint32_t{1'000'000}))
        ->capture_default_str();
    run_cmd
        ->add_option("--shards,-s", s.shards, "engine shards (worker threads) running the handlers")
        ->transform(decimal)
        ->check(CLI::Range(std::size_t{1}, std::size_t{256}))
        ->capture_default_str();
    run_cmd->add_option("--clients", run.clients, "threads sending transfers")
        ->transform(decimal)
        ->check(CLI::Range(std::uint32_t{1}, std::uint32_t{64}))
        ->capture_default_str();
    run_cmd->add_option("--seed", run.seed, "seed of the planned transfers and of the faults")
        ->transform(decimal)
        ->capture_default_str();
    run_cmd
        ->add_option("--attempts", attempts, "handler attempts per delivery before a dead letter")
        ->transform(decimal)
        ->check(CLI::Range(std::uint32_t{1}, std::uint32_t{100}))
        ->capture_default_str();
    auto* fail_handler = run_cmd
                             ->add_option("--fail-handler", run.faults.fail_subscription,
                                          "inject failures into this handler")
                             ->transform(CLI::CheckedTransformer(handler_names));
    run_cmd
        ->add_option("--fail-rate", run.faults.fail_rate,
                     "probability that a call of --fail-handler fails")
        ->check(finite_number)
        ->check(CLI::Range(0.0, 1.0))
        ->needs(fail_handler);
    auto* slow_handler =
        run_cmd
            ->add_option("--slow-handler", run.faults.slow_subscription, "make this handler slow")
            ->transform(CLI::CheckedTransformer(handler_names));
    auto* slow_ms_opt = run_cmd->add_option("--slow-ms", slow_ms, "how long a slow call takes")
                            ->transform(decimal)
                            ->check(CLI::Range(std::uint32_t{1}, std::uint32_t{60'000}))
                            ->needs(slow_handler);
    run_cmd
        ->add_option("--slow-rate", run.faults.slow_rate,
                     "probability that a call of --slow-handler is slow")
        ->check(finite_number)
        ->check(CLI::Range(0.0, 1.0))
        ->needs(slow_handler)
        ->needs(slow_ms_opt);
    run_cmd
        ->add_option("--timeout-ms", timeout_ms,
                     "each handler call's time budget; a call over it fails (0: none)")
        ->transform(decimal)
        ->check(CLI::Range(std::uint32_t{0}, std::uint32_t{600'000}));
    run_cmd
        ->add_option("--crash-after", crash_after,
                     "kill this process (SIGKILL) after this many transfers; `run` resumes")
        ->transform(decimal)
        ->check(CLI::PositiveNumber);
    run_cmd
        ->add_option("--progress", progress,
                     "live progress line: auto (on a terminal), always, never")
        ->check(CLI::IsMember({"auto", "always", "never"}))
        ->capture_default_str();

    dead_letter_selection sel;
    bool all = false;
    auto* dl = cli.add_subcommand("dead-letters", "list, requeue or discard dead letters");
    dl->require_subcommand(1);
    auto* dl_list = dl->add_subcommand("list", "show dead letters");
    add_selection_options(*dl_list, sel, all, false);
    auto* dl_requeue = dl->add_subcommand("requeue", "deliver dead letters again, then check");
    add_selection_options(*dl_requeue, sel, all, true);
    auto* dl_discard = dl->add_subcommand("discard", "drop dead letters for good");
    add_selection_options(*dl_discard, sel, all, true);

    std::string projection;
    bool replace = false;
    auto* replay =
        cli.add_subcommand("replay", "rebuild a projection from the event history and compare");
    replay->add_option("projection", projection, "the projection to rebuild: analytics")
        ->required()
        ->check(CLI::IsMember({"analytics"}));
    replay->add_flag("--replace", replace, "make the rebuilt projection the live one");

    auto* stats = cli.add_subcommand("stats", "the latest run's metrics and the database's state");

    try {
        cli.parse(argc, argv);
        if ((dl_requeue->parsed() || dl_discard->parsed()) && sel.ids.empty() && !all) {
            throw CLI::ValidationError(
                "dead-letters", "name the dead letters with --id <id> (repeatable) or --all");
        }
        if ((dl_requeue->parsed() || dl_discard->parsed()) && !sel.ids.empty() && all) {
            throw CLI::ValidationError("dead-letters", "give --id or --all, not both");
        }
    } catch (const CLI::ParseError& e) {
        const int code = cli.exit(e);
        return code == 0 ? exit_ok : exit_startup;
    }

    s.data_dir = data_dir;
    s.sync = sync == "normal" ? evbus::sync_mode::normal : evbus::sync_mode::full;
    s.attempts = attempts;
    s.handler_timeout = std::chrono::milliseconds(timeout_ms);
    run.faults.slow_for = std::chrono::milliseconds(slow_ms);
    run.faults.budget = s.handler_timeout;
    run.faults.seed = run.seed;
    if (crash_after > 0) run.crash_after = crash_after;
    run.progress = progress == "always" || (progress == "auto" && ::isatty(STDERR_FILENO) == 1);

    try {
        if (dl_list->parsed()) return list_dead_letters(s, sel, std::cout);
        if (dl_requeue->parsed()) return requeue_dead_letters(s, sel, std::cout);
        if (dl_discard->parsed()) return discard_dead_letters(s, sel, std::cout);
        if (replay->parsed()) return replay_analytics(s, replace, std::cout);
        if (stats->parsed()) return show_stats(s, std::cout);
        return run_command(s, run, std::cout, std::cerr);
    } catch (const startup_error& e) {
        std::cerr << "payments-demo: " << e.what() << '\n';
        return exit_startup;
    } catch (const std::exception& e) {
        std::cerr << "payments-demo: unexpected error: " << e.what() << '\n';
        return exit_error;
    }
}
