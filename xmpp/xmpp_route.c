/*
 * Stanza routing for the c2s worker, both ways.
 *
 * Client -> broker: the RFC 6120 §8 checks on a stanza from a bound
 * session ('from' stamped to the full JID, §8.1.2.1; 'to' validated and
 * normalized; iq id/type/payload rules, §8.2.3), the iqs the server answers
 * itself (xmpp_iq.c), and for everything else a normalized IPC_STANZA: the
 * typed fields (kind, type, id, from, to, body, subject, thread, show,
 * status, priority, CONN) for other protocols, and NATIVE, the stanza as
 * canonical XML, so that XMPP-to-XMPP routing loses nothing.
 *
 * Broker -> clients: a stanza with TARGETs is written to those sessions
 * (NATIVE when it came from XMPP, else XML built from the typed fields). A
 * stanza without TARGET reached us as the route owner of one of our
 * domains: the address has no session, and RFC 6121 §8.5 says what to do
 * (messages of type normal or chat to a bare JID are stored offline by
 * xmpp_offline.c, iqs get <service-unavailable/>, subscriptions and probes
 * go to xmpp_presence.c, other presence is dropped).
 *
 * NATIVE convention: on an IPC_STANZA of kind message, presence or iq,
 * NATIVE holds XMPP XML (one jabber:client stanza serialized without its
 * namespace) when it starts with '<'. Other protocols leave it out or put
 * their own form there, which never starts with '<'.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"
#include "xmpp/xmpp_session.h"

#define BIT(tag) (UINT64_C(1) << (tag))

/* RFC 6120 §8.3.3: every stanza error condition with its usual type. */
static const struct {
    const char *condition, *type;
} stanza_conditions[] = {
    {"bad-request", "modify"},
    {"conflict", "cancel"},
    {"feature-not-implemented", "cancel"},
    {"forbidden", "auth"},
    {"gone", "cancel"},
    {"internal-server-error", "cancel"},
    {"item-not-found", "cancel"},
    {"jid-malformed", "modify"},
    {"not-acceptable", "modify"},
    {"not-allowed", "cancel"},
    {"not-authorized", "auth"},
    {"policy-violation", "modify"},
    {"recipient-unavailable", "wait"},
    {"redirect", "modify"},
    {"registration-required", "auth"},
    {"remote-server-not-found", "cancel"},
    {"remote-server-timeout", "wait"},
    {"resource-constraint", "wait"},
    {"service-unavailable", "cancel"},
    {"subscription-required", "auth"},
    {"undefined-condition", "cancel"},
    {"unexpected-request", "wait"},
};

static const char *condition_known(const char *condition, size_t len)
{
    for (size_t i = 0; i < sizeof(stanza_conditions) / sizeof(stanza_conditions[0]); i++)
        if (strlen(stanza_conditions[i].condition) == len &&
            memcmp(stanza_conditions[i].condition, condition, len) == 0)
            return stanza_conditions[i].condition;
    return NULL;
}

const char *xmpp_error_type(const char *condition)
{
    for (size_t i = 0; i < sizeof(stanza_conditions) / sizeof(stanza_conditions[0]); i++)
        if (strcmp(stanza_conditions[i].condition, condition) == 0)
            return stanza_conditions[i].type;
    return "cancel";
}

static void put_attr(struct xmpp_buf *b, const char *name, const char *value, size_t len)
{
    xmpp_buf_append_str(b, " ");
    xmpp_buf_append_str(b, name);
    xmpp_buf_append_str(b, "='");
    xmpp_buf_append_escaped(b, value, len, true);
    xmpp_buf_append_str(b, "'");
}

static void put_attr_str(struct xmpp_buf *b, const char *name, const char *value)
{
    if (value != NULL)
        put_attr(b, name, value, strlen(value));
}

static void put_attr_slice(struct xmpp_buf *b, const char *name, struct ipc_slice v)
{
    if (v.len > 0)
        put_attr(b, name, (const char *)v.ptr, v.len);
}

