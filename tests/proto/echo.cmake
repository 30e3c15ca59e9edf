# switchboard-echo: the line-based test worker on the skeleton
# (tests/proto/echo_worker.c), installed by the tests under protocol names.
add_executable(switchboard-echo ${CMAKE_CURRENT_LIST_DIR}/echo_worker.c)
target_link_libraries(switchboard-echo PRIVATE sb_worker)
