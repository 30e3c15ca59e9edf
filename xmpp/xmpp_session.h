/*
 * switchboard-xmpp's insides, shared by its files and by nothing else:
 * the worker's global state (struct xmpp_server), the state of one client
 * connection (struct xmpp_session), the caps in one place, and the
 * functions the files call in each other.
 *
 * The flow of a connection:
 *   xmpp_proto.c   the worker_proto callbacks; the session and per-address
 *                  tables; broker messages in; announce
 *   xmpp_stream.c  stream headers and features, STARTTLS, SASL, resource
 *                  binding, stream errors and restarts; after binding, each
 *                  first-level element is dispatched by {namespace}name
 *                  through xmpp_stanza_handlers (later rounds add rows:
 *                  stream management, CSI...)
 *   xmpp_route.c   RFC 6120 §8 and §10 checks on client stanzas, the
 *                  normalized IPC_STANZA to the broker, deliveries from the
 *                  broker to sessions, RFC 6121 §8 rules for addresses
 *                  without a session, stanza errors
 *   xmpp_iq.c      iqs the server answers itself (ping, disco, version...)
 *   xmpp_roster.c  the roster (RFC 6121 §2) in the store: gets, sets, pushes
 *   xmpp_presence.c subscriptions (RFC 6121 §3) and presence broadcast,
 *                  probes and directed presence (§4)
 *   xmpp_offline.c offline messages (RFC 6121 §8.5.2.2.1, XEP-0160) in the
 *                  store: queued for accounts without an available session,
 *                  delivered on the first available presence
 */
#ifndef SB_XMPP_SESSION_H
#define SB_XMPP_SESSION_H

#include <ev.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/hashmap.h"
#include "shared/sasl.h"
#include "workers/worker.h"
#include "xmpp/xmpp_jid.h"
#include "xmpp/xmpp_parse.h"
#include "xmpp/xmpp_xml.h"

/* --- caps and timings of the c2s worker, in one place --- */

/* Seconds a connection may take to authenticate and bind (or the
 * configured idle timeout when it is shorter). */
#define XMPP_PREAUTH_TIMEOUT_S 30.0
/* Input rate shaper per connection (token bucket on received bytes): the
 * sustained rate and the burst. Beyond it the connection is not read for
 * the time the debt takes to repay. */
#define XMPP_RATE_BYTES_PER_S (100.0 * 1024)
#define XMPP_RATE_BURST (1024.0 * 1024)
/* How long the store may take to answer account.get during SASL. */
#define XMPP_STORE_TIMEOUT_MS 5000
/* Failed SASL attempts per client address within the window before every
 * attempt from it gets <temporary-auth-failure/> until the window ends. */
#define XMPP_AUTH_IP_FAILURES 5
#define XMPP_AUTH_IP_WINDOW_S 60.0
/* Addresses remembered for connection counts and failures: past this,
 * failures of addresses without connections are forgotten first. */
#define XMPP_IP_TABLE_MAX 65536
/* How often the address table forgets expired failure windows. */
#define XMPP_IP_SWEEP_S 30.0
/* RFC 6120 §7.7.2.1 asks for 5 to 10 bind retries before policy-violation. */
#define XMPP_BIND_RETRIES 5
/* Roster requests one session may have waiting for the store. */
#define XMPP_ROSTER_PENDING_MAX 16
/* Roster item limits (RFC 6121 §2.3.3's server-configured limits; the
 * store's own caps). */
#define XMPP_ROSTER_NAME_MAX 1023
#define XMPP_ROSTER_GROUP_MAX 1023
#define XMPP_ROSTER_GROUPS_MAX 100
/* Addresses one session remembers having sent directed presence to
 * (RFC 6121 §4.6): they get its unavailable presence. Past the cap, more
 * are not remembered. */
#define XMPP_DIRECTED_MAX 64
/* Most bytes of a presence <status/> kept for the broker; longer ones are
 * not announced. */
