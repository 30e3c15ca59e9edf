/*
 * Fuzz target for the XMPP stream parser and the stanza serializer.
 *
 * Input: byte 0 is where the stream is split in two chunks, byte 1 holds
 * flags (small limits, s2s content namespace, detaching stanzas, whether
 * the second run feeds one byte at a time or all at once, and restarting
 * the stream from the callback of each <starttls/> as a session does), the
 * rest is the stream. The stream is parsed twice, once in the two chunks
 * and once in the other way, and every event (stream header, each stanza
 * serialized, close, error condition) is logged: the two logs must be the
 * same, since how input is split must never change what it means. Each
 * stanza is also serialized, parsed again and serialized again, which must
 * give the same bytes.
 */
#include "xmpp/xmpp_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FLAG_SMALL 0x01
#define FLAG_SERVER 0x02
#define FLAG_DETACH 0x04
#define FLAG_BYTES 0x08
#define FLAG_RESTART 0x10

struct run {
    struct xmpp_parser *parser;
    struct xmpp_buf log;
    struct xmpp_buf scratch;
    const char *content_ns;
    unsigned flags;
};

static void check_round_trip(const char *content_ns, const char *xml, size_t len);

static void on_open(void *ctx, const struct xmpp_stream_header *h)
{
    struct run *r = ctx;
    const char *fields[] = {h->to, h->from, h->id, h->version, h->lang, h->prefix};

    xmpp_buf_append_str(&r->log, "open");
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        xmpp_buf_append_str(&r->log, fields[i] != NULL ? " [" : " -");
        if (fields[i] != NULL) {
            xmpp_buf_append_escaped(&r->log, fields[i], strlen(fields[i]), true);
            xmpp_buf_append_str(&r->log, "]");
        }
    }
    xmpp_buf_append_str(&r->log, "\n");
}

static void on_stanza(void *ctx, struct xmpp_element *stanza)
{
    struct run *r = ctx;
    struct xmpp_element *mine = NULL;

    if (r->flags & FLAG_DETACH) {
        mine = xmpp_parser_detach(r->parser, stanza);
        if (mine != stanza)
            abort();
    }
    xmpp_buf_clear(&r->scratch);
    if (xmpp_element_serialize(stanza, r->content_ns, &r->scratch) < 0)
        abort();
    check_round_trip(r->content_ns, r->scratch.data, r->scratch.len);
    xmpp_buf_append_str(&r->log, "stanza ");
    xmpp_buf_append(&r->log, r->scratch.data, r->scratch.len);
    xmpp_buf_append_str(&r->log, "\n");
    if ((r->flags & FLAG_RESTART) && strcmp(stanza->name, "starttls") == 0) {
        xmpp_parser_reset(r->parser);
        xmpp_buf_append_str(&r->log, "reset\n");
    }
    xmpp_element_free(&mine);
}

static void on_close(void *ctx)
{
    struct run *r = ctx;

    xmpp_buf_append_str(&r->log, "close\n");
}

static void on_error(void *ctx, enum xmpp_stream_error condition, const char *text)
{
    struct run *r = ctx;

    (void)text;
    xmpp_buf_append_str(&r->log, "error ");
    xmpp_buf_append_str(&r->log, xmpp_stream_error_name(condition));
    xmpp_buf_append_str(&r->log, "\n");
}

static const struct xmpp_parse_events events = {on_open, on_stanza, on_close, on_error};

/* Collects the single stanza of a round trip, serialized for a stream in
 * the prefix-free style (whose default namespace is the stream's), and
 * checks that a clone serializes the same. */
static void on_echo(void *ctx, struct xmpp_element *stanza)
{
    struct xmpp_buf *out = ctx, copy_out;
    struct xmpp_element *copy = xmpp_element_clone(stanza);

    if (out->len != 0 || copy == NULL || xmpp_element_serialize(stanza, XMPP_NS_STREAMS, out) < 0)
        abort();
    xmpp_buf_init(&copy_out, 0);
    if (xmpp_element_serialize(copy, XMPP_NS_STREAMS, &copy_out) < 0 || copy_out.len != out->len ||
        memcmp(copy_out.data, out->data, out->len) != 0)
        abort();
    xmpp_buf_free(&copy_out);
    xmpp_element_free(&copy);
}

/* Parses xml inside a stream with the given header; returns the stanza
 * serialized in out. */
static void reparse(const char *content_ns, const char *header, const char *xml, size_t len,
                    struct xmpp_buf *out)
{
    static const struct xmpp_parse_events echo = {.stanza = on_echo};
    struct xmpp_parser *p = xmpp_parser_new(content_ns, NULL);

