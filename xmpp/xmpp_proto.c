/*
 * switchboard-xmpp's callback table for the worker skeleton, and the
 * worker-wide tables: bound sessions by full JID, accounts by bare JID (for
 * resource conflicts and the session cap), client addresses (connection
 * cap and SASL failure counts). Broker messages come in here and go to
 * xmpp_route.c; after a broker (re)start, announce() gives it every
 * configured host as a route and every bound session.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "shared/log.h"
#include "xmpp/xmpp_session.h"

/* Most bytes of the private key file hashed into the fake-salt key. */
#define XMPP_KEY_FILE_MAX (64u << 10)

/* The one server of this process (request callbacks find it here). */
static struct xmpp_server *server;

struct xmpp_server *xmpp_server_get(void)
{
    return server;
}

const char *xmpp_host_lookup(const struct xmpp_server *srv, const char *name, size_t len)
{
    const struct config *c = srv->config;

    /* A trailing dot names the same host (RFC 7622 §3.2). */
    if (len > 0 && name[len - 1] == '.')
        len--;
    for (size_t i = 0; i < c->n_hosts; i++)
        if (strlen(c->hosts[i]) == len && strncasecmp(c->hosts[i], name, len) == 0)
            return c->hosts[i];
    return NULL;
}

/* --- client addresses --- */

/* "1.2.3.4:5" or "[::1]:5" -> the address alone. */
static void peer_address(const char *peer, char *out, size_t size)
{
    const char *end;

    if (peer[0] == '[') {
        peer++;
        end = strchr(peer, ']');
    } else {
        end = strrchr(peer, ':');
    }
    if (end == NULL)
        end = peer + strlen(peer);
    snprintf(out, size, "%.*s", (int)(end - peer), peer);
}

static bool ip_expired(const struct xmpp_ip *ip, double now)
{
    return ip->conns == 0 && (ip->failures == 0 || now - ip->window_start >= XMPP_AUTH_IP_WINDOW_S);
}

/* Forgets addresses without connections whose failure window is over. */
static void ip_sweep(struct xmpp_server *srv)
{
    double now = ev_now(worker_loop(srv->w));
    size_t n = hashmap_count(&srv->ips), k = 0, pos = 0;
    struct xmpp_ip **dead;
    void *value;

    if (n == 0)
        return;
    dead = malloc(n * sizeof(*dead));
    if (dead == NULL)
        return;
    while (hashmap_next(&srv->ips, &pos, NULL, NULL, &value))
        if (ip_expired(value, now))
            dead[k++] = value;
    for (size_t i = 0; i < k; i++) {
        hashmap_remove(&srv->ips, dead[i]->addr, strlen(dead[i]->addr));
        free(dead[i]);
    }
    free(dead);
}

static void ip_sweep_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    ip_sweep(t->data);
}

/* The address's entry, made when missing; NULL when the table is full or
 * memory is short (the address then goes uncounted). */
static struct xmpp_ip *ip_get(struct xmpp_server *srv, const char *addr)
{
    struct xmpp_ip *ip = hashmap_get(&srv->ips, addr, strlen(addr));

    if (ip != NULL)
        return ip;
    if (hashmap_count(&srv->ips) >= XMPP_IP_TABLE_MAX) {
        ip_sweep(srv);
        if (hashmap_count(&srv->ips) >= XMPP_IP_TABLE_MAX)
            return NULL;
    }
    ip = calloc(1, sizeof(*ip));
    if (ip == NULL)
        return NULL;
    snprintf(ip->addr, sizeof(ip->addr), "%s", addr);
    if (hashmap_put(&srv->ips, ip->addr, strlen(ip->addr), ip) < 0) {
        free(ip);
        return NULL;
    }
    return ip;
}

static void ip_release(struct xmpp_session *s)
{
    struct xmpp_ip *ip = s->ip;

    s->ip = NULL;
    if (ip == NULL)
        return;
    ip->conns--;
    if (ip_expired(ip, ev_now(worker_loop(s->srv->w)))) {
        hashmap_remove(&s->srv->ips, ip->addr, strlen(ip->addr));
        free(ip);
    }
}

