# The broker's tables and the hash map under them.
sb_unit_test(test_router_tables sb_router)
