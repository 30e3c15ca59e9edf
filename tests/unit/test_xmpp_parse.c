/*
 * Unit tests of the XMPP stream parser (xmpp/xmpp_parse.c) and the stanza
 * DOM and serializer (xmpp/xmpp_xml.c): a session fed whole, a byte at a
 * time and in random splits with the same result; entities, namespaces,
 * close, restarts; every hostile input RFC 6120 names (restricted XML, bad
 * encodings, namespace errors, oversized and over-deep stanzas) with the
 * stream error it must produce; bounded memory and linear work on trickled
 * input; the DOM helpers and round trips through the serializer.
 */
#include "xmpp/xmpp_parse.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STREAM_HEADER                                                                              \
    "<stream:stream to='example.org' xmlns='jabber:client' "                                       \
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"

/* What a parser reported, as text, plus a few counters. */
struct rec {
    struct xmpp_parser *p;
    struct xmpp_buf log;
    int opens, stanzas, closes, errors;
    enum xmpp_stream_error condition;
    /* Behaviour on a stanza with this name: reset, stop or detach it. */
    const char *reset_on, *stop_on, *detach_on;
    struct xmpp_element *detached[4];
    int n_detached;
};

static void rec_open(void *ctx, const struct xmpp_stream_header *h)
{
    struct rec *r = ctx;
    const char *fields[] = {h->to, h->from, h->id, h->version, h->lang};

    r->opens++;
    xmpp_buf_append_str(&r->log, "open");
    for (size_t i = 0; i < 5; i++) {
        xmpp_buf_append_str(&r->log, " ");
        xmpp_buf_append_str(&r->log, fields[i] != NULL ? fields[i] : "-");
    }
    xmpp_buf_append_str(&r->log, "\n");
}

static void rec_stanza(void *ctx, struct xmpp_element *e)
{
    struct rec *r = ctx;
    const struct xmpp_stream_header *h = xmpp_parser_header(r->p);

    r->stanzas++;
    xmpp_buf_append_str(&r->log, "stanza ");
    xmpp_element_serialize(e, h != NULL && h->content_ns != NULL ? h->content_ns : NULL, &r->log);
    xmpp_buf_append_str(&r->log, "\n");
    if (r->reset_on != NULL && strcmp(e->name, r->reset_on) == 0)
        xmpp_parser_reset(r->p);
    if (r->stop_on != NULL && strcmp(e->name, r->stop_on) == 0)
        xmpp_parser_stop(r->p);
    if (r->detach_on != NULL && strcmp(e->name, r->detach_on) == 0 && r->n_detached < 4)
        r->detached[r->n_detached++] = xmpp_parser_detach(r->p, e);
}

static void rec_close(void *ctx)
{
    struct rec *r = ctx;

    r->closes++;
    xmpp_buf_append_str(&r->log, "close\n");
}

static void rec_error(void *ctx, enum xmpp_stream_error condition, const char *text)
{
    struct rec *r = ctx;

    r->errors++;
    r->condition = condition;
    CHECK(text != NULL && text[0] != '\0');
    xmpp_buf_append_str(&r->log, "error ");
    xmpp_buf_append_str(&r->log, xmpp_stream_error_name(condition));
    xmpp_buf_append_str(&r->log, "\n");
}

static const struct xmpp_parse_events rec_events = {rec_open, rec_stanza, rec_close, rec_error};

static void rec_init(struct rec *r, const char *content_ns, const struct xmpp_parser_limits *l)
{
    memset(r, 0, sizeof(*r));
    r->p = xmpp_parser_new(content_ns, l);
    CHECK(r->p != NULL);
    xmpp_buf_init(&r->log, 0);
}

static void rec_free(struct rec *r)
{
    xmpp_parser_free(&r->p);
    xmpp_buf_free(&r->log);
    for (int i = 0; i < r->n_detached; i++)
        xmpp_element_free(&r->detached[i]);
}

static ssize_t feed(struct rec *r, const void *data, size_t len)
{
    return xmpp_parser_feed(r->p, data, len, &rec_events, r);
}

static ssize_t feed_str(struct rec *r, const char *s)
{
    return feed(r, s, strlen(s));
}

/* Feeds all of data in pieces: 0 = whole, 1 = a byte at a time, else
 * random sizes from that seed. Stops at the first error. */
static ssize_t feed_split(struct rec *r, const char *data, size_t len, unsigned mode)
{
    unsigned long long state = mode;
    size_t off = 0;

    if (mode == 0)
        return feed(r, data, len);
    while (off < len) {
        size_t n = 1;
        if (mode > 1) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            n = 1 + (size_t)((state >> 33) % 97);
        }
        if (n > len - off)
            n = len - off;
        if (feed(r, data + off, n) < 0)
            return -1;
        off += n;
    }
    return (ssize_t)len;
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A stream with every kind of first-level element a c2s session sees. */
static const char session[] =
    "<?xml version='1.0' encoding='UTF-8'?>" STREAM_HEADER "\n"
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldAByMG0zMA==</auth>\n"
    "  <iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    "<resource>balcony</resource></bind></iq>\r\n"
    "<message to='romeo@example.net' type=\"chat\" id='m&amp;1' xml:lang='en'>"
    "<body>Art thou &lt;not&gt; Romeo &amp; a Montague? &#x263A;&#9731; \xE2\x82\xAC</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    "<presence><show>away</show><status>&quot;brb&apos;</status><priority>5</priority></presence>"
    "<enable xmlns='urn:xmpp:sm:3' resume='true'/><r xmlns='urn:xmpp:sm:3'/>"
    "<a xmlns='urn:xmpp:sm:3' h='3'/>"
    "</stream:stream>";

