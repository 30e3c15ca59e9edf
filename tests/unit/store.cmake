# The SCRAM/HA1 derivations, and the storage test suite, run against both
# backends: SQLite in a scratch directory, and MariaDB against a private
# mariadbd that the "mariadb" fixture starts and stops (tests/mariadb.sh).
sb_unit_test(test_auth)

add_executable(test_store ${CMAKE_SOURCE_DIR}/tests/unit/test_store.c)
target_link_libraries(test_store PRIVATE sb_store sb_shared PkgConfig::SQLITE PkgConfig::MARIADB)

set(SB_STORE_TEST_DIR ${CMAKE_BINARY_DIR}/test-store)
file(MAKE_DIRECTORY ${SB_STORE_TEST_DIR})
add_test(NAME unit.store.sqlite COMMAND test_store)
set_tests_properties(unit.store.sqlite PROPERTIES
  ENVIRONMENT "SB_STORE_BACKEND=sqlite;SB_TEST_DIR=${SB_STORE_TEST_DIR}")

# The server's directory: datadir, socket, pid file and error log. It stays
# between runs (an initialized datadir is reused); the test empties the
# database it uses.
set(SB_MARIADB_DIR ${CMAKE_BINARY_DIR}/mariadb)
add_test(NAME fixture.mariadb.start COMMAND ${CMAKE_SOURCE_DIR}/tests/mariadb.sh start ${SB_MARIADB_DIR})
add_test(NAME fixture.mariadb.stop COMMAND ${CMAKE_SOURCE_DIR}/tests/mariadb.sh stop ${SB_MARIADB_DIR})
set_tests_properties(fixture.mariadb.start PROPERTIES FIXTURES_SETUP mariadb TIMEOUT 120)
set_tests_properties(fixture.mariadb.stop PROPERTIES FIXTURES_CLEANUP mariadb TIMEOUT 120)
add_test(NAME unit.store.mariadb COMMAND test_store)
set_tests_properties(unit.store.mariadb PROPERTIES
  FIXTURES_REQUIRED mariadb
  ENVIRONMENT "SB_STORE_BACKEND=mysql;SB_MYSQL_SOCKET=${SB_MARIADB_DIR}/mysql.sock;SB_TEST_DIR=${SB_STORE_TEST_DIR}")
