// The real program, run as a process: argument and database errors, and crash-and-resume
// with SIGKILL at random points.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <random>

#include <contract/wiring.hpp>
#include <evbus/sqlite_store.hpp>

#include "application.hpp"
#include "checks.hpp"
#include "child_process.hpp"
#include "scratch_dir.hpp"

namespace {

using payments_test::exit_info;
using payments_test::run_program;
using payments_test::scratch_dir;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

const std::string program = PAYMENTS_DEMO_PROGRAM;

exit_info demo(const scratch_dir& dir, std::vector<std::string> args) {
    std::vector<std::string> all{"--data-dir", dir.file("data"), "--sync", "normal"};
    all.insert(all.end(), args.begin(), args.end());
    return run_program(program, all, dir.file("output.txt"));
}

void exec_sql(const std::string& db, const std::string& sql) {
    evbus::sqlite_store store(db);
    payments::contract::unit_of_work uow(store);
    uow.sql().exec(sql);
    uow.commit();
}

}  // namespace

TEST_CASE("program: bad arguments get a clear error naming the argument, exit status 2",
          "[app][program]") {
    scratch_dir dir("args");
    struct bad {
        std::vector<std::string> args;
        const char* says;
    };
    const bad cases[] = {
        {{"run", "--users", "1"}, "--users"},
        {{"run", "--transfers", "0"}, "--transfers"},
        {{"run", "--transfers", "many"}, "many"},
        {{"run", "--fail-rate", "0.1"}, "--fail-rate requires --fail-handler"},
        {{"run", "--fail-handler", "mailer", "--fail-rate", "0.1"}, "mailer"},
        {{"run", "--fail-handler", "notification", "--fail-rate", "2"}, "--fail-rate"},
        {{"run", "--slow-handler", "analytics", "--slow-rate", "0.5"},
         "--slow-rate requires --slow-ms"},
        {{"run", "--sync", "sometimes"}, "sometimes"},
        {{"run", "--transfers", "0x10"}, "--transfers: '0x10' is not a decimal number"},
        {{"run", "--seed", "-1"}, "--seed: '-1' is not a decimal number"},
        {{"run", "--seed", "99999999999999999999999"},
         "--seed: '99999999999999999999999' is too large"},
        {{"run", "--fail-handler", "notification", "--fail-rate", "nan"},
         "--fail-rate: 'nan' is not a finite number"},
        {{"dead-letters"}, "subcommand"},
        {{"dead-letters", "requeue"}, "name the dead letters with --id <id> (repeatable) or --all"},
        {{"dead-letters", "discard", "--id", "3", "--all"}, "give --id or --all, not both"},
        {{"replay", "billing"}, "billing"},
        {{"frobnicate"}, "frobnicate"},
    };
    for (const auto& c : cases) {
        const auto r = demo(dir, c.args);
        INFO(r.output);
        CHECK(r.exited);
        CHECK(r.status == 2);
        CHECK_THAT(r.output, Catch::Contains(c.says));
    }
    CHECK_FALSE(std::filesystem::exists(dir.path() / "data"));  // nothing was created
}

TEST_CASE("program: a data directory that cannot be created is refused, naming the path",
          "[app][program]") {
    scratch_dir dir("unwritable");
    std::ofstream(dir.file("a-file")) << "not a directory\n";
    const auto r = run_program(program, {"--data-dir", dir.file("a-file") + "/data", "run"},
                               dir.file("output.txt"));
    INFO(r.output);
    CHECK(r.exited);
    CHECK(r.status == 2);
    CHECK_THAT(r.output, Catch::Contains("cannot create the data directory '" + dir.file("a-file") +
                                         "/data'"));
}

TEST_CASE("program: a database with a newer schema is refused, naming both versions",
          "[app][program]") {
    scratch_dir dir("schema");
    const auto db = dir.file("data") + "/payments.db";
    REQUIRE(demo(dir, {"run", "-n", "20", "-u", "4"}).status == 0);

    exec_sql(db, "UPDATE payments_schema SET version = 5 WHERE module = 'notification'");
    auto r = demo(dir, {"stats"});
    INFO(r.output);
    CHECK(r.status == 2);
    CHECK_THAT(r.output, Catch::Contains("tables for module 'notification' are at schema "
                                         "version 5, newer than this build knows (1)"));

    exec_sql(db, "UPDATE payments_schema SET version = 1 WHERE module = 'notification'");
    exec_sql(db, "UPDATE evbus_schema SET version = 9");
    r = demo(dir, {"run", "-n", "20", "-u", "4"});
    INFO(r.output);
    CHECK(r.status == 2);
    CHECK_THAT(r.output, Catch::Contains("evbus schema is version 9, newer than this library's"));
}