static const char session_log[] =
    "open example.org - - 1.0 en\n"
    "stanza <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n"
    "stanza <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
    "mechanism='PLAIN'>AGp1bGlldAByMG0zMA==</auth>\n"
    "stanza <iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    "<resource>balcony</resource></bind></iq>\n"
    "stanza <message to='romeo@example.net' type='chat' id='m&amp;1' xml:lang='en'>"
    "<body>Art thou &lt;not&gt; Romeo &amp; a Montague? \xE2\x98\xBA\xE2\x98\x83 "
    "\xE2\x82\xAC</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>\n"
    "stanza <presence><show>away</show><status>\"brb'</status><priority>5</priority></presence>\n"
    "stanza <enable xmlns='urn:xmpp:sm:3' resume='true'/>\n"
    "stanza <r xmlns='urn:xmpp:sm:3'/>\n"
    "stanza <a xmlns='urn:xmpp:sm:3' h='3'/>\n"
    "close\n";

static void test_session_any_split(void)
{
    static const unsigned modes[] = {0, 1, 2, 3, 7, 42, 1234, 99999};

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        struct rec r;
        rec_init(&r, NULL, NULL);
        CHECK(feed_split(&r, session, sizeof(session) - 1, modes[i]) ==
              (ssize_t)(sizeof(session) - 1));
        CHECK_STR(r.log.data, session_log);
        CHECK(r.opens == 1 && r.stanzas == 8 && r.closes == 1 && r.errors == 0);
        CHECK(xmpp_parser_closed(r.p));
        CHECK(xmpp_parser_error(r.p, NULL) == XMPP_STREAM_ERR_NONE);
        /* Whatever follows the close is ignored. */
        CHECK(feed_str(&r, "<message>junk") == 13);
        CHECK(r.stanzas == 8 && r.errors == 0);
        rec_free(&r);
    }
}

/* Reads the tree of a stanza: entities, attributes, namespaces, text. */
static void check_message_tree(void *ctx, struct xmpp_element *e)
{
    int *seen = ctx;
    struct xmpp_element *body, *x, *c;
    size_t len;

    (*seen)++;
    CHECK(xmpp_element_is(e, "message", XMPP_NS_CLIENT));
    CHECK_STR(xmpp_element_attr(e, "id"), "a&<>\"'A\xE2\x98\xBA");
    CHECK_STR(xmpp_element_attr(e, "to"), "juliet@example.com");
    CHECK(xmpp_element_attr(e, "lang") == NULL);
    CHECK_STR(xmpp_element_attr_ns(e, XMPP_NS_XML, "lang"), "de");
    CHECK(xmpp_element_attr(e, "missing") == NULL);

    body = xmpp_element_child(e, "body", NULL);
    CHECK(body != NULL && strcmp(body->ns, XMPP_NS_CLIENT) == 0);
    CHECK_STR(xmpp_element_text(body, &len), "x < y & \"z\" \xF0\x9F\x98\x80 <raw> & ]]");
    CHECK(len == strlen("x < y & \"z\" \xF0\x9F\x98\x80 <raw> & ]]"));
    /* A prefixed element is in its namespace, prefix forgotten. */
    x = xmpp_element_child(e, "x", "urn:x");
    CHECK(x != NULL);
    CHECK(xmpp_element_child(e, "x", NULL) == NULL);
    CHECK_STR(xmpp_element_attr_ns(x, "urn:p", "a"), "1");
    CHECK_STR(xmpp_element_attr(x, "b"), "2");
    /* Children: <y/> in urn:x inherited, <z/> in no namespace, mixed text. */
    c = xmpp_element_first_child(x);
    CHECK(c != NULL && xmpp_element_is(c, "y", "urn:x"));
    c = c != NULL ? xmpp_element_next_sibling(c) : NULL;
    CHECK(c != NULL && xmpp_element_is(c, "z", NULL) && c->ns[0] == '\0');
    CHECK(c != NULL && xmpp_element_next_sibling(c) == NULL);
    CHECK_STR(xmpp_element_text(x, NULL), "onetwothree");
    CHECK_STR(xmpp_element_text(xmpp_element_first_child(x), NULL), "");
}

static void test_tree(void)
{
    static const char stanza[] =
        "<message to='juliet@example.com' id='a&amp;&lt;&gt;&quot;&apos;&#65;&#x263a;' "
        "xml:lang='de'>"
        "<body>x &lt; y &amp; \"z\" &#x1F600; <![CDATA[<raw> & ]]]]></body>"
        "<p:x xmlns:p='urn:x' xmlns:q='urn:p' q:a='1' b='2'>one<p:y/>two<z xmlns=''/>three</p:x>"
        "</message>";
    struct xmpp_parse_events ev = {.stanza = check_message_tree};
    struct xmpp_parser *p = xmpp_parser_new(NULL, NULL);
    int seen = 0;

    CHECK(xmpp_parser_feed(p, (const uint8_t *)STREAM_HEADER, strlen(STREAM_HEADER), &ev, &seen) ==
          (ssize_t)strlen(STREAM_HEADER));
    CHECK(xmpp_parser_feed(p, (const uint8_t *)stanza, strlen(stanza), &ev, &seen) ==
          (ssize_t)strlen(stanza));
    CHECK(seen == 1);
    xmpp_parser_free(&p);
    CHECK(p == NULL);
}

/* Feeds a stream header then bad, and expects the stream to fail with
 * condition, the error reported once, and no stanza delivered. */
