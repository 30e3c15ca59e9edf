/*
 * The roster (RFC 6121 §2) of the c2s worker, kept by the store
 * (roster.get / roster.set / roster.remove, see workers/store_ops.c).
 *
 * A roster get (§2.1.3) with versioning (§2.6): the client's 'ver' goes to
 * the store as `since`; a "delta" answer is an empty result followed by
 * one roster push per changed item, a "full" one the whole roster in the
 * result. A roster set (§2.3, §2.5) is validated here, then stored, then
 * pushed (§2.1.6) to every session of the account on this worker that has
 * asked for the roster (an "interested resource"), the requester included,
 * and answered with an empty result.
 *
 * Clients cannot change subscription states (§2.1.2.5): a set first reads
 * the roster and writes the item with the stored subscription, pending ask
 * and pre-approval (those of a new item: none), which only the subscription
 * state machine (xmpp_presence.c) changes.
 *
 * The store answers asynchronously: a request carries a small context with
 * the connection id (the session may be gone by then), the iq id, and for
 * a set the <item/> to push once the new version is known.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"
#include "xmpp/xmpp_session.h"

#define XMPP_NS_ROSTER "jabber:iq:roster"

/* The fields of one item as the store lists it (contact, name,
 * subscription, ask, approved, groups). */
#define ROSTER_FIELDS 6

enum roster_op { ROSTER_GET, ROSTER_SET, ROSTER_REMOVE };

/* One pending store request. */
struct roster_call {
    enum roster_op op;
    uint64_t conn;
    bool with_ver; /* the get carried 'ver': answer with versions */
    char *id;      /* the iq id */
    char *bare;    /* the account, for the pushes */
    char *item;    /* set/remove: the <item/> to push */
    size_t item_len;
    /* set: the fields to store once the item's subscription state is read */
    char *contact, *name, *groups;
};

static void call_free(struct roster_call *c)
{
    free(c->id);
    free(c->bare);
    free(c->item);
    free(c->contact);
    free(c->name);
    free(c->groups);
    free(c);
}

/* The session the call came from, if it is still there. */
static struct xmpp_session *call_session(struct xmpp_server *srv, const struct roster_call *c)
{
    struct conn *conn = worker_conn_find(srv->w, c->conn);
    struct xmpp_session *s = conn != NULL ? conn_data(conn) : NULL;

    if (s == NULL || !s->bound || s->closing)
        return NULL;
    if (s->roster_pending > 0)
        s->roster_pending--;
    return s;
}

static void reply_error(struct xmpp_session *s, const char *id, const char *condition,
                        const char *text)
{
    struct xmpp_buf *b = &s->srv->reply;

    xmpp_buf_clear(b);
    if (xmpp_error_stanza(b, "iq", NULL, s->jid, id, xmpp_error_type(condition), condition, text) ==
        0)
        xmpp_session_write(s, b->data, b->len);
}

static void result_open(struct xmpp_buf *b, struct xmpp_session *s, const char *id)
{
    xmpp_buf_append_str(b, "<iq type='result' to='");
    xmpp_buf_append_escaped(b, s->jid, s->jid_len, true);
    xmpp_buf_append_str(b, "' id='");
    xmpp_buf_append_escaped(b, id, strlen(id), true);
    xmpp_buf_append_str(b, "'");
}

bool xmpp_store_fields(struct ipc_slice v, struct ipc_slice *f, size_t n)
{
    const uint8_t *p = v.ptr, *end = v.ptr + v.len;

    for (size_t i = 0; i < n; i++) {
        const uint8_t *nul = i + 1 < n ? memchr(p, '\0', (size_t)(end - p)) : end;

        if (nul == NULL)
            return false;
        f[i] = (struct ipc_slice){p, (uint32_t)(nul - p)};
        p = nul + (i + 1 < n);
    }
    return memchr(f[n - 1].ptr, '\0', f[n - 1].len) == NULL;
}

