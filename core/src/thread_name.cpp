#include <evbus/detail/thread_name.hpp>

#include <cstring>

#if defined(__linux__)
#include <pthread.h>
#endif

namespace evbus::detail {

void name_this_thread(const char* name) noexcept {
#if defined(__linux__)
    char cut[16] = {};  // the kernel's limit, the terminating zero included
    std::strncpy(cut, name, sizeof cut - 1);
    (void)pthread_setname_np(pthread_self(), cut);
#else
    (void)name;
#endif
}

}  // namespace evbus::detail
