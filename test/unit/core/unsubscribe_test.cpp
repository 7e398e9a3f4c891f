#include <evbus/bus.hpp>

#include <atomic>
#include <latch>
#include <optional>
#include <thread>

#include <catch2/catch.hpp>

#include "test_events.hpp"

using namespace evbus_test;
using test_bus = evbus::bus<events>;

TEST_CASE("unsubscribe: a reset handle receives nothing more", "[core][unsubscribe]") {
    test_bus bus;
    int calls = 0;
    auto sub = bus.subscribe("counter", [&calls](const pinged&) { ++calls; });
    (void)bus.emit(pinged{});
    sub.reset();
    CHECK_FALSE(sub.active());
    (void)bus.emit(pinged{});
    CHECK(calls == 1);
}

TEST_CASE("unsubscribe: destroying the handle unsubscribes", "[core][unsubscribe]") {
    test_bus bus;
    int calls = 0;
    {
        auto sub = bus.subscribe("counter", [&calls](const pinged&) { ++calls; });
        (void)bus.emit(pinged{});
    }
    (void)bus.emit(pinged{});
    CHECK(calls == 1);
}

TEST_CASE("unsubscribe: a handler may unsubscribe itself and a later one during emit",
          "[core][unsubscribe]") {
    test_bus bus;
    std::optional<evbus::subscription> self;
    std::optional<evbus::subscription> later;
    int self_calls = 0;
    int later_calls = 0;
    self = bus.subscribe("self", [&](const pinged&) {
        ++self_calls;
        self->reset();   // returns at once: it does not wait for its own caller
        later->reset();  // later has not started: it must not run for this emit
    });
    later = bus.subscribe("later", [&](const pinged&) { ++later_calls; });
    CHECK(bus.emit(pinged{}).handled == 1);
    (void)bus.emit(pinged{});
    CHECK(self_calls == 1);
    CHECK(later_calls == 0);
}

TEST_CASE("unsubscribe: reset waits for a call running on another thread", "[core][unsubscribe]") {
    test_bus bus;
    std::latch entered(1);
    std::atomic<bool> release{false};
    std::atomic<bool> finished{false};
    auto sub = bus.subscribe("slow", [&](const pinged&) {
        entered.count_down();
        while (!release.load()) std::this_thread::yield();
        finished.store(true);
    });
    std::thread emitter([&] { (void)bus.emit(pinged{}); });
    entered.wait();

    std::atomic<bool> reset_returned{false};
    std::thread resetter([&] {
        sub.reset();
        // The handler's last call has returned before reset() does.
        CHECK(finished.load());
        reset_returned.store(true);
    });
    // Give the resetter a chance to (wrongly) return early; it must still be waiting.
    for (int i = 0; i < 1000; ++i) std::this_thread::yield();
    CHECK_FALSE(reset_returned.load());
    release.store(true);
    resetter.join();
    emitter.join();
    CHECK(reset_returned.load());
}

TEST_CASE("unsubscribe: racing emits and resets never call a reset subscription",
          "[core][unsubscribe]") {
    test_bus bus;
    std::atomic<bool> stop{false};
    std::atomic<int> calls_after_reset{0};
    std::thread emitter([&] {
        while (!stop.load()) (void)bus.emit(pinged{});
    });
    for (int round = 0; round < 200; ++round) {
        auto gone = std::make_shared<std::atomic<bool>>(false);
        auto sub = bus.subscribe("racer", [gone, &calls_after_reset](const pinged&) {
            if (gone->load()) calls_after_reset.fetch_add(1);
        });
        for (int i = 0; i < 50; ++i) std::this_thread::yield();
        sub.reset();
        gone->store(true);
    }
    stop.store(true);
    emitter.join();
    CHECK(calls_after_reset.load() == 0);
}

TEST_CASE("unsubscribe: a handle may outlive its bus", "[core][unsubscribe]") {
    evbus::subscription sub;
    {
        test_bus bus;
        sub = bus.subscribe("orphan", [](const pinged&) {});
    }
    sub.reset();
    CHECK_FALSE(sub.active());
}