static void put_child_slice(struct xmpp_buf *b, const char *name, struct ipc_slice v)
{
    if (v.len == 0)
        return;
    xmpp_buf_append_str(b, "<");
    xmpp_buf_append_str(b, name);
    xmpp_buf_append_str(b, ">");
    xmpp_buf_append_escaped(b, (const char *)v.ptr, v.len, false);
    xmpp_buf_append_str(b, "</");
    xmpp_buf_append_str(b, name);
    xmpp_buf_append_str(b, ">");
}

int xmpp_error_stanza(struct xmpp_buf *out, const char *kind, const char *from, const char *to,
                      const char *id, const char *type, const char *condition, const char *text)
{
    xmpp_buf_append_str(out, "<");
    xmpp_buf_append_str(out, kind);
    put_attr_str(out, "from", from);
    put_attr_str(out, "to", to);
    put_attr_str(out, "id", id);
    xmpp_buf_append_str(out, " type='error'><error type='");
    xmpp_buf_append_str(out, type);
    xmpp_buf_append_str(out, "'><");
    xmpp_buf_append_str(out, condition);
    xmpp_buf_append_str(out, " xmlns='" XMPP_NS_STANZAS "'/>");
    if (text != NULL) {
        xmpp_buf_append_str(out, "<text xmlns='" XMPP_NS_STANZAS "' xml:lang='en'>");
        xmpp_buf_append_escaped(out, text, strlen(text), false);
        xmpp_buf_append_str(out, "</text>");
    }
    xmpp_buf_append_str(out, "</error></");
    xmpp_buf_append_str(out, kind);
    xmpp_buf_append_str(out, ">");
    return out->failed ? -1 : 0;
}

static const char *kind_name(enum stanza_kind kind)
{
    switch (kind) {
    case STANZA_MESSAGE:
        return "message";
    case STANZA_PRESENCE:
        return "presence";
    default:
        return "iq";
    }
}

void xmpp_route_xml(struct xmpp_server *srv, enum stanza_kind kind, const char *type,
                    const char *id, const char *from, const char *to, const char *xml, size_t len)
{
    struct xmpp_session *s = to != NULL ? xmpp_session_find(srv, to, strlen(to)) : NULL;
    struct ipc_writer *wr;

    if (to == NULL || to[0] == '\0')
        return;
    if (s != NULL && !s->closing) {
        xmpp_session_write(s, xml, len);
        return;
    }
    wr = worker_ipc_begin(srv->w, IPC_STANZA);
    ipc_put_u8(wr, IPC_F_SKIND, (uint8_t)kind);
    if (type != NULL)
        ipc_put_str(wr, IPC_F_TYPE, type);
    if (id != NULL)
        ipc_put_str(wr, IPC_F_ID, id);
    if (from != NULL)
        ipc_put_str(wr, IPC_F_FROM, from);
    ipc_put_str(wr, IPC_F_TO, to);
    ipc_put_bytes(wr, IPC_F_NATIVE, xml, len);
    if (!worker_ipc_end(srv->w))
        log_debug("a stanza to %s could not be encoded", to);
}

/* --- client -> broker --- */

/* Answers the session's stanza with a stanza error, unless it is an error
 * itself (RFC 6120 §8.3.1: never answer an error with an error). */
static void reply_error(struct xmpp_session *s, const struct xmpp_element *e, const char *to,
                        const char *condition, const char *text)
{
    struct xmpp_buf *b = &s->srv->reply;
    const char *type = xmpp_element_attr(e, "type");

    if (type != NULL && strcmp(type, "error") == 0)
        return;
    xmpp_buf_clear(b);
    /* The error comes from the address the stanza was for (§8.3.1). */
    if (xmpp_error_stanza(b, e->name, to, s->jid, xmpp_element_attr(e, "id"),
                          xmpp_error_type(condition), condition, text) == 0)
        xmpp_session_write(s, b->data, b->len);
}

static bool one_of(const char *v, const char *const *set)
{
    for (; *set != NULL; set++)
        if (strcmp(v, *set) == 0)
            return true;
    return false;
}

static const char *const iq_types[] = {"get", "set", "result", "error", NULL};
static const char *const message_types[] = {"normal",   "chat",  "groupchat",
                                            "headline", "error", NULL};
/* RFC 6121 §4.7.1 (absent means available). */
static const char *const presence_types[] = {
    "unavailable",  "subscribe", "subscribed", "unsubscribe",
    "unsubscribed", "probe",     "error",      NULL};
