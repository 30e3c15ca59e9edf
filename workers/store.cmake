# switchboard-store: the only process with database access. sb_store is the
# request layer and both backends (SQLite, MySQL/MariaDB through MariaDB
# Connector/C), linked by the store process and by tests/unit/test_store.c.
add_library(sb_store STATIC
  ${CMAKE_CURRENT_SOURCE_DIR}/store_ops.c
  ${CMAKE_CURRENT_SOURCE_DIR}/store_sqlite.c
  ${CMAKE_CURRENT_SOURCE_DIR}/store_mysql.c)
target_link_libraries(sb_store PUBLIC sb_shared PkgConfig::SQLITE PkgConfig::MARIADB)

add_executable(switchboard-store ${CMAKE_CURRENT_SOURCE_DIR}/store_main.c)
target_link_libraries(switchboard-store PRIVATE sb_store sb_worker)
