# Unit tests of the server TLS policy (shared/tls.c).
sb_unit_test(test_tls)
