/*
 * Unit tests of xmpp/xmpp_jid.c: RFC 7622 structure and lengths, the
 * character rules, ASCII case folding, and the resourcepart check used at
 * bind.
 */
#include "tests/unit/check.h"
#include "xmpp/xmpp_jid.h"

#include <stdlib.h>
#include <string.h>

static void check_jid(const char *in, const char *str, size_t local_len, const char *domain,
                      const char *resource)
{
    struct xmpp_jid j;
    const char *e = NULL;

    CHECK(xmpp_jid_parse(&j, in, strlen(in), &e) == 0);
    if (e != NULL)
        fprintf(stderr, "  %s: %s\n", in, e);
    CHECK_STR(j.str, str);
    CHECK(j.len == strlen(str));
    CHECK(j.local_len == local_len);
    CHECK(j.domain_len == strlen(domain) &&
          memcmp(j.str + j.domain_off, domain, j.domain_len) == 0);
    CHECK(j.bare_len == j.domain_off + j.domain_len);
    CHECK(xmpp_jid_is_full(&j) == (resource != NULL));
    if (resource != NULL)
        CHECK(j.resource_len == strlen(resource) &&
              memcmp(j.str + j.resource_off, resource, j.resource_len) == 0);
}

static void check_bad(const char *in, size_t len)
{
    struct xmpp_jid j;
    const char *e = NULL;

    CHECK(xmpp_jid_parse(&j, in, len, &e) == -1);
    CHECK(e != NULL);
}

static void test_valid(void)
{
    check_jid("example.org", "example.org", 0, "example.org", NULL);
    check_jid("Alice@Example.ORG", "alice@example.org", 5, "example.org", NULL);
    check_jid("alice@example.org/Desk Top", "alice@example.org/Desk Top", 5, "example.org",
              "Desk Top");
    /* The resource starts at the first '/', and may hold '@' and '/'. */
    check_jid("a@b/c@d/e", "a@b/c@d/e", 1, "b", "c@d/e");
    /* '@' after the first '/' belongs to the resource: no localpart. */
    check_jid("example.org/x@y", "example.org/x@y", 0, "example.org", "x@y");
    /* A trailing dot on the domain is dropped (RFC 7622 §3.2). */
    check_jid("bob@example.org.", "bob@example.org", 3, "example.org", NULL);
    check_jid("bob@[::1]/r", "bob@[::1]/r", 3, "[::1]", "r");
    /* Non-ASCII is kept as sent (no PRECIS yet). */
    check_jid("J\xc3\xbcrgen@EXAMPLE.org", "j\xc3\xbcrgen@example.org", 7, "example.org", NULL);
}

static void test_invalid(void)
{
    char big[3 * 1024 + 16];

    check_bad("", 0);
    check_bad("@example.org", 12);
    check_bad("alice@", 6);
    check_bad("alice@example.org/", 18);
    check_bad("a@@example.org", 14);
    check_bad("bo<b@example.org", 16);
    check_bad("bo b@example.org", 16);
    check_bad("bob@exa mple.org", 16);
    check_bad("bob@example..org", 16);
    check_bad("bob@.", 5);
    check_bad("bob@host:5222", 13);
    check_bad("bob@example.org/r\x01", 18);
    check_bad("bob@example.org/\xc3\x28", 18);     /* invalid UTF-8 */
    check_bad("bob@example.org/\xed\xa0\x80", 19); /* a surrogate */
    check_bad("bob@example.org/\xc0\xaf", 18);     /* overlong */
    check_bad("bob@example.org/\xc2\x85", 18);     /* C1 control */
    check_bad("bob\0x@example.org", 17);           /* NUL */

    /* 1023 bytes per part, 3071 in all. */
    memset(big, 'a', 1023);
    strcpy(big + 1023, "@example.org");
    {
        struct xmpp_jid j;
        const char *e;
        CHECK(xmpp_jid_parse(&j, big, strlen(big), &e) == 0);
    }
    memset(big, 'a', 1024);
    strcpy(big + 1024, "@example.org");
    check_bad(big, strlen(big));
    strcpy(big, "a@example.org/");
    memset(big + 14, 'r', 1024);
    big[14 + 1024] = '\0';
    check_bad(big, strlen(big));
    memset(big, 'x', sizeof(big) - 1);
    check_bad(big, sizeof(big) - 1);
}

static void test_resource_and_localpart(void)
{
    char out[XMPP_JID_MAX_PART + 1], big[1100];
    const char *e;

    CHECK(xmpp_resource_check("phone", 5, &e) == 0);
    CHECK(xmpp_resource_check("", 0, &e) == -1);
    CHECK(xmpp_resource_check("a\tb", 3, &e) == -1);
    memset(big, 'r', sizeof(big));
    CHECK(xmpp_resource_check(big, 1023, &e) == 0);
    CHECK(xmpp_resource_check(big, 1024, &e) == -1);
    CHECK(xmpp_localpart_normalize("AliCe", 5, out, &e) == 5);
    CHECK_STR(out, "alice");
    CHECK(xmpp_localpart_normalize("a:b", 3, out, &e) == -1);
    CHECK(xmpp_localpart_normalize("a'b", 3, out, &e) == -1);
    CHECK(xmpp_localpart_normalize("", 0, out, &e) == -1);
    CHECK(xmpp_text_clean("ok \xe2\x82\xac", 6));
    CHECK(!xmpp_text_clean("\x7f", 1));
    CHECK(!xmpp_text_clean("\xf4\x90\x80\x80", 4)); /* beyond U+10FFFF */
    CHECK(!xmpp_text_clean("\xe2\x82", 2));         /* truncated */
}

int main(void)
{
    test_valid();
    test_invalid();
    test_resource_and_localpart();
    return check_result("test_xmpp_jid");
}
