/*
 * A small DOM for one XMPP stanza, and its serializer.
 *
 * The stream parser (xmpp_parse.h) builds one tree per first-level element
 * of the stream; the session layer reads it, and builds replies with the
 * same types. Every tree lives in a document (struct xmpp_doc): an arena of
 * a few blocks freed at once, so a stanza costs no allocation per node and
 * a parsed document's size can be capped. Nodes never move and are never
 * freed one by one; a document is freed with its root.
 *
 * Element and attribute names are local names with a namespace URI beside
 * them (prefixes are dropped, except the ones an attribute needs to be
 * written back). Children are kept in document order, text and elements
 * interleaved, so serializing a parsed stanza gives back an equivalent
 * stanza. Strings are NUL-terminated: XML 1.0 cannot carry U+0000, so
 * parsed text never contains a NUL byte.
 *
 * The serializer writes canonical XML: elements without prefixes, with
 * xmlns='...' wherever the namespace differs from the parent's, attribute
 * values in single quotes, and escaping that guarantees well-formed output
 * even for strings that did not come from the parser (invalid UTF-8 and
 * characters XML 1.0 forbids are replaced by U+FFFD).
 */
#ifndef SB_XMPP_XML_H
#define SB_XMPP_XML_H

#include <stdbool.h>
#include <stddef.h>

/* The namespace of the xml: prefix (xml:lang). */
#define XMPP_NS_XML "http://www.w3.org/XML/1998/namespace"

/*
 * A growable output buffer, reused across stanzas so that steady-state
 * serialization allocates nothing. The content is always NUL-terminated.
 * When an append would pass max (or memory runs out) the buffer keeps what
 * it had, sets failed, and refuses every later append until cleared.
 */
struct xmpp_buf {
    char *data;
    size_t len, cap;
    size_t max; /* most bytes held; 0 = no cap */
    bool failed;
};

void xmpp_buf_init(struct xmpp_buf *b, size_t max);
void xmpp_buf_free(struct xmpp_buf *b);
/* Empties the buffer and clears failed; keeps the memory. */
void xmpp_buf_clear(struct xmpp_buf *b);
/* Appends bytes as they are; false when the buffer failed. */
bool xmpp_buf_append(struct xmpp_buf *b, const void *data, size_t len);
bool xmpp_buf_append_str(struct xmpp_buf *b, const char *s);
/* Appends s escaped for character data (attr false: & < > and CR) or for a
 * quoted attribute value (attr true: also " ' TAB LF, so that attribute
 * value normalization gives back the same string). Invalid UTF-8 and
 * characters outside XML 1.0's Char production become U+FFFD. */
bool xmpp_buf_append_escaped(struct xmpp_buf *b, const char *s, size_t len, bool attr);

enum xmpp_node_type {
    XMPP_NODE_ELEMENT = 1,
    XMPP_NODE_TEXT = 2,
};

/* The header shared by the two kinds of child: an element or a run of text. */
struct xmpp_node {
    struct xmpp_node *next; /* next sibling, NULL for the last */
    enum xmpp_node_type type;
};

struct xmpp_text {
    struct xmpp_node node;
    size_t len;
    char data[]; /* len bytes and a NUL */
};

struct xmpp_attr {
    struct xmpp_attr *next;
    const char *name; /* local name */
    /* NULL for an unqualified attribute (nearly all of them); else the
     * namespace URI, and the prefix to write it with ("xml" for
     * XMPP_NS_XML). */
    const char *ns;
    const char *prefix;
    const char *value;
    size_t value_len;
};

struct xmpp_element {
    struct xmpp_node node; /* first: a node of type XMPP_NODE_ELEMENT is an element */
    struct xmpp_doc *doc;
    const char *name; /* local name */
    const char *ns;   /* namespace URI; "" when the element is in no namespace */
    struct xmpp_attr *attrs, *attrs_tail;
    struct xmpp_node *children, *children_tail;
    /* The element's own character data (its text children concatenated);
     * NULL until computed. Use xmpp_element_text(). */
    const char *text;
    size_t text_len;
};

/*
 * Reading a tree.
 */

/* The node as an element or text, or NULL when it is the other kind. */
struct xmpp_element *xmpp_node_element(const struct xmpp_node *n);
struct xmpp_text *xmpp_node_text(const struct xmpp_node *n);

/* True when e is {ns}name (ns NULL or "": in no namespace). */
bool xmpp_element_is(const struct xmpp_element *e, const char *name, const char *ns);
/* The value of the unqualified attribute name, or NULL. */
const char *xmpp_element_attr(const struct xmpp_element *e, const char *name);
/* The value of the attribute {ns}name, or NULL (ns NULL: unqualified). */
const char *xmpp_element_attr_ns(const struct xmpp_element *e, const char *ns, const char *name);
/* The first child element {ns}name; ns NULL means e's own namespace (how
 * <body/> inherits jabber:client from <message/>), name NULL any name. */
struct xmpp_element *xmpp_element_child(const struct xmpp_element *e, const char *name,
                                        const char *ns);
/* Child elements in order, skipping text:
 *     for (c = xmpp_element_first_child(e); c; c = xmpp_element_next_sibling(c)) */
