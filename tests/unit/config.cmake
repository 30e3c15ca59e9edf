# Unit tests of the configuration loader; they also load etc/switchboard.yml
# from the source tree.
sb_unit_test(test_config)
target_compile_definitions(test_config PRIVATE SB_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
