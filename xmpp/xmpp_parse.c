/*
 * The XMPP stream parser declared in xmpp_parse.h: expat with namespace
 * processing, plus RFC 6120's rules and the resource bounds.
 *
 * Three things are added around expat, each for a reason worth knowing:
 *
 *  - Byte accounting. Every offset is counted in bytes of the stream since
 *    the last reset. unit_start is where the current first-level element
 *    began (the end of the previous one, of whitespace, or of the stream
 *    header); input is handed on only up to unit_start + max_stanza, so a
 *    stanza is refused while it is still incomplete.
 *
 *  - A markup scanner. expat (before 2.6) re-tokenizes a partial token
 *    from its start on every call, so a 200 KiB start tag trickled in a
 *    byte at a time costs tens of billions of steps. The scanner follows
 *    the input byte by byte (tags, quoted values, comments, PIs, CDATA,
 *    references) and holds the tail of a long unfinished markup token back
 *    until it is complete, or has doubled since expat last saw it, which
 *    makes the total work linear. It only decides when expat gets bytes;
 *    expat decides what they mean.
 *
 *  - Re-priming. expat interns every element and attribute name it meets
 *    for the life of the parser, and keeps its buffer at its largest, so a
 *    long stream of unique names would grow without bound. expat's memory
 *    is counted through its allocator hooks; when it passes
 *    XMPP_EXPAT_REPRIME at the end of a stanza, the parser swaps in a
 *    fresh expat primed with a copy of the stream header's namespace
 *    declarations, invisibly to the session. A hard cap (limits.max_expat)
 *    refuses what one stanza could make expat allocate.
 */
#include "xmpp/xmpp_parse.h"

#include <expat.h>
#include <inttypes.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The separator expat puts between namespace URI, local name and prefix.
 * U+0001 cannot occur in XML 1.0 text, names or URIs, so it is never
 * ambiguous. */
#define NS_SEP '\x01'

/* A markup token whose unfinished part is shorter than this goes to expat
 * at once: rescanning it is cheaper than copying it aside. */
#define XMPP_SCAN_HOLD_MIN 1024
/* Most bytes handed to expat in one call, which bounds the leftover buffer
 * expat allocates (twice the call's length). */
#define XMPP_EXPAT_SLICE (16u << 10)
/* After a stanza, an expat holding more than this is replaced by a fresh
 * one (see the top of the file). A fresh one holds about 10 KiB. */
#define XMPP_EXPAT_REPRIME (64u << 10)
/* Scratch buffers larger than this are released after each stanza, so an
 * idle connection holds little. */
#define XMPP_SCRATCH_KEEP (16u << 10)

enum parser_state {
    PS_PROLOG,  /* before the stream header */
    PS_OPEN,    /* inside the stream */
    PS_CLOSED,  /* </stream:stream> seen; input ignored */
    PS_STOPPED, /* stopped by the session; waiting for reset */
    PS_FAILED,
};

enum scan_state {
    SCAN_TEXT,       /* character data, or between tokens */
    SCAN_REF,        /* after '&' */
    SCAN_LT,         /* after '<' */
    SCAN_TAG,        /* start tag; quote set inside an attribute value */
    SCAN_END_TAG,    /* after "</" */
    SCAN_BANG,       /* after "<!" */
    SCAN_COMMENT,    /* after "<!-"; ends at "-->" */
    SCAN_CDATA_OPEN, /* after "<![", matching "CDATA[" */
    SCAN_CDATA,      /* inside a CDATA section; ends at "]]>" */
    SCAN_PI,         /* after "<?"; ends at "?>" */
    SCAN_DECL,       /* <!DOCTYPE and the like; ends at '>' or '[' */
};

struct xmpp_parser {
    XML_Parser xml;
    struct xmpp_parser_limits limits;
    char *content_ns;
    enum parser_state state;

    /* The feed in progress. */
    const struct xmpp_parse_events *ev;
    void *ctx;
    bool in_feed;     /* inside xmpp_parser_feed */
    bool in_parse;    /* inside XML_Parse: handlers may run */
    bool in_stanza;   /* inside the stanza callback */
    bool priming;     /* parsing the synthetic header of a re-prime */
    bool halt;        /* XML_StopParser was called: ignore further handler calls */
    bool reprime;     /* halted to swap expat at stop_at */
    bool reset_asked; /* xmpp_parser_reset from a callback */
    bool error_told;  /* ev->error called for the current failure */
    uint64_t stop_at; /* stream offset where the halt took effect */

    /* Offsets in the stream since the last reset. */
    uint64_t total;      /* bytes accepted: given to expat, or held */
    uint64_t fed;        /* bytes given to expat */
    int64_t xml_shift;   /* stream offset = expat's byte index + xml_shift */
    uint64_t unit_start; /* start of the current first-level unit */

    /* The markup scanner. */
    enum scan_state scan;
    uint8_t quote;        /* inside a quoted value: the quote character */
    uint8_t run;          /* dashes, brackets, '?' or "CDATA[" letters seen */
    uint64_t tok_start;   /* stream offset of the current markup token */
    uint64_t tok_fed;     /* its length when expat last got it */
    struct xmpp_buf hold; /* stream bytes [fed, total) */

    /* The tree being built. */
    unsigned depth;              /* open elements, the stream element included */
    struct xmpp_element **stack; /* [0] is the first-level element */
    struct xmpp_doc *doc;
    struct xmpp_buf text; /* character data not yet added to the tree */

    /* The stream header. */
    struct xmpp_stream_header header;
    char *header_mem;
    struct xmpp_buf decls; /* the header's namespace declarations, as XML */
    struct xmpp_buf prime; /* the synthetic header for re-priming */
    char *default_ns;      /* default namespace declared on the header */
    bool default_declared;
    unsigned n_decls;

    /* expat's memory. */
    size_t xml_mem;
    size_t reprime_above; /* XMPP_EXPAT_REPRIME, or less under a small max_expat */
    bool xml_mem_refused;

    enum xmpp_stream_error error;
    char error_text[192];
};

