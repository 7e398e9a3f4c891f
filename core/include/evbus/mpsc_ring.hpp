// evbus/mpsc_ring.hpp — bounded lock-free multi-producer / single-consumer ring.
//
// mpsc_ring<T> is the queue in front of every shard: any thread pushes, one consumer (the
// shard's worker) pops or consumes in batches. Capacity is a power of two fixed at
// construction; events live inline in cache-line padded slots, so the ring path never
// allocates per event.
//
// Invariants:
// - Positions are 64-bit counters that never wrap in practice; position `pos` lives in slot
//   `pos & mask`. Producers claim positions from tail_ (by CAS in try_push, by increment in
//   push), so every position has exactly one producer. The consumer reads positions strictly
//   in order; head_ is the first position it has not finished, and it publishes head_ in
//   head_published_ after each batch.
// - Every slot carries a sequence number that includes the lap: `sequence == pos + 1` says
//   the value of `pos` is published. Last lap's value in that slot carries pos - capacity + 1,
//   so the consumer can never mistake it for the current one.
// - A producer writes the slot of `pos` only after it saw `pos < head + capacity` for a
//   head the consumer published (head_published_, or the producers' copy of an earlier
//   value of it, cached_head_, which is never ahead of it), i.e. the consumer has finished
//   (and destroyed) position pos - capacity. The
//   consumer never passes a position that is claimed but not yet published, so a producer
//   preempted mid-push cannot be overtaken: the next producer for its slot (pos + capacity)
//   waits until the consumer has passed pos, which needs the slow producer's publish.
//   Each producer's claims are increasing, hence per-producer FIFO holds whatever the
//   scheduler does, also with more threads than cores.
//
// Why a published cursor rather than per-slot frees (Vyukov's bounded queue writes each
// slot's sequence again when it frees it): the consumer then only ever reads the slots'
// cache lines, so a producer reclaiming a line next lap only invalidates a shared copy
// instead of fetching a modified one back from the consumer's core, and the consumer writes
// one line per batch instead of one per event. Measured on the 2-core VM against the
// per-slot version (docs/benchmarks.md): 1 producer about 1.5x, 2 producers about 2x.
//
// Why producers keep a copy of the cursor (cached_head_): at low rates the consumer publishes its
// cursor after nearly every event, so a push that read the cursor itself fetched a line just
// modified on the consumer's core, and its claim's locked RMW waited for that miss. The copy is
// refreshed from the cursor only when it says the slot may not be free yet, about once per lap.
//
// Progress: producers are lock-free with respect to each other (a failed claim means another
// producer succeeded); push() waits only for the consumer, and only when the ring is full.
// The consumer can be held up by one producer preempted between its claim and its publish;
// it then sees "empty" until that producer runs again (inherent to bounded queues that keep
// order; the price of per-producer FIFO).
//
// Memory ordering:
// - Data. A producer constructs the value and then publishes with a release store of the
//   slot's sequence [R1]; the consumer's acquire load of the sequence [A2] pairs with it, so
//   it sees the whole value. The consumer destroys the values of a batch and then publishes
//   its cursor with a release store [R2]; a producer's acquire load of the cursor [A1] pairs
//   with it, so the destructors' writes happen before the next construction in those slots.
//   A producer that read the cursor stores what it read into cached_head_ with release
//   [R3]; a producer whose acquire load of the copy [A3] shows room relies on it, and
//   R2 -> A1 -> R3 -> A3 orders the destruction before its construction just the same. Every
//   value of the copy is one the cursor had, and the cursor only grows, so the copy can lag
//   (racing refreshes may even store an older value) but never run ahead: it can only say
//   "not free" too early, and then the producer reads the cursor itself.
// - Consumer sleep (Dekker). A producer claims with a seq_cst RMW on tail_ [S1] and, after
//   publishing, reads consumer_sleeping_ with a seq_cst load [S2]. The consumer, before it
//   blocks, announces itself with a seq_cst exchange on consumer_sleeping_ [S3] and then
//   reads tail_ with a seq_cst load [S4]. In the single total order of seq_cst operations
//   either S3 precedes S2, so the producer sees the announcement and wakes the consumer, or
//   S2 precedes S3, and then S1 < S2 < S3 < S4, so the consumer sees the claim and does not
//   block. On x86 S2 and S4 are plain loads and S1 is the locked RMW every push pays anyway,
//   so the fast path costs nothing extra; only a producer that sees the announcement touches
//   the futex (exchange + notify_one).
// - Producers blocked on a full ring (Dekker through one RMW each). A producer about to
//   block increments producers_waiting_ (acq_rel RMW [W1]) and only then re-checks the
//   cursor. After publishing a batch, the consumer does an acq_rel RMW on producers_waiting_
//   [W2]. The two RMWs are ordered in the counter's modification order: either W2 comes later
//   and reads the waiter (so the consumer bumps space_epoch_ and notifies), or W1 comes
//   later, reads W2's value and synchronises with it, so the producer's re-check sees the new
//   cursor. The epoch is read (acquire [W3]) before the re-check; if the consumer's bump
//   (release [W4]) happens before that read, the cursor is visible to the re-check; if after,
//   the wait on the old epoch returns at once. The consumer pays one uncontended RMW per
//   batch. wait_for_space() is the same handshake for a producer that has not claimed a
//   position yet; it re-checks the tail against the cursor, and also wakes on
//   wake_producers(), whose release bump [W5] pairs with [W3] the same way [W4] does.
//
// Thread-safety: try_push, try_emplace, try_push_with, push, wait_for_space,
// wake_producers, wake_consumer, claimed, approx_size and capacity are thread-safe. try_pop,
// consume and wait_for_items are consumer only: one thread at a time (a different thread may take
// over after a happens-before hand-off, e.g. thread join).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace evbus {

