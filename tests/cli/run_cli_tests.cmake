message(STATUS "cli tests")
