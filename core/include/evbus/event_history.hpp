// evbus/event_history.hpp — completed events read back from the store, decoded, as a range.
//
//     for (const auto& h : evbus::event_history<events>(store, {.key = "user-7"})) { ... }
//     auto h = dispatcher.history(q);
//     for (auto& e : h | ranges::views::filter(is_big)) { ... }   // range-v3 pipes take it
//
// The range pages through event_store::history() (query.limit rows per store call) in
// position order, decoding each row to the current version of its payload. A row that does
// not decode is yielded with no event and an error naming the row and the cause, so a reader
// sees it instead of losing it silently.
//
// Thread-safety: a range and its iterators belong to one thread; the store may be used by
// others meanwhile (a page reflects the store when it was read).
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <evbus/codec.hpp>
#include <evbus/event_set.hpp>
#include <evbus/metadata.hpp>
#include <evbus/store.hpp>

namespace evbus {

template <class Set>
struct history_entry {
    std::int64_t position = 0;
    std::optional<typename Set::variant_type> event;  ///< empty when the row did not decode
    metadata meta;
    std::string error;  ///< why the row did not decode
};

namespace detail {

/// The event a stored row holds, with its metadata, or a reason naming the row and the cause.
template <class Set>
std::variant<std::pair<typename Set::variant_type, metadata>, std::string> decode_row(
    const stored_event& row) {
    auto result = payload_codec<Set>::decode(row.name, row.version, row.payload);
    const auto where = [&] {
        return "outbox row " + std::to_string(row.position) + " (event " + row.id.to_string() +
               ", " + row.name + " v" + std::to_string(row.version) + "): ";
    };
    if (result.index() == 1) return where() + std::get<1>(result);
    // The id is the event's identity for completion, parking and inbox dedupe; delivered
    // under an id made up on the spot, it could never be completed and would run again
    // after every restart. (A store reads an id that does not parse as nil.)
    if (row.id.is_nil()) return where() + "its event id is missing or not a valid id";
    metadata meta;
    meta.id = row.id;
    meta.correlation_id = row.correlation_id;
    meta.causation_id = row.causation_id;
    meta.trace_id = row.trace_id;
    try {
        meta.key = event_key(row.key);
        meta.source = source_name(row.source);
    } catch (const std::length_error& e) {
        return where() + e.what();
    }
    auto& event = std::get<0>(result);
    meta.occurred_at = row.occurred_at;
    meta.event_name = Set::names[event.index()];
    meta.schema_version = Set::versions[event.index()];
    meta.attempt = 1;
    return std::pair{std::move(event), meta};
}

}  // namespace detail

template <class Set>
class event_history {
public:
    event_history(event_store& store, history_query query)
        : store_(&store), query_(std::move(query)) {
        if (query_.limit == 0) query_.limit = 1;
    }

    class iterator {
    public:
        using value_type = history_entry<Set>;
        using difference_type = std::ptrdiff_t;
        using reference = const history_entry<Set>&;
        using iterator_category = std::input_iterator_tag;
        using iterator_concept = std::input_iterator_tag;

        iterator() = default;
        reference operator*() const { return owner_->current_; }
        const history_entry<Set>* operator->() const { return &owner_->current_; }
        iterator& operator++() {
            owner_->advance();
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
            return it.at_end();
        }

    private:
        [[nodiscard]] bool at_end() const noexcept { return owner_ == nullptr || owner_->done_; }
        friend class event_history;
        explicit iterator(event_history* owner) : owner_(owner) {}
        event_history* owner_ = nullptr;
    };

    /// Reads the first page. Single pass: call once.
    iterator begin() {
        advance();
        return iterator(this);
    }
    std::default_sentinel_t end() const noexcept { return {}; }

private:
    void advance() {
        if (next_ == page_.size()) {
            if (exhausted_) {
                done_ = true;
                return;
            }
            page_ = store_->history(query_);
            next_ = 0;
            exhausted_ = page_.size() < query_.limit;
            if (page_.empty()) {
                done_ = true;
                return;
            }
            query_.after_position = page_.back().position;
        }
        const stored_event& row = page_[next_++];
        current_ = history_entry<Set>{};
        current_.position = row.position;
        auto decoded = detail::decode_row<Set>(row);
        if (decoded.index() == 0) {
            current_.event.emplace(std::move(std::get<0>(decoded).first));
            current_.meta = std::get<0>(decoded).second;
        } else {
            current_.meta.id = row.id;
            current_.error = std::move(std::get<1>(decoded));
        }
    }

    event_store* store_;
    history_query query_;
    std::vector<stored_event> page_;
    std::size_t next_ = 0;
    bool exhausted_ = false;
    bool done_ = false;
    history_entry<Set> current_;
};

}  // namespace evbus
