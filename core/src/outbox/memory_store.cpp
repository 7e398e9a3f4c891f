#include <evbus/memory_store.hpp>

#include <algorithm>
#include <condition_variable>
#include <optional>
#include <ranges>
#include <thread>
#include <utility>
#include <vector>

namespace evbus {

struct memory_store::state {
    struct dead {
        std::int64_t position;
        std::string subscription;
        std::uint32_t attempts;
        std::string error;
        store_clock::time_point first;
        store_clock::time_point last;
    };

    std::chrono::seconds retention;
    std::mutex mutex;
    std::int64_t next_position = 1;
    std::int64_t cursor = 0;
    std::map<std::int64_t, stored_event> outbox;
    std::set<std::pair<std::int64_t, std::string>> deliveries;
    // Positions with a delivery completed by a transaction not yet committed: the delivery is
    // out of `deliveries` (so no one else completes it), but the event is not finished.
    std::multiset<std::int64_t> held;
    std::int64_t next_dead = 1;
    std::map<std::int64_t, dead> dead_letters;
    // An inbox mark; `writer` is the open transaction that made it (null once committed),
    // which other transactions wait for, as a database's writers wait on its lock.
    struct mark {
        store_clock::time_point at;
        const void* writer;
        std::thread::id thread;  // the writer's thread when it marked
    };
    std::map<std::pair<event_id, std::string>, mark> inbox;
    std::condition_variable inbox_settled;  // an open transaction's marks committed or undone
    // Each waiting transaction -> the one whose mark it waits for. Acyclic: the transaction
    // that would close a cycle fails instead of waiting.
    std::map<const void*, const void*> inbox_waits;
    std::map<std::int64_t, std::pair<stored_event, store_clock::time_point>> history;

    // Caller holds mutex.
    void finish(std::int64_t position) {
        if (position > cursor) return;
        const auto d = deliveries.lower_bound({position, std::string{}});
        if (d != deliveries.end() && d->first == position) return;
        if (held.count(position) != 0) return;
        for (const auto& [id, dl] : dead_letters) {
            if (dl.position == position) return;
        }
        const auto it = outbox.find(position);
        if (it == outbox.end()) return;
        if (retention.count() > 0) {
            history.emplace(position, std::make_pair(std::move(it->second), store_clock::now()));
        }
        outbox.erase(it);
    }

    bool matches(const dead& d, const dead_letter_filter& f) const {
        if (f.subscription && d.subscription != *f.subscription) return false;
        const auto it = outbox.find(d.position);
        if (it == outbox.end()) return false;
        if (f.key && it->second.key != *f.key) return false;
        if (f.event_name && it->second.name != *f.event_name) return false;
        return true;
    }
};

namespace {

class memory_transaction final : public store_transaction {
public:
    memory_transaction(memory_store::state& s, event_store& owner) : s_(s), owner_(owner) {}
    memory_transaction(const memory_transaction&) = delete;
    memory_transaction& operator=(const memory_transaction&) = delete;
    ~memory_transaction() override { rollback(); }

    sql_connection& sql() override {
        throw store_error(
            "evbus: memory_store has no SQL; use sqlite_store for modules with their own tables");
    }

    void append(stored_event event) override {
        check_open();
        events_.push_back(std::move(event));
    }

    bool complete(const delivery_ref& delivery) override {
        check_open();
        const std::lock_guard lock(s_.mutex);
        const auto it = s_.deliveries.find({delivery.position, delivery.subscription});
        if (it == s_.deliveries.end()) return false;
        completed_.push_back(delivery);  // the allocations first: a failure changes nothing
        try {
            s_.held.insert(delivery.position);
        } catch (...) {
            completed_.pop_back();
            throw;
        }
        s_.deliveries.erase(it);
        return true;
    }

