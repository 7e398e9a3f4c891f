# evbus_outbox (evbus::outbox): the durable path — stores, unit of work, codec, dispatcher.
#
# A library of its own rather than more sources in evbus_core, so that an application using
# only the in-process bus links no database: evbus::core keeps Threads as its only dependency.
# SQLite is linked PRIVATE (sqlite3.h appears in no public header); the codec's public macro
# builds on nlohmann-json, so that one is PUBLIC. Both are found again by evbusConfig.cmake.
find_package(SQLite3 REQUIRED)
find_package(nlohmann_json 3.10 CONFIG REQUIRED)

add_library(evbus_outbox STATIC
    src/outbox/commit_signal.cpp
    src/outbox/forwarding_store.cpp
    src/outbox/memory_store.cpp
    src/outbox/sql.cpp
    src/outbox/sqlite_store.cpp
)
add_library(evbus::outbox ALIAS evbus_outbox)
set_target_properties(evbus_outbox PROPERTIES EXPORT_NAME outbox OUTPUT_NAME evbus_outbox)
target_compile_features(evbus_outbox PUBLIC cxx_std_20)
target_link_libraries(evbus_outbox
    PUBLIC evbus_core nlohmann_json::nlohmann_json
    PRIVATE SQLite::SQLite3 $<BUILD_INTERFACE:evbus_warnings>)

install(TARGETS evbus_outbox EXPORT evbus-targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
