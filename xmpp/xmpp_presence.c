/*
 * Presence subscriptions (RFC 6121 §3, Appendix A) and presence broadcast
 * (§4.2-4.6) of the c2s worker, on top of the roster the store keeps.
 *
 * Every decision reads the account's roster first (roster.get with an
 * empty `since`: the whole roster), then writes the one changed item with
 * roster.set, which keeps the item's name and groups, and pushes it to the
 * account's interested sessions on this worker.
 *
 * Outbound (from a client, §3.1.2, §3.2.2, §3.3.2, §3.4): the user's item
 * changes by the tables of Appendix A.2/A.3 and the stanza goes to the
 * contact's bare JID, 'from' stamped to the user's bare JID. The store has
 * no "pending in" state: both accounts are local (there is no s2s), so a
 * pending inbound request of the user is the contact's pending outbound
 * one (ask='subscribe' on the contact's item for the user). A 'subscribed'
 * answering such a request approves it (§3.1.5); one without it is a
 * pre-approval (§3.4), kept as approved='true' and not routed.
 *
 * Inbound (from the broker, to a local account, Appendix A.2.2/A.3.2): the
 * receiver's item changes and the stanza is delivered to the receiver's
 * available sessions that the broker targeted; a subscription request for
 * an account without one goes to its offline queue (§3.1.3). A request
 * that is already approved, or pre-approved, is answered with 'subscribed'
 * by the server (§3.1.3, §3.4). The broker gives a stanza to a bare JID to
 * every worker with sessions of the account, or to the route owner when
 * there is none: each copy makes the same read-decide-write, and since
 * every transition is a no-op once applied, the item changes once.
 *
 * Broadcast (§4.2, §4.4, §4.5): a session's available presence goes to the
 * contacts with subscription from/both; the first one also probes those
 * with to/both (§4.2.2). A probe for an account (§4.3.2) is answered with
 * the last presence of each available session on this worker when the
 * prober has from/both, and with nothing otherwise. Unavailable presence,
 * explicit or when the connection is gone, goes to the same contacts plus
 * every address the session sent directed presence to (§4.6).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"
#include "xmpp/xmpp_session.h"

#define BIT(tag) (UINT64_C(1) << (tag))

/* The fields of one roster item as the store lists it. */
#define ROSTER_FIELDS 6

/* A directed presence target of a session (§4.6). */
struct xmpp_directed {
    struct xmpp_directed *next;
    char jid[];
};

enum pres_op {
    PRES_OUT_SUBSCRIBE,
    PRES_OUT_SUBSCRIBED,
    PRES_OUT_UNSUBSCRIBE,
    PRES_OUT_UNSUBSCRIBED,
    PRES_IN_SUBSCRIBE,
    PRES_IN_SUBSCRIBED,
    PRES_IN_UNSUBSCRIBE,
    PRES_IN_UNSUBSCRIBED,
    PRES_IN_PROBE,
    PRES_BROADCAST,
};

/* One roster item decoded from a store ARG (slices into the answer). */
struct roster_item {
    bool found;
    char sub[5]; /* none, to, from, both */
    bool ask, approved;
    struct ipc_slice name, groups;
};

/* One pending store request. */
struct pres_call {
    enum pres_op op;
    char *user, *host; /* whose roster was read */
    char *bare;        /* user@host */
    char *contact;     /* the other party's bare JID (not for a broadcast) */
    char *from;        /* inbound: the stanza's 'from' as given; broadcast: the full JID */
    char *xml;         /* the stanza to route or deliver; a broadcast's presence */
    size_t xml_len;
    uint64_t *targets; /* inbound: the sessions the broker targeted */
    uint32_t n_targets;
    bool initial;      /* broadcast: the session's first available presence; out subscribed:
                        * the contact's request is pending (an approval) */
    const char *ptype; /* broadcast: the presence type ("unavailable" or NULL) */
    struct xmpp_directed *directed; /* broadcast of unavailable: directed targets */
    struct pres_call *next_contact; /* out subscribed: the user's call, read after */
};

