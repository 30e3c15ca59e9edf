/*
 * Server side of SASL SCRAM (RFC 5802, RFC 7677, with channel binding) and
 * PLAIN (RFC 4616), as an I/O-free state machine (see sasl.h for the
 * sequence of calls). The XMPP session layer and the IRC gateway feed it
 * decoded client messages and the account's secrets from the store; it
 * answers with challenges, a request for credentials, or the outcome.
 *
 * Every client message is untrusted: it is bounded (SASL_MAX_MESSAGE),
 * must be UTF-8 without NUL bytes (PLAIN: between its two separators), and
 * is parsed strictly against the ABNF of RFC 5802 §7. Anything off the
 * grammar is malformed-request; anything that is well-formed but does not
 * prove the identity (proof, nonce, channel binding) is not-authorized.
 *
 * The SCRAM transcript is kept in one buffer as the exchange goes:
 *   gs2-header client-first-bare "," server-first "," client-final-without-proof
 * so the AuthMessage of RFC 5802 §3 is the buffer after the GS2 header,
 * and the GS2 header is at hand to check the client's c= attribute.
 */
#include "shared/sasl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "shared/auth.h"

struct sasl_mech {
    const char *name;
    bool scram, plus;
    enum auth_hash hash; /* SCRAM only */
};

/* Strongest first: the order sasl_mechanisms() offers them in. */
static const struct sasl_mech sasl_mechs[SASL_MECH_COUNT] = {
    {"SCRAM-SHA-256-PLUS", true, true, AUTH_HASH_SHA256},
    {"SCRAM-SHA-1-PLUS", true, true, AUTH_HASH_SHA1},
    {"SCRAM-SHA-256", true, false, AUTH_HASH_SHA256},
    {"SCRAM-SHA-1", true, false, AUTH_HASH_SHA1},
    {"PLAIN", false, false, AUTH_HASH_SHA256},
};

/* The longest server-first-message: r=c-nonce s-nonce,s=salt,i=count. */
#define SCRAM_SERVER_FIRST_MAX                                                                     \
    (2 + SASL_MAX_NONCE + SASL_MAX_NONCE + 3 + AUTH_BASE64_SIZE(AUTH_MAX_SALT) + 3 + 10)
/* The unknown-user salt has the length of a real one. */
#define SASL_FAKE_SALT_LEN AUTH_SALT_LEN

enum sasl_state {
    SASL_STATE_START,       /* nothing received yet */
    SASL_STATE_FIRST,       /* empty challenge sent, waiting for the first message */
    SASL_STATE_CREDENTIALS, /* waiting for sasl_server_credentials() */
    SASL_STATE_FINAL,       /* SCRAM: server-first sent, waiting for client-final */
    SASL_STATE_DONE,
};

struct sasl_cb {
    char type[SASL_MAX_CB_NAME + 1];
    uint8_t data[SASL_MAX_CB_DATA];
    size_t len;
};

struct sasl_server {
    const struct sasl_mech *mech;
    enum sasl_state state;
    char domain[SASL_MAX_DOMAIN + 1];
    /* The bindings of the connection (none without TLS), and for a "p"
     * client the one it chose. */
    struct sasl_cb cb[SASL_MAX_CB_TYPES];
    size_t n_cb;
    const struct sasl_cb *cb_used;
    uint8_t fake_key[AUTH_SHA256_LEN];
    unsigned fake_iterations;
    char fixed_nonce[SASL_MAX_NONCE + 1]; /* "" unless a test set one */

    char authcid[SASL_MAX_NAME + 1], authzid[SASL_MAX_NAME + 1];
    bool unknown_user;
    uint8_t stored_key[AUTH_MAX_HASH_LEN], server_key[AUTH_MAX_HASH_LEN];

    /* SCRAM: the transcript (see the top of the file). PLAIN: the password
     * while the credentials are awaited. Wiped before it is freed. */
    char *buf;
    size_t buf_len, buf_cap;
    size_t gs2_len;                /* SCRAM: the GS2 header at the start of buf */
    size_t cnonce_off, cnonce_len; /* SCRAM: the client's nonce in buf */
    size_t nonce_off, nonce_len;   /* SCRAM: the combined nonce in buf */
    size_t sfirst_off, sfirst_len; /* SCRAM: server-first-message in buf */
    char final_msg[2 + AUTH_BASE64_SIZE(AUTH_MAX_HASH_LEN)];
};

/* --- small helpers --- */

