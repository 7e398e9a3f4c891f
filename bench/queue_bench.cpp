// bench/queue_bench.cpp — evbus::mpsc_ring alone against the best-known queues, and the
// moodycamel baselines of the pipeline report (hand-off, sharded hand-off, latency).
//
// Same 64-byte payload, same thread layout (P producer threads, the consumer on the main
// thread), same capacity where the queue is bounded, same per-item consumer work (an order
// check and a checksum). Each queue is used the way its authors recommend for throughput:
// moodycamel with producer/consumer tokens and bulk dequeue, the evbus ring with push() and
// batch consume() plus its own idle strategy, the others with their try/blocking calls and
// one shared back-off when full or empty.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <latch>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

// moodycamel's header trips -Wnull-dereference once inlined at -O2; not our code to fix.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <atomic_queue/atomic_queue.h>
#include <concurrentqueue/concurrentqueue.h>
#include <oneapi/tbb/concurrent_queue.h>
#include <boost/lockfree/queue.hpp>
#pragma GCC diagnostic pop

#include <evbus/mpsc_ring.hpp>

#include "harness.hpp"

namespace evbus_bench {
namespace {

// Each adapter offers: a per-producer handle, push(handle, payload), a consumer handle,
// consume(handle, f, max) -> count, and idle(handle) when consume found nothing. Adapters
// whose push retries a failing try also offer abandon(): from then on a push that fails
// once gives up, so a run that hung (stall_limit) can end.

// The abandon() flag of those adapters.
class abandonable {
public:
    void abandon() noexcept {
        // Relaxed: a stop request with nothing to publish; a producer sees it within a few
        // retries, which is all a hung run needs.
        abandoned_.store(true, std::memory_order_relaxed);
    }

protected:
    [[nodiscard]] bool abandoned() const noexcept {
        return abandoned_.load(std::memory_order_relaxed);  // see abandon()
    }

private:
    std::atomic<bool> abandoned_{false};
};

template <std::size_t Capacity>
class evbus_ring_adapter {
public:
    struct producer {};
    struct consumer {};

    evbus_ring_adapter() : ring_(Capacity) {}
    producer make_producer() { return {}; }
    consumer make_consumer() { return {}; }
    void push(producer&, payload64&& p) { ring_.push(std::move(p)); }
    template <class F>
    std::size_t consume(consumer&, F&& f, std::size_t max) {
        return ring_.consume(f, max);
    }
    void idle(consumer&) { ring_.wait_for_items(stop_); }

private:
    evbus::mpsc_ring<payload64> ring_;
    const std::atomic<bool> stop_{false};
};

// Bounded: try_enqueue() never allocates past the capacity given to the constructor, so
// producers wait when it is full. Unbounded: enqueue() allocates more blocks instead.
template <bool Bounded>
class moodycamel_adapter : public abandonable {
public:
    struct producer {
        moodycamel::ProducerToken token;
    };
    struct consumer {
        moodycamel::ConsumerToken token;
        std::vector<payload64> buffer;
        backoff wait;
    };

