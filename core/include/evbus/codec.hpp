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
// version or a payload that does not parse gives an error text naming the cause.
//
// Thread-safety: stateless; every function may run on any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>

#include <evbus/detail/type_list.hpp>
#include <evbus/event_set.hpp>

/// Declares the JSON form of `Type` from its listed fields. Namespace scope, next to the type.
#define EVBUS_DESCRIBE(Type, ...) NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Type, __VA_ARGS__)

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

}  // namespace detail

/// Encodes and decodes the payloads of one event set. See the banner.
template <class Set>
class payload_codec;

template <class... Es>
class payload_codec<event_set<Es...>> {
    static constexpr bool checked = (detail::check_payload_codec<Es>() && ...);
    static_assert(checked);

public:
    using variant_type = std::variant<Es...>;
    /// A decoded event, or the text of why it could not be decoded.
    using result = std::variant<variant_type, std::string>;

    /// The payload as JSON text. Throws what nlohmann-json throws (e.g. on invalid UTF-8).
    template <class E>
    [[nodiscard]] static std::string encode(const E& event) {
        nlohmann::json j;
        to_json(j, event);
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
        }
    }
};

}  // namespace evbus
