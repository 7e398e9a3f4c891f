#include <evbus/forwarding_store.hpp>

#include <stdexcept>
#include <string_view>
#include <utility>

namespace evbus {

class forwarding_store::transaction final : public store_transaction {
public:
    transaction(std::unique_ptr<store_transaction> inner, forwarding_store& owner) noexcept
        : inner_(std::move(inner)), owner_(owner) {}

    sql_connection& sql() override { return inner_->sql(); }
    void append(stored_event event) override {
        inner_->append(std::move(event));
        ++appended_;
    }
    bool complete(const delivery_ref& delivery) override { return inner_->complete(delivery); }
    bool mark_processed(const event_id& event, std::string_view subscription) override {
        return inner_->mark_processed(event, subscription);
    }
    void commit() override {
        inner_->commit();
        owner_.committed(std::exchange(appended_, 0));
    }
    void rollback() noexcept override {
        inner_->rollback();
        appended_ = 0;
    }

private:
    std::unique_ptr<store_transaction> inner_;
    forwarding_store& owner_;
    std::uint64_t appended_ = 0;
};

forwarding_store::forwarding_store(std::unique_ptr<event_store> inner)
    : owned_(std::move(inner)), inner_(owned_.get()) {
    if (!inner_) throw std::invalid_argument("evbus: forwarding_store: the inner store is null");
}

std::unique_ptr<store_transaction> forwarding_store::begin(begin_mode mode) {
    return std::make_unique<transaction>(inner_->begin(mode), *this);
}

void forwarding_store::committed(std::uint64_t appended) noexcept {
    if (appended != 0) notify_commit();
}

}  // namespace evbus
