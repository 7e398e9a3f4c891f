// evbus/detail/handler_traits.hpp — compile-time checks of handler overload sets.
//
// An overload set cannot be enumerated in C++, so each check asks a question per event type
// of the set ("can the handler be called with const E&?") and reports through a class
// template named after the problem, instantiated with the offending type: the compiler's
// "in instantiation of ..." line then names the type next to the evbus message.
//
// Limits: C++ cannot list a struct's overloads, so a struct with several operator() is checked
// per event type only: an overload in it for a type outside the set cannot be seen, and of the
// overloads with unsupported further parameters only those with one such parameter are found
// (by a call with an argument that converts to any lvalue; a second one could reach a generic
// lambda's body). Functions, single lambdas and the lambdas combined with evbus::overload(...)
// are checked one by one from their signatures; a generic lambda has none to read. The
// ambiguity check derives from the handler, so a final class may have one operator() only.
#pragma once

#include <functional>
#include <type_traits>
#include <vector>

#include <evbus/detail/type_list.hpp>
#include <evbus/event_set.hpp>
#include <evbus/handler.hpp>

namespace evbus::detail {

// ---- ambiguity probe ---------------------------------------------------------------------
// Adds a surrogate overload that accepts E only through a user-defined conversion. If the
// handler has no viable overload for E, the surrogate wins; if it has one, that one wins
// (a better conversion); if its own overloads tie, the call stays ambiguous.
template <class E>
struct probe_arg {
    probe_arg(const E&) noexcept;  // NOLINT: implicit on purpose
};
struct call_fallback {
    void operator()() const;
};
template <class H>
struct call_detector : H, call_fallback {};

template <class H>
concept has_call_operator = std::is_class_v<H> && !std::is_final_v<H> && !requires {
    &call_detector<H>::operator();
};

template <class H, class E, class... Rest>
struct ambiguity_probe : H {
    using H::operator();
    void operator()(probe_arg<E>, Rest...) const;
};

template <class H, class E, class... Rest>
constexpr bool ambiguous_for() {
    if constexpr (has_call_operator<H>) {
        return !std::is_invocable_v<ambiguity_probe<H, E, Rest...>&, const E&, Rest...>;
    } else {
        return false;
    }
}

// ---- per event type ------------------------------------------------------------------------
template <class H, class E>
struct handler_shape {
    static constexpr bool plain = std::is_invocable_v<H&, const E&>;
    static constexpr bool with_meta = std::is_invocable_v<H&, const E&, const metadata&>;
    static constexpr bool with_context = std::is_invocable_v<H&, const E&, handler_context&>;
    static constexpr int signatures = int{plain} + int{with_meta} + int{with_context};

    static constexpr bool mutable_ref =
        (!plain && std::is_invocable_v<H&, E&>) ||
        (!with_meta && std::is_invocable_v<H&, E&, const metadata&>) ||
        (!with_context && std::is_invocable_v<H&, E&, handler_context&>);
    static constexpr bool rvalue_ref =
        !mutable_ref && ((!plain && std::is_invocable_v<H&, E&&>) ||
                         (!with_meta && std::is_invocable_v<H&, E&&, const metadata&>) ||
                         (!with_context && std::is_invocable_v<H&, E&&, handler_context&>));
    static constexpr bool ambiguous =
        signatures == 0 && !mutable_ref && !rvalue_ref &&
        (ambiguous_for<H, E>() || ambiguous_for<H, E, const metadata&>() ||
         ambiguous_for<H, E, handler_context&>());
    static constexpr bool handles = signatures > 0;

