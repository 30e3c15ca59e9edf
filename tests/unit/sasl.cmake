# The SASL server state machine (SCRAM with channel binding, PLAIN).
sb_unit_test(test_sasl)
