# The broker: its tables as a library (unit-tested on their own) and the
# switchboard-broker process around them (see broker/router.h).
add_library(sb_router STATIC ${CMAKE_CURRENT_LIST_DIR}/router_tables.c)
target_link_libraries(sb_router PUBLIC sb_shared)

add_executable(switchboard-broker
  ${CMAKE_CURRENT_LIST_DIR}/router_main.c
  ${CMAKE_CURRENT_LIST_DIR}/router_link.c
  ${CMAKE_CURRENT_LIST_DIR}/router_dispatch.c)
target_link_libraries(switchboard-broker PRIVATE sb_router sb_shared PkgConfig::ZMQ)
