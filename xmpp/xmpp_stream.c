/*
 * The XML stream of one client connection, from the first byte to resource
 * binding (RFC 6120 §4 to §7): stream headers and features, STARTTLS,
 * SASL, binding, stream errors and the stream restarts after STARTTLS and
 * SASL. Once the session is bound, each first-level element goes through
 * xmpp_stanza_handlers, by {namespace}name: message, presence and iq to
 * xmpp_route.c; later rounds add their nonzas (stream management, CSI...)
 * as rows of that table.
 *
 * Input comes from the skeleton's conn_input (xmpp_proto.c) into the
 * incremental parser (xmpp_parse.h), whose callbacks land here. A
 * violation of the stream rules gets the RFC 6120 §4.9 condition, then
 * </stream:stream>, and the connection closes once that is flushed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "shared/auth.h"
#include "shared/log.h"
#include "xmpp/xmpp_session.h"

/* Stream header of our side; the stream id and host are filled in. */
#define STREAM_HEADER_FMT                                                                          \
    "<?xml version='1.0'?><stream:stream xmlns='" XMPP_NS_CLIENT                                   \
    "' xmlns:stream='" XMPP_NS_STREAMS "' id='%s' from='%s' version='1.0' xml:lang='en'>"
#define STREAM_END "</stream:stream>"

static void on_stream_open(void *ctx, const struct xmpp_stream_header *header);
static void on_stanza(void *ctx, struct xmpp_element *stanza);
static void on_stream_close(void *ctx);
static void on_parse_error(void *ctx, enum xmpp_stream_error condition, const char *text);

static const struct xmpp_parse_events stream_events = {
    .stream_open = on_stream_open,
    .stanza = on_stanza,
    .stream_close = on_stream_close,
    .error = on_parse_error,
};

