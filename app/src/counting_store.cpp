#include "counting_store.hpp"

#include <utility>

namespace payments::app {

class counting_transaction final : public evbus::store_transaction {
public:
    counting_transaction(counting_store& owner, std::unique_ptr<evbus::store_transaction> inner)
        : owner_(owner), inner_(std::move(inner)) {}

    evbus::sql_connection& sql() override { return inner_->sql(); }
    void append(evbus::stored_event event) override {
        inner_->append(std::move(event));
        ++events_;
    }
    bool complete(const evbus::delivery_ref& delivery) override {
        return inner_->complete(delivery);
    }
    bool mark_processed(const evbus::event_id& event, std::string_view subscription) override {
        return inner_->mark_processed(event, subscription);
    }
    void commit() override {
        inner_->commit();
        owner_.committed(std::exchange(events_, 0));
    }
    void rollback() noexcept override {
        inner_->rollback();
        events_ = 0;
    }

private:
    counting_store& owner_;
    std::unique_ptr<evbus::store_transaction> inner_;
    std::uint64_t events_ = 0;
};

std::unique_ptr<evbus::store_transaction> counting_store::begin(evbus::begin_mode mode) {
    return std::make_unique<counting_transaction>(*this, inner_.begin(mode));
}

void counting_store::committed(std::uint64_t events) noexcept {
    if (events == 0) return;
    appended_.fetch_add(events, std::memory_order_relaxed);  // a statistic; orders nothing
    notify_commit();  // the dispatcher waits on this store's signal, not the inner one's
}

}  // namespace payments::app
