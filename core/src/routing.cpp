#include <evbus/routing.hpp>

#include <array>

// Header-only use of Debian's libxxhash-dev: everything is inlined into this file, so the
// installed library carries no link dependency on libxxhash.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace evbus {

std::uint64_t key_hash(std::string_view key) noexcept {
    return XXH3_64bits(key.data(), key.size());
}

std::uint64_t id_hash(const event_id& id) noexcept {
    std::array<unsigned char, 16> bytes{};
    for (std::size_t i = 0; i < 8; ++i) {
        const unsigned shift = static_cast<unsigned>(56 - 8 * i);
        bytes[i] = static_cast<unsigned char>(id.high() >> shift);
        bytes[8 + i] = static_cast<unsigned char>(id.low() >> shift);
    }
    return XXH3_64bits(bytes.data(), bytes.size());
}

std::uint64_t route_hash(const metadata& meta) noexcept {
    return meta.key.empty() ? id_hash(meta.id) : key_hash(meta.key.view());
}

}  // namespace evbus