#define SLOG(fn, s, fmt, ...)                                                                      \
    fn("conn %" PRIu64 " [%s]%s%s: " fmt, conn_id((s)->conn), conn_peer((s)->conn),                \
       (s)->jid != NULL ? " " : "", (s)->jid != NULL ? (s)->jid : "", ##__VA_ARGS__)

void xmpp_session_write(struct xmpp_session *s, const char *xml, size_t len)
{
    conn_write(s->conn, xml, len);
}

static void write_str(struct xmpp_session *s, const char *text)
{
    conn_write(s->conn, text, strlen(text));
}

static double preauth_timeout(const struct xmpp_server *srv)
{
    double idle = srv->config->limits.idle_timeout_s;

    return idle > 0 && idle < XMPP_PREAUTH_TIMEOUT_S ? idle : XMPP_PREAUTH_TIMEOUT_S;
}

static bool tls_required(const struct xmpp_session *s)
{
    return s->srv->config->xmpp.require_tls && !s->tls;
}

/* STARTTLS is offered on listeners configured for it, before TLS. */
static bool starttls_offered(const struct xmpp_session *s)
{
    return !s->tls && conn_listener(s->conn)->config->tls == CONFIG_TLS_STARTTLS;
}

/* --- channel bindings (RFC 5929, RFC 9266) --- */

struct cb_set {
    struct sasl_channel_binding cb[3];
    size_t n;
    uint8_t exporter[32];
    uint8_t unique[EVP_MAX_MD_SIZE];
};

/* The channel bindings this TLS session can offer. tls-unique and
 * tls-exporter on TLS 1.2 are only safe with the extended master secret
 * (RFC 7627; RFC 9266 §3); tls-unique does not exist on TLS 1.3. */
static void channel_bindings(struct xmpp_session *s, struct cb_set *set)
{
    SSL *ssl = conn_ssl(s->conn);
    bool tls13, ems;

    set->n = 0;
    if (ssl == NULL)
        return;
    tls13 = SSL_version(ssl) >= TLS1_3_VERSION;
    ems = tls13 || SSL_get_extms_support(ssl) == 1;
    if (ems && SSL_export_keying_material(ssl, set->exporter, sizeof(set->exporter),
                                          "EXPORTER-Channel-Binding",
                                          strlen("EXPORTER-Channel-Binding"), NULL, 0, 0) == 1) {
        set->cb[set->n++] =
            (struct sasl_channel_binding){"tls-exporter", set->exporter, sizeof(set->exporter)};
    }
    if (!tls13 && ems) {
        /* The first Finished of the handshake: the client's in a full
         * handshake, ours in an abbreviated one (RFC 5929 §3.1). */
        size_t n = SSL_session_reused(ssl)
                       ? SSL_get_finished(ssl, set->unique, sizeof(set->unique))
                       : SSL_get_peer_finished(ssl, set->unique, sizeof(set->unique));
        if (n > 0 && n <= SASL_MAX_CB_DATA)
            set->cb[set->n++] = (struct sasl_channel_binding){"tls-unique", set->unique, n};
    }
    if (s->srv->cb_endpoint_len > 0)
        set->cb[set->n++] = (struct sasl_channel_binding){
            "tls-server-end-point", s->srv->cb_endpoint, s->srv->cb_endpoint_len};
}

static void sasl_params_fill(struct xmpp_session *s, struct sasl_params *p, struct cb_set *cbs)
{
    channel_bindings(s, cbs);
    memset(p, 0, sizeof(*p));
    p->domain = s->host;
    p->tls_active = s->tls;
    p->allow_plain = s->srv->config->xmpp.plain;
    p->channel_bindings = cbs->cb;
    p->n_channel_bindings = cbs->n;
    p->fake_secret = s->srv->fake_secret;
    p->fake_secret_len = s->srv->fake_secret_len;
}

/* --- headers, features, errors --- */

static void new_stream_id(struct xmpp_session *s)
{
    uint8_t rnd[XMPP_STREAM_ID_BYTES];

    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        log_fatal(1, "no randomness for a stream id");
    auth_hex_encode(rnd, sizeof(rnd), s->stream_id);
}

static void send_header(struct xmpp_session *s)
{
    const char *host = s->host != NULL ? s->host : s->srv->config->hosts[0];

    new_stream_id(s);
    conn_printf(s->conn, STREAM_HEADER_FMT, s->stream_id, host);
    s->header_sent = true;
}

static void send_features(struct xmpp_session *s)
{
    struct xmpp_buf *b = &s->srv->reply;

    xmpp_buf_clear(b);
    xmpp_buf_append_str(b, "<stream:features>");
    if (starttls_offered(s)) {
        xmpp_buf_append_str(b, "<starttls xmlns='" XMPP_NS_TLS "'>");
        if (s->srv->config->xmpp.require_tls)
            xmpp_buf_append_str(b, "<required/>");
        xmpp_buf_append_str(b, "</starttls>");
    }
    /* RFC 6120 §5.3.1: when TLS is mandatory, nothing else before it. */
    if (!s->authenticated && !tls_required(s)) {
        struct sasl_params params;
        struct cb_set cbs;
        const char *names[SASL_MECH_COUNT];
        size_t n;

        sasl_params_fill(s, &params, &cbs);
        n = sasl_mechanisms(&params, names);
        xmpp_buf_append_str(b, "<mechanisms xmlns='" XMPP_NS_SASL "'>");
        for (size_t i = 0; i < n; i++) {
            xmpp_buf_append_str(b, "<mechanism>");
            xmpp_buf_append_str(b, names[i]);
            xmpp_buf_append_str(b, "</mechanism>");
        }
        xmpp_buf_append_str(b, "</mechanisms>");
        /* XEP-0440: the channel-binding types -PLUS may use here. */
        if (cbs.n > 0) {
            xmpp_buf_append_str(b, "<sasl-channel-binding xmlns='" XMPP_NS_SASL_CB "'>");
            for (size_t i = 0; i < cbs.n; i++) {
                xmpp_buf_append_str(b, "<channel-binding type='");
                xmpp_buf_append_str(b, cbs.cb[i].type);
                xmpp_buf_append_str(b, "'/>");
            }
            xmpp_buf_append_str(b, "</sasl-channel-binding>");
        }
    }
    if (s->authenticated) {
        /* RFC 6120 §7.4; and RFC 3921's session establishment as an
         * optional no-op for old clients (draft-cridland-xmpp-session). */
        xmpp_buf_append_str(b, "<bind xmlns='" XMPP_NS_BIND "'/>"
                               "<session xmlns='" XMPP_NS_SESSION "'><optional/></session>"
                               /* RFC 6121 §2.6.1: roster versioning. */
                               "<ver xmlns='urn:xmpp:features:rosterver'/>");
    }
    xmpp_buf_append_str(b, "</stream:features>");
    if (b->failed) {
        xmpp_stream_error(s, XMPP_STREAM_ERR_INTERNAL_SERVER_ERROR, NULL);
        return;
    }
    xmpp_session_write(s, b->data, b->len);
}

void xmpp_stream_error(struct xmpp_session *s, enum xmpp_stream_error condition, const char *text)
{
    struct xmpp_buf *b = &s->srv->reply;

    if (s->closing)
        return;
    if (!s->header_sent)
        send_header(s);
    xmpp_buf_clear(b);
    xmpp_buf_append_str(b, "<stream:error><");
    xmpp_buf_append_str(b, xmpp_stream_error_name(condition));
    xmpp_buf_append_str(b, " xmlns='" XMPP_NS_STREAM_ERRORS "'/>");
    if (text != NULL) {
        xmpp_buf_append_str(b, "<text xmlns='" XMPP_NS_STREAM_ERRORS "' xml:lang='en'>");
        xmpp_buf_append_escaped(b, text, strlen(text), false);
        xmpp_buf_append_str(b, "</text>");
    }
    xmpp_buf_append_str(b, "</stream:error>" STREAM_END);
    if (!b->failed)
        xmpp_session_write(s, b->data, b->len);
    SLOG(log_info, s, "stream error <%s/>%s%s", xmpp_stream_error_name(condition),
         text != NULL ? ": " : "", text != NULL ? text : "");
    s->closing = true;
    conn_close(s->conn, xmpp_stream_error_name(condition));
}

/* --- the stream header --- */

/* RFC 6120 §4.7.5: "major.minor"; we speak 1.0 and answer 1.x with 1.0. */
static bool version_ok(const char *v)
{
    if (v == NULL || v[0] != '1' || v[1] != '.')
        return false;
    v += 2;
    if (*v < '0' || *v > '9')
        return false;
    while (*v >= '0' && *v <= '9')
        v++;
    return *v == '\0';
}

static void on_stream_open(void *ctx, const struct xmpp_stream_header *h)
{
    struct xmpp_session *s = ctx;
    const char *host = h->to != NULL ? xmpp_host_lookup(s->srv, h->to, strlen(h->to)) : NULL;

    if (s->closing)
        return;
    /* §4.9.3.6: the header names a host we do not serve; after a restart
     * it must name the same one. */
    if (host == NULL || (s->host != NULL && host != s->host)) {
        xmpp_stream_error(s, XMPP_STREAM_ERR_HOST_UNKNOWN,
                          h->to == NULL ? "no 'to' in the stream header" : "no such host here");
        return;
    }
    s->host = host;
    if (!version_ok(h->version)) {
        xmpp_stream_error(s, XMPP_STREAM_ERR_UNSUPPORTED_VERSION, "version 1.0 is required");
        return;
    }
    send_header(s);
    send_features(s);
}

static void on_stream_close(void *ctx)
{
    struct xmpp_session *s = ctx;

    if (s->closing)
        return;
    if (!s->header_sent)
        send_header(s);
    write_str(s, STREAM_END);
    s->closing = true;
    conn_close(s->conn, "stream closed by the client");
}

static void on_parse_error(void *ctx, enum xmpp_stream_error condition, const char *text)
{
    struct xmpp_session *s = ctx;

    /* The text may quote the peer's bytes: for our log only. */
    SLOG(log_info, s, "parse error: %s", text != NULL ? text : "");
    xmpp_stream_error(s, condition, NULL);
}

/* --- STARTTLS (RFC 6120 §5.4) --- */

static void handle_starttls(struct xmpp_session *s, struct xmpp_element *e)
{
    if (!starttls_offered(s)) {
        /* §5.4.2.2: failure, then close the stream. */
        write_str(s, "<failure xmlns='" XMPP_NS_TLS "'/>" STREAM_END);
        s->closing = true;
        conn_close(s->conn, "STARTTLS not offered");
        return;
    }
    write_str(s, "<proceed xmlns='" XMPP_NS_TLS "'/>");
    if (conn_starttls(s->conn) < 0) {
        write_str(s, "<failure xmlns='" XMPP_NS_TLS "'/>" STREAM_END);
        s->closing = true;
        conn_close(s->conn, "STARTTLS failed");
        return;
    }
    /* §5.4.3.3: a new stream on top of TLS; whatever the client sent after
     * <starttls/> in clear is dropped by the skeleton. */
    s->tls = true;
    s->header_sent = false;
    s->restarting_tls = true;
    xmpp_parser_reset(s->parser);
}

/* --- SASL (RFC 6120 §6) --- */

static void sasl_end(struct xmpp_session *s)
{
    sasl_server_free(&s->sasl);
    s->sasl_req = 0;
}

/* Sends <failure/>, counts it, and closes the stream after too many. */
static void sasl_failure(struct xmpp_session *s, enum sasl_condition condition, const char *reason,
                         bool counted)
{
    const char *name = sasl_condition_name(condition);

    sasl_end(s);
    conn_printf(s->conn, "<failure xmlns='" XMPP_NS_SASL "'><%s/></failure>", name);
    SLOG(log_info, s, "SASL failure <%s/>: %s", name, reason != NULL ? reason : "");
    if (!counted)
        return;
    xmpp_ip_auth_failed(s);
    /* §6.4.5: a reasonable number of retries, then <policy-violation/>. */
    if (++s->sasl_failures >= (unsigned)s->srv->config->xmpp.auth_failures)
        xmpp_stream_error(s, XMPP_STREAM_ERR_POLICY_VIOLATION, "too many failed authentications");
}

static void sasl_send(struct xmpp_session *s, const char *element, const uint8_t *data, size_t len)
{
    char b64[AUTH_BASE64_SIZE(SASL_MAX_MESSAGE)];

    if (data == NULL) {
        conn_printf(s->conn, "<%s xmlns='" XMPP_NS_SASL "'/>", element);
        return;
    }
    if (len == 0) {
        /* §6.4.6: additional data of zero length is "=". */
        conn_printf(s->conn, "<%s xmlns='" XMPP_NS_SASL "'>%s</%s>", element,
                    strcmp(element, "success") == 0 ? "=" : "", element);
        return;
    }
    if (len > SASL_MAX_MESSAGE || auth_base64_encode(data, len, b64, sizeof(b64)) < 0) {
        sasl_failure(s, SASL_COND_TEMPORARY_AUTH_FAILURE, "server message too long", false);
        return;
    }
    conn_printf(s->conn, "<%s xmlns='" XMPP_NS_SASL "'>%s</%s>", element, b64, element);
}

static void sasl_credentials_done(void *ctx, const struct ipc_msg *m);

/* The stream restarts after <success/> (§6.4.6). From a parser callback
 * the reset also ends the current feed, and xmpp_stream_input hands the
 * rest of the input to the new stream. */
static void sasl_success(struct xmpp_session *s, const struct sasl_output *out)
{
    char user[XMPP_JID_MAX_PART + 1];
    const char *error;

    if (!sasl_authzid_ok(out->authzid, out->authcid, s->host)) {
        sasl_failure(s, SASL_COND_INVALID_AUTHZID, "authzid is another identity", true);
        return;
    }
    if (xmpp_localpart_normalize(out->authcid, strlen(out->authcid), user, &error) < 0) {
        sasl_failure(s, SASL_COND_NOT_AUTHORIZED, error, true);
        return;
    }
    s->user = strdup(user);
    if (s->user == NULL) {
        sasl_failure(s, SASL_COND_TEMPORARY_AUTH_FAILURE, "out of memory", false);
        return;
    }
    sasl_send(s, "success", out->data, out->data_len);
    if (s->closing)
        return;
    log_info("conn %" PRIu64 " [%s]: authenticated as %s@%s with %s", conn_id(s->conn),
             conn_peer(s->conn), s->user, s->host, sasl_server_mechanism(s->sasl));
    sasl_end(s);
    s->authenticated = true;
    s->header_sent = false;
    xmpp_parser_reset(s->parser);
}

static void sasl_result(struct xmpp_session *s, enum sasl_result r, const struct sasl_output *out)
{
    struct ipc_slice args[2];

    switch (r) {
    case SASL_CONTINUE:
        sasl_send(s, "challenge", out->data_len > 0 ? out->data : NULL, out->data_len);
        return;
    case SASL_NEED_CREDENTIALS:
        args[0] =
            (struct ipc_slice){(const uint8_t *)out->username, (uint32_t)strlen(out->username)};
        args[1] = (struct ipc_slice){(const uint8_t *)s->host, (uint32_t)strlen(s->host)};
        s->sasl_req =
            worker_request(s->srv->w, "store", "account.get", args, 2, XMPP_STORE_TIMEOUT_MS,
                           sasl_credentials_done, (void *)(uintptr_t)conn_id(s->conn));
        return;
    case SASL_SUCCESS:
        sasl_success(s, out);
        return;
    case SASL_FAILURE:
        sasl_failure(s, out->condition, out->reason, true);
        return;
    }
}

/* The store's answer to account.get. The connection may be gone, or the
 * exchange aborted and another started: the request id tells. */
static void sasl_credentials_done(void *ctx, const struct ipc_msg *m)
{
    struct xmpp_server *srv = xmpp_server_get();
    struct conn *c = srv != NULL ? worker_conn_find(srv->w, (uint64_t)(uintptr_t)ctx) : NULL;
    struct xmpp_session *s = c != NULL ? conn_data(c) : NULL;
    struct sasl_credentials cred;
    struct sasl_output out;
    const char *error;
    enum sasl_result r;

    if (s == NULL || s->closing || s->sasl == NULL || s->sasl_req != m->req_id)
        return;
    s->sasl_req = 0;
    if (m->code == IPC_CODE_OK) {
        if (sasl_credentials_from_response(&cred, m, &error) < 0) {
            sasl_failure(s, SASL_COND_TEMPORARY_AUTH_FAILURE, error, false);
            return;
        }
        r = sasl_server_credentials(s->sasl, &cred, &out);
    } else if (m->code == IPC_CODE_NOT_FOUND || m->code == IPC_CODE_BAD_REQUEST) {
        r = sasl_server_credentials(s->sasl, NULL, &out);
    } else {
        char reason[128];

        snprintf(reason, sizeof(reason), "store: %s", ipc_code_name(m->code));
        sasl_failure(s, SASL_COND_TEMPORARY_AUTH_FAILURE, reason, false);
        return;
    }
    sasl_result(s, r, &out);
}

/* The element's text, base64-decoded into buf: 1 with data, 0 when the
 * element is empty (no data), -1 after a failure was sent. "=" is data of
 * length zero (§6.4.2). */
static int sasl_decode(struct xmpp_session *s, const struct xmpp_element *e, uint8_t *buf,
                       size_t *len_r)
{
    size_t tlen;
    const char *text = xmpp_element_text(e, &tlen);
    int n;

    *len_r = 0;
    if (text == NULL) {
        sasl_failure(s, SASL_COND_TEMPORARY_AUTH_FAILURE, "out of memory", false);
        return -1;
    }
    if (tlen == 0)
        return 0;
    if (tlen == 1 && text[0] == '=')
        return 1;
    if (tlen > AUTH_BASE64_SIZE(SASL_MAX_MESSAGE) - 1) {
        sasl_failure(s, SASL_COND_MALFORMED_REQUEST, "SASL message too long", true);
        return -1;
    }
    n = auth_base64_decode(text, tlen, buf, SASL_MAX_MESSAGE);
    if (n < 0) {
        sasl_failure(s, SASL_COND_INCORRECT_ENCODING, "bad base64", true);
        return -1;
    }
    *len_r = (size_t)n;
    return 1;
}

static void handle_auth(struct xmpp_session *s, struct xmpp_element *e)
{
    const char *mech = xmpp_element_attr(e, "mechanism");
    uint8_t buf[SASL_MAX_MESSAGE];
    struct sasl_params params;
    struct sasl_output out;
    struct cb_set cbs;
    enum sasl_condition cond;
    const char *error;
    size_t len;
    int have;

    if (s->sasl != NULL) {
        sasl_failure(s, SASL_COND_MALFORMED_REQUEST, "<auth/> during an exchange", true);
        return;
    }
    if (xmpp_ip_auth_blocked(s)) {
        sasl_failure(s, SASL_COND_TEMPORARY_AUTH_FAILURE, "too many failures from this address",
                     false);
        return;
    }
    if (mech == NULL) {
        sasl_failure(s, SASL_COND_INVALID_MECHANISM, "no mechanism", true);
        return;
    }
    sasl_params_fill(s, &params, &cbs);
    cond = sasl_mechanism_check(mech, &params);
    if (cond != SASL_COND_NONE) {
        sasl_failure(s, cond, "mechanism refused", true);
        return;
    }
    s->sasl = sasl_server_new(mech, &params, &error);
    if (s->sasl == NULL) {
        sasl_failure(s, SASL_COND_TEMPORARY_AUTH_FAILURE, error, false);
        return;
    }
    have = sasl_decode(s, e, buf, &len);
    if (have < 0)
        return;
    sasl_result(s, sasl_server_step(s->sasl, have ? buf : NULL, len, &out), &out);
}

static void handle_response(struct xmpp_session *s, struct xmpp_element *e)
{
    uint8_t buf[SASL_MAX_MESSAGE];
    struct sasl_output out;
    size_t len;

    if (s->sasl == NULL) {
        sasl_failure(s, SASL_COND_MALFORMED_REQUEST, "<response/> outside an exchange", true);
        return;
    }
    if (sasl_decode(s, e, buf, &len) < 0)
        return;
    sasl_result(s, sasl_server_step(s->sasl, buf, len, &out), &out);
}

static void handle_abort(struct xmpp_session *s, struct xmpp_element *e)
{
    /* §6.4.4: <failure><aborted/></failure>; it counts as an attempt, so
     * that starting and aborting exchanges is not a free loop. */
    sasl_failure(s, SASL_COND_ABORTED, "aborted by the client", true);
}

/* --- resource binding (RFC 6120 §7) --- */

static void iq_error(struct xmpp_session *s, const struct xmpp_element *iq, const char *condition,
                     const char *text)
{
    struct xmpp_buf *b = &s->srv->reply;

    xmpp_buf_clear(b);
    if (xmpp_error_stanza(b, "iq", NULL, NULL, xmpp_element_attr(iq, "id"),
                          xmpp_error_type(condition), condition, text) == 0)
        xmpp_session_write(s, b->data, b->len);
}

static void bind_failed(struct xmpp_session *s, const struct xmpp_element *iq,
                        const char *condition, const char *text)
{
    iq_error(s, iq, condition, text);
    SLOG(log_info, s, "bind refused <%s/>: %s", condition, text);
    if (++s->bind_failures >= XMPP_BIND_RETRIES)
        xmpp_stream_error(s, XMPP_STREAM_ERR_POLICY_VIOLATION, "too many failed binds");
}

static void handle_bind(struct xmpp_session *s, struct xmpp_element *iq, struct xmpp_element *bind)
{
    struct xmpp_element *res = xmpp_element_child(bind, "resource", XMPP_NS_BIND);
    struct xmpp_buf *b = &s->srv->reply;
    char resource[XMPP_RESOURCE_BYTES * 2 + 1], *full;
    const char *text = NULL, *error, *condition;
    struct xmpp_jid *jid;
    size_t tlen = 0;
    int n;

    if (res != NULL) {
        text = xmpp_element_text(res, &tlen);
        if (text == NULL || xmpp_resource_check(text, tlen, &error) < 0) {
            bind_failed(s, iq, "bad-request", text == NULL ? "out of memory" : error);
            return;
        }
    } else {
        /* §7.6.2.1: the server makes one up. */
        uint8_t rnd[XMPP_RESOURCE_BYTES];

        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
            log_fatal(1, "no randomness for a resource");
        auth_hex_encode(rnd, sizeof(rnd), resource);
        text = resource;
        tlen = strlen(resource);
    }
    full = malloc(XMPP_JID_MAX + 1);
    jid = malloc(sizeof(*jid));
    if (full == NULL || jid == NULL) {
        free(full);
        free(jid);
        bind_failed(s, iq, "internal-server-error", "out of memory");
        return;
    }
    n = snprintf(full, XMPP_JID_MAX + 1, "%s@%s/%.*s", s->user, s->host, (int)tlen, text);
    if (n < 0 || n > XMPP_JID_MAX || xmpp_jid_parse(jid, full, (size_t)n, &error) < 0) {
        free(full);
        free(jid);
        bind_failed(s, iq, "bad-request", "address too long");
        return;
    }
    free(full);
    if (xmpp_session_bind(s, jid, &condition) < 0) {
        free(jid);
        bind_failed(s, iq, condition, "cannot bind");
        return;
    }
    free(jid);
    xmpp_buf_clear(b);
    xmpp_buf_append_str(b, "<iq type='result' id='");
    xmpp_buf_append_escaped(b, xmpp_element_attr(iq, "id"), strlen(xmpp_element_attr(iq, "id")),
                            true);
    xmpp_buf_append_str(b, "'><bind xmlns='" XMPP_NS_BIND "'><jid>");
    xmpp_buf_append_escaped(b, s->jid, s->jid_len, false);
    xmpp_buf_append_str(b, "</jid></bind></iq>");
    if (!b->failed)
        xmpp_session_write(s, b->data, b->len);
    conn_set_timeout(s->conn, s->srv->config->limits.idle_timeout_s);
    SLOG(log_info, s, "bound");
}

/* Before binding, only the bind iq is allowed (§7.1). */
static void handle_unbound(struct xmpp_session *s, struct xmpp_element *e)
{
    struct xmpp_element *child = xmpp_element_first_child(e);
    const char *type = xmpp_element_attr(e, "type"), *id = xmpp_element_attr(e, "id");

    if (!xmpp_element_is(e, "iq", XMPP_NS_CLIENT) || child == NULL ||
        !xmpp_element_is(child, "bind", XMPP_NS_BIND)) {
        xmpp_stream_error(s, XMPP_STREAM_ERR_NOT_AUTHORIZED, "bind a resource first");
        return;
    }
    if (id == NULL || type == NULL || strcmp(type, "set") != 0 ||
        xmpp_element_next_sibling(child) != NULL) {
        if (id == NULL) {
            xmpp_stream_error(s, XMPP_STREAM_ERR_INVALID_XML, "iq without an id");
            return;
        }
        bind_failed(s, e, "bad-request", "bind is an iq set with one child");
        return;
    }
    handle_bind(s, e, child);
}

/* --- the first-level elements --- */

static void handle_client_stanza(struct xmpp_session *s, struct xmpp_element *e)
{
    xmpp_route_client_stanza(s, e);
}

/* After binding: what a first-level element means, by {namespace}name.
 * Later rounds add their rows here (XEP-0198 enable/r/a, XEP-0352...). */
const struct xmpp_stanza_handler xmpp_stanza_handlers[] = {
    {XMPP_NS_CLIENT, "message", handle_client_stanza},
    {XMPP_NS_CLIENT, "presence", handle_client_stanza},
    {XMPP_NS_CLIENT, "iq", handle_client_stanza},
    {NULL, NULL, NULL},
};

static void handle_bound(struct xmpp_session *s, struct xmpp_element *e)
{
    for (const struct xmpp_stanza_handler *h = xmpp_stanza_handlers; h->ns != NULL; h++) {
        if (xmpp_element_is(e, h->name, h->ns)) {
            h->handle(s, e);
            return;
        }
    }
    xmpp_stream_error(s, XMPP_STREAM_ERR_UNSUPPORTED_STANZA_TYPE, NULL);
}

static void on_stanza(void *ctx, struct xmpp_element *e)
{
    struct xmpp_session *s = ctx;

    if (s->closing)
        return;
    if (xmpp_element_is(e, "starttls", XMPP_NS_TLS)) {
        handle_starttls(s, e);
        return;
    }
    if (tls_required(s)) {
        /* §5.3.1: TLS is mandatory-to-negotiate here. */
        xmpp_stream_error(s, XMPP_STREAM_ERR_POLICY_VIOLATION, "STARTTLS is required first");
        return;
    }
    if (!s->authenticated) {
        if (xmpp_element_is(e, "auth", XMPP_NS_SASL))
            handle_auth(s, e);
        else if (xmpp_element_is(e, "response", XMPP_NS_SASL))
            handle_response(s, e);
        else if (xmpp_element_is(e, "abort", XMPP_NS_SASL))
            handle_abort(s, e);
        else
            /* §4.9.3.12: stanzas before authentication. */
            xmpp_stream_error(s, XMPP_STREAM_ERR_NOT_AUTHORIZED, "authenticate first");
        return;
    }
    if (!s->bound) {
        handle_unbound(s, e);
        return;
    }
    handle_bound(s, e);
}

/* --- the connection --- */

void xmpp_stream_start(struct xmpp_session *s)
{
    s->tls = conn_is_tls(s->conn);
    s->tokens = XMPP_RATE_BURST;
    s->last_fill = ev_now(worker_loop(s->srv->w));
    s->parser = xmpp_parser_new(XMPP_NS_CLIENT, &s->srv->limits);
    if (s->parser == NULL) {
        s->closing = true;
        conn_close(s->conn, "out of memory for a parser");
        return;
    }
    conn_set_timeout(s->conn, preauth_timeout(s->srv));
}

/* The token bucket: bytes received cost tokens that refill at
 * XMPP_RATE_BYTES_PER_S up to XMPP_RATE_BURST; a debt pauses reading. */
static void rate_charge(struct xmpp_session *s, size_t bytes)
{
    double now = ev_now(worker_loop(s->srv->w));

    s->tokens += (now - s->last_fill) * XMPP_RATE_BYTES_PER_S;
    if (s->tokens > XMPP_RATE_BURST)
        s->tokens = XMPP_RATE_BURST;
    s->last_fill = now;
    s->tokens -= (double)bytes;
    if (s->tokens < 0 && !s->closing)
        conn_pause_input(s->conn, -s->tokens / XMPP_RATE_BYTES_PER_S);
}

ssize_t xmpp_stream_input(struct xmpp_session *s, const uint8_t *data, size_t len)
{
    size_t done = 0;

    if (s->closing || s->parser == NULL)
        return (ssize_t)len;
    while (done < len) {
        ssize_t n = xmpp_parser_feed(s->parser, data + done, len - done, &stream_events, s);

        if (n < 0) {
            /* on_parse_error sent the stream error. */
            if (!s->closing)
                xmpp_stream_error(s, xmpp_parser_error(s->parser, NULL), NULL);
            return -1;
        }
        done += (size_t)n;
        if (s->closing)
            return -1;
        if (n == 0)
            break;
        if (s->restarting_tls) {
            /* The rest was sent in clear before the handshake. */
            s->restarting_tls = false;
            rate_charge(s, done);
            return (ssize_t)done;
        }
        /* Otherwise a SASL restart: the rest is the new stream's. */
    }
    rate_charge(s, done);
    return (ssize_t)done;
}

void xmpp_stream_timeout(struct xmpp_session *s)
{
    xmpp_stream_error(s, XMPP_STREAM_ERR_CONNECTION_TIMEOUT,
                      s->bound ? "idle for too long" : "authenticate and bind sooner");
}

void xmpp_stream_closed(struct xmpp_session *s, const char *reason)
{
    sasl_end(s);
    xmpp_parser_free(&s->parser);
    free(s->user);
    s->user = NULL;
}
