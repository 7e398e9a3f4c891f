#include <evbus/latency_histogram.hpp>

#include <algorithm>
#include <cstdint>

namespace evbus {

std::uint64_t latency_histogram::bucket_lower(std::size_t b) noexcept {
    if (b < sub_buckets) return b;
    const std::size_t shift = (b - sub_buckets) / sub_buckets;
    const std::uint64_t sub = (b - sub_buckets) % sub_buckets;
    return (sub_buckets + sub) << shift;
}

std::uint64_t latency_histogram::bucket_upper(std::size_t b) noexcept {
    if (b + 1 >= bucket_count) return ~std::uint64_t{0};
    return bucket_lower(b + 1) - 1;
}

void latency_histogram::add_to(bucket_counts& out) const noexcept {
    for (std::size_t i = 0; i < bucket_count; ++i) {
        out[i] += buckets_[i].load(std::memory_order_relaxed);  // a statistic; see the banner
    }
}

latency_summary latency_histogram::summary() const noexcept {
    bucket_counts counts{};
    add_to(counts);
    return summarize(counts, max_ns());
}

latency_summary latency_histogram::summarize(const bucket_counts& counts,
                                             std::uint64_t max_ns) noexcept {
    constexpr auto ns_limit = static_cast<std::uint64_t>(INT64_MAX);
    latency_summary s;
    for (const auto c : counts) s.count += c;
    s.max = std::chrono::nanoseconds{static_cast<std::int64_t>(std::min(max_ns, ns_limit))};
    if (s.count == 0) return s;
    // The q-quantile is the smallest bucket whose cumulative count reaches ceil(q * count),
    // computed in integers (per mille and per 10,000) to avoid rounding surprises. Split at
    // den, so that no product outgrows 64 bits (count * 999 would, past 1.8e16 samples).
    const auto rank = [&](std::uint64_t num, std::uint64_t den) {
        const std::uint64_t r = s.count / den * num + (s.count % den * num + den - 1) / den;
        return r == 0 ? std::uint64_t{1} : r;
    };
    const std::uint64_t targets[3] = {rank(50, 100), rank(99, 100), rank(999, 1000)};
    std::chrono::nanoseconds* outs[3] = {&s.p50, &s.p99, &s.p999};
    std::uint64_t seen = 0;
    std::size_t next = 0;
    for (std::size_t b = 0; b < bucket_count && next < 3; ++b) {
        seen += counts[b];
        while (next < 3 && seen >= targets[next]) {
            std::uint64_t v = bucket_upper(b);
            if (v > max_ns && max_ns >= bucket_lower(b)) v = max_ns;  // tighter in the top bucket
            *outs[next] =
                std::chrono::nanoseconds{static_cast<std::int64_t>(std::min(v, ns_limit))};
            ++next;
        }
    }
    return s;
}

}  // namespace evbus
