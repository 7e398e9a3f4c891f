// The example application end to end, in process, through the same composition root and
// commands as the program: transfers flow from the transfer module through the outbox to
// notification and analytics, and the checks hold with and without injected faults.
#include <catch2/catch.hpp>

#include <sstream>

#include <analytics/analytics.hpp>
#include <contract/wiring.hpp>
#include <notification/notification.hpp>

#include "application.hpp"
#include "checks.hpp"
#include "commands.hpp"
#include "scratch_dir.hpp"

namespace {

using namespace payments;
using namespace payments::app;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

// The sizes in the dev build; sanitizers run the same scenarios smaller.
constexpr std::uint64_t full_transfers = sanitized ? 1'000 : 10'000;
constexpr std::uint32_t full_users = 100;

settings in(const payments_test::scratch_dir& dir) {
    settings s;
    s.data_dir = dir.path() / "data";
    s.sync = evbus::sync_mode::normal;  // the checks do not depend on power-loss durability
    return s;
}

run_options workload(std::uint64_t transfers, std::uint32_t users) {
    run_options o;
    o.transfers = transfers;
    o.users = users;
    return o;
}

struct run_result {
    int status;
    std::string out;
};

run_result run(const settings& s, const run_options& o) {
    std::ostringstream out, err;
    const int status = run_command(s, o, out, err);
    return {status, out.str() + err.str()};
}

const check& find_check(const verification& v, const std::string& name) {
    for (const auto& c : v.checks) {
        if (c.name == name) return c;
    }
    FAIL("no check named " << name);
    return v.checks.front();
}

}  // namespace

TEST_CASE("app: transfers over many users get one receipt each and an exact projection",
          "[app][e2e]") {
    payments_test::scratch_dir dir("e2e");
    const auto s = in(dir);
    const auto r = run(s, workload(full_transfers, full_users));
    INFO(r.out);
    REQUIRE(r.status == exit_ok);
    CHECK_THAT(r.out, Catch::Contains("all checks passed"));

    // Independently of the report: read the modules' tables.
    application app(s);
    const auto ids = app.transfers().transfer_ids();
    REQUIRE(ids.size() == full_transfers);
    const auto receipts = notification::receipts_per_transfer(app.store());
    REQUIRE(receipts.size() == full_transfers);
    for (const auto& id : ids) {
        const auto it = receipts.find(id);
        REQUIRE(it != receipts.end());
        REQUIRE(it->second == 1);
    }
    const auto sql = app.transfers().totals_by_user();
    const auto projection = analytics::projection(app.store());
    REQUIRE(sql.size() == full_users);
    REQUIRE(projection.size() == full_users);
    for (const auto& [user, agg] : sql) {
        const auto it = projection.find(user);
        REQUIRE(it != projection.end());
        CHECK(it->second.total_cents == agg.total_cents);
        CHECK(it->second.count == agg.count);
    }
    CHECK(app.store().dead_letters({}).empty());
    CHECK(app.store().unfinished(std::nullopt, 1).empty());

    // The projection rebuilt from the history equals the live one.
    const auto rebuilt = analytics::rebuild(app.wiring());
    CHECK(rebuilt.events == full_transfers);
    CHECK(rebuilt.errors.empty());
    CHECK(rebuilt.equal());

    // A damaged projection is caught by the checks and by the rebuild, which can replace it.
    {
        contract::unit_of_work uow(app.store());
        uow.sql().exec(
            "UPDATE analytics_user_totals SET total_cents = total_cents + 1 "
            "WHERE user_id = 'user-0007'");
        uow.commit();
    }
    const auto damaged = verify(app);
    const auto& c = find_check(damaged, "projection equals the SQL aggregate over transfers");
    CHECK_FALSE(c.ok);
    CHECK_THAT(c.detail, Catch::Contains("user-0007"));
    const auto repaired = analytics::rebuild(app.wiring(), true);
    REQUIRE(repaired.differences.size() == 1);
    CHECK_THAT(repaired.differences.front(), Catch::StartsWith("user user-0007: live"));
    CHECK(verify(app).passed());
}

