/*
 * The XMPP stream parser: bytes from a connection in, stream events out.
 *
 * It sits between the worker skeleton's conn_input and the session layer.
 * It does no I/O and keeps no connection state beyond the XML stream, so
 * it can be fed any split of the input (one byte at a time included) and
 * fuzzed alone. It uses expat for XML and adds what RFC 6120 asks of an
 * XML stream on top:
 *
 *  - the stream header must be {http://etherx.jabber.org/streams}stream,
 *    prefixed "stream" with the content namespace (jabber:client, or
 *    jabber:server for s2s) as the default namespace, or unprefixed
 *    ("prefix-free canonicalization", §4.8.2);
 *  - each first-level element (stanzas, and nonzas such as <starttls/>,
 *    <auth/>, <enable/>, <r/>) is delivered as one tree (xmpp_xml.h);
 *  - restricted XML (§11.1) is refused: DOCTYPE (so no entity expansion
 *    attacks), comments, processing instructions other than the XML
 *    declaration at the start, entity references other than the five
 *    predefined ones and character references;
 *  - only UTF-8 (§11.6), only characters XML 1.0 allows, namespace
 *    well-formedness (§11.3);
 *  - only whitespace between first-level elements (keepalives, §11.7);
 *  - bounded resources: a first-level element is refused as soon as it
 *    grows past limits.max_stanza bytes, while it is still incomplete, and
 *    likewise for nesting depth, attribute count, name and value lengths,
 *    and the memory of its tree and of expat. Nothing a peer sends can make
 *    the parser hold more than a fixed multiple of max_stanza, and input
 *    trickled a few bytes at a time costs linear, not quadratic, work.
 *
 * Any violation stops the parser with the RFC 6120 §4.9.3 condition to send
 * in <stream:error/>; it then refuses input until xmpp_parser_reset().
 *
 * Typical use from the session layer:
 *
 *     ssize_t n = xmpp_parser_feed(s->parser, data, len, &session_events, s);
 *     if (n < 0)
 *         send <stream:error> with xmpp_parser_error(), close
 *     return n;   // fewer than len only after xmpp_parser_stop()
 *
 * and xmpp_parser_reset() for the stream restarts after STARTTLS and SASL
 * (RFC 6120 §5.4.3.3, §6.4.6).
 */
#ifndef SB_XMPP_PARSE_H
#define SB_XMPP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "xmpp/xmpp_xml.h"

#define XMPP_NS_STREAMS "http://etherx.jabber.org/streams"
#define XMPP_NS_CLIENT "jabber:client"
#define XMPP_NS_SERVER "jabber:server"

/* Defaults of struct xmpp_parser_limits. */
#define XMPP_MAX_STANZA (256u << 10)
#define XMPP_MAX_DEPTH 64
#define XMPP_MAX_ATTRS 64
#define XMPP_MAX_NAME 1024
#define XMPP_MAX_ATTR_VALUE (64u << 10)
/* Ceilings: larger settings are lowered to these. */
#define XMPP_MAX_STANZA_CEILING (64u << 20)
#define XMPP_MAX_DEPTH_CEILING 1024

/* RFC 6120 §4.9.3 stream error conditions. */
enum xmpp_stream_error {
    XMPP_STREAM_ERR_NONE = 0,
    XMPP_STREAM_ERR_BAD_FORMAT,
    XMPP_STREAM_ERR_BAD_NAMESPACE_PREFIX,
    XMPP_STREAM_ERR_CONFLICT,
    XMPP_STREAM_ERR_CONNECTION_TIMEOUT,
    XMPP_STREAM_ERR_HOST_GONE,
    XMPP_STREAM_ERR_HOST_UNKNOWN,
    XMPP_STREAM_ERR_IMPROPER_ADDRESSING,
    XMPP_STREAM_ERR_INTERNAL_SERVER_ERROR,
    XMPP_STREAM_ERR_INVALID_FROM,
    XMPP_STREAM_ERR_INVALID_NAMESPACE,
    XMPP_STREAM_ERR_INVALID_XML,
    XMPP_STREAM_ERR_NOT_AUTHORIZED,
    XMPP_STREAM_ERR_NOT_WELL_FORMED,
    XMPP_STREAM_ERR_POLICY_VIOLATION,
    XMPP_STREAM_ERR_REMOTE_CONNECTION_FAILED,
    XMPP_STREAM_ERR_RESET,
    XMPP_STREAM_ERR_RESOURCE_CONSTRAINT,
    XMPP_STREAM_ERR_RESTRICTED_XML,
    XMPP_STREAM_ERR_SEE_OTHER_HOST,
    XMPP_STREAM_ERR_SYSTEM_SHUTDOWN,
    XMPP_STREAM_ERR_UNDEFINED_CONDITION,
    XMPP_STREAM_ERR_UNSUPPORTED_ENCODING,
    XMPP_STREAM_ERR_UNSUPPORTED_FEATURE,
    XMPP_STREAM_ERR_UNSUPPORTED_STANZA_TYPE,
    XMPP_STREAM_ERR_UNSUPPORTED_VERSION,
    XMPP_STREAM_ERR_COUNT
};

/* The condition's element name ("not-well-formed"), qualified by
 * urn:ietf:params:xml:ns:xmpp-streams; "undefined-condition" for values out
 * of range. */
const char *xmpp_stream_error_name(enum xmpp_stream_error condition);

