// evbus/unit_of_work.hpp — a module's transaction: its own table changes and its events,
// committed together or not at all.
//
//     evbus::unit_of_work<events> tx(store);
//     tx.sql().prepare("UPDATE account SET cents = cents - ?1 WHERE id = ?2")
//         .bind(1, cents).bind(2, from).run();
//     tx.append(money_transferred{from, to, cents});
//     tx.commit();  // both or neither; destroying an uncommitted unit of work rolls it back
//
// A module sees the store, never the bus: the dispatcher delivers what was committed.
// Appending a type outside the event set does not compile. append() stamps the metadata like
// emit() does: inside a handler the appended event inherits the handled event's correlation
// and trace id, and gets its id as causation id.
//
// Thread-safety: one thread at a time, like the transaction it wraps.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include <evbus/bus.hpp>
#include <evbus/codec.hpp>
#include <evbus/event_set.hpp>
#include <evbus/metadata.hpp>
#include <evbus/store.hpp>

namespace evbus {

namespace detail {
template <class Event, class Set>
struct appended_event_not_in_set {
    static_assert(dependent_false<Event>,
                  "evbus: this event type is not in the unit of work's event set; add it to "
                  "the evbus::event_set or append one of the set's payload types");
    static constexpr bool ok = false;
};

/// Picks unit_of_work's constructor for a transaction the dispatcher lends to a
/// transactional handler and commits itself.
struct lent_to_handler_t {
    explicit lent_to_handler_t() = default;
};

/// The stored form of an accepted event (metadata already stamped).
template <class Set, class E>
stored_event to_stored(const E& event, const metadata& meta) {
    stored_event s;
    s.id = meta.id;
    s.correlation_id = meta.correlation_id;
    s.causation_id = meta.causation_id;
    s.trace_id = meta.trace_id;
    s.name = std::string(E::event_name);
    s.version = payload_version<E>;
    s.key = meta.key.str();
    s.source = meta.source.str();
    s.occurred_at = meta.occurred_at;
    s.payload = payload_codec<Set>::encode(event);
    return s;
}
}  // namespace detail

template <class Set>
class unit_of_work {
    static_assert(is_event_set<Set>,
                  "evbus: unit_of_work<Set> needs an evbus::event_set<...>; list your payload "
                  "types in one");

public:
    /// Begins a transaction on `store`. Throws store_error when the database is busy past its
    /// timeout or cannot be written.
    explicit unit_of_work(event_store& store, begin_mode mode = begin_mode::immediate)
        : tx_(store.begin(mode)) {}

    /// Wraps a transaction begun elsewhere.
    explicit unit_of_work(store_transaction& tx) noexcept : borrowed_(&tx) {}

    /// The dispatcher's, for a transactional handler: commit() then throws, because the
    /// dispatcher commits the handler's writes together with the delivery's completion.
    unit_of_work(event_store& store, detail::lent_to_handler_t)
        : tx_(store.begin(begin_mode::immediate)), lent_(true) {}

    unit_of_work(const unit_of_work&) = delete;
    unit_of_work& operator=(const unit_of_work&) = delete;
    ~unit_of_work() = default;  // the owned transaction rolls back unless committed

    /// The connection for the module's own tables (sqlite_store; memory_store throws).
    [[nodiscard]] sql_connection& sql() { return tx().sql(); }

    /// Appends `event`; returns its id. Visible to the dispatcher once committed.
    template <class E>
    event_id append(const E& event, metadata meta = {}) {
        using T = std::remove_cvref_t<E>;
        if constexpr (!Set::template contains<T>) {
            static_assert(detail::appended_event_not_in_set<T, Set>::ok);
            return {};
        } else {
            bus<Set>::prepare(event, meta);
            tx().append(detail::to_stored<Set>(event, meta));
            return meta.id;
        }
    }

    /// Commits the module's writes and the appended events together. Throws std::logic_error
    /// in a transactional handler (see the constructor above).
    void commit() {
        if (lent_) {
            throw std::logic_error(
                "evbus: a transactional handler must not commit its unit of work; the "
                "dispatcher commits it with the delivery's completion when the handler returns");
        }
        tx().commit();
    }
    /// Discards them. Never throws.
    void rollback() noexcept { tx().rollback(); }

    /// The backend transaction (for helpers such as evbus::inbox).
    [[nodiscard]] store_transaction& tx() noexcept { return borrowed_ ? *borrowed_ : *tx_; }

private:
    std::unique_ptr<store_transaction> tx_;
    store_transaction* borrowed_ = nullptr;
    bool lent_ = false;
};

}  // namespace evbus
