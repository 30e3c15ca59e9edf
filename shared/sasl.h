/*
 * The server side of the SASL mechanisms Switchboard offers, as an I/O-free
 * state machine: SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, SCRAM-SHA-256,
 * SCRAM-SHA-1 (RFC 5802, RFC 7677, channel bindings of RFC 5929 and
 * RFC 9266) and PLAIN (RFC 4616). It knows nothing of XML or IRC: the XMPP
 * session layer wraps its messages in <auth>/<challenge>/<response>/
 * <success>/<failure> (RFC 6120 §6) and the IRC gateway in AUTHENTICATE
 * lines, both after base64-decoding what the client sent.
 *
 * Credentials come from the store (account.get) through the broker, so the
 * machine stops and asks for them instead of calling anything. A login runs:
 *
 *   cond = sasl_mechanism_check(mech, &params)     refuse early with cond
 *   s = sasl_server_new(mech, &params, &error)     (NULL: out of memory)
 *   r = sasl_server_step(s, initial_response or NULL, len, &out)
 *   loop:
 *     SASL_CONTINUE          send out.data as a challenge; on the client's
 *                            response, r = sasl_server_step(s, ...)
 *     SASL_NEED_CREDENTIALS  ask the store for account.get(out.username,
 *                            domain); on OK, sasl_credentials_from_response
 *                            and r = sasl_server_credentials(s, &cred); on
 *                            NOT_FOUND or BAD_REQUEST (no such account, or
 *                            a name the store cannot hold),
 *                            r = sasl_server_credentials(s, NULL); on any
 *                            other answer or a timeout, fail with
 *                            SASL_COND_TEMPORARY_AUTH_FAILURE yourself
 *     SASL_SUCCESS           check the authzid (sasl_authzid_ok), then send
 *                            success with out.data as additional data when
 *                            out.data is not NULL (SCRAM's server-final)
 *     SASL_FAILURE           send out.condition; log out.reason (never sent)
 *   sasl_server_free(&s)
 *
 * A client's <abort/> is the session layer's to handle (free the machine,
 * reply SASL_COND_ABORTED). A protocol whose success cannot carry data
 * (IRC's 903) sends SCRAM's server-final as one more challenge and waits
 * for an empty response before reporting success (RFC 4422 §5 item 2b).
 *
 * An unknown user is not revealed: SCRAM goes on with a salt derived from
 * the username and a server secret (stable for a given name, as a real
 * salt is) and fails only at the proof; PLAIN runs the same key derivation
 * it would run for a real account.
 */
#ifndef SB_SASL_H
#define SB_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/ipc.h"

/* Longest SASL message accepted from a client, after base64 decoding. */
#define SASL_MAX_MESSAGE 8192
/* Longest authentication or authorization identity, after SCRAM's =2C/=3D
 * decoding (the same bound as a username in the store). */
#define SASL_MAX_NAME 1023
/* Longest SCRAM client nonce (the RFC sets none; real clients send 24-48). */
#define SASL_MAX_NONCE 256
/* Channel bindings: how many types one connection may offer, the longest
 * type name, and the most data one carries (tls-server-end-point with
 * SHA-512 is 64 bytes; tls-exporter is 32; tls-unique at most 36). */
#define SASL_MAX_CB_TYPES 4
#define SASL_MAX_CB_NAME 32
#define SASL_MAX_CB_DATA 64
/* Random bytes in the server's part of a SCRAM nonce (base64: 24 chars). */
#define SASL_SERVER_NONCE_BYTES 18
/* Longest domain accepted in sasl_params (a DNS name is at most 253). */
#define SASL_MAX_DOMAIN 255
/* Every mechanism this module implements. */
#define SASL_MECH_COUNT 5

enum sasl_result {
    SASL_CONTINUE,         /* send out->data as a challenge */
    SASL_NEED_CREDENTIALS, /* look up out->username, then sasl_server_credentials() */
    SASL_SUCCESS,          /* authenticated as out->authcid (out->authzid requested) */
    SASL_FAILURE,          /* send out->condition */
};

