// Shared by the engine tests: payloads, a bounded wait, a gate handlers can block on.
// No test asserts on elapsed time: waits are bounded only so that a bug fails a test
// instead of hanging it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <evbus/engine.hpp>

namespace engine_test {

/// A keyed event with a sequence number (string key: the common case).
struct step {
    static constexpr std::string_view event_name = "test.step";
    std::string key;
    int n = 0;
    [[nodiscard]] std::string_view event_key() const { return key; }
};

/// A keyed event that does not allocate (integer key), for stress and allocation tests.
struct tick {
    static constexpr std::string_view event_name = "test.tick";
    std::uint32_t key = 0;
    std::uint32_t producer = 0;
    std::uint32_t seq = 0;
    [[nodiscard]] std::uint64_t event_key() const { return key; }
};

/// A keyless event.
struct ping {
    static constexpr std::string_view event_name = "test.ping";
    int n = 0;
};

using events = evbus::event_set<step, tick, ping>;
using test_bus = evbus::bus<events>;
using test_engine = evbus::engine<events>;

/// Generous: only a broken engine waits this long.
inline constexpr auto patience = std::chrono::seconds(60);

/// Polls `pred` until it holds or `patience` ran out; returns whether it held.
template <class Pred>
bool wait_until(Pred pred) {
    const auto give_up = std::chrono::steady_clock::now() + patience;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > give_up) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

/// A one-shot gate: wait() blocks until open() (or `patience` ran out: returns false).
class gate {
public:
    void open() {
        {
            const std::lock_guard lock(mutex_);
            open_ = true;
        }
        cv_.notify_all();
    }
    bool wait() {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, patience, [this] { return open_; });
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    bool open_ = false;
};

/// Counts arrivals; wait_for(n) blocks until n threads arrived (false after `patience`).
class rendezvous {
public:
    bool arrive_and_wait(int n) {
        std::unique_lock lock(mutex_);
        ++arrived_;
        cv_.notify_all();
        return cv_.wait_for(lock, patience, [&] { return arrived_ >= n; });
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    int arrived_ = 0;
};

/// Keys that route to `count` distinct shards of `e` (key i goes to shard i).
inline std::vector<std::string> keys_on_distinct_shards(const test_engine& e, std::size_t count) {
    std::vector<std::string> keys(count);
    std::vector<bool> found(count, false);
    std::size_t missing = count;
    for (int i = 0; missing > 0 && i < 100000; ++i) {
        const std::string k = "key-" + std::to_string(i);
        const std::size_t s = e.shard_of(evbus::metadata::with_key(k));
        if (s < count && !found[s]) {
            found[s] = true;
            keys[s] = k;
            --missing;
        }
    }
    return keys;
}

}  // namespace engine_test
