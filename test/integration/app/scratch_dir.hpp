// A fresh, empty directory per test under the build tree, removed when the test ends.
#pragma once

#include <atomic>
#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

namespace payments_test {

class scratch_dir {
public:
    explicit scratch_dir(const std::string& name) {
        static std::atomic<int> counter{0};
        // relaxed: the counter only makes names unique; nothing is published through it.
        const int n = counter.fetch_add(1, std::memory_order_relaxed);
        path_ = std::filesystem::path(PAYMENTS_TEST_DIR) /
                (name + "-" + std::to_string(::getpid()) + "-" + std::to_string(n));
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    scratch_dir(const scratch_dir&) = delete;
    scratch_dir& operator=(const scratch_dir&) = delete;
    ~scratch_dir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
    [[nodiscard]] std::string file(const std::string& name) const {
        return (path_ / name).string();
    }

private:
    std::filesystem::path path_;
};

}  // namespace payments_test
