# Warning flags for code built in this tree. Linked as $<BUILD_INTERFACE:evbus_warnings>,
# so none of it leaks into an installed target; -Werror comes only from presets
# (CMAKE_COMPILE_WARNING_AS_ERROR).
add_library(evbus_warnings INTERFACE)
target_compile_options(evbus_warnings INTERFACE
    -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual
    -Wcast-align -Wnull-dereference -Wformat=2 -Wimplicit-fallthrough
    -Wmissing-declarations)
