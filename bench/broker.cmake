# bench-broker: stanza throughput of the real switchboard-broker (bench/README.md).
add_executable(bench-broker ${CMAKE_CURRENT_LIST_DIR}/bench_broker.c)
target_link_libraries(bench-broker PRIVATE sb_shared PkgConfig::ZMQ)
# It starts the broker binary that sits next to it.
add_dependencies(bench-broker switchboard-broker)
