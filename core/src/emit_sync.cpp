#include <evbus/bus.hpp>

namespace evbus::detail {
namespace {

failure_record make_failure(const metadata& meta, const subscription_state& sub,
                            std::string error) {
    return failure_record{std::string(meta.event_name),
                          meta.id,
                          meta.key.str(),
                          sub.name,
                          std::move(error),
                          meta.attempt,
                          std::chrono::system_clock::now()};
}

}  // namespace

emit_report emit_sync(const registry& reg, std::size_t index, const void* payload,
                      const metadata& meta, error_sink& errors) {
    emit_report report;
    const auto table = reg.snapshot();
    for (const dispatch_entry& entry : table->rows[index]) {
        subscription_state& sub = *entry.sub;
        const call_guard guard(sub);
        if (!guard.entered()) continue;
        const frame_guard frame(meta, &sub);
        handler_context ctx(meta, sub.name);
        const bool fail_fast = sub.options.on_error == error_policy::fail_fast;
        try {
            const handler_result result = entry.invoke(sub.handler, payload, ctx);
            if (result.succeeded()) {
                ++report.handled;
                continue;
            }
            if (fail_fast) {
                throw handler_error("evbus: subscription '" + sub.name + "' failed on " +
                                    std::string(meta.event_name) + " " + meta.id.to_string() +
                                    ": " + result.reason());
            }
            errors.on_failure(make_failure(meta, sub, result.reason()));
            ++report.failed;
        } catch (...) {
            if (fail_fast) throw;
            errors.on_failure(
                make_failure(meta, sub, describe_exception(std::current_exception())));
            ++report.failed;
        }
    }
    return report;
}

}  // namespace evbus::detail
