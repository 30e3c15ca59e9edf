# The supervisor (switchboard), its restart policy as a library of pure
# functions (sb_sup_policy, unit-tested by tests/unit/test_sup_policy.c),
# and the control tool (switchboardctl).
add_library(sb_sup_policy STATIC ${CMAKE_CURRENT_SOURCE_DIR}/sup_policy.c)
target_link_libraries(sb_sup_policy PUBLIC sb_flags)

add_executable(switchboard ${CMAKE_CURRENT_SOURCE_DIR}/sup_main.c
                           ${CMAKE_CURRENT_SOURCE_DIR}/sup_control.c)
target_link_libraries(switchboard PRIVATE sb_sup_policy sb_shared PkgConfig::EV)

add_executable(switchboardctl ${CMAKE_CURRENT_SOURCE_DIR}/ctl_main.c)
target_link_libraries(switchboardctl PRIVATE sb_shared PkgConfig::ZMQ)
