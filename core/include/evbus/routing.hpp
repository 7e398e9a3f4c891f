// evbus/routing.hpp — which shard an event goes to.
//
// The route is a stable function of the event's metadata, the same in every run, process
// and machine (so a durable store or a restarted engine sends a key where it went before):
//
//   keyed event    shard = XXH3_64bits(key bytes, seed 0) mod shards
//   keyless event  shard = XXH3_64bits(16 id bytes, big-endian: high word then low word,
//                  seed 0) mod shards
//
// XXH3_64bits is xxHash's 64-bit XXH3 (the stable, documented algorithm of xxHash 0.8).
// The key is the metadata's key, which bus::prepare fills from the payload's event_key()
// when the caller left it empty. Events with equal keys share a shard, so they are handled
// in order. Keyless events carry no order: they are spread over the shards by their id and
// may be handled in any order relative to each other.
//
// Thread-safety: pure functions; safe from any thread. Never allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <evbus/event_id.hpp>
#include <evbus/metadata.hpp>

namespace evbus {

/// XXH3_64bits of the key's bytes with seed 0. O(size), never allocates.
[[nodiscard]] std::uint64_t key_hash(std::string_view key) noexcept;

/// XXH3_64bits of the id's 16 bytes, high word first, each big-endian, seed 0. O(1).
[[nodiscard]] std::uint64_t id_hash(const event_id& id) noexcept;

/// The routing hash: key_hash(meta.key) when the key is set, id_hash(meta.id) otherwise.
[[nodiscard]] std::uint64_t route_hash(const metadata& meta) noexcept;

/// route_hash(meta) mod shards. `shards` must be >= 1. Computed without the hash when there
/// is one shard, and by masking when `shards` is a power of two: the same result, without
/// the 64-bit division (tens of cycles) on every post.
[[nodiscard]] inline std::size_t shard_of(const metadata& meta, std::size_t shards) noexcept {
    if (shards == 1) return 0;
    const std::uint64_t hash = route_hash(meta);
    if ((shards & (shards - 1)) == 0) return static_cast<std::size_t>(hash & (shards - 1));
    return static_cast<std::size_t>(hash % shards);
}

}  // namespace evbus