/* Appends one stored item (a store ARG) as <item/>; false when malformed. */
static bool append_stored_item(struct xmpp_buf *b, struct ipc_slice v)
{
    struct ipc_slice f[ROSTER_FIELDS];
    const uint8_t *g, *end;

    if (!xmpp_store_fields(v, f, ROSTER_FIELDS) || f[0].len == 0 || f[2].len == 0)
        return false;
    xmpp_buf_append_str(b, "<item jid='");
    xmpp_buf_append_escaped(b, (const char *)f[0].ptr, f[0].len, true);
    xmpp_buf_append_str(b, "'");
    if (f[1].len > 0) {
        xmpp_buf_append_str(b, " name='");
        xmpp_buf_append_escaped(b, (const char *)f[1].ptr, f[1].len, true);
        xmpp_buf_append_str(b, "'");
    }
    xmpp_buf_append_str(b, " subscription='");
    xmpp_buf_append_escaped(b, (const char *)f[2].ptr, f[2].len, true);
    xmpp_buf_append_str(b, "'");
    if (ipc_slice_eq(f[3], "subscribe"))
        xmpp_buf_append_str(b, " ask='subscribe'");
    if (ipc_slice_eq(f[4], "1"))
        xmpp_buf_append_str(b, " approved='true'");
    if (f[5].len == 0) {
        xmpp_buf_append_str(b, "/>");
        return true;
    }
    xmpp_buf_append_str(b, ">");
    for (g = f[5].ptr, end = f[5].ptr + f[5].len; g < end;) {
        const uint8_t *nl = memchr(g, '\n', (size_t)(end - g));

        if (nl == NULL)
            nl = end;
        xmpp_buf_append_str(b, "<group>");
        xmpp_buf_append_escaped(b, (const char *)g, (size_t)(nl - g), false);
        xmpp_buf_append_str(b, "</group>");
        g = nl + 1;
    }
    xmpp_buf_append_str(b, "</item>");
    return true;
}

/* A roster push (§2.1.6) of one <item/> to one session. */
static void push_item(struct xmpp_session *s, const char *ver, const char *item, size_t len)
{
    struct xmpp_buf *b = &s->srv->reply;
    char id[32];

    snprintf(id, sizeof(id), "push%" PRIu64, ++s->srv->push_seq);
    xmpp_buf_clear(b);
    xmpp_buf_append_str(b, "<iq type='set' to='");
    xmpp_buf_append_escaped(b, s->jid, s->jid_len, true);
    xmpp_buf_append_str(b, "' id='");
    xmpp_buf_append_str(b, id);
    xmpp_buf_append_str(b, "'><query xmlns='" XMPP_NS_ROSTER "'");
    if (ver != NULL) {
        xmpp_buf_append_str(b, " ver='");
        xmpp_buf_append_escaped(b, ver, strlen(ver), true);
        xmpp_buf_append_str(b, "'");
    }
    xmpp_buf_append_str(b, ">");
    xmpp_buf_append(b, item, len);
    xmpp_buf_append_str(b, "</query></iq>");
    if (!b->failed)
        xmpp_session_write(s, b->data, b->len);
}

void xmpp_roster_push(struct xmpp_server *srv, const char *bare, const char *ver, const char *item,
                      size_t len)
{
    struct xmpp_account *a = hashmap_get(&srv->accounts, bare, strlen(bare));

    for (struct xmpp_session *p = a != NULL ? a->sessions : NULL; p != NULL; p = p->acct_next)
        if (p->roster_interested && !p->closing)
            push_item(p, ver, item, len);
}

/* --- roster get --- */

