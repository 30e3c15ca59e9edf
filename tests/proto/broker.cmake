# Black-box tests of switchboard-broker alone (tests/proto/test_broker.py).
add_test(NAME proto.broker
         COMMAND ${SB_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_SOURCE_DIR}/tests/proto/test_broker.py)
set_tests_properties(proto.broker PROPERTIES ENVIRONMENT "SB_BIN=${CMAKE_BINARY_DIR}/bin" TIMEOUT 300)