void xmpp_ip_auth_failed(struct xmpp_session *s)
{
    double now = ev_now(worker_loop(s->srv->w));
    struct xmpp_ip *ip = s->ip;

    if (ip == NULL)
        return;
    if (ip->failures == 0 || now - ip->window_start >= XMPP_AUTH_IP_WINDOW_S) {
        ip->failures = 0;
        ip->window_start = now;
    }
    if (ip->failures < UINT32_MAX)
        ip->failures++;
    if (ip->failures == XMPP_AUTH_IP_FAILURES)
        log_info("address %s: %u failed authentications within %.0f s: refusing more for a while",
                 ip->addr, ip->failures, XMPP_AUTH_IP_WINDOW_S);
}

bool xmpp_ip_auth_blocked(struct xmpp_session *s)
{
    const struct xmpp_ip *ip = s->ip;

    return ip != NULL && ip->failures >= XMPP_AUTH_IP_FAILURES &&
           ev_now(worker_loop(s->srv->w)) - ip->window_start < XMPP_AUTH_IP_WINDOW_S;
}

/* --- bound sessions --- */

struct xmpp_session *xmpp_session_find(struct xmpp_server *srv, const char *jid, size_t len)
{
    return hashmap_get(&srv->sessions, jid, len);
}

void xmpp_session_announce(struct xmpp_session *s)
{
    struct ipc_writer *wr = worker_ipc_begin(s->srv->w, IPC_SESSION_ADD);

    ipc_put_bytes(wr, IPC_F_FROM, s->jid, s->jid_len);
    ipc_put_u64(wr, IPC_F_CONN, conn_id(s->conn));
    ipc_put_i32(wr, IPC_F_PRIORITY, s->priority);
    if (s->show[0] != '\0')
        ipc_put_str(wr, IPC_F_SHOW, s->show);
    if (s->status != NULL)
        ipc_put_str(wr, IPC_F_STATUS, s->status);
    if (!worker_ipc_end(s->srv->w))
        log_warnx("%s: the session could not be announced", s->jid);
}

/* The child {jabber:client}name of a presence, its text in *len_r. */
static const char *presence_child(const struct xmpp_element *e, const char *name, size_t *len_r)
{
    struct xmpp_element *c = xmpp_element_child(e, name, XMPP_NS_CLIENT);

    return c != NULL ? xmpp_element_text(c, len_r) : NULL;
}

int xmpp_session_presence(struct xmpp_session *s, const struct xmpp_element *presence,
                          const char **condition_r)
{
    static const char *const shows[] = {"away", "chat", "dnd", "xa"};
    const char *type = xmpp_element_attr(presence, "type"), *text;
    bool available = type == NULL;
    long priority = 0;
    char *status = NULL;
    size_t len;

    if (available && (text = presence_child(presence, "priority", &len)) != NULL) {
        char buf[8], *end;

        /* RFC 6121 §4.7.2.3: an integer from -128 to +127 (absent: 0). */
        if (len == 0 || len >= sizeof(buf)) {
            *condition_r = "bad-request";
            return -1;
        }
        memcpy(buf, text, len);
        buf[len] = '\0';
        priority = strtol(buf, &end, 10);
        if (*end != '\0' || priority < -128 || priority > 127) {
            *condition_r = "bad-request";
            return -1;
        }
    }
    s->show[0] = '\0';
    if (available && (text = presence_child(presence, "show", &len)) != NULL)
        for (size_t i = 0; i < sizeof(shows) / sizeof(shows[0]); i++)
            if (strlen(shows[i]) == len && memcmp(shows[i], text, len) == 0)
                snprintf(s->show, sizeof(s->show), "%s", shows[i]);
    if (available && (text = presence_child(presence, "status", &len)) != NULL && len > 0 &&
        len <= XMPP_STATUS_MAX)
        status = strndup(text, len);
    free(s->status);
    s->status = status;
    s->available = available;
    /* Unavailable: back to the default of a bound session. */
    s->priority = (int)priority;
    xmpp_session_announce(s);
    if (available && priority >= 0)
        xmpp_offline_deliver(s);
    return 0;
}