static void get_done(void *ctx, const struct ipc_msg *m)
{
    struct roster_call *c = ctx;
    struct xmpp_server *srv = xmpp_server_get();
    struct xmpp_session *s = srv != NULL ? call_session(srv, c) : NULL;
    char ver[32];
    struct ipc_slice v;
    uint32_t offset = 0;
    bool delta = ipc_slice_eq(m->reason, "delta");
    bool full = ipc_slice_eq(m->reason, "full");
    struct xmpp_buf *b;

    if (s == NULL)
        goto out;
    if (m->code != IPC_CODE_OK || !ipc_msg_each(m, IPC_F_ARG, &offset, &v) || v.len == 0 ||
        v.len >= sizeof(ver)) {
        /* NOT_FOUND is "no account": the roster does not exist (§2.1.3). */
        reply_error(s, c->id,
                    m->code == IPC_CODE_NOT_FOUND ? "item-not-found" : "internal-server-error",
                    NULL);
        goto out;
    }
    ipc_slice_cstr(v, ver, sizeof(ver));
    s->roster_interested = true;
    if (delta && c->with_ver) {
        struct xmpp_buf *item = &srv->out;

        /* §2.6.3: an empty result, then the changes as pushes. The store
         * gives only the final version, which every push carries. */
        b = &srv->reply;
        xmpp_buf_clear(b);
        result_open(b, s, c->id);
        xmpp_buf_append_str(b, "/>");
        if (!b->failed)
            xmpp_session_write(s, b->data, b->len);
        while (ipc_msg_each(m, IPC_F_ARG, &offset, &v)) {
            xmpp_buf_clear(item);
            if (append_stored_item(item, v) && !item->failed)
                push_item(s, ver, item->data, item->len);
        }
        goto out;
    }
    b = &srv->reply;
    xmpp_buf_clear(b);
    result_open(b, s, c->id);
    xmpp_buf_append_str(b, "><query xmlns='" XMPP_NS_ROSTER "'");
    /* A truncated roster must not be cached: no version then. */
    if (c->with_ver && (full || delta)) {
        xmpp_buf_append_str(b, " ver='");
        xmpp_buf_append_str(b, ver);
        xmpp_buf_append_str(b, "'");
    }
    xmpp_buf_append_str(b, ">");
    while (ipc_msg_each(m, IPC_F_ARG, &offset, &v)) {
        /* A delta answered without versioning lists removals too. */
        struct ipc_slice f[ROSTER_FIELDS];

        if (xmpp_store_fields(v, f, ROSTER_FIELDS) && ipc_slice_eq(f[2], "remove"))
            continue;
        append_stored_item(b, v);
    }
    xmpp_buf_append_str(b, "</query></iq>");
    if (b->failed)
        reply_error(s, c->id, "resource-constraint", "roster too large");
    else
        xmpp_session_write(s, b->data, b->len);
out:
    call_free(c);
}

/* --- roster set --- */

static void set_done(void *ctx, const struct ipc_msg *m)
{
    struct roster_call *c = ctx;
    struct xmpp_server *srv = xmpp_server_get();
    struct xmpp_session *s = srv != NULL ? call_session(srv, c) : NULL;
    struct ipc_slice v;
    uint32_t offset = 0;
    char ver[32];

    if (srv == NULL)
        goto out;
    if (m->code != IPC_CODE_OK || !ipc_msg_each(m, IPC_F_ARG, &offset, &v) || v.len == 0 ||
        v.len >= sizeof(ver)) {
        const char *condition = "internal-server-error", *text = NULL;

        if (m->code == IPC_CODE_NOT_FOUND) {
            condition = "item-not-found";
        } else if (m->code == IPC_CODE_BAD_REQUEST) {
            condition =
                ipc_slice_eq(m->reason, "roster full") ? "resource-constraint" : "not-acceptable";
            text = condition[0] == 'r' ? "roster full" : NULL;
        }
        if (s != NULL)
            reply_error(s, c->id, condition, text);
        goto out;
    }
    ipc_slice_cstr(v, ver, sizeof(ver));
    /* §2.3.2: push to every interested resource, then the result. */
    xmpp_roster_push(srv, c->bare, ver, c->item, c->item_len);
    if (s != NULL) {
        struct xmpp_buf *b = &srv->reply;

        xmpp_buf_clear(b);
        result_open(b, s, c->id);
        xmpp_buf_append_str(b, "/>");
        if (!b->failed)
            xmpp_session_write(s, b->data, b->len);
    }
out:
    call_free(c);
}

static struct ipc_slice str_slice(const char *str, size_t len)
{
    return (struct ipc_slice){(const uint8_t *)str, (uint32_t)len};
}

