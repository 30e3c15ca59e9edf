# The worker skeleton every worker process links (workers/worker.h): the
# loop, listeners, connections with TLS, and the broker link.
add_library(sb_worker STATIC
  ${CMAKE_CURRENT_LIST_DIR}/worker.c
  ${CMAKE_CURRENT_LIST_DIR}/worker_conn.c
  ${CMAKE_CURRENT_LIST_DIR}/worker_link.c)
target_link_libraries(sb_worker PUBLIC sb_shared PkgConfig::EV PkgConfig::ZMQ PkgConfig::SSL)
