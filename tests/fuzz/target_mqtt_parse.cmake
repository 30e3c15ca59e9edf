# The MQTT packet codec's fuzz target (named to sort after fuzz.cmake,
# which defines sb_fuzz_target). sb_fuzz_target links only sb_shared.
sb_fuzz_target(mqtt_parse)
target_link_libraries(replay-mqtt_parse PRIVATE sb_mqtt_codec)
if(SB_FUZZ)
  target_link_libraries(fuzz-mqtt_parse PRIVATE sb_mqtt_codec)
endif()