static const char *const sasl_condition_names[] = {
    [SASL_COND_NONE] = "",
    [SASL_COND_ABORTED] = "aborted",
    [SASL_COND_ACCOUNT_DISABLED] = "account-disabled",
    [SASL_COND_CREDENTIALS_EXPIRED] = "credentials-expired",
    [SASL_COND_ENCRYPTION_REQUIRED] = "encryption-required",
    [SASL_COND_INCORRECT_ENCODING] = "incorrect-encoding",
    [SASL_COND_INVALID_AUTHZID] = "invalid-authzid",
    [SASL_COND_INVALID_MECHANISM] = "invalid-mechanism",
    [SASL_COND_MALFORMED_REQUEST] = "malformed-request",
    [SASL_COND_MECHANISM_TOO_WEAK] = "mechanism-too-weak",
    [SASL_COND_NOT_AUTHORIZED] = "not-authorized",
    [SASL_COND_TEMPORARY_AUTH_FAILURE] = "temporary-auth-failure",
};

const char *sasl_condition_name(enum sasl_condition condition)
{
    if ((unsigned)condition >= sizeof(sasl_condition_names) / sizeof(sasl_condition_names[0]))
        return "";
    return sasl_condition_names[condition];
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF. */
static bool utf8_valid(const uint8_t *p, size_t len)
{
    size_t i = 0;

    while (i < len) {
        uint8_t c = p[i];
        uint32_t cp, min;
        size_t n;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            n = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i < n)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n;
    }
    return true;
}

/* cb-name = 1*(ALPHA / DIGIT / "." / "-") (RFC 5802 §7), with our cap. */
static bool cb_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > SASL_MAX_CB_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool params_cb_valid(const struct sasl_channel_binding *cb)
{
    return cb->type != NULL && cb_name_valid(cb->type, strlen(cb->type)) && cb->data != NULL &&
           cb->len > 0 && cb->len <= SASL_MAX_CB_DATA;
}

/* The -PLUS mechanisms need a channel to bind to. */
static bool params_have_cb(const struct sasl_params *params)
{
    if (!params->tls_active || params->channel_bindings == NULL)
        return false;
    for (size_t i = 0; i < params->n_channel_bindings; i++) {
        if (params_cb_valid(&params->channel_bindings[i]))
            return true;
    }
    return false;
}

static const struct sasl_mech *mech_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < SASL_MECH_COUNT; i++) {
        if (strcmp(sasl_mechs[i].name, name) == 0)
            return &sasl_mechs[i];
    }
    return NULL;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool ascii_caseeq(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    }
    return true;
}

/* The key for unknown-user salts when the caller has none to give: made
 * once per process (workers are single-threaded). */
static int process_fake_key(uint8_t key[AUTH_SHA256_LEN])
{
    static uint8_t process_key[AUTH_SHA256_LEN];
    static bool have_key;

    if (!have_key) {
        if (RAND_bytes(process_key, sizeof(process_key)) != 1)
            return -1;
        have_key = true;
    }
    memcpy(key, process_key, AUTH_SHA256_LEN);
    return 0;
}

/* --- results --- */

static void output_reset(struct sasl_output *out)
{
    memset(out, 0, sizeof(*out));
}

static void buf_wipe(struct sasl_server *s)
{
    if (s->buf != NULL) {
        auth_wipe(s->buf, s->buf_cap);
        free(s->buf);
    }
    s->buf = NULL;
    s->buf_len = s->buf_cap = 0;
}

static enum sasl_result fail(struct sasl_server *s, struct sasl_output *out,
                             enum sasl_condition condition, const char *reason)
{
    s->state = SASL_STATE_DONE;
    buf_wipe(s);
    auth_wipe(s->stored_key, sizeof(s->stored_key));
    auth_wipe(s->server_key, sizeof(s->server_key));
    output_reset(out);
    out->condition = condition;
    out->reason = reason;
    return SASL_FAILURE;
}

static enum sasl_result malformed(struct sasl_server *s, struct sasl_output *out,
                                  const char *reason)
{
    return fail(s, out, SASL_COND_MALFORMED_REQUEST, reason);
}

static enum sasl_result need_credentials(struct sasl_server *s, struct sasl_output *out)
{
    s->state = SASL_STATE_CREDENTIALS;
    out->username = s->authcid;
    return SASL_NEED_CREDENTIALS;
}

static enum sasl_result succeed(struct sasl_server *s, struct sasl_output *out, const char *data,
                                size_t data_len)
{
    s->state = SASL_STATE_DONE;
    out->data = (const uint8_t *)data;
    out->data_len = data_len;
    out->authcid = s->authcid;
    out->authzid = s->authzid;
    return SASL_SUCCESS;
}

/* Makes room for len more bytes in the transcript, within the caps. */
static int buf_reserve(struct sasl_server *s, size_t len)
{
    char *p;
    size_t cap;

    if (s->buf_len + len <= s->buf_cap)
        return 0;
    cap = s->buf_len + len;
    p = malloc(cap);
    if (p == NULL)
        return -1;
    /* Not realloc: the old block may hold a password and must be wiped. */
    if (s->buf_len > 0)
        memcpy(p, s->buf, s->buf_len);
    if (s->buf != NULL) {
        auth_wipe(s->buf, s->buf_cap);
        free(s->buf);
    }
    s->buf = p;
    s->buf_cap = cap;
    return 0;
}

