# The XMPP stream parser's fuzz target (named to sort after fuzz.cmake,
# which defines sb_fuzz_target). sb_fuzz_target links only sb_shared.
sb_fuzz_target(xmpp_parse)
target_link_libraries(replay-xmpp_parse PRIVATE sb_xmpp_parse)
if(SB_FUZZ)
  target_link_libraries(fuzz-xmpp_parse PRIVATE sb_xmpp_parse)
endif()
