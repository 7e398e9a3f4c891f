# Builds and runs test/package/consumer against evbus, the way a user would. Run by ctest:
#   cmake -DMODE=find_package|add_subdirectory -DWORK_DIR=<scratch dir>
#         -DEVBUS_SOURCE_DIR=<source> -DEVBUS_BUILD_DIR=<build tree, find_package only>
#         -DGENERATOR=<generator> -DCXX_COMPILER=<compiler> -DBUILD_TYPE=<config>
#         -P consumer_test.cmake
# find_package: installs the build tree to <WORK_DIR>/prefix (emptied first, so nothing stale
# is found), then configures the consumer with CMAKE_PREFIX_PATH pointing there and insists the
# package came from that prefix. add_subdirectory: the consumer adds the evbus source tree.
cmake_minimum_required(VERSION 3.25)

foreach(var IN ITEMS MODE WORK_DIR EVBUS_SOURCE_DIR GENERATOR CXX_COMPILER)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
        message(FATAL_ERROR "consumer_test.cmake: -D${var}=... is required")
    endif()
endforeach()

function(run_step what)
    execute_process(COMMAND ${ARGN} COMMAND_ECHO STDOUT RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "package test (${MODE}): ${what} failed (${rc})")
    endif()
endfunction()

set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})

set(configure_args
    -S ${CMAKE_CURRENT_LIST_DIR}/consumer -B ${consumer_build} -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(MODE STREQUAL "find_package")
    if(NOT EVBUS_BUILD_DIR)
        message(FATAL_ERROR "consumer_test.cmake: find_package mode needs -DEVBUS_BUILD_DIR=...")
    endif()
    run_step("installing evbus"
        ${CMAKE_COMMAND} --install ${EVBUS_BUILD_DIR} --prefix ${prefix} --config ${BUILD_TYPE})
    list(APPEND configure_args -DCMAKE_PREFIX_PATH=${prefix} -DEVBUS_EXPECTED_PREFIX=${prefix})
elseif(MODE STREQUAL "add_subdirectory")
    list(APPEND configure_args -DEVBUS_SOURCE_DIR=${EVBUS_SOURCE_DIR})
else()
    message(FATAL_ERROR "consumer_test.cmake: MODE must be find_package or add_subdirectory")
endif()

run_step("configuring the consumer" ${CMAKE_COMMAND} ${configure_args})
run_step("building the consumer" ${CMAKE_COMMAND} --build ${consumer_build} --config ${BUILD_TYPE})

find_program(consumer evbus_consumer PATHS ${consumer_build} ${consumer_build}/${BUILD_TYPE}
    NO_DEFAULT_PATH REQUIRED)
run_step("running the consumer" ${consumer} ${WORK_DIR})