TEST_CASE(
    "app: with injected notification failures every event ends succeeded or "
    "dead-lettered, and a requeue drains the dead letters",
    "[app][e2e][faults]") {
    payments_test::scratch_dir dir("faults");
    const auto s = in(dir);
    auto o = workload(full_transfers, full_users);
    // 10% failures and 3 attempts dead-letter about 1 in 1,000 deliveries; the smaller
    // sanitizer runs fail more often so that they still see dead letters.
    o.faults.fail_subscription = std::string(notification::receipts_subscription);
    o.faults.fail_rate = sanitized ? 0.3 : 0.1;
    o.faults.seed = 7;
    auto faulty = s;
    faulty.attempts = 3;
    const auto r = run(faulty, o);
    INFO(r.out);
    REQUIRE(r.status == exit_ok);  // dead letters are accounted for, nothing is lost

    std::uint64_t dead = 0;
    {
        application app(s);
        const auto v = verify(app);
        CHECK(v.passed());
        CHECK(find_check(v, "every event ended succeeded or dead-lettered").ok);
        dead = v.dead_letter_total();
        CHECK(v.dead_letters.size() <= 1);  // only the failing subscription has any
        for (const auto& d : app.store().dead_letters({})) {
            CHECK(d.subscription == notification::receipts_subscription);
            CHECK(d.attempts == 3);
            CHECK_THAT(d.error, Catch::Contains("injected failure"));
        }
        // Exactly one receipt or one dead letter per transfer.
        CHECK(v.receipts + dead == full_transfers);
    }
    REQUIRE(dead > 0);

    std::ostringstream out;
    dead_letter_selection everything;
    CHECK(requeue_dead_letters(s, everything, out) == exit_ok);
    INFO(out.str());
    CHECK_THAT(out.str(), Catch::Contains("requeued " + grouped(dead) + " dead letter"));
    application app(s);
    const auto v = verify(app);
    CHECK(v.passed());
    CHECK(v.dead_letter_total() == 0);
    CHECK(v.receipts == full_transfers);
}

TEST_CASE(
    "app: a slow handler overruns its time budget, fails and is retried or "
    "dead-lettered, and nothing is lost",
    "[app][e2e][faults]") {
    payments_test::scratch_dir dir("slow");
    const auto s = in(dir);
    auto o = workload(200, 10);
    o.faults.slow_subscription = std::string(analytics::totals_subscription);
    o.faults.slow_rate = 0.5;
    o.faults.slow_for = std::chrono::milliseconds(30);
    o.faults.budget = std::chrono::milliseconds(5);
    auto slow = s;
    slow.attempts = 2;
    slow.handler_timeout = o.faults.budget;
    const auto r = run(slow, o);
    INFO(r.out);
    REQUIRE(r.status == exit_ok);
    CHECK_THAT(r.out, Catch::Contains("timed out"));

    application app(s);
    const auto v = verify(app);
    CHECK(v.passed());
    // The slow calls time out; so may a call of the other transactional subscription that
    // waited past its own budget for SQLite's write lock, which a slow call holds: its
    // transaction is rolled back, and the attempt counts as failed.
    const auto dead = app.store().dead_letters({});
    for (const auto& d : dead) {
        CHECK((d.subscription == analytics::totals_subscription ||
               d.subscription == notification::receipts_subscription));
        CHECK_THAT(d.error, Catch::Contains("budget (timeout)") ||
                                Catch::Contains("the transaction was rolled back"));
    }
    // The projection is exact for everything that was not dead-lettered (verify() checked
    // that); after a requeue without faults it is exact for all.
    std::ostringstream out;
    CHECK(requeue_dead_letters(s, {}, out) == exit_ok);
    CHECK(verify(app).dead_letter_total() == 0);
    CHECK(analytics::rebuild(app.wiring()).equal());
}
