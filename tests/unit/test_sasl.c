/*
 * Tests of the SASL server state machine (shared/sasl.c): the worked
 * exchanges of RFC 5802 §5 and RFC 7677 §3 replayed byte for byte, full
 * SCRAM exchanges against a client computed here (with and without
 * channel binding, downgrade and mismatch cases, unknown users), malformed
 * messages, PLAIN, the mechanism list, the authzid rule and the parsing of
 * the store's account.get response.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/auth.h"
#include "shared/ipc.h"
#include "shared/sasl.h"
#include "tests/unit/check.h"

static const uint8_t exporter_cb[32] = {
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
};
static const uint8_t unique_cb[12] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8};

/* The secrets of "user" / "pencil" on example.org, derived once. */
static struct auth_secrets pencil;
static struct sasl_credentials pencil_cred;

static void credentials_of(const struct auth_secrets *sec, struct sasl_credentials *cred)
{
    cred->salt = sec->salt;
    cred->salt_len = sec->salt_len;
    cred->iterations = sec->iterations;
    cred->sha1_stored_key = sec->sha1_stored_key;
    cred->sha1_server_key = sec->sha1_server_key;
    cred->sha256_stored_key = sec->sha256_stored_key;
    cred->sha256_server_key = sec->sha256_server_key;
}

/* Plain connection: no TLS, no channel binding, PLAIN allowed by config. */
static struct sasl_params plain_params(void)
{
    struct sasl_params p = {.domain = "example.org", .allow_plain = true};
    return p;
}

static const struct sasl_channel_binding both_cb[] = {
    {"tls-exporter", exporter_cb, sizeof(exporter_cb)},
    {"tls-unique", unique_cb, sizeof(unique_cb)},
};

/* TLS with both bindings available. */
static struct sasl_params tls_params(void)
{
    struct sasl_params p = plain_params();
    p.tls_active = true;
    p.channel_bindings = both_cb;
    p.n_channel_bindings = 2;
    return p;
}

static enum sasl_result step_str(struct sasl_server *s, const char *msg, struct sasl_output *out)
{
    return sasl_server_step(s, (const uint8_t *)msg, strlen(msg), out);
}

static bool output_is(const struct sasl_output *out, const char *text)
{
    return out->data != NULL && out->data_len == strlen(text) &&
           memcmp(out->data, text, out->data_len) == 0;
}

/* --- the RFC examples, byte for byte --- */

struct rfc_example {
    const char *mech;
    enum auth_hash hash;
    const char *server_nonce;
    const char *salt_b64;
    const char *client_first, *server_first, *client_final, *server_final;
};

