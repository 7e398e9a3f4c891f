// evbus/event_set.hpp — the closed set of an application's events.
//
// An event set is a list of plain payload structs, each of which declares
//
//     static constexpr std::string_view event_name = "transfer.moneyTransferred";
//     static constexpr std::uint32_t event_version = 2;          // optional, default 1
//     std::string_view event_key() const { return user_id; }       // optional ordering key
//
// event_set<Es...> checks at compile time that every payload is named, nothrow-movable,
// listed once, that no two payloads share a name, and that an event_key, where declared,
// is a key function (const, returning text or an integer of at most 64 bits); it then maps each
// type to its alternative index, which is what the dispatch table is indexed by.
//
// Thread-safety: compile-time only; everything here is constexpr or immutable.
#pragma once

#include <array>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <variant>

#include <evbus/detail/type_list.hpp>
#include <evbus/metadata.hpp>

namespace evbus {

/// A payload type: a struct naming itself with `static constexpr std::string_view event_name`.
template <class E>
concept payload = std::is_class_v<E> && requires {
    { E::event_name } -> std::convertible_to<std::string_view>;
};

namespace detail {

/// An integer an event key may be: a standard integer type of at most 64 bits, not bool.
template <class K>
concept key_integer = std::integral<K> && !std::same_as<K, bool> && sizeof(K) <= 8;

/// The payload declares something named event_key (a key function meant or not).
template <class E>
concept declares_event_key = requires {
    &E::event_key;
}
|| requires(E& e) {
    e.event_key();
};

}  // namespace detail

/// A payload with an ordering key function: `event_key() const` returning text or an integer
/// of at most 64 bits. An event_set refuses a payload that declares an event_key which is
/// not one, so a key can never be dropped silently.
template <class E>
concept keyed_payload = requires(const E& e) {
    {e.event_key()};
}
&&(std::convertible_to<decltype(std::declval<const E&>().event_key()), std::string_view> ||
   detail::key_integer<std::remove_cvref_t<decltype(std::declval<const E&>().event_key())>>);

template <class E>
inline constexpr std::uint32_t payload_version = [] {
    if constexpr (requires { E::event_version; }) {
        return static_cast<std::uint32_t>(E::event_version);
    } else {
        return std::uint32_t{1};
    }
}();

namespace detail {

template <class E>
struct payload_checks {
    static_assert(payload<E>,
                  "evbus: payload type has no name; add `static constexpr std::string_view "
                  "event_name = \"module.eventName\";` to it");
    static_assert(std::is_nothrow_move_constructible_v<E>,
                  "evbus: payload type is not nothrow-move-constructible; give it noexcept move "
                  "(plain members such as std::string, std::vector and numbers are fine)");
    static_assert(!std::is_const_v<E> && !std::is_reference_v<E>,
                  "evbus: event sets list plain payload types; drop the const or reference");
    // False when an assertion above fired, so check_event_set() stops before the name checks
    // (which would add "event_name is not a member" errors for an unnamed payload).
    static constexpr bool ok = payload<E> && std::is_nothrow_move_constructible_v<E> &&
                               !std::is_const_v<E> && !std::is_reference_v<E>;
};

template <class E>
struct key_function_checks {
    static_assert(!declares_event_key<E> || keyed_payload<E>,
                  "evbus: the payload's event_key is not a key function evbus can use, so its "
                  "events would lose their key; declare it `event_key() const` returning text "
                  "(std::string_view, std::string) or an integer of at most 64 bits (not bool)");
    static constexpr bool ok = !declares_event_key<E> || keyed_payload<E>;
};

template <class E, class... Es>
struct duplicate_payload_type {
    static_assert(count_of<E, Es...> == 1,
                  "evbus: a payload type is listed twice in the event set; list each type once");
    // False on a duplicate, so the name checks do not report the same type a second time.
    static constexpr bool ok = count_of<E, Es...> == 1;
};

template <class First, class Second>
struct duplicate_event_name {
    static_assert(std::string_view(First::event_name) != std::string_view(Second::event_name),
                  "evbus: two payload types in the event set share an event name; give each "
                  "type its own event_name");
    static constexpr bool ok = true;
};

template <std::size_t I, std::size_t J, class... Es>
constexpr bool check_names_from() {
    if constexpr (I >= sizeof...(Es)) {
        return true;
    } else if constexpr (J >= sizeof...(Es)) {
        return check_names_from<I + 1, I + 2, Es...>();
    } else {
        using A = std::tuple_element_t<I, std::tuple<Es...>>;
        using B = std::tuple_element_t<J, std::tuple<Es...>>;
        return duplicate_event_name<A, B>::ok && check_names_from<I, J + 1, Es...>();
    }
}

template <class... Es>
constexpr bool check_event_set() {
    static_assert(sizeof...(Es) > 0,
                  "evbus: an event set needs at least one payload type; list them in "
                  "evbus::event_set<...>");
    constexpr bool payloads_ok = (payload_checks<Es>::ok && ...);
    constexpr bool keys_ok = (key_function_checks<Es>::ok && ...);
    if constexpr (payloads_ok && keys_ok) {
        constexpr bool unique_ok = (duplicate_payload_type<Es, Es...>::ok && ...);
        if constexpr (unique_ok) return check_names_from<0, 1, Es...>();
    }
    return false;
}

}  // namespace detail

template <class... Es>
class event_set {
    // Evaluated for its diagnostics only: each failed check reports itself with its message and
    // the offending type; asserting the result would add a second error without either.
    static_assert(((void)detail::check_event_set<Es...>(), true));

public:
    using variant_type = std::variant<Es...>;
    static constexpr std::size_t size = sizeof...(Es);

    template <class E>
    static constexpr bool contains = detail::count_of<std::remove_cvref_t<E>, Es...> == 1;

    /// The alternative index of E; E must be in the set.
    template <class E>
    static constexpr std::size_t index_of = detail::index_of<std::remove_cvref_t<E>, Es...>;

    template <std::size_t I>
    using type_at = std::tuple_element_t<I, std::tuple<Es...>>;

    static constexpr std::array<std::string_view, size> names{std::string_view(Es::event_name)...};
    static constexpr std::array<std::uint32_t, size> versions{payload_version<Es>...};

    /// The index of the payload named `name`, if any. O(size).
    [[nodiscard]] static constexpr std::optional<std::size_t> index_of_name(
        std::string_view name) noexcept {
        for (std::size_t i = 0; i < size; ++i) {
            if (names[i] == name) return i;
        }
        return std::nullopt;
    }
};

template <class T>
inline constexpr bool is_event_set = false;
template <class... Es>
inline constexpr bool is_event_set<event_set<Es...>> = true;

/// An event_set<...> specialisation.
template <class T>
concept event_set_type = is_event_set<T>;

/// Writes `e`'s ordering key into `out` when the payload has a key function.
template <class E>
void key_from_payload(const E& e, event_key& out) {
    if constexpr (keyed_payload<E>) {
        using K = decltype(e.event_key());
        if constexpr (detail::key_integer<std::remove_cvref_t<K>>) {
            char buf[24];  // 20 digits and a sign at most: key_integer is 64 bits at most
            const auto res = std::to_chars(buf, buf + sizeof buf, e.event_key());
            out.assign(std::string_view(buf, static_cast<std::size_t>(res.ptr - buf)));
        } else {
            out.assign(std::string_view(e.event_key()));
        }
    }
}

}  // namespace evbus
