// evbus_demo — a short tour of the typed bus: a transfer module announces a payment, and
// notification and analytics react to it without the transfer code knowing they exist.
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

#include <evbus/bus.hpp>

namespace {

struct money_transferred {
    static constexpr std::string_view event_name = "transfer.moneyTransferred";
    static constexpr std::uint32_t event_version = 1;
    std::string transfer_id;
    std::string user_id;
    std::int64_t amount_cents = 0;
    [[nodiscard]] std::string_view event_key() const { return user_id; }
};

struct receipt_sent {
    static constexpr std::string_view event_name = "notification.receiptSent";
    std::string transfer_id;
    std::string user_id;
    [[nodiscard]] std::string_view event_key() const { return user_id; }
};

using events = evbus::event_set<money_transferred, receipt_sent>;

}  // namespace

int main() {
    evbus::bus<events> bus;
    std::map<std::string, std::int64_t> totals;

    auto notification = bus.subscribe(
        "notification.receipts", [&bus](const money_transferred& e, const evbus::metadata& m) {
            std::printf("  notification: receipt for %s (event %s)\n", e.transfer_id.c_str(),
                        m.id.to_string().c_str());
            bus.emit(receipt_sent{e.transfer_id, e.user_id});
        });
    auto analytics = bus.subscribe(
        "analytics.totals", evbus::overload(
                                [&totals](const money_transferred& e) {
                                    totals[e.user_id] += e.amount_cents;
                                },
                                [](const receipt_sent& e, const evbus::metadata& m) {
                                    std::printf(
                                        "  analytics: saw receipt %s, caused by %s\n",
                                        e.transfer_id.c_str(), m.causation_id.to_string().c_str());
                                }));

    std::printf("transfer: emitting three payments\n");
    bus.emit(money_transferred{"t-1", "alice", 1250});
    bus.emit(money_transferred{"t-2", "bob", 700});
    bus.emit(money_transferred{"t-3", "alice", 300});

    for (const auto& [user, cents] : totals) {
        std::printf("analytics: %s transferred %lld cents\n", user.c_str(),
                    static_cast<long long>(cents));
    }
    return totals["alice"] == 1550 && totals["bob"] == 700 ? 0 : 1;
}