static void buf_append(struct sasl_server *s, const void *data, size_t len)
{
    memcpy(s->buf + s->buf_len, data, len);
    s->buf_len += len;
}

/* --- credentials --- */

static bool credentials_usable(const struct sasl_credentials *cred, enum auth_hash hash)
{
    if (cred->salt == NULL || cred->salt_len == 0 || cred->salt_len > AUTH_MAX_SALT ||
        cred->iterations < 1 || cred->iterations > AUTH_MAX_ITERATIONS)
        return false;
    if (hash == AUTH_HASH_SHA1)
        return cred->sha1_stored_key != NULL && cred->sha1_server_key != NULL;
    return cred->sha256_stored_key != NULL && cred->sha256_server_key != NULL;
}

/* The salt shown for a name that is not an account: a keyed hash of the
 * name as the store would normalize it (ASCII lowercase) and the domain, so
 * asking twice, or in another case, gives the same answer, as it would for
 * a real account. */
static int fake_salt(const struct sasl_server *s, uint8_t salt_r[SASL_FAKE_SALT_LEN])
{
    char input[SASL_MAX_NAME + 1 + SASL_MAX_DOMAIN];
    uint8_t mac[AUTH_SHA256_LEN];
    size_t ulen = strlen(s->authcid), dlen = strlen(s->domain);

    for (size_t i = 0; i < ulen; i++)
        input[i] = ascii_lower(s->authcid[i]);
    input[ulen] = '@';
    for (size_t i = 0; i < dlen; i++)
        input[ulen + 1 + i] = ascii_lower(s->domain[i]);
    if (auth_hmac(AUTH_HASH_SHA256, s->fake_key, sizeof(s->fake_key), input, ulen + 1 + dlen, mac) <
        0)
        return -1;
    memcpy(salt_r, mac, SASL_FAKE_SALT_LEN);
    return 0;
}

/* --- SCRAM --- */

/* A cursor over one client message. */
struct cursor {
    const char *p;
    size_t len, pos;
};

static bool cursor_take(struct cursor *c, const char *lit)
{
    size_t n = strlen(lit);

    if (c->len - c->pos < n || memcmp(c->p + c->pos, lit, n) != 0)
        return false;
    c->pos += n;
    return true;
}

/* The value up to the next ',' or the end; the cursor stops on the ','. */
static const char *cursor_value(struct cursor *c, size_t *len_r)
{
    const char *start = c->p + c->pos;
    const char *comma = memchr(start, ',', c->len - c->pos);
    size_t n = comma != NULL ? (size_t)(comma - start) : c->len - c->pos;

    c->pos += n;
    *len_r = n;
    return start;
}

/* saslname (RFC 5802 §7): ',' and '=' arrive as "=2C" and "=3D", and any
 * other '=' fails the exchange. out has SASL_MAX_NAME + 1 bytes. */
static bool saslname_decode(const char *v, size_t len, char *out)
{
    size_t n = 0;

    if (len == 0)
        return false;
    for (size_t i = 0; i < len; n++) {
        if (n == SASL_MAX_NAME)
            return false;
        if (v[i] != '=') {
            out[n] = v[i++];
        } else if (len - i >= 3 && v[i + 1] == '2' && v[i + 2] == 'C') {
            out[n] = ',';
            i += 3;
        } else if (len - i >= 3 && v[i + 1] == '3' && v[i + 2] == 'D') {
            out[n] = '=';
            i += 3;
        } else {
            return false;
        }
    }
    out[n] = '\0';
    return true;
}

/* nonce = printable: %x21-2B / %x2D-7E. */
static bool nonce_valid(const char *v, size_t len)
{
    if (len == 0 || len > SASL_MAX_NONCE)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < 0x21 || v[i] > 0x7e || v[i] == ',')
            return false;
    }
    return true;
}

/*
 * Optional extensions after the mandatory attributes: each ",x=value" with
 * an unknown letter is ignored (RFC 5802 §5.1). A reserved "m=" (mandatory
 * extension) must fail the exchange; an attribute this version defines
 * cannot be repeated as an extension either. Returns a reason, or NULL.
 */
static const char *scram_extensions(struct cursor *c)
{
    while (c->pos < c->len) {
        const char *v;
        size_t len;
        char name;

        if (!cursor_take(c, ","))
            return "garbage after the attributes";
        v = cursor_value(c, &len);
        if (len < 3 || v[1] != '=' ||
            !((v[0] >= 'a' && v[0] <= 'z') || (v[0] >= 'A' && v[0] <= 'Z')))
            return "malformed extension attribute";
        name = v[0];
        if (name == 'm')
            return "mandatory extension (m=) not supported";
        if (strchr("acinprsv", name) != NULL)
            return "attribute repeated";
    }
    return NULL;
}