static void expect_error(const char *what, const char *header, const char *bad, size_t bad_len,
                         enum xmpp_stream_error condition)
{
    for (unsigned mode = 0; mode < 3; mode++) {
        struct rec r;
        ssize_t n = 0;

        rec_init(&r, NULL, NULL);
        if (header != NULL)
            n = feed_split(&r, header, strlen(header), mode);
        if (n >= 0)
            n = feed_split(&r, bad, bad_len, mode);
        if (n != -1 || r.condition != condition || r.errors != 1 || r.stanzas != 0) {
            fprintf(stderr, "%s (mode %u): got %zd, errors %d, stanzas %d, %s (%s)\n", what, mode,
                    n, r.errors, r.stanzas, xmpp_stream_error_name(r.condition),
                    r.log.data ? r.log.data : "");
        }
        CHECK(n == -1);
        CHECK(r.errors == 1);
        CHECK(r.condition == condition);
        CHECK(r.stanzas == 0);
        CHECK(xmpp_parser_error(r.p, NULL) == condition);
        /* Refused until reset, and reported once. */
        CHECK(feed_str(&r, " ") == -1);
        CHECK(r.errors == 1);
        rec_free(&r);
    }
}

static void expect_error_str(const char *what, const char *header, const char *bad,
                             enum xmpp_stream_error condition)
{
    expect_error(what, header, bad, strlen(bad), condition);
}

static void test_restricted_xml(void)
{
    expect_error_str(
        "billion laughs", NULL,
        "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
        "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
        "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>]>" STREAM_HEADER
        "<message><body>&lol3;</body></message>",
        XMPP_STREAM_ERR_RESTRICTED_XML);
    expect_error_str("external DOCTYPE", NULL,
                     "<!DOCTYPE stream SYSTEM 'file:///etc/passwd'>" STREAM_HEADER,
                     XMPP_STREAM_ERR_RESTRICTED_XML);
    expect_error_str("DOCTYPE mid-stream", STREAM_HEADER, "<!DOCTYPE x []>",
                     XMPP_STREAM_ERR_NOT_WELL_FORMED);
    expect_error_str("comment in stanza", STREAM_HEADER, "<message><!-- hello --><body/></message>",
                     XMPP_STREAM_ERR_RESTRICTED_XML);
    expect_error_str("comment between stanzas", STREAM_HEADER, "<!-- hello -->",
                     XMPP_STREAM_ERR_RESTRICTED_XML);
    expect_error_str("comment in prolog", NULL, "<?xml version='1.0'?><!-- x -->" STREAM_HEADER,
                     XMPP_STREAM_ERR_RESTRICTED_XML);
    expect_error_str("PI in stanza", STREAM_HEADER, "<message><?php echo 1; ?></message>",
                     XMPP_STREAM_ERR_RESTRICTED_XML);
    expect_error_str("PI in prolog", NULL, "<?xml version='1.0'?><?foo bar?>" STREAM_HEADER,
                     XMPP_STREAM_ERR_RESTRICTED_XML);
    expect_error_str("XML declaration mid-stream", STREAM_HEADER, "<?xml version='1.0'?>",
                     XMPP_STREAM_ERR_RESTRICTED_XML);
    expect_error_str("undefined entity", STREAM_HEADER, "<message><body>&nbsp;</body></message>",
                     XMPP_STREAM_ERR_RESTRICTED_XML);
    expect_error_str("undefined entity in attribute", STREAM_HEADER, "<message to='&foo;'/>",
                     XMPP_STREAM_ERR_RESTRICTED_XML);
}