/* Takes s out of the tables; tells the broker when del is set. */
static void session_unbind(struct xmpp_session *s, bool del)
{
    struct xmpp_server *srv = s->srv;
    struct xmpp_account *a = s->account;

    if (!s->bound)
        return;
    hashmap_remove(&srv->sessions, s->jid, s->jid_len);
    if (s->acct_prev != NULL)
        s->acct_prev->acct_next = s->acct_next;
    else
        a->sessions = s->acct_next;
    if (s->acct_next != NULL)
        s->acct_next->acct_prev = s->acct_prev;
    s->acct_prev = s->acct_next = NULL;
    s->account = NULL;
    if (--a->n_sessions == 0) {
        hashmap_remove(&srv->accounts, a->bare, a->bare_len);
        free(a->bare);
        free(a);
    }
    s->bound = false;
    if (del) {
        struct ipc_writer *wr = worker_ipc_begin(srv->w, IPC_SESSION_DEL);

        ipc_put_bytes(wr, IPC_F_FROM, s->jid, s->jid_len);
        worker_ipc_end(srv->w);
    }
}

static struct xmpp_account *account_get(struct xmpp_server *srv, const struct xmpp_jid *jid)
{
    struct xmpp_account *a = hashmap_get(&srv->accounts, jid->str, jid->bare_len);

    if (a != NULL)
        return a;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->bare = strndup(jid->str, jid->bare_len);
    a->bare_len = jid->bare_len;
    if (a->bare == NULL || hashmap_put(&srv->accounts, a->bare, a->bare_len, a) < 0) {
        free(a->bare);
        free(a);
        return NULL;
    }
    return a;
}

int xmpp_session_bind(struct xmpp_session *s, const struct xmpp_jid *jid, const char **condition_r)
{
    struct xmpp_server *srv = s->srv;
    struct xmpp_session *old = xmpp_session_find(srv, jid->str, jid->len);
    struct xmpp_account *a = hashmap_get(&srv->accounts, jid->str, jid->bare_len);
    char *copy;

    if (old == NULL && a != NULL &&
        a->n_sessions >= (unsigned)srv->config->xmpp.max_sessions_per_account) {
        *condition_r = "resource-constraint";
        return -1;
    }
    copy = strndup(jid->str, jid->len);
    if (copy == NULL) {
        *condition_r = "internal-server-error";
        return -1;
    }
    if (old != NULL) {
        /* RFC 6120 §7.7.2.2: the new session wins. Its SESSION_ADD below
         * replaces the old one in the broker, so no SESSION_DEL. */
        log_info("conn %" PRIu64 ": %s replaces conn %" PRIu64, conn_id(s->conn), copy,
                 conn_id(old->conn));
        session_unbind(old, false);
        xmpp_stream_error(old, XMPP_STREAM_ERR_CONFLICT, "replaced by a new session");
    }
    a = account_get(srv, jid);
    if (a == NULL || hashmap_put(&srv->sessions, copy, jid->len, s) < 0) {
        if (a != NULL && a->n_sessions == 0) {
            hashmap_remove(&srv->accounts, a->bare, a->bare_len);
            free(a->bare);
            free(a);
        }
        free(copy);
        *condition_r = "internal-server-error";
        return -1;
    }
    s->jid = copy;
    s->jid_len = jid->len;
    s->bare_len = jid->bare_len;
    s->account = a;
    s->acct_next = a->sessions;
    if (a->sessions != NULL)
        a->sessions->acct_prev = s;
    a->sessions = s;
    a->n_sessions++;
    s->bound = true;
    xmpp_session_announce(s);
    return 0;
}

/* --- the callback table --- */

static void xmpp_conn_open(struct conn *c)
{
    struct xmpp_session *s = conn_data(c);
    struct xmpp_server *srv = server;
    int cap = srv->config->xmpp.max_connections_per_ip;
    char addr[INET6_ADDRSTRLEN];

    s->conn = c;
    s->srv = srv;
    s->next = srv->all;
    if (srv->all != NULL)
        srv->all->prev = s;
    srv->all = s;
    peer_address(conn_peer(c), addr, sizeof(addr));
    s->ip = ip_get(srv, addr);
    if (s->ip != NULL)
        s->ip->conns++;
    xmpp_stream_start(s);
    if (s->closing)
        return;
    if (cap > 0 && s->ip != NULL && s->ip->conns > (unsigned)cap) {
        /* RFC 6120 §4.9.3.14 names this case: too many connections. */
        xmpp_stream_error(s, XMPP_STREAM_ERR_POLICY_VIOLATION,
                          "too many connections from your address");
        return;
    }
}

