# CTest entry point of "cli: run --config": cmake -DLENS=<path to lens> -P run_config_tests.cmake
# The checks live in run_config_tests.sh (starting a background emulator is a job for a shell).
if(NOT LENS)
  message(FATAL_ERROR "run_config_tests.cmake: pass -DLENS=<path to the lens binary>")
endif()
find_program(BASH_PROGRAM bash REQUIRED)
execute_process(
  COMMAND ${BASH_PROGRAM} ${CMAKE_CURRENT_LIST_DIR}/run_config_tests.sh ${LENS}
  RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "cli: run --config failed (${status}); see the FAIL lines above")
endif()