/* The <failure/> conditions of RFC 6120 §6.5, for every protocol. */
enum sasl_condition {
    SASL_COND_NONE = 0,
    SASL_COND_ABORTED,
    SASL_COND_ACCOUNT_DISABLED,
    SASL_COND_CREDENTIALS_EXPIRED,
    SASL_COND_ENCRYPTION_REQUIRED,
    SASL_COND_INCORRECT_ENCODING,
    SASL_COND_INVALID_AUTHZID,
    SASL_COND_INVALID_MECHANISM,
    SASL_COND_MALFORMED_REQUEST,
    SASL_COND_MECHANISM_TOO_WEAK,
    SASL_COND_NOT_AUTHORIZED,
    SASL_COND_TEMPORARY_AUTH_FAILURE,
};

/* The RFC 6120 element name of a condition ("not-authorized"...); "" for
 * SASL_COND_NONE and for an out-of-range value. */
const char *sasl_condition_name(enum sasl_condition condition);

/* One channel binding the connection can offer (RFC 5056): the type name
 * ("tls-exporter", "tls-unique", "tls-server-end-point") and its data as
 * the session layer computed it from OpenSSL:
 *   tls-exporter          SSL_export_keying_material(label
 *                         "EXPORTER-Channel-Binding", no context, 32 bytes),
 *                         TLS 1.3 (RFC 9266)
 *   tls-unique            the first Finished message of the handshake
 *                         (SSL_get_finished on the server), TLS 1.2 only
 *   tls-server-end-point  hash of the server certificate (RFC 5929 §4.1) */
struct sasl_channel_binding {
    const char *type;
    const uint8_t *data;
    size_t len;
};

/* What a connection offers; copied by sasl_server_new, so it may live on
 * the caller's stack. */
struct sasl_params {
    /* The account's domain: part of the unknown-user salt. Required. */
    const char *domain;
    /* The client is on TLS (direct or after STARTTLS). */
    bool tls_active;
    /* PLAIN is allowed by configuration (it is only ever offered on TLS). */
    bool allow_plain;
    /* The channel bindings available on this connection; the -PLUS
     * mechanisms are offered when there is at least one (and TLS is on). */
    const struct sasl_channel_binding *channel_bindings;
    size_t n_channel_bindings;
    /* Key for the unknown-user salts. It should be the same across restarts
     * and across the nodes sharing a store, or a name whose salt changes
     * shows it is not an account. When fake_secret_len is 0, a random key
     * made once per process is used. */
    const uint8_t *fake_secret;
    size_t fake_secret_len;
    /* Iteration count announced for unknown users: the count real accounts
     * are created with (config), so both look alike; 0 means
     * AUTH_DEFAULT_ITERATIONS. */
    unsigned fake_iterations;
    /* FOR TESTS ONLY: use this (printable ASCII, no ',') as the server's
     * part of the SCRAM nonce instead of random bytes, to replay the
     * examples of RFC 5802 and RFC 7677. NULL in production. */
    const char *fixed_server_nonce;
};

/* An account's SCRAM secrets as the store keeps them (see auth.h). The
 * pointers need to stay valid only during sasl_server_credentials(), which
 * copies what it uses. A hash whose keys are NULL is not usable. */
struct sasl_credentials {
    const uint8_t *salt;
    size_t salt_len;
    unsigned iterations;
    const uint8_t *sha1_stored_key, *sha1_server_key;     /* AUTH_SHA1_LEN bytes */
    const uint8_t *sha256_stored_key, *sha256_server_key; /* AUTH_SHA256_LEN bytes */
};

/* What a step produced. Pointers are into the sasl_server and stay valid
 * until the next call on it or sasl_server_free(). Fields that do not
 * belong to the returned result are NULL / 0. */
struct sasl_output {
    /* SASL_CONTINUE: the challenge (data_len may be 0: an empty challenge).
     * SASL_SUCCESS: additional data, or NULL when there is none (PLAIN). */
    const uint8_t *data;
    size_t data_len;
    /* SASL_NEED_CREDENTIALS: the authentication identity to look up. */
    const char *username;
    /* SASL_SUCCESS: the authenticated identity (as the client sent it) and
     * the authorization identity it asked for ("" when none). */
    const char *authcid, *authzid;
    /* SASL_FAILURE: what to tell the client, and why, for the log only. */
    enum sasl_condition condition;
    const char *reason;
};