    static auto result_probe() {
        if constexpr (plain) {
            return std::type_identity<std::invoke_result_t<H&, const E&>>{};
        } else if constexpr (with_meta) {
            return std::type_identity<std::invoke_result_t<H&, const E&, const metadata&>>{};
        } else if constexpr (with_context) {
            return std::type_identity<std::invoke_result_t<H&, const E&, handler_context&>>{};
        } else {
            return std::type_identity<void>{};
        }
    }
    using result = typename decltype(result_probe())::type;
};

// ---- diagnostics: each names the offending type through its template arguments -------------
template <class E, class Handler>
struct handler_is_ambiguous_for_event {
    static_assert(dependent_false<E>,
                  "evbus: the handler's overloads are ambiguous for this event type; make "
                  "exactly one overload accept it");
    static constexpr bool ok = false;
};
template <class E, class Handler>
struct handler_takes_payload_by_mutable_reference {
    static_assert(dependent_false<E>,
                  "evbus: handler takes the payload by non-const reference; take it as const E& "
                  "(every subscriber shares one payload)");
    static constexpr bool ok = false;
};
template <class E, class Handler>
struct handler_takes_payload_by_rvalue_reference {
    static_assert(dependent_false<E>,
                  "evbus: handler takes the payload by rvalue reference and could move it away "
                  "from other subscribers; take it as const E&");
    static constexpr bool ok = false;
};
template <class E, class Handler>
struct handler_has_several_signatures_for_event {
    static_assert(dependent_false<E>,
                  "evbus: handler accepts this event type with more than one signature; keep one "
                  "of (const E&), (const E&, const evbus::metadata&), "
                  "(const E&, evbus::handler_context&)");
    static constexpr bool ok = false;
};
template <class E, class Result>
struct handler_returns_unsupported_type {
    static_assert(dependent_false<E>,
                  "evbus: handler for this event type returns a value; return void or "
                  "evbus::handler_result");
    static constexpr bool ok = false;
};
template <class E, class Set>
struct exhaustive_handler_misses_event {
    static_assert(dependent_false<E>,
                  "evbus: exhaustive subscription has no overload for this event type; add "
                  "one, or drop evbus::exhaustive to subscribe to a subset");
    static constexpr bool ok = false;
};
template <class E, class Handler>
struct handler_overload_has_unsupported_signature {
    static_assert(dependent_false<E>,
                  "evbus: a handler overload for this event type has unsupported parameters and "
                  "would never be called; use (const E&), (const E&, const evbus::metadata&) or "
                  "(const E&, evbus::handler_context&)");
    static constexpr bool ok = false;
};
template <class Parameter, class Set>
struct handler_overload_for_type_outside_set {
    static_assert(dependent_false<Parameter>,
                  "evbus: a handler overload takes a type that is not in the event set (a dead "
                  "overload); remove it or add the type to the evbus::event_set");
    static constexpr bool ok = false;
};
template <class Handler, class Set>
struct handler_handles_no_event {
    static_assert(dependent_false<Handler>,
                  "evbus: the handler handles no event of the set; give it an overload taking "
                  "const E& for an event E of the evbus::event_set");
    static constexpr bool ok = false;
};
template <class Handler, class Set>
struct handler_class_is_final {
    static_assert(dependent_false<Handler>,
                  "evbus: a final handler class with an overloaded or template operator() cannot "
                  "be checked for ambiguous overloads (the check derives from it); remove final");
    static constexpr bool ok = false;
};
template <class Event, class Set>
struct event_not_in_set {
    static_assert(dependent_false<Event>,
                  "evbus: this event type is not in the bus's event set; add it to the "
                  "evbus::event_set or emit one of the set's payload types");
    static constexpr bool ok = false;
};

template <class H, class E>
constexpr bool check_one_event() {
    using shape = handler_shape<H, E>;
    if constexpr (shape::mutable_ref) {
        return handler_takes_payload_by_mutable_reference<E, H>::ok;
    } else if constexpr (shape::rvalue_ref) {
        return handler_takes_payload_by_rvalue_reference<E, H>::ok;
    } else if constexpr (shape::ambiguous) {
        return handler_is_ambiguous_for_event<E, H>::ok;
    } else if constexpr (shape::signatures > 1) {
        return handler_has_several_signatures_for_event<E, H>::ok;
    } else if constexpr (shape::handles && !std::is_void_v<typename shape::result> &&
                         !std::is_same_v<typename shape::result, handler_result>) {
        return handler_returns_unsupported_type<E, typename shape::result>::ok;
    } else {
        return true;
    }
}

// ---- one overload component: a function, or a callable with a single, non-template operator()
template <class M>
struct member_call_traits {};
template <class R, class A, class... Rest>
struct member_call_traits<R (*)(A, Rest...)> {
    using first = A;
};
template <class R, class A, class... Rest>
struct member_call_traits<R (*)(A, Rest...) noexcept> {
    using first = A;
};
template <class R, class C, class A, class... Rest>
struct member_call_traits<R (C::*)(A, Rest...)> {
    using first = A;
};
template <class R, class C, class A, class... Rest>
struct member_call_traits<R (C::*)(A, Rest...) const> {
    using first = A;
};
template <class R, class C, class A, class... Rest>
struct member_call_traits<R (C::*)(A, Rest...) noexcept> {
    using first = A;
};
template <class R, class C, class A, class... Rest>
struct member_call_traits<R (C::*)(A, Rest...) const noexcept> {
    using first = A;
};

// The signature to inspect: a function pointer's own, or the address of a class's only
// operator(); otherwise (several operator(), a template) none.
template <class F>
concept single_call_operator = std::is_class_v<F> && requires {
    &F::operator();
};
template <class F>
struct call_signature {
    using type = F;
};
template <single_call_operator F>
struct call_signature<F> {
    using type = decltype(&F::operator());
};

template <class F>
concept single_signature = requires {
    typename member_call_traits<typename call_signature<F>::type>::first;
};

// Converts to any lvalue argument, to find an overload that takes E and one further parameter
// of none of the supported shapes.
struct any_lvalue {
    template <class T>
    operator T&() const noexcept;  // NOLINT: implicit on purpose
};

template <class F, class E>
constexpr bool unsupported_signature_for() {
    using shape = handler_shape<F, E>;
    if constexpr (shape::handles || shape::mutable_ref || shape::rvalue_ref || shape::ambiguous) {
        return false;
    } else if constexpr (single_signature<F>) {
        return true;  // its only signature takes E first (checked by the caller)
    } else {
        return std::is_invocable_v<F&, const E&, any_lvalue>;
    }
}

// Reports the first event type only, so that a generic overload is one message, not one per type.
template <class F, class E, class... Rest>
constexpr bool check_signatures() {
    if constexpr (unsupported_signature_for<F, E>()) {
        return handler_overload_has_unsupported_signature<E, F>::ok;
    } else if constexpr (sizeof...(Rest) == 0) {
        return true;
    } else {
        return check_signatures<F, Rest...>();
    }
}

template <class F, class... Es>
constexpr bool check_component(event_set<Es...>*) {
    if constexpr (single_signature<F>) {
        using P = std::remove_cvref_t<
            typename member_call_traits<typename call_signature<F>::type>::first>;
        if constexpr (count_of<P, Es...> == 0) {
            return handler_overload_for_type_outside_set<P, event_set<Es...>>::ok;
        } else {
            return check_signatures<F, P>();
        }
    } else if constexpr (std::is_class_v<F>) {
        return check_signatures<F, Es...>();
    } else {
        return true;
    }
}

template <class H, class Set>
struct component_checks {
    static constexpr bool ok = check_component<H>(static_cast<Set*>(nullptr));
};
template <class... Fs, class Set>
struct component_checks<overload<Fs...>, Set> {
    static constexpr bool ok = (check_component<Fs>(static_cast<Set*>(nullptr)) && ...);
};

template <class H, class E, class Set>
constexpr bool check_covered() {
    if constexpr (handler_shape<H, E>::handles) {
        return true;
    } else {
        return exhaustive_handler_misses_event<E, Set>::ok;
    }
}

template <class H, bool Exhaustive, class... Es>
constexpr bool check_handler(event_set<Es...>*) {
    using Set = event_set<Es...>;
    if constexpr (std::is_class_v<H> && std::is_final_v<H> && !single_call_operator<H>) {
        return handler_class_is_final<H, Set>::ok;
    } else if constexpr (!component_checks<H, Set>::ok) {
        return false;
    } else if constexpr (!(check_one_event<H, Es>() && ...)) {
        return false;
    } else if constexpr (!(handler_shape<H, Es>::handles || ...)) {
        return handler_handles_no_event<H, Set>::ok;
    } else if constexpr (Exhaustive) {
        return (check_covered<H, Es, Set>() && ...);
    } else {
        return true;
    }
}

/// True when H is a valid overload set for Set; otherwise a static_assert names the problem.
template <class H, class Set, bool Exhaustive = false>
inline constexpr bool valid_handler = check_handler<H, Exhaustive>(static_cast<Set*>(nullptr));

// ---- type-erased invocation ----------------------------------------------------------------
using invoker_fn = handler_result (*)(void* handler, const void* payload, handler_context& ctx);

template <class H, class E>
handler_result invoke_handler(void* handler, const void* payload, handler_context& ctx) {
    using shape = handler_shape<H, E>;
    auto& h = *static_cast<H*>(handler);
    const auto& e = *static_cast<const E*>(payload);
    if constexpr (std::is_void_v<typename shape::result>) {
        if constexpr (shape::plain) {
            std::invoke(h, e);
        } else if constexpr (shape::with_meta) {
            std::invoke(h, e, ctx.meta());
        } else {
            std::invoke(h, e, ctx);
        }
        return handler_result::ok();
    } else if constexpr (shape::plain) {
        return std::invoke(h, e);
    } else if constexpr (shape::with_meta) {
        return std::invoke(h, e, ctx.meta());
    } else {
        return std::invoke(h, e, ctx);
    }
}

/// One invoker per alternative of the set; nullptr where H does not handle the alternative.
template <class H, class E>
constexpr invoker_fn invoker_for() noexcept {
    if constexpr (handler_shape<H, E>::handles) {
        return &invoke_handler<H, E>;
    } else {
        return nullptr;
    }
}

template <class H, class... Es>
std::vector<invoker_fn> make_invokers(event_set<Es...>*) {
    return {invoker_for<H, Es>()...};
}

}  // namespace evbus::detail