/// Size in bytes of a cache line on the targets we build for (x86-64, AArch64). Our own
/// constant: std::hardware_destructive_interference_size varies with compiler flags.
inline constexpr std::size_t cache_line_size = 64;

namespace detail {

/// A hint to the CPU that the caller is spinning (x86 `pause`, AArch64 `yield`).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    asm volatile("yield" ::: "memory");
#endif
}

/// A hint to fetch the cache line at `p` in a state that allows writing; no effect on
/// results. On x86-64 this is PREFETCHW written out, because GCC turns
/// __builtin_prefetch(p, 1, ...) into a plain read prefetch unless the whole build enables
/// -mprfchw; CPUs without the instruction (Intel before Broadwell) execute it as a NOP.
inline void prefetch_for_write(const void* p) noexcept {
#if defined(__x86_64__)
    asm volatile("prefetchw %0" : : "m"(*static_cast<const unsigned char*>(p)));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

}  // namespace detail

template <class T>
class mpsc_ring {
    static_assert(std::is_nothrow_move_constructible_v<T>,
                  "evbus: mpsc_ring<T> needs a nothrow move-constructible T; mark T's move "
                  "constructor noexcept or store a pointer");
    static_assert(std::is_nothrow_destructible_v<T>,
                  "evbus: mpsc_ring<T> needs a nothrow destructible T");

public:
    using value_type = T;

    /// Spins (with a CPU pause) before yielding, then yields before blocking, in push() and
    /// wait_for_items(). Small on purpose: a 2-core machine gains nothing from long spins.
    static constexpr int spin_rounds = 64;
    static constexpr int yield_rounds = 16;
    /// A producer warms the slot this many positions ahead of its own (see prefetch_ahead).
    static constexpr std::size_t prefetch_distance = 3;

    /// Creates an empty ring of `capacity` slots. Throws std::invalid_argument naming the
    /// value unless it is a power of two >= 2 whose slots fit in the address space;
    /// std::bad_alloc when memory runs out.
    /// Not thread-safe (construction). O(capacity); the only allocation the ring makes.
    explicit mpsc_ring(std::size_t capacity)
        : mask_(checked_capacity(capacity) - 1), slots_(new slot[capacity]) {
        for (std::size_t i = 0; i < capacity; ++i) {
            // "Published one lap ago" for position i: never equal to i + 1, so the consumer
            // sees every slot as empty. Relaxed: no other thread can see the ring before its
            // constructor returns; handing the ring to other threads (thread start, a mutex)
            // publishes it.
            slots_[i].sequence.store(i - capacity + 1, std::memory_order_relaxed);
        }
    }

    mpsc_ring(const mpsc_ring&) = delete;
    mpsc_ring& operator=(const mpsc_ring&) = delete;

