#include <evbus/routing.hpp>

#include <cstdint>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "engine_test_support.hpp"

using namespace engine_test;

TEST_CASE("routing: key_hash is XXH3_64bits with seed 0, the same in every run",
          "[engine][routing]") {
    // The empty input is xxHash's published XXH3_64bits test vector; the others pin what
    // Debian's libxxhash 0.8.1 computes, so a change of algorithm or byte order shows here.
    CHECK(evbus::key_hash("") == 0x2D06800538D394C2ULL);
    CHECK(evbus::key_hash("user-7") == 12816815963197343038ULL);
    CHECK(evbus::key_hash("alice") == 5593767425381308080ULL);
    const evbus::event_id id(0x018f3a0000007000ULL, 0x800000000000002aULL);
    CHECK(evbus::id_hash(id) == 17019787413000642840ULL);
}

TEST_CASE("routing: a keyed event goes to hash(key) mod N, a keyless one by its id",
          "[engine][routing]") {
    evbus::metadata keyed = evbus::metadata::with_key("alice");
    keyed.id = evbus::event_id::generate();
    CHECK(evbus::route_hash(keyed) == evbus::key_hash("alice"));
    CHECK(evbus::shard_of(keyed, 7) == 5593767425381308080ULL % 7);
    evbus::metadata other = keyed;
    other.id = evbus::event_id::generate();
    CHECK(evbus::shard_of(other, 7) == evbus::shard_of(keyed, 7));  // the id does not matter

    evbus::metadata keyless;
    keyless.id = evbus::event_id(0x018f3a0000007000ULL, 0x800000000000002aULL);
    CHECK(evbus::route_hash(keyless) == 17019787413000642840ULL);
}

TEST_CASE("routing: shard_of is route_hash mod N for every N, powers of two and one included",
          "[engine][routing]") {
    // shard_of skips the hash for one shard and masks for a power of two; neither may move
    // an event to another shard than the documented "mod N".
    for (int k = 0; k < 300; ++k) {
        evbus::metadata m =
            k % 3 == 0 ? evbus::metadata{} : evbus::metadata::with_key("user-" + std::to_string(k));
        m.id = evbus::event_id::generate();
        const std::uint64_t hash = evbus::route_hash(m);
        for (std::size_t n = 1; n <= 17; ++n) {
            INFO("key '" << m.key.view() << "', " << n << " shards");
            CHECK(evbus::shard_of(m, n) == hash % n);
        }
    }
}

TEST_CASE("routing: keyless events spread over the shards", "[engine][routing]") {
    std::set<std::size_t> used;
    for (int i = 0; i < 200; ++i) {
        evbus::metadata m;
        m.id = evbus::event_id::generate();
        used.insert(evbus::shard_of(m, 4));
    }
    CHECK(used.size() == 4);
}

TEST_CASE("routing: the engine routes a payload's key like explicit metadata",
          "[engine][routing]") {
    test_bus bus;
    std::atomic<int> unused{0};
    auto sub = bus.subscribe("s", [&](const tick&) { ++unused; });
    test_engine engine(bus, {.shards = 5});
    evbus::metadata from_payload;
    test_bus::prepare(tick{42, 0, 0}, from_payload);
    CHECK(from_payload.key == "42");
    CHECK(engine.shard_of(from_payload) == engine.shard_of(evbus::metadata::with_key("42")));
    CHECK(engine.shard_of(from_payload) == evbus::key_hash("42") % 5);
}