static void call_free(struct pres_call *c)
{
    while (c->directed != NULL) {
        struct xmpp_directed *d = c->directed;

        c->directed = d->next;
        free(d);
    }
    free(c->user);
    free(c->host);
    free(c->bare);
    free(c->contact);
    free(c->from);
    free(c->xml);
    free(c->targets);
    free(c);
}

static struct ipc_slice str_slice(const char *s)
{
    return (struct ipc_slice){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static bool decode_item(struct ipc_slice v, struct ipc_slice *contact, struct roster_item *it)
{
    struct ipc_slice f[ROSTER_FIELDS];

    if (!xmpp_store_fields(v, f, ROSTER_FIELDS) || f[2].len == 0 || f[2].len >= sizeof(it->sub))
        return false;
    *contact = f[0];
    it->found = true;
    memcpy(it->sub, f[2].ptr, f[2].len);
    it->sub[f[2].len] = '\0';
    it->ask = ipc_slice_eq(f[3], "subscribe");
    it->approved = ipc_slice_eq(f[4], "1");
    it->name = f[1];
    it->groups = f[5];
    return true;
}

/* The item for contact in a roster.get answer (found false when none). */
static void find_item(const struct ipc_msg *m, const char *contact, struct roster_item *it)
{
    struct ipc_slice v, jid;
    uint32_t offset = 0;

    memset(it, 0, sizeof(*it));
    snprintf(it->sub, sizeof(it->sub), "none");
    if (!ipc_msg_each(m, IPC_F_ARG, &offset, &v)) /* the version */
        return;
    while (ipc_msg_each(m, IPC_F_ARG, &offset, &v)) {
        struct roster_item tmp;

        if (decode_item(v, &jid, &tmp) && ipc_slice_eq(jid, contact)) {
            *it = tmp;
            return;
        }
    }
}

static bool sub_has_from(const char *sub)
{
    return strcmp(sub, "from") == 0 || strcmp(sub, "both") == 0;
}

static bool sub_has_to(const char *sub)
{
    return strcmp(sub, "to") == 0 || strcmp(sub, "both") == 0;
}

/* The subscription with the 'to' or 'from' half set or cleared. */
static const char *sub_make(bool to, bool from)
{
    return to && from ? "both" : to ? "to" : from ? "from" : "none";
}

static struct pres_call *call_new(enum pres_op op, const char *user, size_t user_len,
                                  const char *host, const char *contact)
{
    struct pres_call *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->op = op;
    c->user = strndup(user, user_len);
    c->host = strdup(host);
    if (c->user != NULL && c->host != NULL &&
        (c->bare = malloc(user_len + strlen(host) + 2)) != NULL)
        sprintf(c->bare, "%s@%s", c->user, c->host);
    if (contact != NULL)
        c->contact = strdup(contact);
    if (c->user == NULL || c->host == NULL || c->bare == NULL ||
        (contact != NULL && c->contact == NULL)) {
        call_free(c);
        return NULL;
    }
    return c;
}

static void roster_read(struct xmpp_server *srv, struct pres_call *c, worker_request_cb *done)
{
    struct ipc_slice args[3] = {str_slice(c->user), str_slice(c->host), str_slice("")};

    worker_request(srv->w, "store", "roster.get", args, 3, XMPP_STORE_TIMEOUT_MS, done, c);
}

/* --- roster writes and pushes --- */

/* What a roster.set needs for its push once the version is known. */
struct pres_write {
    char *bare;
    char *item;
    size_t item_len;
};

static void write_done(void *ctx, const struct ipc_msg *m)
{
    struct pres_write *pw = ctx;
    struct xmpp_server *srv = xmpp_server_get();
    struct ipc_slice v;
    uint32_t offset = 0;
    char ver[32];

    if (srv != NULL && m->code == IPC_CODE_OK && ipc_msg_each(m, IPC_F_ARG, &offset, &v) &&
        v.len > 0 && v.len < sizeof(ver))
        xmpp_roster_push(srv, pw->bare, ipc_slice_cstr(v, ver, sizeof(ver)), pw->item,
                         pw->item_len);
    else if (m->code != IPC_CODE_OK)
        log_warnx("%s: a subscription change was not stored: %s", pw->bare, ipc_code_name(m->code));
    free(pw->bare);
    free(pw->item);
    free(pw);
}

/* Stores the item of contact in c's roster with the new subscription
 * state, keeping its name and groups, and pushes it once stored. */
static void item_write(struct xmpp_server *srv, const struct pres_call *c, const char *contact,
                       const struct roster_item *it, const char *sub, bool ask, bool approved)
{
    struct xmpp_buf b;
    struct pres_write *pw;
    struct ipc_slice args[8];

    if (it->found && strcmp(it->sub, sub) == 0 && it->ask == ask && it->approved == approved)
        return;
    pw = calloc(1, sizeof(*pw));
    if (pw == NULL || (pw->bare = strdup(c->bare)) == NULL) {
        free(pw);
        return;
    }
    /* The <item/> of the push (§2.1.6), as xmpp_roster.c shows items. */
    xmpp_buf_init(&b, XMPP_OUT_MAX(srv->config->xmpp.max_stanza));
    xmpp_buf_append_str(&b, "<item jid='");
    xmpp_buf_append_escaped(&b, contact, strlen(contact), true);
    xmpp_buf_append_str(&b, "'");
    if (it->name.len > 0) {
        xmpp_buf_append_str(&b, " name='");
        xmpp_buf_append_escaped(&b, (const char *)it->name.ptr, it->name.len, true);
        xmpp_buf_append_str(&b, "'");
    }
    xmpp_buf_append_str(&b, " subscription='");
    xmpp_buf_append_str(&b, sub);
    xmpp_buf_append_str(&b, ask ? "' ask='subscribe'" : "'");
    if (approved)
        xmpp_buf_append_str(&b, " approved='true'");
    xmpp_buf_append_str(&b, ">");
    for (const uint8_t *g = it->groups.ptr, *end = g + it->groups.len; g != NULL && g < end;) {
        const uint8_t *nl = memchr(g, '\n', (size_t)(end - g));

        if (nl == NULL)
            nl = end;
        xmpp_buf_append_str(&b, "<group>");
        xmpp_buf_append_escaped(&b, (const char *)g, (size_t)(nl - g), false);
        xmpp_buf_append_str(&b, "</group>");
        g = nl + 1;
    }
    xmpp_buf_append_str(&b, "</item>");
    if (b.failed) {
        xmpp_buf_free(&b);
        free(pw->bare);
        free(pw);
        return;
    }
    pw->item = b.data;
    pw->item_len = b.len;
    args[0] = str_slice(c->user);
    args[1] = str_slice(c->host);
    args[2] = str_slice(contact);
    args[3] = it->name;
    args[4] = str_slice(sub);
    args[5] = str_slice(ask ? "subscribe" : "");
    args[6] = str_slice(approved ? "1" : "0");
    args[7] = it->groups;
    worker_request(srv->w, "store", "roster.set", args, 8, XMPP_STORE_TIMEOUT_MS, write_done, pw);
}

/* --- sending --- */

/* Sends an empty presence of type from -> to. */
static void send_typed(struct xmpp_server *srv, const char *type, const char *from, const char *to)
{
    struct xmpp_buf *b = &srv->reply;

    xmpp_buf_clear(b);
    xmpp_buf_append_str(b, "<presence from='");
    xmpp_buf_append_escaped(b, from, strlen(from), true);
    xmpp_buf_append_str(b, "' to='");
    xmpp_buf_append_escaped(b, to, strlen(to), true);
    xmpp_buf_append_str(b, "' type='");
    xmpp_buf_append_str(b, type);
    xmpp_buf_append_str(b, "'/>");
    if (!b->failed)
        xmpp_route_xml(srv, STANZA_PRESENCE, type, NULL, from, to, b->data, b->len);
}

/* Sends a session's presence (xml: "<presence from=... ...>" without 'to')
 * to one address, with 'to' added. */
static void send_presence_xml(struct xmpp_server *srv, const char *from, const char *xml,
                              size_t len, const char *type, const char *to)
{
    static const char head[] = "<presence";
    struct xmpp_buf *b = &srv->reply;

    if (len < sizeof(head) - 1 || memcmp(xml, head, sizeof(head) - 1) != 0)
        return;
    xmpp_buf_clear(b);
    xmpp_buf_append_str(b, "<presence to='");
    xmpp_buf_append_escaped(b, to, strlen(to), true);
    xmpp_buf_append_str(b, "'");
    xmpp_buf_append(b, xml + sizeof(head) - 1, len - (sizeof(head) - 1));
    if (!b->failed)
        xmpp_route_xml(srv, STANZA_PRESENCE, type, NULL, from, to, b->data, b->len);
}

/* Sends the last presence of every available session of bare on this
 * worker to 'to' (§3.1.5, §4.3.2); with only set, of those sessions only. */
static void send_current(struct xmpp_server *srv, const char *bare, const char *to,
                         const uint64_t *only, uint32_t n_only)
{
    struct xmpp_account *a = hashmap_get(&srv->accounts, bare, strlen(bare));

    for (struct xmpp_session *p = a != NULL ? a->sessions : NULL; p != NULL; p = p->acct_next) {
        bool listed = only == NULL;

        for (uint32_t i = 0; i < n_only && !listed; i++)
            listed = only[i] == conn_id(p->conn);
        if (listed && p->available && !p->closing && p->presence_xml != NULL)
            send_presence_xml(srv, p->jid, p->presence_xml, p->presence_len, NULL, to);
    }
}

/* Sends unavailable from every available session of bare here (§3.2.2,
 * §3.3.3: the contact no longer gets the user's presence). */
static void send_unavailable_all(struct xmpp_server *srv, const char *bare, const char *to)
{
    struct xmpp_account *a = hashmap_get(&srv->accounts, bare, strlen(bare));

    for (struct xmpp_session *p = a != NULL ? a->sessions : NULL; p != NULL; p = p->acct_next)
        if (p->available && !p->closing)
            send_typed(srv, "unavailable", p->jid, to);
}

/* Writes an inbound stanza to the targeted sessions that are available;
 * false when none was. */
static bool deliver_targets(struct xmpp_server *srv, const struct pres_call *c)
{
    bool any = false;

    for (uint32_t i = 0; i < c->n_targets; i++) {
        struct conn *conn = worker_conn_find(srv->w, c->targets[i]);
        struct xmpp_session *s = conn != NULL ? conn_data(conn) : NULL;

        if (s != NULL && s->bound && s->available && !s->closing) {
            xmpp_session_write(s, c->xml, c->xml_len);
            any = true;
        }
    }
    return any;
}

static void offline_done(void *ctx, const struct ipc_msg *m)
{
    char *bare = ctx;

    if (m->code != IPC_CODE_OK)
        log_debug("subscription request for %s not queued: %s", bare, ipc_code_name(m->code));
    free(bare);
}

/* §3.1.3: a request for an account without an available session waits in
 * its offline queue (xmpp_offline.c writes it on the next login). */
static void offline_request(struct xmpp_server *srv, const struct pres_call *c)
{
    struct ipc_slice args[3] = {
        str_slice(c->user), str_slice(c->host), {(const uint8_t *)c->xml, (uint32_t)c->xml_len}};
    char *bare = strdup(c->bare);

    if (bare == NULL)
        return;
    worker_request(srv->w, "store", "offline.push", args, 3, XMPP_STORE_TIMEOUT_MS, offline_done,
                   bare);
}

/* --- outbound --- */

/* The contact's bare JID split for the store, when it is a local account. */
static bool local_account(struct xmpp_server *srv, const char *bare, struct xmpp_jid *jid,
                          const char **host_r)
{
    const char *error;

    if (xmpp_jid_parse(jid, bare, strlen(bare), &error) < 0 || jid->local_len == 0)
        return false;
    *host_r = xmpp_host_lookup(srv, jid->str + jid->domain_off, jid->domain_len);
    return *host_r != NULL;
}

static void route_out(struct xmpp_server *srv, const struct pres_call *c, const char *type)
{
    xmpp_route_xml(srv, STANZA_PRESENCE, type, NULL, c->bare, c->contact, c->xml, c->xml_len);
}

static void out_done(void *ctx, const struct ipc_msg *m)
{
    struct pres_call *c = ctx;
    struct xmpp_server *srv = xmpp_server_get();
    struct roster_item it;
    bool to, from;

    if (srv == NULL || m->code != IPC_CODE_OK)
        goto out;
    find_item(m, c->contact, &it);
    to = sub_has_to(it.sub);
    from = sub_has_from(it.sub);
    switch (c->op) {
    case PRES_OUT_SUBSCRIBE:
        /* A.2.1: none/from without a pending request get one. */
        if (!to)
            item_write(srv, c, c->contact, &it, it.sub, true, it.approved);
        route_out(srv, c, "subscribe");
        break;
    case PRES_OUT_SUBSCRIBED:
        if (from)
            break; /* A.3.1: already approved, nothing to route */
        if (c->initial) {
            /* The contact asked: approved (§3.1.5). */
            item_write(srv, c, c->contact, &it, sub_make(to, true), it.ask, false);
            route_out(srv, c, "subscribed");
            send_current(srv, c->bare, c->contact, NULL, 0);
        } else {
            /* §3.4: a pre-approval, not routed. */
            item_write(srv, c, c->contact, &it, it.sub, it.ask, true);
        }
        break;
    case PRES_OUT_UNSUBSCRIBE:
        if (to || it.ask)
            item_write(srv, c, c->contact, &it, sub_make(false, from), false, it.approved);
        route_out(srv, c, "unsubscribe");
        break;
    case PRES_OUT_UNSUBSCRIBED:
        if (from || it.approved)
            item_write(srv, c, c->contact, &it, sub_make(to, false), it.ask, false);
        route_out(srv, c, "unsubscribed");
        send_unavailable_all(srv, c->bare, c->contact);
        break;
    default:
        break;
    }
out:
    call_free(c);
}

/* out subscribed: first the contact's roster (when local), then ours. */
static void contact_read_done(void *ctx, const struct ipc_msg *m)
{
    struct pres_call *cc = ctx, *c = cc->next_contact;
    struct xmpp_server *srv = xmpp_server_get();
    struct roster_item contact_item;

    cc->next_contact = NULL;
    if (srv == NULL) {
        call_free(c);
        goto out;
    }
    if (m->code == IPC_CODE_OK) {
        find_item(m, c->bare, &contact_item);
        c->initial = contact_item.ask; /* the contact's request is pending */
    }
    roster_read(srv, c, out_done);
out:
    call_free(cc);
}

bool xmpp_presence_client(struct xmpp_session *s, struct xmpp_element *e, const char *type,
                          const struct xmpp_jid *to)
{
    static const struct {
        const char *type;
        enum pres_op op;
    } ops[] = {{"subscribe", PRES_OUT_SUBSCRIBE},
               {"subscribed", PRES_OUT_SUBSCRIBED},
               {"unsubscribe", PRES_OUT_UNSUBSCRIBE},
               {"unsubscribed", PRES_OUT_UNSUBSCRIBED}};
    struct xmpp_server *srv = s->srv;
    char contact[XMPP_JID_MAX + 1], bare[XMPP_JID_MAX + 1];
    struct pres_call *c;
    size_t i;

    if (type == NULL) {
        xmpp_presence_directed(s, to->str);
        return false;
    }
    if (strcmp(type, "unavailable") == 0) {
        /* §4.6.3: the address no longer has the session's presence. */
        for (struct xmpp_directed **d = &s->directed; *d != NULL; d = &(*d)->next)
            if (strcmp((*d)->jid, to->str) == 0) {
                struct xmpp_directed *gone = *d;

                *d = gone->next;
                free(gone);
                break;
            }
        return false;
    }
    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strcmp(type, ops[i].type) == 0)
            break;
    if (i == sizeof(ops) / sizeof(ops[0]))
        return false;
    snprintf(contact, sizeof(contact), "%.*s", (int)to->bare_len, to->str);
    snprintf(bare, sizeof(bare), "%.*s", (int)s->bare_len, s->jid);
    /* The account's own presence needs no subscription (§3, §4.2). */
    if (strcmp(contact, bare) == 0)
        return true;
    /* §3.1.2: to the bare JID, from the user's bare JID. */
    if (xmpp_element_set_attr(e, "to", contact) < 0 || xmpp_element_set_attr(e, "from", bare) < 0)
        return true;
    c = call_new(ops[i].op, s->user, strlen(s->user), s->host, contact);
    if (c == NULL)
        return true;
    xmpp_buf_clear(&srv->out);
    if (xmpp_element_serialize(e, XMPP_NS_CLIENT, &srv->out) < 0 ||
        (c->xml = malloc(srv->out.len)) == NULL) {
        call_free(c);
        return true;
    }
    memcpy(c->xml, srv->out.data, srv->out.len);
    c->xml_len = srv->out.len;
    if (c->op == PRES_OUT_SUBSCRIBED) {
        struct xmpp_jid cj;
        const char *host;

        if (local_account(srv, contact, &cj, &host)) {
            struct pres_call *cc = call_new(PRES_OUT_SUBSCRIBED, cj.str, cj.local_len, host, NULL);

            if (cc == NULL) {
                call_free(c);
                return true;
            }
            cc->next_contact = c;
            roster_read(srv, cc, contact_read_done);
            return true;
        }
        c->initial = true; /* a remote contact: route as an approval */
    }
    roster_read(srv, c, out_done);
    return true;
}

/* --- inbound --- */

static void in_done(void *ctx, const struct ipc_msg *m)
{
    struct pres_call *c = ctx;
    struct xmpp_server *srv = xmpp_server_get();
    struct roster_item it;
    bool to, from;

    if (srv == NULL || m->code != IPC_CODE_OK)
        goto out;
    find_item(m, c->contact, &it);
    to = sub_has_to(it.sub);
    from = sub_has_from(it.sub);
    switch (c->op) {
    case PRES_IN_SUBSCRIBE:
        if (from) {
            /* §3.1.3: approved already: the server answers. */
            send_typed(srv, "subscribed", c->bare, c->contact);
        } else if (it.approved) {
            /* §3.4: pre-approved. */
            item_write(srv, c, c->contact, &it, sub_make(to, true), it.ask, false);
            send_typed(srv, "subscribed", c->bare, c->contact);
            send_current(srv, c->bare, c->contact, NULL, 0);
        } else if (!deliver_targets(srv, c)) {
            offline_request(srv, c);
        }
        break;
    case PRES_IN_SUBSCRIBED:
        /* A.2.2: only answers a pending request. */
        if (it.ask) {
            item_write(srv, c, c->contact, &it, sub_make(true, from), false, it.approved);
            deliver_targets(srv, c);
        }
        break;
    case PRES_IN_UNSUBSCRIBE:
        if (from || it.approved) {
            item_write(srv, c, c->contact, &it, sub_make(to, false), it.ask, false);
            deliver_targets(srv, c);
            send_unavailable_all(srv, c->bare, c->contact);
        }
        break;
    case PRES_IN_UNSUBSCRIBED:
        if (to || it.ask) {
            item_write(srv, c, c->contact, &it, sub_make(false, from), false, it.approved);
            deliver_targets(srv, c);
        }
        break;
    case PRES_IN_PROBE:
        /* §4.3.2: only for a contact allowed to see the presence; the
         * answer goes to the prober's address as given. */
        if (from)
            send_current(srv, c->bare, c->from, c->targets, c->n_targets);
        break;
    default:
        break;
    }
out:
    call_free(c);
}

bool xmpp_presence_inbound(struct xmpp_server *srv, const struct ipc_msg *m)
{
    static const struct {
        const char *type;
        enum pres_op op;
    } ops[] = {{"subscribe", PRES_IN_SUBSCRIBE},
               {"subscribed", PRES_IN_SUBSCRIBED},
               {"unsubscribe", PRES_IN_UNSUBSCRIBE},
               {"unsubscribed", PRES_IN_UNSUBSCRIBED},
               {"probe", PRES_IN_PROBE}};
    char from[IPC_MAX_ADDRESS + 1], to[IPC_MAX_ADDRESS + 1];
    struct xmpp_jid to_jid, from_jid;
    struct pres_call *c;
    struct ipc_slice target;
    uint32_t offset = 0;
    const char *error, *host;
    size_t i;

    if (m->skind != STANZA_PRESENCE || !(m->present & BIT(IPC_F_TYPE)))
        return false;
    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (ipc_slice_eq(m->type_str, ops[i].type))
            break;
    if (i == sizeof(ops) / sizeof(ops[0]))
        return false;
    /* From here on the stanza is the server's, never delivered as-is
     * without the roster's say. */
    ipc_slice_cstr(m->to, to, sizeof(to));
    ipc_slice_cstr(m->from, from, sizeof(from));
    if (m->to.len >= sizeof(to) || m->from.len == 0 || m->from.len >= sizeof(from) ||
        !local_account(srv, to, &to_jid, &host) ||
        xmpp_jid_parse(&from_jid, from, strlen(from), &error) < 0)
        return true;
    c = call_new(ops[i].op, to_jid.str, to_jid.local_len, host, NULL);
    if (c == NULL)
        return true;
    c->contact = strndup(from_jid.str, from_jid.bare_len);
    c->from = strdup(from);
    if (m->n_target > 0)
        c->targets = calloc(m->n_target, sizeof(*c->targets));
    if (c->contact == NULL || c->from == NULL || (m->n_target > 0 && c->targets == NULL)) {
        call_free(c);
        return true;
    }
    while (c->n_targets < m->n_target && ipc_msg_each(m, IPC_F_TARGET, &offset, &target))
        c->targets[c->n_targets++] = ipc_slice_u64(target);
    if (c->op != PRES_IN_PROBE) {
        /* What the receiver's clients see: 'from' the contact's bare JID
         * (§3.1.3), the stanza as sent otherwise. */
        if ((m->present & BIT(IPC_F_NATIVE)) && m->native.len > 0 && m->native.ptr[0] == '<') {
            c->xml = malloc(m->native.len);
            if (c->xml != NULL) {
                memcpy(c->xml, m->native.ptr, m->native.len);
                c->xml_len = m->native.len;
            }
        } else {
            struct xmpp_buf *b = &srv->reply;

            xmpp_buf_clear(b);
            xmpp_buf_append_str(b, "<presence from='");
            xmpp_buf_append_escaped(b, c->contact, strlen(c->contact), true);
            xmpp_buf_append_str(b, "' to='");
            xmpp_buf_append_escaped(b, c->bare, strlen(c->bare), true);
            xmpp_buf_append_str(b, "' type='");
            xmpp_buf_append_str(b, ops[i].type);
            xmpp_buf_append_str(b, "'/>");
            if (!b->failed && (c->xml = malloc(b->len)) != NULL) {
                memcpy(c->xml, b->data, b->len);
                c->xml_len = b->len;
            }
        }
        if (c->xml == NULL) {
            call_free(c);
            return true;
        }
    }
    roster_read(srv, c, in_done);
    return true;
}

/* --- broadcast --- */

static void broadcast_done(void *ctx, const struct ipc_msg *m)
{
    struct pres_call *c = ctx;
    struct xmpp_server *srv = xmpp_server_get();
    struct ipc_slice v, jid;
    uint32_t offset = 0;
    char contact[IPC_MAX_ADDRESS + 1];

    if (srv == NULL)
        goto out;
    if (m->code == IPC_CODE_OK && ipc_msg_each(m, IPC_F_ARG, &offset, &v)) {
        while (ipc_msg_each(m, IPC_F_ARG, &offset, &v)) {
            struct roster_item it;

            if (!decode_item(v, &jid, &it) || jid.len == 0 || jid.len >= sizeof(contact))
                continue;
            ipc_slice_cstr(jid, contact, sizeof(contact));
            if (sub_has_from(it.sub)) {
                send_presence_xml(srv, c->from, c->xml, c->xml_len, c->ptype, contact);
                /* Directed presence to a contact that gets broadcasts
                 * anyway is not sent twice. */
                for (struct xmpp_directed **d = &c->directed; *d != NULL; d = &(*d)->next)
                    if (strncmp((*d)->jid, contact, strlen(contact)) == 0 &&
                        ((*d)->jid[strlen(contact)] == '\0' || (*d)->jid[strlen(contact)] == '/')) {
                        struct xmpp_directed *gone = *d;

                        *d = gone->next;
                        free(gone);
                        break;
                    }
            }
            if (c->initial && sub_has_to(it.sub))
                send_typed(srv, "probe", c->bare, contact);
        }
    }
    for (struct xmpp_directed *d = c->directed; d != NULL; d = d->next)
        send_presence_xml(srv, c->from, c->xml, c->xml_len, c->ptype, d->jid);
out:
    call_free(c);
}

/* Broadcasts xml (from the session's full JID, without 'to') to the
 * account's contacts; directed targets (owned by the call) too. */
static void broadcast(struct xmpp_session *s, const char *xml, size_t len, bool initial,
                      bool unavailable, struct xmpp_directed *directed)
{
    struct pres_call *c = call_new(PRES_BROADCAST, s->user, strlen(s->user), s->host, NULL);

    if (c == NULL || (c->from = strdup(s->jid)) == NULL || (c->xml = malloc(len)) == NULL) {
        while (directed != NULL) {
            struct xmpp_directed *d = directed;

            directed = d->next;
            free(d);
        }
        if (c != NULL)
            call_free(c);
        return;
    }
    memcpy(c->xml, xml, len);
    c->xml_len = len;
    c->initial = initial;
    c->ptype = unavailable ? "unavailable" : NULL;
    c->directed = directed;
    roster_read(s->srv, c, broadcast_done);
}

void xmpp_presence_directed(struct xmpp_session *s, const char *to)
{
    size_t len = strlen(to);
    unsigned n = 0;
    struct xmpp_directed *d;

    for (d = s->directed; d != NULL; d = d->next, n++)
        if (strcmp(d->jid, to) == 0)
            return;
    if (n >= XMPP_DIRECTED_MAX || (d = malloc(sizeof(*d) + len + 1)) == NULL)
        return;
    memcpy(d->jid, to, len + 1);
    d->next = s->directed;
    s->directed = d;
}

void xmpp_presence_broadcast(struct xmpp_session *s, struct xmpp_element *presence,
                             bool was_available)
{
    struct xmpp_server *srv = s->srv;
    struct xmpp_buf *b = &srv->out;
    char *xml;

    xmpp_element_remove_attr(presence, "to");
    xmpp_buf_clear(b);
    if (xmpp_element_set_attr(presence, "from", s->jid) < 0 ||
        xmpp_element_serialize(presence, XMPP_NS_CLIENT, b) < 0)
        return;
    if (!s->available) {
        struct xmpp_directed *directed = s->directed;

        s->directed = NULL;
        free(s->presence_xml);
        s->presence_xml = NULL;
        s->presence_len = 0;
        if (was_available || directed != NULL)
            broadcast(s, b->data, b->len, false, true, directed);
        return;
    }
    xml = malloc(b->len);
    if (xml == NULL)
        return;
    memcpy(xml, b->data, b->len);
    free(s->presence_xml);
    s->presence_xml = xml;
    s->presence_len = b->len;
    broadcast(s, xml, b->len, !was_available, false, NULL);
}

void xmpp_presence_gone(struct xmpp_session *s)
{
    struct xmpp_directed *directed = s->directed;
    struct xmpp_buf *b = &s->srv->reply;

    s->directed = NULL;
    if (s->bound && s->jid != NULL && (s->available || directed != NULL)) {
        /* §4.5.2: the server sends unavailable for a session that ends
         * without doing so itself. */
        xmpp_buf_clear(b);
        xmpp_buf_append_str(b, "<presence from='");
        xmpp_buf_append_escaped(b, s->jid, s->jid_len, true);
        xmpp_buf_append_str(b, "' type='unavailable'/>");
        if (!b->failed && s->user != NULL) {
            broadcast(s, b->data, b->len, false, true, directed);
            directed = NULL;
        }
    }
    while (directed != NULL) {
        struct xmpp_directed *d = directed;

        directed = d->next;
        free(d);
    }
    s->available = false;
    free(s->presence_xml);
    s->presence_xml = NULL;
    s->presence_len = 0;
}
