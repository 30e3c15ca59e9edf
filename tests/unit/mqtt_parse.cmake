# Unit tests of the MQTT packet codec (mqtt/mqtt_parse.c, mqtt/mqtt_encode.c).
sb_unit_test(test_mqtt_parse sb_mqtt_codec)
