#include <evbus/mpsc_ring.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <latch>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "counting_new.hpp"

namespace {

using evbus::mpsc_ring;

#if defined(__SANITIZE_THREAD__)
constexpr std::uint32_t stress_items = 20'000;
#else
constexpr std::uint32_t stress_items = 250'000;
#endif

// Counts constructions and destructions, to prove each value is destroyed exactly once.
struct tracked {
    static inline std::atomic<int> constructed{0};
    static inline std::atomic<int> destroyed{0};
    static void reset() {
        constructed = 0;
        destroyed = 0;
    }

    explicit tracked(int v) noexcept : value(v) { ++constructed; }
    tracked(tracked&& other) noexcept : value(other.value) { ++constructed; }
    tracked(const tracked&) = delete;
    tracked& operator=(const tracked&) = delete;
    tracked& operator=(tracked&&) = delete;
    ~tracked() { ++destroyed; }

    int value;
};

// A type whose constructor throws for negative input.
struct picky {
    explicit picky(int v) : value(v) {
        if (v < 0) throw std::runtime_error("picky: negative");
    }
    picky(picky&&) noexcept = default;
    int value;
};

// The 64-byte payload of the benchmark: trivially copyable, never allocates.
struct payload64 {
    std::array<std::uint64_t, 8> words{};
};
static_assert(sizeof(payload64) == 64);

struct stamped {
    std::uint32_t producer = 0;
    std::uint32_t seq = 0;
};

}  // namespace

TEST_CASE("ring: pop after push returns the same events in order", "[core][ring]") {
    mpsc_ring<int> ring(8);
    for (int i = 1; i <= 5; ++i) REQUIRE(ring.try_push(int{i}));
    CHECK(ring.approx_size() == 5);
    for (int i = 1; i <= 5; ++i) {
        const std::optional<int> v = ring.try_pop();
        REQUIRE(v.has_value());
        CHECK(*v == i);
    }
    CHECK_FALSE(ring.try_pop().has_value());
    CHECK(ring.approx_size() == 0);
}

TEST_CASE("ring: capacity must be a power of two of at least two", "[core][ring]") {
    CHECK(mpsc_ring<int>(2).capacity() == 2);
    CHECK(mpsc_ring<int>(1024).capacity() == 1024);
    CHECK_THROWS_WITH(mpsc_ring<int>(0), Catch::Contains("capacity 0"));
    CHECK_THROWS_WITH(mpsc_ring<int>(1), Catch::Contains("capacity 1"));
    CHECK_THROWS_WITH(mpsc_ring<int>(3), Catch::Contains("capacity 3 is not a power of two"));
    CHECK_THROWS_AS(mpsc_ring<int>(1000), std::invalid_argument);
    // Too large to address at all: a clear error, not std::bad_array_new_length.
    CHECK_THROWS_WITH(mpsc_ring<int>(std::size_t{1} << 62),
                      Catch::Contains("capacity 4611686018427387904 slots of 64 bytes exceed"));
}

TEST_CASE("ring: try_push reports full and leaves the value untouched", "[core][ring]") {
    mpsc_ring<std::unique_ptr<int>> ring(4);
    for (int i = 0; i < 4; ++i) REQUIRE(ring.try_push(std::make_unique<int>(i)));
    auto extra = std::make_unique<int>(99);
    CHECK_FALSE(ring.try_push(std::move(extra)));
    REQUIRE(extra != nullptr);  // not moved from on failure
    CHECK(*extra == 99);
    CHECK(ring.approx_size() == 4);
    auto another = std::make_unique<int>(5);
    CHECK_FALSE(ring.try_emplace(std::move(another)));
    CHECK(another != nullptr);

    // One pop frees exactly one slot.
    REQUIRE(ring.try_pop().has_value());
    CHECK(ring.try_push(std::move(extra)));
    CHECK_FALSE(ring.try_push(std::make_unique<int>(7)));
}