/* A set, once the item's stored state is read: stores the item with the
 * client's name and groups and the stored subscription, ask and
 * pre-approval, and puts them in the push. */
static void set_read_done(void *ctx, const struct ipc_msg *m)
{
    static const char none_attr[] = " subscription='none'";
    struct roster_call *c = ctx;
    struct xmpp_server *srv = xmpp_server_get();
    struct ipc_slice v, f[ROSTER_FIELDS], sub = {(const uint8_t *)"none", 4}, ask = {NULL, 0};
    struct ipc_slice approved = {(const uint8_t *)"0", 1}, args[8];
    uint32_t offset = 0;
    char *at;

    if (srv == NULL || m->code != IPC_CODE_OK) {
        set_done(c, m);
        return;
    }
    ipc_msg_each(m, IPC_F_ARG, &offset, &v); /* the version */
    while (ipc_msg_each(m, IPC_F_ARG, &offset, &v))
        if (xmpp_store_fields(v, f, ROSTER_FIELDS) && ipc_slice_eq(f[0], c->contact)) {
            if (!ipc_slice_eq(f[2], "remove")) {
                sub = f[2];
                ask = f[3];
                approved = f[4];
            }
            break;
        }
    /* The push was built with subscription 'none': attribute values are
     * escaped, so the first such text is the attribute. */
    at = strstr(c->item, none_attr);
    if (at != NULL && sub.len <= 4) {
        size_t head = (size_t)(at - c->item), tail = c->item_len - head - (sizeof(none_attr) - 1);
        char attrs[64];
        int n = snprintf(attrs, sizeof(attrs), " subscription='%.*s'%s%s", (int)sub.len,
                         (const char *)sub.ptr,
                         ipc_slice_eq(ask, "subscribe") ? " ask='subscribe'" : "",
                         ipc_slice_eq(approved, "1") ? " approved='true'" : "");
        char *item = malloc(head + (size_t)n + tail + 1);

        if (item != NULL) {
            memcpy(item, c->item, head);
            memcpy(item + head, attrs, (size_t)n);
            memcpy(item + head + (size_t)n, at + sizeof(none_attr) - 1, tail);
            item[head + (size_t)n + tail] = '\0';
            free(c->item);
            c->item = item;
            c->item_len = head + (size_t)n + tail;
        }
    }
    args[0] = str_slice(c->bare, strcspn(c->bare, "@"));
    args[1] = str_slice(strchr(c->bare, '@') + 1, strlen(strchr(c->bare, '@') + 1));
    args[2] = str_slice(c->contact, strlen(c->contact));
    args[3] = str_slice(c->name, strlen(c->name));
    args[4] = sub;
    args[5] = ask;
    args[6] = approved;
    args[7] = str_slice(c->groups, strlen(c->groups));
    worker_request(srv->w, "store", "roster.set", args, 8, XMPP_STORE_TIMEOUT_MS, set_done, c);
}

/* True when the group names repeat (compared bytewise: they are stored
 * as given, and the RFC leaves the comparison to the server). */
static bool groups_repeat(const struct xmpp_element *item)
{
    for (struct xmpp_element *g = xmpp_element_first_child(item); g != NULL;
         g = xmpp_element_next_sibling(g)) {
        size_t len, len2;
        const char *t = xmpp_element_text(g, &len);

        for (struct xmpp_element *h = xmpp_element_next_sibling(g); h != NULL;
             h = xmpp_element_next_sibling(h)) {
            const char *u = xmpp_element_text(h, &len2);

            if (xmpp_element_is(g, "group", XMPP_NS_ROSTER) &&
                xmpp_element_is(h, "group", XMPP_NS_ROSTER) && t != NULL && u != NULL &&
                len == len2 && memcmp(t, u, len) == 0)
                return true;
        }
    }
    return false;
}

/* Checks a roster set's <item/> (§2.3.3, §2.5.3); on success fills the
 * normalized contact, the store's groups field (names joined by '\n') in
 * groups, and the <item/> to push in push. NULL or the error condition. */
