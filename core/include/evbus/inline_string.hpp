// evbus/inline_string.hpp — a short string stored inline, so metadata never allocates.
//
// Invariant: size() <= Capacity. Building one from a longer text throws std::length_error
// that names the field (the Name the type carries: "event key", "source"), the text and the
// limit; nothing is truncated silently. The constructors are constexpr for use inside
// constant evaluation; a constexpr variable of this type does not compile, as the bytes past
// size() are left uninitialised on purpose (see the default constructor).
//
// Thread-safety: a value type, like std::string.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace evbus {

/// A string literal as a template argument: the name an inline_string's errors give.
template <std::size_t N>
struct field_name {
    constexpr field_name(const char (&s)[N]) noexcept {  // NOLINT(google-explicit-constructor)
        std::copy_n(s, N, text);
    }
    char text[N];  // NOLINT(modernize-avoid-c-arrays): a structural type for a literal
};

template <std::size_t Capacity, field_name Name = "string">
class inline_string {
    static_assert(Capacity > 0 && Capacity < 256, "evbus: inline_string capacity must be 1..255");

public:
    /// Empty. Writes only the size: the bytes past size() are never read, and leaving them
    /// alone keeps value-initialising a metadata (four of these) from zeroing 192 bytes on
    /// every post.
    constexpr inline_string() noexcept {}  // NOLINT(modernize-use-equals-default): see above

    /// Throws std::length_error naming the field when `text` is longer than Capacity.
    constexpr inline_string(std::string_view text) { assign(text); }                      // NOLINT
    constexpr inline_string(const char* text) : inline_string(std::string_view(text)) {}  // NOLINT

    /// Replaces the text in place. Throws std::length_error naming the field when `text` is
    /// longer than Capacity; the string is then unchanged.
    constexpr void assign(std::string_view text) {
        if (text.size() > Capacity) {
            throw std::length_error(std::string("evbus: ") + Name.text + " '" + std::string(text) +
                                    "' is " + std::to_string(text.size()) +
                                    " bytes; the limit is " + std::to_string(Capacity));
        }
        std::copy(text.begin(), text.end(), data_.begin());
        size_ = static_cast<unsigned char>(text.size());
    }

    [[nodiscard]] static constexpr std::size_t capacity() noexcept { return Capacity; }
    [[nodiscard]] constexpr std::size_t size() const noexcept { return size_; }
    [[nodiscard]] constexpr bool empty() const noexcept { return size_ == 0; }
    /// The size() bytes of the text, not NUL-terminated: read them through view() or with
    /// size(), never as a C string.
    [[nodiscard]] constexpr const char* data() const noexcept { return data_.data(); }
    [[nodiscard]] constexpr std::string_view view() const noexcept { return {data_.data(), size_}; }
    constexpr operator std::string_view() const noexcept { return view(); }  // NOLINT
    [[nodiscard]] std::string str() const { return std::string(view()); }

    template <std::size_t M, field_name N>
    friend constexpr bool operator==(const inline_string& a,
                                     const inline_string<M, N>& b) noexcept {
        return a.view() == b.view();
    }
    friend constexpr bool operator==(const inline_string& a, std::string_view b) noexcept {
        return a.view() == b;
    }

private:
    std::array<char, Capacity> data_;  // only [0, size_) is meaningful; see the constructor
    unsigned char size_ = 0;
};

}  // namespace evbus
