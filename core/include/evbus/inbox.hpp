// evbus/inbox.hpp — one-line de-duplication for at-least-once handlers.
//
// The durable path delivers a non-transactional subscription at least once: after a crash
// between a handler's effect and its completion mark, the event comes again. A handler whose
// effect is a database write guards it with the inbox, in the same transaction:
//
//     evbus::unit_of_work<events> tx(store);
//     if (evbus::inbox::processed(tx, ctx)) return;   // seen before: skip the effect
//     ... write the effect ...
//     tx.commit();                                     // effect and inbox mark together
//
// The outbox dispatcher prunes inbox rows older than its retention (dispatcher_options::
// retention, else the store's history_retention; event_store::prune), so keep them at least
// as long as an event can be redelivered. With neither set, inbox rows are kept for good.
//
// Thread-safety: as the unit of work it is given (one thread at a time).
#pragma once

#include <string_view>

#include <evbus/event_id.hpp>
#include <evbus/handler.hpp>
#include <evbus/unit_of_work.hpp>

namespace evbus::inbox {

/// True when `subscription` has already processed event `id` (skip the effect); otherwise
/// records that it has, as part of `tx`, and returns false.
template <class Set>
[[nodiscard]] bool processed(unit_of_work<Set>& tx, const event_id& id,
                             std::string_view subscription) {
    return !tx.tx().mark_processed(id, subscription);
}

/// The same, for the event and subscription of the handler call `ctx`.
template <class Set>
[[nodiscard]] bool processed(unit_of_work<Set>& tx, const handler_context& ctx) {
    return processed(tx, ctx.meta().id, ctx.subscription());
}

}  // namespace evbus::inbox