static const char *check_item(struct xmpp_session *s, const struct xmpp_element *item,
                              struct xmpp_jid *contact, bool *remove_r, struct xmpp_buf *groups,
                              struct xmpp_buf *push)
{
    const char *jid = xmpp_element_attr(item, "jid"), *name = xmpp_element_attr(item, "name");
    const char *sub = xmpp_element_attr(item, "subscription"), *error;
    size_t n_groups = 0;

    if (jid == NULL || xmpp_jid_parse(contact, jid, strlen(jid), &error) < 0)
        return "bad-request";
    /* Interoperability note of §2.3.3: the account's own bare JID. */
    if (contact->len == s->bare_len && memcmp(contact->str, s->jid, s->bare_len) == 0)
        return "not-allowed";
    *remove_r = sub != NULL && strcmp(sub, "remove") == 0;
    xmpp_buf_append_str(push, "<item jid='");
    xmpp_buf_append_escaped(push, contact->str, contact->len, true);
    xmpp_buf_append_str(push, "'");
    if (*remove_r) {
        xmpp_buf_append_str(push, " subscription='remove'/>");
        return push->failed ? "internal-server-error" : NULL;
    }
    if (name != NULL) {
        size_t len = strlen(name);

        if (len > XMPP_ROSTER_NAME_MAX || !xmpp_text_clean(name, len))
            return "not-acceptable";
        if (len > 0) {
            xmpp_buf_append_str(push, " name='");
            xmpp_buf_append_escaped(push, name, len, true);
            xmpp_buf_append_str(push, "'");
        }
    }
    xmpp_buf_append_str(push, " subscription='none'>");
    if (groups_repeat(item))
        return "bad-request";
    for (struct xmpp_element *g = xmpp_element_first_child(item); g != NULL;
         g = xmpp_element_next_sibling(g)) {
        size_t len;
        const char *t;

        if (!xmpp_element_is(g, "group", XMPP_NS_ROSTER))
            continue;
        t = xmpp_element_text(g, &len);
        if (t == NULL)
            return "internal-server-error";
        if (len == 0 || len > XMPP_ROSTER_GROUP_MAX || !xmpp_text_clean(t, len) ||
            ++n_groups > XMPP_ROSTER_GROUPS_MAX)
            return "not-acceptable";
        if (groups->len > 0)
            xmpp_buf_append_str(groups, "\n");
        xmpp_buf_append(groups, t, len);
        xmpp_buf_append_str(push, "<group>");
        xmpp_buf_append_escaped(push, t, len, false);
        xmpp_buf_append_str(push, "</group>");
    }
    xmpp_buf_append_str(push, "</item>");
    return groups->failed || push->failed ? "internal-server-error" : NULL;
}

static struct roster_call *call_new(struct xmpp_session *s, enum roster_op op, const char *id)
{
    struct roster_call *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->op = op;
    c->conn = conn_id(s->conn);
    c->id = strdup(id);
    c->bare = strndup(s->jid, s->bare_len);
    if (c->id == NULL || c->bare == NULL) {
        call_free(c);
        return NULL;
    }
    return c;
}

static void roster_get(struct xmpp_session *s, const struct xmpp_element *query, const char *id)
{
    const char *ver = xmpp_element_attr(query, "ver");
    struct roster_call *c = call_new(s, ROSTER_GET, id);
    struct ipc_slice args[3];

    if (c == NULL) {
        reply_error(s, id, "internal-server-error", NULL);
        return;
    }
    c->with_ver = ver != NULL;
    /* A 'ver' longer than any version we hand out is simply unknown. */
    if (ver == NULL || strlen(ver) > 20)
        ver = "";
    args[0] = str_slice(s->user, strlen(s->user));
    args[1] = str_slice(s->host, strlen(s->host));
    args[2] = str_slice(ver, strlen(ver));
    s->roster_pending++;
    worker_request(s->srv->w, "store", "roster.get", args, 3, XMPP_STORE_TIMEOUT_MS, get_done, c);
}