struct xmpp_element *xmpp_element_first_child(const struct xmpp_element *e);
struct xmpp_element *xmpp_element_next_sibling(const struct xmpp_element *e);
/* The element's character data: its text children concatenated (child
 * elements' text is not included), "" when it has none. *len_r, when not
 * NULL, gets the length. Parsed trees have it ready; on a built tree the
 * first call after add_text may allocate, and returns NULL when that
 * fails. */
const char *xmpp_element_text(const struct xmpp_element *e, size_t *len_r);

/*
 * Building a tree. Strings are copied into the element's document. Names
 * must be valid XML names (they come from our own code, never from a peer:
 * parsed names are valid by construction). A function returning NULL or -1
 * has changed nothing (out of memory, or over the document's cap).
 */

/* A new document whose root is {ns}name (ns NULL or "": no namespace). */
struct xmpp_element *xmpp_element_new(const char *name, const char *ns);
/* Frees the document of a root element (a parsed stanza taken with
 * xmpp_parser_detach, or one made by xmpp_element_new) and sets *root to
 * NULL. Called on an element that is not its document's root, it only sets
 * *root to NULL: inner elements go with their root. */
void xmpp_element_free(struct xmpp_element **root);
/* Appends a child element {ns}name; ns NULL means the parent's namespace. */
struct xmpp_element *xmpp_element_add_child(struct xmpp_element *parent, const char *name,
                                            const char *ns);
/* Sets (adds or replaces) an unqualified attribute. */
int xmpp_element_set_attr(struct xmpp_element *e, const char *name, const char *value);
/* Sets a namespaced attribute, written as prefix:name. For XMPP_NS_XML the
 * prefix is always "xml" (prefix may be NULL). -1 also when prefix is
 * missing, "xmlns", "xml" for another namespace, or already used on e for a
 * different namespace. */
int xmpp_element_set_attr_ns(struct xmpp_element *e, const char *ns, const char *prefix,
                             const char *name, const char *value);
/* Removes the unqualified attribute name, if present. */
void xmpp_element_remove_attr(struct xmpp_element *e, const char *name);
/* Appends character data (len bytes; need not be NUL-terminated). */
int xmpp_element_add_text(struct xmpp_element *e, const char *text, size_t len);
/* Appends a deep copy of src (from any document) as the last child of
 * parent; returns the copy. */
struct xmpp_element *xmpp_element_add_copy(struct xmpp_element *parent,
                                           const struct xmpp_element *src);
/* A deep copy of e as the root of a new document. */
struct xmpp_element *xmpp_element_clone(const struct xmpp_element *e);

/*
 * Writing XML. parent_ns is the default namespace in scope where the
 * element is written: the stream's content namespace ("jabber:client") for
 * a stanza sent on a stream, NULL when none is (the element then declares
 * its namespace unless it has none). Appends to out; -1 when out failed.
 */
int xmpp_element_serialize(const struct xmpp_element *e, const char *parent_ns,
                           struct xmpp_buf *out);

/*
 * Documents, for the parser and for code that wants a size cap on what it
 * builds. A document starts with one block inline (XMPP_DOC_BLOCK bytes)
 * and chains bigger ones as it grows; clearing it keeps the first block, so
 * a parser that reuses one document for small stanzas allocates nothing.
 */
#define XMPP_DOC_BLOCK 4096

struct xmpp_doc;

/* cap: most bytes of blocks the document may hold (0: no cap). */
struct xmpp_doc *xmpp_doc_new(size_t cap);
void xmpp_doc_free(struct xmpp_doc **doc);
/* Forgets the tree and every block but the first. */
void xmpp_doc_clear(struct xmpp_doc *doc);
void xmpp_doc_set_cap(struct xmpp_doc *doc, size_t cap);
struct xmpp_element *xmpp_doc_root(const struct xmpp_doc *doc);
/* Bytes of blocks held. */
size_t xmpp_doc_size(const struct xmpp_doc *doc);
/* True when the last failed allocation failed because of the cap (as
 * opposed to the system being out of memory). */
bool xmpp_doc_over_cap(const struct xmpp_doc *doc);

/* The parser's primitives: counted strings, no checks beyond memory. An
 * element with parent NULL becomes the root (NULL when there is one). The
 * namespace string is shared with the parent's when equal. */
struct xmpp_element *xmpp_doc_add_element(struct xmpp_doc *doc, struct xmpp_element *parent,
                                          const char *name, size_t name_len, const char *ns,
                                          size_t ns_len);
/* Appends an attribute without looking for an existing one of that name.
 * ns NULL: unqualified (prefix ignored). */
struct xmpp_attr *xmpp_doc_add_attr(struct xmpp_doc *doc, struct xmpp_element *e, const char *name,
                                    size_t name_len, const char *ns, size_t ns_len,
                                    const char *prefix, size_t prefix_len, const char *value,
                                    size_t value_len);
struct xmpp_text *xmpp_doc_add_text(struct xmpp_doc *doc, struct xmpp_element *e, const char *text,
                                    size_t len);
/* Computes e->text now, inside the document (and under its cap). */
int xmpp_doc_finish_text(struct xmpp_doc *doc, struct xmpp_element *e);

#endif
