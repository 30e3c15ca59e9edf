# Black-box tests of the worker skeleton through switchboard-echo
# (tests/proto/test_skeleton.py): the broker and echo workers run by hand.
add_test(NAME proto.skeleton
         COMMAND ${SB_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_skeleton.py)
set_tests_properties(proto.skeleton PROPERTIES ENVIRONMENT "SB_BIN=${CMAKE_BINARY_DIR}/bin" TIMEOUT 300)