/* Zero fields take the defaults above. */
struct xmpp_parser_limits {
    /* Bytes of one first-level element as received (whitespace before it
     * and the element itself), and of the XML declaration plus the stream
     * header. Default XMPP_MAX_STANZA. */
    size_t max_stanza;
    /* Nesting inside a first-level element, which is depth 1. */
    unsigned max_depth;
    /* Attributes of one element (namespace declarations included on the
     * stream header, not counted elsewhere). */
    unsigned max_attrs;
    /* Bytes of an element or attribute name, prefix or namespace URI. */
    size_t max_name;
    /* Bytes of one attribute value, after entity decoding. */
    size_t max_attr_value;
    /* Bytes of memory for the tree of one first-level element (a stanza of
     * many tiny elements costs more than its size). Default 8 x max_stanza. */
    size_t max_tree;
    /* Bytes expat may hold for the stream (its buffer and the names it
     * interns). Default 4 x max_stanza + 256 KiB. */
    size_t max_expat;
};

/* The attributes of the received stream header (RFC 6120 §4.7); NULL when
 * absent. Valid until the next xmpp_parser_reset() or xmpp_parser_free(). */
struct xmpp_stream_header {
    const char *to, *from, *id, *version, *lang;
    /* "stream", or "" for an unprefixed (prefix-free) stream element. */
    const char *prefix;
    /* The content namespace declared as the default namespace (equal to
     * the parser's content namespace), or NULL in the prefix-free style,
     * where each first-level element names its namespace itself. */
    const char *content_ns;
};

/*
 * Callbacks, all optional (NULL). They run inside xmpp_parser_feed(). From
 * a callback, the session may call xmpp_parser_stop(), xmpp_parser_reset()
 * (which then takes effect when feed returns), xmpp_parser_detach() (from
 * stanza only) and the read-only functions; it must not feed or free the
 * parser.
 */
struct xmpp_parse_events {
    /* The stream header arrived and passed the namespace checks. Checking
     * to, version and the rest is the session's business. */
    void (*stream_open)(void *ctx, const struct xmpp_stream_header *header);
    /* One complete first-level element. The tree belongs to the parser and
     * is reused after the callback returns, unless taken with
     * xmpp_parser_detach(). */
    void (*stanza)(void *ctx, struct xmpp_element *stanza);
    /* </stream:stream> arrived. Input after it is ignored. */
    void (*stream_close)(void *ctx);
    /* The parser failed; feed returns -1. text says why, for logs: it may
     * quote a sanitised sample of what the peer sent. */
    void (*error)(void *ctx, enum xmpp_stream_error condition, const char *text);
};

struct xmpp_parser;

/* A parser for a stream whose content namespace is content_ns (NULL:
 * jabber:client). limits NULL: all defaults. NULL when out of memory. */
struct xmpp_parser *xmpp_parser_new(const char *content_ns,
                                    const struct xmpp_parser_limits *limits);
/* Frees the parser (and its current tree) and sets *p to NULL. Not from a
 * callback. Detached trees are the caller's and stay valid. */
void xmpp_parser_free(struct xmpp_parser **p);

/*
 * Parses len bytes, calling ev's callbacks with ctx. Returns:
 *  - len: all consumed (partial tokens are kept inside the parser; bytes
 *    after </stream:stream> are consumed and ignored);
 *  - fewer than len after a callback called xmpp_parser_stop() or
 *    xmpp_parser_reset(): the count up to and including the element (or
 *    stream header) whose callback asked, so that the caller can hand the
 *    rest to the restarted parser, or drop it as STARTTLS requires;
 *  - -1 when the stream must be closed with the error that
 *    xmpp_parser_error() returns (ev->error was called with it).
 */
ssize_t xmpp_parser_feed(struct xmpp_parser *p, const uint8_t *data, size_t len,
                         const struct xmpp_parse_events *ev, void *ctx);

/* Starts over for a new stream on the same connection (after STARTTLS and
 * SASL success): a new expat parser, nothing kept from the old stream. From
 * a callback it also stops the current feed (see xmpp_parser_feed). */
void xmpp_parser_reset(struct xmpp_parser *p);
/* From a callback: parse nothing after the current element; feed returns
 * the bytes consumed so far, and the parser takes no input until reset.
 * For <starttls/>: bytes after it must not be read as part of the new
 * stream (RFC 6120 §5.4.3.3). Outside a callback it does nothing. */
void xmpp_parser_stop(struct xmpp_parser *p);
/* From the stanza callback, for its stanza: the caller takes the tree,
 * freed later with xmpp_element_free(). Returns stanza, or NULL when it is
 * not the stanza being delivered. */
struct xmpp_element *xmpp_parser_detach(struct xmpp_parser *p, struct xmpp_element *stanza);

/* The failure condition (XMPP_STREAM_ERR_NONE while healthy), and in
 * *text_r (when not NULL) a description for logs. */
enum xmpp_stream_error xmpp_parser_error(const struct xmpp_parser *p, const char **text_r);
/* The current stream's header, NULL before it arrived. */
const struct xmpp_stream_header *xmpp_parser_header(const struct xmpp_parser *p);
/* True once </stream:stream> arrived (until reset). */
bool xmpp_parser_closed(const struct xmpp_parser *p);
/* Bytes of the current stream consumed so far (since the last reset). */
uint64_t xmpp_parser_offset(const struct xmpp_parser *p);
/* Bytes of memory the parser holds now (expat, the tree, buffers), for
 * statistics and tests. */
size_t xmpp_parser_memory(const struct xmpp_parser *p);

#endif
