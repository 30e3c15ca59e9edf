# Unit tests of the supervisor's restart policy.
sb_unit_test(test_sup_policy sb_sup_policy)
