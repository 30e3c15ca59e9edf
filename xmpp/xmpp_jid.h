/*
 * XMPP addresses (JIDs, RFC 7622): parsing, validation and the
 * normalization the c2s worker applies before an address is compared,
 * stamped on a stanza or handed to the broker.
 *
 * Scope: RFC 7622 structure and lengths (each part 1 to 1023 bytes), valid
 * UTF-8, no control characters anywhere, the localpart's forbidden
 * characters (" & ' / : < > @ and spaces), and lowercase ASCII in the
 * localpart and the domainpart (a trailing dot on the domain is dropped,
 * §3.2). Full PRECIS (UsernameCaseMapped for the localpart, OpaqueString
 * for the resourcepart, IDNA2008 for the domain) is out of scope for this
 * round: non-ASCII characters are kept as sent, so "Ä" and "ä" are two
 * localparts, exactly as the store (store_username_normalize) sees them.
 */
#ifndef SB_XMPP_JID_H
#define SB_XMPP_JID_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 7622 §3.2-§3.4: the most bytes of each part. */
#define XMPP_JID_MAX_PART 1023
/* The longest normalized JID: three parts and the '@' and '/'. */
#define XMPP_JID_MAX (3 * XMPP_JID_MAX_PART + 2)

/* A parsed, normalized JID. str holds "local@domain/resource" (the parts
 * that are present), NUL-terminated; the lengths locate the parts in it. */
struct xmpp_jid {
    char str[XMPP_JID_MAX + 1];
    size_t len;
    size_t local_len; /* 0: no localpart */
    size_t domain_off, domain_len;
    size_t bare_len;     /* "local@domain" or "domain" */
    size_t resource_off; /* 0 with resource_len 0: no resourcepart */
    size_t resource_len;
};

/* Parses and normalizes len bytes (not necessarily NUL-terminated). -1 with
 * *error_r (a static string, for logs) when the address is malformed. */
int xmpp_jid_parse(struct xmpp_jid *jid_r, const char *s, size_t len, const char **error_r);

/* True when the JID has a resourcepart. */
bool xmpp_jid_is_full(const struct xmpp_jid *jid);

/* Checks a resourcepart a client asked to bind (RFC 6120 §7.7, RFC 7622
 * §3.4 without PRECIS): 1 to 1023 bytes of valid UTF-8 without control
 * characters. -1 with *error_r otherwise. */
int xmpp_resource_check(const char *s, size_t len, const char **error_r);

/* Checks and normalizes a localpart as xmpp_jid_parse does (lowercase
 * ASCII), writing it NUL-terminated into out (XMPP_JID_MAX_PART + 1 bytes).
 * Returns its length, or -1 with *error_r. */
int xmpp_localpart_normalize(const char *s, size_t len, char *out, const char **error_r);

/* True when s is valid UTF-8 (no overlongs, no surrogates, at most
 * U+10FFFF) without C0 controls or DEL. */
bool xmpp_text_clean(const char *s, size_t len);

#endif
