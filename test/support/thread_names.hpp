// thread_names.hpp — the names of this process's threads (Linux: /proc/self/task/*/comm).
#pragma once

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

namespace test_support {

inline std::multiset<std::string> thread_names() {
    std::multiset<std::string> names;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream in(task.path() / "comm");
        std::string name;
        if (std::getline(in, name)) names.insert(name);
    }
    return names;
}

}  // namespace test_support
