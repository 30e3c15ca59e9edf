/*
 * The stanza DOM and serializer declared in xmpp_xml.h: an arena per
 * document, nodes linked in document order, and an escaping writer that
 * only ever produces well-formed XML.
 */
#include "xmpp/xmpp_xml.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Blocks after the first double up to this size; an allocation above
 * XMPP_DOC_BIG (a long text) gets a block of its own. */
#define XMPP_DOC_BLOCK_MAX (64u << 10)
#define XMPP_DOC_BIG (16u << 10)

struct xmpp_block {
    struct xmpp_block *next;
    size_t size; /* usable bytes in data */
    size_t used;
    max_align_t data[];
};

struct xmpp_doc {
    struct xmpp_block *blocks; /* the block being filled first; first is last */
    struct xmpp_block *first;  /* inline, after this struct */
    size_t held;               /* bytes of blocks, headers included */
    size_t cap;
    bool over_cap;
    struct xmpp_element *root;
};

static const char empty_string[] = "";

/*
 * Output buffer.
 */

void xmpp_buf_init(struct xmpp_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void xmpp_buf_free(struct xmpp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

void xmpp_buf_clear(struct xmpp_buf *b)
{
    b->len = 0;
    b->failed = false;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/* Makes room for extra more bytes and the NUL. */
static bool buf_reserve(struct xmpp_buf *b, size_t extra)
{
    size_t need, cap;
    char *data;

    if (b->failed)
        return false;
    if (extra > SIZE_MAX / 2 - b->len || (b->max != 0 && b->len + extra > b->max)) {
        b->failed = true;
        return false;
    }
    need = b->len + extra + 1;
    if (need <= b->cap)
        return true;
    cap = b->cap < 256 ? 256 : b->cap;
    while (cap < need)
        cap *= 2;
    if (b->max != 0 && cap > b->max + 1)
        cap = b->max + 1;
    data = realloc(b->data, cap);
    if (data == NULL) {
        b->failed = true;
        return false;
    }
    b->data = data;
    b->cap = cap;
    return true;
}

bool xmpp_buf_append(struct xmpp_buf *b, const void *data, size_t len)
{
    if (!buf_reserve(b, len))
        return false;
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return true;
}

bool xmpp_buf_append_str(struct xmpp_buf *b, const char *s)
{
    return xmpp_buf_append(b, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at s (n bytes available) when
 * it encodes a character XML 1.0 allows, else 0. For s[0] >= 0x80. */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
    uint32_t cp;

    if (s[0] < 0xC2 || s[0] > 0xF4) /* continuation byte, overlong lead, or > U+10FFFF */
        return 0;
    if (s[0] < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        return 2; /* U+0080..U+07FF: all allowed */
    }
    if (s[0] < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        cp = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF)
            return 0;
        return 3;
    }
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
        return 0;
    cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
         ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    if (cp < 0x10000 || cp > 0x10FFFF)
        return 0;
    return 4;
}

bool xmpp_buf_append_escaped(struct xmpp_buf *b, const char *str, size_t len, bool attr)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t run = 0, i = 0;

    while (i < len) {
        const char *rep = NULL;
        unsigned char c = s[i];
        size_t n = 1;

        if (c >= 0x80) {
            n = utf8_char_len(s + i, len - i);
            if (n == 0) {
                rep = "\xEF\xBF\xBD";
                n = 1;
            }
        } else if (c == '&') {
            rep = "&amp;";
        } else if (c == '<') {
            rep = "&lt;";
        } else if (c == '>') {
            rep = "&gt;";
        } else if (c == '\r') {
            rep = "&#13;";
        } else if (attr && c == '\'') {
            rep = "&apos;";
        } else if (attr && c == '"') {
            rep = "&quot;";
        } else if (attr && c == '\t') {
            rep = "&#9;";
        } else if (attr && c == '\n') {
            rep = "&#10;";
        } else if (c < 0x20 && c != '\t' && c != '\n') {
            rep = "\xEF\xBF\xBD";
        }
        if (rep == NULL) {
            i += n;
            continue;
        }
        if (!xmpp_buf_append(b, s + run, i - run) || !xmpp_buf_append_str(b, rep))
            return false;
        i += n;
        run = i;
    }
    return xmpp_buf_append(b, s + run, len - run);
}

/*
 * Documents.
 */

static size_t align_up(size_t n, size_t align)
{
    return (n + align - 1) & ~(align - 1);
}

struct xmpp_doc *xmpp_doc_new(size_t cap)
{
    size_t doc_size = align_up(sizeof(struct xmpp_doc), alignof(struct xmpp_block));
    size_t first_size = sizeof(struct xmpp_block) + XMPP_DOC_BLOCK;
    struct xmpp_doc *doc = malloc(doc_size + first_size);

    if (doc == NULL)
        return NULL;
    memset(doc, 0, sizeof(*doc));
    doc->first = (struct xmpp_block *)((char *)doc + doc_size);
    doc->first->next = NULL;
    doc->first->size = XMPP_DOC_BLOCK;
    doc->first->used = 0;
    doc->blocks = doc->first;
    doc->held = doc_size + first_size;
    doc->cap = cap;
    return doc;
}

static void doc_free_blocks(struct xmpp_doc *doc)
{
    struct xmpp_block *b = doc->blocks, *next;

    for (; b != NULL; b = next) {
        next = b->next;
        if (b != doc->first)
            free(b);
    }
    doc->first->used = 0;
    doc->first->next = NULL;
    doc->blocks = doc->first;
    doc->held = align_up(sizeof(struct xmpp_doc), alignof(struct xmpp_block)) +
                sizeof(struct xmpp_block) + XMPP_DOC_BLOCK;
}

void xmpp_doc_free(struct xmpp_doc **docp)
{
    struct xmpp_doc *doc = *docp;

    if (doc == NULL)
        return;
    doc_free_blocks(doc);
    free(doc);
    *docp = NULL;
}

void xmpp_doc_clear(struct xmpp_doc *doc)
{
    doc_free_blocks(doc);
    doc->root = NULL;
    doc->over_cap = false;
}

void xmpp_doc_set_cap(struct xmpp_doc *doc, size_t cap)
{
    doc->cap = cap;
}

struct xmpp_element *xmpp_doc_root(const struct xmpp_doc *doc)
{
    return doc->root;
}

size_t xmpp_doc_size(const struct xmpp_doc *doc)
{
    return doc->held;
}

bool xmpp_doc_over_cap(const struct xmpp_doc *doc)
{
    return doc->over_cap;
}

static struct xmpp_block *doc_new_block(struct xmpp_doc *doc, size_t size)
{
    struct xmpp_block *b;

    if (size > SIZE_MAX / 2)
        return NULL;
    if (doc->cap != 0 && doc->held + sizeof(*b) + size > doc->cap) {
        doc->over_cap = true;
        return NULL;
    }
    b = malloc(sizeof(*b) + size);
    if (b == NULL)
        return NULL;
    b->size = size;
    b->used = 0;
    doc->held += sizeof(*b) + size;
    return b;
}

static void *doc_alloc(struct xmpp_doc *doc, size_t size, size_t align)
{
    struct xmpp_block *b = doc->blocks;
    size_t off = align_up(b->used, align);

    if (off <= b->size && size <= b->size - off) {
        b->used = off + size;
        return (char *)b->data + off;
    }
    if (size > XMPP_DOC_BIG) {
        /* A block of its own, behind the one being filled so that the
         * latter's free space stays usable. */
        struct xmpp_block *big = doc_new_block(doc, size);
        if (big == NULL)
            return NULL;
        big->used = size;
        big->next = b->next;
        b->next = big;
        return big->data;
    }
    size_t next_size = b->size * 2 > XMPP_DOC_BLOCK_MAX ? XMPP_DOC_BLOCK_MAX : b->size * 2;
    if (next_size < size)
        next_size = size;
    struct xmpp_block *nb = doc_new_block(doc, next_size);
    if (nb == NULL)
        return NULL;
    nb->next = b;
    nb->used = size;
    doc->blocks = nb;
    return nb->data;
}

/* Copies len bytes and a NUL to dst; returns dst. */
static char *copy_string(char *dst, const char *src, size_t len)
{
    if (len > 0)
        memcpy(dst, src, len);
    dst[len] = '\0';
    return dst;
}

static bool string_is(const char *s, const char *counted, size_t len)
{
    return strncmp(s, counted, len) == 0 && s[len] == '\0';
}

static void append_child(struct xmpp_element *parent, struct xmpp_node *n)
{
    n->next = NULL;
    if (parent->children_tail != NULL)
        parent->children_tail->next = n;
    else
        parent->children = n;
    parent->children_tail = n;
    parent->text = NULL;
}

struct xmpp_element *xmpp_doc_add_element(struct xmpp_doc *doc, struct xmpp_element *parent,
                                          const char *name, size_t name_len, const char *ns,
                                          size_t ns_len)
{
    const char *shared_ns = NULL;
    struct xmpp_element *e;
    size_t size;

    if (parent == NULL && doc->root != NULL)
        return NULL;
    if (ns_len == 0)
        shared_ns = empty_string;
    else if (parent != NULL && string_is(parent->ns, ns, ns_len))
        shared_ns = parent->ns;
    if (name_len > SIZE_MAX / 4 || ns_len > SIZE_MAX / 4)
        return NULL;
    size = sizeof(*e) + name_len + 1 + (shared_ns != NULL ? 0 : ns_len + 1);
    e = doc_alloc(doc, size, alignof(struct xmpp_element));
    if (e == NULL)
        return NULL;
    memset(e, 0, sizeof(*e));
    e->node.type = XMPP_NODE_ELEMENT;
    e->doc = doc;
    e->name = copy_string((char *)(e + 1), name, name_len);
    e->ns = shared_ns != NULL ? shared_ns : copy_string((char *)(e + 1) + name_len + 1, ns, ns_len);
    if (parent != NULL)
        append_child(parent, &e->node);
    else
        doc->root = e;
    return e;
}

/* Allocates an attribute with its strings, unlinked. */
static struct xmpp_attr *attr_alloc(struct xmpp_doc *doc, const char *name, size_t name_len,
                                    const char *ns, size_t ns_len, const char *prefix,
                                    size_t prefix_len, const char *value, size_t value_len)
{
    bool xml_ns = ns != NULL && string_is(XMPP_NS_XML, ns, ns_len);
    struct xmpp_attr *a;
    size_t size;
    char *s;

    if (name_len > SIZE_MAX / 8 || ns_len > SIZE_MAX / 8 || prefix_len > SIZE_MAX / 8 ||
        value_len > SIZE_MAX / 8)
        return NULL;
    size = sizeof(*a) + name_len + 1 + value_len + 1;
    if (ns != NULL && !xml_ns)
        size += ns_len + 1 + prefix_len + 1;
    a = doc_alloc(doc, size, alignof(struct xmpp_attr));
    if (a == NULL)
        return NULL;
    s = (char *)(a + 1);
    a->next = NULL;
    a->name = copy_string(s, name, name_len);
    s += name_len + 1;
    a->value = copy_string(s, value, value_len);
    a->value_len = value_len;
    s += value_len + 1;
    if (ns == NULL) {
        a->ns = a->prefix = NULL;
    } else if (xml_ns) {
        a->ns = XMPP_NS_XML;
        a->prefix = "xml";
    } else {
        a->ns = copy_string(s, ns, ns_len);
        s += ns_len + 1;
        a->prefix = copy_string(s, prefix, prefix_len);
    }
    return a;
}

static void append_attr(struct xmpp_element *e, struct xmpp_attr *a)
{
    a->next = NULL;
    if (e->attrs_tail != NULL)
        e->attrs_tail->next = a;
    else
        e->attrs = a;
    e->attrs_tail = a;
}

struct xmpp_attr *xmpp_doc_add_attr(struct xmpp_doc *doc, struct xmpp_element *e, const char *name,
                                    size_t name_len, const char *ns, size_t ns_len,
                                    const char *prefix, size_t prefix_len, const char *value,
                                    size_t value_len)
{
    struct xmpp_attr *a =
        attr_alloc(doc, name, name_len, ns, ns_len, prefix, prefix_len, value, value_len);

    if (a != NULL)
        append_attr(e, a);
    return a;
}

struct xmpp_text *xmpp_doc_add_text(struct xmpp_doc *doc, struct xmpp_element *e, const char *text,
                                    size_t len)
{
    struct xmpp_text *t;

    if (len > SIZE_MAX / 2)
        return NULL;
    t = doc_alloc(doc, sizeof(*t) + len + 1, alignof(struct xmpp_text));
    if (t == NULL)
        return NULL;
    t->node.type = XMPP_NODE_TEXT;
    t->len = len;
    copy_string(t->data, text, len);
    append_child(e, &t->node);
    return t;
}

int xmpp_doc_finish_text(struct xmpp_doc *doc, struct xmpp_element *e)
{
    struct xmpp_text *only = NULL;
    size_t total = 0, count = 0;
    char *s;

    for (struct xmpp_node *n = e->children; n != NULL; n = n->next) {
        if (n->type != XMPP_NODE_TEXT)
            continue;
        only = (struct xmpp_text *)n;
        total += only->len;
        count++;
    }
    if (count <= 1) {
        e->text = only != NULL ? only->data : empty_string;
        e->text_len = total;
        return 0;
    }
    s = doc_alloc(doc, total + 1, 1);
    if (s == NULL)
        return -1;
    e->text = s;
    e->text_len = total;
    for (struct xmpp_node *n = e->children; n != NULL; n = n->next) {
        if (n->type != XMPP_NODE_TEXT)
            continue;
        memcpy(s, ((struct xmpp_text *)n)->data, ((struct xmpp_text *)n)->len);
        s += ((struct xmpp_text *)n)->len;
    }
    *s = '\0';
    return 0;
}

/*
 * Reading.
 */

struct xmpp_element *xmpp_node_element(const struct xmpp_node *n)
{
    return n != NULL && n->type == XMPP_NODE_ELEMENT ? (struct xmpp_element *)n : NULL;
}

struct xmpp_text *xmpp_node_text(const struct xmpp_node *n)
{
    return n != NULL && n->type == XMPP_NODE_TEXT ? (struct xmpp_text *)n : NULL;
}

bool xmpp_element_is(const struct xmpp_element *e, const char *name, const char *ns)
{
    return strcmp(e->name, name) == 0 && strcmp(e->ns, ns != NULL ? ns : "") == 0;
}

const char *xmpp_element_attr(const struct xmpp_element *e, const char *name)
{
    return xmpp_element_attr_ns(e, NULL, name);
}

const char *xmpp_element_attr_ns(const struct xmpp_element *e, const char *ns, const char *name)
{
    for (const struct xmpp_attr *a = e->attrs; a != NULL; a = a->next) {
        if (strcmp(a->name, name) != 0)
            continue;
        if (ns == NULL ? a->ns == NULL : a->ns != NULL && strcmp(a->ns, ns) == 0)
            return a->value;
    }
    return NULL;
}

struct xmpp_element *xmpp_element_child(const struct xmpp_element *e, const char *name,
                                        const char *ns)
{
    if (ns == NULL)
        ns = e->ns;
    for (struct xmpp_element *c = xmpp_element_first_child(e); c != NULL;
         c = xmpp_element_next_sibling(c)) {
        if ((name == NULL || strcmp(c->name, name) == 0) && strcmp(c->ns, ns) == 0)
            return c;
    }
    return NULL;
}

static struct xmpp_element *next_element(const struct xmpp_node *n)
{
    for (; n != NULL; n = n->next) {
        if (n->type == XMPP_NODE_ELEMENT)
            return (struct xmpp_element *)n;
    }
    return NULL;
}

struct xmpp_element *xmpp_element_first_child(const struct xmpp_element *e)
{
    return next_element(e->children);
}

struct xmpp_element *xmpp_element_next_sibling(const struct xmpp_element *e)
{
    return next_element(e->node.next);
}

const char *xmpp_element_text(const struct xmpp_element *e, size_t *len_r)
{
    if (e->text == NULL) {
        /* A cache filled on first use: the element is logically const. */
        struct xmpp_element *m = (struct xmpp_element *)e;
        if (xmpp_doc_finish_text(m->doc, m) < 0)
            return NULL;
    }
    if (len_r != NULL)
        *len_r = e->text_len;
    return e->text;
}

/*
 * Building.
 */

struct xmpp_element *xmpp_element_new(const char *name, const char *ns)
{
    struct xmpp_doc *doc = xmpp_doc_new(0);
    struct xmpp_element *e;

    if (doc == NULL)
        return NULL;
    if (ns == NULL)
        ns = "";
    e = xmpp_doc_add_element(doc, NULL, name, strlen(name), ns, strlen(ns));
    if (e == NULL)
        xmpp_doc_free(&doc);
    return e;
}

void xmpp_element_free(struct xmpp_element **rootp)
{
    struct xmpp_element *root = *rootp;

    if (root != NULL && root->doc->root == root) {
        struct xmpp_doc *doc = root->doc;
        xmpp_doc_free(&doc);
    }
    *rootp = NULL;
}

struct xmpp_element *xmpp_element_add_child(struct xmpp_element *parent, const char *name,
                                            const char *ns)
{
    if (ns == NULL)
        ns = parent->ns;
    return xmpp_doc_add_element(parent->doc, parent, name, strlen(name), ns, strlen(ns));
}

static struct xmpp_attr *find_attr(struct xmpp_element *e, const char *ns, const char *name,
                                   struct xmpp_attr **prev_r)
{
    struct xmpp_attr *prev = NULL;

    for (struct xmpp_attr *a = e->attrs; a != NULL; prev = a, a = a->next) {
        if (strcmp(a->name, name) != 0)
            continue;
        if (ns == NULL ? a->ns == NULL : a->ns != NULL && strcmp(a->ns, ns) == 0) {
            if (prev_r != NULL)
                *prev_r = prev;
            return a;
        }
    }
    return NULL;
}

static int set_attr(struct xmpp_element *e, const char *ns, const char *prefix, const char *name,
                    const char *value)
{
    struct xmpp_attr *old = find_attr(e, ns, name, NULL), *a;
    size_t value_len = strlen(value);

    if (old != NULL) {
        char *copy = doc_alloc(e->doc, value_len + 1, 1);
        if (copy == NULL)
            return -1;
        old->value = copy_string(copy, value, value_len);
        old->value_len = value_len;
        return 0;
    }
    a = attr_alloc(e->doc, name, strlen(name), ns, ns != NULL ? strlen(ns) : 0, prefix,
                   prefix != NULL ? strlen(prefix) : 0, value, value_len);
    if (a == NULL)
        return -1;
    append_attr(e, a);
    return 0;
}

int xmpp_element_set_attr(struct xmpp_element *e, const char *name, const char *value)
{
    return set_attr(e, NULL, NULL, name, value);
}

int xmpp_element_set_attr_ns(struct xmpp_element *e, const char *ns, const char *prefix,
                             const char *name, const char *value)
{
    if (ns == NULL || ns[0] == '\0')
        return set_attr(e, NULL, NULL, name, value);
    if (strcmp(ns, XMPP_NS_XML) == 0)
        return set_attr(e, XMPP_NS_XML, "xml", name, value);
    if (prefix == NULL || prefix[0] == '\0' || strcmp(prefix, "xml") == 0 ||
        strcmp(prefix, "xmlns") == 0)
        return -1;
    /* One prefix, one namespace per element, or the declarations clash. */
    for (const struct xmpp_attr *a = e->attrs; a != NULL; a = a->next) {
        if (a->ns != NULL && strcmp(a->prefix, prefix) == 0 && strcmp(a->ns, ns) != 0)
            return -1;
    }
    return set_attr(e, ns, prefix, name, value);
}

void xmpp_element_remove_attr(struct xmpp_element *e, const char *name)
{
    struct xmpp_attr *prev = NULL, *a = find_attr(e, NULL, name, &prev);

    if (a == NULL)
        return;
    if (prev != NULL)
        prev->next = a->next;
    else
        e->attrs = a->next;
    if (e->attrs_tail == a)
        e->attrs_tail = prev;
}

int xmpp_element_add_text(struct xmpp_element *e, const char *text, size_t len)
{
    return xmpp_doc_add_text(e->doc, e, text, len) != NULL ? 0 : -1;
}

/* Copies src's attributes and children into dst (same name and namespace
 * already). Recursion is bounded by the depth of src, which the parser
 * caps for parsed trees. */
static int copy_content(struct xmpp_element *dst, const struct xmpp_element *src)
{
    for (const struct xmpp_attr *a = src->attrs; a != NULL; a = a->next) {
        if (xmpp_doc_add_attr(dst->doc, dst, a->name, strlen(a->name), a->ns,
                              a->ns != NULL ? strlen(a->ns) : 0, a->prefix,
                              a->prefix != NULL ? strlen(a->prefix) : 0, a->value,
                              a->value_len) == NULL)
            return -1;
    }
    for (const struct xmpp_node *n = src->children; n != NULL; n = n->next) {
        if (n->type == XMPP_NODE_TEXT) {
            const struct xmpp_text *t = (const struct xmpp_text *)n;
            if (xmpp_doc_add_text(dst->doc, dst, t->data, t->len) == NULL)
                return -1;
        } else {
            const struct xmpp_element *c = (const struct xmpp_element *)n;
            struct xmpp_element *copy =
                xmpp_doc_add_element(dst->doc, dst, c->name, strlen(c->name), c->ns, strlen(c->ns));
            if (copy == NULL || copy_content(copy, c) < 0)
                return -1;
        }
    }
    return 0;
}

struct xmpp_element *xmpp_element_add_copy(struct xmpp_element *parent,
                                           const struct xmpp_element *src)
{
    struct xmpp_node *old_tail = parent->children_tail;
    struct xmpp_element *copy = xmpp_doc_add_element(parent->doc, parent, src->name,
                                                     strlen(src->name), src->ns, strlen(src->ns));

    if (copy != NULL && copy_content(copy, src) == 0)
        return copy;
    if (copy != NULL) {
        /* Unlink the partial copy; its memory goes with the document. */
        if (old_tail != NULL)
            old_tail->next = NULL;
        else
            parent->children = NULL;
        parent->children_tail = old_tail;
        parent->text = NULL;
    }
    return NULL;
}

struct xmpp_element *xmpp_element_clone(const struct xmpp_element *e)
{
    struct xmpp_element *copy = xmpp_element_new(e->name, e->ns);

    if (copy != NULL && copy_content(copy, e) < 0)
        xmpp_element_free(&copy);
    return copy;
}

/*
 * Serializing.
 */

static bool put_attr(struct xmpp_buf *out, const char *prefix, const char *name, const char *value,
                     size_t value_len)
{
    xmpp_buf_append(out, " ", 1);
    if (prefix != NULL) {
        xmpp_buf_append_str(out, prefix);
        xmpp_buf_append(out, ":", 1);
    }
    xmpp_buf_append_str(out, name);
    xmpp_buf_append(out, "='", 2);
    xmpp_buf_append_escaped(out, value, value_len, true);
    return xmpp_buf_append(out, "'", 1);
}

static bool put_element(const struct xmpp_element *e, const char *parent_ns, struct xmpp_buf *out)
{
    xmpp_buf_append(out, "<", 1);
    xmpp_buf_append_str(out, e->name);
    if (parent_ns != NULL ? strcmp(e->ns, parent_ns) != 0 : e->ns[0] != '\0')
        put_attr(out, NULL, "xmlns", e->ns, strlen(e->ns));
    for (const struct xmpp_attr *a = e->attrs; a != NULL; a = a->next) {
        if (a->ns != NULL && strcmp(a->ns, XMPP_NS_XML) != 0) {
            /* Declare the prefix unless an earlier attribute did. */
            bool declared = false;
            for (const struct xmpp_attr *b = e->attrs; b != a; b = b->next)
                declared |= b->ns != NULL && strcmp(b->prefix, a->prefix) == 0;
            if (!declared)
                put_attr(out, "xmlns", a->prefix, a->ns, strlen(a->ns));
        }
        put_attr(out, a->ns != NULL ? a->prefix : NULL, a->name, a->value, a->value_len);
    }
    if (e->children == NULL)
        return xmpp_buf_append(out, "/>", 2);
    xmpp_buf_append(out, ">", 1);
    for (const struct xmpp_node *n = e->children; n != NULL && !out->failed; n = n->next) {
        if (n->type == XMPP_NODE_TEXT) {
            const struct xmpp_text *t = (const struct xmpp_text *)n;
            xmpp_buf_append_escaped(out, t->data, t->len, false);
        } else {
            put_element((const struct xmpp_element *)n, e->ns, out);
        }
    }
    xmpp_buf_append(out, "</", 2);
    xmpp_buf_append_str(out, e->name);
    return xmpp_buf_append(out, ">", 1);
}

int xmpp_element_serialize(const struct xmpp_element *e, const char *parent_ns,
                           struct xmpp_buf *out)
{
    return put_element(e, parent_ns, out) ? 0 : -1;
}
