// evbus/error_sink.hpp — where handler failures go.
//
// A failure record keeps what an operator needs to act: the event (name, id, key), the
// subscription, the error text and the attempt. The sync path records isolated failures here;
// the async and durable paths record every failed attempt here and keep the event itself in
// their dead-letter stores.
//
// dead_letter_list is the default sink: bounded, and when full it drops the oldest record and
// counts the drop, so nothing disappears without a trace in dropped().
//
// Thread-safety: error_sink::on_failure may be called from any thread at once; implementations
// must be thread-safe. dead_letter_list is thread-safe (one mutex).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <evbus/event_id.hpp>
#include <evbus/metadata.hpp>

namespace evbus {

struct failure_record {
    std::string event_name;
    event_id event;
    std::string key;
    std::string subscription;
    std::string error;
    std::uint32_t attempt = 0;
    std::chrono::system_clock::time_point at{};
};

class error_sink {
public:
    virtual ~error_sink() = default;
    /// Records one failure. Must not throw. Thread-safe.
    virtual void on_failure(const failure_record& failure) noexcept = 0;
};

class dead_letter_list final : public error_sink {
public:
    explicit dead_letter_list(std::size_t capacity = 1024);

    void on_failure(const failure_record& failure) noexcept override;

    /// A copy of the records, oldest first. Thread-safe, O(n).
    [[nodiscard]] std::vector<failure_record> records() const;
    /// Records held now. Thread-safe.
    [[nodiscard]] std::size_t size() const;
    /// Records dropped because the list was full (or memory ran out). Thread-safe.
    [[nodiscard]] std::uint64_t dropped() const;
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    void clear();

private:
    const std::size_t capacity_;
    mutable std::mutex mutex_;
    std::deque<failure_record> records_;
    std::uint64_t dropped_ = 0;
};

/// The text of an in-flight exception: what() for std::exception, a fixed text otherwise.
[[nodiscard]] std::string describe_exception(const std::exception_ptr& error);

}  // namespace evbus
