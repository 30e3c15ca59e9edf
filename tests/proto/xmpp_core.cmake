# Black-box tests of switchboard-xmpp's core (tests/proto/test_xmpp_core.py):
# slixmpp and go-sendxmpp against a whole tree, and hostile raw streams.
add_test(NAME proto.xmpp_core
         COMMAND ${SB_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_xmpp_core.py)
set_tests_properties(proto.xmpp_core PROPERTIES ENVIRONMENT "SB_BIN=${CMAKE_BINARY_DIR}/bin" TIMEOUT 900)
