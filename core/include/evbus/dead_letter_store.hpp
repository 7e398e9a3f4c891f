// evbus/dead_letter_store.hpp — where deliveries end up after their last failed attempt.
//
// A dead letter is one (event, subscription) delivery that failed for good: its retries ran
// out, or its error was not retryable. It keeps what an operator needs to decide and what
// the engine needs to deliver it again: the typed event, its metadata, the subscription's
// name, the number of attempts, the last error, and the first and last failure times.
//
// dead_letter_store<Set> is the storage interface: add, find, list, take (remove and
// return), size, and put_back (a requeued letter the engine could not deliver before it
// stopped). It only stores. Requeueing and discarding go through the engine
// (engine::requeue / engine::discard) because both must reach the shard that owns the
// event's key: a requeued letter is delivered through the same shard as any event with its
// key, so the order rules hold, and a parked key (see `parks_key`) is released there. The
// in-memory implementation lives here; a durable one (the outbox's) implements the same
// interface.
//
// Invariants: ids are assigned by the store, unique within it, never 0. take() of an id
// returns the letter at most once.
// Thread-safety: implementations must be thread-safe (the engine's workers add while an
// operator lists or takes). in_memory_dead_letter_store is (one mutex).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <evbus/event_set.hpp>
#include <evbus/metadata.hpp>

namespace evbus {

template <class Set>
struct dead_letter {
    std::uint64_t id = 0;  ///< assigned by the store on add()
    typename Set::variant_type event;
    metadata meta;             ///< as delivered; meta.attempt is the last attempt
    std::string subscription;  ///< the subscription that failed
    std::uint32_t attempts = 0;
    std::string last_error;
    std::chrono::system_clock::time_point first_failure{};
    std::chrono::system_clock::time_point last_failure{};
    /// The subscription parks its keys on failure and this letter heads the queue of later
    /// events of its key: they wait until it is requeued (and succeeds) or discarded.
    bool parks_key = false;
};

template <class Set>
class dead_letter_store {
public:
    using letter = dead_letter<Set>;

    virtual ~dead_letter_store() = default;
    /// Stores `l` under a new id and returns that id. May throw (a failing disk); the engine
    /// then reports the failure, with the event id, to the error sink. Thread-safe.
    virtual std::uint64_t add(letter l) = 0;
    /// A copy of the letter with `id`, if present. Thread-safe.
    [[nodiscard]] virtual std::optional<letter> find(std::uint64_t id) const = 0;
    /// Copies of all letters, oldest first. Thread-safe.
    [[nodiscard]] virtual std::vector<letter> list() const = 0;
    /// Removes the letter with `id` and returns it; nullopt when there is none. Thread-safe.
    [[nodiscard]] virtual std::optional<letter> take(std::uint64_t id) = 0;
    /// Number of letters held. Thread-safe.
    [[nodiscard]] virtual std::size_t size() const = 0;
    /// Gives back a letter that take() returned for a requeue whose delivery the engine's
    /// stop() cut off: by default it is stored again with add() (a new id), so stopping loses
    /// no letter. A store whose take() left the delivery pending elsewhere overrides this to
    /// leave it there (the outbox's: its dispatcher delivers it again after a restart). May
    /// throw like add(). Thread-safe.
    virtual void put_back(letter l) { (void)add(std::move(l)); }
};

/// A dead-letter store in memory: unbounded (dead letters are rare and each one is a
/// delivery nobody may lose), ordered by id. Thread-safe (one mutex); O(log n) add/find/take.
template <class Set>
class in_memory_dead_letter_store final : public dead_letter_store<Set> {
public:
    using letter = dead_letter<Set>;

    std::uint64_t add(letter l) override {
        const std::lock_guard lock(mutex_);
        l.id = ++last_id_;
        const std::uint64_t id = l.id;
        letters_.emplace(id, std::move(l));
        return id;
    }
    [[nodiscard]] std::optional<letter> find(std::uint64_t id) const override {
        const std::lock_guard lock(mutex_);
        const auto it = letters_.find(id);
        if (it == letters_.end()) return std::nullopt;
        return it->second;
    }
    [[nodiscard]] std::vector<letter> list() const override {
        const std::lock_guard lock(mutex_);
        std::vector<letter> out;
        out.reserve(letters_.size());
        for (const auto& [id, l] : letters_) out.push_back(l);
        return out;
    }
    [[nodiscard]] std::optional<letter> take(std::uint64_t id) override {
        const std::lock_guard lock(mutex_);
        const auto it = letters_.find(id);
        if (it == letters_.end()) return std::nullopt;
        std::optional<letter> out(std::move(it->second));
        letters_.erase(it);
        return out;
    }
    [[nodiscard]] std::size_t size() const override {
        const std::lock_guard lock(mutex_);
        return letters_.size();
    }

private:
    mutable std::mutex mutex_;
    std::map<std::uint64_t, letter> letters_;
    std::uint64_t last_id_ = 0;
};

}  // namespace evbus
