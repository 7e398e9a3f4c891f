// evbus/detail/type_list.hpp — small pack utilities used by the compile-time checks.
#pragma once

#include <cstddef>
#include <type_traits>

namespace evbus::detail {

template <class T, class... Ts>
inline constexpr std::size_t count_of = (std::size_t{std::is_same_v<T, Ts>} + ... + 0);

template <class T, class... Ts>
constexpr std::size_t index_of_impl() {
    constexpr bool matches[] = {std::is_same_v<T, Ts>..., false};
    for (std::size_t i = 0; i < sizeof...(Ts); ++i) {
        if (matches[i]) return i;
    }
    return sizeof...(Ts);
}

template <class T, class... Ts>
inline constexpr std::size_t index_of = index_of_impl<T, Ts...>();

template <class>
inline constexpr bool dependent_false = false;

}  // namespace evbus::detail