    /// Destroys the values still queued. Not thread-safe: no producer or consumer may run.
    ~mpsc_ring() {
        for (;;) {
            slot& s = slot_at(head_);
            // Relaxed: single-threaded by contract; the caller's join/hand-off ordered every
            // producer's publish before this destructor.
            if (s.sequence.load(std::memory_order_relaxed) != head_ + 1) break;
            s.value()->~T();
            ++head_;
        }
    }

    /// Number of slots. Thread-safe. O(1).
    [[nodiscard]] std::size_t capacity() const noexcept { return mask_ + 1; }

    /// Bytes of one slot: the value plus its sequence, padded to whole cache lines.
    [[nodiscard]] static constexpr std::size_t slot_bytes() noexcept { return sizeof(slot); }

    /// Bytes one ring of `capacity` slots of T occupies (object plus slot array).
    [[nodiscard]] static constexpr std::size_t memory_footprint(std::size_t capacity) noexcept {
        return sizeof(mpsc_ring) + capacity * sizeof(slot);
    }

    /// Moves `v` into the ring; false (and `v` untouched) when the ring is full.
    /// Thread-safe; producers. Lock-free, O(1) apart from CAS retries under contention, never
    /// allocates.
    [[nodiscard]] bool try_push(T&& v) noexcept {
        std::size_t pos = 0;
        if (!claim(pos)) return false;
        slot& s = slot_at(pos);
        ::new (static_cast<void*>(s.storage)) T(std::move(v));
        publish(s, pos);
        return true;
    }

    /// Constructs a T from `args` in a free slot; false when the ring is full (and no T is
    /// constructed). When T's constructor may throw, the value is built before a slot is
    /// claimed (then moved in), so an exception never leaves a claimed slot behind.
    /// Thread-safe; producers. Lock-free; never allocates unless T's constructor does.
    template <class... A>
    [[nodiscard]] bool try_emplace(A&&... args) noexcept(std::is_nothrow_constructible_v<T, A...>) {
        if constexpr (std::is_nothrow_constructible_v<T, A...>) {
            return try_push_with(
                [&](void* storage) noexcept { ::new (storage) T(std::forward<A>(args)...); });
        } else {
            T value(std::forward<A>(args)...);
            return try_push(std::move(value));
        }
    }

    /// Claims a free slot, calls `build(storage)`, which must construct exactly one T at
    /// `storage` and must not throw, and publishes it; false when the ring is full (`build`
    /// is then not called). `build` runs after the claim's seq_cst RMW, so whatever it reads
    /// is ordered after the claim: the engine decides there, against its shutdown flag,
    /// whether the slot gets the event or a "refused" entry.
    /// Thread-safe; producers. Lock-free, never allocates unless `build` does.
    template <class Build>
    [[nodiscard]] bool try_push_with(Build&& build) noexcept {
        static_assert(std::is_nothrow_invocable_v<Build&, void*>,
                      "evbus::mpsc_ring::try_push_with: build(void*) must be noexcept");
        std::size_t pos = 0;
        if (!claim(pos)) return false;
        slot& s = slot_at(pos);
        build(static_cast<void*>(s.storage));
        publish(s, pos);
        return true;
    }

    /// Blocks while the ring is full, without claiming a position, until a try_push may
    /// succeed or `give_up()` returns true; spins, yields, then sleeps like push(). A wake
    /// that leaves the ring full again (another producer took the slot) returns too: the
    /// caller retries its try_push and waits again. `give_up` is checked before every sleep;
    /// whoever makes it true calls wake_producers() afterwards. Thread-safe; producers.
    template <class GiveUp>
    void wait_for_space(const GiveUp& give_up) noexcept {
        const auto has_space = [this] {
            // Relaxed: a stale (lower) tail only reads as "space", and the caller's claim
            // then fails and comes back; the cursor load inside is the ordered one [A1].
            return cursor_free(tail_.load(std::memory_order_relaxed));
        };
        for (int i = 0; i < spin_rounds + yield_rounds; ++i) {
            if (has_space() || give_up()) return;
            if (i < spin_rounds) {
                detail::cpu_relax();
            } else {
                std::this_thread::yield();
            }
        }
        // The handshake of wait_until_free(): [W1] before the re-check, [W3] pairs with [W4].
        producers_waiting_.fetch_add(1, std::memory_order_acq_rel);
        const std::uint32_t epoch = space_epoch_.load(std::memory_order_acquire);
        if (!has_space() && !give_up()) space_epoch_.wait(epoch, std::memory_order_acquire);
        // Relaxed: as in wait_until_free(), a stale count costs one spurious notify.
        producers_waiting_.fetch_sub(1, std::memory_order_relaxed);
    }

