#include <evbus/error_sink.hpp>

#include <new>
#include <stdexcept>

namespace evbus {

dead_letter_list::dead_letter_list(std::size_t capacity) : capacity_(capacity) {
    if (capacity == 0) throw std::invalid_argument("evbus: dead_letter_list capacity must be > 0");
}

void dead_letter_list::on_failure(const failure_record& failure) noexcept {
    const std::lock_guard lock(mutex_);
    try {
        if (records_.size() == capacity_) {
            records_.pop_front();
            ++dropped_;
        }
        records_.push_back(failure);
    } catch (const std::bad_alloc&) {
        ++dropped_;  // out of memory: the record is lost, but counted
    }
}

std::vector<failure_record> dead_letter_list::records() const {
    const std::lock_guard lock(mutex_);
    return {records_.begin(), records_.end()};
}

std::size_t dead_letter_list::size() const {
    const std::lock_guard lock(mutex_);
    return records_.size();
}

std::uint64_t dead_letter_list::dropped() const {
    const std::lock_guard lock(mutex_);
    return dropped_;
}

void dead_letter_list::clear() {
    const std::lock_guard lock(mutex_);
    records_.clear();
}

std::string describe_exception(const std::exception_ptr& error) {
    if (!error) return "no exception";
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown exception (not derived from std::exception)";
    }
}

}  // namespace evbus