    if (p == NULL)
        abort();
    if (xmpp_parser_feed(p, (const uint8_t *)header, strlen(header), &echo, out) < 0 ||
        xmpp_parser_feed(p, (const uint8_t *)xml, len, &echo, out) != (ssize_t)len ||
        out->len == 0) {
        fprintf(stderr, "serialized stanza does not parse back: %s\n", xml);
        abort();
    }
    xmpp_parser_free(&p);
}

/* The serialization of a parsed stanza parses back to the same tree: once
 * as sent on a stream (content namespace as default), once on a
 * prefix-free stream. */
static void check_round_trip(const char *content_ns, const char *xml, size_t len)
{
    struct xmpp_buf header, first, second;

    xmpp_buf_init(&header, 0);
    xmpp_buf_init(&first, 0);
    xmpp_buf_init(&second, 0);
    xmpp_buf_append_str(&header, "<stream:stream xmlns='");
    xmpp_buf_append_str(&header, content_ns);
    xmpp_buf_append_str(&header, "' xmlns:stream='" XMPP_NS_STREAMS "'>");
    reparse(content_ns, header.data, xml, len, &first);
    reparse(content_ns, "<stream xmlns='" XMPP_NS_STREAMS "'>", first.data, first.len, &second);
    if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0) {
        fprintf(stderr, "round trip differs:\n%s\n%s\n", first.data, second.data);
        abort();
    }
    xmpp_buf_free(&header);
    xmpp_buf_free(&first);
    xmpp_buf_free(&second);
}

static void run_init(struct run *r, unsigned flags)
{
    struct xmpp_parser_limits small = {
        .max_stanza = 2048,
        .max_depth = 12,
        .max_attrs = 6,
        .max_name = 64,
        .max_attr_value = 300,
        .max_tree = 16u << 10,
        .max_expat = 128u << 10,
    };

    memset(r, 0, sizeof(*r));
    r->flags = flags;
    r->content_ns = flags & FLAG_SERVER ? XMPP_NS_SERVER : XMPP_NS_CLIENT;
    r->parser = xmpp_parser_new(r->content_ns, flags & FLAG_SMALL ? &small : NULL);
    if (r->parser == NULL)
        abort();
    xmpp_buf_init(&r->log, 0);
    xmpp_buf_init(&r->scratch, 0);
}

static void run_free(struct run *r)
{
    xmpp_parser_free(&r->parser);
    xmpp_buf_free(&r->log);
    xmpp_buf_free(&r->scratch);
}

/* Feeds one piece; the parser must take all of it or fail, except that a
 * restart from a callback returns early and the rest goes to the new
 * stream. */
static bool feed(struct run *r, const uint8_t *data, size_t len)
{
    do {
        ssize_t n = xmpp_parser_feed(r->parser, data, len, &events, r);
        if (n < 0)
            return false;
        /* A stop consumes at least the byte that completed the element. */
        if ((size_t)n > len || ((size_t)n < len && (!(r->flags & FLAG_RESTART) || n == 0)))
            abort();
        data += n;
        len -= (size_t)n;
    } while (len > 0);
    return true;
}

/* The length of a log without its last line when that is an error. */
static size_t without_error(const struct xmpp_buf *log)
{
    size_t len = log->len;

    if (len == 0)
        return 0;
    while (len > 1 && log->data[len - 2] != '\n')
        len--;
    len--; /* start of the last line */
    return strncmp(log->data + len, "error ", 6) == 0 ? len : log->len;
}

/*
 * True when the logs are the same but for a final error line, which one
 * may have and the other not, or with another condition. Two things make
 * that legitimate: the parser holds back the tail of a long unfinished
 * markup token until it ends (or doubles), so an error inside it surfaces
 * only when more input comes, and the input may end first; and where two
 * faults sit in one run of text, expat reports text in pieces that depend
 * on the split, so either may be found first. Neither can drop or add a
 * stream header, stanza or close, which still count as differences.
 */
static bool same_result(const struct xmpp_buf *a, const struct xmpp_buf *b)
{
    size_t a_len = without_error(a), b_len = without_error(b);

    return a_len == b_len && (a_len == 0 || memcmp(a->data, b->data, a_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run a, b;
    size_t split;
    unsigned flags;

    if (size < 2)
        return 0;
    split = data[0];
    flags = data[1];
    data += 2;
    size -= 2;
    if (split > size)
        split = size;

    run_init(&a, flags);
    if (feed(&a, data, split))
        feed(&a, data + split, size - split);

    run_init(&b, flags);
    if (flags & FLAG_BYTES) {
        for (size_t i = 0; i < size && feed(&b, data + i, 1); i++)
            ;
    } else {
        feed(&b, data, size);
    }

    if (!same_result(&a.log, &b.log)) {
        fprintf(stderr, "split changed the result:\n--- split at %zu\n%s--- other\n%s", split,
                a.log.data ? a.log.data : "", b.log.data ? b.log.data : "");
        abort();
    }
    run_free(&a);
    run_free(&b);
    return 0;
}