static const char *const error_names[XMPP_STREAM_ERR_COUNT] = {
    [XMPP_STREAM_ERR_NONE] = "undefined-condition",
    [XMPP_STREAM_ERR_BAD_FORMAT] = "bad-format",
    [XMPP_STREAM_ERR_BAD_NAMESPACE_PREFIX] = "bad-namespace-prefix",
    [XMPP_STREAM_ERR_CONFLICT] = "conflict",
    [XMPP_STREAM_ERR_CONNECTION_TIMEOUT] = "connection-timeout",
    [XMPP_STREAM_ERR_HOST_GONE] = "host-gone",
    [XMPP_STREAM_ERR_HOST_UNKNOWN] = "host-unknown",
    [XMPP_STREAM_ERR_IMPROPER_ADDRESSING] = "improper-addressing",
    [XMPP_STREAM_ERR_INTERNAL_SERVER_ERROR] = "internal-server-error",
    [XMPP_STREAM_ERR_INVALID_FROM] = "invalid-from",
    [XMPP_STREAM_ERR_INVALID_NAMESPACE] = "invalid-namespace",
    [XMPP_STREAM_ERR_INVALID_XML] = "invalid-xml",
    [XMPP_STREAM_ERR_NOT_AUTHORIZED] = "not-authorized",
    [XMPP_STREAM_ERR_NOT_WELL_FORMED] = "not-well-formed",
    [XMPP_STREAM_ERR_POLICY_VIOLATION] = "policy-violation",
    [XMPP_STREAM_ERR_REMOTE_CONNECTION_FAILED] = "remote-connection-failed",
    [XMPP_STREAM_ERR_RESET] = "reset",
    [XMPP_STREAM_ERR_RESOURCE_CONSTRAINT] = "resource-constraint",
    [XMPP_STREAM_ERR_RESTRICTED_XML] = "restricted-xml",
    [XMPP_STREAM_ERR_SEE_OTHER_HOST] = "see-other-host",
    [XMPP_STREAM_ERR_SYSTEM_SHUTDOWN] = "system-shutdown",
    [XMPP_STREAM_ERR_UNDEFINED_CONDITION] = "undefined-condition",
    [XMPP_STREAM_ERR_UNSUPPORTED_ENCODING] = "unsupported-encoding",
    [XMPP_STREAM_ERR_UNSUPPORTED_FEATURE] = "unsupported-feature",
    [XMPP_STREAM_ERR_UNSUPPORTED_STANZA_TYPE] = "unsupported-stanza-type",
    [XMPP_STREAM_ERR_UNSUPPORTED_VERSION] = "unsupported-version",
};

const char *xmpp_stream_error_name(enum xmpp_stream_error condition)
{
    if ((unsigned)condition >= XMPP_STREAM_ERR_COUNT)
        return "undefined-condition";
    return error_names[condition];
}

/*
 * expat's allocator: every block carries its owner so that frees and
 * reallocs are charged to the right parser; new blocks are charged to the
 * parser that is calling into expat (xml_owner, set around each call).
 */

struct xml_block_header {
    struct xmpp_parser *owner;
    size_t size;
};

#define XML_BLOCK_HEADER                                                                           \
    ((sizeof(struct xml_block_header) + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1))

static _Thread_local struct xmpp_parser *xml_owner;

static bool xml_charge(struct xmpp_parser *p, size_t grow)
{
    if (p == NULL)
        return true;
    if (grow > p->limits.max_expat || p->xml_mem > p->limits.max_expat - grow) {
        p->xml_mem_refused = true;
        return false;
    }
    return true;
}

static void *xml_malloc(size_t size)
{
    struct xmpp_parser *p = xml_owner;
    struct xml_block_header *h;

    if (size > SIZE_MAX / 2 || !xml_charge(p, size))
        return NULL;
    h = malloc(XML_BLOCK_HEADER + size);
    if (h == NULL)
        return NULL;
    h->owner = p;
    h->size = size;
    if (p != NULL)
        p->xml_mem += size;
    return (char *)h + XML_BLOCK_HEADER;
}

static void xml_free(void *ptr)
{
    struct xml_block_header *h;

    if (ptr == NULL)
        return;
    h = (struct xml_block_header *)((char *)ptr - XML_BLOCK_HEADER);
    if (h->owner != NULL)
        h->owner->xml_mem -= h->size;
    free(h);
}

static void *xml_realloc(void *ptr, size_t size)
{
    struct xml_block_header *h, *nh;
    struct xmpp_parser *p;
    size_t old;

    if (ptr == NULL)
        return xml_malloc(size);
    h = (struct xml_block_header *)((char *)ptr - XML_BLOCK_HEADER);
    p = h->owner;
    old = h->size;
    if (size > SIZE_MAX / 2 || (size > old && !xml_charge(p, size - old)))
        return NULL;
    nh = realloc(h, XML_BLOCK_HEADER + size);
    if (nh == NULL)
        return NULL;
    if (p != NULL)
        p->xml_mem = p->xml_mem - old + size;
    nh->size = size;
    return (char *)nh + XML_BLOCK_HEADER;
}

static const XML_Memory_Handling_Suite xml_memory = {xml_malloc, xml_realloc, xml_free};

/*
 * Failing.
 */

/* Copies up to 48 bytes of peer data into dst as printable ASCII. */
static const char *sample(char *dst, size_t size, const char *s, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len && i < 48 && o + 5 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '\\')
            dst[o++] = (char)c;
        else
            o += (size_t)snprintf(dst + o, size - o, "\\x%02X", c);
    }
    if (len > 48 && o + 4 < size) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
    return dst;
}

static void fail(struct xmpp_parser *p, enum xmpp_stream_error condition, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct xmpp_parser *p, enum xmpp_stream_error condition, const char *fmt, ...)
{
    va_list ap;

    if (p->state == PS_FAILED)
        return;
    p->state = PS_FAILED;
    p->error = condition;
    p->error_told = false;
    va_start(ap, fmt);
    vsnprintf(p->error_text, sizeof(p->error_text), fmt, ap);
    va_end(ap);
    if (p->in_parse && !p->halt)
        XML_StopParser(p->xml, XML_FALSE);
    p->halt = true;
}

