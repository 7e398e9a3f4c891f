#include <evbus/event_id.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>

#include <pthread.h>

namespace evbus {
namespace {

std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31U);
}

// Counts the fork()s this process came out of as the child. A child inherits the forking
// thread's generator, state and all, and would hand out the ids its parent hands out next;
// a generator seeded in an earlier generation therefore seeds itself again.
std::atomic<std::uint32_t> fork_generation{0};

void after_fork_in_child() noexcept {
    // Relaxed: the child has one thread here, and every thread it starts later is ordered
    // after this store by its creation.
    fork_generation.fetch_add(1, std::memory_order_relaxed);
}

[[maybe_unused]] const int fork_handler_registered =
    ::pthread_atfork(nullptr, nullptr, &after_fork_in_child);

// Per-thread generator: no shared state (but the fork generation, read-only in practice), so
// generate() needs no synchronisation.
struct generator {
    std::uint64_t rng = 0;
    std::uint64_t last_ms = 0;
    std::uint32_t seq = 0;
    std::uint32_t generation = 0;

    generator() noexcept { seed(); }

    void seed() noexcept {
        // Relaxed: see after_fork_in_child().
        generation = fork_generation.load(std::memory_order_relaxed);
        std::random_device rd;
        rng = (static_cast<std::uint64_t>(rd()) << 32U) ^ rd() ^
              static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(this));
    }
};

constexpr std::uint32_t seq_limit = 0xFFFU;

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

event_id event_id::generate() noexcept {
    return generate(std::chrono::system_clock::now());
}

event_id event_id::generate(std::chrono::system_clock::time_point now) noexcept {
    thread_local generator gen;
    // Relaxed: see after_fork_in_child().
    if (gen.generation != fork_generation.load(std::memory_order_relaxed)) gen.seed();
    // Clamped to what 48 bits hold: a time before 1970 (a clock set wrong, or a caller's)
    // would otherwise become a huge millisecond the thread's later ids could never pass.
    constexpr std::int64_t ms_limit = 0xFFFF'FFFF'FFFFLL;
    const std::int64_t since_epoch =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    auto ms = static_cast<std::uint64_t>(std::clamp<std::int64_t>(since_epoch, 0, ms_limit));
    if (ms > gen.last_ms) {
        gen.last_ms = ms;
        gen.seq = 0;
    } else if (gen.seq < seq_limit) {
        ++gen.seq;  // same (or an earlier, after a clock step) millisecond: keep increasing
    } else {
        ++gen.last_ms;  // 4096 ids in one millisecond: borrow the next one
        gen.seq = 0;
    }
    ms = gen.last_ms & 0xFFFF'FFFF'FFFFULL;
    const std::uint64_t hi = (ms << 16U) | (0x7ULL << 12U) | gen.seq;
    const std::uint64_t lo = (splitmix64(gen.rng) >> 2U) | (0x2ULL << 62U);
    return event_id{hi, lo};
}

std::array<char, 36> event_id::to_chars() const noexcept {
    static constexpr char digits[] = "0123456789abcdef";
    std::array<char, 36> out{};
    std::size_t pos = 0;
    for (int nibble = 0; nibble < 32; ++nibble) {
        if (nibble == 8 || nibble == 12 || nibble == 16 || nibble == 20) out[pos++] = '-';
        const std::uint64_t word = nibble < 16 ? hi_ : lo_;
        const unsigned shift = static_cast<unsigned>(60 - 4 * (nibble % 16));
        out[pos++] = digits[(word >> shift) & 0xFU];
    }
    return out;
}

std::string event_id::to_string() const {
    const auto chars = to_chars();
    return {chars.data(), chars.size()};
}

std::optional<event_id> event_id::parse(std::string_view text) noexcept {
    if (text.size() != 36) return std::nullopt;
    std::uint64_t words[2] = {0, 0};
    int nibble = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-') return std::nullopt;
            continue;
        }
        const int v = hex_value(text[i]);
        if (v < 0) return std::nullopt;
        auto& word = words[nibble / 16];
        word = (word << 4U) | static_cast<std::uint64_t>(v);
        ++nibble;
    }
    return event_id{words[0], words[1]};
}

}  // namespace evbus