/* Checks that a message is something SCRAM could parse. */
static const char *scram_message_check(const uint8_t *in, size_t len)
{
    if (len == 0)
        return "empty message";
    if (len > SASL_MAX_MESSAGE)
        return "message too long";
    if (memchr(in, '\0', len) != NULL)
        return "NUL byte in message";
    if (!utf8_valid(in, len))
        return "message is not UTF-8";
    return NULL;
}

static enum sasl_result scram_client_first(struct sasl_server *s, const uint8_t *in, size_t len,
                                           struct sasl_output *out)
{
    struct cursor c = {(const char *)in, len, 0};
    const char *reason = scram_message_check(in, len), *v;
    size_t vlen;
    char flag;

    if (reason != NULL)
        return malformed(s, out, reason);

    /* gs2-header = gs2-cbind-flag "," [ authzid ] "," */
    if (cursor_take(&c, "n,")) {
        flag = 'n';
    } else if (cursor_take(&c, "y,")) {
        flag = 'y';
    } else if (cursor_take(&c, "p=")) {
        flag = 'p';
        v = cursor_value(&c, &vlen);
        if (!cb_name_valid(v, vlen) || !cursor_take(&c, ","))
            return malformed(s, out, "bad channel binding type");
        for (size_t i = 0; i < s->n_cb; i++) {
            if (strlen(s->cb[i].type) == vlen && memcmp(s->cb[i].type, v, vlen) == 0)
                s->cb_used = &s->cb[i];
        }
        if (s->mech->plus && s->cb_used == NULL)
            return malformed(s, out, "channel binding type not offered");
    } else {
        return malformed(s, out, "bad channel binding flag");
    }
    if (cursor_take(&c, "a=")) {
        v = cursor_value(&c, &vlen);
        if (!saslname_decode(v, vlen, s->authzid))
            return malformed(s, out, "bad authzid encoding");
    }
    if (!cursor_take(&c, ","))
        return malformed(s, out, "bad GS2 header");
    s->gs2_len = c.pos;

    /* client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions] */
    if (cursor_take(&c, "m="))
        return malformed(s, out, "mandatory extension (m=) not supported");
    if (!cursor_take(&c, "n="))
        return malformed(s, out, "no username");
    v = cursor_value(&c, &vlen);
    if (!saslname_decode(v, vlen, s->authcid))
        return malformed(s, out, "bad username encoding");
    if (!cursor_take(&c, ",r="))
        return malformed(s, out, "no nonce");
    v = cursor_value(&c, &vlen);
    if (!nonce_valid(v, vlen))
        return malformed(s, out, "bad nonce");
    s->cnonce_off = (size_t)(v - c.p);
    s->cnonce_len = vlen;
    reason = scram_extensions(&c);
    if (reason != NULL)
        return malformed(s, out, reason);

    /* Channel binding negotiation (RFC 5802 §6). */
    if (s->mech->plus && flag != 'p')
        return malformed(s, out, "-PLUS mechanism without channel binding");
    if (!s->mech->plus && flag == 'p')
        return malformed(s, out, "channel binding requested with a non-PLUS mechanism");
    /* "y": the client can bind but believes the server cannot. This server
     * offered -PLUS (it has bindings), so someone removed it from the
     * list on the way: a downgrade. */
    if (flag == 'y' && s->n_cb > 0)
        return fail(s, out, SASL_COND_NOT_AUTHORIZED,
                    "channel binding downgrade (client says y, -PLUS was offered)");

    /* Keep the message: the transcript starts with it. */
    if (buf_reserve(s, len + 1 + SCRAM_SERVER_FIRST_MAX + 1) < 0)
        return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "out of memory");
    buf_append(s, in, len);
    return need_credentials(s, out);
}

static enum sasl_result scram_server_first(struct sasl_server *s,
                                           const struct sasl_credentials *cred,
                                           struct sasl_output *out)
{
    enum auth_hash hash = s->mech->hash;
    size_t hlen = auth_hash_len(hash);
    uint8_t salt_fake[SASL_FAKE_SALT_LEN];
    const uint8_t *salt;
    size_t salt_len;
    unsigned iterations;
    char snonce[SASL_MAX_NONCE + 1], salt_b64[AUTH_BASE64_SIZE(AUTH_MAX_SALT)];
    uint8_t rnd[SASL_SERVER_NONCE_BYTES];
    int n;