static void roster_set(struct xmpp_session *s, const struct xmpp_element *query, const char *id)
{
    struct xmpp_server *srv = s->srv;
    struct xmpp_element *item = xmpp_element_first_child(query);
    struct xmpp_buf groups, push;
    struct roster_call *c;
    struct ipc_slice args[8];
    struct xmpp_jid *contact;
    const char *condition;
    bool remove = false;

    /* §2.3.3: exactly one <item/>. */
    if (item == NULL || !xmpp_element_is(item, "item", XMPP_NS_ROSTER) ||
        xmpp_element_next_sibling(item) != NULL) {
        reply_error(s, id, "bad-request", "a roster set has exactly one item");
        return;
    }
    contact = malloc(sizeof(*contact));
    if (contact == NULL) {
        reply_error(s, id, "internal-server-error", NULL);
        return;
    }
    xmpp_buf_init(&groups, (XMPP_ROSTER_GROUP_MAX + 1) * XMPP_ROSTER_GROUPS_MAX);
    xmpp_buf_init(&push, XMPP_OUT_MAX(srv->config->xmpp.max_stanza));
    condition = check_item(s, item, contact, &remove, &groups, &push);
    c = condition == NULL ? call_new(s, remove ? ROSTER_REMOVE : ROSTER_SET, id) : NULL;
    if (condition == NULL && c == NULL)
        condition = "internal-server-error";
    if (condition != NULL) {
        reply_error(s, id, condition, NULL);
        goto out;
    }
    /* The buffer's memory moves to the call. */
    c->item = push.data;
    c->item_len = push.len;
    push.data = NULL;
    args[0] = str_slice(s->user, strlen(s->user));
    args[1] = str_slice(s->host, strlen(s->host));
    args[2] = str_slice(contact->str, contact->len);
    s->roster_pending++;
    if (remove) {
        worker_request(srv->w, "store", "roster.remove", args, 3, XMPP_STORE_TIMEOUT_MS, set_done,
                       c);
    } else {
        const char *name = xmpp_element_attr(item, "name");

        /* The subscription state is the server's (§2.1.2.5): read it
         * first, to keep it (set_read_done). */
        c->contact = strndup(contact->str, contact->len);
        c->name = strdup(name != NULL ? name : "");
        c->groups = strndup(groups.len > 0 ? groups.data : "", groups.len);
        if (c->contact == NULL || c->name == NULL || c->groups == NULL) {
            s->roster_pending--;
            call_free(c);
            reply_error(s, id, "internal-server-error", NULL);
            goto out;
        }
        args[2] = str_slice("", 0);
        worker_request(srv->w, "store", "roster.get", args, 3, XMPP_STORE_TIMEOUT_MS, set_read_done,
                       c);
    }
out:
    xmpp_buf_free(&groups);
    xmpp_buf_free(&push);
    free(contact);
}

bool xmpp_roster_iq(struct xmpp_session *s, struct xmpp_element *iq, const char *to_bare)
{
    struct xmpp_element *query = xmpp_element_first_child(iq);
    const char *type = xmpp_element_attr(iq, "type"), *id = xmpp_element_attr(iq, "id");

    if (query == NULL || !xmpp_element_is(query, "query", XMPP_NS_ROSTER))
        return false;
    if (to_bare != NULL &&
        !(strlen(to_bare) == s->bare_len && memcmp(to_bare, s->jid, s->bare_len) == 0)) {
        /* §2.1.5 and §2.3.2: only the account's own resources. */
        reply_error(s, id, "forbidden", NULL);
        return true;
    }
    if (s->roster_pending >= XMPP_ROSTER_PENDING_MAX) {
        reply_error(s, id, "resource-constraint", "too many roster requests at once");
        return true;
    }
    if (strcmp(type, "get") == 0) {
        /* §2.1.3: a get has an empty query. */
        if (xmpp_element_first_child(query) != NULL)
            reply_error(s, id, "bad-request", NULL);
        else
            roster_get(s, query, id);
    } else {
        roster_set(s, query, id);
    }
    return true;
}
