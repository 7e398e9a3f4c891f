#include <evbus/event_id.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

TEST_CASE("event_id: generated ids are UUIDv7 with the RFC 9562 variant", "[core][event_id]") {
    const auto id = evbus::event_id::generate();
    const auto text = id.to_string();
    REQUIRE(text.size() == 36);
    CHECK(text[14] == '7');
    CHECK((text[19] == '8' || text[19] == '9' || text[19] == 'a' || text[19] == 'b'));
    CHECK_FALSE(id.is_nil());
}

TEST_CASE("event_id: text form round-trips through parse", "[core][event_id]") {
    const auto id = evbus::event_id::generate();
    const auto back = evbus::event_id::parse(id.to_string());
    REQUIRE(back.has_value());
    CHECK(*back == id);
    CHECK(evbus::event_id::parse("0190a3b2-7c1d-7abc-8def-0123456789AB").has_value());
    CHECK_FALSE(evbus::event_id::parse("not-a-uuid").has_value());
    CHECK_FALSE(evbus::event_id::parse("0190a3b2x7c1d-7abc-8def-0123456789ab").has_value());
    CHECK_FALSE(evbus::event_id::parse("0190a3b2-7c1d-7abc-8def-0123456789ag").has_value());
}

TEST_CASE("event_id: ids from one thread strictly increase", "[core][event_id]") {
    evbus::event_id last = evbus::event_id::generate();
    for (int i = 0; i < 100000; ++i) {
        const auto next = evbus::event_id::generate();
        REQUIRE(last < next);
        last = next;
    }
}

TEST_CASE("event_id: ids from several threads are unique", "[core][event_id]") {
    constexpr int threads = 4;
    constexpr int per_thread = 20000;
    std::vector<std::vector<evbus::event_id>> made(threads);
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&made, t] {
            for (int i = 0; i < per_thread; ++i) made[t].push_back(evbus::event_id::generate());
        });
    }
    for (auto& w : workers) w.join();
    std::set<evbus::event_id> all;
    for (const auto& ids : made) all.insert(ids.begin(), ids.end());
    CHECK(all.size() == static_cast<std::size_t>(threads * per_thread));
}

TEST_CASE("event_id: the timestamp is the current Unix time in milliseconds", "[core][event_id]") {
    const auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    const auto id = evbus::event_id::generate();
    const auto after = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    CHECK(id.unix_ms() >= static_cast<std::uint64_t>(before));
    CHECK(id.unix_ms() <= static_cast<std::uint64_t>(after) + 1);
}

TEST_CASE("event_id: a time before 1970 is stored as 0 and does not hold later ids back",
          "[core][event_id]") {
    using namespace std::chrono;
    std::uint64_t early = 1;
    std::uint64_t later = 0;
    std::int64_t before = 0;
    std::thread([&] {  // a thread of its own: a fresh generator
        early = evbus::event_id::generate(system_clock::time_point(-hours(24))).unix_ms();
        before = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
        later = evbus::event_id::generate().unix_ms();
    })
        .join();
    CHECK(early == 0);
    CHECK(later >= static_cast<std::uint64_t>(before));
    CHECK(later <= static_cast<std::uint64_t>(before) + 60'000);  // generous: a busy machine
}

TEST_CASE("event_id: a forked child does not repeat its parent's ids", "[core][event_id]") {
    (void)evbus::event_id::generate();  // this thread's generator exists before the fork
    std::array<int, 2> pipe_ends{};
    REQUIRE(::pipe(pipe_ends.data()) == 0);
    const ::pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // The child writes the 36 characters of its next id and leaves without unwinding.
        const auto text = evbus::event_id::generate().to_chars();
        const bool sent =
            ::write(pipe_ends[1], text.data(), text.size()) == static_cast<::ssize_t>(text.size());
        ::_exit(sent ? 0 : 1);
    }
    ::close(pipe_ends[1]);
    const auto mine = evbus::event_id::generate().to_string();
    std::string theirs(36, '\0');
    std::size_t got = 0;
    while (got < theirs.size()) {
        const ::ssize_t n = ::read(pipe_ends[0], theirs.data() + got, theirs.size() - got);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    ::close(pipe_ends[0]);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    REQUIRE(got == theirs.size());
    CHECK(theirs != mine);
}
