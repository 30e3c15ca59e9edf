# switchboard-xmpp, the c2s worker (xmpp_*.c beside the parser library).
# JIDs are a library of their own so that their unit test links them alone.
add_library(sb_xmpp_jid STATIC ${CMAKE_CURRENT_LIST_DIR}/xmpp_jid.c)
target_link_libraries(sb_xmpp_jid PUBLIC sb_flags)

add_executable(switchboard-xmpp
  ${CMAKE_CURRENT_LIST_DIR}/xmpp_main.c
  ${CMAKE_CURRENT_LIST_DIR}/xmpp_proto.c
  ${CMAKE_CURRENT_LIST_DIR}/xmpp_stream.c
  ${CMAKE_CURRENT_LIST_DIR}/xmpp_route.c
  ${CMAKE_CURRENT_LIST_DIR}/xmpp_iq.c
  ${CMAKE_CURRENT_LIST_DIR}/xmpp_roster.c
  ${CMAKE_CURRENT_LIST_DIR}/xmpp_offline.c
  ${CMAKE_CURRENT_LIST_DIR}/xmpp_presence.c)
target_link_libraries(switchboard-xmpp PRIVATE sb_worker sb_xmpp_parse sb_xmpp_jid)
