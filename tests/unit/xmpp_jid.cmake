# Unit tests of JID parsing and normalization (xmpp/xmpp_jid.c).
sb_unit_test(test_xmpp_jid sb_xmpp_jid)
