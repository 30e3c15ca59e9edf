/*
 * The configuration: one YAML file (etc/switchboard.yml) read with libyaml
 * into the typed struct below. Every process reads the same file: the
 * supervisor validates it before starting anything, and each worker reads it
 * again at start for its own section. Unknown keys, wrong types, bad values,
 * bad ports and missing certificate files are refused with "file:line:
 * reason". Every key is documented in etc/switchboard.yml.
 *
 * Only plain YAML is accepted: no anchors or aliases, no tags, one
 * document, at most CONFIG_MAX_DEPTH levels of nesting and CONFIG_MAX_SIZE
 * bytes. Relative paths are taken from the directory of the file (state_dir,
 * tls.*, store.mysql.socket) or from state_dir (store.sqlite.path,
 * supervisor.control_socket).
 *
 * TLS rule: the tls section, when given, must name both a certificate and a
 * key; the two files are checked (they must exist and be readable) only
 * when an enabled listener uses tls starttls or direct, and only then are
 * tls_certificate and tls_key set. An enabled TLS listener without a tls
 * section is an error. So the default file loads on a fresh machine, where
 * the development certificate has not been made yet, as long as no TLS
 * listener is enabled.
 */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bigger files and deeper nesting are refused. */
#define CONFIG_MAX_SIZE (1024 * 1024)
#define CONFIG_MAX_DEPTH 16

/* The worker processes, in start order. The supervisor starts them in this
 * order and stops them in reverse. */
enum sb_worker_kind {
    SB_WORKER_BROKER,
    SB_WORKER_STORE,
    SB_WORKER_ROOMS,
    SB_WORKER_XMPP,
    SB_WORKER_MQTT,
    SB_WORKER_SIP,
    SB_WORKER_IRC,
    SB_WORKER_COUNT
};

/* "broker", "store", "rooms", "xmpp", "mqtt", "sip", "irc". */
const char *config_worker_name(enum sb_worker_kind kind);
/* The kind for a name, or -1. */
int config_worker_parse(const char *name);

enum config_tls_mode { CONFIG_TLS_NONE, CONFIG_TLS_STARTTLS, CONFIG_TLS_DIRECT };
enum config_transport { CONFIG_TRANSPORT_TCP, CONFIG_TRANSPORT_UDP };
enum config_backend { CONFIG_BACKEND_SQLITE, CONFIG_BACKEND_MYSQL };

/* One MQTT access rule: which topics a user may publish to and subscribe
 * to. user is an account name, "*" (every authenticated client) or
 * "anonymous". In filters, %u stands for the username and %c for the
 * client identifier. */
struct config_mqtt_acl {
    char *user;
    char **publish, **subscribe;
    size_t n_publish, n_subscribe;
};

struct config_listener {
    char *name;    /* unique within the worker: "c2s", "c2s-tls"... */
    char *address; /* numeric IPv4 or IPv6 address */
    uint16_t port; /* 0 lets the kernel choose (tests) */
    enum config_tls_mode tls;
    enum config_transport transport;
    int line; /* where it was defined, for messages */
};

struct config_worker {
    bool enabled;
    struct config_listener *listeners;
    size_t n_listeners;
    /* A canonical text form of everything that affects this worker (its
     * own section and the global sections). SIGHUP restarts a worker when
     * its fingerprint changed. */
    char *fingerprint;
};

struct config {
    char *path;   /* the file, as given */
    char **hosts; /* virtual domains served, lowercase */
    size_t n_hosts;
    char *state_dir; /* absolute; holds run/, the database, the dev certificate */
    char *user;      /* drop privileges to this user when started as root; NULL = stay */
    int log_level;   /* enum log_level */

    /* PEM paths, absolute, checked readable; NULL when no enabled listener
     * uses TLS (see the TLS rule above). */
    char *tls_certificate;
    char *tls_key;

    struct {
        int heartbeat_ms;     /* interval of heartbeats both ways */
        int heartbeat_misses; /* beats missed before a peer is declared dead */
    } broker;

