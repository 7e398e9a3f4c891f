// evbus/bus.hpp — the typed bus: subscriptions and synchronous emit.
//
// bus<Set> owns the dispatch table for one event set. subscribe() checks an overload set at
// compile time and stores one invoker per alternative it handles; emit() runs the handlers of
// the event's alternative on the caller's thread, in subscription order. The async engine
// (evbus/engine.hpp) delivers through the same table, so one subscription serves both paths.
//
//     using events = evbus::event_set<money_transferred, receipt_sent>;
//     evbus::bus<events> bus;
//     auto sub = bus.subscribe("notification.receipts",
//         evbus::overload([](const money_transferred& e) { send_receipt(e); },
//                         [](const receipt_sent&, const evbus::metadata& m) { log(m); }));
//     bus.emit(money_transferred{...}, evbus::metadata::with_key("user-7"));
//
// Emitting never allocates on behalf of the bus (handlers may). A handler's failure is
// handled per its subscription's error_policy: isolate (record, go on) or fail_fast (stop,
// rethrow to the caller).
//
// Thread-safety: every member is thread-safe; emit() may run on many threads at once, and the
// same handler object may then be called concurrently. The bus must outlive its emits; a
// subscription handle may outlive the bus.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include <evbus/detail/dispatch_context.hpp>
#include <evbus/detail/handler_traits.hpp>
#include <evbus/detail/registry.hpp>
#include <evbus/error_sink.hpp>
#include <evbus/event_set.hpp>
#include <evbus/handler.hpp>
#include <evbus/metadata.hpp>
#include <evbus/subscription.hpp>

namespace evbus {

/// Thrown by emit() when a fail-fast handler returns a failed handler_result.
class handler_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// What one sync emit did.
struct emit_report {
    std::size_t handled = 0;  ///< handler calls that succeeded
    std::size_t failed = 0;   ///< isolated failures (recorded in the error sink)
};

struct bus_options {
    /// Where isolated failures go; null selects a dead_letter_list of 1024 records.
    std::shared_ptr<error_sink> errors;
};

namespace detail {
/// What bus<Set> uses in place of a Set that is not an event_set, after reporting it.
struct stand_in_event {
    static constexpr std::string_view event_name = "evbus.standIn";
};
using stand_in_set = event_set<stand_in_event>;

/// The non-template part of emit(): walks one row of the table. Defined in core/src.
emit_report emit_sync(const registry& reg, std::size_t index, const void* payload,
                      const metadata& meta, error_sink& errors);
}  // namespace detail

template <class Set>
class bus {
    static_assert(is_event_set<Set>,
                  "evbus: bus<Set> needs an evbus::event_set<...>; list your payload types in "
                  "one");
    // What the class uses in place of Set: Set itself, or a stand-in after the misuse the
    // assertion above reports, so that the one error is not followed by others.
    using checked_set = std::conditional_t<is_event_set<Set>, Set, detail::stand_in_set>;

public:
    using events = Set;
    using variant_type = typename checked_set::variant_type;

    explicit bus(bus_options options = {})
        : registry_(std::make_shared<detail::registry>(checked_set::size)),
          errors_(options.errors ? std::move(options.errors)
                                 : std::make_shared<dead_letter_list>()) {}

    bus(const bus&) = delete;
    bus& operator=(const bus&) = delete;

    /// Subscribes an overload set under a unique name. Throws std::invalid_argument when the
    /// name is empty or taken. Thread-safe; O(subscriptions) (the table is copied).
    template <class H>
    [[nodiscard]] subscription subscribe(std::string name, H&& handlers,
                                         subscribe_options options = {}) {
        return subscribe_impl<false>(std::move(name), std::forward<H>(handlers), options);
    }

    /// Like subscribe(), and every event of the set must have an overload.
    template <class H>
    [[nodiscard]] subscription subscribe(std::string name, exhaustive<H> handlers,
                                         subscribe_options options = {}) {
        return subscribe_impl<true>(std::move(name), std::move(handlers.handlers), options);
    }

    /// Runs every handler of E's alternative on this thread. Returns what happened; rethrows a
    /// fail-fast handler's failure. Thread-safe; never allocates by itself.
    template <class E>
    emit_report emit(const E& event, metadata meta = {}) {
        using T = std::remove_cvref_t<E>;
        if constexpr (!checked_set::template contains<T>) {
            // The check reports the problem with E's name; nothing else is instantiated.
            static_cast<void>(detail::event_not_in_set<T, checked_set>::ok);
            return {};
        } else {
            prepare<T>(event, meta);
            return detail::emit_sync(*registry_, checked_set::template index_of<T>, &event, meta,
                                     *errors_);
        }
    }

    /// Emits whichever alternative `event` holds.
    emit_report emit(const variant_type& event, metadata meta = {}) {
        return std::visit([&](const auto& e) { return emit(e, meta); }, event);
    }

    /// The sink isolated failures go to. Thread-safe.
    [[nodiscard]] error_sink& errors() const noexcept { return *errors_; }

    /// Fills the metadata of an event about to be accepted (id, time, name, version, key from
    /// the payload's key function, and what it inherits from the handler running now).
    template <class T>
    static void prepare(const T& event, metadata& meta) {
        detail::stamp(meta, T::event_name, payload_version<T>);
        if (meta.key.empty()) key_from_payload(event, meta.key);
        meta.attempt = 1;
    }

    /// For delivery engines: the table they dispatch through.
    [[nodiscard]] const std::shared_ptr<detail::registry>& table() const noexcept {
        return registry_;
    }

private:
    template <bool Exhaustive, class H>
    subscription subscribe_impl(std::string name, H&& handlers, subscribe_options options) {
        using handler_type = std::decay_t<H>;  // a function is stored as a function pointer
        if constexpr (!detail::valid_handler<handler_type, checked_set, Exhaustive>) {
            return {};  // the failed check reported itself; instantiate nothing more
        } else {
            return make_subscription<handler_type>(std::move(name), std::forward<H>(handlers),
                                                   options);
        }
    }

    template <class Handler, class H>
    subscription make_subscription(std::string name, H&& handlers, subscribe_options options) {
        using handler_type = Handler;
        if (name.empty()) {
            throw std::invalid_argument("evbus: a subscription needs a non-empty name");
        }
        validate(options);
        auto object = std::make_unique<handler_type>(std::forward<H>(handlers));
        auto state = std::make_unique<detail::subscription_state>(
            std::move(name), options, object.get(),
            [](void* p) noexcept { delete static_cast<handler_type*>(p); },
            detail::make_invokers<handler_type>(static_cast<checked_set*>(nullptr)));
        object.release();  // owned by state now
        auto shared = registry_->add(std::move(state));
        return subscription(registry_, std::move(shared));
    }

    std::shared_ptr<detail::registry> registry_;
    std::shared_ptr<error_sink> errors_;
};

}  // namespace evbus
