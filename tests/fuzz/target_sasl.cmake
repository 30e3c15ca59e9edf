# The SASL server's fuzz target (named to sort after fuzz.cmake, which
# defines sb_fuzz_target).
sb_fuzz_target(sasl)