static ssize_t xmpp_conn_input(struct conn *c, const uint8_t *data, size_t len)
{
    return xmpp_stream_input(conn_data(c), data, len);
}

static void xmpp_conn_overflow(struct conn *c)
{
    /* The parser consumes everything it is given, so the skeleton's input
     * buffer never fills; this is a guard. */
    xmpp_stream_error(conn_data(c), XMPP_STREAM_ERR_POLICY_VIOLATION, "input too long");
}

static void xmpp_conn_closed(struct conn *c, const char *reason)
{
    struct xmpp_session *s = conn_data(c);
    struct xmpp_server *srv = s->srv;

    if (s->bound)
        log_info("conn %" PRIu64 " [%s] %s: session ended: %s", conn_id(c), conn_peer(c), s->jid,
                 reason);
    xmpp_presence_gone(s);
    session_unbind(s, true);
    xmpp_stream_closed(s, reason);
    free(s->status);
    s->status = NULL;
    ip_release(s);
    free(s->jid);
    s->jid = NULL;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        srv->all = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
}

static void xmpp_conn_timeout(struct conn *c)
{
    xmpp_stream_timeout(conn_data(c));
}

static void xmpp_ipc_message(struct worker *w, const struct ipc_msg *m)
{
    switch (m->type) {
    case IPC_STANZA:
        xmpp_route_broker_stanza(server, m);
        return;
    default:
        log_debug("%s from the broker ignored", ipc_type_name(m->type));
        return;
    }
}

static void xmpp_announce(struct worker *w)
{
    const struct config *c = server->config;

    for (size_t i = 0; i < c->n_hosts; i++) {
        struct ipc_writer *wr = worker_ipc_begin(w, IPC_ROUTE_ADD);

        ipc_put_str(wr, IPC_F_ADDRESS, c->hosts[i]);
        worker_ipc_end(w);
    }
    for (struct xmpp_session *s = server->all; s != NULL; s = s->next)
        if (s->bound)
            xmpp_session_announce(s);
}

/* tls-server-end-point (RFC 5929 §4.1): the certificate's hash with its
 * signature's hash function, SHA-256 for MD5 and SHA-1. Not defined for
 * signatures without a separate hash (Ed25519): then not offered. */
static void load_endpoint_binding(struct xmpp_server *srv)
{
    const char *path = srv->config->tls_certificate;
    const EVP_MD *md;
    unsigned int len = 0;
    int mdnid = NID_undef, pknid = NID_undef;
    X509 *x;
    FILE *f;

    if (path == NULL || (f = fopen(path, "r")) == NULL)
        return;
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL)
        return;
    if (X509_get_signature_info(x, &mdnid, &pknid, NULL, NULL) == 1 && pknid != NID_ED25519 &&
        pknid != NID_ED448) {
        if (mdnid == NID_undef || mdnid == NID_md5 || mdnid == NID_sha1)
            mdnid = NID_sha256;
        md = EVP_get_digestbynid(mdnid);
        if (md != NULL && EVP_MD_get_size(md) <= (int)sizeof(srv->cb_endpoint) &&
            X509_digest(x, md, srv->cb_endpoint, &len) == 1)
            srv->cb_endpoint_len = len;
    }
    X509_free(x);
}

/* The key of the unknown-user SCRAM salts must outlive restarts (or a name
 * whose salt changes shows it is no account): derived from the TLS private
 * key, which is as secret and as stable. Without TLS, a random key. */
