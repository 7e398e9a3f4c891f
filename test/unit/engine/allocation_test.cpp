// Proves the acceptance line "zero heap allocations per post on the ring path": global
// operator new/delete are replaced by counting versions (hence this test's own executable),
// and after a warm-up, posting and handling many non-allocating events allocates nothing —
// neither on the posting thread nor on the shard workers.
#include <evbus/engine.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <vector>

#include <catch2/catch.hpp>

#include "counting_new.hpp"

#include "engine_test_support.hpp"

using namespace engine_test;

TEST_CASE("allocation: posting and handling non-allocating events allocates nothing",
          "[engine][allocation]") {
    test_bus bus;
    std::atomic<std::uint64_t> handled{0};
    auto keyed = bus.subscribe("keyed", [&](const tick&) {
        handled.fetch_add(1, std::memory_order_relaxed);  // a count read after drain()
    });
    auto keyless = bus.subscribe("keyless", [&](const ping&) {
        handled.fetch_add(1, std::memory_order_relaxed);  // as above
    });
    test_engine engine(bus, {.shards = 2, .ring_capacity = 256});

    constexpr std::uint32_t warm_up = 2'000;
    constexpr std::uint32_t measured = 50'000;
    for (std::uint32_t i = 0; i < warm_up; ++i) {
        engine.post(tick{i % 100, 0, i});
        engine.post(ping{static_cast<int>(i)});
        if (engine.try_post(tick{i % 100, 0, i})) engine.post(tick{i % 100, 0, i});
    }
    engine.drain();
    const std::uint64_t handled_before = handled.load();

    const std::size_t before = evbus_test::allocation_count();
    for (std::uint32_t i = 0; i < measured; ++i) {
        engine.post(tick{i % 100, 1, i});        // blocking post, keyed
        engine.post(ping{static_cast<int>(i)});  // keyless
        while (engine.try_post(tick{i % 100, 2, i})) {
            // full: let the workers catch up (try_post allocates nothing either way)
        }
    }
    engine.drain();
    const std::size_t after = evbus_test::allocation_count();

    CHECK(handled.load() - handled_before == 3ULL * measured);
    CHECK(after - before == 0);
}

namespace {

// The in-memory store, except that the allocation right after a take() fails on the thread
// that took the letter: memory running out at the worst moment of a requeue.
class failing_after_take final : public evbus::dead_letter_store<events> {
public:
    std::uint64_t add(letter l) override { return inner_.add(std::move(l)); }
    [[nodiscard]] std::optional<letter> find(std::uint64_t id) const override {
        return inner_.find(id);
    }
    [[nodiscard]] std::vector<letter> list() const override { return inner_.list(); }
    [[nodiscard]] std::optional<letter> take(std::uint64_t id) override {
        auto l = inner_.take(id);
        evbus_test::fail_next_allocation_here();
        return l;
    }
    [[nodiscard]] std::size_t size() const override { return inner_.size(); }

private:
    evbus::in_memory_dead_letter_store<events> inner_;
};

}  // namespace

TEST_CASE("allocation: requeue() allocates nothing once the letter left the store",
          "[engine][allocation][dead_letter]") {
    test_bus bus;
    std::atomic<bool> down{true};
    std::atomic<int> delivered{0};
    evbus::subscribe_options once;
    once.retry.max_attempts = 1;
    auto sub = bus.subscribe(
        "mail",
        [&](const step&) {
            if (down) throw std::runtime_error("smtp down");
            ++delivered;
        },
        once);
    auto store = std::make_shared<failing_after_take>();
    test_engine engine(bus, {.shards = 1, .dead_letters = store});
    engine.post(step{"alice", 1});
    engine.drain();
    const auto letters = store->list();
    REQUIRE(letters.size() == 1);
    down = false;
    // An allocation after take() would fail here, and the letter would be in neither the
    // store nor the ring.
    CHECK(!engine.requeue(letters[0].id));
    CHECK(evbus_test::disarm_allocation_failure());
    engine.drain();
    CHECK(delivered == 1);
}