static const char *const show_values[] = {"away", "chat", "dnd", "xa", NULL};

/* The first child {jabber:client}name's text as a slice; len 0 when absent. */
static struct ipc_slice child_text(const struct xmpp_element *e, const char *name)
{
    struct xmpp_element *c = xmpp_element_child(e, name, XMPP_NS_CLIENT);
    struct ipc_slice v = {NULL, 0};
    size_t len;
    const char *t = c != NULL ? xmpp_element_text(c, &len) : NULL;

    if (t != NULL && len <= IPC_MAX_MESSAGE) {
        v.ptr = (const uint8_t *)t;
        v.len = (uint32_t)len;
    }
    return v;
}

/* The typed fields of a message or presence. */
static void put_typed_fields(struct ipc_writer *wr, const struct xmpp_element *e,
                             enum stanza_kind kind)
{
    struct ipc_slice v;

    if (kind == STANZA_MESSAGE) {
        v = child_text(e, "body");
        if (v.len > 0)
            ipc_put_slice(wr, IPC_F_BODY, v);
        v = child_text(e, "subject");
        if (v.len > 0)
            ipc_put_slice(wr, IPC_F_SUBJECT, v);
        v = child_text(e, "thread");
        if (v.len > 0 && v.len <= IPC_MAX_SHORT)
            ipc_put_slice(wr, IPC_F_THREAD, v);
    } else if (kind == STANZA_PRESENCE) {
        char buf[8];
        char *end;
        long prio;

        v = child_text(e, "show");
        if (v.len > 0 && v.len < sizeof(buf)) {
            memcpy(buf, v.ptr, v.len);
            buf[v.len] = '\0';
            if (one_of(buf, show_values))
                ipc_put_slice(wr, IPC_F_SHOW, v);
        }
        v = child_text(e, "status");
        if (v.len > 0)
            ipc_put_slice(wr, IPC_F_STATUS, v);
        v = child_text(e, "priority");
        if (v.len > 0 && v.len < sizeof(buf)) {
            memcpy(buf, v.ptr, v.len);
            buf[v.len] = '\0';
            prio = strtol(buf, &end, 10);
            /* RFC 6121 §4.7.2.3: an integer from -128 to +127. */
            if (end != buf && *end == '\0' && prio >= -128 && prio <= 127)
                ipc_put_i32(wr, IPC_F_PRIORITY, (int32_t)prio);
        }
    }
}

static void send_to_broker(struct xmpp_session *s, struct xmpp_element *e, enum stanza_kind kind,
                           const char *ipc_type, const char *id, const char *to)
{
    struct xmpp_server *srv = s->srv;
    struct ipc_writer *wr;

    xmpp_buf_clear(&srv->out);
    if (xmpp_element_serialize(e, XMPP_NS_CLIENT, &srv->out) < 0) {
        reply_error(s, e, to, "resource-constraint", "stanza too large");
        return;
    }
    wr = worker_ipc_begin(srv->w, IPC_STANZA);
    ipc_put_u8(wr, IPC_F_SKIND, (uint8_t)kind);
    if (ipc_type != NULL)
        ipc_put_str(wr, IPC_F_TYPE, ipc_type);
    if (id != NULL)
        ipc_put_str(wr, IPC_F_ID, id);
    ipc_put_bytes(wr, IPC_F_FROM, s->jid, s->jid_len);
    ipc_put_str(wr, IPC_F_TO, to);
    ipc_put_u64(wr, IPC_F_CONN, conn_id(s->conn));
    put_typed_fields(wr, e, kind);
    ipc_put_bytes(wr, IPC_F_NATIVE, srv->out.data, srv->out.len);
    if (!worker_ipc_end(srv->w))
        reply_error(s, e, to, "resource-constraint", "stanza too large to route");
}

/* An iq the server answers: the reply goes straight back to the session. */
static void answer_iq(struct xmpp_session *s, struct xmpp_element *e, enum xmpp_iq_target target,
                      const char *to)
{
    struct xmpp_buf *b = &s->srv->reply;

    xmpp_buf_clear(b);
    xmpp_iq_answer(s->srv, target, e, s->jid, to, b);
    if (!b->failed)
        xmpp_session_write(s, b->data, b->len);
}