static void test_not_well_formed(void)
{
    static const struct {
        const char *what;
        const char *bytes;
    } cases[] = {
        {"overlong slash", "<message><body>\xC0\xAF</body></message>"},
        {"overlong 3 bytes", "<message><body>\xE0\x80\xAF</body></message>"},
        {"surrogate", "<message><body>\xED\xA0\x80</body></message>"},
        {"0xFF", "<message><body>\xFF</body></message>"},
        {"0xFE in attribute", "<message to='\xFE'/>"},
        {"above U+10FFFF", "<message><body>\xF4\x90\x80\x80</body></message>"},
        {"lone continuation", "<message><body>\x80</body></message>"},
        {"truncated sequence", "<message><body>\xE2\x82</body></message>"},
        {"U+FFFE", "<message><body>\xEF\xBF\xBE</body></message>"},
        {"control character", "<message><body>\x01</body></message>"},
        {"escape character", "<message><body>a\x1B[31m</body></message>"},
        {"control character reference", "<message><body>&#1;</body></message>"},
        {"NUL reference", "<message><body>&#0;</body></message>"},
        {"surrogate reference", "<message><body>&#xD800;</body></message>"},
        {"undeclared prefix", "<message><foo:body>What is this foo?</foo:body></message>"},
        {"undeclared attribute prefix", "<message foo:bar='1'/>"},
        {"mismatched tags", "<message><body></message></body>"},
        {"duplicate attribute", "<message to='a' to='b'/>"},
        {"duplicate namespaced attribute",
         "<message xmlns:a='urn:x' xmlns:b='urn:x' a:t='1' b:t='2'/>"},
        {"unquoted attribute", "<message to=a/>"},
        {"lt in attribute", "<message to='<'/>"},
        {"bare ampersand", "<message><body>a & b</body></message>"},
        {"]]> in text", "<message><body>]]></body></message>"},
        {"xmlns prefix undeclared", "<message xmlns:p=''/>"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error_str(cases[i].what, STREAM_HEADER, cases[i].bytes,
                         XMPP_STREAM_ERR_NOT_WELL_FORMED);
    /* A NUL byte cannot go through a C string. */
    expect_error("NUL byte", STREAM_HEADER, "<message>\0</message>", 20,
                 XMPP_STREAM_ERR_NOT_WELL_FORMED);
}

static void test_stream_header_errors(void)
{
    expect_error_str("wrong stream namespace", NULL,
                     "<stream:stream xmlns='jabber:client' "
                     "xmlns:stream='http://wrong.namespace.example.org/'>",
                     XMPP_STREAM_ERR_INVALID_NAMESPACE);
    expect_error_str("stream in no namespace", NULL, "<stream>", XMPP_STREAM_ERR_INVALID_NAMESPACE);
    expect_error_str("stanza instead of a header", NULL, "<message xmlns='jabber:client'/>",
                     XMPP_STREAM_ERR_INVALID_NAMESPACE);
    expect_error_str("other element in the stream namespace", NULL,
                     "<stream:features xmlns:stream='http://etherx.jabber.org/streams' "
                     "xmlns='jabber:client'>",
                     XMPP_STREAM_ERR_BAD_FORMAT);
    expect_error_str("foobar prefix", NULL,
                     "<foobar:stream xmlns='jabber:client' "
                     "xmlns:foobar='http://etherx.jabber.org/streams'>",
                     XMPP_STREAM_ERR_BAD_NAMESPACE_PREFIX);
    expect_error_str("missing xmlns:stream", NULL, "<stream:stream xmlns='jabber:client'>",
                     XMPP_STREAM_ERR_BAD_NAMESPACE_PREFIX);
    expect_error_str("jabber:server on c2s", NULL,
                     "<stream:stream xmlns='jabber:server' "
                     "xmlns:stream='http://etherx.jabber.org/streams'>",
                     XMPP_STREAM_ERR_INVALID_NAMESPACE);
    expect_error_str("no content namespace", NULL,
                     "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
                     XMPP_STREAM_ERR_INVALID_NAMESPACE);
    expect_error_str("ISO-8859-1", NULL,
                     "<?xml version='1.0' encoding='ISO-8859-1'?>" STREAM_HEADER,
                     XMPP_STREAM_ERR_UNSUPPORTED_ENCODING);
    expect_error_str("UTF-16", NULL, "<?xml version='1.0' encoding='UTF-16'?>" STREAM_HEADER,
                     XMPP_STREAM_ERR_UNSUPPORTED_ENCODING);
    expect_error_str("text before the header", NULL, "hello" STREAM_HEADER,
                     XMPP_STREAM_ERR_NOT_WELL_FORMED);
    expect_error_str("text between stanzas", STREAM_HEADER, "\n hello<presence/>",
                     XMPP_STREAM_ERR_BAD_FORMAT);
    expect_error_str("entity between stanzas", STREAM_HEADER, " &amp; ",
                     XMPP_STREAM_ERR_BAD_FORMAT);
    expect_error_str(
        "prefixed jabber:client element", STREAM_HEADER,
        "<foo:message xmlns:foo='jabber:client'><foo:body>foo</foo:body></foo:message>",
        XMPP_STREAM_ERR_BAD_NAMESPACE_PREFIX);
    expect_error_str("bad stream end", STREAM_HEADER, "</stream:foo>",
                     XMPP_STREAM_ERR_NOT_WELL_FORMED);
}

static void test_header_variants(void)
{
    struct rec r;
    const struct xmpp_stream_header *h;

    /* Lower-case encoding name, prefix-free style, stanzas naming their
     * namespace themselves. */
    rec_init(&r, NULL, NULL);
    CHECK(feed_str(&r, "<?xml version='1.0' encoding='utf-8'?>"
                       "<stream xmlns='http://etherx.jabber.org/streams' from='a@b' id='x1' "
                       "to='b'>") > 0);
    h = xmpp_parser_header(r.p);
    CHECK(h != NULL && h->content_ns == NULL && strcmp(h->prefix, "") == 0);
    CHECK(h != NULL && strcmp(h->from, "a@b") == 0 && strcmp(h->id, "x1") == 0);
    CHECK(h != NULL && h->version == NULL && h->lang == NULL);
    CHECK(feed_str(&r, "<message xmlns='jabber:client'><body>hi</body></message><features/>") > 0);
    CHECK_STR(r.log.data, "open b a@b x1 - -\n"
                          "stanza <message xmlns='jabber:client'><body>hi</body></message>\n"
                          "stanza <features xmlns='http://etherx.jabber.org/streams'/>\n");
    CHECK(feed_str(&r, "</stream>") == 9 && r.closes == 1);
    rec_free(&r);

    /* s2s: jabber:server content, a dialback prefix declared on the header. */
    rec_init(&r, XMPP_NS_SERVER, NULL);
    CHECK(feed_str(&r, "<stream:stream xmlns='jabber:server' "
                       "xmlns:stream='http://etherx.jabber.org/streams' "
                       "xmlns:db='jabber:server:dialback' to='b.example' from='a.example'>"
                       "<db:result to='b.example' from='a.example'>key</db:result>"
                       "<stream:features/>") > 0);
    h = xmpp_parser_header(r.p);
    CHECK(h != NULL && strcmp(h->content_ns, XMPP_NS_SERVER) == 0);
    CHECK(h != NULL && strcmp(h->prefix, "stream") == 0);
    CHECK_STR(r.log.data,
              "open b.example a.example - - -\n"
              "stanza <result xmlns='jabber:server:dialback' to='b.example' from='a.example'>"
              "key</result>\n"
              "stanza <features xmlns='http://etherx.jabber.org/streams'/>\n");
    rec_free(&r);
}

/* A stanza that grows past the cap is refused while incomplete. */
static void test_stanza_size_cap(void)
{
    const size_t chunk = 4096, total = 300u << 10;
    char *buf = malloc(total);
    struct rec r;
    size_t fed = 0;
    ssize_t n = 0;

    /* An open <message><body> with 300 KiB of text and no end. */
    memset(buf, 'a', total);
    memcpy(buf, "<message><body>", 15);
    rec_init(&r, NULL, NULL);
    CHECK(feed_str(&r, STREAM_HEADER) > 0);
    while (fed < total && (n = feed(&r, buf + fed, chunk)) >= 0)
        fed += chunk;
    CHECK(n == -1);
    CHECK(r.condition == XMPP_STREAM_ERR_POLICY_VIOLATION && r.stanzas == 0);
    /* Refused as soon as the 256 KiB cap was passed, not at the end. */
    CHECK(fed <= XMPP_MAX_STANZA && fed + chunk > XMPP_MAX_STANZA);
    rec_free(&r);

    /* The same in one piece, and as an unfinished start tag trickled a
     * byte at a time (which expat alone rescans quadratically). */
    rec_init(&r, NULL, NULL);
    CHECK(feed_str(&r, STREAM_HEADER) > 0);
    CHECK(feed(&r, buf, total) == -1 && r.condition == XMPP_STREAM_ERR_POLICY_VIOLATION);
    rec_free(&r);

    memcpy(buf, "<message to='", 13);
    rec_init(&r, NULL, NULL);
    CHECK(feed_str(&r, STREAM_HEADER) > 0);
    double start = now();
    for (fed = 0; fed < total && (n = feed(&r, buf + fed, 1)) >= 0; fed++)
        ;
    double elapsed = now() - start;
    CHECK(n == -1 && r.condition == XMPP_STREAM_ERR_POLICY_VIOLATION);
    CHECK(fed == XMPP_MAX_STANZA);
    CHECK(elapsed < 5.0);
    printf("trickled 256 KiB start tag refused in %.2f s\n", elapsed);
    rec_free(&r);

    /* A stanza just under the cap passes, even fed a byte at a time,
     * including a long attribute value. */
    size_t body = XMPP_MAX_STANZA - 200;
    char *big = malloc(body + 200);
    size_t len = 0;
    len += (size_t)sprintf(big, "<message id='");
    memset(big + len, 'i', 60000);
    len += 60000;
    len += (size_t)sprintf(big + len, "'><body>");
    memset(big + len, 'b', body - len);
    len = body;
    len += (size_t)sprintf(big + len, "</body></message>");
    rec_init(&r, NULL, NULL);
    CHECK(feed_str(&r, STREAM_HEADER) > 0);
    start = now();
    CHECK(feed_split(&r, big, len, 1) == (ssize_t)len);
    CHECK(r.stanzas == 1 && r.errors == 0);
    printf("%zu-byte stanza fed a byte at a time in %.2f s\n", len, now() - start);
    /* Whitespace keepalives never count towards a stanza. */
    memset(buf, ' ', total);
    for (size_t off = 0; off < total; off += 1000)
        CHECK(feed(&r, buf, 1000) == 1000);
    CHECK(feed_str(&r, "<presence/>") == 11);
    CHECK(r.stanzas == 2 && r.errors == 0);
    rec_free(&r);
    free(big);
    free(buf);
}

static void test_depth_and_counts(void)
{
    const size_t levels = 100000;
    char *deep = malloc(levels * 3 + 1), *many;
    struct rec r;
    size_t len = 0;

    for (size_t i = 0; i < levels; i++)
        memcpy(deep + 3 * i, "<a>", 3);
    rec_init(&r, NULL, NULL);
    CHECK(feed_str(&r, STREAM_HEADER) > 0);
    double start = now();
    CHECK(feed(&r, deep, 200u << 10) == -1);
    CHECK(r.condition == XMPP_STREAM_ERR_POLICY_VIOLATION);
    CHECK(now() - start < 1.0);
    CHECK(xmpp_parser_memory(r.p) < (1u << 20));
    rec_free(&r);
    /* Exactly at the limit is fine. */
    rec_init(&r, NULL, NULL);
    CHECK(feed_str(&r, STREAM_HEADER) > 0);
    for (int i = 0; i < XMPP_MAX_DEPTH; i++)
        CHECK(feed_str(&r, "<a>") == 3);
    for (int i = 0; i < XMPP_MAX_DEPTH; i++)
        CHECK(feed_str(&r, "</a>") == 4);
    CHECK(r.stanzas == 1 && r.errors == 0);
    CHECK(feed_str(&r, "<a><a><a>") == 9);
    rec_free(&r);
    free(deep);

    /* Too many attributes, a name too long, an attribute value too long. */
    many = malloc(1u << 20);
    len = (size_t)sprintf(many, "<message");
    for (int i = 0; i <= XMPP_MAX_ATTRS; i++)
        len += (size_t)sprintf(many + len, " a%d='x'", i);
    strcpy(many + len, "/>");
    expect_error_str("too many attributes", STREAM_HEADER, many, XMPP_STREAM_ERR_POLICY_VIOLATION);
    memset(many, 'n', XMPP_MAX_NAME + 2);
    many[0] = '<';
    strcpy(many + XMPP_MAX_NAME + 2, "/>");
    expect_error_str("long name", STREAM_HEADER, many, XMPP_STREAM_ERR_POLICY_VIOLATION);
    len = (size_t)sprintf(many, "<message to='");
    memset(many + len, 'v', XMPP_MAX_ATTR_VALUE + 1);
    strcpy(many + len + XMPP_MAX_ATTR_VALUE + 1, "'/>");
    expect_error_str("long attribute value", STREAM_HEADER, many, XMPP_STREAM_ERR_POLICY_VIOLATION);

    /* A stanza of tiny elements is under the byte cap but its tree is over
     * the memory cap (8 x 256 KiB). */
    len = (size_t)sprintf(many, "<message>");
    while (len < XMPP_MAX_STANZA - 100)
        len += (size_t)sprintf(many + len, "<a/>");
    strcpy(many + len, "</message>");
    expect_error_str("element-dense stanza", STREAM_HEADER, many, XMPP_STREAM_ERR_POLICY_VIOLATION);

    /* A stanza of unique names makes expat intern them all: its memory is
     * capped too (here at the 128 KiB minimum). */
    struct xmpp_parser_limits l = {.max_expat = 1};
    struct rec r2;
    len = (size_t)sprintf(many, "<message>");
    for (int i = 0; i < 3000; i++)
        len += (size_t)sprintf(many + len, "<a%d/>", i);
    strcpy(many + len, "</message>");
    rec_init(&r2, NULL, &l);
    CHECK(feed_str(&r2, STREAM_HEADER) > 0);
    CHECK(feed_str(&r2, many) == -1 && r2.condition == XMPP_STREAM_ERR_POLICY_VIOLATION);
    const char *why = NULL;
    CHECK(xmpp_parser_error(r2.p, &why) == XMPP_STREAM_ERR_POLICY_VIOLATION);
    CHECK(why != NULL && strstr(why, "XML parser memory") != NULL);
    rec_free(&r2);
    free(many);
}

/* STARTTLS: the stanza callback restarts the stream; what follows
 * <starttls/> in the same read is not parsed. */
static void test_reset_after_starttls(void)
{
    static const char plain[] = STREAM_HEADER "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                                              "<message><body>injected</body></message>";
    struct rec r;
    ssize_t n;

    rec_init(&r, NULL, NULL);
    r.reset_on = "starttls";
    n = feed(&r, plain, sizeof(plain) - 1);
    CHECK(n == (ssize_t)(strstr(plain, "<message>") - plain));
    CHECK(r.stanzas == 1 && r.errors == 0);
    CHECK(xmpp_parser_header(r.p) == NULL);
    /* The new stream (over TLS) may start with an XML declaration again. */
    CHECK(feed_str(&r, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                       "xmlns:stream='http://etherx.jabber.org/streams' to='tls.example'>"
                       "<presence/>") > 0);
    CHECK(r.opens == 2 && r.stanzas == 2 && r.errors == 0);
    CHECK(strstr(r.log.data, "injected") == NULL);
    CHECK_STR(xmpp_parser_header(r.p)->to, "tls.example");
    rec_free(&r);

    /* Stop without reset: the rest is left to the caller, and feeding the
     * stopped parser is refused. */
    rec_init(&r, NULL, NULL);
    r.stop_on = "starttls";
    n = feed_split(&r, plain, sizeof(plain) - 1, 0);
    CHECK(n == (ssize_t)(strstr(plain, "<message>") - plain));
    CHECK(feed_str(&r, "<presence/>") == -1);
    CHECK(r.condition == XMPP_STREAM_ERR_INTERNAL_SERVER_ERROR);
    xmpp_parser_reset(r.p);
    CHECK(xmpp_parser_error(r.p, NULL) == XMPP_STREAM_ERR_NONE);
    CHECK(feed_str(&r, STREAM_HEADER "<presence/>") > 0);
    CHECK(r.opens == 2 && r.stanzas == 2);
    rec_free(&r);

    /* The stop point is exact whatever the split: a byte at a time, the
     * callback fires on the last byte of <starttls/> and consumes it. */
    rec_init(&r, NULL, NULL);
    r.reset_on = "starttls";
    size_t off = 0;
    while (off < sizeof(plain) - 1 && r.stanzas == 0 && (n = feed(&r, plain + off, 1)) == 1)
        off++;
    CHECK(r.stanzas == 1 && off == (size_t)(strstr(plain, "<message>") - plain));
    CHECK(xmpp_parser_header(r.p) == NULL);
    /* Trickled in random pieces, the returned count still ends there. */
    xmpp_parser_reset(r.p);
    off = 0;
    for (unsigned long long st = 5; off < sizeof(plain) - 1 && r.stanzas == 1;) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t piece = 1 + (size_t)((st >> 33) % 13);
        if (piece > sizeof(plain) - 1 - off)
            piece = sizeof(plain) - 1 - off;
        n = feed(&r, plain + off, piece);
        CHECK(n >= 0);
        off += (size_t)n;
    }
    CHECK(r.stanzas == 2 && off == (size_t)(strstr(plain, "<message>") - plain));
    rec_free(&r);

    /* SASL success: reset from outside any callback. */
    rec_init(&r, NULL, NULL);
    CHECK(feed_str(&r, STREAM_HEADER "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>") > 0);
    xmpp_parser_reset(r.p);
    CHECK(xmpp_parser_header(r.p) == NULL && xmpp_parser_offset(r.p) == 0);
    CHECK(feed_str(&r, STREAM_HEADER "<iq type='set' id='b'/>") > 0);
    CHECK(r.opens == 2 && r.stanzas == 2 && r.errors == 0);
    /* A stream error, then a reset gives a clean parser. */
    CHECK(feed_str(&r, "<!-- -->") == -1);
    xmpp_parser_reset(r.p);
    CHECK(feed_str(&r, STREAM_HEADER) > 0 && r.opens == 3);
    rec_free(&r);
}

static void test_detach(void)
{
    struct rec r;
    const char *text;

    rec_init(&r, NULL, NULL);
    r.detach_on = "message";
    CHECK(feed_str(&r, STREAM_HEADER "<message id='1'><body>kept</body></message>"
                                     "<presence/><message id='2'/>") > 0);
    CHECK(r.n_detached == 2);
    /* Later stanzas did not touch them; they outlive the parser. */
    xmpp_parser_free(&r.p);
    CHECK(r.detached[0] != NULL && r.detached[1] != NULL);
    CHECK_STR(xmpp_element_attr(r.detached[0], "id"), "1");
    text = xmpp_element_text(xmpp_element_child(r.detached[0], "body", NULL), NULL);
    CHECK_STR(text, "kept");
    CHECK_STR(xmpp_element_attr(r.detached[1], "id"), "2");
    /* A detached tree can grow past the parser's cap: it is ours now. */
    CHECK(xmpp_element_add_child(r.detached[1], "delay", "urn:xmpp:delay") != NULL);
    rec_free(&r);

    /* Detach refuses anything but the stanza being delivered. */
    struct xmpp_parser *p = xmpp_parser_new(NULL, NULL);
    struct xmpp_element *e = xmpp_element_new("message", XMPP_NS_CLIENT);
    CHECK(xmpp_parser_detach(p, e) == NULL);
    xmpp_element_free(&e);
    CHECK(e == NULL);
    xmpp_parser_free(&p);
}

/* expat interns every name for the life of its parser; the parser swaps
 * expat out so that a long stream of unique names stays bounded, and the
 * swap is invisible (namespaces declared on the header still apply). */
static void test_unique_names_bounded(void)
{
    struct rec r;
    char buf[256];
    size_t peak = 0;

    rec_init(&r, XMPP_NS_SERVER, NULL);
    CHECK(feed_str(&r, "<stream:stream xmlns='jabber:server' "
                       "xmlns:stream='http://etherx.jabber.org/streams' "
                       "xmlns:db='jabber:server:dialback'>") > 0);
    for (int i = 0; i < 30000; i++) {
        int n = snprintf(buf, sizeof(buf), "<m%d xmlns='urn:n%d' a%d='%d'><x%d/></m%d>", i, i, i, i,
                         i, i);
        CHECK(feed(&r, buf, (size_t)n) == n);
        if (xmpp_parser_memory(r.p) > peak)
            peak = xmpp_parser_memory(r.p);
        if (i % 1000 == 999) {
            xmpp_buf_clear(&r.log);
            CHECK(feed_str(&r, "<db:verify id='v'>k</db:verify>") > 0);
            CHECK_STR(r.log.data, "stanza <verify xmlns='jabber:server:dialback' "
                                  "id='v'>k</verify>\n");
        }
    }
    CHECK(r.stanzas == 30030 && r.errors == 0);
    printf("30000 stanzas of unique names: peak parser memory %zu bytes\n", peak);
    CHECK(peak < (256u << 10));
    rec_free(&r);
}

static void test_builder_and_escaping(void)
{
    struct xmpp_element *m = xmpp_element_new("message", XMPP_NS_CLIENT), *c, *copy;
    struct xmpp_buf out;

    xmpp_buf_init(&out, 0);
    CHECK(m != NULL);
    CHECK(xmpp_element_set_attr(m, "to", "a&b<c>d\"e'f\tg\nh\ri") == 0);
    CHECK(xmpp_element_set_attr(m, "type", "chat") == 0);
    CHECK(xmpp_element_set_attr(m, "type", "normal") == 0); /* replaces */
    CHECK(xmpp_element_set_attr(m, "id", "gone") == 0);
    xmpp_element_remove_attr(m, "id");
    CHECK(xmpp_element_attr(m, "id") == NULL);
    CHECK(xmpp_element_set_attr_ns(m, XMPP_NS_XML, NULL, "lang", "en") == 0);
    CHECK(xmpp_element_set_attr_ns(m, "urn:p", "p", "x", "1") == 0);
    CHECK(xmpp_element_set_attr_ns(m, "urn:q", "p", "y", "2") == -1); /* p is urn:p here */
    CHECK(xmpp_element_set_attr_ns(m, "urn:q", "xmlns", "y", "2") == -1);
    CHECK(xmpp_element_set_attr_ns(m, "urn:q", NULL, "y", "2") == -1);
    c = xmpp_element_add_child(m, "body", NULL);
    CHECK(c != NULL && strcmp(c->ns, XMPP_NS_CLIENT) == 0);
    /* Markup, CR, a control character, invalid UTF-8, an overlong form and
     * a surrogate are escaped or replaced; valid UTF-8 stays. */
    static const char raw[] = "1 < 2 & 3 > 2 ]]> \r\x01\xFF\xC0\xAF\xED\xA0\x80 \xC3\xA9";
    CHECK(xmpp_element_add_text(c, raw, sizeof(raw) - 1) == 0);
    CHECK(xmpp_element_add_text(c, " more", 5) == 0);
    CHECK_STR(xmpp_element_text(c, NULL),
              "1 < 2 & 3 > 2 ]]> \r\x01\xFF\xC0\xAF\xED\xA0\x80 \xC3\xA9 more");
    CHECK(xmpp_element_add_child(m, "x", "") != NULL);
    CHECK(xmpp_element_add_child(m, "delay", "urn:xmpp:delay") != NULL);
    CHECK(xmpp_element_serialize(m, XMPP_NS_CLIENT, &out) == 0);
    static const char expected[] =
        "<message to='a&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h&#13;i' type='normal' "
        "xml:lang='en' xmlns:p='urn:p' p:x='1'><body>1 &lt; 2 &amp; 3 &gt; 2 ]]&gt; "
        "&#13;\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD "
        "\xC3\xA9 more</body><x xmlns=''/><delay xmlns='urn:xmpp:delay'/></message>";
    CHECK_STR(out.data, expected);
    /* Without a default namespace in scope the root declares its own. */
    xmpp_buf_clear(&out);
    CHECK(xmpp_element_serialize(c, NULL, &out) == 0);
    CHECK(strncmp(out.data, "<body xmlns='jabber:client'>", 28) == 0);

    /* The output parses back to the same attributes and text. */
    struct rec r;
    rec_init(&r, NULL, NULL);
    xmpp_buf_clear(&out);
    xmpp_element_serialize(m, XMPP_NS_CLIENT, &out);
    CHECK(feed_str(&r, STREAM_HEADER) > 0 && feed(&r, out.data, out.len) == (ssize_t)out.len);
    CHECK(r.stanzas == 1 && r.errors == 0);
    const char *echo = r.log.data + strlen("open example.org - - 1.0 en\nstanza ");
    CHECK(strncmp(echo, expected, sizeof(expected) - 1) == 0);
    CHECK_STR(echo + sizeof(expected) - 1, "\n");
    rec_free(&r);

    /* Copies: into another tree, and as a new document. */
    struct xmpp_element *wrap = xmpp_element_new("forwarded", "urn:xmpp:forward:0");
    copy = xmpp_element_add_copy(wrap, m);
    CHECK(copy != NULL && copy != m && copy->doc == wrap->doc);
    xmpp_buf_clear(&out);
    xmpp_element_serialize(wrap, NULL, &out);
    static const char fwd[] =
        "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' to=";
    CHECK(strncmp(out.data, fwd, sizeof(fwd) - 1) == 0);
    xmpp_element_free(&m);
    CHECK(m == NULL);
    copy = xmpp_element_clone(wrap);
    xmpp_element_free(&wrap);
    struct xmpp_buf out2;
    xmpp_buf_init(&out2, 0);
    xmpp_element_serialize(copy, NULL, &out2);
    CHECK_STR(out2.data, out.data);
    /* Freeing an inner element only forgets the pointer. */
    c = xmpp_element_first_child(copy);
    xmpp_element_free(&c);
    CHECK(c == NULL);
    xmpp_element_free(&copy);
    xmpp_buf_free(&out2);

    /* A capped buffer fails cleanly. */
    struct xmpp_buf small;
    xmpp_buf_init(&small, 8);
    CHECK(xmpp_buf_append_str(&small, "12345678"));
    CHECK(!xmpp_buf_append_str(&small, "9") && small.failed);
    CHECK(small.len == 8 && strcmp(small.data, "12345678") == 0);
    xmpp_buf_clear(&small);
    CHECK(!small.failed && small.len == 0);
    xmpp_buf_free(&small);
    xmpp_buf_free(&out);
}

/* Parse, serialize, parse again: the same canonical bytes. */
static void test_round_trip(void)
{
    static const char stanza[] =
        "<iq type='result' id='disco' from='example.org'>"
        "<query xmlns='http://jabber.org/protocol/disco#info'>\n  "
        "<identity category='server' type='im' name='Switch &amp; board'/>"
        "<feature var='urn:xmpp:ping'/>"
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>"
        "<value>urn:xmpp:dataforms:softwareinfo</value></field></x>"
        "<p:ext xmlns:p='urn:ext' xmlns:q='urn:attr' q:flag='&#x9;tab' xml:lang='fr'>"
        "<p:inner>t&#13;ext<![CDATA[ & <cdata> ]]></p:inner><plain xmlns=''>no ns</plain>"
        "</p:ext></query></iq>";
    struct rec a, b;
    const char *first, *second;

    rec_init(&a, NULL, NULL);
    CHECK(feed_str(&a, STREAM_HEADER) > 0 && feed_str(&a, stanza) > 0 && a.stanzas == 1);
    first = strstr(a.log.data, "stanza ");
    CHECK(first != NULL);
    rec_init(&b, NULL, NULL);
    CHECK(feed_str(&b, STREAM_HEADER) > 0);
    CHECK(first != NULL && feed(&b, first + 7, strlen(first + 7) - 1) > 0);
    CHECK(b.stanzas == 1 && b.errors == 0);
    second = strstr(b.log.data, "stanza ");
    CHECK(first != NULL && second != NULL && strcmp(first, second) == 0);
    CHECK(first != NULL &&
          strstr(first, "<ext xmlns='urn:ext' xmlns:q='urn:attr' q:flag='&#9;tab' "
                        "xml:lang='fr'><inner>t&#13;ext &amp; &lt;cdata&gt; </inner>"
                        "<plain xmlns=''>no ns</plain></ext>") != NULL);
    rec_free(&a);
    rec_free(&b);
}

static void test_error_names_and_limits(void)
{
    struct xmpp_parser_limits l = {.max_stanza = 1, .max_depth = 100000};
    struct rec r;

    CHECK_STR(xmpp_stream_error_name(XMPP_STREAM_ERR_NOT_WELL_FORMED), "not-well-formed");
    CHECK_STR(xmpp_stream_error_name(XMPP_STREAM_ERR_RESTRICTED_XML), "restricted-xml");
    CHECK_STR(xmpp_stream_error_name(XMPP_STREAM_ERR_UNSUPPORTED_VERSION), "unsupported-version");
    CHECK_STR(xmpp_stream_error_name((enum xmpp_stream_error)999), "undefined-condition");
    /* Limits are clamped: a 1-byte cap becomes 1 KiB, so a normal header
     * passes but a 2 KiB stanza does not. */
    rec_init(&r, NULL, &l);
    CHECK(feed_str(&r, STREAM_HEADER) > 0);
    char big[2100];
    memset(big, 'x', sizeof(big));
    memcpy(big, "<message>", 9);
    CHECK(feed(&r, big, sizeof(big)) == -1 && r.condition == XMPP_STREAM_ERR_POLICY_VIOLATION);
    rec_free(&r);
    /* A stream header larger than the cap. */
    rec_init(&r, NULL, &l);
    memcpy(big, "<stream:stream to='", 19);
    CHECK(feed(&r, big, sizeof(big)) == -1 && r.condition == XMPP_STREAM_ERR_POLICY_VIOLATION);
    rec_free(&r);
}

int main(void)
{
    test_session_any_split();
    test_tree();
    test_restricted_xml();
    test_not_well_formed();
    test_stream_header_errors();
    test_header_variants();
    test_stanza_size_cap();
    test_depth_and_counts();
    test_reset_after_starttls();
    test_detach();
    test_unique_names_bounded();
    test_builder_and_escaping();
    test_round_trip();
    test_error_names_and_limits();
    return check_result("test_xmpp_parse");
}
