#include <analytics/analytics.hpp>

#include <utility>

#include <contract/module_schema.hpp>

#include "totals_table.hpp"

namespace payments::analytics {

namespace {

// The projection's one rule, shared by the live handler and the rebuild.
void fold(user_totals& totals, const contract::money_transferred& e) noexcept {
    totals.total_cents += e.amount_cents;
    totals.count += 1;
}

std::string describe(const user_totals& t) {
    return std::to_string(t.total_cents) + " cents / " + std::to_string(t.count) + " transfers";
}

}  // namespace

module wire(const contract::wiring& wiring, options opts) {
    {
        contract::unit_of_work uow(wiring.store);
        contract::migrate_module(uow.sql(), totals_table::module_name, totals_table::migrations);
        uow.commit();
    }
    auto totals = wiring.delivery.subscribe_transactional(
        std::string(totals_subscription),
        [probe = wiring.probe](const contract::money_transferred& e, contract::unit_of_work& uow) {
            if (probe) probe(totals_subscription);
            user_totals delta;
            fold(delta, e);
            auto row = uow.sql().prepare(totals_table::add_transfer);
            row.bind(1, e.user_id).bind(2, delta.total_cents);
            contract::user_transfer_updated updated;
            updated.user_id = e.user_id;
            if (row.step()) {
                updated.total_cents = row.column_int64(0);
                updated.count = row.column_int64(1);
            }
            row.reset();
            evbus::metadata meta;
            meta.source = evbus::source_name(totals_table::module_name);
            uow.append(updated, meta);
        },
        opts.delivery);
    return module(std::move(totals));
}

projection_map projection(evbus::event_store& store) {
    contract::unit_of_work uow(store, evbus::begin_mode::deferred);
    auto stmt = uow.sql().prepare(totals_table::select_all);
    projection_map out;
    while (stmt.step()) {
        out.emplace(stmt.column_text(0), user_totals{stmt.column_int64(1), stmt.column_int64(2)});
    }
    return out;
}

rebuild_report rebuild(const contract::wiring& wiring, bool replace) {
    rebuild_report report;
    {
        // A plain subscription that folds in memory; replay() calls it for each history
        // event, in commit order, on this thread.
        auto replaying = wiring.events.subscribe(std::string(totals_subscription) + ".rebuild",
                                                 [&report](const contract::money_transferred& e) {
                                                     fold(report.rebuilt[e.user_id], e);
                                                     ++report.events;
                                                 });
        (void)wiring.delivery.replay(replaying.name());
    }
    for (const auto& entry : wiring.delivery.history()) {
        if (!entry.event) {
            ++report.unreadable;
            report.errors.push_back(entry.error);
        }
    }

    const projection_map live = projection(wiring.store);
    const user_totals none{};
    for (const auto& [user, rebuilt] : report.rebuilt) {
        const auto it = live.find(user);
        const user_totals& current = it == live.end() ? none : it->second;
        if (current != rebuilt) {
            report.differences.push_back("user " + user + ": live " + describe(current) +
                                         ", rebuilt " + describe(rebuilt));
        }
    }
    for (const auto& [user, current] : live) {
        if (!report.rebuilt.contains(user)) {
            report.differences.push_back("user " + user + ": live " + describe(current) +
                                         ", rebuilt " + describe(none));
        }
    }

    if (replace) {
        contract::unit_of_work uow(wiring.store);
        uow.sql().exec(totals_table::delete_all);
        auto insert = uow.sql().prepare(totals_table::insert_row);
        for (const auto& [user, totals] : report.rebuilt) {
            insert.bind(1, user).bind(2, totals.total_cents).bind(3, totals.count).run();
        }
        uow.commit();
        report.replaced = true;
    }
    return report;
}

}  // namespace payments::analytics