#define XMPP_STATUS_MAX 1024
/* Random bytes of a stream id (hex in the header). */
#define XMPP_STREAM_ID_BYTES 16
/* Random bytes of a server-generated resource (hex). */
#define XMPP_RESOURCE_BYTES 8
/* Most bytes of one serialized stanza on its way to the broker or a
 * client: escaping can make a max_stanza element somewhat longer. */
#define XMPP_OUT_MAX(max_stanza) ((size_t)(max_stanza)*2 + 4096)

#define XMPP_NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define XMPP_NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define XMPP_NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define XMPP_NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define XMPP_NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define XMPP_NS_STREAM_ERRORS "urn:ietf:params:xml:ns:xmpp-streams"
/* XEP-0440: which channel-binding types the server supports. */
#define XMPP_NS_SASL_CB "urn:xmpp:sasl-cb:0"

/* One client address: open connections and recent SASL failures. */
struct xmpp_ip {
    char addr[INET6_ADDRSTRLEN]; /* the map key */
    unsigned conns;
    unsigned failures; /* within the window that started at window_start */
    double window_start;
};

/* The bound sessions of one account (for conflicts and the session cap). */
struct xmpp_account {
    char *bare; /* the map key: "local@domain" */
    size_t bare_len;
    struct xmpp_session *sessions;
    unsigned n_sessions;
};

struct xmpp_server {
    struct worker *w;
    const struct config *config;
    struct xmpp_parser_limits limits;
    struct hashmap sessions; /* full JID -> struct xmpp_session (bound ones) */
    struct hashmap accounts; /* bare JID -> struct xmpp_account */
    struct hashmap ips;      /* address -> struct xmpp_ip */
    struct xmpp_session *all;
    /* Reused serialization buffers: out for stanzas, reply for answers
     * built while out is in use. */
    struct xmpp_buf out, reply;
    /* tls-server-end-point (RFC 5929 §4.1) of the certificate, computed once. */
    uint8_t cb_endpoint[64];
    size_t cb_endpoint_len;
    /* Key of the unknown-user SCRAM salts (sasl_params.fake_secret). */
    uint8_t fake_secret[32];
    size_t fake_secret_len;
    ev_timer sweep;
    uint64_t push_seq; /* ids of roster pushes */
};

struct xmpp_session {
    struct conn *conn;
    struct xmpp_server *srv;
    struct xmpp_parser *parser;
    struct xmpp_ip *ip;
    const char *host; /* the configured host this stream is for (its 'to') */
    bool header_sent; /* our response header for the current stream went out */
    bool tls;         /* TLS is up (direct or after STARTTLS) */
    bool authenticated;
    bool bound;
    bool closing;        /* a stream error or close was sent: ignore further input */
    bool restarting_tls; /* <proceed/> sent during this feed: drop the rest */

    /* SASL */
    struct sasl_server *sasl;
    uint32_t sasl_req; /* the pending account.get, 0 when none */
    unsigned sasl_failures, bind_failures;
    char *user; /* the normalized localpart once authenticated */

    /* Bound: the full JID, its bare prefix, and the account's list. */
    char *jid;
    size_t jid_len, bare_len;
    struct xmpp_account *account;
    struct xmpp_session *acct_prev, *acct_next;
    struct xmpp_session *prev, *next; /* every session of the worker */

    /* Roster (xmpp_roster.c): requested once, so it gets pushes (RFC 6121
     * §2.1.6's interested resource); store requests in flight. */
    bool roster_interested;
    unsigned roster_pending;

    /* Presence without 'to' (RFC 6121 §4.7.2.3): available, priority,
     * show and status as announced to the broker. Until available
     * presence the priority is 0, so that clients which never send
     * presence still get their bare JID's messages. */
    bool available;
    int priority;
    char show[5];
    char *status;
    /* Offline messages (xmpp_offline.c): fetched on the first available
     * presence of non-negative priority; the fetch or delete in flight. */
    bool offline_started, offline_more;
    uint32_t offline_req;
    /* Presence (xmpp_presence.c): the last available presence as sent
     * to contacts (from the full JID, no 'to'), for probes; the addresses
     * of directed presence. */
    char *presence_xml;
    size_t presence_len;
    struct xmpp_directed *directed;

