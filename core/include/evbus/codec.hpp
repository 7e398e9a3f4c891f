// evbus/codec.hpp — payloads as JSON with their name and version, and upcasting of old versions.
//
// Describing a payload takes one line, at namespace scope next to the type:
//
//     struct money_transferred { ...; std::string user_id; std::int64_t cents; };
//     EVBUS_DESCRIBE(money_transferred, user_id, cents)
//
// Older versions of a payload are types of their own with the same event_name and a lower
// event_version. The current type lists them, and each old type has an upcast to the next
// version, found by argument-dependent lookup:
//
//     struct money_transferred_v1 { name; event_version = 1; std::string user; long cents; };
//     EVBUS_DESCRIBE(money_transferred_v1, user, cents)
//     money_transferred upcast(const money_transferred_v1& old);
//     struct money_transferred { name; event_version = 2; using previous_versions =
//                                    evbus::versions<money_transferred_v1>; ... };
//
// payload_codec<Set> proves at compile time that every listed old version reaches the current
// one through upcasts with rising versions, and names the type when one does not. Decoding a
// stored (name, version, payload) yields the current type; an unknown name, an unknown
// version or a payload that does not parse gives an error text naming the cause; so does a
// user's from_json or upcast that throws (an upcast refusing an old value, say), except
// std::bad_alloc, which propagates: a failed allocation says nothing about the row.
//
// Numbers are exact both ways. Decoding checks every value of a described field, also inside
// described members, containers, maps, pairs and tuples, before converting it: an integer (or
// enum) field takes only a JSON integer within its type's range, a floating field any number
// its type can hold, a bool only true or false; anything else is a corrupt payload naming the
// field's path and the value. Encoding a NaN or an infinity throws, since JSON has no such
// number and the row could never be decoded.
//
// Thread-safety: stateless; every function may run on any thread.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>

#include <evbus/detail/type_list.hpp>
#include <evbus/event_set.hpp>

/// Declares the JSON form of `Type` from its listed fields. Namespace scope, next to the type.
/// to_json is nlohmann-json's; from_json checks each value before converting it (see the
/// banner), and evbus_check_fields does the checks alone, for elements of containers.
#define EVBUS_DESCRIBE(Type, ...)                                                             \
    inline void to_json(nlohmann::json& nlohmann_json_j, const Type& nlohmann_json_t) {       \
        NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(NLOHMANN_JSON_TO, __VA_ARGS__))              \
    }                                                                                         \
    inline void from_json(const nlohmann::json& evbus_j, Type& evbus_t) {                     \
        NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(EVBUS_DETAIL_READ_FIELD, __VA_ARGS__))       \
    }                                                                                         \
    inline void evbus_check_fields(const nlohmann::json& evbus_j, std::type_identity<Type>) { \
        using evbus_type = Type;                                                              \
        NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(EVBUS_DETAIL_CHECK_FIELD, __VA_ARGS__))      \
    }
