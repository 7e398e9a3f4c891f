// bench/harness.hpp — the benchmark harness: cases, interleaved runs, statistics, report.
//
// Every comparison is a group of cases (one subject, several baselines) that run in the same
// process, interleaved round by round and in a rotating order, so machine noise hits all of
// them alike. Each case reports events per second for one run; the report prints min, median
// and max over the runs and the subject's median ratio to each baseline.
//
// Thread-safety: the harness runs cases one at a time on the main thread; cases start and
// join their own threads.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <evbus/mpsc_ring.hpp>

namespace evbus_bench {

/// Capacity of every bounded queue in the throughput cases, in events (compile-time because
/// atomic_queue's fastest queue takes its size as a template argument).
inline constexpr std::size_t queue_capacity = 4096;
/// Capacity of the evbus ring in the "at moodycamel's depth" cases: 2^20 slots (128 MiB of
/// 128-byte slots), about as many events as unbounded moodycamel holds at its peak here.
inline constexpr std::size_t deep_ring_capacity = std::size_t{1} << 20;
/// A ring-only run of a baseline whose push retries a failing try gives up when its consumer
/// finds nothing for this long (run_result::hung; abandon() in queue_bench.cpp).
/// Bounded moodycamel was seen here with its producer failing try_enqueue and its consumer
/// finding the queue empty, both for good (cameron314/concurrentqueue issues 55 and 292
/// report the like); that stopped a whole benchmark at its first round.
inline constexpr std::chrono::seconds stall_limit{10};
/// Producers of the ring-only cases report their progress every this many pushes (see
/// run_result::peak_depth).
inline constexpr std::uint64_t progress_step = 1024;

/// The payload every throughput case moves: 64 bytes, trivially copyable, no allocation.
struct payload64 {
    std::uint64_t producer = 0;
    std::uint64_t seq = 0;
    std::array<std::uint64_t, 6> body{};
};
static_assert(sizeof(payload64) == 64);

/// Where the ring-only cases run their threads. The scheduler's choice matters a lot on a
/// 2-core machine: a producer and a consumer time-sharing one core exchange no cache lines,
/// on two cores every event crosses between them.
enum class placement { scheduler, split, shared };

/// Settings shared by all cases of one invocation.
struct bench_config {
    int runs = 7;                                  ///< measured runs per case (>= 5 for the report)
    std::uint64_t items_per_producer = 4'000'000;  ///< ring-only throughput cases
    std::uint64_t pipeline_items_per_producer = 1'000'000;  ///< full-pipeline cases
    std::size_t batch = 256;  ///< max events per bulk dequeue / consume
    bool smoke = false;       ///< tiny sizes: keeps the benchmark compiling and running
    /// Ring-only cases: split pins producers to CPU 0 and the consumer to CPU 1; shared pins
    /// all to CPU 0; scheduler pins nothing (the default, and what the report is about).
    placement pin = placement::scheduler;
};

/// What the consumer of a throughput case saw; a run is valid only if nothing is missing.
struct run_result {
    double events_per_s = 0;
    std::uint64_t expected = 0;
    std::uint64_t received = 0;
    std::uint64_t order_violations = 0;  ///< items of one producer seen out of order
    /// Most events pushed but not yet consumed at any moment the consumer looked (pushes
    /// counted in steps of progress_step per producer), for cases that measure it: shows
    /// whether a queue kept to its bound or let producers run ahead of the consumer.
    std::optional<std::uint64_t> peak_depth;
    /// No event arrived for stall_limit: the run was abandoned. It counts as invalid for the
    /// subject; for a baseline it is reported and left out of the statistics.
    bool hung = false;
};

/// One case: runs once and reports events/s.
struct bench_case {
    std::string name;
    std::function<run_result(const bench_config&)> run_once;
};

/// A subject and its baselines, compared by median ratio.
struct bench_group {
    std::string title;
    std::vector<bench_case> cases;  ///< cases[0] is the subject (evbus)
};

/// min / median / max of a sample; NaN entries (runs that hung) are left out.
struct spread {
    double min = 0;
    double median = 0;
    double max = 0;
};
spread summarize(std::vector<double> values);

/// Spins with a CPU pause, then yields: the same back-off for every baseline's full/empty
/// loop, so no queue wins by a different waiting policy.
class backoff {
public:
    void wait() noexcept {
        if (rounds_ < 64) {
            evbus::detail::cpu_relax();
        } else {
            std::this_thread::yield();
        }
        ++rounds_;
    }
    void reset() noexcept { rounds_ = 0; }

private:
    int rounds_ = 0;
};

/// Tracks per-producer order on the consumer side; costs every case the same few cycles.
class order_check {
public:
    explicit order_check(std::size_t producers) : next_(producers, 0) {}
    void see(const payload64& p) noexcept {
        if (p.producer >= next_.size() || p.seq != next_[p.producer]) {
            ++violations_;
            if (p.producer < next_.size()) next_[p.producer] = p.seq + 1;
        } else {
            ++next_[p.producer];
        }
        checksum_ += p.body[0];
    }
    [[nodiscard]] std::uint64_t violations() const noexcept { return violations_; }
    [[nodiscard]] std::uint64_t checksum() const noexcept { return checksum_; }

private:
    std::vector<std::uint64_t> next_;
    std::uint64_t violations_ = 0;
    std::uint64_t checksum_ = 0;
};

/// Pins the calling thread to its CPU under `p` (see bench_config::pin); true if it did.
/// No-op (false) for placement::scheduler.
bool pin_thread(placement p, bool consumer);
/// Lets the calling thread run on every CPU again.
void unpin_thread();

/// Fills the payload a producer sends.
inline payload64 make_payload(std::uint64_t producer, std::uint64_t seq) noexcept {
    payload64 p;
    p.producer = producer;
    p.seq = seq;
    p.body[0] = seq * 2654435761U;
    return p;
}

using bench_clock = std::chrono::steady_clock;

inline double seconds_between(bench_clock::time_point a, bench_clock::time_point b) noexcept {
    return std::chrono::duration<double>(b - a).count();
}

/// bench_clock's reading in nanoseconds: the stamp the latency runs carry in their events.
inline std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               bench_clock::now().time_since_epoch())
        .count();
}