    /* Rate shaper. */
    double tokens;
    double last_fill;

    char stream_id[XMPP_STREAM_ID_BYTES * 2 + 1];
};

/* A handler for a first-level element of a bound stream, found by
 * {namespace}name in xmpp_stanza_handlers. */
struct xmpp_stanza_handler {
    const char *ns, *name;
    void (*handle)(struct xmpp_session *s, struct xmpp_element *e);
};
extern const struct xmpp_stanza_handler xmpp_stanza_handlers[];

/* --- xmpp_proto.c --- */

/* The callback table handed to worker_main(). */
extern const struct worker_proto xmpp_proto;

/* The worker's state (one per process), or NULL outside its life: for
 * callbacks that get only a connection id, such as request answers. */
struct xmpp_server *xmpp_server_get(void);

/* The bound session with this full JID (normalized), or NULL. */
struct xmpp_session *xmpp_session_find(struct xmpp_server *srv, const char *jid, size_t len);
/* Binds s to jid (a normalized full JID): replaces an older session of the
 * same JID (RFC 6120 §7.7.2.2, it gets <conflict/>), registers s and
 * announces it to the broker. -1 when the account has its maximum of
 * sessions (*condition_r "resource-constraint") or memory ran out
 * ("internal-server-error"). */
int xmpp_session_bind(struct xmpp_session *s, const struct xmpp_jid *jid, const char **condition_r);
/* Announces one bound session (with its priority, show and status) to the
 * broker; for a session already announced, an update. */
void xmpp_session_announce(struct xmpp_session *s);
/* Available or unavailable presence without 'to' from the session: keeps
 * its priority, show and status and announces them (RFC 6121 §4.7.2.3);
 * the first available one with a non-negative priority delivers the
 * offline messages. -1 with *condition_r for a malformed priority. */
int xmpp_session_presence(struct xmpp_session *s, const struct xmpp_element *presence,
                          const char **condition_r);
/* Counts a failed SASL attempt from the session's address. */
void xmpp_ip_auth_failed(struct xmpp_session *s);
/* True when the session's address failed too often recently. */
bool xmpp_ip_auth_blocked(struct xmpp_session *s);
/* The configured host equal to name (ASCII case-insensitively), or NULL. */
const char *xmpp_host_lookup(const struct xmpp_server *srv, const char *name, size_t len);

/* --- xmpp_stream.c --- */

void xmpp_stream_start(struct xmpp_session *s);
ssize_t xmpp_stream_input(struct xmpp_session *s, const uint8_t *data, size_t len);
/* Sends <stream:error/> with condition (and text for humans, may be NULL),
 * closes the stream and the connection after flushing. */
void xmpp_stream_error(struct xmpp_session *s, enum xmpp_stream_error condition, const char *text);
void xmpp_stream_timeout(struct xmpp_session *s);
/* The connection is gone: free what the session holds. */
void xmpp_stream_closed(struct xmpp_session *s, const char *reason);
/* Writes serialized XML to the client. */
void xmpp_session_write(struct xmpp_session *s, const char *xml, size_t len);

/* --- xmpp_route.c --- */

/* A stanza (message, presence, iq in jabber:client) from a bound client. */
void xmpp_route_client_stanza(struct xmpp_session *s, struct xmpp_element *stanza);
/* An IPC_STANZA from the broker. */
void xmpp_route_broker_stanza(struct xmpp_server *srv, const struct ipc_msg *m);
/* Appends an error stanza (RFC 6120 §8.3) to out: kind is "message",
 * "presence" or "iq"; from, to and id may be NULL; type is the error type
 * ("cancel", "modify", "wait", "auth"), condition a §8.3.3 element name,
 * text a description for humans (may be NULL). -1 when out failed. */
int xmpp_error_stanza(struct xmpp_buf *out, const char *kind, const char *from, const char *to,
                      const char *id, const char *type, const char *condition, const char *text);