struct sasl_server;

/* Whether mechanism may be used with params: SASL_COND_NONE when it may,
 * else the condition to answer with: invalid-mechanism (unknown, a -PLUS
 * without channel binding, PLAIN disabled), encryption-required (PLAIN
 * without TLS). Mechanism names are case-sensitive. */
enum sasl_condition sasl_mechanism_check(const char *mechanism, const struct sasl_params *params);

/* The mechanisms to offer, strongest first (SCRAM-SHA-256-PLUS,
 * SCRAM-SHA-1-PLUS, SCRAM-SHA-256, SCRAM-SHA-1, PLAIN), keeping those
 * sasl_mechanism_check() accepts. Returns how many were written; the names
 * are static strings. */
size_t sasl_mechanisms(const struct sasl_params *params, const char *names_r[SASL_MECH_COUNT]);

/*
 * Starts the server side of one exchange. Returns NULL with *error_r when
 * sasl_mechanism_check() refuses the mechanism (ask it for the condition),
 * when params are invalid (no domain, a channel binding with a bad type
 * name or too much data, a bad fixed_server_nonce: caller bugs), or when
 * memory or randomness is missing (temporary-auth-failure).
 */
struct sasl_server *sasl_server_new(const char *mechanism, const struct sasl_params *params,
                                    const char **error_r);
/* Wipes the secrets it held, frees, NULLs *s. NULL is fine. */
void sasl_server_free(struct sasl_server **s);

/*
 * Feeds one client message (already base64-decoded). in == NULL is allowed
 * only as the first call and means the client sent no initial response: the
 * result is SASL_CONTINUE with an empty challenge. A present but empty
 * message (XMPP's "=") is malformed for every mechanism here. A message in
 * the wrong state (while credentials are awaited, after the end) fails the
 * exchange with malformed-request. After SASL_SUCCESS or SASL_FAILURE
 * every call returns SASL_FAILURE.
 */
enum sasl_result sasl_server_step(struct sasl_server *s, const uint8_t *in, size_t in_len,
                                  struct sasl_output *out);
/* Hands over the credentials asked for by SASL_NEED_CREDENTIALS; NULL when
 * the account does not exist. Returns SASL_CONTINUE (SCRAM's server-first),
 * SASL_SUCCESS or SASL_FAILURE (PLAIN). Credentials that cannot be used
 * (no keys for the mechanism's hash, salt or iteration count out of
 * bounds) fail with temporary-auth-failure. Called in any other state, it
 * fails the exchange with temporary-auth-failure. */
enum sasl_result sasl_server_credentials(struct sasl_server *s, const struct sasl_credentials *cred,
                                         struct sasl_output *out);

/* The mechanism name this server runs (a static string). */
const char *sasl_server_mechanism(const struct sasl_server *s);

/*
 * Fills *cred_r from the store's OK response to account.get (ARGs: salt,
 * iterations in decimal, SHA-1 StoredKey, ServerKey, SHA-256 StoredKey,
 * ServerKey, then the HA1 values, which SASL does not use). The pointers
 * are into msg's frame. -1 with *error_r when the response is not OK or
 * its arguments are missing or of the wrong size.
 */
int sasl_credentials_from_response(struct sasl_credentials *cred_r, const struct ipc_msg *msg,
                                   const char **error_r);

/*
 * The XMPP rule for an authorization identity (RFC 6120 §6.3.8): a client
 * may only ask to act as itself, so authzid must be empty or the bare JID
 * authcid@domain. Localpart and domain are compared ignoring ASCII case,
 * as the store normalizes usernames. false means: fail with
 * SASL_COND_INVALID_AUTHZID.
 */
bool sasl_authzid_ok(const char *authzid, const char *authcid, const char *domain);

#endif