/* The stream offset just after the event expat is reporting. */
static uint64_t event_end(struct xmpp_parser *p)
{
    XML_Index at = XML_GetCurrentByteIndex(p->xml);
    int count = XML_GetCurrentByteCount(p->xml);
    int64_t end;

    if (at < 0)
        return p->fed;
    end = (int64_t)at + (count > 0 ? count : 0) + p->xml_shift;
    return end < 0 ? 0 : (uint64_t)end;
}

/* Halts expat after the current event, remembering where. */
static void halt_here(struct xmpp_parser *p)
{
    p->stop_at = event_end(p);
    p->halt = true;
    XML_StopParser(p->xml, XML_FALSE);
}

static void tree_failed(struct xmpp_parser *p)
{
    if (p->doc != NULL && xmpp_doc_over_cap(p->doc))
        fail(p, XMPP_STREAM_ERR_POLICY_VIOLATION, "stanza tree over %zu bytes of memory",
             p->limits.max_tree);
    else
        fail(p, XMPP_STREAM_ERR_RESOURCE_CONSTRAINT, "out of memory building a stanza");
}

/*
 * Names from expat: "uri SEP local SEP prefix", "uri SEP local", or
 * "local" when the name is in no namespace.
 */
struct qname {
    const char *ns, *local, *prefix;
    size_t ns_len, local_len, prefix_len;
};

static void split_name(const char *name, struct qname *q)
{
    const char *sep1 = strchr(name, NS_SEP), *sep2;

    memset(q, 0, sizeof(*q));
    if (sep1 == NULL) {
        q->local = name;
        q->local_len = strlen(name);
        return;
    }
    q->ns = name;
    q->ns_len = (size_t)(sep1 - name);
    q->local = sep1 + 1;
    sep2 = strchr(q->local, NS_SEP);
    if (sep2 == NULL) {
        q->local_len = strlen(q->local);
        return;
    }
    q->local_len = (size_t)(sep2 - q->local);
    q->prefix = sep2 + 1;
    q->prefix_len = strlen(q->prefix);
}

static bool counted_is(const char *s, size_t len, const char *str)
{
    return s != NULL && strlen(str) == len && memcmp(s, str, len) == 0;
}

static bool names_too_long(struct xmpp_parser *p, const struct qname *q)
{
    char buf[256];

    if (q->local_len <= p->limits.max_name && q->ns_len <= p->limits.max_name &&
        q->prefix_len <= p->limits.max_name)
        return false;
    fail(p, XMPP_STREAM_ERR_POLICY_VIOLATION, "name or namespace longer than %zu bytes: %s",
         p->limits.max_name, sample(buf, sizeof(buf), q->local, q->local_len));
    return true;
}

/*
 * expat handlers.
 */

static void stream_start(struct xmpp_parser *p, const struct qname *q, const XML_Char **atts)
{
    const char *values[5] = {NULL}; /* to, from, id, version, lang */
    static const char *const names[4] = {"to", "from", "id", "version"};
    size_t size = 0, prefix_len;
    unsigned n_attrs = 0;
    char buf[256], *m;

    if (!counted_is(q->ns, q->ns_len, XMPP_NS_STREAMS)) {
        fail(p, XMPP_STREAM_ERR_INVALID_NAMESPACE, "stream header in namespace '%s'",
             sample(buf, sizeof(buf), q->ns != NULL ? q->ns : "", q->ns_len));
        return;
    }
    if (!counted_is(q->local, q->local_len, "stream")) {
        fail(p, XMPP_STREAM_ERR_BAD_FORMAT, "first element is <%s/>, not a stream header",
             sample(buf, sizeof(buf), q->local, q->local_len));
        return;
    }
    if (q->prefix != NULL && !counted_is(q->prefix, q->prefix_len, "stream")) {
        fail(p, XMPP_STREAM_ERR_BAD_NAMESPACE_PREFIX, "stream namespace prefix '%s'",
             sample(buf, sizeof(buf), q->prefix, q->prefix_len));
        return;
    }
    /* With a prefix, the default namespace must be the content namespace
     * (§4.8.2, §4.8.3); unprefixed, the default namespace is the stream's. */
    if (q->prefix != NULL &&
        (!p->default_declared || p->default_ns == NULL || strcmp(p->default_ns, p->content_ns))) {
        const char *ns = p->default_declared && p->default_ns != NULL ? p->default_ns : "";
        fail(p, XMPP_STREAM_ERR_INVALID_NAMESPACE, "content namespace '%s', expected '%s'",
             sample(buf, sizeof(buf), ns, strlen(ns)), p->content_ns);
        return;
    }

    for (const XML_Char **a = atts; a[0] != NULL; a += 2) {
        struct qname an;
        size_t len = strlen(a[1]);
        if (++n_attrs > p->limits.max_attrs) {
            fail(p, XMPP_STREAM_ERR_POLICY_VIOLATION, "more than %u attributes on the stream",
                 p->limits.max_attrs);
            return;
        }
        if (len > p->limits.max_attr_value) {
            fail(p, XMPP_STREAM_ERR_POLICY_VIOLATION, "stream attribute over %zu bytes",
                 p->limits.max_attr_value);
            return;
        }
        split_name(a[0], &an);
        if (an.ns == NULL) {
            for (int i = 0; i < 4; i++) {
                if (counted_is(an.local, an.local_len, names[i]))
                    values[i] = a[1];
            }
        } else if (counted_is(an.ns, an.ns_len, XMPP_NS_XML) &&
                   counted_is(an.local, an.local_len, "lang")) {
            values[4] = a[1];
        }
    }

    /* Keep the header: one block of strings. */
    prefix_len = q->prefix != NULL ? q->prefix_len : 0;
    for (int i = 0; i < 5; i++)
        size += values[i] != NULL ? strlen(values[i]) + 1 : 0;
    size += prefix_len + 1 + strlen(p->content_ns) + 1;
    free(p->header_mem);
    p->header_mem = m = malloc(size);
    if (m == NULL) {
        fail(p, XMPP_STREAM_ERR_RESOURCE_CONSTRAINT, "out of memory");
        return;
    }
    const char **fields[5] = {&p->header.to, &p->header.from, &p->header.id, &p->header.version,
                              &p->header.lang};
    for (int i = 0; i < 5; i++) {
        *fields[i] = NULL;
        if (values[i] == NULL)
            continue;
        size_t len = strlen(values[i]);
        memcpy(m, values[i], len + 1);
        *fields[i] = m;
        m += len + 1;
    }
    memcpy(m, q->prefix != NULL ? q->prefix : "", prefix_len);
    m[prefix_len] = '\0';
    p->header.prefix = m;
    m += prefix_len + 1;
    strcpy(m, p->content_ns);
    p->header.content_ns = q->prefix != NULL ? m : NULL;

    /* The synthetic header a re-prime parses: same element, same
     * declarations, nothing else. */
    xmpp_buf_clear(&p->prime);
    xmpp_buf_append(&p->prime, "<", 1);
    if (q->prefix != NULL) {
        xmpp_buf_append(&p->prime, q->prefix, q->prefix_len);
        xmpp_buf_append(&p->prime, ":", 1);
    }
    xmpp_buf_append_str(&p->prime, "stream");
    xmpp_buf_append(&p->prime, p->decls.data, p->decls.len);
    if (!xmpp_buf_append(&p->prime, ">", 1)) {
        fail(p, XMPP_STREAM_ERR_RESOURCE_CONSTRAINT, "out of memory");
        return;
    }
    xmpp_buf_free(&p->decls);

    p->depth = 1;
    p->state = PS_OPEN;
    p->unit_start = event_end(p);
    if (p->ev->stream_open != NULL)
        p->ev->stream_open(p->ctx, &p->header);
}

