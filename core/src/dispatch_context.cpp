#include <evbus/detail/dispatch_context.hpp>

#include <chrono>

namespace evbus::detail {
namespace {
thread_local dispatch_frame* t_current = nullptr;
}  // namespace

dispatch_frame* current_frame() noexcept {
    return t_current;
}

frame_guard::frame_guard(const metadata& meta, const subscription_state* sub) noexcept
    : frame_{&meta, sub, t_current} {
    t_current = &frame_;
}

frame_guard::~frame_guard() {
    t_current = frame_.prev;
}

std::uint32_t frames_of(const subscription_state* sub) noexcept {
    std::uint32_t n = 0;
    for (const dispatch_frame* f = t_current; f != nullptr; f = f->prev) {
        if (f->sub == sub) ++n;
    }
    return n;
}

void stamp(metadata& meta, std::string_view name, std::uint32_t version) noexcept {
    if (const dispatch_frame* parent = t_current;
        parent != nullptr && !meta.id.is_nil() && meta.id == parent->meta->id) {
        // The handled event's own metadata, passed on for its correlation and key: the new
        // event gets its own id and time and the handled event as its cause. Keeping the id
        // would give two events one id (the outbox and the inbox tell events apart by it).
        meta.id = {};
        meta.occurred_at = {};
        meta.causation_id = parent->meta->id;
    }
    // One clock read serves both the id and the time: it is most of what stamping costs.
    const bool needs_id = meta.id.is_nil();
    const bool needs_time = meta.occurred_at == std::chrono::system_clock::time_point{};
    if (needs_id || needs_time) {
        const auto now = std::chrono::system_clock::now();
        if (needs_id) meta.id = event_id::generate(now);
        if (needs_time) meta.occurred_at = now;
    }
    meta.event_name = name;
    meta.schema_version = version;
    if (const dispatch_frame* parent = t_current; parent != nullptr) {
        const metadata& p = *parent->meta;
        if (meta.correlation_id.is_nil()) meta.correlation_id = p.correlation_id;
        if (meta.causation_id.is_nil()) meta.causation_id = p.id;
        if (meta.trace_id.is_nil()) meta.trace_id = p.trace_id;
    }
    if (meta.correlation_id.is_nil()) meta.correlation_id = meta.id;
    if (meta.trace_id.is_nil()) meta.trace_id = meta.correlation_id;
}

}  // namespace evbus::detail