TEST_CASE("ring: values wrap around over many laps in order", "[core][ring]") {
    mpsc_ring<std::uint64_t> ring(4);
    std::uint64_t next_in = 0;
    std::uint64_t next_out = 0;
    for (int round = 0; round < 5000; ++round) {
        const int burst = 1 + round % 4;  // 1..4, so the fill level moves across the boundary
        for (int i = 0; i < burst; ++i) {
            if (!ring.try_push(std::uint64_t{next_in})) break;
            ++next_in;
        }
        const std::size_t take = static_cast<std::size_t>(1 + (round * 7) % 4);
        ring.consume([&](std::uint64_t& v) { CHECK(v == next_out++); }, take);
    }
    while (auto v = ring.try_pop()) CHECK(*v == next_out++);
    CHECK(next_out == next_in);
    CHECK(next_in > 4 * 1000);  // many laps of a 4-slot ring
}

TEST_CASE("ring: consume hands over a batch in order and frees it", "[core][ring]") {
    mpsc_ring<int> ring(16);
    for (int i = 0; i < 10; ++i) REQUIRE(ring.try_push(int{i}));
    std::vector<int> seen;
    CHECK(ring.consume([&](int& v) { seen.push_back(v); }, 4) == 4);
    CHECK(seen == std::vector<int>{0, 1, 2, 3});
    CHECK(ring.approx_size() == 6);
    CHECK(ring.consume([&](int& v) { seen.push_back(v); }, 100) == 6);
    CHECK(seen.size() == 10);
    CHECK(seen.back() == 9);
    CHECK(ring.consume([&](int&) { FAIL("empty ring handed out a value"); }, 100) == 0);
    // All 16 slots are free again.
    for (int i = 0; i < 16; ++i) REQUIRE(ring.try_push(int{i}));
    CHECK_FALSE(ring.try_push(16));
}

TEST_CASE("ring: a consume callback that returns false ends the batch after that value",
          "[core][ring]") {
    mpsc_ring<int> ring(8);
    for (int i = 0; i < 6; ++i) REQUIRE(ring.try_push(int{i}));
    std::vector<int> seen;
    const auto until_two = [&](int& v) {
        seen.push_back(v);
        return v != 2;
    };
    CHECK(ring.consume(until_two, 100) == 3);
    CHECK(seen == std::vector<int>{0, 1, 2});
    CHECK(ring.approx_size() == 3);  // the batch up to the stop was freed
    CHECK(ring.consume(until_two, 100) == 3);
    CHECK(seen == std::vector<int>{0, 1, 2, 3, 4, 5});
}

TEST_CASE("ring: non-trivial values are destroyed exactly once", "[core][ring]") {
    tracked::reset();
    {
        mpsc_ring<tracked> ring(8);
        for (int i = 0; i < 6; ++i) REQUIRE(ring.try_emplace(i));
        CHECK(tracked::constructed == 6);  // built in the slot, no temporary

        const std::optional<tracked> first = ring.try_pop();
        REQUIRE(first.has_value());
        CHECK(first->value == 0);

        int sum = 0;
        CHECK(ring.consume([&](tracked& t) { sum += t.value; }, 2) == 2);
        CHECK(sum == 1 + 2);
        // Values 3, 4, 5 stay queued and die with the ring.
    }
    CHECK(tracked::constructed == 7);  // six emplaced, one moved into the optional
    CHECK(tracked::destroyed == tracked::constructed);
}

TEST_CASE("ring: std::string values survive wrap-around and are freed", "[core][ring]") {
    mpsc_ring<std::string> ring(4);
    std::size_t popped = 0;
    for (int i = 0; i < 100; ++i) {
        // Long enough to defeat the small-string buffer, so ASan sees any leak or double free.
        REQUIRE(ring.try_push(std::string(40, static_cast<char>('a' + i % 26))));
        if (i % 3 == 2) {
            ring.consume(
                [&](std::string& s) {
                    CHECK(s.size() == 40);
                    ++popped;
                },
                8);
        }
    }
    CHECK(popped + ring.approx_size() == 100);
}

