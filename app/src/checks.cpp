#include "checks.hpp"

#include <set>
#include <variant>

#include <evbus/codec.hpp>

#include "run_plan.hpp"

namespace payments::app {

namespace {

constexpr std::size_t all_rows = 1'000'000'000;

struct dead_transfers {
    std::set<std::string> receipts;  ///< transfer ids whose receipt delivery is dead
    std::map<std::string, analytics::user_totals> analytics;  ///< their sums, per user
    std::uint64_t analytics_count = 0;
};

dead_transfers collect_dead_letters(evbus::event_store& store, verification& v) {
    dead_transfers out;
    evbus::dead_letter_filter all;
    all.limit = all_rows;
    for (const auto& d : store.dead_letters(all)) {
        ++v.dead_letters[d.subscription.empty() ? "(undecodable row)" : d.subscription];
        const auto decoded = evbus::payload_codec<contract::events>::decode(
            d.event.name, d.event.version, d.event.payload);
        if (decoded.index() != 0) continue;
        const auto* e = std::get_if<contract::money_transferred>(&std::get<0>(decoded));
        if (e == nullptr) continue;
        if (d.subscription == notification::receipts_subscription) {
            out.receipts.insert(e->transfer_id);
        } else if (d.subscription == analytics::totals_subscription) {
            auto& t = out.analytics[e->user_id];
            t.total_cents += e->amount_cents;
            t.count += 1;
            ++out.analytics_count;
        }
    }
    return out;
}

check check_receipts(application& app, const dead_transfers& dead, verification& v) {
    const auto ids = app.transfers().transfer_ids();
    auto receipts = notification::receipts_per_transfer(app.store());
    for (const auto& [id, n] : receipts) v.receipts += static_cast<std::uint64_t>(n);
    std::uint64_t one = 0, awaiting = 0, missing = 0, duplicated = 0;
    for (const auto& id : ids) {
        const auto it = receipts.find(id);
        const std::int64_t n = it == receipts.end() ? 0 : it->second;
        if (n == 1) {
            ++one;
        } else if (n == 0 && dead.receipts.contains(id)) {
            ++awaiting;
        } else if (n == 0) {
            ++missing;
        } else {
            ++duplicated;
        }
        if (it != receipts.end()) receipts.erase(it);
    }
    v.transfers = ids.size();
    const std::uint64_t stray = receipts.size();
    check c;
    c.name = "every transfer has exactly one receipt";
    c.ok = missing == 0 && duplicated == 0 && stray == 0;
    c.detail = grouped(one) + " of " + grouped(ids.size()) + " transfers have one";
    if (awaiting > 0) {
        c.detail += ", " + grouped(awaiting) + " await the requeue of a dead letter";
    }
    if (missing > 0) c.detail += ", " + grouped(missing) + " have none (lost)";
    if (duplicated > 0) c.detail += ", " + grouped(duplicated) + " have more than one";
    if (stray > 0) c.detail += ", " + grouped(stray) + " receipts name no transfer";
    return c;
}

check check_projection(application& app, const dead_transfers& dead, verification& v) {
    auto expected = app.transfers().totals_by_user();
    std::int64_t cents = 0, count = 0;
    for (auto& [user, agg] : expected) {
        if (const auto it = dead.analytics.find(user); it != dead.analytics.end()) {
            agg.total_cents -= it->second.total_cents;
            agg.count -= it->second.count;
        }
        cents += agg.total_cents;
        count += agg.count;
    }
    const auto live = analytics::projection(app.store());
    std::uint64_t differing = 0;
    std::string first;
    for (const auto& [user, agg] : expected) {
        const auto it = live.find(user);
        const analytics::user_totals got = it == live.end() ? analytics::user_totals{} : it->second;
        if (got.total_cents != agg.total_cents || got.count != agg.count) {
            if (differing++ == 0) {
                first = user + " has " + std::to_string(got.total_cents) + " cents / " +
                        std::to_string(got.count) + ", SQL says " +
                        std::to_string(agg.total_cents) + " / " + std::to_string(agg.count);
            }
        }
    }
    for (const auto& [user, got] : live) {
        if (!expected.contains(user) && differing++ == 0) {
            first = user + " is in the projection but has no transfers";
        }
    }
    v.users = expected.size();
    check c;
    c.name = "projection equals the SQL aggregate over transfers";
    c.ok = differing == 0;
    c.detail = grouped(expected.size()) + " users, " + grouped(static_cast<std::uint64_t>(cents)) +
               " cents in " + grouped(static_cast<std::uint64_t>(count)) + " transfers";
    if (dead.analytics_count > 0) {
        c.detail += " (less " + grouped(dead.analytics_count) +
                    " whose analytics delivery is dead-lettered)";
    }
    if (differing > 0) c.detail += "; " + grouped(differing) + " users differ, e.g. " + first;
    return c;
}

check check_nothing_pending(application& app) {
    const bool undispatched = !app.store().claim(1).empty();
    const auto pending = app.store().unfinished(std::nullopt, 1);
    check c;
    c.name = "every event ended succeeded or dead-lettered";
    c.ok = !undispatched && pending.empty();
    if (c.ok) {
        c.detail = "no delivery pending";
    } else if (undispatched) {
        c.detail = "events are still waiting in the outbox";
    } else {
        c.detail = "a delivery is still pending, e.g. event " +
                   pending.front().event.id.to_string() + " to " + pending.front().subscription;
    }
    return c;
}

check check_money(application& app) {
    const std::int64_t wallets = app.transfers().wallet_count();
    const std::int64_t money = app.transfers().money_in_wallets();
    check c;
    c.name = "money is conserved";
    c.ok = money == wallets * initial_balance_cents;
    c.detail = grouped(static_cast<std::uint64_t>(wallets)) + " wallets hold " +
               grouped(static_cast<std::uint64_t>(money)) + " cents";
    return c;
}

}  // namespace

std::string grouped(std::uint64_t n) {
    std::string digits = std::to_string(n);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}

verification verify(application& app) {
    verification v;
    const auto dead = collect_dead_letters(app.store(), v);
    v.checks.push_back(check_receipts(app, dead, v));
    v.checks.push_back(check_projection(app, dead, v));
    v.checks.push_back(check_nothing_pending(app));
    v.checks.push_back(check_money(app));
    return v;
}

}  // namespace payments::app
