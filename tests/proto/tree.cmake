# Black-box tests of the whole process tree (tests/proto/test_tree.py).
add_test(NAME proto.tree
         COMMAND ${SB_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_tree.py)
set_tests_properties(proto.tree PROPERTIES ENVIRONMENT "SB_BIN=${CMAKE_BINARY_DIR}/bin" TIMEOUT 900)