TEST_CASE("ring: an exception from the consume callback frees what it was given", "[core][ring]") {
    tracked::reset();
    {
        mpsc_ring<tracked> ring(8);
        for (int i = 0; i < 5; ++i) REQUIRE(ring.try_emplace(i));
        CHECK_THROWS_AS(ring.consume(
                            [](tracked& t) {
                                if (t.value == 2) throw std::runtime_error("handler failed");
                            },
                            8),
                        std::runtime_error);
        CHECK(tracked::destroyed == 3);  // 0, 1 and the one that threw
        const std::optional<tracked> next = ring.try_pop();
        REQUIRE(next.has_value());
        CHECK(next->value == 3);
    }
    CHECK(tracked::destroyed == tracked::constructed);
}

TEST_CASE("ring: a throwing constructor in try_emplace leaves no claimed slot behind",
          "[core][ring]") {
    mpsc_ring<picky> ring(2);
    REQUIRE(ring.try_emplace(1));
    CHECK_THROWS_AS(ring.try_emplace(-1), std::runtime_error);
    REQUIRE(ring.try_emplace(2));
    CHECK_FALSE(ring.try_emplace(3));
    CHECK(ring.try_pop()->value == 1);
    CHECK(ring.try_pop()->value == 2);
    CHECK_FALSE(ring.try_pop().has_value());
}

TEST_CASE("ring: push and pop of a 64-byte payload never allocate", "[core][ring]") {
    mpsc_ring<payload64> ring(64);
    const std::size_t before = evbus_test::allocation_count();
    std::uint64_t sum = 0;
    for (std::uint64_t i = 0; i < 10'000; ++i) {
        payload64 p;
        p.words[0] = i;
        if (i % 2 == 0) {
            ring.push(std::move(p));
        } else {
            (void)ring.try_push(std::move(p));
        }
        if (i % 16 == 15) {
            ring.consume([&](payload64& q) { sum += q.words[0]; }, 64);
            if (auto q = ring.try_pop()) sum += q->words[0];
        }
    }
    ring.consume([&](payload64& q) { sum += q.words[0]; }, 64);
    const std::size_t after = evbus_test::allocation_count();
    CHECK(after == before);
    CHECK(sum == 10'000ULL * 9'999ULL / 2);
}

TEST_CASE("ring: blocking push waits while full and completes after a pop", "[core][ring]") {
    mpsc_ring<int> ring(2);
    REQUIRE(ring.try_push(1));
    REQUIRE(ring.try_push(2));
    std::latch started(1);
    std::atomic<bool> pushed{false};
    std::thread producer([&] {
        started.count_down();
        ring.push(3);
        pushed.store(true, std::memory_order_release);
    });
    started.wait();
    // Not an assertion on time: only gives the producer a chance to reach the futex wait.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK_FALSE(pushed.load(std::memory_order_acquire));  // the ring is still full
    CHECK(ring.approx_size() == 2);

    REQUIRE(ring.try_pop() == 1);
    producer.join();
    CHECK(pushed.load(std::memory_order_acquire));
    CHECK(ring.try_pop() == 2);
    CHECK(ring.try_pop() == 3);
}

TEST_CASE("ring: blocked pushers are all woken by a consumer batch", "[core][ring]") {
    mpsc_ring<int> ring(2);
    REQUIRE(ring.try_push(0));
    REQUIRE(ring.try_push(0));
    constexpr int pushers = 3;
    std::latch started(pushers);
    std::vector<std::thread> threads;
    for (int t = 1; t <= pushers; ++t) {
        threads.emplace_back([&ring, &started, t] {
            started.count_down();
            ring.push(int{t});
        });
    }
    started.wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let them block (no assert)
    int sum = 0;
    int received = 0;
    while (received < pushers + 2) {
        received += static_cast<int>(ring.consume([&](int& v) { sum += v; }, 8));
        if (received < pushers + 2) std::this_thread::yield();
    }
    for (auto& t : threads) t.join();
    CHECK(sum == 1 + 2 + 3);
    CHECK_FALSE(ring.try_pop().has_value());
}

