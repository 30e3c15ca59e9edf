/*
 * The iqs the server answers itself: XEP-0199 ping, XEP-0030 service
 * discovery (disco#info advertising exactly what the table below
 * implements, disco#items), XEP-0092 software version, and RFC 3921's
 * session establishment as the no-op old clients still send. Anything else
 * addressed to the server, or to an account's bare JID, gets
 * <service-unavailable/> (RFC 6120 §8.3.3.19, RFC 6121 §8.5).
 *
 * A handler is a row of iq_handlers: the payload's {namespace}name, the
 * iq types it takes, whom it answers for, and the feature it adds to
 * disco#info. Later rounds (roster, vCard, private storage, blocking,
 * MAM...) add their rows.
 */
#include <stdbool.h>
#include <string.h>

#include "xmpp/xmpp_session.h"

#define XMPP_NS_PING "urn:xmpp:ping"
#define XMPP_NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define XMPP_NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define XMPP_NS_VERSION "jabber:iq:version"

#define XMPP_SOFTWARE_NAME "Switchboard"
#define XMPP_SOFTWARE_VERSION "0.1"

/* Which targets a handler answers for. */
#define FOR_SERVER (1u << XMPP_IQ_SERVER)
#define FOR_ACCOUNT (1u << XMPP_IQ_ACCOUNT)

struct iq_context {
    struct xmpp_server *srv;
    enum xmpp_iq_target target;
    const struct xmpp_element *iq, *payload;
    const char *from, *to;
    struct xmpp_buf *out;
};

struct iq_handler {
    const char *ns, *name;
    bool get, set;       /* the iq types it takes */
    unsigned targets;    /* FOR_SERVER, FOR_ACCOUNT */
    const char *feature; /* for disco#info on the server, or NULL */
    void (*answer)(struct iq_context *ctx);
};

static void result_open(struct iq_context *ctx)
{
    const char *id = xmpp_element_attr(ctx->iq, "id");

    xmpp_buf_append_str(ctx->out, "<iq type='result' from='");
    xmpp_buf_append_escaped(ctx->out, ctx->to, strlen(ctx->to), true);
    xmpp_buf_append_str(ctx->out, "' to='");
    xmpp_buf_append_escaped(ctx->out, ctx->from, strlen(ctx->from), true);
    xmpp_buf_append_str(ctx->out, "' id='");
    xmpp_buf_append_escaped(ctx->out, id, strlen(id), true);
    xmpp_buf_append_str(ctx->out, "'");
}

/* An empty result: <iq type='result'/>. */
static void answer_empty(struct iq_context *ctx)
{
    result_open(ctx);
    xmpp_buf_append_str(ctx->out, "/>");
}

static void answer_error(struct iq_context *ctx, const char *condition)
{
    xmpp_error_stanza(ctx->out, "iq", ctx->to, ctx->from, xmpp_element_attr(ctx->iq, "id"),
                      xmpp_error_type(condition), condition, NULL);
}

static void answer_disco_info(struct iq_context *ctx);
static void answer_disco_items(struct iq_context *ctx);
static void answer_version(struct iq_context *ctx);

static const struct iq_handler iq_handlers[] = {
    /* XEP-0199 §4.2 (server) and a ping without 'to'. */
    {XMPP_NS_PING, "ping", true, false, FOR_SERVER | FOR_ACCOUNT, XMPP_NS_PING, answer_empty},
    {XMPP_NS_DISCO_INFO, "query", true, false, FOR_SERVER, XMPP_NS_DISCO_INFO, answer_disco_info},
    {XMPP_NS_DISCO_ITEMS, "query", true, false, FOR_SERVER, XMPP_NS_DISCO_ITEMS,
     answer_disco_items},
    {XMPP_NS_VERSION, "query", true, false, FOR_SERVER, XMPP_NS_VERSION, answer_version},
    /* RFC 3921 §3: a no-op since RFC 6120; not a disco feature. */
    {XMPP_NS_SESSION, "session", false, true, FOR_SERVER | FOR_ACCOUNT, NULL, answer_empty},
};

#define N_HANDLERS (sizeof(iq_handlers) / sizeof(iq_handlers[0]))

/* Features of the server that are no iq of this table. */
static const char *const other_features[] = {
    "msgoffline", /* XEP-0160 §5: offline messages are stored (xmpp_offline.c) */
};

static void answer_disco_info(struct iq_context *ctx)
{
    /* XEP-0030 §3.1: nodes are not implemented. */
    if (xmpp_element_attr(ctx->payload, "node") != NULL) {
        answer_error(ctx, "item-not-found");
        return;
    }
    result_open(ctx);
    xmpp_buf_append_str(ctx->out,
                        "><query xmlns='" XMPP_NS_DISCO_INFO "'>"
                        "<identity category='server' type='im' name='" XMPP_SOFTWARE_NAME "'/>");
    for (size_t i = 0; i < N_HANDLERS; i++) {
        if (iq_handlers[i].feature == NULL || !(iq_handlers[i].targets & FOR_SERVER))
            continue;
        xmpp_buf_append_str(ctx->out, "<feature var='");
        xmpp_buf_append_str(ctx->out, iq_handlers[i].feature);
        xmpp_buf_append_str(ctx->out, "'/>");
    }
    for (size_t i = 0; i < sizeof(other_features) / sizeof(other_features[0]); i++) {
        xmpp_buf_append_str(ctx->out, "<feature var='");
        xmpp_buf_append_str(ctx->out, other_features[i]);
        xmpp_buf_append_str(ctx->out, "'/>");
    }
    xmpp_buf_append_str(ctx->out, "</query></iq>");
}

static void answer_disco_items(struct iq_context *ctx)
{
    if (xmpp_element_attr(ctx->payload, "node") != NULL) {
        answer_error(ctx, "item-not-found");
        return;
    }
    /* No services of our own are announced yet (rooms, pubsub...). */
    result_open(ctx);
    xmpp_buf_append_str(ctx->out, "><query xmlns='" XMPP_NS_DISCO_ITEMS "'/></iq>");
}

static void answer_version(struct iq_context *ctx)
{
    /* XEP-0092 §3: the operating system is optional and left out, as
     * the XEP's security considerations advise. */
    result_open(ctx);
    xmpp_buf_append_str(ctx->out,
                        "><query xmlns='" XMPP_NS_VERSION "'><name>" XMPP_SOFTWARE_NAME
                        "</name><version>" XMPP_SOFTWARE_VERSION "</version></query></iq>");
}

void xmpp_iq_answer(struct xmpp_server *srv, enum xmpp_iq_target target,
                    const struct xmpp_element *iq, const char *from, const char *to,
                    struct xmpp_buf *out)
{
    struct iq_context ctx = {srv, target, iq, xmpp_element_first_child(iq), from, to, out};
    bool get = strcmp(xmpp_element_attr(iq, "type"), "get") == 0;

    for (size_t i = 0; i < N_HANDLERS; i++) {
        const struct iq_handler *h = &iq_handlers[i];

        if (!(h->targets & (1u << target)) || !xmpp_element_is(ctx.payload, h->name, h->ns))
            continue;
        if (get ? !h->get : !h->set) {
            /* A known payload with the wrong type (RFC 6120 §8.3.3.1). */
            answer_error(&ctx, "bad-request");
            return;
        }
        h->answer(&ctx);
        return;
    }
    answer_error(&ctx, "service-unavailable");
}