/* Adds pending character data to the element being built. */
static bool flush_text(struct xmpp_parser *p, struct xmpp_element *e)
{
    if (p->text.len == 0)
        return true;
    if (xmpp_doc_add_text(p->doc, e, p->text.data, p->text.len) == NULL) {
        tree_failed(p);
        return false;
    }
    xmpp_buf_clear(&p->text);
    return true;
}

static void element_start(struct xmpp_parser *p, const struct qname *q, const XML_Char **atts)
{
    unsigned level = p->depth; /* 1 for a first-level element */
    struct xmpp_element *parent = level > 1 ? p->stack[level - 2] : NULL, *e;
    unsigned n_attrs = 0;
    char buf[256];

    if (level > p->limits.max_depth) {
        fail(p, XMPP_STREAM_ERR_POLICY_VIOLATION, "elements nested deeper than %u",
             p->limits.max_depth);
        return;
    }
    if (names_too_long(p, q))
        return;
    /* §4.8.5: no prefix on elements of the content namespace. */
    if (q->prefix != NULL && counted_is(q->ns, q->ns_len, p->content_ns)) {
        fail(p, XMPP_STREAM_ERR_BAD_NAMESPACE_PREFIX, "prefix '%s' on an element of %s",
             sample(buf, sizeof(buf), q->prefix, q->prefix_len), p->content_ns);
        return;
    }
    for (const XML_Char **a = atts; a[0] != NULL; a += 2) {
        if (++n_attrs > p->limits.max_attrs) {
            fail(p, XMPP_STREAM_ERR_POLICY_VIOLATION, "more than %u attributes on <%s/>",
                 p->limits.max_attrs, sample(buf, sizeof(buf), q->local, q->local_len));
            return;
        }
    }
    if (level == 1) {
        if (p->doc == NULL) {
            p->doc = xmpp_doc_new(p->limits.max_tree);
            if (p->doc == NULL) {
                fail(p, XMPP_STREAM_ERR_RESOURCE_CONSTRAINT, "out of memory");
                return;
            }
        }
        xmpp_doc_clear(p->doc);
    } else if (!flush_text(p, parent)) {
        return;
    }
    e = xmpp_doc_add_element(p->doc, parent, q->local, q->local_len, q->ns != NULL ? q->ns : "",
                             q->ns_len);
    if (e == NULL) {
        tree_failed(p);
        return;
    }
    for (const XML_Char **a = atts; a[0] != NULL; a += 2) {
        struct qname an;
        size_t value_len = strlen(a[1]);
        split_name(a[0], &an);
        if (names_too_long(p, &an))
            return;
        if (value_len > p->limits.max_attr_value) {
            fail(p, XMPP_STREAM_ERR_POLICY_VIOLATION, "attribute %s over %zu bytes",
                 sample(buf, sizeof(buf), an.local, an.local_len), p->limits.max_attr_value);
            return;
        }
        if (xmpp_doc_add_attr(p->doc, e, an.local, an.local_len, an.ns, an.ns_len, an.prefix,
                              an.prefix_len, a[1], value_len) == NULL) {
            tree_failed(p);
            return;
        }
    }
    p->stack[level - 1] = e;
    p->depth++;
}

static void XMLCALL on_start(void *user, const XML_Char *name, const XML_Char **atts)
{
    struct xmpp_parser *p = user;
    struct qname q;

    if (p->halt)
        return;
    if (p->priming) {
        p->depth = 1;
        return;
    }
    split_name(name, &q);
    if (p->depth == 0)
        stream_start(p, &q, atts);
    else
        element_start(p, &q, atts);
}

/* A first-level element is complete: deliver it, then recycle. */
static void deliver(struct xmpp_parser *p, struct xmpp_element *e)
{
    p->unit_start = event_end(p);
    if (p->ev->stanza != NULL) {
        p->in_stanza = true;
        p->ev->stanza(p->ctx, e);
        p->in_stanza = false;
    }
    if (p->doc != NULL)
        xmpp_doc_clear(p->doc);
    if (p->text.cap > XMPP_SCRATCH_KEEP)
        xmpp_buf_free(&p->text);
    if (!p->halt && p->xml_mem > p->reprime_above) {
        p->reprime = true;
        halt_here(p);
    }
}