    bool mark_processed(const event_id& event, std::string_view subscription) override {
        check_open();
        std::pair<event_id, std::string> k{event, std::string(subscription)};
        std::unique_lock lock(s_.mutex);
        for (auto it = s_.inbox.find(k); it != s_.inbox.end(); it = s_.inbox.find(k)) {
            const memory_store::state::mark& m = it->second;
            if (m.writer == nullptr || m.writer == this) return false;  // processed
            // Another transaction's mark, not committed yet: what it turns into decides.
            const auto refuse = [&](const char* why) {
                throw store_error("evbus: memory_store: event " + event.to_string() +
                                  " is being marked processed for '" + k.second +
                                  "' by another open transaction " + why);
            };
            if (m.thread == std::this_thread::get_id()) {
                refuse(
                    "of this thread, which this one would wait for forever; commit or roll "
                    "that one back first");
            }
            // Waiting for a transaction that (through others) waits for this one would never
            // end: this one fails instead, as a database's deadlock detection picks a victim.
            for (auto w = s_.inbox_waits.find(m.writer); w != s_.inbox_waits.end();
                 w = s_.inbox_waits.find(w->second)) {
                if (w->second == this) {
                    refuse("that waits for a mark of this one (a deadlock); roll this one back");
                }
            }
            s_.inbox_waits[this] = m.writer;
            s_.inbox_settled.wait(lock);
            s_.inbox_waits.erase(this);
        }
        marked_.push_back(k);  // the allocations first: a failure changes nothing
        try {
            s_.inbox.emplace(std::move(k), memory_store::state::mark{store_clock::now(), this,
                                                                     std::this_thread::get_id()});
        } catch (...) {
            marked_.pop_back();
            throw;
        }
        return true;
    }

    void commit() override {
        check_open();
        const bool notify = !events_.empty();
        {
            const std::lock_guard lock(s_.mutex);
            for (stored_event& e : events_) {
                e.position = s_.next_position++;
                s_.outbox.emplace(e.position, std::move(e));
            }
            for (const delivery_ref& d : completed_) s_.held.erase(s_.held.find(d.position));
            for (const delivery_ref& d : completed_) s_.finish(d.position);
            for (const auto& k : marked_) {
                if (const auto it = s_.inbox.find(k); it != s_.inbox.end()) {
                    it->second.writer = nullptr;
                }
            }
        }
        if (!marked_.empty()) s_.inbox_settled.notify_all();
        events_.clear();
        completed_.clear();
        marked_.clear();
        open_ = false;
        if (notify) owner_.notify_commit();
    }

    void rollback() noexcept override {
        if (!open_) return;
        open_ = false;
        events_.clear();
        const std::lock_guard lock(s_.mutex);
        for (const delivery_ref& d : completed_) s_.held.erase(s_.held.find(d.position));
        try {
            for (const delivery_ref& d : completed_)
                s_.deliveries.emplace(d.position, d.subscription);
        } catch (...) {
            // Out of memory restoring a delivery mark: nothing sensible is left to do.
        }
        for (const auto& k : marked_) s_.inbox.erase(k);
        if (!marked_.empty()) s_.inbox_settled.notify_all();
        completed_.clear();
        marked_.clear();
    }

private:
    void check_open() const {
        if (!open_) throw store_error("evbus: the transaction is over (committed or rolled back)");
    }