    // Bounded: moodycamel's own sizing for "queue_capacity elements available at any time"
    // with up to two explicit producers (more blocks than 4,096 slots: each explicit
    // producer keeps the blocks it took, and with exactly 4,096 slots one producer could
    // hold them all and starve the other for good; a run hung that way).
    moodycamel_adapter()
        : queue_(Bounded ? moodycamel::ConcurrentQueue<payload64>(queue_capacity, 2, 0)
                         : moodycamel::ConcurrentQueue<payload64>(queue_capacity)) {}
    producer make_producer() { return producer{moodycamel::ProducerToken(queue_)}; }
    consumer make_consumer() { return consumer{moodycamel::ConsumerToken(queue_), {}, {}}; }
    void push(producer& p, payload64&& v) {
        backoff wait;
        if constexpr (Bounded) {
            while (!queue_.try_enqueue(p.token, std::move(v)) && !abandoned()) wait.wait();
        } else {
            // false: out of memory.
            while (!queue_.enqueue(p.token, std::move(v)) && !abandoned()) wait.wait();
        }
    }
    template <class F>
    std::size_t consume(consumer& c, F&& f, std::size_t max) {
        c.buffer.resize(max);
        const std::size_t n = queue_.try_dequeue_bulk(c.token, c.buffer.begin(), max);
        for (std::size_t i = 0; i < n; ++i) f(c.buffer[i]);
        if (n != 0) c.wait.reset();
        return n;
    }
    void idle(consumer& c) { c.wait.wait(); }

private:
    moodycamel::ConcurrentQueue<payload64> queue_;
};

// Pops one at a time up to `max`, for queues without a bulk dequeue.
template <class Queue, class F>
std::size_t pop_up_to(Queue& q, F&& f, std::size_t max) {
    std::size_t n = 0;
    payload64 v;
    while (n < max && q.try_pop(v)) {
        f(v);
        ++n;
    }
    return n;
}

class atomic_queue_adapter : public abandonable {
public:
    struct producer {};
    struct consumer {
        backoff wait;
    };

    producer make_producer() { return {}; }
    consumer make_consumer() { return {}; }
    void push(producer&, payload64&& v) {
        backoff wait;
        while (!queue_->try_push(std::move(v)) && !abandoned()) wait.wait();
    }
    template <class F>
    std::size_t consume(consumer& c, F&& f, std::size_t max) {
        const std::size_t n = pop_up_to(*queue_, f, max);
        if (n != 0) c.wait.reset();
        return n;
    }
    void idle(consumer& c) { c.wait.wait(); }

private:
    // The library's default MPMC queue for non-atomic elements (element + state per slot).
    std::unique_ptr<atomic_queue::AtomicQueue2<payload64, queue_capacity>> queue_ =
        std::make_unique<atomic_queue::AtomicQueue2<payload64, queue_capacity>>();
};

class boost_lockfree_adapter : public abandonable {
public:
    struct producer {};
    struct consumer {
        backoff wait;
    };

    producer make_producer() { return {}; }
    consumer make_consumer() { return {}; }
    void push(producer&, payload64&& v) {
        backoff wait;
        // Fixed-size: false when full, never allocates.
        while (!queue_.push(v) && !abandoned()) wait.wait();
    }
    template <class F>
    std::size_t consume(consumer& c, F&& f, std::size_t max) {
        std::size_t n = 0;
        payload64 v;
        while (n < max && queue_.pop(v)) {
            f(v);
            ++n;
        }
        if (n != 0) c.wait.reset();
        return n;
    }
    void idle(consumer& c) { c.wait.wait(); }

private:
    // boost::lockfree caps a compile-time capacity below 65535 nodes; 4096 fits.
    boost::lockfree::queue<payload64, boost::lockfree::capacity<queue_capacity>> queue_;
};

class tbb_adapter {
public:
    struct producer {};
    struct consumer {
        backoff wait;
    };

    tbb_adapter() { queue_.set_capacity(static_cast<std::ptrdiff_t>(queue_capacity)); }
    producer make_producer() { return {}; }
    consumer make_consumer() { return {}; }
    void push(producer&, payload64&& v) { queue_.push(std::move(v)); }  // blocks while full
    template <class F>
    std::size_t consume(consumer& c, F&& f, std::size_t max) {
        const std::size_t n = pop_up_to(queue_, f, max);
        if (n != 0) c.wait.reset();
        return n;
    }
    void idle(consumer& c) { c.wait.wait(); }

private:
    oneapi::tbb::concurrent_bounded_queue<payload64> queue_;
};

// The queue people write by hand: one mutex, two condition variables, a deque; bounded like
// the others. The consumer takes up to `max` per lock, which is kind to this baseline.
class mutex_queue_adapter {
public:
    struct producer {};
    struct consumer {
        std::vector<payload64> buffer;
    };