static void XMLCALL on_end(void *user, const XML_Char *name)
{
    struct xmpp_parser *p = user;
    struct xmpp_element *e;

    (void)name;
    if (p->halt || p->priming || p->depth == 0)
        return;
    if (p->depth == 1) {
        p->depth = 0;
        p->state = PS_CLOSED;
        halt_here(p);
        if (p->ev->stream_close != NULL)
            p->ev->stream_close(p->ctx);
        return;
    }
    e = p->stack[p->depth - 2];
    if (!flush_text(p, e))
        return;
    if (xmpp_doc_finish_text(p->doc, e) < 0) {
        tree_failed(p);
        return;
    }
    p->depth--;
    if (p->depth == 1)
        deliver(p, e);
}

static void XMLCALL on_text(void *user, const XML_Char *s, int len)
{
    struct xmpp_parser *p = user;
    char buf[256];

    if (p->halt || p->priming || len <= 0)
        return;
    if (p->depth == 1) {
        /* Between first-level elements only whitespace may appear. */
        for (int i = 0; i < len; i++) {
            if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') {
                fail(p, XMPP_STREAM_ERR_BAD_FORMAT, "text between stanzas: %s",
                     sample(buf, sizeof(buf), s + i, (size_t)(len - i)));
                return;
            }
        }
        p->unit_start = event_end(p);
        return;
    }
    if (p->depth > 1 && !xmpp_buf_append(&p->text, s, (size_t)len))
        fail(p, XMPP_STREAM_ERR_RESOURCE_CONSTRAINT, "out of memory");
}

static void XMLCALL on_ns_decl(void *user, const XML_Char *prefix, const XML_Char *uri)
{
    struct xmpp_parser *p = user;
    size_t len;

    /* Only the stream header's declarations matter: they are replayed when
     * expat is re-primed. */
    if (p->halt || p->priming || p->depth != 0)
        return;
    if (uri == NULL)
        uri = "";
    len = strlen(uri);
    if (++p->n_decls > p->limits.max_attrs || len > p->limits.max_name ||
        (prefix != NULL && strlen(prefix) > p->limits.max_name)) {
        fail(p, XMPP_STREAM_ERR_POLICY_VIOLATION, "stream header namespace declarations too large");
        return;
    }
    xmpp_buf_append(&p->decls, " xmlns", 6);
    if (prefix != NULL) {
        xmpp_buf_append(&p->decls, ":", 1);
        xmpp_buf_append_str(&p->decls, prefix);
    } else {
        free(p->default_ns);
        p->default_ns = strdup(uri);
        p->default_declared = true;
        if (p->default_ns == NULL)
            fail(p, XMPP_STREAM_ERR_RESOURCE_CONSTRAINT, "out of memory");
    }
    xmpp_buf_append(&p->decls, "='", 2);
    xmpp_buf_append_escaped(&p->decls, uri, len, true);
    if (!xmpp_buf_append(&p->decls, "'", 1))
        fail(p, XMPP_STREAM_ERR_RESOURCE_CONSTRAINT, "out of memory");
}

static void XMLCALL on_xml_decl(void *user, const XML_Char *version, const XML_Char *encoding,
                                int standalone)
{
    struct xmpp_parser *p = user;
    char buf[256];

    (void)version;
    (void)standalone; /* §11.5: ignored */
    if (p->halt || p->priming)
        return;
    /* expat was told the input is UTF-8 and would ignore the declaration;
     * §11.6 wants anything else refused. */
    if (encoding != NULL && strcasecmp(encoding, "UTF-8") != 0)
        fail(p, XMPP_STREAM_ERR_UNSUPPORTED_ENCODING, "encoding '%s' declared",
             sample(buf, sizeof(buf), encoding, strlen(encoding)));
}

/* The restricted-XML handlers; the check skips a parser already halted
 * (a failure or a stop must not be overwritten). */
static void restricted(struct xmpp_parser *p, const char *what, const char *name)
{
    char buf[256];

    if (p->halt || p->priming)
        return;
    fail(p, XMPP_STREAM_ERR_RESTRICTED_XML, "%s%s", what,
         name != NULL ? sample(buf, sizeof(buf), name, strlen(name)) : "");
}

static void XMLCALL on_doctype(void *user, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
    restricted(user, "DOCTYPE declaration", NULL);
}

static void XMLCALL on_entity_decl(void *user, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *sysid, const XML_Char *pubid,
                                   const XML_Char *notation)
{
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid, (void)pubid,
        (void)notation;
    restricted(user, "entity declaration", NULL);
}

static void XMLCALL on_comment(void *user, const XML_Char *data)
{
    (void)data;
    restricted(user, "XML comment", NULL);
}

static void XMLCALL on_pi(void *user, const XML_Char *target, const XML_Char *data)
{
    (void)data;
    restricted(user, "processing instruction <?", target);
}

/*
 * expat instances.
 */

static void xml_destroy(struct xmpp_parser *p)
{
    struct xmpp_parser *saved = xml_owner;

    if (p->xml == NULL)
        return;
    xml_owner = p;
    XML_ParserFree(p->xml);
    xml_owner = saved;
    p->xml = NULL;
}

static int xml_create(struct xmpp_parser *p)
{
    static const XML_Char separator[] = {NS_SEP, '\0'};
    struct xmpp_parser *saved = xml_owner;

    xml_destroy(p);
    p->xml_mem_refused = false;
    xml_owner = p;
    p->xml = XML_ParserCreate_MM("UTF-8", &xml_memory, separator);
    xml_owner = saved;
    if (p->xml == NULL)
        return -1;
    XML_SetUserData(p->xml, p);
    XML_SetReturnNSTriplet(p->xml, XML_TRUE);
    XML_SetParamEntityParsing(p->xml, XML_PARAM_ENTITY_PARSING_NEVER);
    XML_SetElementHandler(p->xml, on_start, on_end);
    XML_SetCharacterDataHandler(p->xml, on_text);
    XML_SetStartNamespaceDeclHandler(p->xml, on_ns_decl);
    XML_SetXmlDeclHandler(p->xml, on_xml_decl);
    XML_SetStartDoctypeDeclHandler(p->xml, on_doctype);
    XML_SetEntityDeclHandler(p->xml, on_entity_decl);
    XML_SetCommentHandler(p->xml, on_comment);
    XML_SetProcessingInstructionHandler(p->xml, on_pi);
#if XML_MAJOR_VERSION > 2 || (XML_MAJOR_VERSION == 2 && XML_MINOR_VERSION >= 6)
    /* The scanner does this job; expat's own deferral would sit on complete
     * stanzas until more input came. */
    XML_SetReparseDeferralEnabled(p->xml, XML_FALSE);
#endif
    return 0;
}

