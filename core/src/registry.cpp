#include <evbus/detail/registry.hpp>

#include <stdexcept>
#include <utility>

#include <evbus/detail/dispatch_context.hpp>

namespace evbus::detail {

registry::registry(std::size_t alternatives) : alternatives_(alternatives) {
    auto empty = std::make_shared<dispatch_table>();
    empty->rows.resize(alternatives);
    table_ = std::move(empty);
}

void registry::publish(std::shared_ptr<const dispatch_table> table) {
    {
        const std::lock_guard lock(table_mutex_);
        table_.swap(table);
    }  // the old table (in `table`) is released outside the lock
    // [R1] after the table store; pairs with the acquire in version() (cached_table::refresh).
    version_.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<subscription_state> registry::add(std::unique_ptr<subscription_state> sub) {
    const std::lock_guard lock(mutex_);
    const auto current = snapshot();
    for (const auto& owner : current->owners) {
        if (owner->name == sub->name) {
            throw std::invalid_argument("evbus: a subscription named '" + sub->name +
                                        "' already exists on this bus; subscription names "
                                        "identify subscriptions and must be unique");
        }
    }
    std::shared_ptr<subscription_state> shared(std::move(sub));
    auto next = std::make_shared<dispatch_table>(*current);
    next->owners.push_back(shared);
    for (std::size_t i = 0; i < alternatives_; ++i) {
        if (shared->invokers[i] != nullptr)
            next->rows[i].push_back({shared->invokers[i], shared.get()});
    }
    publish(std::move(next));
    return shared;
}

void registry::remove(subscription_state& sub) noexcept {
    sub.active.store(false);  // seq_cst: see the Dekker argument in the header
    {
        const std::lock_guard lock(mutex_);
        const auto current = snapshot();
        try {
            auto next = std::make_shared<dispatch_table>();
            next->rows.resize(alternatives_);
            for (const auto& owner : current->owners) {
                if (owner.get() == &sub) continue;
                next->owners.push_back(owner);
            }
            for (std::size_t r = 0; r < alternatives_; ++r) {
                for (const auto& entry : current->rows[r]) {
                    if (entry.sub != &sub) next->rows[r].push_back(entry);
                }
            }
            publish(std::move(next));
        } catch (...) {
            // Out of memory while rebuilding: the entry stays in the table but is inactive,
            // so enter() skips it; correctness holds, only the slot is not reclaimed.
        }
    }
    const std::uint32_t own = frames_of(&sub);
    for (std::uint32_t n = sub.in_flight.load(); n > own; n = sub.in_flight.load()) {
        sub.in_flight.wait(n);
    }
}

bool enter(subscription_state& sub) noexcept {
    sub.in_flight.fetch_add(1);  // seq_cst: Dekker with remove(), see the header
    if (sub.active.load()) return true;
    leave(sub);
    return false;
}

void leave(subscription_state& sub) noexcept {
    sub.in_flight.fetch_sub(1);  // seq_cst: the handler's effects happen before remove() returns
    if (!sub.active.load()) sub.in_flight.notify_all();
}

}  // namespace evbus::detail

namespace evbus {

subscription::subscription(std::shared_ptr<detail::registry> registry,
                           std::shared_ptr<detail::subscription_state> state) noexcept
    : registry_(std::move(registry)), state_(std::move(state)) {}

subscription& subscription::operator=(subscription&& other) noexcept {
    if (this != &other) {
        reset();
        registry_ = std::move(other.registry_);
        state_ = std::move(other.state_);
    }
    return *this;
}

subscription::~subscription() {
    reset();
}

void subscription::reset() noexcept {
    if (state_) registry_->remove(*state_);
    state_.reset();
    registry_.reset();
}

std::string_view subscription::name() const noexcept {
    return state_ ? std::string_view(state_->name) : std::string_view{};
}

}  // namespace evbus