TEST_CASE("ring: try_push_with builds the value in the claimed slot, only when one is free",
          "[core][ring]") {
    mpsc_ring<int> ring(2);
    int builds = 0;
    const auto build = [&](void* storage) noexcept {
        ::new (storage) int(10 + builds);
        ++builds;
    };
    CHECK(ring.try_push_with(build));
    CHECK(ring.try_push_with(build));
    CHECK_FALSE(ring.try_push_with(build));  // full: not called
    CHECK(builds == 2);
    CHECK(ring.claimed() == 2);
    CHECK(ring.try_pop() == 10);
    CHECK(ring.try_pop() == 11);
}

TEST_CASE("ring: wait_for_space returns once a slot frees, or on give-up and wake_producers",
          "[core][ring]") {
    mpsc_ring<int> ring(2);
    REQUIRE(ring.try_push(1));
    REQUIRE(ring.try_push(2));

    SECTION("a consumer batch frees a slot") {
        std::latch started(1);
        std::atomic<bool> pushed{false};
        std::thread producer([&] {
            started.count_down();
            while (!ring.try_push(3)) ring.wait_for_space([] { return false; });
            pushed.store(true);
        });
        started.wait();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it block (no assert)
        CHECK_FALSE(pushed.load());
        REQUIRE(ring.try_pop() == 1);
        producer.join();
        CHECK(pushed.load());
        CHECK(ring.try_pop() == 2);
        CHECK(ring.try_pop() == 3);
    }
    SECTION("give-up set, then wake_producers: returns while still full") {
        std::atomic<bool> give_up{false};
        std::latch started(1);
        std::atomic<bool> returned{false};
        std::thread producer([&] {
            started.count_down();
            ring.wait_for_space([&] { return give_up.load(); });
            returned.store(true);
        });
        started.wait();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it block (no assert)
        CHECK_FALSE(returned.load());
        give_up.store(true);
        ring.wake_producers();
        producer.join();
        CHECK(returned.load());
        CHECK(ring.approx_size() == 2);  // nothing was consumed: the give-up released it
    }
}

TEST_CASE("ring: wait_for_items returns false once the stop flag is set", "[core][ring]") {
    mpsc_ring<int> ring(4);
    std::atomic<bool> stop{true};
    CHECK_FALSE(ring.wait_for_items(stop));

    stop.store(false);
    REQUIRE(ring.try_push(1));
    CHECK(ring.wait_for_items(stop));  // ready values win over spinning
}

TEST_CASE("ring: wait_for_items runs the caller's step after every empty look", "[core][ring]") {
    mpsc_ring<int> ring(4);
    std::atomic<bool> stop{false};

    // Values already there: no step at all.
    REQUIRE(ring.try_push(1));
    int steps = 0;
    CHECK(ring.wait_for_items(stop, [&]() noexcept { ++steps; }));
    CHECK(steps == 0);
    REQUIRE(ring.try_pop() == std::optional<int>(1));

    // The step publishes a value on its fifth call: the very next look finds it.
    CHECK(ring.wait_for_items(stop, [&]() noexcept {
        if (++steps == 5) CHECK(ring.try_push(2));
    }));
    CHECK(steps == 5);
    CHECK(ring.try_pop() == std::optional<int>(2));

    // Spinning and yielding, one step per look; the push that ends the wait comes only after
    // all of them, so the consumer has blocked (or is about to) when it arrives.
    constexpr int looks = mpsc_ring<int>::spin_rounds + mpsc_ring<int>::yield_rounds;
    std::atomic<int> counted{0};
    bool said_ready = false;  // Catch assertions are not thread-safe: checked after join
    std::thread consumer(
        [&] { said_ready = ring.wait_for_items(stop, [&]() noexcept { counted.fetch_add(1); }); });
    while (counted.load() < looks) std::this_thread::yield();
    REQUIRE(ring.try_push(3));
    consumer.join();
    CHECK(said_ready);
    CHECK(counted.load() >= looks);
    CHECK(ring.try_pop() == std::optional<int>(3));
}

