# Runs the README's example (-DEXAMPLE=<program>) and passes when it exits with 0 and its
# output ends with the line -DEXPECTED=<text>. A PASS_REGULAR_EXPRESSION alone would ignore
# the exit status.
execute_process(COMMAND ${EXAMPLE} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "the README's example exited with '${rc}'; it printed:\n${out}${err}")
endif()
string(FIND "${out}" "${EXPECTED}\n" at REVERSE)
string(LENGTH "${out}" out_length)
string(LENGTH "${EXPECTED}\n" expected_length)
math(EXPR end "${at} + ${expected_length}")
if(at EQUAL -1 OR NOT end EQUAL out_length)
    message(FATAL_ERROR "the README's example should end with the line '${EXPECTED}'; "
                        "it printed:\n${out}${err}")
endif()
message(STATUS "the README's example exited with 0 and printed:\n${out}")