    memory_store::state& s_;
    event_store& owner_;
    bool open_ = true;
    std::vector<stored_event> events_;
    std::vector<delivery_ref> completed_;
    std::vector<std::pair<event_id, std::string>> marked_;
};

}  // namespace

memory_store::memory_store(std::chrono::seconds history_retention)
    : state_(std::make_unique<state>()) {
    state_->retention = history_retention;
}

memory_store::~memory_store() = default;

std::chrono::seconds memory_store::history_retention() const noexcept {
    return state_->retention;
}

std::unique_ptr<store_transaction> memory_store::begin(begin_mode) {
    return std::make_unique<memory_transaction>(*state_, *this);
}

std::vector<stored_event> memory_store::claim(std::size_t limit) {
    const std::lock_guard lock(state_->mutex);
    std::vector<stored_event> out;
    for (auto it = state_->outbox.upper_bound(state_->cursor);
         it != state_->outbox.end() && out.size() < limit; ++it) {
        out.push_back(it->second);
    }
    return out;
}

void memory_store::confirm(const dispatch_batch& batch) {
    const std::lock_guard lock(state_->mutex);
    const auto before = state_->cursor;
    for (const delivery_ref& d : batch.deliveries) {
        state_->deliveries.emplace(d.position, d.subscription);
    }
    const auto now = store_clock::now();
    for (const rejected_event& r : batch.rejected) {
        state_->dead_letters.emplace(state_->next_dead++,
                                     state::dead{r.position, {}, 0, r.reason, now, now});
    }
    state_->cursor = std::max(state_->cursor, batch.through);
    std::vector<std::int64_t> positions;
    for (auto it = state_->outbox.upper_bound(before);
         it != state_->outbox.end() && it->first <= state_->cursor; ++it) {
        positions.push_back(it->first);
    }
    for (const auto p : positions) state_->finish(p);
}

std::vector<pending_delivery> memory_store::unfinished(const std::optional<delivery_ref>& after,
                                                       std::size_t limit) {
    const std::lock_guard lock(state_->mutex);
    std::vector<pending_delivery> out;
    auto it = after ? state_->deliveries.upper_bound({after->position, after->subscription})
                    : state_->deliveries.begin();
    for (; it != state_->deliveries.end() && out.size() < limit; ++it) {
        const auto e = state_->outbox.find(it->first);
        if (e == state_->outbox.end()) continue;
        out.push_back(pending_delivery{e->second, it->second});
    }
    return out;
}

void memory_store::complete(std::span<const delivery_ref> deliveries) {
    const std::lock_guard lock(state_->mutex);
    for (const delivery_ref& d : deliveries) {
        state_->deliveries.erase({d.position, d.subscription});
        state_->finish(d.position);
    }
}

std::optional<std::int64_t> memory_store::dead_letter(const delivery_ref& delivery,
                                                      std::uint32_t attempts,
                                                      const std::string& error,
                                                      store_clock::time_point first_failure,
                                                      store_clock::time_point last_failure) {
    const std::lock_guard lock(state_->mutex);
    if (state_->deliveries.erase({delivery.position, delivery.subscription}) == 0) {
        return std::nullopt;
    }
    const std::int64_t id = state_->next_dead++;
    state_->dead_letters.emplace(id, state::dead{delivery.position, delivery.subscription, attempts,
                                                 error, first_failure, last_failure});
    return id;
}

std::vector<dead_letter_entry> memory_store::dead_letters(const dead_letter_filter& filter) {
    const std::lock_guard lock(state_->mutex);
    std::vector<dead_letter_entry> out;
    auto& all = state_->dead_letters;
    const auto [first, last] =
        filter.id ? all.equal_range(*filter.id) : std::pair{all.begin(), all.end()};
    for (const auto& [id, d] : std::ranges::subrange(first, last)) {
        if (out.size() >= filter.limit) break;
        if (!state_->matches(d, filter)) continue;
        out.push_back(dead_letter_entry{id, state_->outbox.at(d.position), d.subscription,
                                        d.attempts, d.error, d.first, d.last});
    }
    return out;
}

std::optional<pending_delivery> memory_store::requeue(std::int64_t dead_letter_id) {
    const std::lock_guard lock(state_->mutex);
    const auto it = state_->dead_letters.find(dead_letter_id);
    if (it == state_->dead_letters.end()) return std::nullopt;
    pending_delivery out{state_->outbox.at(it->second.position), it->second.subscription};
    state_->deliveries.emplace(it->second.position, it->second.subscription);
    state_->dead_letters.erase(it);
    return out;
}

bool memory_store::discard(std::int64_t dead_letter_id) {
    const std::lock_guard lock(state_->mutex);
    const auto it = state_->dead_letters.find(dead_letter_id);
    if (it == state_->dead_letters.end()) return false;
    const auto position = it->second.position;
    state_->dead_letters.erase(it);
    state_->finish(position);
    return true;
}

std::vector<stored_event> memory_store::history(const history_query& query) {
    const std::lock_guard lock(state_->mutex);
    std::vector<stored_event> out;
    for (auto it = state_->history.upper_bound(query.after_position);
         it != state_->history.end() && out.size() < query.limit; ++it) {
        const stored_event& e = it->second.first;
        if (query.key && e.key != *query.key) continue;
        if (e.occurred_at < query.from || e.occurred_at >= query.to) continue;
        out.push_back(e);
    }
    return out;
}

std::size_t memory_store::prune(store_clock::time_point cutoff) {
    const std::lock_guard lock(state_->mutex);
    std::size_t n = 0;
    n += std::erase_if(state_->history, [&](const auto& h) { return h.second.second < cutoff; });
    n += std::erase_if(state_->inbox, [&](const auto& i) {
        return i.second.writer == nullptr && i.second.at < cutoff;  // not an open one's mark
    });
    return n;
}

}  // namespace evbus
