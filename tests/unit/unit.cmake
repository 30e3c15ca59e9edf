# Unit tests of the shared library.
sb_unit_test(test_ipc)