TEST_CASE("program: --crash-after kills the program, and the next run resumes and passes",
          "[app][program][crash]") {
    scratch_dir dir("crash-after");
    const std::string n = sanitized ? "300" : "1000";
    const auto crashed = demo(dir, {"run", "-n", n, "-u", "20", "--crash-after", "120"});
    INFO(crashed.output);
    CHECK_FALSE(crashed.exited);
    CHECK(crashed.status == SIGKILL);
    CHECK_THAT(crashed.output, Catch::Contains("crash-after: killing this process (SIGKILL) "
                                               "after 120 transfers committed"));

    const auto resumed = demo(dir, {"run", "-n", n, "-u", "20"});
    INFO(resumed.output);
    CHECK(resumed.exited);
    CHECK(resumed.status == 0);
    CHECK_THAT(resumed.output, Catch::Contains("resuming run 1"));
    CHECK_THAT(resumed.output, Catch::Contains("120 already applied before"));
    CHECK_THAT(resumed.output, Catch::Contains("all checks passed"));
}

TEST_CASE(
    "program: killed with SIGKILL at random points again and again, the final run "
    "loses nothing and every check holds",
    "[app][program][crash]") {
    scratch_dir dir("kills");
    const std::vector<std::string> args{
        "--data-dir", dir.file("data"),           "--sync", "normal", "run",
        "-n",         sanitized ? "300" : "1000", "-u",     "50"};
    // One run to the end first: its duration (this build, this machine's load) is the
    // range the kills are spread over, from just after the start to the end of delivery.
    const auto t0 = std::chrono::steady_clock::now();
    const auto first = run_program(program, args, dir.file("first.txt"));
    const auto full_run = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    INFO(first.output);
    REQUIRE(first.status == 0);

    const auto seed = std::random_device{}();
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::int64_t> delay_ms(
        5, std::max<std::int64_t>(50, full_run.count()));
    int kills = 0, finished = 0, spawns = 0;
    while (kills < 12 && spawns < 60) {
        ++spawns;
        payments_test::child_process p(program, args, dir.file("output.txt"));
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
        if (p.running()) {
            const auto r = p.kill();
            if (!r.exited) {
                ++kills;
                continue;
            }
            // It ended on its own between running() and the kill: judged like a finished run.
            INFO(r.output);
            REQUIRE(r.status == 0);
            ++finished;
        } else {
            const auto r = p.wait(std::chrono::seconds(1));
            INFO(r.output);
            REQUIRE(r.status == 0);  // a run that ended by itself passed its checks
            ++finished;
        }
    }
    std::cout << "crash test (seed " << seed << ", kills within " << full_run.count()
              << " ms): " << kills << " SIGKILLs, " << finished << " runs finished on their own, "
              << spawns << " processes\n";
    CHECK(kills >= 10);

    const auto last = run_program(program, args, dir.file("final.txt"));
    INFO(last.output);
    REQUIRE(last.exited);
    REQUIRE(last.status == 0);
    CHECK_THAT(last.output, Catch::Contains("all checks passed"));

    // Independently of the program's report: every planned transfer exactly once, one receipt
    // each, the projection exact, nothing dead or pending.
    payments::app::settings s;
    s.data_dir = dir.file("data");
    payments::app::application app(s);
    std::int64_t planned = 0, unfinished = 0;
    {
        payments::contract::unit_of_work uow(app.store(), evbus::begin_mode::deferred);
        auto q = uow.sql().prepare(
            "SELECT coalesce(sum(transfers), 0), count(*) - count(finished_at_ms) FROM app_runs");
        REQUIRE(q.step());
        planned = q.column_int64(0);
        unfinished = q.column_int64(1);
    }
    CHECK(unfinished == 0);
    CHECK(static_cast<std::int64_t>(app.transfers().transfer_ids().size()) == planned);
    const auto v = payments::app::verify(app);
    for (const auto& c : v.checks) {
        INFO(c.name << ": " << c.detail);
        CHECK(c.ok);
    }
    CHECK(v.dead_letter_total() == 0);
    CHECK(v.receipts == static_cast<std::uint64_t>(planned));
}