static enum XML_Status xml_parse(struct xmpp_parser *p, const void *data, size_t len)
{
    struct xmpp_parser *saved = xml_owner;
    enum XML_Status status;

    xml_owner = p;
    p->in_parse = true;
    status = XML_Parse(p->xml, data, (int)len, XML_FALSE);
    p->in_parse = false;
    xml_owner = saved;
    return status;
}

/* Replaces expat by a fresh instance that has parsed only the stream
 * header's namespace context; the stream continues at offset at. */
static int xml_reprime(struct xmpp_parser *p, uint64_t at)
{
    if (xml_create(p) < 0) {
        fail(p, XMPP_STREAM_ERR_RESOURCE_CONSTRAINT, "out of memory");
        return -1;
    }
    p->priming = true;
    p->depth = 0;
    if (xml_parse(p, p->prime.data, p->prime.len) != XML_STATUS_OK || p->depth != 1) {
        p->priming = false;
        fail(p, XMPP_STREAM_ERR_INTERNAL_SERVER_ERROR, "re-priming the XML parser failed");
        return -1;
    }
    p->priming = false;
    p->xml_shift = (int64_t)at - (int64_t)p->prime.len;
    return 0;
}

static enum xmpp_stream_error expat_condition(struct xmpp_parser *p, enum XML_Error code)
{
    switch (code) {
    case XML_ERROR_NO_MEMORY:
        return p->xml_mem_refused ? XMPP_STREAM_ERR_POLICY_VIOLATION
                                  : XMPP_STREAM_ERR_RESOURCE_CONSTRAINT;
    case XML_ERROR_UNDEFINED_ENTITY:
    case XML_ERROR_PARAM_ENTITY_REF:
    case XML_ERROR_RECURSIVE_ENTITY_REF:
    case XML_ERROR_ASYNC_ENTITY:
    case XML_ERROR_BINARY_ENTITY_REF:
    case XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF:
    case XML_ERROR_EXTERNAL_ENTITY_HANDLING:
    case XML_ERROR_NOT_STANDALONE:
    case XML_ERROR_ENTITY_DECLARED_IN_PE:
    case XML_ERROR_MISPLACED_XML_PI:
        return XMPP_STREAM_ERR_RESTRICTED_XML;
    case XML_ERROR_UNKNOWN_ENCODING:
    case XML_ERROR_INCORRECT_ENCODING:
        return XMPP_STREAM_ERR_UNSUPPORTED_ENCODING;
    case XML_ERROR_UNBOUND_PREFIX:
        /* An unbound prefix on the stream header itself (usually a missing
         * xmlns:stream). */
        return p->state == PS_PROLOG ? XMPP_STREAM_ERR_BAD_NAMESPACE_PREFIX
                                     : XMPP_STREAM_ERR_NOT_WELL_FORMED;
    default:
        return XMPP_STREAM_ERR_NOT_WELL_FORMED;
    }
}

/* Gives expat len bytes, the stream bytes [p->fed, p->fed + len). Handles
 * a re-prime in the middle by going on with the rest on the fresh expat. */
static void expat_feed(struct xmpp_parser *p, const uint8_t *data, size_t len)
{
    while (len > 0 && !p->halt) {
        size_t n = len > XMPP_EXPAT_SLICE ? XMPP_EXPAT_SLICE : len;
        uint64_t at = p->fed;

        p->fed += n;
        if (xml_parse(p, data, n) == XML_STATUS_OK) {
            data += n;
            len -= n;
            continue;
        }
        if (p->reprime && p->state == PS_OPEN) {
            uint64_t used = p->stop_at - at;
            if (p->stop_at < at || used > n) {
                fail(p, XMPP_STREAM_ERR_INTERNAL_SERVER_ERROR, "re-prime at a bad offset");
                return;
            }
            p->reprime = false;
            p->halt = false;
            p->fed = p->stop_at;
            if (xml_reprime(p, p->stop_at) < 0)
                return;
            data += used;
            len -= used;
            continue;
        }
        if (!p->halt) {
            enum XML_Error code = XML_GetErrorCode(p->xml);
            XML_Index where = XML_GetCurrentByteIndex(p->xml);
            uint64_t off = where >= 0 ? (uint64_t)((int64_t)where + p->xml_shift) : p->fed;
            if (code == XML_ERROR_NO_MEMORY && p->xml_mem_refused)
                fail(p, XMPP_STREAM_ERR_POLICY_VIOLATION,
                     "XML parser memory over %zu bytes at byte %" PRIu64, p->limits.max_expat, off);
            else
                fail(p, expat_condition(p, code), "%s at byte %" PRIu64, XML_ErrorString(code),
                     off);
        }
        return;
    }
}

/*
 * The scanner: follows markup so that a long unfinished token can be held
 * back from expat. Exact for well-formed input; on malformed input it may
 * only hand bytes over earlier or later, never change what they mean.
 */