    if (cred == NULL) {
        /* Not an account: go on with a fake exchange that fails at the
         * proof; random keys, so no proof can match. */
        s->unknown_user = true;
        if (fake_salt(s, salt_fake) < 0 || RAND_bytes(s->stored_key, (int)hlen) != 1 ||
            RAND_bytes(s->server_key, (int)hlen) != 1)
            return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "no randomness");
        salt = salt_fake;
        salt_len = sizeof(salt_fake);
        iterations = s->fake_iterations;
    } else {
        if (!credentials_usable(cred, hash))
            return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE,
                        "stored credentials unusable for this mechanism");
        memcpy(s->stored_key,
               hash == AUTH_HASH_SHA1 ? cred->sha1_stored_key : cred->sha256_stored_key, hlen);
        memcpy(s->server_key,
               hash == AUTH_HASH_SHA1 ? cred->sha1_server_key : cred->sha256_server_key, hlen);
        salt = cred->salt;
        salt_len = cred->salt_len;
        iterations = cred->iterations;
    }

    if (s->fixed_nonce[0] != '\0') {
        memcpy(snonce, s->fixed_nonce, strlen(s->fixed_nonce) + 1);
    } else if (RAND_bytes(rnd, sizeof(rnd)) != 1 ||
               auth_base64_encode(rnd, sizeof(rnd), snonce, sizeof(snonce)) < 0) {
        return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "no randomness");
    }
    if (auth_base64_encode(salt, salt_len, salt_b64, sizeof(salt_b64)) < 0)
        return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "salt too long");

    /* server-first-message = nonce "," salt "," iteration-count; the room
     * was reserved with the client's message. */
    buf_append(s, ",", 1);
    s->sfirst_off = s->buf_len;
    /* The client's nonce is copied from earlier in the same buffer, so it
     * is not an snprintf argument (source and destination would alias). */
    if (s->buf_cap - s->buf_len < 2 + s->cnonce_len + 1)
        return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "server-first too long");
    memcpy(s->buf + s->buf_len, "r=", 2);
    memmove(s->buf + s->buf_len + 2, s->buf + s->cnonce_off, s->cnonce_len);
    n = snprintf(s->buf + s->buf_len + 2 + s->cnonce_len,
                 s->buf_cap - s->buf_len - 2 - s->cnonce_len, "%s,s=%s,i=%u", snonce, salt_b64,
                 iterations);
    if (n < 0 || (size_t)n >= s->buf_cap - s->buf_len - 2 - s->cnonce_len)
        return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "server-first too long");
    n += 2 + (int)s->cnonce_len;
    s->sfirst_len = (size_t)n;
    s->nonce_off = s->sfirst_off + 2;
    s->nonce_len = s->cnonce_len + strlen(snonce);
    s->buf_len += (size_t)n;
    buf_append(s, ",", 1);

    s->state = SASL_STATE_FINAL;
    out->data = (const uint8_t *)s->buf + s->sfirst_off;
    out->data_len = s->sfirst_len;
    return SASL_CONTINUE;
}

static enum sasl_result scram_client_final(struct sasl_server *s, const uint8_t *in, size_t len,
                                           struct sasl_output *out)
{
    enum auth_hash hash = s->mech->hash;
    size_t hlen = auth_hash_len(hash), cfwp_len, vlen, cb_len;
    const char *msg = (const char *)in, *reason = scram_message_check(in, len), *v, *comma;
    uint8_t proof[AUTH_MAX_HASH_LEN], signature[AUTH_MAX_HASH_LEN], cbind[SASL_MAX_MESSAGE];
    char b64[AUTH_BASE64_SIZE(AUTH_MAX_HASH_LEN)];
    struct cursor c;
    int n;

    if (reason != NULL)
        return malformed(s, out, reason);

    /* client-final-message = client-final-message-without-proof "," proof;
     * a proof is base64, so it follows the last ','. */
    comma = NULL;
    for (size_t i = len; i > 0; i--) {
        if (msg[i - 1] == ',') {
            comma = msg + i - 1;
            break;
        }
    }
    if (comma == NULL || (size_t)(msg + len - comma) < 4 || comma[1] != 'p' || comma[2] != '=')
        return malformed(s, out, "no proof");
    cfwp_len = (size_t)(comma - msg);
    n = auth_base64_decode(comma + 3, (size_t)(msg + len - comma - 3), proof, hlen);
    if (n < 0 || (size_t)n != hlen)
        return malformed(s, out, "bad proof");

    c = (struct cursor){msg, cfwp_len, 0};
    if (!cursor_take(&c, "c="))
        return malformed(s, out, "no channel binding attribute");
    v = cursor_value(&c, &vlen);
    n = auth_base64_decode(v, vlen, cbind, sizeof(cbind));
    if (n < 0)
        return malformed(s, out, "bad channel binding encoding");
    if (!cursor_take(&c, ",r="))
        return malformed(s, out, "no nonce");
    v = cursor_value(&c, &vlen);
    if (!nonce_valid(v, vlen))
        return malformed(s, out, "bad nonce");
    reason = scram_extensions(&c);
    if (reason != NULL)
        return malformed(s, out, reason);

