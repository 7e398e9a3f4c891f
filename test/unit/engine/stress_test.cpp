#include <evbus/engine.hpp>

#include <atomic>
#include <cstdint>
#include <latch>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "engine_test_support.hpp"

using namespace engine_test;

namespace {

#if defined(__SANITIZE_THREAD__)
constexpr std::uint32_t per_producer = 50'000;  // TSan runs 5-15x slower
#elif defined(__SANITIZE_ADDRESS__)
constexpr std::uint32_t per_producer = 100'000;
#else
constexpr std::uint32_t per_producer = 250'000;
#endif
constexpr std::uint32_t key_count = 1'000;
constexpr std::uint32_t max_producers = 4;

// Every producer posts `per_producer` ticks spread over the keys, numbering each (producer,
// key) pair's ticks 0, 1, 2, ... The handler checks that each pair's numbers arrive strictly
// increasing; the totals then show that nothing was lost and nothing came twice.
void run_stress(std::uint32_t producers, std::size_t shards) {
    struct key_state {
        std::int64_t last[max_producers] = {-1, -1, -1, -1};
        std::uint64_t count = 0;
        std::uint64_t out_of_order = 0;
    };
    // A key belongs to one shard, so each key_state has one writer; read after drain().
    std::vector<key_state> keys(key_count);
    test_bus bus;
    auto sub = bus.subscribe("checker", [&keys](const tick& t) {
        key_state& k = keys[t.key];
        if (static_cast<std::int64_t>(t.seq) <= k.last[t.producer]) ++k.out_of_order;
        k.last[t.producer] = t.seq;
        ++k.count;
    });
    test_engine engine(bus, {.shards = shards});

    std::vector<std::vector<std::uint32_t>> sent(producers, std::vector<std::uint32_t>(key_count));
    std::latch start(producers);
    std::vector<std::thread> threads;
    for (std::uint32_t p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            auto& seq = sent[p];
            start.arrive_and_wait();
            for (std::uint32_t i = 0; i < per_producer; ++i) {
                const std::uint32_t key = (i * 7919U + p * 104729U) % key_count;
                engine.post(tick{key, p, seq[key]++});
            }
        });
    }
    for (auto& t : threads) t.join();
    engine.drain();

    std::uint64_t total = 0;
    std::uint64_t out_of_order = 0;
    std::uint64_t wrong_last = 0;
    for (std::uint32_t k = 0; k < key_count; ++k) {
        total += keys[k].count;
        out_of_order += keys[k].out_of_order;
        for (std::uint32_t p = 0; p < producers; ++p) {
            if (keys[k].last[p] != static_cast<std::int64_t>(sent[p][k]) - 1) ++wrong_last;
        }
    }
    CHECK(total == std::uint64_t{producers} * per_producer);
    CHECK(out_of_order == 0);
    CHECK(wrong_last == 0);
    std::uint64_t accepted = 0;
    for (const auto& s : engine.metrics().shards) accepted += s.accepted;
    CHECK(accepted == total);
}

}  // namespace

TEST_CASE("stress: 4 producers over 1,000 keys: per-key order, exact total, no duplicates",
          "[engine][stress]") {
    run_stress(4, 4);
}

TEST_CASE("stress: 3 producers on 2 shards: per-key order, exact total, no duplicates",
          "[engine][stress]") {
    run_stress(3, 2);
}
