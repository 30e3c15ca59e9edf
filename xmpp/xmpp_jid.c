/*
 * JID parsing and normalization for the c2s worker (see xmpp_jid.h for the
 * scope: RFC 7622 structure, lengths and character rules, ASCII case
 * folding; no PRECIS yet).
 */
#include "xmpp/xmpp_jid.h"

#include <stdint.h>
#include <string.h>

bool xmpp_text_clean(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;

    while (i < len) {
        uint8_t c = p[i];
        uint32_t cp;
        size_t n;

        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        /* Overlongs, surrogates, beyond U+10FFFF; C1 controls too. */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
            return false;
        i += n + 1;
    }
    return true;
}

int xmpp_localpart_normalize(const char *s, size_t len, char *out, const char **error_r)
{
    if (len == 0 || len > XMPP_JID_MAX_PART) {
        *error_r = len == 0 ? "empty localpart" : "localpart longer than 1023 bytes";
        return -1;
    }
    if (!xmpp_text_clean(s, len)) {
        *error_r = "localpart is not clean UTF-8";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        /* RFC 7622 §3.3.1: characters the localpart may not hold. */
        if (strchr("\"&'/:<>@ ", c) != NULL) {
            *error_r = "forbidden character in localpart";
            return -1;
        }
        out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    out[len] = '\0';
    return (int)len;
}

/* The domainpart: a DNS name, an IPv4 address or a bracketed IPv6
 * address (RFC 7622 §3.2). Lowercased; a trailing dot dropped. */
static int domain_normalize(const char *s, size_t len, char *out, size_t *len_r,
                            const char **error_r)
{
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > XMPP_JID_MAX_PART) {
        *error_r = len == 0 ? "empty domainpart" : "domainpart longer than 1023 bytes";
        return -1;
    }
    if (!xmpp_text_clean(s, len)) {
        *error_r = "domainpart is not clean UTF-8";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (strchr("\"&'/<>@ ", c) != NULL || (c == ':' && s[0] != '[')) {
            *error_r = "forbidden character in domainpart";
            return -1;
        }
        if (c == '.' && (i == 0 || s[i - 1] == '.')) {
            *error_r = "empty label in domainpart";
            return -1;
        }
        out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    if (s[0] == '[' && s[len - 1] != ']') {
        *error_r = "bad IPv6 domainpart";
        return -1;
    }
    *len_r = len;
    return 0;
}

int xmpp_resource_check(const char *s, size_t len, const char **error_r)
{
    if (len == 0) {
        *error_r = "empty resourcepart";
        return -1;
    }
    if (len > XMPP_JID_MAX_PART) {
        *error_r = "resourcepart longer than 1023 bytes";
        return -1;
    }
    if (!xmpp_text_clean(s, len)) {
        *error_r = "resourcepart is not clean UTF-8";
        return -1;
    }
    return 0;
}

int xmpp_jid_parse(struct xmpp_jid *jid_r, const char *s, size_t len, const char **error_r)
{
    /* RFC 7622 §3.1: the resourcepart starts at the first '/', and the
     * localpart ends at the first '@' before it. */
    const char *slash = memchr(s, '/', len);
    size_t head = slash != NULL ? (size_t)(slash - s) : len;
    const char *at = memchr(s, '@', head);
    const char *domain = s;
    size_t pos = 0, dlen;

    jid_r->len = jid_r->local_len = jid_r->domain_off = jid_r->domain_len = 0;
    jid_r->bare_len = jid_r->resource_off = jid_r->resource_len = 0;
    jid_r->str[0] = '\0';
    if (len > XMPP_JID_MAX) {
        *error_r = "address too long";
        return -1;
    }
    if (at != NULL) {
        int n = xmpp_localpart_normalize(s, (size_t)(at - s), jid_r->str, error_r);

        if (n < 0)
            return -1;
        jid_r->local_len = (size_t)n;
        jid_r->str[n] = '@';
        pos = (size_t)n + 1;
        domain = at + 1;
    }
    jid_r->domain_off = pos;
    if (domain_normalize(domain, head - (size_t)(domain - s), jid_r->str + pos, &dlen, error_r) < 0)
        return -1;
    jid_r->domain_len = dlen;
    pos += dlen;
    jid_r->bare_len = pos;
    if (slash != NULL) {
        size_t rlen = len - head - 1;

        if (xmpp_resource_check(slash + 1, rlen, error_r) < 0)
            return -1;
        jid_r->str[pos++] = '/';
        jid_r->resource_off = pos;
        jid_r->resource_len = rlen;
        memcpy(jid_r->str + pos, slash + 1, rlen);
        pos += rlen;
    }
    jid_r->str[pos] = '\0';
    jid_r->len = pos;
    return 0;
}

bool xmpp_jid_is_full(const struct xmpp_jid *jid)
{
    return jid->resource_len > 0;
}