    /* c= must be exactly our GS2 header plus, for "p", the channel's
     * binding data: this carries the client's flag and authzid under the
     * proof, and ties the exchange to this TLS channel. */
    cb_len = s->cb_used != NULL ? s->cb_used->len : 0;
    if ((size_t)n != s->gs2_len + cb_len || memcmp(cbind, s->buf, s->gs2_len) != 0 ||
        (cb_len > 0 && !auth_equal(cbind + s->gs2_len, s->cb_used->data, cb_len)))
        return fail(s, out, SASL_COND_NOT_AUTHORIZED, "channel binding mismatch");
    if (vlen != s->nonce_len || memcmp(v, s->buf + s->nonce_off, vlen) != 0)
        return fail(s, out, SASL_COND_NOT_AUTHORIZED, "nonce mismatch");

    /* AuthMessage = client-first-bare "," server-first "," without-proof */
    if (buf_reserve(s, cfwp_len) < 0)
        return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "out of memory");
    buf_append(s, msg, cfwp_len);
    if (!auth_scram_verify_proof(hash, s->stored_key, s->buf + s->gs2_len, s->buf_len - s->gs2_len,
                                 proof, hlen))
        return fail(s, out, SASL_COND_NOT_AUTHORIZED, "invalid proof");
    /* Unreachable in practice (the fake keys are random), but an unknown
     * user must never get in. */
    if (s->unknown_user)
        return fail(s, out, SASL_COND_NOT_AUTHORIZED, "unknown user");

    if (auth_scram_server_signature(hash, s->server_key, s->buf + s->gs2_len,
                                    s->buf_len - s->gs2_len, signature) < 0 ||
        auth_base64_encode(signature, hlen, b64, sizeof(b64)) < 0)
        return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "server signature failed");
    n = snprintf(s->final_msg, sizeof(s->final_msg), "v=%s", b64);
    buf_wipe(s);
    auth_wipe(s->stored_key, sizeof(s->stored_key));
    auth_wipe(s->server_key, sizeof(s->server_key));
    return succeed(s, out, s->final_msg, (size_t)n);
}

/* --- PLAIN --- */

/* message = [authzid] UTF8NUL authcid UTF8NUL passwd (RFC 4616 §2). */
static enum sasl_result plain_message(struct sasl_server *s, const uint8_t *in, size_t len,
                                      struct sasl_output *out)
{
    const uint8_t *nul1, *nul2, *authcid, *passwd;
    size_t authzid_len, authcid_len, passwd_len;

    if (len == 0)
        return malformed(s, out, "empty message");
    if (len > SASL_MAX_MESSAGE)
        return malformed(s, out, "message too long");
    nul1 = memchr(in, '\0', len);
    if (nul1 == NULL)
        return malformed(s, out, "no NUL separator");
    authcid = nul1 + 1;
    nul2 = memchr(authcid, '\0', (size_t)(in + len - authcid));
    if (nul2 == NULL)
        return malformed(s, out, "one NUL separator only");
    passwd = nul2 + 1;
    authzid_len = (size_t)(nul1 - in);
    authcid_len = (size_t)(nul2 - authcid);
    passwd_len = (size_t)(in + len - passwd);
    if (memchr(passwd, '\0', passwd_len) != NULL)
        return malformed(s, out, "more than two NUL separators");
    if (authcid_len == 0 || passwd_len == 0)
        return malformed(s, out, "empty authcid or password");
    if (authzid_len > SASL_MAX_NAME || authcid_len > SASL_MAX_NAME ||
        passwd_len > AUTH_MAX_PASSWORD)
        return malformed(s, out, "field too long");
    if (!utf8_valid(in, authzid_len) || !utf8_valid(authcid, authcid_len) ||
        !utf8_valid(passwd, passwd_len))
        return malformed(s, out, "field is not UTF-8");

    memcpy(s->authzid, in, authzid_len);
    s->authzid[authzid_len] = '\0';
    memcpy(s->authcid, authcid, authcid_len);
    s->authcid[authcid_len] = '\0';
    if (buf_reserve(s, passwd_len) < 0)
        return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "out of memory");
    buf_append(s, passwd, passwd_len);
    return need_credentials(s, out);
}

/* The password is checked by deriving StoredKey again from the stored salt
 * and count, so the store never needs it in the clear. */
static enum sasl_result plain_verify(struct sasl_server *s, const struct sasl_credentials *cred,
                                     struct sasl_output *out)
{
    uint8_t salt_fake[SASL_FAKE_SALT_LEN], expected[AUTH_MAX_HASH_LEN];
    uint8_t stored_key[AUTH_MAX_HASH_LEN], server_key[AUTH_MAX_HASH_LEN];
    enum auth_hash hash;
    const uint8_t *salt;
    size_t salt_len;
    unsigned iterations;
    bool ok;

