// evbus/latency_histogram.hpp — a fixed-size log-linear histogram of durations.
//
// Buckets: values 0..7 ns have a bucket each; above that every power of two [2^e, 2^(e+1))
// is split into 8 equal sub-buckets. A bucket's width is therefore at most 1/8 of its lower
// bound, and a quantile read from it (its upper bound) is at most 12.5 % above the true
// value and never below it. 496 buckets cover the whole 64-bit nanosecond range in 4 KiB;
// recording is one index computation and one counter update, never an allocation.
//
// Thread-safety: record() has ONE writer (the owning shard's worker); counts() and
// summary() may run on any thread at the same time and see a slightly stale picture.
// Memory ordering: every counter is a relaxed atomic. No reader derives anything from the
// order of two counters (a snapshot is a statistic, not a synchronisation), and the single
// writer updates by load + store instead of a locked read-modify-write, which keeps the
// worker's hot path free of bus-locked instructions.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace evbus {

/// Quantiles of recorded durations; each quantile is a bucket upper bound (see the banner).
struct latency_summary {
    std::uint64_t count = 0;
    std::chrono::nanoseconds p50{0};
    std::chrono::nanoseconds p99{0};
    std::chrono::nanoseconds p999{0};
    std::chrono::nanoseconds max{0};
};

class latency_histogram {
public:
    static constexpr unsigned sub_bucket_bits = 3;
    static constexpr std::size_t sub_buckets = std::size_t{1} << sub_bucket_bits;
    static constexpr std::size_t bucket_count = sub_buckets + (64 - sub_bucket_bits) * sub_buckets;
    using bucket_counts = std::array<std::uint64_t, bucket_count>;

    /// The bucket a value of `ns` nanoseconds falls in. O(1); inline, as record() is.
    [[nodiscard]] static std::size_t bucket_of(std::uint64_t ns) noexcept {
        if (ns < sub_buckets) return static_cast<std::size_t>(ns);
        const unsigned e = 63U - static_cast<unsigned>(std::countl_zero(ns));  // >= sub_bucket_bits
        const unsigned shift = e - sub_bucket_bits;
        const std::uint64_t sub = (ns >> shift) & (sub_buckets - 1);
        return sub_buckets + static_cast<std::size_t>(shift) * sub_buckets +
               static_cast<std::size_t>(sub);
    }
    /// The largest value bucket `b` holds. O(1).
    [[nodiscard]] static std::uint64_t bucket_upper(std::size_t b) noexcept;
    /// The smallest value bucket `b` holds. O(1).
    [[nodiscard]] static std::uint64_t bucket_lower(std::size_t b) noexcept;

    /// Counts one duration (negative ones count as 0). Single writer. O(1), never allocates.
    void record(std::chrono::nanoseconds d) noexcept {
        const auto ns = d.count() < 0 ? std::uint64_t{0} : static_cast<std::uint64_t>(d.count());
        auto& c = buckets_[bucket_of(ns)];
        // Relaxed load + store: single writer, see the banner.
        c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        if (ns > max_.load(std::memory_order_relaxed)) {
            max_.store(ns, std::memory_order_relaxed);  // single writer, as above
        }
    }

    /// Adds this histogram's counts to `out` (merging shards). Thread-safe. O(buckets).
    void add_to(bucket_counts& out) const noexcept;
    /// The largest value recorded. Thread-safe.
    [[nodiscard]] std::uint64_t max_ns() const noexcept {
        return max_.load(std::memory_order_relaxed);  // a statistic; see the banner
    }
    /// Quantiles of this histogram. Thread-safe. O(buckets).
    [[nodiscard]] latency_summary summary() const noexcept;

    /// Quantiles of merged counts; `max_ns` is reported as max. O(buckets).
    [[nodiscard]] static latency_summary summarize(const bucket_counts& counts,
                                                   std::uint64_t max_ns) noexcept;

private:
    std::array<std::atomic<std::uint64_t>, bucket_count> buckets_{};
    std::atomic<std::uint64_t> max_{0};
};

}  // namespace evbus
