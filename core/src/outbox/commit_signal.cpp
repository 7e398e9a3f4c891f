#include <evbus/store.hpp>

#include <evbus/detail/deadline.hpp>

namespace evbus {

void commit_signal::notify() noexcept {
    {
        const std::lock_guard lock(mutex_);
        ++generation_;
    }
    changed_.notify_all();
}

std::uint64_t commit_signal::generation() const noexcept {
    const std::lock_guard lock(mutex_);
    return generation_;
}

std::uint64_t commit_signal::wait(std::uint64_t seen, std::chrono::nanoseconds timeout) const {
    std::unique_lock lock(mutex_);
    changed_.wait_until(lock, detail::deadline_in(timeout), [&] { return generation_ != seen; });
    return generation_;
}

}  // namespace evbus