TEST_CASE(
    "program: dead letters are listed, requeued by id and all at once, and stats and "
    "replay report the result",
    "[app][program]") {
    scratch_dir dir("operator");
    auto r = demo(dir, {"run", "-n", "200", "-u", "10", "--attempts", "1", "--fail-handler",
                        "notification", "--fail-rate", "0.3"});
    INFO(r.output);
    REQUIRE(r.status == 0);  // dead letters are accounted for
    CHECK_THAT(r.output, Catch::Contains("injected failures in notification.receipts"));

    r = demo(dir, {"dead-letters", "list"});
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK_THAT(r.output, Catch::Contains("notification.receipts  transfer.moneyTransferred v1"));
    CHECK_THAT(r.output, Catch::Contains("error: injected failure in notification.receipts"));
    const auto first_id = [&] {
        const auto at = r.output.find("  #");
        REQUIRE(at != std::string::npos);
        return r.output.substr(at + 3, r.output.find(' ', at + 3) - (at + 3));
    }();

    // Ids are decimal, leading zeros and all (CLI11 alone would read "010" as octal 8).
    const auto id_at_least_8 = [&] {
        for (auto at = r.output.find("  #"); at != std::string::npos;
             at = r.output.find("  #", at + 3)) {
            const auto id = r.output.substr(at + 3, r.output.find(' ', at + 3) - (at + 3));
            if (std::stoll(id) >= 8) return id;
        }
        return std::string{};
    }();
    REQUIRE_FALSE(id_at_least_8.empty());
    {
        const auto listed = demo(dir, {"dead-letters", "list", "--id", "0" + id_at_least_8});
        INFO(listed.output);
        CHECK(listed.status == 0);
        CHECK_THAT(listed.output, Catch::Contains("  #" + id_at_least_8 + " "));
    }

    r = demo(dir, {"dead-letters", "requeue", "--id", first_id});
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK_THAT(r.output, Catch::Contains("requeued 1 dead letter;"));

    r = demo(dir, {"dead-letters", "requeue", "--id", "999999"});
    INFO(r.output);
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains("no dead letter with id 999999"));

    r = demo(dir, {"dead-letters", "requeue", "--all"});
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK_THAT(r.output, Catch::Contains("all checks passed"));

    r = demo(dir, {"dead-letters", "list"});
    CHECK_THAT(r.output, Catch::StartsWith("0 dead letters"));

    r = demo(dir, {"stats"});
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK_THAT(r.output, Catch::Contains("\"run\": 1"));
    CHECK_THAT(r.output, Catch::Contains("200 transfers, 200 receipts"));
    // The engine's snapshot: per shard and per subscription, with handler latency.
    CHECK_THAT(r.output, Catch::Contains("\"shard\": 0"));
    CHECK_THAT(r.output, Catch::Contains("\"name\": \"notification.receipts\""));
    CHECK_THAT(r.output, Catch::Contains("\"handler_latency_ns\""));

    r = demo(dir, {"replay", "analytics"});
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK_THAT(r.output, Catch::Contains("from 200 transfer.moneyTransferred events"));
    CHECK_THAT(r.output, Catch::Contains("equal to the live projection"));
}

TEST_CASE(
    "program: a discarded analytics delivery shows in the replay, which can replace the "
    "projection",
    "[app][program]") {
    scratch_dir dir("discard");
    auto r = demo(dir, {"run", "-n", "100", "-u", "5", "--attempts", "1", "--fail-handler",
                        "analytics", "--fail-rate", "0.2"});
    INFO(r.output);
    REQUIRE(r.status == 0);

    r = demo(dir, {"dead-letters", "discard", "--all", "--subscription", "analytics.user-totals"});
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK_THAT(r.output, Catch::Contains("discarded "));
    CHECK_THAT(r.output, !Catch::Contains("discarded 0 "));

    // The discarded transfers are in the history but were never counted: the rebuilt
    // projection differs from the live one, and the checks say so too.
    r = demo(dir, {"replay", "analytics"});
    INFO(r.output);
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains("differs from the live projection"));
    CHECK(demo(dir, {"stats"}).status == 1);

    r = demo(dir, {"replay", "analytics", "--replace"});
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK_THAT(r.output, Catch::Contains("the live projection was replaced by the rebuilt one"));
    r = demo(dir, {"stats"});
    INFO(r.output);
    CHECK(r.status == 0);
    CHECK(demo(dir, {"replay", "analytics"}).status == 0);
}
