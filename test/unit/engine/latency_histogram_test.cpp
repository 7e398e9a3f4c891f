#include <evbus/latency_histogram.hpp>

#include <chrono>
#include <cstdint>

#include <catch2/catch.hpp>

using evbus::latency_histogram;
using std::chrono::nanoseconds;

TEST_CASE("histogram: buckets tile the range and are at most 1/8 of their lower bound wide",
          "[engine][metrics][histogram]") {
    for (std::uint64_t v = 0; v < 8; ++v) CHECK(latency_histogram::bucket_of(v) == v);
    for (std::size_t b = 0; b + 1 < latency_histogram::bucket_count; ++b) {
        INFO("bucket " << b);
        CHECK(latency_histogram::bucket_upper(b) + 1 == latency_histogram::bucket_lower(b + 1));
        CHECK(latency_histogram::bucket_of(latency_histogram::bucket_lower(b)) == b);
        CHECK(latency_histogram::bucket_of(latency_histogram::bucket_upper(b)) == b);
        const std::uint64_t lower = latency_histogram::bucket_lower(b);
        const std::uint64_t width = latency_histogram::bucket_upper(b) - lower + 1;
        if (lower >= 8) CHECK(width * 8 <= lower);
    }
    CHECK(latency_histogram::bucket_of(~std::uint64_t{0}) == latency_histogram::bucket_count - 1);
}

TEST_CASE("histogram: quantiles are never below the true value and at most 12.5% above",
          "[engine][metrics][histogram]") {
    latency_histogram h;
    // 1..10000 ns once each: p50 = 5000, p99 = 9900, p99.9 = 9990.
    for (std::int64_t v = 1; v <= 10000; ++v) h.record(nanoseconds(v));
    const auto s = h.summary();
    CHECK(s.count == 10000);
    CHECK(s.max == nanoseconds(10000));
    const auto within = [](nanoseconds got, std::int64_t truth) {
        return got.count() >= truth && got.count() * 8 <= truth * 9;
    };
    CHECK(within(s.p50, 5000));
    CHECK(within(s.p99, 9900));
    CHECK(within(s.p999, 9990));
    CHECK(s.p999 <= s.max);
}

TEST_CASE("histogram: an empty histogram summarises to zeros, negatives count as zero",
          "[engine][metrics][histogram]") {
    latency_histogram h;
    CHECK(h.summary().count == 0);
    CHECK(h.summary().p99 == nanoseconds(0));
    h.record(nanoseconds(-5));
    CHECK(h.summary().count == 1);
    CHECK(h.summary().p50 == nanoseconds(0));
}

TEST_CASE("histogram: merged counts past 64-bit products and a max past int64 summarise right",
          "[engine][metrics][histogram]") {
    latency_histogram::bucket_counts counts{};
    counts[1] = 19'900'000'000'000'000ULL;  // 99.5% of 2e16 samples
    counts[100] = 100'000'000'000'000ULL;   // the slowest 0.5%: p99.9 falls here
    const auto s = latency_histogram::summarize(counts, ~std::uint64_t{0});
    CHECK(s.count == 20'000'000'000'000'000ULL);
    CHECK(s.p50 == nanoseconds(latency_histogram::bucket_upper(1)));
    CHECK(s.p99 == nanoseconds(latency_histogram::bucket_upper(1)));
    CHECK(s.p999 == nanoseconds(latency_histogram::bucket_upper(100)));
    CHECK(s.max == nanoseconds::max());
}