#define EVBUS_DETAIL_READ_FIELD(field) ::evbus::detail::read_field(evbus_j, #field, evbus_t.field);
#define EVBUS_DETAIL_CHECK_FIELD(field) \
    ::evbus::detail::check_field<decltype(std::declval<evbus_type&>().field)>(evbus_j, #field);

namespace evbus {

/// The list of a payload's older versions: `using previous_versions = evbus::versions<...>;`.
template <class... Olds>
struct versions {};

/// A type EVBUS_DESCRIBE (or hand-written to_json/from_json) gave a JSON form.
template <class E>
concept describable = std::is_default_constructible_v<E> &&
    requires(nlohmann::json& j, const nlohmann::json& cj, const E& e, E& out) {
    to_json(j, e);
    from_json(cj, out);
};

namespace detail {

template <class E>
struct previous_versions_of {
    using type = versions<>;
};
template <class E>
requires requires {
    typename E::previous_versions;
}
struct previous_versions_of<E> {
    using type = typename E::previous_versions;
};

template <class Old>
concept has_upcast = requires(const Old& o) {
    upcast(o);
};

template <class Old>
using upcast_result = std::remove_cvref_t<decltype(upcast(std::declval<const Old&>()))>;

// ---- diagnostics: each names the offending type through its template arguments -------------
template <class E>
struct payload_not_described {
    static_assert(dependent_false<E>,
                  "evbus: payload type has no JSON description; add EVBUS_DESCRIBE(type, "
                  "field1, field2, ...) at namespace scope next to it");
    static constexpr bool ok = false;
};
template <class Old, class Current>
struct old_version_has_no_upcast {
    static_assert(dependent_false<Old>,
                  "evbus: an old payload version has no upcast path to the current version; "
                  "declare `Newer upcast(const Old&)` next to it, Newer being a later version");
    static constexpr bool ok = false;
};
template <class Old, class Next>
struct upcast_does_not_raise_version {
    static_assert(dependent_false<Old>,
                  "evbus: an upcast must return a later version of the payload (a higher "
                  "event_version); fix the upcast's return type or the versions");
    static constexpr bool ok = false;
};
template <class Old, class Current>
struct old_version_has_another_name {
    static_assert(dependent_false<Old>,
                  "evbus: an old payload version has a different event_name than the current "
                  "version; versions of one payload share its event_name");
    static constexpr bool ok = false;
};

template <class Current, class Old>
constexpr bool reaches_current() {
    if constexpr (std::is_same_v<Old, Current>) {
        return true;
    } else if constexpr (std::string_view(Old::event_name) !=
                         std::string_view(Current::event_name)) {
        return old_version_has_another_name<Old, Current>::ok;
    } else if constexpr (!describable<Old>) {
        return payload_not_described<Old>::ok;
    } else if constexpr (!has_upcast<Old>) {
        return old_version_has_no_upcast<Old, Current>::ok;
    } else if constexpr (payload_version<upcast_result<Old>> <= payload_version<Old>) {
        return upcast_does_not_raise_version<Old, upcast_result<Old>>::ok;
    } else {
        return reaches_current<Current, upcast_result<Old>>();
    }
}

template <class Current, class... Olds>
constexpr bool check_versions(versions<Olds...>*) {
    return (reaches_current<Current, Olds>() && ...);
}

template <class E>
constexpr bool check_payload_codec() {
    if constexpr (!describable<E>) {
        return payload_not_described<E>::ok;
    } else {
        return check_versions<E>(static_cast<typename previous_versions_of<E>::type*>(nullptr));
    }
}

template <class Current, class Old>
Current upcast_all(Old&& old) {
    if constexpr (std::is_same_v<std::remove_cvref_t<Old>, Current>) {
        return std::forward<Old>(old);
    } else {
        return upcast_all<Current>(upcast(std::as_const(old)));
    }
}

// ---- exact numbers: what nlohmann-json's lenient conversions would truncate or wrap ---------

// A JSON value its field cannot hold; the path grows while it unwinds, from "cents" to
// "legs[1].cents". A nlohmann-json exception, so that from_json, also when called outside the
// codec, throws the kind of exception it threw before these checks.
class bad_value : public nlohmann::json::exception {
public:
    explicit bad_value(std::string problem)
        : nlohmann::json::exception(302, ""), problem_(std::move(problem)), text_(problem_) {}

    void under(std::string step) {
        if (!path_.empty() && path_.front() != '[') step += '.';
        path_.insert(0, step);
        text_ = "field '" + path_ + "' " + problem_;
    }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    [[nodiscard]] const std::string& problem() const noexcept { return problem_; }
    [[nodiscard]] const char* what() const noexcept override { return text_.c_str(); }

private:
    std::string path_;
    std::string problem_;
    std::string text_;
};

inline std::string json_value_text(const nlohmann::json& v) {
    if (v.is_primitive() && !v.is_string()) return v.dump();
    return (v.is_string() ? "a " : "an ") + std::string(v.type_name());
}

template <class T>
bool is_integer_in_range(const nlohmann::json& v) {
    using limits = std::numeric_limits<T>;
    if (v.is_number_unsigned()) {
        return v.get_ref<const nlohmann::json::number_unsigned_t&>() <=
               static_cast<std::uint64_t>(limits::max());
    }
    if (!v.is_number_integer()) return false;
    const std::int64_t i = v.get_ref<const nlohmann::json::number_integer_t&>();
    return i < 0 ? i >= static_cast<std::int64_t>(limits::min())
                 : static_cast<std::uint64_t>(i) <= static_cast<std::uint64_t>(limits::max());
}

// A type EVBUS_DESCRIBE declared (not merely a class derived from one), whose from_json checks
// its own fields.
template <class T>
concept described = requires(const nlohmann::json& j) {
    evbus_check_fields(j, std::type_identity<T>{});
};

// What nlohmann-json reads from a JSON object, one value per member.
template <class T>
concept string_keyed_map = requires {
    typename T::mapped_type;
    requires std::is_constructible_v<typename T::key_type, const std::string&>;
};

// What nlohmann-json reads from a JSON array of fixed length, one value per element: a pair
// or a tuple (also each element of a map whose keys are not strings).
template <class T>
inline constexpr bool fixed_tuple = false;
template <class A, class B>
inline constexpr bool fixed_tuple<std::pair<A, B>> = true;
template <class... Ts>
inline constexpr bool fixed_tuple<std::tuple<Ts...>> = true;

template <class T>
void check_value(const nlohmann::json& v);

template <class T>
void check_element(const nlohmann::json& v, std::size_t i) {
    try {
        check_value<std::remove_const_t<T>>(v[i]);
    } catch (bad_value& e) {
        e.under("[" + std::to_string(i) + "]");
        throw;
    }
}

template <class T>
void read_field(const nlohmann::json& object, const char* name, T& out) {
    const auto& v = object.at(name);
    try {
        if constexpr (!described<T>) check_value<T>(v);
        v.get_to(out);
    } catch (bad_value& e) {
        e.under(name);
        throw;
    }
}

template <class T>
void check_field(const nlohmann::json& object, const char* name) {
    const auto it = object.find(name);
    if (it == object.end()) return;  // from_json names the missing key
    try {
        check_value<T>(*it);
    } catch (bad_value& e) {
        e.under(name);
        throw;
    }
}

// Checks `v` against T where T is a number, a bool, an EVBUS_DESCRIBE'd type, or a container,
// map, pair or tuple of those; a value of another shape is left to from_json, which rejects
// it.
template <class T>
void check_value(const nlohmann::json& v) {
    using limits = std::numeric_limits<T>;
    if constexpr (std::is_same_v<T, bool>) {
        if (!v.is_boolean())
            throw bad_value("holds " + json_value_text(v) + "; expected true or false");
    } else if constexpr (std::is_integral_v<T>) {
        if (!is_integer_in_range<T>(v)) {
            throw bad_value("holds " + json_value_text(v) + "; expected an integer from " +
                            std::to_string(limits::min()) + " to " + std::to_string(limits::max()));
        }
    } else if constexpr (std::is_floating_point_v<T>) {
        if (!v.is_number()) throw bad_value("holds " + json_value_text(v) + "; expected a number");
        if constexpr (limits::max() < std::numeric_limits<double>::max()) {
            if (std::abs(v.get<double>()) > limits::max()) {
                throw bad_value("holds " + json_value_text(v) + "; expected a number from " +
                                nlohmann::json(limits::lowest()).dump() + " to " +
                                nlohmann::json(limits::max()).dump());
            }
        }
    } else if constexpr (std::is_enum_v<T>) {
        if (v.is_number()) check_value<std::underlying_type_t<T>>(v);
    } else if constexpr (described<T>) {
        if (v.is_object()) evbus_check_fields(v, std::type_identity<T>{});
    } else if constexpr (string_keyed_map<T>) {
        if (!v.is_object()) return;
        for (const auto& [key, member] : v.get_ref<const nlohmann::json::object_t&>()) {
            try {
                check_value<typename T::mapped_type>(member);
            } catch (bad_value& e) {
                e.under(key);
                throw;
            }
        }
    } else if constexpr (fixed_tuple<T>) {
        constexpr std::size_t n = std::tuple_size_v<T>;
        if (!v.is_array() || v.size() != n) return;
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (check_element<std::tuple_element_t<I, T>>(v, I), ...);
        }
        (std::make_index_sequence<n>{});
    } else if constexpr (std::ranges::range<T> && !std::is_constructible_v<T, const std::string&>) {
        if (!v.is_array()) return;
        for (std::size_t i = 0; i < v.size(); ++i) {
            check_element<std::ranges::range_value_t<T>>(v, i);  // a map's pair<const K, V> too
        }
    }
}

// Throws bad_value for a NaN or infinity anywhere in `v`, which dump() would write as null.
inline void check_finite(const nlohmann::json& v) {
    if (v.is_number_float()) {
        const double d = v.get<double>();
        if (!std::isfinite(d))
            throw bad_value(std::isnan(d) ? "NaN" : d > 0 ? "infinity" : "-infinity");
    } else if (v.is_object()) {
        for (const auto& [key, member] : v.get_ref<const nlohmann::json::object_t&>()) {
            try {
                check_finite(member);
            } catch (bad_value& e) {
                e.under(key);
                throw;
            }
        }
    } else if (v.is_array()) {
        for (std::size_t i = 0; i < v.size(); ++i) {
            try {
                check_finite(v[i]);
            } catch (bad_value& e) {
                e.under("[" + std::to_string(i) + "]");
                throw;
            }
        }
    }
}

}  // namespace detail

/// Encodes and decodes the payloads of one event set. See the banner.
template <class Set>
class payload_codec;

template <class... Es>
class payload_codec<event_set<Es...>> {
    // Evaluated for its diagnostics only, as event_set's checks: each failed check reports
    // itself with its message and the offending type; asserting the result would add a
    // second, bare error.
    static_assert(((void)(detail::check_payload_codec<Es>() && ...), true));

public:
    using variant_type = std::variant<Es...>;
    /// A decoded event, or the text of why it could not be decoded.
    using result = std::variant<variant_type, std::string>;

    /// The payload as JSON text. Throws std::invalid_argument naming the event and the field
    /// for a NaN or an infinity, and what nlohmann-json throws (e.g. on invalid UTF-8).
    template <class E>
    [[nodiscard]] static std::string encode(const E& event) {
        nlohmann::json j;
        to_json(j, event);
        try {
            detail::check_finite(j);
        } catch (const detail::bad_value& e) {
            throw std::invalid_argument("evbus: cannot encode '" + std::string(E::event_name) +
                                        "': field '" + e.path() + "' is " + e.problem() +
                                        " and JSON has no NaN or infinity; store a finite number");
        }
        return j.dump();
    }

    /// Decodes a stored payload into the current version of its type.
    [[nodiscard]] static result decode(std::string_view name, std::uint32_t version,
                                       std::string_view payload) {
        result out{std::string("unknown event name '" + std::string(name) + "'")};
        (void)((name == std::string_view(Es::event_name) &&
                (out = decode_as<Es>(version, payload), true)) ||
               ...);
        return out;
    }

private:
    template <class E>
    static result decode_as(std::uint32_t version, std::string_view payload) {
        result out{std::string{}};
        bool known = false;
        if (version == payload_version<E>) {
            known = true;
            out = parse<E, E>(payload);
        } else {
            known =
                try_old<E>(version, payload, out,
                           static_cast<typename detail::previous_versions_of<E>::type*>(nullptr));
        }
        if (!known) {
            out = "unknown version " + std::to_string(version) + " of event '" +
                  std::string(E::event_name) + "' (this build knows " + known_versions<E>() + ")";
        }
        return out;
    }

    template <class E, class... Olds>
    static bool try_old([[maybe_unused]] std::uint32_t version,
                        [[maybe_unused]] std::string_view payload, [[maybe_unused]] result& out,
                        versions<Olds...>*) {
        return ((version == payload_version<Olds> && (out = parse<E, Olds>(payload), true)) || ...);
    }

    template <class E, class... Olds>
    static std::string known_versions_of(versions<Olds...>*) {
        std::string s = "version";
        s += sizeof...(Olds) > 0 ? "s " : " ";
        ((s += std::to_string(payload_version<Olds>) + ", "), ...);
        return s + std::to_string(payload_version<E>);
    }
    template <class E>
    static std::string known_versions() {
        return known_versions_of<E>(
            static_cast<typename detail::previous_versions_of<E>::type*>(nullptr));
    }

    template <class E, class Stored>
    static result parse(std::string_view payload) {
        try {
            const auto j = nlohmann::json::parse(payload);
            Stored stored{};
            from_json(j, stored);
            return result{std::in_place_index<0>, detail::upcast_all<E>(std::move(stored))};
        } catch (const nlohmann::json::exception& e) {
            return result{std::in_place_index<1>,
                          "corrupt payload for '" + std::string(E::event_name) + "' version " +
                              std::to_string(payload_version<Stored>) + ": " + e.what()};
        } catch (const std::bad_alloc&) {
            throw;  // the machine's trouble, not the row's: the caller tries again later
        } catch (const std::exception& e) {
            // A user's from_json or upcast refused the stored value: the row's fault too.
            return result{std::in_place_index<1>, converting<E, Stored>() + e.what()};
        } catch (...) {
            return result{std::in_place_index<1>,
                          converting<E, Stored>() + "an exception that is not a std::exception"};
        }
    }

    template <class E, class Stored>
    static std::string converting() {
        std::string s = "reading '" + std::string(E::event_name) + "' version " +
                        std::to_string(payload_version<Stored>);
        if constexpr (!std::is_same_v<E, Stored>) {
            s += " and upcasting it to version " + std::to_string(payload_version<E>);
        }
        return s + " threw: ";
    }
};

}  // namespace evbus