/* The error type RFC 6120 §8.3.3 gives a stanza error condition. */
const char *xmpp_error_type(const char *condition);
/* Sends XML to the address: written straight to a local session when the
 * address is bound here, else as an IPC_STANZA through the broker (NATIVE =
 * xml, typed fields from the arguments). */
void xmpp_route_xml(struct xmpp_server *srv, enum stanza_kind kind, const char *type,
                    const char *id, const char *from, const char *to, const char *xml, size_t len);
/* Sends an error stanza with condition to 'to' (the original sender) from
 * 'from' (the original recipient); id may be NULL. */
void xmpp_route_bounce(struct xmpp_server *srv, enum stanza_kind kind, const char *from,
                       const char *to, const char *id, const char *condition);

/* --- xmpp_iq.c --- */

/* Whom an iq the server answers is addressed to. */
enum xmpp_iq_target {
    XMPP_IQ_SERVER,  /* a configured host (or no 'to' with the server's own iqs) */
    XMPP_IQ_ACCOUNT, /* a bare JID of a local account, answered on its behalf */
};
/* Answers an iq get or set: appends the result or error iq, from 'to' to
 * 'from', to out. iq has been checked (id, type, exactly one child). */
void xmpp_iq_answer(struct xmpp_server *srv, enum xmpp_iq_target target,
                    const struct xmpp_element *iq, const char *from, const char *to,
                    struct xmpp_buf *out);

/* --- xmpp_roster.c --- */

/* Handles iq (checked as in xmpp_route_client_stanza) when its payload is
 * a jabber:iq:roster query: to_bare is the normalized bare JID it is
 * addressed to, or NULL without 'to'. False when it is no roster iq. */
bool xmpp_roster_iq(struct xmpp_session *s, struct xmpp_element *iq, const char *to_bare);

/* Splits a store reply ARG into its n NUL-separated fields (the format of
 * roster.get items and the like); false when the count is not n. */
bool xmpp_store_fields(struct ipc_slice v, struct ipc_slice *f, size_t n);

/* Pushes item (one serialized <item/>) with version ver to every session
 * of bare on this worker that asked for the roster (RFC 6121 §2.1.6). */
void xmpp_roster_push(struct xmpp_server *srv, const char *bare, const char *ver, const char *item,
                      size_t len);

/* --- xmpp_presence.c --- */

/* A presence with 'to' (normalized in to) from a bound client: the
 * subscription types are handled here (true: nothing more to do); for
 * directed available/unavailable presence the address is remembered and
 * false says to route the stanza as usual. Other types: false. */
bool xmpp_presence_client(struct xmpp_session *s, struct xmpp_element *e, const char *type,
                          const struct xmpp_jid *to);
/* Remembers 'to' as a directed presence target of the session. */
void xmpp_presence_directed(struct xmpp_session *s, const char *to);
/* After xmpp_session_presence() took a presence without 'to': broadcasts
 * it to the roster (available: probes too when was_available is false;
 * unavailable: directed targets too). */
void xmpp_presence_broadcast(struct xmpp_session *s, struct xmpp_element *presence,
                             bool was_available);
/* A presence of type subscribe, subscribed, unsubscribe, unsubscribed or
 * probe from the broker, with TARGETs or as the route owner: handled here
 * (true); false for the other presence, delivered as usual. */
bool xmpp_presence_inbound(struct xmpp_server *srv, const struct ipc_msg *m);
/* The connection of s is closing: unavailable to contacts and directed
 * targets if it was available, and what the session held is freed. */
void xmpp_presence_gone(struct xmpp_session *s);

/* --- xmpp_offline.c --- */

/* Queues a message (xml, its XMPP form) for to (a bare JID of a local
 * account on host) in the store, stamped with a XEP-0203 delay. When the
 * store refuses it (no such account, queue full...), the sender gets
 * <service-unavailable/>. False when it could not even be asked. */
bool xmpp_offline_store(struct xmpp_server *srv, const struct ipc_msg *m, const struct xmpp_jid *to,
                        const char *host, const char *xml, size_t len);
/* Delivers the session's offline messages, then deletes them. */
void xmpp_offline_deliver(struct xmpp_session *s);

#endif
