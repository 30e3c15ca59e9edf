# Black-box tests of switchboard-xmpp's IM layer (tests/proto/test_xmpp_im.py):
# roster, presence priorities and offline messages, with slixmpp and raw streams
# against a whole tree.
add_test(NAME proto.xmpp_im
         COMMAND ${SB_PYTHON} -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_LIST_DIR}/test_xmpp_im.py)
set_tests_properties(proto.xmpp_im PROPERTIES ENVIRONMENT "SB_BIN=${CMAKE_BINARY_DIR}/bin" TIMEOUT 900)
