// bench/harness.cpp — interleaved runs, statistics and the report of bench/harness.hpp.
#include "harness.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

namespace evbus_bench {

bool pin_thread(placement p, bool consumer) {
    if (p == placement::scheduler) return false;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(p == placement::split && consumer ? 1 : 0, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

void unpin_thread() {
    cpu_set_t set;
    CPU_ZERO(&set);
    const unsigned n = std::max(1U, std::thread::hardware_concurrency());
    for (unsigned c = 0; c < n && c < CPU_SETSIZE; ++c) CPU_SET(c, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

spread summarize(std::vector<double> values) {
    std::erase_if(values, [](double v) { return std::isnan(v); });
    spread s;
    if (values.empty()) return s;
    std::sort(values.begin(), values.end());
    const std::size_t n = values.size();
    s.min = values.front();
    s.max = values.back();
    s.median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    return s;
}

latency_stats summarize_latencies(std::vector<std::int64_t> samples, double elapsed_s) {
    latency_stats r;
    r.offered_per_s = static_cast<double>(samples.size()) / elapsed_s;
    bool in_run = false;
    for (const std::int64_t l : samples) {
        const bool late = l > late_ns;
        r.late_events += late ? 1 : 0;
        r.late_runs += late && !in_run ? 1 : 0;
        in_run = late;
    }
    std::erase_if(samples, [](std::int64_t l) { return l < 0; });
    if (samples.empty()) return r;
    std::sort(samples.begin(), samples.end());
    const auto at = [&samples](double q) {
        return static_cast<double>(
            samples[static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1))]);
    };
    r.p50 = at(0.50);
    r.p99 = at(0.99);
    r.p999 = at(0.999);
    r.max = static_cast<double>(samples.back());
    return r;
}

void print_latency(const std::string& label, const latency_stats& l) {
    std::printf(
        "%s: offered %.2f M/s: p50 %.0f ns, p99 %.0f ns, p99.9 %.0f ns, max %.0f ns; "
        "late (> %lld ns): %llu events in %llu runs; preempted: producer %llu, consumer %llu "
        "times\n",
        label.c_str(), l.offered_per_s / 1e6, l.p50, l.p99, l.p999, l.max,
        static_cast<long long>(late_ns), static_cast<unsigned long long>(l.late_events),
        static_cast<unsigned long long>(l.late_runs),
        static_cast<unsigned long long>(l.producer_preempted),
        static_cast<unsigned long long>(l.consumer_preempted));
    std::printf("csv,latency,%s,%.0f,%.0f,%.0f,%.0f,%.0f,%llu,%llu,%llu,%llu\n", label.c_str(),
                l.offered_per_s, l.p50, l.p99, l.p999, l.max,
                static_cast<unsigned long long>(l.late_events),
                static_cast<unsigned long long>(l.late_runs),
                static_cast<unsigned long long>(l.producer_preempted),
                static_cast<unsigned long long>(l.consumer_preempted));
}

long thread_id() noexcept {
    return static_cast<long>(gettid());
}

std::uint64_t involuntary_switches(long tid) {
    std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/status");
    const std::string key = "nonvoluntary_ctxt_switches:";
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key, 0) == 0) return std::stoull(line.substr(key.size()));
    }
    return 0;
}