static size_t count_children(const struct xmpp_element *e)
{
    size_t n = 0;

    for (struct xmpp_element *c = xmpp_element_first_child(e); c != NULL;
         c = xmpp_element_next_sibling(c))
        n++;
    return n;
}

void xmpp_route_client_stanza(struct xmpp_session *s, struct xmpp_element *e)
{
    struct xmpp_server *srv = s->srv;
    enum stanza_kind kind = strcmp(e->name, "message") == 0    ? STANZA_MESSAGE
                            : strcmp(e->name, "presence") == 0 ? STANZA_PRESENCE
                                                               : STANZA_IQ;
    const char *type = xmpp_element_attr(e, "type"), *id = xmpp_element_attr(e, "id");
    const char *from = xmpp_element_attr(e, "from"), *to = xmpp_element_attr(e, "to");
    const char *ipc_type = type, *error;
    bool is_error = type != NULL && strcmp(type, "error") == 0, get_set;
    struct xmpp_jid jid;
    const char *host;

    /* §8.1.2.1: 'from', when present, must be the session's full or bare
     * JID; the server stamps the full JID in any case. */
    if (from != NULL && from[0] != '\0') {
        if (xmpp_jid_parse(&jid, from, strlen(from), &error) < 0 ||
            !((jid.len == s->jid_len && memcmp(jid.str, s->jid, jid.len) == 0) ||
              (jid.len == s->bare_len && memcmp(jid.str, s->jid, jid.len) == 0))) {
            xmpp_stream_error(s, XMPP_STREAM_ERR_INVALID_FROM, "'from' is not your address");
            return;
        }
    }
    if (xmpp_element_set_attr(e, "from", s->jid) < 0) {
        reply_error(s, e, NULL, "resource-constraint", "stanza too large");
        return;
    }
    if (id != NULL && strlen(id) > IPC_MAX_SHORT) {
        xmpp_element_remove_attr(e, "id");
        reply_error(s, e, NULL, "bad-request", "id too long");
        return;
    }

    /* Types (RFC 6120 §8.2.3, RFC 6121 §4.7.1 and §5.2.2). */
    if (kind == STANZA_IQ) {
        if (type == NULL || !one_of(type, iq_types) || id == NULL) {
            reply_error(s, e, NULL, "bad-request", "an iq needs an id and a known type");
            return;
        }
        get_set = strcmp(type, "get") == 0 || strcmp(type, "set") == 0;
        if (get_set && count_children(e) != 1) {
            reply_error(s, e, NULL, "bad-request", "an iq get or set has exactly one child");
            return;
        }
    } else if (kind == STANZA_PRESENCE) {
        if (type != NULL && !one_of(type, presence_types)) {
            reply_error(s, e, NULL, "bad-request", "unknown presence type");
            return;
        }
        get_set = false;
    } else {
        /* An unknown message type is handled as "normal". */
        if (type == NULL || !one_of(type, message_types))
            ipc_type = "normal";
        get_set = false;
    }

    /* 'to' (RFC 7622; RFC 6120 §8.1.1.1 when absent). */
    if (to != NULL && to[0] != '\0') {
        if (xmpp_jid_parse(&jid, to, strlen(to), &error) < 0) {
            xmpp_element_remove_attr(e, "to");
            reply_error(s, e, NULL, "jid-malformed", error);
            return;
        }
        if (xmpp_element_set_attr(e, "to", jid.str) < 0) {
            reply_error(s, e, NULL, "resource-constraint", "stanza too large");
            return;
        }
    } else {
        /* No 'to': the stanza is for the account itself (§10.3). */
        if (kind == STANZA_PRESENCE) {
            /* Available and unavailable presence set the session's
             * priority and go to the roster (xmpp_presence.c). */
            if (type == NULL || strcmp(type, "unavailable") == 0) {
                const char *condition;
                bool was_available = s->available;

                if (xmpp_session_presence(s, e, &condition) < 0)
                    reply_error(s, e, NULL, condition, "priority is -128 to 127");
                else
                    xmpp_presence_broadcast(s, e, was_available);
            }
            return;
        }
        if (kind == STANZA_IQ) {
            if (get_set && xmpp_roster_iq(s, e, NULL))
                return;
            if (get_set) {
                char bare[XMPP_JID_MAX + 1];

                snprintf(bare, sizeof(bare), "%.*s", (int)s->bare_len, s->jid);
                answer_iq(s, e, XMPP_IQ_ACCOUNT, bare);
            }
            return;
        }
        if (xmpp_jid_parse(&jid, s->jid, s->bare_len, &error) < 0 ||
            xmpp_element_set_attr(e, "to", jid.str) < 0) {
            reply_error(s, e, NULL, "internal-server-error", NULL);
            return;
        }
    }

    if (kind == STANZA_PRESENCE && !is_error && xmpp_presence_client(s, e, type, &jid))
        return;
    host = xmpp_host_lookup(srv, jid.str + jid.domain_off, jid.domain_len);
    if (host != NULL && jid.local_len == 0 && !xmpp_jid_is_full(&jid)) {
        /* To the server itself (RFC 6120 §10.3). */
        if (kind == STANZA_IQ && get_set)
            answer_iq(s, e, XMPP_IQ_SERVER, host);
        else if (kind == STANZA_MESSAGE && !is_error && strcmp(ipc_type, "headline") != 0 &&
                 strcmp(ipc_type, "groupchat") != 0)
            reply_error(s, e, host, "service-unavailable", NULL);
        return;
    }
    if (host != NULL && kind == STANZA_IQ && !xmpp_jid_is_full(&jid)) {
        /* An iq to a local bare JID is answered by the server on the
         * account's behalf (RFC 6121 §8.5.1, §8.5.2.1.3). */
        if (get_set && !xmpp_roster_iq(s, e, jid.str))
            answer_iq(s, e, XMPP_IQ_ACCOUNT, jid.str);
        return;
    }
    send_to_broker(s, e, kind, ipc_type, id, jid.str);
}