    producer make_producer() { return {}; }
    consumer make_consumer() { return {}; }
    void push(producer&, payload64&& v) {
        std::unique_lock lock(mutex_);
        not_full_.wait(lock, [this] { return items_.size() < queue_capacity; });
        items_.push_back(v);
        const bool was_empty = items_.size() == 1;
        lock.unlock();
        if (was_empty) not_empty_.notify_one();
    }
    template <class F>
    std::size_t consume(consumer& c, F&& f, std::size_t max) {
        c.buffer.clear();
        bool was_full = false;
        {
            std::unique_lock lock(mutex_);
            not_empty_.wait(lock, [this] { return !items_.empty(); });
            was_full = items_.size() >= queue_capacity;
            const std::size_t n = std::min(max, items_.size());
            c.buffer.assign(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(n));
            items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(n));
        }
        if (was_full) not_full_.notify_all();
        for (payload64& v : c.buffer) f(v);
        return c.buffer.size();
    }
    void idle(consumer&) {}  // consume() already blocks while empty

private:
    std::mutex mutex_;
    std::condition_variable not_empty_;
    std::condition_variable not_full_;
    std::deque<payload64> items_;
};

// One producer's count of finished pushes, on its own cache line.
struct alignas(evbus::cache_line_size) progress {
    std::atomic<std::uint64_t> pushed{0};
};

// One run: `producers` threads push items_per_producer each; the main thread consumes all.
template <class Adapter>
run_result run_queue(std::size_t producers, const bench_config& config) {
    auto queue = std::make_unique<Adapter>();
    const std::uint64_t items = config.items_per_producer;
    const std::uint64_t total = items * producers;
    std::latch start(static_cast<std::ptrdiff_t>(producers + 1));
    std::vector<progress> pushed(producers);
    std::vector<std::thread> threads;
    threads.reserve(producers);
    for (std::size_t p = 0; p < producers; ++p) {
        threads.emplace_back([&queue, &start, &config, &pushed, p, items] {
            pin_thread(config.pin, false);
            auto handle = queue->make_producer();
            start.arrive_and_wait();
            for (std::uint64_t i = 0; i < items; ++i) {
                queue->push(handle, make_payload(p, i));
                if ((i + 1) % progress_step == 0) {
                    // Relaxed: a statistic; the consumer only needs some recent value, and the
                    // queue's own synchronisation carries the events.
                    pushed[p].pushed.store(i + 1, std::memory_order_relaxed);
                }
            }
        });
    }
    // Events pushed (as far as the counters tell) and not yet received.
    const auto depth = [&pushed](std::uint64_t received) {
        std::uint64_t sum = 0;
        // Relaxed: see the store above.
        for (const progress& c : pushed) sum += c.pushed.load(std::memory_order_relaxed);
        return sum > received ? sum - received : 0;
    };
    std::uint64_t peak_depth = 0;
    order_check check(producers);
    const bool pinned = pin_thread(config.pin, true);
    auto handle = queue->make_consumer();
    start.arrive_and_wait();
    const auto t0 = bench_clock::now();
    std::uint64_t received = 0;
    const std::size_t batch = config.batch;
    bool hung = false;
    std::uint64_t idle_rounds = 0;
    bench_clock::time_point empty_since{};
    while (received < total) {
        const std::size_t n = queue->consume(
            handle, [&check](payload64& v) { check.see(v); }, batch);
        peak_depth = std::max(peak_depth, depth(received));
        received += n;
        if (n != 0) {
            idle_rounds = 0;
            continue;
        }
        // Only adapters that can give up look for a stall; the clock is read every 4,096th
        // empty look, so a waiting consumer keeps its baseline's own back-off.
        if constexpr (std::is_base_of_v<abandonable, Adapter>) {
            if (++idle_rounds % 4096 == 1) {
                const auto now = bench_clock::now();
                if (idle_rounds == 1) {
                    empty_since = now;
                } else if (now - empty_since > stall_limit) {
                    queue->abandon();
                    hung = true;
                    break;
                }
            }
        }
        queue->idle(handle);
    }
    const auto t1 = bench_clock::now();
    for (auto& t : threads) t.join();
    if (pinned) unpin_thread();
    return run_result{static_cast<double>(total) / seconds_between(t0, t1),
                      total,
                      received,
                      check.violations(),
                      peak_depth,
                      hung};
}

using queue_run = run_result (*)(std::size_t, const bench_config&);

// A case that runs `fn` with `producers` producer threads.
bench_case queue_case(std::string name, queue_run fn, std::size_t producers) {
    return bench_case{std::move(name),
                      [fn, producers](const bench_config& c) { return fn(producers, c); }};
}

bench_group make_group(std::string title, std::size_t producers) {
    bench_group g;
    g.title = std::move(title);
    const auto add = [&](std::string name, queue_run fn) {
        g.cases.push_back(queue_case(std::move(name), fn, producers));
    };
    add("evbus::mpsc_ring (push + batch consume)", &run_queue<evbus_ring_adapter<queue_capacity>>);
    add("moodycamel::ConcurrentQueue (tokens + bulk)", &run_queue<moodycamel_adapter<false>>);
    add("moodycamel bounded (try_enqueue; tokens + bulk)", &run_queue<moodycamel_adapter<true>>);
    add("atomic_queue::AtomicQueue2", &run_queue<atomic_queue_adapter>);
    add("boost::lockfree::queue", &run_queue<boost_lockfree_adapter>);
    add("tbb::concurrent_bounded_queue", &run_queue<tbb_adapter>);
    add("std::mutex + condition_variable + deque", &run_queue<mutex_queue_adapter>);
    return g;
}

// The ring as deep as unbounded moodycamel grows here (peak depths of 0.9-1.5 million events
// with two producers): the same comparison at about the same memory, which tells the bound's
// share of moodycamel's lead from the queue's own.
bench_group deep_group(std::size_t producers) {
    bench_group g;
    g.title = "ring only at moodycamel's depth: " + std::to_string(producers) + " producer" +
              (producers == 1 ? "" : "s") + " -> 1 consumer";
    g.cases.push_back(queue_case("evbus::mpsc_ring deep (push + batch consume)",
                                 &run_queue<evbus_ring_adapter<deep_ring_capacity>>, producers));
    g.cases.push_back(queue_case("moodycamel::ConcurrentQueue (tokens + bulk)",
                                 &run_queue<moodycamel_adapter<false>>, producers));
    return g;
}

// One run of moodycamel_sharded_case: n producers, n consumer threads, one unbounded queue
// each. Every event goes to a random queue (drawn before the clock starts) and carries its
// per-queue sequence, so each consumer checks per-producer order on its own queue.
run_result run_sharded(std::size_t n, const bench_config& config) {
    using adapter = moodycamel_adapter<false>;
    const std::uint64_t items = config.pipeline_items_per_producer;
    std::vector<std::unique_ptr<adapter>> queues;
    for (std::size_t q = 0; q < n; ++q) queues.push_back(std::make_unique<adapter>());
    std::vector<std::vector<std::uint8_t>> routes(n, std::vector<std::uint8_t>(items));
    std::vector<std::uint64_t> expected(n, 0);
    std::mt19937_64 rng(41);
    std::uniform_int_distribution<std::size_t> pick(0, n - 1);
    for (auto& route : routes) {
        for (auto& q : route) {
            q = static_cast<std::uint8_t>(pick(rng));
            ++expected[q];
        }
    }
    std::vector<std::uint64_t> received(n, 0);
    std::vector<std::uint64_t> violations(n, 0);
    std::latch start(static_cast<std::ptrdiff_t>(2 * n + 1));
    std::vector<std::thread> threads;
    for (std::size_t p = 0; p < n; ++p) {
        threads.emplace_back([&, p] {
            std::vector<adapter::producer> handles;
            for (auto& q : queues) handles.push_back(q->make_producer());
            std::vector<std::uint64_t> seq(n, 0);
            start.arrive_and_wait();
            for (const std::uint8_t q : routes[p]) {
                queues[q]->push(handles[q], make_payload(p, seq[q]++));
            }
        });
    }
    for (std::size_t c = 0; c < n; ++c) {
        threads.emplace_back([&, c] {
            auto handle = queues[c]->make_consumer();
            order_check check(n);
            start.arrive_and_wait();
            while (received[c] < expected[c]) {
                const std::size_t got = queues[c]->consume(
                    handle, [&check](payload64& v) { check.see(v); }, config.batch);
                received[c] += got;
                if (got == 0) queues[c]->idle(handle);
            }
            violations[c] = check.violations();
        });
    }
    start.arrive_and_wait();
    const auto t0 = bench_clock::now();
    for (auto& t : threads) t.join();
    const auto t1 = bench_clock::now();
    const std::uint64_t total = items * n;
    std::uint64_t got = 0, reordered = 0;
    for (std::size_t c = 0; c < n; ++c) {
        got += received[c];
        reordered += violations[c];
    }
    return run_result{static_cast<double>(total) / seconds_between(t0, t1), total, got, reordered,
                      std::nullopt};
}

}  // namespace