    if (cred == NULL) {
        /* Not an account: the same work as for one, against random keys. */
        s->unknown_user = true;
        hash = AUTH_HASH_SHA256;
        if (fake_salt(s, salt_fake) < 0 || RAND_bytes(expected, sizeof(expected)) != 1)
            return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "no randomness");
        salt = salt_fake;
        salt_len = sizeof(salt_fake);
        iterations = s->fake_iterations;
    } else {
        if (credentials_usable(cred, AUTH_HASH_SHA256))
            hash = AUTH_HASH_SHA256;
        else if (credentials_usable(cred, AUTH_HASH_SHA1))
            hash = AUTH_HASH_SHA1;
        else
            return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "stored credentials unusable");
        memcpy(expected, hash == AUTH_HASH_SHA1 ? cred->sha1_stored_key : cred->sha256_stored_key,
               auth_hash_len(hash));
        salt = cred->salt;
        salt_len = cred->salt_len;
        iterations = cred->iterations;
    }

    if (auth_scram_keys(hash, s->buf, s->buf_len, salt, salt_len, iterations, NULL, stored_key,
                        server_key) < 0)
        return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE, "key derivation failed");
    ok = auth_equal(stored_key, expected, auth_hash_len(hash));
    auth_wipe(stored_key, sizeof(stored_key));
    auth_wipe(server_key, sizeof(server_key));
    auth_wipe(expected, sizeof(expected));
    buf_wipe(s);
    if (!ok || s->unknown_user)
        return fail(s, out, SASL_COND_NOT_AUTHORIZED,
                    s->unknown_user ? "unknown user" : "wrong password");
    return succeed(s, out, NULL, 0);
}

/* --- the API --- */

enum sasl_condition sasl_mechanism_check(const char *mechanism, const struct sasl_params *params)
{
    const struct sasl_mech *mech = mech_find(mechanism);

    if (mech == NULL)
        return SASL_COND_INVALID_MECHANISM;
    if (mech->plus && !params_have_cb(params))
        return SASL_COND_INVALID_MECHANISM;
    if (!mech->scram) {
        if (!params->allow_plain)
            return SASL_COND_INVALID_MECHANISM;
        /* Never a password in the clear over a plain connection. */
        if (!params->tls_active)
            return SASL_COND_ENCRYPTION_REQUIRED;
    }
    return SASL_COND_NONE;
}

size_t sasl_mechanisms(const struct sasl_params *params, const char *names_r[SASL_MECH_COUNT])
{
    size_t n = 0;

    for (size_t i = 0; i < SASL_MECH_COUNT; i++) {
        if (sasl_mechanism_check(sasl_mechs[i].name, params) == SASL_COND_NONE)
            names_r[n++] = sasl_mechs[i].name;
    }
    return n;
}

struct sasl_server *sasl_server_new(const char *mechanism, const struct sasl_params *params,
                                    const char **error_r)
{
    struct sasl_server *s;
    size_t len;

    if (sasl_mechanism_check(mechanism, params) != SASL_COND_NONE) {
        *error_r = "mechanism not available on this connection";
        return NULL;
    }
    if (params->domain == NULL || params->domain[0] == '\0' ||
        strlen(params->domain) > SASL_MAX_DOMAIN) {
        *error_r = "missing or too long domain";
        return NULL;
    }
    if (params->fake_iterations > AUTH_MAX_ITERATIONS) {
        *error_r = "fake_iterations out of bounds";
        return NULL;
    }
    if (params->fixed_server_nonce != NULL) {
        len = strlen(params->fixed_server_nonce);
        if (!nonce_valid(params->fixed_server_nonce, len)) {
            *error_r = "bad fixed_server_nonce";
            return NULL;
        }
    }
    if (params->tls_active && params->n_channel_bindings > 0) {
        if (params->n_channel_bindings > SASL_MAX_CB_TYPES) {
            *error_r = "too many channel bindings";
            return NULL;
        }
        for (size_t i = 0; i < params->n_channel_bindings; i++) {
            if (!params_cb_valid(&params->channel_bindings[i])) {
                *error_r = "bad channel binding (type name or data length)";
                return NULL;
            }
        }
    }

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    s->mech = mech_find(mechanism);
    s->state = SASL_STATE_START;
    memcpy(s->domain, params->domain, strlen(params->domain) + 1);
    /* Without TLS there is no channel, whatever the caller passed. */
    if (params->tls_active) {
        for (size_t i = 0; i < params->n_channel_bindings; i++) {
            const struct sasl_channel_binding *cb = &params->channel_bindings[i];
            memcpy(s->cb[i].type, cb->type, strlen(cb->type) + 1);
            memcpy(s->cb[i].data, cb->data, cb->len);
            s->cb[i].len = cb->len;
        }
        s->n_cb = params->n_channel_bindings;
    }
    s->fake_iterations =
        params->fake_iterations != 0 ? params->fake_iterations : AUTH_DEFAULT_ITERATIONS;
    if (params->fixed_server_nonce != NULL)
        memcpy(s->fixed_nonce, params->fixed_server_nonce, strlen(params->fixed_server_nonce) + 1);
    if ((params->fake_secret_len > 0 ? auth_digest(AUTH_HASH_SHA256, params->fake_secret,
                                                   params->fake_secret_len, s->fake_key)
                                     : process_fake_key(s->fake_key)) < 0) {
        free(s);
        *error_r = "no key for unknown-user salts (OpenSSL)";
        return NULL;
    }
    return s;
}

