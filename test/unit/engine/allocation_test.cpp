// Proves the acceptance line "zero heap allocations per post on the ring path": global
// operator new/delete are replaced by counting versions (hence this test's own executable),
// and after a warm-up, posting and handling many non-allocating events allocates nothing —
// neither on the posting thread nor on the shard workers.
#include <evbus/engine.hpp>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

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