static const struct rfc_example rfc5802 = {
    "SCRAM-SHA-1",
    AUTH_HASH_SHA1,
    "3rfcNHYJY1ZVvWVs7j",
    "QSXCR+Q6sek8bf92",
    "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

static const struct rfc_example rfc7677 = {
    "SCRAM-SHA-256",
    AUTH_HASH_SHA256,
    "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    "W22ZaJ0SNY7soEsUEjb6gQ==",
    "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

/* The credentials of "user" / "pencil" with an example's salt. */
struct rfc_credentials {
    uint8_t salt[32], stored[AUTH_MAX_HASH_LEN], server[AUTH_MAX_HASH_LEN];
    struct sasl_credentials cred;
};

static void rfc_credentials(const struct rfc_example *ex, struct rfc_credentials *rc)
{
    int salt_len =
        auth_base64_decode(ex->salt_b64, strlen(ex->salt_b64), rc->salt, sizeof(rc->salt));

    CHECK(salt_len > 0);
    CHECK(auth_scram_keys(ex->hash, "pencil", 6, rc->salt, (size_t)salt_len, 4096, NULL, rc->stored,
                          rc->server) == 0);
    memset(&rc->cred, 0, sizeof(rc->cred));
    rc->cred.salt = rc->salt;
    rc->cred.salt_len = salt_len > 0 ? (size_t)salt_len : 0;
    rc->cred.iterations = 4096;
    if (ex->hash == AUTH_HASH_SHA1) {
        rc->cred.sha1_stored_key = rc->stored;
        rc->cred.sha1_server_key = rc->server;
    } else {
        rc->cred.sha256_stored_key = rc->stored;
        rc->cred.sha256_server_key = rc->server;
    }
}

static void test_rfc_example(const struct rfc_example *ex, bool initial_response)
{
    struct sasl_params params = plain_params();
    struct rfc_credentials rc;
    struct sasl_output out;
    struct sasl_server *s;
    const char *error = NULL;

    rfc_credentials(ex, &rc);
    params.fixed_server_nonce = ex->server_nonce;
    s = sasl_server_new(ex->mech, &params, &error);
    CHECK(s != NULL);
    if (s == NULL)
        return;
    CHECK_STR(sasl_server_mechanism(s), ex->mech);
    if (!initial_response) {
        /* No initial response: an empty challenge first. */
        CHECK(sasl_server_step(s, NULL, 0, &out) == SASL_CONTINUE);
        CHECK(out.data != NULL && out.data_len == 0);
    }
    CHECK(step_str(s, ex->client_first, &out) == SASL_NEED_CREDENTIALS);
    CHECK_STR(out.username, "user");
    CHECK(sasl_server_credentials(s, &rc.cred, &out) == SASL_CONTINUE);
    CHECK(output_is(&out, ex->server_first));
    CHECK(step_str(s, ex->client_final, &out) == SASL_SUCCESS);
    CHECK(output_is(&out, ex->server_final));
    CHECK_STR(out.authcid, "user");
    CHECK_STR(out.authzid, "");
    CHECK(out.condition == SASL_COND_NONE);
    /* Nothing more is accepted. */
    CHECK(step_str(s, ex->client_final, &out) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    sasl_server_free(&s);
    CHECK(s == NULL);
}

/* --- a SCRAM client, computed here --- */

struct scram_case {
    const char *mech;
    struct sasl_params params;
    const char *gs2;              /* the client's GS2 header */
    const char *user;             /* as sent in n= (already escaped) */
    const char *password;         /* what the client proves */
    const uint8_t *cb;            /* binding data the client puts in c= */
    size_t cb_len;                /* (with a "p" header) */
    const char *c_override;       /* c= value to send instead of the computed one */
    const char *r_override;       /* r= value to send instead of the combined nonce */
    bool unknown;                 /* the store has no such account */
    const char *final_extensions; /* inserted before ",p=" */
};

struct scram_result {
    enum sasl_result first;  /* result of the client-first step */
    enum sasl_result result; /* result of the last step run */
    enum sasl_condition condition;
    char authcid[64], authzid[64];
    char server_first[512];
};

static void scram_run(const struct scram_case *tc, struct scram_result *res)
{
    enum auth_hash hash = strstr(tc->mech, "SHA-1") != NULL ? AUTH_HASH_SHA1 : AUTH_HASH_SHA256;
    size_t hlen = auth_hash_len(hash);
    const char *cnonce = "Z2cK0dx9Q1w7mYl8kT3pPuNa";
    char cfirst[512], cfinal[1024], auth_message[2048], cbind_b64[256], proof_b64[64];
    char sig_b64[64], expect_final[80];
    uint8_t cbind[256], salt[64], client_key[AUTH_MAX_HASH_LEN], stored[AUTH_MAX_HASH_LEN],
        server_key[AUTH_MAX_HASH_LEN], proof[AUTH_MAX_HASH_LEN], sig[AUTH_MAX_HASH_LEN];
    const char *error = NULL, *r, *sp, *ip;
    struct sasl_output out;
    struct sasl_server *s;
    size_t gs2_len = strlen(tc->gs2), cfwp_len;
    int salt_len;
    unsigned iterations;

    memset(res, 0, sizeof(*res));
    s = sasl_server_new(tc->mech, &tc->params, &error);
    CHECK(s != NULL);
    if (s == NULL)
        return;
    snprintf(cfirst, sizeof(cfirst), "%sn=%s,r=%s", tc->gs2, tc->user, cnonce);
    res->first = res->result = step_str(s, cfirst, &out);
    res->condition = out.condition;
    if (res->result != SASL_NEED_CREDENTIALS)
        goto out;
    res->result = sasl_server_credentials(s, tc->unknown ? NULL : &pencil_cred, &out);
    res->condition = out.condition;
    if (res->result != SASL_CONTINUE)
        goto out;
    CHECK(out.data_len < sizeof(res->server_first));
    memcpy(res->server_first, out.data, out.data_len);
    res->server_first[out.data_len] = '\0';

    /* server-first: r=<cnonce><snonce>,s=<salt>,i=<count> */
    r = res->server_first;
    sp = strstr(r, ",s=");
    ip = strstr(r, ",i=");
    CHECK(strncmp(r, "r=", 2) == 0 && strncmp(r + 2, cnonce, strlen(cnonce)) == 0);
    CHECK(sp != NULL && ip != NULL && ip > sp);
    if (sp == NULL || ip == NULL || ip < sp)
        goto out;
    /* The server's part: at least 18 random bytes in base64. */
    CHECK((size_t)(sp - r - 2) >= strlen(cnonce) + 24);
    salt_len = auth_base64_decode(sp + 3, (size_t)(ip - sp - 3), salt, sizeof(salt));
    CHECK(salt_len > 0);
    iterations = (unsigned)strtoul(ip + 3, NULL, 10);

    /* c= is base64(gs2-header [cbind-data]) unless the case overrides it. */
    memcpy(cbind, tc->gs2, gs2_len);
    if (tc->cb_len > 0)
        memcpy(cbind + gs2_len, tc->cb, tc->cb_len);
    CHECK(auth_base64_encode(cbind, gs2_len + tc->cb_len, cbind_b64, sizeof(cbind_b64)) > 0);
    /* The proof is computed over what is sent, overrides included, so only
     * the server's own checks of c= and r= can catch them. */
    if (tc->r_override != NULL)
        snprintf(cfinal, sizeof(cfinal), "c=%s,r=%s%s", tc->c_override ? tc->c_override : cbind_b64,
                 tc->r_override, tc->final_extensions ? tc->final_extensions : "");
    else
        snprintf(cfinal, sizeof(cfinal), "c=%s,r=%.*s%s",
                 tc->c_override ? tc->c_override : cbind_b64, (int)(sp - r - 2), r + 2,
                 tc->final_extensions ? tc->final_extensions : "");
    cfwp_len = strlen(cfinal);
    snprintf(auth_message, sizeof(auth_message), "%s,%s,%s", cfirst + gs2_len, res->server_first,
             cfinal);

    CHECK(auth_scram_keys(hash, tc->password, strlen(tc->password), salt, (size_t)salt_len,
                          iterations, client_key, stored, server_key) == 0);
    CHECK(auth_scram_client_proof(hash, client_key, auth_message, strlen(auth_message), proof) ==
          0);
    CHECK(auth_base64_encode(proof, hlen, proof_b64, sizeof(proof_b64)) > 0);
    snprintf(cfinal + cfwp_len, sizeof(cfinal) - cfwp_len, ",p=%s", proof_b64);
    res->result = step_str(s, cfinal, &out);
    res->condition = out.condition;
    if (res->result == SASL_SUCCESS) {
        /* The client checks the server's signature. */
        CHECK(auth_scram_server_signature(hash, server_key, auth_message, strlen(auth_message),
                                          sig) == 0);
        CHECK(auth_base64_encode(sig, hlen, sig_b64, sizeof(sig_b64)) > 0);
        snprintf(expect_final, sizeof(expect_final), "v=%s", sig_b64);
        CHECK(output_is(&out, expect_final));
        snprintf(res->authcid, sizeof(res->authcid), "%s", out.authcid);
        snprintf(res->authzid, sizeof(res->authzid), "%s", out.authzid);
    }
out:
    sasl_server_free(&s);
}

static struct scram_case scram_case(const char *mech, struct sasl_params params, const char *gs2)
{
    struct scram_case tc = {.mech = mech, .params = params, .gs2 = gs2, .user = "user"};
    tc.password = "pencil";
    return tc;
}

static void test_scram_plain_exchanges(void)
{
    struct scram_case tc;
    struct scram_result res;

    /* Both hashes, no channel binding, on a plain connection. */
    tc = scram_case("SCRAM-SHA-256", plain_params(), "n,,");
    scram_run(&tc, &res);
    CHECK(res.result == SASL_SUCCESS);
    CHECK_STR(res.authcid, "user");
    CHECK_STR(res.authzid, "");
    tc = scram_case("SCRAM-SHA-1", plain_params(), "n,,");
    scram_run(&tc, &res);
    CHECK(res.result == SASL_SUCCESS);

    /* "y" is fine where the server has no channel binding to offer. */
    tc = scram_case("SCRAM-SHA-256", plain_params(), "y,,");
    scram_run(&tc, &res);
    CHECK(res.result == SASL_SUCCESS);

    /* An authzid travels to the caller. */
    tc = scram_case("SCRAM-SHA-256", plain_params(), "n,a=user@example.org,");
    scram_run(&tc, &res);
    CHECK(res.result == SASL_SUCCESS);
    CHECK_STR(res.authzid, "user@example.org");

    /* Escaped username: "=2C" and "=3D" decode to ',' and '='. */
    tc = scram_case("SCRAM-SHA-256", plain_params(), "n,a=x=3Dy=2Cz,");
    tc.user = "us=2Cer=3D";
    tc.unknown = true;
    scram_run(&tc, &res);
    CHECK(res.first == SASL_NEED_CREDENTIALS);

    /* Wrong password. */
    tc = scram_case("SCRAM-SHA-256", plain_params(), "n,,");
    tc.password = "pencil2";
    scram_run(&tc, &res);
    CHECK(res.result == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_NOT_AUTHORIZED);

    /* The c= of another GS2 header (the authzid was changed on the way). */
    tc = scram_case("SCRAM-SHA-256", plain_params(), "n,a=user@example.org,");
    tc.c_override = "biws";
    scram_run(&tc, &res);
    CHECK(res.result == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_NOT_AUTHORIZED);

    /* A header changed on the way: the client sent "y" (it saw no -PLUS)
     * and a man in the middle rewrote it to "n" in the client-first
     * message; the c= under the proof still says "y,,". */
    tc = scram_case("SCRAM-SHA-256", plain_params(), "n,,");
    tc.c_override = "eSws";
    scram_run(&tc, &res);
    CHECK(res.first == SASL_NEED_CREDENTIALS);
    CHECK(res.result == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_NOT_AUTHORIZED);

    /* A nonce without the server's part (a replay), with a proof that
     * matches it. */
    tc = scram_case("SCRAM-SHA-256", plain_params(), "n,,");
    tc.r_override = "Z2cK0dx9Q1w7mYl8kT3pPuNa";
    scram_run(&tc, &res);
    CHECK(res.result == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_NOT_AUTHORIZED);
    tc.r_override = "Z2cK0dx9Q1w7mYl8kT3pPuNaAAAAAAAAAAAAAAAAAAAAAAAA";
    scram_run(&tc, &res);
    CHECK(res.result == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_NOT_AUTHORIZED);

    /* An unknown optional extension is ignored; m= is refused. */
    tc = scram_case("SCRAM-SHA-256", plain_params(), "n,,");
    tc.final_extensions = ",x=whatever";
    scram_run(&tc, &res);
    CHECK(res.result == SASL_SUCCESS);
    tc.final_extensions = ",m=must";
    scram_run(&tc, &res);
    CHECK(res.result == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_MALFORMED_REQUEST);
}

static void test_scram_channel_binding(void)
{
    struct scram_case tc;
    struct scram_result res;
    static const uint8_t wrong_cb[32] = {1};
    struct sasl_params only_exporter = tls_params();

    only_exporter.n_channel_bindings = 1;

    /* -PLUS with tls-exporter and tls-unique, both hashes. */
    tc = scram_case("SCRAM-SHA-256-PLUS", tls_params(), "p=tls-exporter,,");
    tc.cb = exporter_cb;
    tc.cb_len = sizeof(exporter_cb);
    scram_run(&tc, &res);
    CHECK(res.result == SASL_SUCCESS);
    tc = scram_case("SCRAM-SHA-1-PLUS", tls_params(), "p=tls-unique,a=user@example.org,");
    tc.cb = unique_cb;
    tc.cb_len = sizeof(unique_cb);
    scram_run(&tc, &res);
    CHECK(res.result == SASL_SUCCESS);
    CHECK_STR(res.authzid, "user@example.org");

    /* Wrong binding data (another TLS channel: a man in the middle). */
    tc = scram_case("SCRAM-SHA-256-PLUS", tls_params(), "p=tls-exporter,,");
    tc.cb = wrong_cb;
    tc.cb_len = sizeof(wrong_cb);
    scram_run(&tc, &res);
    CHECK(res.first == SASL_NEED_CREDENTIALS);
    CHECK(res.result == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_NOT_AUTHORIZED);
    /* No binding data at all under a "p" header. */
    tc.cb_len = 0;
    scram_run(&tc, &res);
    CHECK(res.result == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_NOT_AUTHORIZED);

    /* A type the connection does not offer. */
    tc = scram_case("SCRAM-SHA-256-PLUS", only_exporter, "p=tls-unique,,");
    tc.cb = unique_cb;
    tc.cb_len = sizeof(unique_cb);
    scram_run(&tc, &res);
    CHECK(res.first == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_MALFORMED_REQUEST);

    /* Downgrade: the client can bind but believes the server cannot, while
     * -PLUS was offered. */
    tc = scram_case("SCRAM-SHA-256", tls_params(), "y,,");
    scram_run(&tc, &res);
    CHECK(res.first == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_NOT_AUTHORIZED);
    /* ... but "n" (a client without channel binding) is fine over TLS. */
    tc = scram_case("SCRAM-SHA-256", tls_params(), "n,,");
    scram_run(&tc, &res);
    CHECK(res.result == SASL_SUCCESS);

    /* "p=" on a non-PLUS mechanism, "n" or "y" on a -PLUS one. */
    tc = scram_case("SCRAM-SHA-256", tls_params(), "p=tls-exporter,,");
    tc.cb = exporter_cb;
    tc.cb_len = sizeof(exporter_cb);
    scram_run(&tc, &res);
    CHECK(res.first == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_MALFORMED_REQUEST);
    tc = scram_case("SCRAM-SHA-256-PLUS", tls_params(), "n,,");
    scram_run(&tc, &res);
    CHECK(res.first == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_MALFORMED_REQUEST);
    tc = scram_case("SCRAM-SHA-1-PLUS", tls_params(), "y,,");
    scram_run(&tc, &res);
    CHECK(res.first == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_MALFORMED_REQUEST);

    /* A client claiming "n" but sending a c= with binding data. */
    tc = scram_case("SCRAM-SHA-256", tls_params(), "n,,");
    tc.cb = exporter_cb;
    tc.cb_len = sizeof(exporter_cb);
    scram_run(&tc, &res);
    CHECK(res.result == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_NOT_AUTHORIZED);
}

static void test_scram_unknown_user(void)
{
    struct scram_case tc;
    struct scram_result res, again, other, upper;
    struct sasl_params p = plain_params();
    static const uint8_t secret[] = "a persistent server secret";
    char *s1, *s2;

    p.fake_secret = secret;
    p.fake_secret_len = sizeof(secret);
    p.fake_iterations = 8192;

    /* The whole exchange runs, and fails only at the proof. */
    tc = scram_case("SCRAM-SHA-256", p, "n,,");
    tc.user = "nobody";
    tc.unknown = true;
    scram_run(&tc, &res);
    CHECK(res.first == SASL_NEED_CREDENTIALS);
    CHECK(res.result == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_NOT_AUTHORIZED);
    CHECK(strstr(res.server_first, ",i=8192") != NULL);

    /* The salt is the same each time (as a real one would be), whatever
     * the ASCII case, and differs between names. */
    scram_run(&tc, &again);
    tc.user = "NoBody";
    scram_run(&tc, &upper);
    tc.user = "somebody";
    scram_run(&tc, &other);
    s1 = strstr(res.server_first, ",s=");
    s2 = strstr(again.server_first, ",s=");
    CHECK(s1 != NULL && s2 != NULL && strcmp(s1, s2) == 0);
    s2 = strstr(upper.server_first, ",s=");
    CHECK(s1 != NULL && s2 != NULL && strcmp(s1, s2) == 0);
    s2 = strstr(other.server_first, ",s=");
    CHECK(s1 != NULL && s2 != NULL && strcmp(s1, s2) != 0);
    /* A 16-byte salt, like the store's. */
    CHECK(s1 != NULL && strlen(s1) == strlen(",s=") + 24 + strlen(",i=8192"));

    /* Even the right password of some other account does not help. */
    tc.user = "user";
    scram_run(&tc, &res);
    CHECK(res.result == SASL_FAILURE);
    CHECK(res.condition == SASL_COND_NOT_AUTHORIZED);
}

/* Runs one client-first message and returns the result; when it asks for
 * credentials, feeds pencil's and returns that result. */
static enum sasl_result scram_first(const char *mech, struct sasl_params params, const void *msg,
                                    size_t len, struct sasl_output *out)
{
    const char *error = NULL;
    struct sasl_server *s = sasl_server_new(mech, &params, &error);
    enum sasl_result r;

    CHECK(s != NULL);
    if (s == NULL)
        return SASL_FAILURE;
    r = sasl_server_step(s, msg, len, out);
    sasl_server_free(&s);
    return r;
}

static void expect_first_malformed(const char *msg)
{
    struct sasl_output out;
    enum sasl_result r = scram_first("SCRAM-SHA-256", plain_params(), msg, strlen(msg), &out);

    if (r != SASL_FAILURE || out.condition != SASL_COND_MALFORMED_REQUEST)
        fprintf(stderr, "accepted: \"%s\"\n", msg);
    CHECK(r == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    CHECK(out.reason != NULL && out.reason[0] != '\0');
}

static void expect_first_ok(const char *msg, const char *username)
{
    struct sasl_output out;
    struct sasl_params params = plain_params();
    const char *error = NULL;
    struct sasl_server *s = sasl_server_new("SCRAM-SHA-256", &params, &error);

    CHECK(s != NULL);
    if (s == NULL)
        return;
    CHECK(step_str(s, msg, &out) == SASL_NEED_CREDENTIALS);
    CHECK_STR(out.username, username);
    sasl_server_free(&s);
}

static void test_scram_malformed_first(void)
{
    static const char nul_msg[] = "n,,n=us\0er,r=abc";
    char *big;
    struct sasl_output out;

    expect_first_ok("n,,n=user,r=abc", "user");
    expect_first_ok("n,,n=a=2Cb=3Dc,r=abc", "a,b=c");
    expect_first_ok("n,,n=\xc3\xa9l\xc3\xa8ve,r=abc", "\xc3\xa9l\xc3\xa8ve");
    expect_first_ok("n,,n=user,r=abc,x=optional-extension", "user");

    expect_first_malformed("");
    expect_first_malformed("x,,n=user,r=abc");  /* bad flag */
    expect_first_malformed("n,n=user,r=abc");   /* no second comma */
    expect_first_malformed("p=,,n=user,r=abc"); /* empty cb-name */
    expect_first_malformed("p=a b,,n=user,r=abc");
    expect_first_malformed("n,,r=abc");    /* no username */
    expect_first_malformed("n,,n=,r=abc"); /* empty username */
    expect_first_malformed("n,,n=user");   /* no nonce */
    expect_first_malformed("n,,n=user,");
    expect_first_malformed("n,,n=user,r=");     /* empty nonce */
    expect_first_malformed("n,,n=user,r=ab c"); /* not printable */
    expect_first_malformed("n,,n=user,r=ab\x7f");
    expect_first_malformed("n,,n=us=2Xer,r=abc"); /* bad escapes */
    expect_first_malformed("n,,n=us=2cer,r=abc");
    expect_first_malformed("n,,n=user=,r=abc");
    expect_first_malformed("n,,n=user=3,r=abc");
    expect_first_malformed("n,a=x=41,n=user,r=abc");
    expect_first_malformed("n,,m=ext,n=user,r=abc"); /* mandatory extension */
    expect_first_malformed("n,,n=user,r=abc,m=ext");
    expect_first_malformed("n,,n=user,r=abc,r=again");
    expect_first_malformed("n,,n=user,r=abc,,");
    expect_first_malformed("n,,n=user,r=abc,x=");
    expect_first_malformed("n,,n=user,r=abc,1=x");
    expect_first_malformed("n,,n=\xc3\x28,r=abc");     /* invalid UTF-8 */
    expect_first_malformed("n,,n=\xc0\xaf,r=abc");     /* overlong */
    expect_first_malformed("n,,n=\xed\xa0\x80,r=abc"); /* surrogate */

    /* NUL bytes. */
    CHECK(scram_first("SCRAM-SHA-256", plain_params(), nul_msg, sizeof(nul_msg) - 1, &out) ==
          SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    /* A present but empty message (XMPP "="). */
    CHECK(scram_first("SCRAM-SHA-256", plain_params(), "", 0, &out) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);

    /* Over-long: a message, a name, a nonce. */
    big = malloc(SASL_MAX_MESSAGE + 64);
    CHECK(big != NULL);
    if (big == NULL)
        return;
    memcpy(big, "n,,n=user,r=abc,x=", 18);
    memset(big + 18, 'a', SASL_MAX_MESSAGE);
    big[SASL_MAX_MESSAGE + 1] = '\0';
    expect_first_malformed(big);
    memcpy(big, "n,,n=", 5);
    memset(big + 5, 'u', SASL_MAX_NAME + 1);
    strcpy(big + 5 + SASL_MAX_NAME + 1, ",r=abc");
    expect_first_malformed(big);
    memset(big + 5, 'u', SASL_MAX_NAME);
    strcpy(big + 5 + SASL_MAX_NAME, ",r=abc");
    CHECK(scram_first("SCRAM-SHA-256", plain_params(), big, strlen(big), &out) ==
          SASL_NEED_CREDENTIALS);
    memcpy(big, "n,,n=user,r=", 12);
    memset(big + 12, 'r', SASL_MAX_NONCE + 1);
    big[12 + SASL_MAX_NONCE + 1] = '\0';
    expect_first_malformed(big);
    free(big);
}

/* Drives an exchange to the client-final step and sends final. */
static enum sasl_result scram_final(const char *final, struct sasl_output *out)
{
    struct sasl_params params = plain_params();
    struct rfc_credentials rc;
    const char *error = NULL;
    struct sasl_server *s;
    enum sasl_result r;

    rfc_credentials(&rfc5802, &rc);
    params.fixed_server_nonce = rfc5802.server_nonce;
    s = sasl_server_new("SCRAM-SHA-1", &params, &error);
    CHECK(s != NULL);
    if (s == NULL)
        return SASL_FAILURE;
    CHECK(step_str(s, rfc5802.client_first, out) == SASL_NEED_CREDENTIALS);
    CHECK(sasl_server_credentials(s, &rc.cred, out) == SASL_CONTINUE);
    r = sasl_server_step(s, (const uint8_t *) final, strlen(final), out);
    sasl_server_free(&s);
    return r;
}

static void test_scram_malformed_final(void)
{
    static const struct {
        const char *final;
        enum sasl_condition condition;
    } cases[] = {
        {"", SASL_COND_MALFORMED_REQUEST},
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j", SASL_COND_MALFORMED_REQUEST},
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=", SASL_COND_MALFORMED_REQUEST},
        /* bad base64 proofs: a stray character, missing padding, too short */
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4T!=",
         SASL_COND_MALFORMED_REQUEST},
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts",
         SASL_COND_MALFORMED_REQUEST},
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz",
         SASL_COND_MALFORMED_REQUEST},
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=dHzbZapWIk4jUhN+"
         "Ute9ytag9zjfMHgsqmmiz7"
         "AndVQ=",
         SASL_COND_MALFORMED_REQUEST}, /* a SHA-256 sized proof */
        /* missing or malformed c= and r= */
        {"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
         SASL_COND_MALFORMED_REQUEST},
        {"c=biws,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", SASL_COND_MALFORMED_REQUEST},
        {"c=bi!s,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
         SASL_COND_MALFORMED_REQUEST},
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,m=x,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
         SASL_COND_MALFORMED_REQUEST},
        /* well-formed, but not the nonce, the header or the proof */
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
         SASL_COND_NOT_AUTHORIZED},
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7jX,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
         SASL_COND_NOT_AUTHORIZED},
        {"c=eSws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
         SASL_COND_NOT_AUTHORIZED}, /* c= of "y,," */
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Tt=",
         SASL_COND_MALFORMED_REQUEST}, /* non-canonical base64 */
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=w0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
         SASL_COND_NOT_AUTHORIZED},
    };
    struct sasl_output out;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum sasl_result r = scram_final(cases[i].final, &out);
        if (r != SASL_FAILURE || out.condition != cases[i].condition)
            fprintf(stderr, "final case %zu: result %d condition %s\n", i, (int)r,
                    sasl_condition_name(out.condition));
        CHECK(r == SASL_FAILURE);
        CHECK(out.condition == cases[i].condition);
    }
    /* The RFC's own message passes with the same set-up. */
    CHECK(scram_final(rfc5802.client_final, &out) == SASL_SUCCESS);
}

