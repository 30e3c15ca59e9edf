# Unit tests of the XMPP stream parser and stanza DOM (xmpp/xmpp_parse.c,
# xmpp/xmpp_xml.c).
sb_unit_test(test_xmpp_parse sb_xmpp_parse)
