// notification/notification.hpp — the notification module: one receipt per transfer.
//
// On transfer.moneyTransferred, subscription "notification.receipts" records a receipt in
// notification_receipts and appends notification.receiptSent, in the delivery's own
// transaction (a transactional subscription): the receipt row, the event and the completion
// mark commit together, so each transfer gets exactly one receipt row across crashes,
// retries and redeliveries.
//
// On notification.receiptSent, subscription "notification.sender" hands the receipt to the
// receipt_sink (the outside world: e-mail, SMS, a file). That happens after the receipt is
// committed and at least once: after a crash between sending and recording the completion the
// sink sees the receipt again, so a sink de-duplicates by transfer id if it must.
//
// Thread-safety: the handlers run on the delivery threads; sinks must be thread-safe. The
// query functions are thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <contract/events.hpp>
#include <contract/wiring.hpp>
#include <evbus/store.hpp>
#include <evbus/subscription.hpp>

namespace payments::notification {

/// Where receipts go out. send() may be called again for a receipt after a crash.
class receipt_sink {
public:
    virtual ~receipt_sink() = default;
    /// Sends one receipt; throwing fails this attempt (it is retried). Thread-safe.
    virtual void send(const contract::receipt_sent& receipt) = 0;
};

struct options {
    std::string channel = "email";
    std::shared_ptr<receipt_sink> sink;  ///< null: receipts are recorded, not sent anywhere
    evbus::subscribe_options receipts;   ///< retries and timeout of notification.receipts
    evbus::subscribe_options sender;     ///< retries and timeout of notification.sender
};

inline constexpr std::string_view receipts_subscription = "notification.receipts";
inline constexpr std::string_view sender_subscription = "notification.sender";

/// The wired module; its subscriptions end with it.
class module {
public:
    module(evbus::subscription receipts,
           evbus::subscription sender) noexcept :receipts_(std::move(receipts)),
        sender_(std::move(sender)) {}

private:
    evbus::subscription receipts_;
    evbus::subscription sender_;
};

/// Creates or migrates the module's tables and subscribes its handlers. Subscribe before the
/// dispatcher starts. Throws contract::module_schema_error for a newer database.
[[nodiscard]] module wire(const contract::wiring& wiring, options opts = {});

/// Receipts recorded per transfer id. Thread-safe.
[[nodiscard]] std::map<std::string, std::int64_t> receipts_per_transfer(evbus::event_store& store);

}  // namespace payments::notification