static void test_scram_sequence_errors(void)
{
    struct sasl_params params = plain_params();
    struct sasl_credentials bad;
    struct sasl_output out;
    const char *error = NULL;
    struct sasl_server *s;

    /* A response while the credentials are being looked up. */
    s = sasl_server_new("SCRAM-SHA-256", &params, &error);
    CHECK(step_str(s, "n,,n=user,r=abc", &out) == SASL_NEED_CREDENTIALS);
    CHECK(step_str(s, "c=biws,r=abc,p=AAAA", &out) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    CHECK(sasl_server_credentials(s, &pencil_cred, &out) == SASL_FAILURE);
    sasl_server_free(&s);

    /* Credentials nobody asked for; a NULL step after the first. */
    s = sasl_server_new("SCRAM-SHA-256", &params, &error);
    CHECK(sasl_server_credentials(s, &pencil_cred, &out) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_TEMPORARY_AUTH_FAILURE);
    sasl_server_free(&s);
    s = sasl_server_new("SCRAM-SHA-256", &params, &error);
    CHECK(sasl_server_step(s, NULL, 0, &out) == SASL_CONTINUE);
    CHECK(sasl_server_step(s, NULL, 0, &out) == SASL_FAILURE);
    sasl_server_free(&s);

    /* Unusable stored credentials: no SHA-1 keys, a zero count. */
    bad = pencil_cred;
    bad.sha1_stored_key = NULL;
    s = sasl_server_new("SCRAM-SHA-1", &params, &error);
    CHECK(step_str(s, "n,,n=user,r=abc", &out) == SASL_NEED_CREDENTIALS);
    CHECK(sasl_server_credentials(s, &bad, &out) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_TEMPORARY_AUTH_FAILURE);
    sasl_server_free(&s);
    bad = pencil_cred;
    bad.iterations = 0;
    s = sasl_server_new("SCRAM-SHA-256", &params, &error);
    CHECK(step_str(s, "n,,n=user,r=abc", &out) == SASL_NEED_CREDENTIALS);
    CHECK(sasl_server_credentials(s, &bad, &out) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_TEMPORARY_AUTH_FAILURE);
    sasl_server_free(&s);

    /* Freeing midway (an <abort/>) wipes and frees everything. */
    s = sasl_server_new("SCRAM-SHA-256", &params, &error);
    CHECK(step_str(s, "n,,n=user,r=abc", &out) == SASL_NEED_CREDENTIALS);
    CHECK(sasl_server_credentials(s, &pencil_cred, &out) == SASL_CONTINUE);
    sasl_server_free(&s);
    sasl_server_free(&s);
}

/* --- PLAIN --- */

static enum sasl_result plain_run(const void *msg, size_t len, const struct sasl_credentials *cred,
                                  bool ask, struct sasl_output *out, char *authzid_r)
{
    struct sasl_params params = tls_params();
    const char *error = NULL;
    struct sasl_server *s = sasl_server_new("PLAIN", &params, &error);
    enum sasl_result r;

    CHECK(s != NULL);
    if (s == NULL)
        return SASL_FAILURE;
    r = sasl_server_step(s, msg, len, out);
    if (r == SASL_NEED_CREDENTIALS && ask) {
        CHECK_STR(out->username, "user");
        r = sasl_server_credentials(s, cred, out);
        if (r == SASL_SUCCESS) {
            CHECK(out->data == NULL);
            CHECK_STR(out->authcid, "user");
            strcpy(authzid_r, out->authzid);
        }
    }
    sasl_server_free(&s);
    return r;
}

#define PLAIN(lit) (lit), sizeof(lit) - 1

static void test_plain(void)
{
    struct sasl_credentials sha1_only = pencil_cred;
    struct sasl_output out;
    char authzid[64] = "";
    char *big;

    CHECK(plain_run(PLAIN("\0user\0pencil"), &pencil_cred, true, &out, authzid) == SASL_SUCCESS);
    CHECK_STR(authzid, "");
    CHECK(plain_run(PLAIN("user@example.org\0user\0pencil"), &pencil_cred, true, &out, authzid) ==
          SASL_SUCCESS);
    CHECK_STR(authzid, "user@example.org");
    /* Only SHA-1 keys stored: checked against those. */
    sha1_only.sha256_stored_key = sha1_only.sha256_server_key = NULL;
    CHECK(plain_run(PLAIN("\0user\0pencil"), &sha1_only, true, &out, authzid) == SASL_SUCCESS);

    CHECK(plain_run(PLAIN("\0user\0pencil!"), &pencil_cred, true, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_NOT_AUTHORIZED);
    CHECK(plain_run(PLAIN("\0user\0Pencil"), &sha1_only, true, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_NOT_AUTHORIZED);
    /* Unknown user. */
    CHECK(plain_run(PLAIN("\0user\0pencil"), NULL, true, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_NOT_AUTHORIZED);

    /* Malformed. */
    CHECK(plain_run(PLAIN(""), NULL, false, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    CHECK(plain_run(PLAIN("userpencil"), NULL, false, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    CHECK(plain_run(PLAIN("user\0pencil"), NULL, false, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    CHECK(plain_run(PLAIN("\0user\0pen\0cil"), NULL, false, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    CHECK(plain_run(PLAIN("\0\0pencil"), NULL, false, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    CHECK(plain_run(PLAIN("\0user\0"), NULL, false, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    CHECK(plain_run(PLAIN("\0us\xffr\0pencil"), NULL, false, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    CHECK(plain_run(PLAIN("\xc3\0user\0pencil"), NULL, false, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    CHECK(plain_run(PLAIN("\0user\0pen\xe2\x82"), NULL, false, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);

    /* Field lengths: 255 octets each is accepted (RFC 4616 §2), our caps
     * refuse one more than SASL_MAX_NAME / AUTH_MAX_PASSWORD. */
    big = calloc(1, 3 * 1100);
    CHECK(big != NULL);
    if (big == NULL)
        return;
    memset(big, 'z', 255);
    memcpy(big + 256, "user", 4);
    memset(big + 261, 'p', 255);
    CHECK(plain_run(big, 516, &pencil_cred, true, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_NOT_AUTHORIZED);
    memset(big, 0, 3 * 1100);
    memcpy(big + 1, "user", 4);
    memset(big + 6, 'p', AUTH_MAX_PASSWORD + 1);
    CHECK(plain_run(big, 6 + AUTH_MAX_PASSWORD + 1, NULL, false, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    memset(big, 0, 3 * 1100);
    memset(big + 1, 'u', SASL_MAX_NAME + 1);
    memcpy(big + SASL_MAX_NAME + 3, "pw", 2);
    CHECK(plain_run(big, SASL_MAX_NAME + 5, NULL, false, &out, authzid) == SASL_FAILURE);
    CHECK(out.condition == SASL_COND_MALFORMED_REQUEST);
    free(big);
}

/* --- mechanism list and checks --- */

static bool list_is(const struct sasl_params *params, const char *expected)
{
    const char *names[SASL_MECH_COUNT];
    size_t n = sasl_mechanisms(params, names);
    char joined[128] = "";

    for (size_t i = 0; i < n; i++) {
        strcat(joined, i ? " " : "");
        strcat(joined, names[i]);
    }
    if (strcmp(joined, expected) != 0)
        fprintf(stderr, "mechanisms: \"%s\", expected \"%s\"\n", joined, expected);
    return strcmp(joined, expected) == 0;
}

static void test_mechanisms(void)
{
    struct sasl_params p = plain_params();
    const char *error = NULL;
    struct sasl_server *s;
    static const struct sasl_channel_binding bad_cb[] = {{"tls unique", unique_cb, 12}};
    static const struct sasl_channel_binding long_cb[] = {{"tls-exporter", exporter_cb, 65}};

    /* No TLS: never PLAIN, never -PLUS (even if bindings were passed). */
    CHECK(list_is(&p, "SCRAM-SHA-256 SCRAM-SHA-1"));
    p.channel_bindings = both_cb;
    p.n_channel_bindings = 2;
    CHECK(list_is(&p, "SCRAM-SHA-256 SCRAM-SHA-1"));
    CHECK(sasl_mechanism_check("PLAIN", &p) == SASL_COND_ENCRYPTION_REQUIRED);
    CHECK(sasl_mechanism_check("SCRAM-SHA-256-PLUS", &p) == SASL_COND_INVALID_MECHANISM);
    CHECK(sasl_server_new("PLAIN", &p, &error) == NULL);
    CHECK(error != NULL);

    /* TLS without channel binding; with; PLAIN disabled. */
    p = plain_params();
    p.tls_active = true;
    CHECK(list_is(&p, "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN"));
    p = tls_params();
    CHECK(list_is(&p, "SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-1 PLAIN"));
    p.allow_plain = false;
    CHECK(list_is(&p, "SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-1"));
    CHECK(sasl_mechanism_check("PLAIN", &p) == SASL_COND_INVALID_MECHANISM);
    CHECK(sasl_mechanism_check("SCRAM-SHA-1-PLUS", &p) == SASL_COND_NONE);
    CHECK(sasl_mechanism_check("DIGEST-MD5", &p) == SASL_COND_INVALID_MECHANISM);
    CHECK(sasl_mechanism_check("scram-sha-1", &p) == SASL_COND_INVALID_MECHANISM);
    CHECK(sasl_mechanism_check("", &p) == SASL_COND_INVALID_MECHANISM);
    CHECK(sasl_mechanism_check(NULL, &p) == SASL_COND_INVALID_MECHANISM);

    /* Invalid bindings are not offered, and refused by sasl_server_new. */
    p.channel_bindings = bad_cb;
    p.n_channel_bindings = 1;
    CHECK(list_is(&p, "SCRAM-SHA-256 SCRAM-SHA-1"));
    CHECK(sasl_server_new("SCRAM-SHA-256", &p, &error) == NULL);
    p.channel_bindings = long_cb;
    CHECK(sasl_server_new("SCRAM-SHA-256", &p, &error) == NULL);

    /* Bad parameters. */
    p = tls_params();
    p.domain = NULL;
    CHECK(sasl_server_new("SCRAM-SHA-256", &p, &error) == NULL);
    p = tls_params();
    p.fixed_server_nonce = "a,b";
    CHECK(sasl_server_new("SCRAM-SHA-256", &p, &error) == NULL);
    p = tls_params();
    s = sasl_server_new("SCRAM-SHA-256-PLUS", &p, &error);
    CHECK(s != NULL);
    sasl_server_free(&s);
}

static void test_conditions(void)
{
    static const char *const names[] = {
        "",
        "aborted",
        "account-disabled",
        "credentials-expired",
        "encryption-required",
        "incorrect-encoding",
        "invalid-authzid",
        "invalid-mechanism",
        "malformed-request",
        "mechanism-too-weak",
        "not-authorized",
        "temporary-auth-failure",
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        CHECK_STR(sasl_condition_name((enum sasl_condition)i), names[i]);
    CHECK_STR(sasl_condition_name(SASL_COND_NOT_AUTHORIZED), "not-authorized");
    CHECK_STR(sasl_condition_name((enum sasl_condition)99), "");
}

static void test_authzid(void)
{
    CHECK(sasl_authzid_ok("", "user", "example.org"));
    CHECK(sasl_authzid_ok("user@example.org", "user", "example.org"));
    CHECK(sasl_authzid_ok("User@Example.ORG", "user", "example.org"));
    CHECK(sasl_authzid_ok("user@example.org", "USER", "example.org"));
    CHECK(!sasl_authzid_ok("admin@example.org", "user", "example.org"));
    CHECK(!sasl_authzid_ok("user@example.com", "user", "example.org"));
    CHECK(!sasl_authzid_ok("user@example.org/res", "user", "example.org"));
    CHECK(!sasl_authzid_ok("user", "user", "example.org"));
    CHECK(!sasl_authzid_ok("user@", "user", "example.org"));
    CHECK(!sasl_authzid_ok("@example.org", "", "example.org"));
    CHECK(!sasl_authzid_ok("userXexample.org", "user", "example.org"));
    CHECK(!sasl_authzid_ok("use@example.org", "user", "example.org"));
    CHECK(!sasl_authzid_ok("\xc3\x89l@example.org", "\xc3\xa9l", "example.org"));
}

/* --- the store's account.get response --- */

static bool decode_one(const struct ipc_writer *w, struct ipc_msg *msg)
{
    struct ipc_cursor cur;
    const uint8_t *frame;
    size_t len;
    const char *error = NULL;

    frame = ipc_writer_frame(w, &len);
    return frame != NULL && ipc_frame_open(&cur, frame, len, &error) == 0 &&
           ipc_frame_next(&cur, msg, &error) == 1;
}

static void build_response(struct ipc_writer *w, uint32_t code, const char *iterations,
                           size_t sha256_server_len, int n_args)
{
    const struct auth_secrets *sec = &pencil;
    const void *data[8] = {sec->salt,
                           iterations,
                           sec->sha1_stored_key,
                           sec->sha1_server_key,
                           sec->sha256_stored_key,
                           sec->sha256_server_key,
                           sec->ha1_md5,
                           sec->ha1_sha256};
    size_t lens[8] = {sec->salt_len,   strlen(iterations), AUTH_SHA1_LEN,    AUTH_SHA1_LEN,
                      AUTH_SHA256_LEN, sha256_server_len,  AUTH_HA1_MD5_HEX, AUTH_HA1_SHA256_HEX};

    ipc_writer_reset(w);
    ipc_msg_begin(w, IPC_RESPONSE);
    ipc_put_u32(w, IPC_F_WORKER, 3);
    ipc_put_u32(w, IPC_F_REQ_ID, 7);
    ipc_put_u32(w, IPC_F_CODE, code);
    for (int i = 0; i < n_args; i++)
        ipc_put_bytes(w, IPC_F_ARG, data[i], lens[i]);
    CHECK(ipc_msg_end(w));
}

static void test_credentials_from_response(void)
{
    struct ipc_writer w;
    struct ipc_msg msg;
    struct sasl_credentials cred;
    const char *error = NULL;
    char count[16];

    snprintf(count, sizeof(count), "%u", pencil.iterations);
    ipc_writer_init(&w);
    build_response(&w, IPC_CODE_OK, count, AUTH_SHA256_LEN, 8);
    CHECK(decode_one(&w, &msg));
    CHECK(sasl_credentials_from_response(&cred, &msg, &error) == 0);
    CHECK(cred.salt_len == pencil.salt_len && memcmp(cred.salt, pencil.salt, cred.salt_len) == 0);
    CHECK(cred.iterations == pencil.iterations);
    CHECK(memcmp(cred.sha1_stored_key, pencil.sha1_stored_key, AUTH_SHA1_LEN) == 0);
    CHECK(memcmp(cred.sha1_server_key, pencil.sha1_server_key, AUTH_SHA1_LEN) == 0);
    CHECK(memcmp(cred.sha256_stored_key, pencil.sha256_stored_key, AUTH_SHA256_LEN) == 0);
    CHECK(memcmp(cred.sha256_server_key, pencil.sha256_server_key, AUTH_SHA256_LEN) == 0);
    /* Six arguments are enough. */
    build_response(&w, IPC_CODE_OK, count, AUTH_SHA256_LEN, 6);
    CHECK(decode_one(&w, &msg));
    CHECK(sasl_credentials_from_response(&cred, &msg, &error) == 0);

    build_response(&w, IPC_CODE_NOT_FOUND, count, AUTH_SHA256_LEN, 0);
    CHECK(decode_one(&w, &msg));
    CHECK(sasl_credentials_from_response(&cred, &msg, &error) == -1);
    build_response(&w, IPC_CODE_OK, count, AUTH_SHA256_LEN, 5);
    CHECK(decode_one(&w, &msg));
    CHECK(sasl_credentials_from_response(&cred, &msg, &error) == -1);
    build_response(&w, IPC_CODE_OK, count, AUTH_SHA256_LEN - 1, 8);
    CHECK(decode_one(&w, &msg));
    CHECK(sasl_credentials_from_response(&cred, &msg, &error) == -1);
    static const char *const bad_counts[] = {
        "", "0", "04096", "-1", "4096x", "1000001", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_counts) / sizeof(bad_counts[0]); i++) {
        build_response(&w, IPC_CODE_OK, bad_counts[i], AUTH_SHA256_LEN, 8);
        CHECK(decode_one(&w, &msg));
        CHECK(sasl_credentials_from_response(&cred, &msg, &error) == -1);
    }
    ipc_writer_free(&w);
}

int main(void)
{
    const char *error = NULL;

    if (auth_secrets_derive(&pencil, "user", "example.org", "pencil", 6, AUTH_DEFAULT_ITERATIONS,
                            &error) < 0) {
        fprintf(stderr, "auth_secrets_derive: %s\n", error);
        return 1;
    }
    credentials_of(&pencil, &pencil_cred);

    test_rfc_example(&rfc5802, true);
    test_rfc_example(&rfc5802, false);
    test_rfc_example(&rfc7677, true);
    test_scram_plain_exchanges();
    test_scram_channel_binding();
    test_scram_unknown_user();
    test_scram_malformed_first();
    test_scram_malformed_final();
    test_scram_sequence_errors();
    test_plain();
    test_mechanisms();
    test_conditions();
    test_authzid();
    test_credentials_from_response();
    return check_result("test_sasl");
}
