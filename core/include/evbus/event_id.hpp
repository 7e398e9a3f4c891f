// evbus/event_id.hpp — 128-bit event identifiers laid out as UUIDv7 (RFC 9562).
//
// An id is unique and time-ordered: the top 48 bits are Unix milliseconds, then the version
// nibble (7), a 12-bit sequence that keeps ids made by one thread strictly increasing within
// a millisecond, the variant bits and 62 random bits. Ids made by different threads in the
// same millisecond are ordered by their sequences, then their random bits: not by when they
// were made. A thread that makes more than 4,096 ids in one millisecond goes on in the next
// one, so under such a burst its ids run up to a few milliseconds ahead of the clock. A time
// before 1970 is stored as 0 (48 bits hold no negative time).
//
// Thread-safety: event_id is a value type. event_id::generate() is thread-safe, lock-free and
// never allocates (each thread has its own generator state).
#pragma once

#include <array>
#include <chrono>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace evbus {

class event_id {
public:
    /// The nil id (all zero bits): "no id", e.g. the causation id of a root event.
    constexpr event_id() noexcept = default;
    constexpr event_id(std::uint64_t high, std::uint64_t low) noexcept : hi_(high), lo_(low) {}

    /// A fresh UUIDv7. Thread-safe, never allocates.
    [[nodiscard]] static event_id generate() noexcept;
    /// A fresh UUIDv7 for a time the caller already read (saves a clock read when the caller
    /// also needs the time, as stamping metadata does).
    [[nodiscard]] static event_id generate(std::chrono::system_clock::time_point now) noexcept;

    /// Parses the canonical 36-character form (8-4-4-4-12 hex digits, either case).
    [[nodiscard]] static std::optional<event_id> parse(std::string_view text) noexcept;

    [[nodiscard]] constexpr std::uint64_t high() const noexcept { return hi_; }
    [[nodiscard]] constexpr std::uint64_t low() const noexcept { return lo_; }
    [[nodiscard]] constexpr bool is_nil() const noexcept { return hi_ == 0 && lo_ == 0; }
    /// Unix milliseconds stored in a UUIDv7; meaningless for ids made elsewhere.
    [[nodiscard]] constexpr std::uint64_t unix_ms() const noexcept { return hi_ >> 16; }

    /// Canonical lower-case text, 36 characters, without allocating.
    [[nodiscard]] std::array<char, 36> to_chars() const noexcept;
    [[nodiscard]] std::string to_string() const;

    friend constexpr auto operator<=>(const event_id&, const event_id&) noexcept = default;

private:
    std::uint64_t hi_ = 0;
    std::uint64_t lo_ = 0;
};

}  // namespace evbus