/// The send time of event `i` of a run paced at `interval_ns` from `start_ns`: busy-waits
/// until then and returns the clock's reading. A sender that fell behind sends at once.
inline std::int64_t wait_for_send_time(std::int64_t start_ns, double interval_ns,
                                       std::uint64_t i) noexcept {
    const auto due = start_ns + static_cast<std::int64_t>(static_cast<double>(i) * interval_ns);
    std::int64_t t = now_ns();
    while (t < due) t = now_ns();
    return t;
}

/// Events a latency run sends, paced like the rest, before the ones it measures: by then
/// the consumer is running and warm (an engine's worker starts asleep, a cold start left a
/// backlog of thousands of late events that said nothing about the steady state).
inline constexpr std::uint64_t latency_warmup = 100'000;

/// The seq that event `i` of a latency run of `events` measured events carries: warm-up events
/// get one past the latency table (not recorded), the measured ones 0 .. events - 1.
inline std::uint64_t latency_seq(std::uint64_t i, std::uint64_t events) noexcept {
    return i < latency_warmup ? events + i : i - latency_warmup;
}

/// Post-to-handler latency of one paced run, and how often the scheduler took the CPU away
/// from each side during it (involuntary context switches): on a machine with no spare
/// core, a preempted consumer leaves every event behind it waiting a time slice.
struct latency_stats {
    double offered_per_s = 0;
    double p50 = 0, p99 = 0, p999 = 0, max = 0;
    std::uint64_t producer_preempted = 0;  ///< the posting thread
    std::uint64_t consumer_preempted = 0;  ///< the consuming thread(s)
    /// Events later than late_ns, and the runs of consecutive such events they form: each run
    /// is one stall of the consumer (or the machine), however many events it held up.
    std::uint64_t late_events = 0;
    std::uint64_t late_runs = 0;
};

/// The latency that makes an event late in latency_stats: the p99 bound.
inline constexpr std::int64_t late_ns = 5'000;

/// Fills offered_per_s, the percentiles and the late counts from one latency per event, in
/// send order (ns; negative: the event was not seen), over a run of `elapsed_s` seconds.
latency_stats summarize_latencies(std::vector<std::int64_t> samples, double elapsed_s);

/// Prints one latency line and its csv twin ("csv,latency,<label>,...").
void print_latency(const std::string& label, const latency_stats& l);

/// This thread's id (gettid), and the involuntary context switches so far of thread `tid`
/// of this process (/proc/self/task/<tid>/status; 0 if it cannot be read).
long thread_id() noexcept;
std::uint64_t involuntary_switches(long tid);

/// Keeps each group's subject and the cases whose name contains `text`; drops empty groups.
void keep_cases(std::vector<bench_group>& groups, const std::string& text);

/// Runs the groups interleaved and prints the throughput table and the ratios. Fills
/// `subject_medians` with each group's subject median (events/s), in group order.
/// Returns false if any run lost events (or the subject reordered them).
bool run_groups(const std::vector<bench_group>& groups, const bench_config& config,
                std::vector<double>& subject_medians);

/// The ring-only groups: evbus::mpsc_ring against the baseline queues, P producers -> 1.
std::vector<bench_group> queue_groups(const bench_config& config);

/// moodycamel alone, N producers -> N consumers, one unbounded queue per consumer and each
/// event sent to a random one: the hand-off of an N x N pipeline without keys, hashing,
/// routing or dispatch.
bench_case moodycamel_sharded_case(std::size_t n);

/// Latency of moodycamel's hand-off alone (1 producer -> 1 consumer, tokens, bulk dequeue),
/// paced at `rate_per_s` the way the engine's latency run is: the machine's own floor.
latency_stats moodycamel_latency(double rate_per_s, std::uint64_t events);

/// moodycamel with tokens and bulk dequeue alone, P producers -> 1 consumer: the hand-off
/// baseline the full pipeline is compared with. `bounded`: try_enqueue into the
/// preallocated queue_capacity (producers wait when full, like the engine's ring) instead of
/// enqueue, which allocates more blocks whenever the consumer falls behind.
bench_case moodycamel_handoff_case(std::size_t producers, bool bounded);

/// The full-pipeline groups through evbus::engine: producers x shards = 1x1, 2x1, 1x2, 2x2,
/// and N x N for N = 4 and 8 where the machine has 2N cores (shard scaling).
std::vector<bench_group> pipeline_groups(const bench_config& config);

/// Ring memory per shard, latency at half of `peak_per_s`, idle CPU and resident memory.
void pipeline_reports(const bench_config& config, double peak_per_s);

}  // namespace evbus_bench