static void scan(struct xmpp_parser *p, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];

        switch (p->scan) {
        case SCAN_TEXT:
            while (i < n && s[i] != '<' && s[i] != '&')
                i++;
            if (i == n)
                return;
            p->tok_start = p->total + i;
            p->tok_fed = 0;
            p->scan = s[i] == '<' ? SCAN_LT : SCAN_REF;
            break;
        case SCAN_REF:
            if (c == ';') {
                p->scan = SCAN_TEXT;
            } else if (c == '<') {
                p->tok_start = p->total + i;
                p->tok_fed = 0;
                p->scan = SCAN_LT;
            }
            break;
        case SCAN_LT:
            if (c == '!') {
                p->scan = SCAN_BANG;
            } else if (c == '?') {
                p->scan = SCAN_PI;
                p->run = 0;
            } else if (c == '/') {
                p->scan = SCAN_END_TAG;
            } else {
                p->scan = c == '>' ? SCAN_TEXT : SCAN_TAG;
                p->quote = 0;
            }
            break;
        case SCAN_TAG:
        case SCAN_DECL:
            if (p->quote != 0) {
                const uint8_t *q = memchr(s + i, p->quote, n - i);
                if (q == NULL)
                    return;
                i = (size_t)(q - s);
                p->quote = 0;
            } else if (c == '\'' || c == '"') {
                p->quote = c;
            } else if (c == '>' || (c == '[' && p->scan == SCAN_DECL)) {
                p->scan = SCAN_TEXT;
            }
            break;
        case SCAN_END_TAG:
            if (c == '>')
                p->scan = SCAN_TEXT;
            break;
        case SCAN_BANG:
            if (c == '-') {
                p->scan = SCAN_COMMENT;
                p->run = 1;
            } else if (c == '[') {
                p->scan = SCAN_CDATA_OPEN;
                p->run = 0;
            } else {
                p->scan = c == '>' ? SCAN_TEXT : SCAN_DECL;
                p->quote = 0;
            }
            break;
        case SCAN_COMMENT:
            if (c == '-') {
                p->run = p->run < 2 ? p->run + 1 : 2;
            } else {
                if (c == '>' && p->run >= 2)
                    p->scan = SCAN_TEXT;
                p->run = 0;
            }
            break;
        case SCAN_CDATA_OPEN:
            if (c != (uint8_t) "CDATA["[p->run])
                p->scan = SCAN_TEXT; /* malformed: let expat say so */
            else if (++p->run == 6) {
                p->scan = SCAN_CDATA;
                p->run = 0;
            }
            break;
        case SCAN_CDATA:
            if (c == ']') {
                p->run = p->run < 2 ? p->run + 1 : 2;
            } else {
                if (c == '>' && p->run >= 2)
                    p->scan = SCAN_TEXT;
                p->run = 0;
            }
            break;
        case SCAN_PI:
            if (c == '>' && p->run)
                p->scan = SCAN_TEXT;
            p->run = c == '?';
            break;
        }
    }
}

/* Scans n new bytes, then gives expat what it should have now and holds
 * the rest (the tail of a long unfinished markup token). */
static void accept_bytes(struct xmpp_parser *p, const uint8_t *s, size_t n)
{
    uint64_t upto;
    bool markup;

    scan(p, s, n);
    p->total += n;
    markup = p->scan != SCAN_TEXT && p->scan != SCAN_CDATA;
    upto = p->total;
    if (markup) {
        uint64_t partial = p->total - p->tok_start;
        if (partial < XMPP_SCAN_HOLD_MIN || partial >= 2 * p->tok_fed)
            p->tok_fed = partial;
        else
            upto = p->tok_start > p->fed ? p->tok_start : p->fed;
    }

    if (p->hold.len == 0) {
        size_t direct = (size_t)(upto - p->fed);
        expat_feed(p, s, direct);
        if (p->halt || direct == n)
            return;
        if (!xmpp_buf_append(&p->hold, s + direct, n - direct))
            fail(p, XMPP_STREAM_ERR_RESOURCE_CONSTRAINT, "out of memory");
        return;
    }
    if (!xmpp_buf_append(&p->hold, s, n)) {
        fail(p, XMPP_STREAM_ERR_RESOURCE_CONSTRAINT, "out of memory");
        return;
    }
    if (upto > p->fed) {
        size_t give = (size_t)(upto - p->fed), rest = p->hold.len - give;
        expat_feed(p, (const uint8_t *)p->hold.data, give);
        if (p->halt)
            return;
        memmove(p->hold.data, p->hold.data + give, rest);
        p->hold.len = rest;
        if (rest == 0 && p->hold.cap > XMPP_SCRATCH_KEEP)
            xmpp_buf_free(&p->hold);
    }
}

/* Hands expat every held byte (when the budget is exhausted, to be sure
 * the unit really is incomplete before refusing it). */
static void flush_hold(struct xmpp_parser *p)
{
    if (p->hold.len == 0)
        return;
    p->tok_fed = p->total - p->tok_start;
    expat_feed(p, (const uint8_t *)p->hold.data, p->hold.len);
    xmpp_buf_clear(&p->hold);
}

/*
 * The API.
 */

static size_t clamp_size(size_t v, size_t dflt, size_t lo, size_t hi)
{
    if (v == 0)
        v = dflt;
    return v < lo ? lo : v > hi ? hi : v;
}

/* Forgets the stream: everything but the limits and the reusable buffers. */
static void parser_clear(struct xmpp_parser *p)
{
    p->state = PS_PROLOG;
    p->halt = p->reprime = p->reset_asked = p->priming = false;
    p->error = XMPP_STREAM_ERR_NONE;
    p->error_text[0] = '\0';
    p->error_told = false;
    p->stop_at = 0;
    p->total = p->fed = p->unit_start = 0;
    p->xml_shift = 0;
    p->scan = SCAN_TEXT;
    p->quote = p->run = 0;
    p->tok_start = p->tok_fed = 0;
    xmpp_buf_free(&p->hold);
    p->depth = 0;
    if (p->doc != NULL)
        xmpp_doc_clear(p->doc);
    xmpp_buf_free(&p->text);
    memset(&p->header, 0, sizeof(p->header));
    free(p->header_mem);
    p->header_mem = NULL;
    xmpp_buf_free(&p->decls);
    xmpp_buf_free(&p->prime);
    free(p->default_ns);
    p->default_ns = NULL;
    p->default_declared = false;
    p->n_decls = 0;
}