    struct {
        enum config_backend backend;
        char *sqlite_path; /* absolute */
        char *mysql_host;
        uint16_t mysql_port;
        char *mysql_socket;
        char *mysql_user;
        char *mysql_password;
        char *mysql_database;
        int batch_max; /* most requests committed in one transaction */
    } store;

    struct {
        char *control_socket;  /* absolute path of the unix control socket */
        int restart_intensity; /* crashes allowed ... */
        int restart_period_s;  /* ... within this many seconds before a worker is marked failed */
        int backoff_min_ms;    /* first delay for a worker that dies before it is ready */
        int backoff_max_ms;
        int stop_timeout_ms; /* SIGTERM to SIGKILL deadline per stage */
    } supervisor;

    struct {
        int max_connections; /* per worker; 0 = no cap */
        int idle_timeout_s;  /* pre-auth / idle connection timeout; 0 = none */
        int max_input;       /* bytes buffered per connection before input is refused */
        int max_output;      /* bytes queued per connection before it is dropped as too slow */
    } limits;

    /* workers.xmpp: the c2s worker's own settings (documented in
     * etc/switchboard.yml). */
    struct {
        bool require_tls; /* no SASL or stanzas before STARTTLS */
        int max_stanza;   /* bytes of one first-level element, checked while incomplete */
        int max_sessions_per_account; /* bound resources per account */
        int auth_failures;            /* failed SASL attempts before <policy-violation/> */
        bool plain;                   /* offer SASL PLAIN (only ever on TLS) */
        int max_connections_per_ip;   /* open c2s connections from one address; 0 = no cap */
        bool register_accounts;       /* XEP-0077 in-band registration ("register") */
        int resume_timeout_s;         /* XEP-0198: how long a dropped resumable session waits */
    } xmpp;

    /* workers.mqtt: the MQTT broker's own settings. */
    struct {
        bool allow_anonymous;     /* CONNECT without a username */
        int max_packet_size;      /* bytes, both ways (MQTT 5 Maximum Packet Size) */
        int session_expiry_s;     /* kept after disconnect: 3.1.1 clean session 0 */
        int max_session_expiry_s; /* cap of a v5 Session Expiry Interval */
        int max_queued;           /* messages queued per session; more are dropped, counted */
        int max_inflight;         /* outgoing QoS 1/2 awaiting acknowledgement per client */
        int receive_maximum;      /* incoming QoS 1/2 unacknowledged per client (v5) */
        int max_keepalive_s;      /* longest keep-alive granted */
        int topic_alias_maximum;  /* aliases a client may set (v5) */
        bool retain_available;    /* retained messages stored */
        int max_connections_per_ip;
        /* Access rules ("acl"); NULL when the key is absent: all allowed. */
        struct config_mqtt_acl *acl;
        size_t n_acl;
    } mqtt;

    /* workers.sip: the registrar and proxy's own settings. */
    struct {
        bool md5;          /* offer MD5 digests beside SHA-256 (RFC 8760) */
        int min_expires_s; /* shorter registrations get 423 Interval Too Brief */
        int max_expires_s; /* longer ones are cut to this */
        int default_expires_s;
        int max_connections_per_ip;
    } sip;

    /* workers.irc: the IRC gateway's own settings. */
    struct {
        char *server_name; /* the IRC server name shown to clients; "" = the first host */
        char *motd;        /* message of the day; "" = none (422) */
        int max_connections_per_ip;
    } irc;

    struct config_worker workers[SB_WORKER_COUNT];
};

/* Reads and validates the file. On failure returns -1 and sets *error_r to
 * "path:line: reason" ("path: reason" when the file itself cannot be read
 * or is too big), a static buffer valid until the next call. */
int config_load(const char *path, struct config **config_r, const char **error_r);
/* The same from a string (tests, fuzzing); name appears in messages. */
int config_load_string(const char *name, const char *text, size_t len, struct config **config_r,
                       const char **error_r);
void config_free(struct config **config);

/* Derived paths under state_dir. */
/* "ipc://<state_dir>/run/broker.sock" */
void config_broker_endpoint(const struct config *config, char *out, size_t out_size);

#endif