namespace {

// A lost event invalidates any run. Reordering is a finding about a baseline (reported in
// the table), but a failure for the subject, whose contract is per-producer FIFO.
bool check_run(const bench_group& g, std::size_t c, const run_result& r) {
    if (r.hung) {
        std::fprintf(stderr, "%s: %s / %s: hung: no event for %lld s (received %llu of %llu)\n",
                     c == 0 ? "INVALID RUN" : "note: run left out", g.title.c_str(),
                     g.cases[c].name.c_str(), static_cast<long long>(stall_limit.count()),
                     static_cast<unsigned long long>(r.received),
                     static_cast<unsigned long long>(r.expected));
        return c != 0;
    }
    const bool lost = r.received != r.expected;
    const bool reordered = r.order_violations != 0;
    if (!lost && !reordered) return true;
    std::fprintf(stderr, "%s: %s / %s: received %llu of %llu, %llu per-producer order violations\n",
                 lost || c == 0 ? "INVALID RUN" : "note", g.title.c_str(), g.cases[c].name.c_str(),
                 static_cast<unsigned long long>(r.received),
                 static_cast<unsigned long long>(r.expected),
                 static_cast<unsigned long long>(r.order_violations));
    return !lost && c != 0;
}

// The largest peak depth over a case's runs, as text; "-" where the case does not measure it.
std::string depth_text(const std::optional<std::uint64_t>& peak) {
    return peak ? std::to_string(*peak) : "-";
}

void print_group(const bench_group& g, const std::vector<std::vector<double>>& rates,
                 const std::vector<std::uint64_t>& reorders, const std::vector<int>& hung,
                 const std::vector<std::optional<std::uint64_t>>& peaks, int runs) {
    std::printf("\n== %s (64-byte events, %d runs each, interleaved) ==\n", g.title.c_str(), runs);
    std::printf("%-48s %9s %9s %9s %7s %9s %10s   %s\n", "case", "min M/s", "med M/s", "max M/s",
                "spread", "reorders", "peak depth", "evbus/case: median ratio [paired min..max]");
    const spread subject = summarize(rates[0]);
    for (std::size_t c = 0; c < g.cases.size(); ++c) {
        const spread s = summarize(rates[c]);
        const double spread_pct = s.median > 0 ? 100.0 * (s.max - s.min) / s.median : 0;
        std::printf("%-48s %9.2f %9.2f %9.2f %6.0f%% %9llu %10s", g.cases[c].name.c_str(),
                    s.min / 1e6, s.median / 1e6, s.max / 1e6, spread_pct,
                    static_cast<unsigned long long>(reorders[c]), depth_text(peaks[c]).c_str());
        if (c == 0) {
            std::printf("   (subject)\n");
            continue;
        }
        // Paired ratios: run r of the subject against run r of the case, neighbours in time.
        std::vector<double> paired;
        for (std::size_t r = 0; r < rates[c].size() && r < rates[0].size(); ++r) {
            paired.push_back(rates[0][r] / rates[c][r]);  // NaN where either run hung
        }
        const spread p = summarize(paired);
        if (hung[c] == runs) {
            std::printf("   - (hung in every run)\n");
            continue;
        }
        std::printf("   %5.2fx [%.2f..%.2f]", subject.median / s.median, p.min, p.max);
        if (hung[c] != 0) std::printf("   (hung in %d of %d runs, left out)", hung[c], runs);
        std::printf("\n");
    }
    std::printf(
        "csv fields: group,case,min/s,median/s,max/s,evbus median ratio,reorders,peak depth\n");
    for (std::size_t c = 0; c < g.cases.size(); ++c) {
        const spread s = summarize(rates[c]);
        std::printf("csv,%s,%s,%.0f,%.0f,%.0f,%.3f,%llu,%s\n", g.title.c_str(),
                    g.cases[c].name.c_str(), s.min, s.median, s.max,
                    c == 0 ? 1.0 : subject.median / s.median,
                    static_cast<unsigned long long>(reorders[c]), depth_text(peaks[c]).c_str());
    }
}

}  // namespace

void keep_cases(std::vector<bench_group>& groups, const std::string& text) {
    for (bench_group& g : groups) {
        std::vector<bench_case> kept;
        for (std::size_t c = 0; c < g.cases.size(); ++c) {
            if (c == 0 || g.cases[c].name.find(text) != std::string::npos) {
                kept.push_back(g.cases[c]);
            }
        }
        g.cases = std::move(kept);
    }
    std::erase_if(groups, [&text](const bench_group& g) {
        return g.cases.size() == 1 && g.cases[0].name.find(text) == std::string::npos &&
               g.title.find(text) == std::string::npos;
    });
}

bool run_groups(const std::vector<bench_group>& groups, const bench_config& config,
                std::vector<double>& subject_medians) {
    bool ok = true;
    // Warm-up: one short run of every case (caches, page faults, thread start), not recorded.
    bench_config warm = config;
    warm.items_per_producer = std::max<std::uint64_t>(1000, config.items_per_producer / 10);
    warm.pipeline_items_per_producer =
        std::max<std::uint64_t>(1000, config.pipeline_items_per_producer / 10);
    for (const bench_group& g : groups) {
        for (std::size_t c = 0; c < g.cases.size(); ++c) {
            ok = check_run(g, c, g.cases[c].run_once(warm)) && ok;
        }
    }
    std::vector<std::vector<std::vector<double>>> rates(groups.size());
    std::vector<std::vector<std::uint64_t>> reorders(groups.size());
    std::vector<std::vector<int>> hung(groups.size());
    std::vector<std::vector<std::optional<std::uint64_t>>> peaks(groups.size());
    for (std::size_t g = 0; g < groups.size(); ++g) {
        rates[g].resize(groups[g].cases.size());
        reorders[g].resize(groups[g].cases.size(), 0);
        hung[g].resize(groups[g].cases.size(), 0);
        peaks[g].resize(groups[g].cases.size());
    }
    for (int r = 0; r < config.runs; ++r) {
        std::fprintf(stderr, "round %d/%d\n", r + 1, config.runs);
        for (std::size_t g = 0; g < groups.size(); ++g) {
            const std::size_t n = groups[g].cases.size();
            for (std::size_t k = 0; k < n; ++k) {
                // Rotate the starting case every round so no case always runs first.
                const std::size_t c = (k + static_cast<std::size_t>(r)) % n;
                const run_result res = groups[g].cases[c].run_once(config);
                ok = check_run(groups[g], c, res) && ok;
                rates[g][c].push_back(res.hung ? std::numeric_limits<double>::quiet_NaN()
                                               : res.events_per_s);
                hung[g][c] += res.hung ? 1 : 0;
                reorders[g][c] += res.order_violations;
                if (res.peak_depth)
                    peaks[g][c] = std::max(peaks[g][c].value_or(0), *res.peak_depth);
            }
        }
    }
    subject_medians.clear();
    for (std::size_t g = 0; g < groups.size(); ++g) {
        print_group(groups[g], rates[g], reorders[g], hung[g], peaks[g], config.runs);
        subject_medians.push_back(summarize(rates[g][0]).median);
    }
    return ok;
}

}  // namespace evbus_bench