/* --- broker -> clients --- */

static bool native_xmpp(const struct ipc_msg *m)
{
    return (m->present & BIT(IPC_F_NATIVE)) && m->native.len > 0 && m->native.ptr[0] == '<';
}

/* XML for a stanza that came from another protocol (typed fields only),
 * or a bounce the broker made (type error with REASON). -1 when it cannot
 * be expressed (an iq without XML). */
static int build_from_fields(struct xmpp_buf *b, const struct ipc_msg *m)
{
    const char *kind = kind_name((enum stanza_kind)m->skind);

    xmpp_buf_clear(b);
    if (ipc_slice_eq(m->type_str, "error")) {
        const char *condition = condition_known((const char *)m->reason.ptr, m->reason.len);
        char from[IPC_MAX_ADDRESS + 1], to[IPC_MAX_ADDRESS + 1], id[IPC_MAX_SHORT + 1];

        if (condition == NULL)
            condition = "service-unavailable";
        return xmpp_error_stanza(b, kind, ipc_slice_cstr(m->from, from, sizeof(from)),
                                 ipc_slice_cstr(m->to, to, sizeof(to)),
                                 m->present & BIT(IPC_F_ID) ? ipc_slice_cstr(m->id, id, sizeof(id))
                                                            : NULL,
                                 xmpp_error_type(condition), condition, NULL);
    }
    if (m->skind == STANZA_IQ)
        return -1;
    xmpp_buf_append_str(b, "<");
    xmpp_buf_append_str(b, kind);
    put_attr_slice(b, "from", m->from);
    put_attr_slice(b, "to", m->to);
    put_attr_slice(b, "id", m->id);
    put_attr_slice(b, "type", m->type_str);
    xmpp_buf_append_str(b, ">");
    if (m->skind == STANZA_MESSAGE) {
        put_child_slice(b, "subject", m->subject);
        put_child_slice(b, "body", m->body_text);
        put_child_slice(b, "thread", m->thread);
    } else {
        put_child_slice(b, "show", m->show);
        put_child_slice(b, "status", m->status);
        if (m->present & BIT(IPC_F_PRIORITY)) {
            char prio[48];

            snprintf(prio, sizeof(prio), "<priority>%d</priority>", (int)m->priority);
            xmpp_buf_append_str(b, prio);
        }
    }
    xmpp_buf_append_str(b, "</");
    xmpp_buf_append_str(b, kind);
    xmpp_buf_append_str(b, ">");
    return b->failed ? -1 : 0;
}