    /// Wakes every producer sleeping in push() or wait_for_space() so it looks again (the
    /// caller changed what their `give_up` reads). Thread-safe; one RMW and a futex wake.
    void wake_producers() noexcept {
        // [W5] release: a waiter whose [W3] reads the new epoch also sees what the caller
        // wrote before this call; one that read the old epoch returns from wait() at once or is
        // woken by the notify.
        space_epoch_.fetch_add(1, std::memory_order_release);
        space_epoch_.notify_all();
    }

    /// Positions claimed so far: every push, including those still writing their value.
    /// Thread-safe; relaxed, a statistic that may be stale by the time it returns.
    [[nodiscard]] std::size_t claimed() const noexcept {
        return tail_.load(std::memory_order_relaxed);
    }

    /// Moves `v` into the ring, blocking while it is full. The position is taken at once
    /// (one atomic increment, cheaper than try_push's compare-and-swap); if the consumer has
    /// not yet finished last lap's value in that slot the caller spins, then yields, then
    /// sleeps until it has. Blocked pushers are therefore served in arrival order and a
    /// try_push cannot overtake them. Never returns without having queued `v`, so it waits
    /// forever if the consumer never runs again.
    /// Thread-safe; producers. Lock-free while the ring has room, else blocking; never
    /// allocates.
    void push(T&& v) noexcept {
        // [S1] seq_cst RMW, like the CAS in claim(): the Dekker pair with [S3]/[S4].
        const std::size_t pos = tail_.fetch_add(1, std::memory_order_seq_cst);
        prefetch_ahead(pos);
        if (!slot_free(pos)) wait_until_free(pos);
        slot& s = slot_at(pos);
        ::new (static_cast<void*>(s.storage)) T(std::move(v));
        publish(s, pos);
    }

    /// Moves the oldest value out; nullopt when the ring is empty or the oldest claimed slot
    /// is not yet published. Consumer only. Wait-free, O(1), never allocates.
    [[nodiscard]] std::optional<T> try_pop() noexcept {
        slot& s = slot_at(head_);
        // [A2] pairs with [R1] in publish(): the producer's construction is visible.
        if (s.sequence.load(std::memory_order_acquire) != head_ + 1) return std::nullopt;
        return take_front(s);
    }

    /// Calls `f(T&)` for up to `max_items` ready values in order, destroying each after its
    /// call, then frees the batch's slots at once; returns how many it handed to `f`. An `f`
    /// that returns bool ends the batch early by returning false (the batch so far is freed
    /// before consume() returns). If `f` throws, the value it was given and those before it
    /// are destroyed and freed, and the exception propagates; later values stay queued. `f`
    /// must not use this ring's consumer members. Consumer only. O(n); never allocates.
    template <class F>
    std::size_t consume(F&& f, std::size_t max_items) {
        std::size_t n = 0;
        const batch_release guard{*this, n};
        while (n < max_items) {
            slot& s = slot_at(head_ + n);
            // [A2] pairs with [R1] in publish().
            if (s.sequence.load(std::memory_order_acquire) != head_ + n + 1) break;
            prefetch_rest(s);
            const value_guard destroy{*s.value()};  // also when f throws
            ++n;  // counted before the call, so the batch guard frees it even if f throws
            if constexpr (std::is_same_v<std::invoke_result_t<F&, T&>, bool>) {
                if (!f(*s.value())) break;
            } else {
                f(*s.value());
            }
        }
        return n;
    }

    /// The consumer's idle strategy: spins briefly, then yields, then blocks until a producer
    /// publishes or wake_consumer() is called. Returns true when values may be ready (the
    /// caller then consumes and may get none, e.g. while a producer is mid-push), false when
    /// `stop_flag` is set; the flag is checked before every block, so set it, then call
    /// wake_consumer(). Consumer only. Blocking; never allocates.
    bool wait_for_items(const std::atomic<bool>& stop_flag) {
        return wait_for_items(stop_flag, []() noexcept { detail::cpu_relax(); });
    }

