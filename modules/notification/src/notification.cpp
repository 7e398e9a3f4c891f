#include <notification/notification.hpp>

#include <chrono>
#include <string>
#include <utility>

#include <contract/module_schema.hpp>

#include "receipt_book.hpp"

namespace payments::notification {

namespace {

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

evbus::metadata from_module() {
    evbus::metadata meta;
    meta.source = evbus::source_name(receipt_book::module_name);
    return meta;
}

}  // namespace

module wire(const contract::wiring& wiring, options opts) {
    {
        contract::unit_of_work uow(wiring.store);
        contract::migrate_module(uow.sql(), receipt_book::module_name, receipt_book::migrations);
        uow.commit();
    }

    auto receipts = wiring.delivery.subscribe_transactional(
        std::string(receipts_subscription),
        [probe = wiring.probe, channel = opts.channel](const contract::money_transferred& e,
                                                       contract::unit_of_work& uow) {
            if (probe) probe(receipts_subscription);
            contract::receipt_sent receipt{e.transfer_id, e.user_id, channel, now_ms()};
            uow.sql()
                .prepare(receipt_book::insert_receipt)
                .bind(1, receipt.transfer_id)
                .bind(2, receipt.user_id)
                .bind(3, receipt.channel)
                .bind(4, e.amount_cents)
                .bind(5, receipt.at_ms)
                .run();
            uow.append(receipt, from_module());
        },
        opts.receipts);

    auto sender = wiring.events.subscribe(
        std::string(sender_subscription),
        [probe = wiring.probe, sink = std::move(opts.sink)](const contract::receipt_sent& r) {
            if (probe) probe(sender_subscription);
            if (sink) sink->send(r);
        },
        opts.sender);

    return module(std::move(receipts), std::move(sender));
}

std::map<std::string, std::int64_t> receipts_per_transfer(evbus::event_store& store) {
    contract::unit_of_work uow(store, evbus::begin_mode::deferred);
    auto stmt = uow.sql().prepare(receipt_book::per_transfer);
    std::map<std::string, std::int64_t> out;
    while (stmt.step()) out.emplace(stmt.column_text(0), stmt.column_int64(1));
    return out;
}

}  // namespace payments::notification