/* RFC 6121 §8.5.2.2.1: a message of type normal or chat (or of no type,
 * from another protocol) to an account without an available session is
 * stored offline. True when it went to the store, which bounces it itself
 * if it refuses. */
static bool offline_store(struct xmpp_server *srv, const struct ipc_msg *m,
                          const struct xmpp_jid *jid, const char *host)
{
    if ((m->present & BIT(IPC_F_TYPE)) && !ipc_slice_eq(m->type_str, "normal") &&
        !ipc_slice_eq(m->type_str, "chat"))
        return false;
    if (native_xmpp(m))
        return xmpp_offline_store(srv, m, jid, host, (const char *)m->native.ptr, m->native.len);
    if (build_from_fields(&srv->out, m) < 0)
        return false;
    return xmpp_offline_store(srv, m, jid, host, srv->out.data, srv->out.len);
}

void xmpp_route_bounce(struct xmpp_server *srv, enum stanza_kind kind, const char *from,
                       const char *to, const char *id, const char *condition)
{
    struct xmpp_buf *b = &srv->reply;

    xmpp_buf_clear(b);
    if (xmpp_error_stanza(b, kind_name(kind), from, to, id, xmpp_error_type(condition), condition,
                          NULL) < 0)
        return;
    xmpp_route_xml(srv, kind, "error", id, from, to, b->data, b->len);
}

/* Bounces m to its sender with a stanza error from its recipient. */
static void bounce(struct xmpp_server *srv, const struct ipc_msg *m, const char *condition)
{
    char from[IPC_MAX_ADDRESS + 1], to[IPC_MAX_ADDRESS + 1], id[IPC_MAX_SHORT + 1];
    const char *idp = m->present & BIT(IPC_F_ID) ? ipc_slice_cstr(m->id, id, sizeof(id)) : NULL;

    if (ipc_slice_eq(m->type_str, "error") || m->from.len == 0)
        return;
    ipc_slice_cstr(m->to, from, sizeof(from));
    ipc_slice_cstr(m->from, to, sizeof(to));
    xmpp_route_bounce(srv, (enum stanza_kind)m->skind, from, to, idp, condition);
}

/* RFC 6121 §8.5.3.2.1: a message of type normal or chat to a full JID
 * without a session is handled as if sent to the bare JID: hand it back to
 * the broker for the account's other sessions (or, without any, to the
 * bare-JID rules below). CONN is left out: it named a connection of the
 * sender's worker, not ours. */
static void resend_to_bare(struct xmpp_server *srv, const struct ipc_msg *m,
                           const struct xmpp_jid *jid)
{
    struct ipc_writer *wr = worker_ipc_begin(srv->w, IPC_STANZA);

    ipc_put_u8(wr, IPC_F_SKIND, m->skind);
    if (m->present & BIT(IPC_F_TYPE))
        ipc_put_slice(wr, IPC_F_TYPE, m->type_str);
    if (m->present & BIT(IPC_F_ID))
        ipc_put_slice(wr, IPC_F_ID, m->id);
    if (m->present & BIT(IPC_F_FROM))
        ipc_put_slice(wr, IPC_F_FROM, m->from);
    ipc_put_bytes(wr, IPC_F_TO, jid->str, jid->bare_len);
    if (m->present & BIT(IPC_F_BODY))
        ipc_put_slice(wr, IPC_F_BODY, m->body_text);
    if (m->present & BIT(IPC_F_SUBJECT))
        ipc_put_slice(wr, IPC_F_SUBJECT, m->subject);
    if (m->present & BIT(IPC_F_THREAD))
        ipc_put_slice(wr, IPC_F_THREAD, m->thread);
    if (m->present & BIT(IPC_F_NATIVE))
        ipc_put_slice(wr, IPC_F_NATIVE, m->native);
    if (!worker_ipc_end(srv->w))
        log_debug("a message to %.*s could not be re-sent", (int)jid->bare_len, jid->str);
}