    /// wait_for_items() with the caller's own step between looks: `between()` runs after each
    /// look that found nothing (while spinning it replaces the CPU pause, so it should take
    /// a moment, as a pause does; while yielding it runs after the yield) and after each
    /// wake-up from a block. The caller's last step thus ran at most one look before the
    /// values it then consumes were seen. The engine's worker reads its clock there, so the
    /// start of the next handler call is known before the event arrives instead of costing
    /// a clock read after it. `between` must not throw. Consumer only. Blocking.
    template <class Between>
    bool wait_for_items(const std::atomic<bool>& stop_flag, Between&& between) {
        static_assert(std::is_nothrow_invocable_v<Between&>,
                      "evbus::mpsc_ring::wait_for_items: between() must be noexcept");
        for (int i = 0; i < spin_rounds + yield_rounds; ++i) {
            if (front_ready()) return true;
            // Relaxed: a hint while spinning; the check before blocking below is ordered.
            if (stop_flag.load(std::memory_order_relaxed)) return false;
            if (i >= spin_rounds) std::this_thread::yield();
            between();
        }
        for (;;) {
            // [S3] announce the sleep; seq_cst: the Dekker pair with [S1]/[S2] in
            // try_push(). An RMW, so it also reads wake_consumer()'s exchange if that came
            // first, which then makes the stop flag's store visible below.
            consumer_sleeping_.exchange(1, std::memory_order_seq_cst);
            if (stop_flag.load(std::memory_order_seq_cst)) {
                // Relaxed: only this thread sets the flag to 1; a producer that still sees
                // it costs one needless notify.
                consumer_sleeping_.store(0, std::memory_order_relaxed);
                return false;
            }
            // [S4] seq_cst, the other half of the Dekker pair: any claim ordered before a
            // producer's [S2] that missed our announcement is visible here.
            if (tail_.load(std::memory_order_seq_cst) != head_) {
                consumer_sleeping_.store(0, std::memory_order_relaxed);  // as above
                return true;
            }
            // Acquire pairs with the producer's or wake_consumer()'s exchange to 0.
            consumer_sleeping_.wait(1, std::memory_order_acquire);
            between();
        }
    }

    /// Wakes the consumer if it is blocked in wait_for_items() (used at shutdown, after
    /// setting the stop flag). Thread-safe. O(1); a futex wake only if the consumer sleeps.
    void wake_consumer() noexcept {
        // seq_cst RMW: orders the caller's earlier stop-flag store before the consumer's
        // [S3] exchange when that comes later in this atomic's modification order.
        if (consumer_sleeping_.exchange(0, std::memory_order_seq_cst) != 0) {
            consumer_sleeping_.notify_one();
        }
    }

    /// Number of queued values, racy by nature: a snapshot that may be stale by the time it
    /// returns, clamped to [0, capacity()]. Thread-safe. O(1).
    [[nodiscard]] std::size_t approx_size() const noexcept {
        // Relaxed: a monitoring value with no ordering promise (see above).
        const std::size_t head = head_published_.load(std::memory_order_relaxed);
        const std::size_t tail = tail_.load(std::memory_order_relaxed);
        if (tail <= head) return 0;
        return tail - head < capacity() ? tail - head : capacity();
    }

private:
    struct alignas(cache_line_size) slot {
        std::atomic<std::size_t> sequence{0};
        alignas(T) unsigned char storage[sizeof(T)];

        T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
    };

    // Destroys one consumed value when consume()'s step ends, also by exception.
    struct value_guard {
        explicit value_guard(T& v) noexcept : value(v) {}
        value_guard(const value_guard&) = delete;
        value_guard& operator=(const value_guard&) = delete;
        ~value_guard() { value.~T(); }

        T& value;
    };

    // Frees the batch [head_, head_ + n) when a consume() ends, also by exception.
    struct batch_release {
        batch_release(mpsc_ring& r, const std::size_t& count) noexcept : ring(r), n(count) {}
        batch_release(const batch_release&) = delete;
        batch_release& operator=(const batch_release&) = delete;
        ~batch_release() { ring.release(n); }

        mpsc_ring& ring;
        const std::size_t& n;
    };

