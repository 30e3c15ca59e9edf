# Black-box tests of switchboard-xmpp's presence layer (tests/proto/test_xmpp_presence.py):
# subscriptions, broadcast, probes and unavailable on disconnect, with slixmpp
# against a whole tree.
add_test(NAME proto.xmpp_presence
         COMMAND ${SB_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_xmpp_presence.py)
set_tests_properties(proto.xmpp_presence PROPERTIES ENVIRONMENT "SB_BIN=${CMAKE_BINARY_DIR}/bin" TIMEOUT 900)