TEST_CASE("ring: a sleeping consumer wakes on push", "[core][ring]") {
    mpsc_ring<int> ring(4);
    std::atomic<bool> stop{false};
    std::latch started(1);
    std::optional<int> got;
    bool waits_said_ready = true;  // Catch assertions are not thread-safe: checked after join
    std::thread consumer([&] {
        started.count_down();
        while (!got && waits_said_ready) {
            waits_said_ready = ring.wait_for_items(stop);
            got = ring.try_pop();
        }
    });
    started.wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it block (no assert)
    REQUIRE(ring.try_push(42));
    consumer.join();
    CHECK(waits_said_ready);
    REQUIRE(got.has_value());
    CHECK(*got == 42);
}

TEST_CASE("ring: a sleeping consumer wakes on stop and wake_consumer", "[core][ring]") {
    mpsc_ring<int> ring(4);
    std::atomic<bool> stop{false};
    std::latch started(1);
    std::atomic<int> result{-1};
    std::thread consumer([&] {
        started.count_down();
        bool r = true;
        while (r && !stop.load()) r = ring.wait_for_items(stop);
        result.store(r ? 1 : 0);
    });
    started.wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it block (no assert)
    stop.store(true);
    ring.wake_consumer();
    consumer.join();
    CHECK(result.load() == 0);
}

namespace {

// P producers push stamped sequences; one consumer checks each producer's order, the total
// and duplicates. A small ring keeps it full, so blocking pushes and many laps are exercised.
void run_stress(std::uint32_t producers, std::uint32_t items, std::size_t capacity) {
    mpsc_ring<stamped> ring(capacity);
    std::latch go(producers + 1);
    std::vector<std::thread> threads;
    for (std::uint32_t p = 0; p < producers; ++p) {
        threads.emplace_back([&ring, &go, p, items] {
            go.arrive_and_wait();
            for (std::uint32_t i = 0; i < items; ++i) {
                if (p % 2 == 0) {
                    ring.push(stamped{p, i});
                } else {
                    while (!ring.try_push(stamped{p, i})) std::this_thread::yield();
                }
            }
        });
    }
    std::vector<std::uint32_t> next(producers, 0);
    std::uint64_t received = 0;
    std::uint64_t out_of_order = 0;
    const std::uint64_t total = std::uint64_t{producers} * items;
    const std::atomic<bool> stop{false};
    go.arrive_and_wait();
    while (received < total) {
        const std::size_t n = ring.consume(
            [&](stamped& s) {
                if (s.producer >= producers || s.seq != next[s.producer]) {
                    ++out_of_order;
                } else {
                    ++next[s.producer];
                }
            },
            256);
        received += n;
        if (n == 0) ring.wait_for_items(stop);
    }
    for (auto& t : threads) t.join();
    CHECK(out_of_order == 0);
    CHECK(received == total);
    for (std::uint32_t p = 0; p < producers; ++p) CHECK(next[p] == items);
    CHECK_FALSE(ring.try_pop().has_value());
}

}  // namespace

TEST_CASE("ring: 4 producers keep per-producer order, total exact, no duplicates",
          "[core][ring][stress]") {
    run_stress(4, stress_items, 64);
}

TEST_CASE("ring: 3 producers on a 2-core machine keep per-producer order", "[core][ring][stress]") {
    run_stress(3, stress_items, 1024);
}

TEST_CASE("ring: 2 producers with a 2-slot ring keep order through constant contention",
          "[core][ring][stress]") {
    run_stress(2, stress_items / 10, 2);
}