    static std::size_t checked_capacity(std::size_t capacity) {
        if (capacity < 2 || (capacity & (capacity - 1)) != 0) {
            throw std::invalid_argument("evbus::mpsc_ring: capacity " + std::to_string(capacity) +
                                        " is not a power of two >= 2");
        }
        // Also keeps positions one lap apart comparable as signed distances (within_lap).
        constexpr std::size_t addressable =
            static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max()) / sizeof(slot);
        if (capacity > addressable) {
            throw std::invalid_argument("evbus::mpsc_ring: capacity " + std::to_string(capacity) +
                                        " slots of " + std::to_string(sizeof(slot)) +
                                        " bytes exceed the address space");
        }
        return capacity;
    }

    slot& slot_at(std::size_t pos) noexcept { return slots_[pos & mask_]; }

    // True when `pos` is within one lap of `head`. Signed: claim() may hold a stale tail below
    // the cursor; it then reads "free" and its CAS fails and reloads.
    bool within_lap(std::size_t pos, std::size_t head) const noexcept {
        return static_cast<std::ptrdiff_t>(pos - head) < static_cast<std::ptrdiff_t>(mask_ + 1);
    }

    // True when the consumer has finished position pos - capacity, so the slot of `pos` may
    // be written: by the producers' copy of the cursor if that suffices, else by the cursor,
    // whose value then refreshes the copy. For a producer about to claim or write.
    bool slot_free(std::size_t pos) noexcept {
        // [A3] pairs with [R3] below (see "Memory ordering"): free by an earlier cursor value
        // is free by the current one.
        const std::size_t cached = cached_head_.load(std::memory_order_acquire);
        if (within_lap(pos, cached)) return true;
        // [A1] pairs with [R2] in release(): last lap's destruction happens before ours.
        const std::size_t head = head_published_.load(std::memory_order_acquire);
        // [R3] release: a producer whose [A3] reads this value also sees what [A1] saw.
        if (head != cached) cached_head_.store(head, std::memory_order_release);
        return within_lap(pos, head);
    }

    // slot_free() by the cursor alone, for producers waiting on a full ring: they look again
    // and again, and refreshing the copy each time the cursor moved would have every waiting
    // producer write the copy's line, which every push reads. The next slot_free() refreshes
    // it once.
    bool cursor_free(std::size_t pos) const noexcept {
        // [A1] pairs with [R2] in release(), as in slot_free().
        return within_lap(pos, head_published_.load(std::memory_order_acquire));
    }

    // Claims the next position for this producer into `pos`; false when the ring is full.
    bool claim(std::size_t& pos) noexcept {
        // Relaxed: only a starting guess; the CAS below validates it.
        pos = tail_.load(std::memory_order_relaxed);
        for (;;) {
            // The cursor only grows, so a slot free now stays free for this position.
            if (!slot_free(pos)) return false;  // full, or a blocked push() owns pos already
            // [S1] seq_cst on success: the Dekker pair with [S3]/[S4] in
            // wait_for_items(). Relaxed on failure: the CAS reloads pos for the next round.
            if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst,
                                            std::memory_order_relaxed)) {
                prefetch_ahead(pos);
                return true;
            }
        }
    }

    // Asks for the cache lines of the slot prefetch_distance positions ahead, for writing.
    // Each claim is a locked RMW, which waits until this producer's earlier stores have
    // reached its cache; without the hint every push therefore waited for the previous
    // slot's lines to come over from the consumer's core. With it they are already on their
    // way. Distance 3 was the best of 2, 3, 4, 8 and 16 on the 2-core VM (docs/benchmarks.md).
    void prefetch_ahead(std::size_t pos) noexcept {
        for_each_line(slot_at(pos + prefetch_distance), 0,
                      [](const void* line) noexcept { detail::prefetch_for_write(line); });
    }

    // Calls `f(line)` for the start of each of the slot's cache lines from line `first` on.
    template <class F>
    static void for_each_line(const slot& s, std::size_t first, F f) noexcept {
        const auto* bytes = reinterpret_cast<const unsigned char*>(&s);
        for (std::size_t b = first * cache_line_size; b < sizeof(slot); b += cache_line_size) {
            f(bytes + b);
        }
    }

    // Asks for the slot's cache lines after the first (the one with the sequence, which the
    // consumer has just read). The producer wrote them before it published, so they are
    // ready in its cache; fetched now, they travel while `f` starts dispatching, instead of
    // one after the other when `f` first touches each (f's first locked RMW, for one, holds
    // back every load after it). Read prefetches: the consumer mostly only reads a slot.
    static void prefetch_rest(const slot& s) noexcept {
        for_each_line(s, 1, [](const void* line) noexcept { __builtin_prefetch(line, 0, 3); });
    }

    // push() owns `pos` but the consumer has not finished last lap's value in its slot yet.
    void wait_until_free(std::size_t pos) noexcept {
        for (int i = 0; i < spin_rounds; ++i) {
            detail::cpu_relax();
            if (cursor_free(pos)) return;
        }
        for (int i = 0; i < yield_rounds; ++i) {
            std::this_thread::yield();
            if (cursor_free(pos)) return;
        }
        for (;;) {
            // [W1] announce; acq_rel so that reading W2's value synchronises with the
            // consumer's cursor store (see "Memory ordering").
            producers_waiting_.fetch_add(1, std::memory_order_acq_rel);
            // [W3] pairs with [W4]: an epoch read after a bump sees the cursor before it.
            const std::uint32_t epoch = space_epoch_.load(std::memory_order_acquire);
            const bool free = cursor_free(pos);
            if (!free) space_epoch_.wait(epoch, std::memory_order_acquire);
            // Relaxed: the counter only decides whether the consumer notifies; a stale
            // (higher) value costs it one spurious notify, never a lost wake-up.
            producers_waiting_.fetch_sub(1, std::memory_order_relaxed);
            if (free) return;
        }
    }

    void publish(slot& s, std::size_t pos) noexcept {
        // [R1] publishes the value; pairs with [A2] in try_pop()/consume().
        s.sequence.store(pos + 1, std::memory_order_release);
        // [S2] seq_cst: the Dekker pair with [S3]/[S4] (see "Memory ordering"). The second
        // check keeps a crowd of producers down to one notify.
        if (consumer_sleeping_.load(std::memory_order_seq_cst) != 0 &&
            consumer_sleeping_.exchange(0, std::memory_order_acq_rel) != 0) {
            // acq_rel: the release half pairs with the consumer's acquire wait.
            consumer_sleeping_.notify_one();
        }
    }

    // Frees [head_, head_ + n), whose values are already destroyed: advances and publishes
    // the cursor, and wakes blocked producers.
    void release(std::size_t n) noexcept {
        if (n == 0) return;
        head_ += n;
        // [R2] frees the batch's slots for the next lap; pairs with [A1] in slot_free() and
        // cursor_free().
        head_published_.store(head_, std::memory_order_release);
        // [W2] acq_rel RMW, the consumer's half of the blocked-producer handshake.
        if (producers_waiting_.fetch_add(0, std::memory_order_acq_rel) != 0) {
            // [W4] release pairs with [W3] in wait_until_free().
            space_epoch_.fetch_add(1, std::memory_order_release);
            space_epoch_.notify_all();
        }
    }

    // Moves the published front value out and frees its slot. One named return value, so
    // the optional is built in place (no second move).
    std::optional<T> take_front(slot& s) noexcept {
        std::optional<T> out(std::in_place, std::move(*s.value()));
        s.value()->~T();
        release(1);
        return out;
    }

    [[nodiscard]] bool front_ready() noexcept {
        // [A2] pairs with [R1] in publish().
        return slot_at(head_).sequence.load(std::memory_order_acquire) == head_ + 1;
    }

    // Read-only after construction: shared by every thread without contention.
    const std::size_t mask_;
    const std::unique_ptr<slot[]> slots_;

    // Producers' claim counter.
    alignas(cache_line_size) std::atomic<std::size_t> tail_{0};

    // Producers' copy of the consumer's cursor (see "Why producers keep a copy of the
    // cursor"). A line of its own: on the claim counter's line, every refresh by one producer
    // took that line from the other producers' claims (2 producers about 12% slower).
    alignas(cache_line_size) std::atomic<std::size_t> cached_head_{0};

    // Written by the consumer only while it goes to sleep; read by every push.
    alignas(cache_line_size) std::atomic<std::uint32_t> consumer_sleeping_{0};

    // The consumer's published cursor: written once per batch, read by every push.
    alignas(cache_line_size) std::atomic<std::size_t> head_published_{0};

    // The consumer's own line; producers touch it only when they are about to block.
    alignas(cache_line_size) std::size_t head_ = 0;
    std::atomic<std::uint32_t> producers_waiting_{0};
    std::atomic<std::uint32_t> space_epoch_{0};
};

}  // namespace evbus
