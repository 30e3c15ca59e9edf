# Black-box tests of the supervisor alone, with fake workers (tests/proto/test_supervisor.py).
add_test(NAME proto.supervisor
         COMMAND ${SB_PYTHON} -m pytest -q -p no:cacheprovider
                 ${CMAKE_CURRENT_LIST_DIR}/test_supervisor.py)
set_tests_properties(proto.supervisor PROPERTIES
                     ENVIRONMENT "SB_BIN=${CMAKE_BINARY_DIR}/bin" TIMEOUT 600)
