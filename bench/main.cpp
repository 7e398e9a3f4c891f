// bench/main.cpp — evbus_bench: shard-throughput benchmark with in-process baselines.
//
//     evbus_bench [--runs N] [--items N] [--pipeline-items N] [--pin WHERE] [--filter TEXT]
//                 [--peak EVENTS_PER_S] [--smoke]
//
// --pin places the ring-only cases' threads: split = producers on CPU 0, consumer on CPU 1;
// shared = all on CPU 0; scheduler (default) = no pinning.
// --items and --pipeline-items set the events per producer of the ring-only and the
// full-pipeline cases. The reports after the tables (latency, idle CPU, memory) run only
// without --filter.
//
// --filter keeps the cases whose name contains TEXT (and each group's subject, evbus).
// --peak skips the tables and runs only the reports after them, taking EVENTS_PER_S as the
// 1 producer x 1 shard peak that the latency report offers fractions of (e.g. the median of
// an earlier full run, to measure latency again without the 10 minutes of tables).
//
// Prints the machine (CPU model, core count, compiler, flags), then every comparison group
// with min / median / max events/s over N interleaved runs and evbus's ratio to each
// baseline. Exit status 1 if a run lost or reordered events, 2 on bad arguments.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <evbus/mpsc_ring.hpp>

#include "harness.hpp"

#ifndef EVBUS_BENCH_FLAGS
#define EVBUS_BENCH_FLAGS "(unknown)"
#endif

namespace {

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) return line.substr(colon + 2);
        }
    }
    return "(unknown: no model name in /proc/cpuinfo)";
}

[[noreturn]] void usage_error(const std::string& what) {
    std::fprintf(stderr,
                 "evbus_bench: %s\nusage: evbus_bench [--runs N (>= 1)] [--items N] "
                 "[--pipeline-items N] [--pin scheduler|split|shared] [--filter TEXT] "
                 "[--peak EVENTS_PER_S] [--smoke]\n",
                 what.c_str());
    std::exit(2);
}

unsigned long long parse_count(std::string_view flag, const char* text) {
    if (text == nullptr) usage_error(std::string(flag) + " needs a number");
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text, &end, 10);
    if (end == text || *end != '\0' || v == 0) {
        usage_error(std::string(flag) + " needs a positive number, got '" + text + "'");
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    evbus_bench::bench_config config;
    std::string filter;
    unsigned long long peak = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--runs") {
            config.runs = static_cast<int>(parse_count(arg, i + 1 < argc ? argv[++i] : nullptr));
        } else if (arg == "--items") {
            config.items_per_producer = parse_count(arg, i + 1 < argc ? argv[++i] : nullptr);
        } else if (arg == "--pipeline-items") {
            config.pipeline_items_per_producer =
                parse_count(arg, i + 1 < argc ? argv[++i] : nullptr);
        } else if (arg == "--pin") {
            const std::string_view v = i + 1 < argc ? argv[++i] : "";
            if (v == "split") {
                config.pin = evbus_bench::placement::split;
            } else if (v == "shared") {
                config.pin = evbus_bench::placement::shared;
            } else if (v != "scheduler") {
                usage_error("--pin takes scheduler, split or shared, got '" + std::string(v) + "'");
            }
        } else if (arg == "--filter") {
            if (i + 1 >= argc) usage_error("--filter needs a substring of case names");
            filter = argv[++i];
        } else if (arg == "--peak") {
            peak = parse_count(arg, i + 1 < argc ? argv[++i] : nullptr);
        } else if (arg == "--smoke") {
            config.smoke = true;
        } else {
            usage_error("unknown argument '" + std::string(arg) + "'");
        }
    }
    if (peak != 0 && !filter.empty()) {
        usage_error("--peak runs no tables, so --filter has nothing to keep");
    }
    if (config.smoke) {
        config.runs = 1;
        config.items_per_producer = 20'000;
        config.pipeline_items_per_producer = 20'000;
    }

    const unsigned cores = std::thread::hardware_concurrency();
    std::printf("evbus_bench\n");
    std::printf("cpu:        %s\n", cpu_model().c_str());
    std::printf("cores:      %u (std::thread::hardware_concurrency)%s\n", cores,
                cores <= 2 ? " -- a 2-core machine: 2 producers + 1 consumer share 2 cores, "
                             "expect a wide spread"
                           : "");
    std::printf("compiler:   g++ %s\n", __VERSION__);
    std::printf("flags:      %s\n", EVBUS_BENCH_FLAGS);
    std::printf(
        "runs:       %d per case%s, %llu events per producer (ring only), %llu "
        "(pipeline)\n",
        config.runs, config.smoke ? " (smoke run: numbers are meaningless)" : "",
        static_cast<unsigned long long>(config.items_per_producer),
        static_cast<unsigned long long>(config.pipeline_items_per_producer));
    std::printf("placement:  %s (ring-only cases)\n",
                config.pin == evbus_bench::placement::split    ? "split: producers on CPU 0, "
                                                                 "consumer on CPU 1"
                : config.pin == evbus_bench::placement::shared ? "shared: every thread on CPU 0"
                                                               : "scheduler's choice (unpinned)");
    using ring = evbus::mpsc_ring<evbus_bench::payload64>;
    std::printf(
        "ring:       capacity %zu, slot %zu bytes, memory per ring %zu bytes; deep ring %zu "
        "slots, %zu bytes\n",
        evbus_bench::queue_capacity, ring::slot_bytes(),
        ring::memory_footprint(evbus_bench::queue_capacity), evbus_bench::deep_ring_capacity,
        ring::memory_footprint(evbus_bench::deep_ring_capacity));
    std::fflush(stdout);

    try {
        if (peak != 0) {
            std::printf("peak:       %llu events/s, given with --peak (tables skipped)\n", peak);
            evbus_bench::pipeline_reports(config, static_cast<double>(peak));
            return 0;
        }
        auto groups = evbus_bench::queue_groups(config);
        const std::size_t ring_groups = groups.size();
        for (auto& g : evbus_bench::pipeline_groups(config)) groups.push_back(std::move(g));
        if (!filter.empty()) evbus_bench::keep_cases(groups, filter);
        std::vector<double> medians;
        const bool ok = evbus_bench::run_groups(groups, config, medians);
        if (filter.empty() && medians.size() > ring_groups) {
            // The first pipeline group is 1 producer x 1 shard: its median is the peak.
            evbus_bench::pipeline_reports(config, medians[ring_groups]);
        }
        return ok ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "evbus_bench: %s\n", e.what());
        return 1;
    }
}