void sasl_server_free(struct sasl_server **sp)
{
    struct sasl_server *s = *sp;

    if (s == NULL)
        return;
    buf_wipe(s);
    auth_wipe(s, sizeof(*s));
    free(s);
    *sp = NULL;
}

const char *sasl_server_mechanism(const struct sasl_server *s)
{
    return s->mech->name;
}

enum sasl_result sasl_server_step(struct sasl_server *s, const uint8_t *in, size_t in_len,
                                  struct sasl_output *out)
{
    output_reset(out);
    if (in == NULL) {
        /* No initial response: both mechanisms are client-first, so the
         * client's first message comes after an empty challenge. */
        if (s->state != SASL_STATE_START)
            return malformed(s, out, "missing response");
        s->state = SASL_STATE_FIRST;
        out->data = (const uint8_t *)"";
        out->data_len = 0;
        return SASL_CONTINUE;
    }
    switch (s->state) {
    case SASL_STATE_START:
    case SASL_STATE_FIRST:
        return s->mech->scram ? scram_client_first(s, in, in_len, out)
                              : plain_message(s, in, in_len, out);
    case SASL_STATE_FINAL:
        return scram_client_final(s, in, in_len, out);
    case SASL_STATE_CREDENTIALS:
        return malformed(s, out, "response while the credentials were looked up");
    case SASL_STATE_DONE:
        break;
    }
    return malformed(s, out, "exchange already finished");
}

enum sasl_result sasl_server_credentials(struct sasl_server *s, const struct sasl_credentials *cred,
                                         struct sasl_output *out)
{
    output_reset(out);
    if (s->state != SASL_STATE_CREDENTIALS)
        return fail(s, out, SASL_COND_TEMPORARY_AUTH_FAILURE,
                    "credentials given when none were asked for");
    return s->mech->scram ? scram_server_first(s, cred, out) : plain_verify(s, cred, out);
}

/* iterations: a positive decimal without sign or leading zero. */
static bool parse_iterations(struct ipc_slice v, unsigned *out)
{
    unsigned long n = 0;

    if (v.len == 0 || v.ptr[0] == '0')
        return false;
    for (uint32_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return false;
        n = n * 10 + (unsigned long)(v.ptr[i] - '0');
        if (n > AUTH_MAX_ITERATIONS)
            return false;
    }
    *out = (unsigned)n;
    return true;
}

int sasl_credentials_from_response(struct sasl_credentials *cred_r, const struct ipc_msg *msg,
                                   const char **error_r)
{
    struct ipc_slice args[6];
    uint32_t offset = 0;
    size_t n = 0;

    memset(cred_r, 0, sizeof(*cred_r));
    if (msg->type != IPC_RESPONSE || msg->code != IPC_CODE_OK) {
        *error_r = "not an OK response";
        return -1;
    }
    while (n < 6 && ipc_msg_each(msg, IPC_F_ARG, &offset, &args[n]) == 1)
        n++;
    if (n < 6) {
        *error_r = "account.get response with too few arguments";
        return -1;
    }
    if (args[0].len == 0 || args[0].len > AUTH_MAX_SALT) {
        *error_r = "bad salt length";
        return -1;
    }
    if (!parse_iterations(args[1], &cred_r->iterations)) {
        *error_r = "bad iteration count";
        return -1;
    }
    if (args[2].len != AUTH_SHA1_LEN || args[3].len != AUTH_SHA1_LEN ||
        args[4].len != AUTH_SHA256_LEN || args[5].len != AUTH_SHA256_LEN) {
        *error_r = "bad key length";
        return -1;
    }
    cred_r->salt = args[0].ptr;
    cred_r->salt_len = args[0].len;
    cred_r->sha1_stored_key = args[2].ptr;
    cred_r->sha1_server_key = args[3].ptr;
    cred_r->sha256_stored_key = args[4].ptr;
    cred_r->sha256_server_key = args[5].ptr;
    return 0;
}

bool sasl_authzid_ok(const char *authzid, const char *authcid, const char *domain)
{
    size_t zlen = strlen(authzid), clen = strlen(authcid), dlen = strlen(domain);

    if (zlen == 0)
        return true;
    return clen > 0 && zlen == clen + 1 + dlen && ascii_caseeq(authzid, authcid, clen) &&
           authzid[clen] == '@' && ascii_caseeq(authzid + clen + 1, domain, dlen);
}