bench_case moodycamel_handoff_case(std::size_t producers, bool bounded) {
    return queue_case(
        std::string("moodycamel ") + (bounded ? "bounded " : "") + "hand-off alone (" +
            std::to_string(producers) + "P->1C)",
        bounded ? &run_queue<moodycamel_adapter<true>> : &run_queue<moodycamel_adapter<false>>,
        producers);
}

bench_case moodycamel_sharded_case(std::size_t n) {
    return queue_case("moodycamel sharded hand-off alone (" + std::to_string(n) + "P->" +
                          std::to_string(n) + "C; a queue per consumer)",
                      &run_sharded, n);
}

latency_stats moodycamel_latency(double rate_per_s, std::uint64_t events) {
    moodycamel_adapter<false> queue;
    std::vector<std::int64_t> latencies(events, -1);
    std::latch start(2);
    std::uint64_t consumer_preempted = 0;
    std::thread consumer([&] {
        auto handle = queue.make_consumer();
        const long self = thread_id();
        const std::uint64_t before = involuntary_switches(self);
        start.arrive_and_wait();
        std::uint64_t received = 0;
        while (received < latency_warmup + events) {
            const std::size_t n = queue.consume(
                handle,
                [&latencies](payload64& v) {
                    const std::int64_t t = now_ns() - static_cast<std::int64_t>(v.body[1]);
                    if (v.seq < latencies.size()) latencies[v.seq] = t;
                },
                256);
            received += n;
            if (n == 0) queue.idle(handle);
        }
        consumer_preempted = involuntary_switches(self) - before;
    });
    auto handle = queue.make_producer();
    const double interval_ns = 1e9 / rate_per_s;
    const long producer = thread_id();
    const std::uint64_t producer_before = involuntary_switches(producer);
    start.arrive_and_wait();
    const std::int64_t t0 = now_ns();
    std::int64_t measured_from = t0;
    for (std::uint64_t i = 0; i < latency_warmup + events; ++i) {
        const std::int64_t t = wait_for_send_time(t0, interval_ns, i);
        if (i == latency_warmup) measured_from = t;
        payload64 p = make_payload(0, latency_seq(i, events));
        p.body[1] = static_cast<std::uint64_t>(t);
        queue.push(handle, std::move(p));
    }
    const std::uint64_t producer_preempted = involuntary_switches(producer) - producer_before;
    consumer.join();
    latency_stats r = summarize_latencies(std::move(latencies),
                                          static_cast<double>(now_ns() - measured_from) / 1e9);
    r.producer_preempted = producer_preempted;
    r.consumer_preempted = consumer_preempted;
    return r;
}

std::vector<bench_group> queue_groups(const bench_config&) {
    return {make_group("ring only: 1 producer -> 1 consumer", 1),
            make_group("ring only: 2 producers -> 1 consumer", 2), deep_group(1), deep_group(2)};
}

}  // namespace evbus_bench