static void load_fake_secret(struct xmpp_server *srv)
{
    static const char label[] = "switchboard xmpp scram fake salt key";
    const char *path = srv->config->tls_key;
    unsigned char *data;
    unsigned int len = 0;
    EVP_MD_CTX *md;
    size_t n = 0;
    FILE *f;

    srv->fake_secret_len = 0;
    if (path == NULL || (f = fopen(path, "r")) == NULL)
        return;
    data = malloc(XMPP_KEY_FILE_MAX);
    if (data != NULL)
        n = fread(data, 1, XMPP_KEY_FILE_MAX, f);
    fclose(f);
    md = EVP_MD_CTX_new();
    if (data != NULL && n > 0 && md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
        EVP_DigestUpdate(md, label, sizeof(label)) == 1 && EVP_DigestUpdate(md, data, n) == 1 &&
        EVP_DigestFinal_ex(md, srv->fake_secret, &len) == 1)
        srv->fake_secret_len = len;
    EVP_MD_CTX_free(md);
    if (data != NULL) {
        OPENSSL_cleanse(data, XMPP_KEY_FILE_MAX);
        free(data);
    }
}

static int xmpp_init(struct worker *w, const char **error_r)
{
    const struct config *c = worker_config(w);
    struct xmpp_server *srv = calloc(1, sizeof(*srv));
    size_t out_max = XMPP_OUT_MAX(c->xmpp.max_stanza);

    if (srv == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    srv->w = w;
    srv->config = c;
    srv->limits.max_stanza = (size_t)c->xmpp.max_stanza;
    hashmap_init(&srv->sessions);
    hashmap_init(&srv->accounts);
    hashmap_init(&srv->ips);
    xmpp_buf_init(&srv->out, out_max);
    xmpp_buf_init(&srv->reply, out_max);
    load_endpoint_binding(srv);
    load_fake_secret(srv);
    ev_timer_init(&srv->sweep, ip_sweep_cb, XMPP_IP_SWEEP_S, XMPP_IP_SWEEP_S);
    srv->sweep.data = srv;
    ev_timer_start(worker_loop(w), &srv->sweep);
    ev_unref(worker_loop(w));
    server = srv;
    worker_set_data(w, srv);
    if (c->xmpp.require_tls)
        for (size_t i = 0; i < c->workers[SB_WORKER_XMPP].n_listeners; i++)
            if (c->workers[SB_WORKER_XMPP].listeners[i].tls == CONFIG_TLS_NONE)
                log_warnx("listener %s has no TLS but workers.xmpp.require_tls is set: "
                          "no client can log in there",
                          c->workers[SB_WORKER_XMPP].listeners[i].name);
    log_info("serving %zu host%s; tls-server-end-point %s", c->n_hosts, c->n_hosts == 1 ? "" : "s",
             srv->cb_endpoint_len > 0 ? "available" : "unavailable");
    return 0;
}

static void xmpp_deinit(struct worker *w)
{
    struct xmpp_server *srv = server;
    size_t pos = 0;
    void *value;

    if (srv == NULL)
        return;
    ev_ref(worker_loop(w));
    ev_timer_stop(worker_loop(w), &srv->sweep);
    while (hashmap_next(&srv->ips, &pos, NULL, NULL, &value))
        free(value);
    pos = 0;
    while (hashmap_next(&srv->accounts, &pos, NULL, NULL, &value)) {
        struct xmpp_account *a = value;
        free(a->bare);
        free(a);
    }
    hashmap_deinit(&srv->ips);
    hashmap_deinit(&srv->accounts);
    hashmap_deinit(&srv->sessions);
    xmpp_buf_free(&srv->out);
    xmpp_buf_free(&srv->reply);
    OPENSSL_cleanse(srv->fake_secret, sizeof(srv->fake_secret));
    free(srv);
    server = NULL;
    worker_set_data(w, NULL);
}

const struct worker_proto xmpp_proto = {
    .kind = SB_WORKER_XMPP,
    .conn_state_size = sizeof(struct xmpp_session),
    .init = xmpp_init,
    .deinit = xmpp_deinit,
    .conn_open = xmpp_conn_open,
    .conn_input = xmpp_conn_input,
    .conn_overflow = xmpp_conn_overflow,
    .conn_closed = xmpp_conn_closed,
    .conn_timeout = xmpp_conn_timeout,
    .ipc_message = xmpp_ipc_message,
    .announce = xmpp_announce,
};