/* A stanza for one of our domains that no session took (RFC 6121 §8.5). */
static void owner_deliver(struct xmpp_server *srv, const struct ipc_msg *m)
{
    struct xmpp_jid jid;
    const char *error, *host;
    bool get_set = ipc_slice_eq(m->type_str, "get") || ipc_slice_eq(m->type_str, "set");

    /* Errors are never answered, and dropped when undeliverable. */
    if (ipc_slice_eq(m->type_str, "error"))
        return;
    if (xmpp_jid_parse(&jid, (const char *)m->to.ptr, m->to.len, &error) < 0 ||
        (host = xmpp_host_lookup(srv, jid.str + jid.domain_off, jid.domain_len)) == NULL) {
        log_debug("stanza for an address we do not serve dropped");
        return;
    }
    if (jid.local_len == 0) {
        /* For the server itself, from another worker: the server iqs
         * answer only local sessions so far. */
        if (m->skind == STANZA_IQ && get_set)
            bounce(srv, m, "service-unavailable");
        return;
    }
    switch (m->skind) {
    case STANZA_MESSAGE:
        /* §8.5.2.1.1 and §8.5.3.2.1 by message type. */
        if (ipc_slice_eq(m->type_str, "headline"))
            return;
        if (ipc_slice_eq(m->type_str, "groupchat")) {
            bounce(srv, m, "service-unavailable");
            return;
        }
        if (xmpp_jid_is_full(&jid)) {
            resend_to_bare(srv, m, &jid);
            return;
        }
        if (!offline_store(srv, m, &jid, host))
            bounce(srv, m, "service-unavailable");
        return;
    case STANZA_PRESENCE:
        /* Subscriptions and probes never get here (xmpp_presence.c);
         * other presence for an account without sessions is dropped. */
        return;
    case STANZA_IQ:
        /* §8.5.3.2.2 (full JID) and §8.5.2.1.3 / §8.5.1 (bare JID, answered
         * on the account's behalf: nothing is implemented for it yet). */
        if (get_set)
            bounce(srv, m, "service-unavailable");
        return;
    default:
        return;
    }
}

void xmpp_route_broker_stanza(struct xmpp_server *srv, const struct ipc_msg *m)
{
    struct ipc_slice target;
    uint32_t offset = 0;
    const char *xml;
    size_t len;

    if (m->skind != STANZA_MESSAGE && m->skind != STANZA_PRESENCE && m->skind != STANZA_IQ) {
        log_debug("stanza of kind %u ignored", (unsigned)m->skind);
        return;
    }
    /* Subscriptions and probes are the server's (xmpp_presence.c). */
    if (xmpp_presence_inbound(srv, m))
        return;
    if (m->n_target == 0) {
        owner_deliver(srv, m);
        return;
    }
    if (m->skind == STANZA_IQ && !ipc_slice_eq(m->type_str, "error")) {
        /* An iq to a bare JID is the server's to answer, even when the
         * account has sessions (RFC 6121 §8.5.2.1.3); the broker hands it
         * to the sessions, so it is caught here. */
        struct xmpp_jid jid;
        const char *error;

        if (xmpp_jid_parse(&jid, (const char *)m->to.ptr, m->to.len, &error) < 0)
            return;
        if (!xmpp_jid_is_full(&jid)) {
            owner_deliver(srv, m);
            return;
        }
    }
    if (native_xmpp(m)) {
        xml = (const char *)m->native.ptr;
        len = m->native.len;
    } else if (build_from_fields(&srv->out, m) == 0) {
        xml = srv->out.data;
        len = srv->out.len;
    } else {
        if (ipc_slice_eq(m->type_str, "get") || ipc_slice_eq(m->type_str, "set"))
            bounce(srv, m, "service-unavailable");
        return;
    }
    while (ipc_msg_each(m, IPC_F_TARGET, &offset, &target)) {
        struct conn *c = worker_conn_find(srv->w, ipc_slice_u64(target));
        struct xmpp_session *s = c != NULL ? conn_data(c) : NULL;

        if (s != NULL && s->bound && !s->closing)
            xmpp_session_write(s, xml, len);
    }
}