struct xmpp_parser *xmpp_parser_new(const char *content_ns, const struct xmpp_parser_limits *limits)
{
    struct xmpp_parser_limits l = limits != NULL ? *limits : (struct xmpp_parser_limits){0};
    struct xmpp_parser *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    l.max_stanza = clamp_size(l.max_stanza, XMPP_MAX_STANZA, 1024, XMPP_MAX_STANZA_CEILING);
    l.max_depth = (unsigned)clamp_size(l.max_depth, XMPP_MAX_DEPTH, 1, XMPP_MAX_DEPTH_CEILING);
    l.max_attrs = (unsigned)clamp_size(l.max_attrs, XMPP_MAX_ATTRS, 1, 1u << 16);
    /* Names must fit the stream namespace URI, at least. */
    l.max_name = clamp_size(l.max_name, XMPP_MAX_NAME, 64, l.max_stanza);
    l.max_attr_value = clamp_size(l.max_attr_value, XMPP_MAX_ATTR_VALUE, 16, l.max_stanza);
    l.max_tree = clamp_size(l.max_tree, 8 * l.max_stanza, 4 * XMPP_DOC_BLOCK, SIZE_MAX / 2);
    l.max_expat =
        clamp_size(l.max_expat, 4 * l.max_stanza + (256u << 10), 128u << 10, SIZE_MAX / 2);
    p->limits = l;
    p->reprime_above = l.max_expat / 4 < XMPP_EXPAT_REPRIME ? l.max_expat / 4 : XMPP_EXPAT_REPRIME;
    xmpp_buf_init(&p->hold, 0);
    xmpp_buf_init(&p->text, 0);
    xmpp_buf_init(&p->decls, 0);
    xmpp_buf_init(&p->prime, 0);
    p->content_ns = strdup(content_ns != NULL ? content_ns : XMPP_NS_CLIENT);
    p->stack = calloc(l.max_depth, sizeof(*p->stack));
    if (p->content_ns == NULL || p->stack == NULL || xml_create(p) < 0) {
        xmpp_parser_free(&p);
        return NULL;
    }
    parser_clear(p);
    return p;
}

void xmpp_parser_free(struct xmpp_parser **pp)
{
    struct xmpp_parser *p = *pp;

    if (p == NULL)
        return;
    xml_destroy(p);
    parser_clear(p);
    xmpp_doc_free(&p->doc);
    free(p->stack);
    free(p->content_ns);
    free(p);
    *pp = NULL;
}

void xmpp_parser_reset(struct xmpp_parser *p)
{
    if (p->in_parse) {
        /* Inside a callback: expat is running, so the swap waits for feed
         * to regain control. */
        p->reset_asked = true;
        xmpp_parser_stop(p);
        return;
    }
    parser_clear(p);
    if (xml_create(p) < 0)
        fail(p, XMPP_STREAM_ERR_RESOURCE_CONSTRAINT, "out of memory");
}

void xmpp_parser_stop(struct xmpp_parser *p)
{
    if (!p->in_parse || p->halt)
        return;
    p->state = PS_STOPPED;
    halt_here(p);
}

struct xmpp_element *xmpp_parser_detach(struct xmpp_parser *p, struct xmpp_element *stanza)
{
    if (!p->in_stanza || p->doc == NULL || stanza == NULL || xmpp_doc_root(p->doc) != stanza)
        return NULL;
    /* The tree is ours now, no longer a peer's: no cap. */
    xmpp_doc_set_cap(p->doc, 0);
    p->doc = NULL;
    return stanza;
}

ssize_t xmpp_parser_feed(struct xmpp_parser *p, const uint8_t *data, size_t len,
                         const struct xmpp_parse_events *ev, void *ctx)
{
    static const struct xmpp_parse_events no_events;
    uint64_t base = p->total;
    size_t off = 0;
    ssize_t result = (ssize_t)len;

    if (p->in_feed)
        return -1; /* fed from its own callback: a bug, refused */
    if (p->state == PS_CLOSED)
        return result;
    if (p->state == PS_STOPPED)
        fail(p, XMPP_STREAM_ERR_INTERNAL_SERVER_ERROR, "input after stop without reset");
    p->in_feed = true;
    p->ev = ev != NULL ? ev : &no_events;
    p->ctx = ctx;

    while (off < len && (p->state == PS_PROLOG || p->state == PS_OPEN)) {
        uint64_t used = p->total - p->unit_start;
        size_t n = len - off;

        if (used >= p->limits.max_stanza) {
            flush_hold(p);
            used = p->total - p->unit_start;
            if (p->state != PS_PROLOG && p->state != PS_OPEN)
                break;
            if (used >= p->limits.max_stanza) {
                fail(p, XMPP_STREAM_ERR_POLICY_VIOLATION,
                     p->state == PS_PROLOG ? "stream header over %zu bytes"
                                           : "stanza over %zu bytes",
                     p->limits.max_stanza);
                break;
            }
        }
        if (n > p->limits.max_stanza - used)
            n = (size_t)(p->limits.max_stanza - used);
        accept_bytes(p, data + off, n);
        off += n;
    }

    switch (p->state) {
    case PS_FAILED:
        result = -1;
        if (!p->error_told) {
            p->error_told = true;
            if (p->ev->error != NULL)
                p->ev->error(p->ctx, p->error, p->error_text);
        }
        break;
    case PS_STOPPED:
        result = p->stop_at > base ? (ssize_t)(p->stop_at - base) : 0;
        if (result > (ssize_t)len)
            result = (ssize_t)len;
        break;
    default:
        break;
    }
    p->in_feed = false;
    p->ev = NULL;
    p->ctx = NULL;
    if (p->reset_asked)
        xmpp_parser_reset(p);
    return result;
}

enum xmpp_stream_error xmpp_parser_error(const struct xmpp_parser *p, const char **text_r)
{
    if (text_r != NULL)
        *text_r = p->error_text;
    return p->state == PS_FAILED ? p->error : XMPP_STREAM_ERR_NONE;
}

const struct xmpp_stream_header *xmpp_parser_header(const struct xmpp_parser *p)
{
    return p->header_mem != NULL ? &p->header : NULL;
}

bool xmpp_parser_closed(const struct xmpp_parser *p)
{
    return p->state == PS_CLOSED;
}

uint64_t xmpp_parser_offset(const struct xmpp_parser *p)
{
    return p->total;
}

size_t xmpp_parser_memory(const struct xmpp_parser *p)
{
    return sizeof(*p) + p->xml_mem + (p->doc != NULL ? xmpp_doc_size(p->doc) : 0) + p->hold.cap +
           p->text.cap + p->decls.cap + p->prime.cap + p->limits.max_depth * sizeof(*p->stack);
}
