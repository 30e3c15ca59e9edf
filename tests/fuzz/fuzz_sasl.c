/*
 * Fuzz target for the SASL server (shared/sasl.c). The first byte chooses
 * the session:
 *   bits 0-2  the mechanism: 0 SCRAM-SHA-256-PLUS, 1 SCRAM-SHA-1-PLUS,
 *             2 SCRAM-SHA-256, 3 SCRAM-SHA-1, 4 PLAIN; 5-7 test
 *             sasl_authzid_ok on "authzid NUL authcid" instead
 *   bit 3     TLS, with tls-exporter and tls-unique bindings
 *   bit 4     the account does not exist (credentials NULL)
 *   bit 5     no initial response (the first step gets NULL)
 * The rest, split at NUL bytes, is fed as successive client messages;
 * PLAIN's separators are NULs, so for PLAIN the rest is one message and
 * one more, empty, follows. Credentials are handed over whenever asked
 * for: "user" / "pencil" with the salts of the RFC 5802 and RFC 7677
 * examples, and the server nonces of those examples, so that the RFC
 * exchanges (and -PLUS ones made the same way) reach success.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/auth.h"
#include "shared/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* PLAIN runs the full key derivation per message; a small count keeps the
 * fuzzer fast (the store never writes one below AUTH_MIN_ITERATIONS, but
 * the machine accepts any stored count). */
#define FUZZ_PLAIN_ITERATIONS 16

struct fuzz_keys {
    uint8_t salt[32];
    size_t salt_len;
    uint8_t stored1[AUTH_SHA1_LEN], server1[AUTH_SHA1_LEN];
    uint8_t stored256[AUTH_SHA256_LEN], server256[AUTH_SHA256_LEN];
    struct sasl_credentials cred;
};

static struct fuzz_keys keys_sha1, keys_sha256, keys_plain;

static const uint8_t fuzz_exporter[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                          12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                          23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t fuzz_unique[12] = {0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6,
                                        0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac};

static void keys_init(struct fuzz_keys *k, const char *salt_b64, unsigned iterations)
{
    int n = auth_base64_decode(salt_b64, strlen(salt_b64), k->salt, sizeof(k->salt));

    if (n <= 0 ||
        auth_scram_keys(AUTH_HASH_SHA1, "pencil", 6, k->salt, (size_t)n, iterations, NULL,
                        k->stored1, k->server1) < 0 ||
        auth_scram_keys(AUTH_HASH_SHA256, "pencil", 6, k->salt, (size_t)n, iterations, NULL,
                        k->stored256, k->server256) < 0)
        abort();
    k->salt_len = (size_t)n;
    k->cred = (struct sasl_credentials){k->salt,    k->salt_len,  iterations,  k->stored1,
                                        k->server1, k->stored256, k->server256};
}

static void fuzz_init(void)
{
    static bool done;

    if (done)
        return;
    keys_init(&keys_sha1, "QSXCR+Q6sek8bf92", 4096);
    keys_init(&keys_sha256, "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
    keys_init(&keys_plain, "W22ZaJ0SNY7soEsUEjb6gQ==", FUZZ_PLAIN_ITERATIONS);
    done = true;
}

static void fuzz_authzid(const uint8_t *data, size_t size)
{
    char authzid[256], authcid[256];
    const uint8_t *nul = memchr(data, '\0', size);
    size_t zlen = nul != NULL ? (size_t)(nul - data) : size;
    size_t clen = nul != NULL ? size - zlen - 1 : 0;

    if (zlen >= sizeof(authzid) || clen >= sizeof(authcid))
        return;
    memcpy(authzid, data, zlen);
    authzid[zlen] = '\0';
    if (clen > 0)
        memcpy(authcid, nul + 1, clen);
    authcid[clen] = '\0';
    /* Strings end at their first NUL; what follows is ignored. */
    (void)sasl_authzid_ok(authzid, authcid, "example.org");
}

/* One client message; answers a request for credentials at once. */
static enum sasl_result feed(struct sasl_server *s, const uint8_t *msg, size_t len,
                             const struct sasl_credentials *cred)
{
    struct sasl_output out;
    enum sasl_result r = sasl_server_step(s, msg, len, &out);

    if (r == SASL_NEED_CREDENTIALS) {
        if (out.username == NULL || out.username[0] == '\0')
            abort(); /* an empty identity must never reach the store */
        r = sasl_server_credentials(s, cred, &out);
    }
    if (r == SASL_SUCCESS) {
        if (cred == NULL)
            abort(); /* an unknown user got in */
        (void)sasl_authzid_ok(out.authzid, out.authcid, "example.org");
    }
    if (r == SASL_FAILURE && out.condition == SASL_COND_NONE)
        abort();
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const mechs[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
                                        "SCRAM-SHA-1", "PLAIN"};
    static const struct sasl_channel_binding bindings[] = {
        {"tls-exporter", fuzz_exporter, sizeof(fuzz_exporter)},
        {"tls-unique", fuzz_unique, sizeof(fuzz_unique)},
    };
    static const uint8_t secret[] = "fuzz secret";
    struct sasl_params params = {.domain = "example.org", .allow_plain = true};
    const struct sasl_credentials *cred;
    struct sasl_server *s;
    const char *error = NULL, *mech;
    unsigned sel, flags;
    bool unknown;

    if (size == 0)
        return 0;
    fuzz_init();
    flags = data[0];
    sel = flags & 7;
    if (sel >= 5) {
        fuzz_authzid(data + 1, size - 1);
        return 0;
    }
    mech = mechs[sel];
    unknown = (flags & 0x10) != 0;
    if (flags & 0x08) {
        params.tls_active = true;
        params.channel_bindings = bindings;
        params.n_channel_bindings = 2;
    }
    params.fake_secret = secret;
    params.fake_secret_len = sizeof(secret);
    params.fake_iterations = FUZZ_PLAIN_ITERATIONS;
    if (sel == 1 || sel == 3) {
        params.fixed_server_nonce = "3rfcNHYJY1ZVvWVs7j";
        cred = &keys_sha1.cred;
    } else {
        params.fixed_server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        cred = sel == 4 ? &keys_plain.cred : &keys_sha256.cred;
    }
    if (unknown)
        cred = NULL;

    if (sasl_mechanism_check(mech, &params) != SASL_COND_NONE)
        return 0;
    s = sasl_server_new(mech, &params, &error);
    if (s == NULL)
        abort(); /* the check passed: only memory could fail */
    data++;
    size--;
    if (flags & 0x20)
        (void)feed(s, NULL, 0, cred);
    if (sel == 4) {
        (void)feed(s, data, size, cred);
        (void)feed(s, (const uint8_t *)"", 0, cred);
    } else {
        for (;;) {
            const uint8_t *nul = memchr(data, '\0', size);
            size_t len = nul != NULL ? (size_t)(nul - data) : size;

            (void)feed(s, data, len, cred);
            if (nul == NULL)
                break;
            data += len + 1;
            size -= len + 1;
        }
    }
    sasl_server_free(&s);
    return 0;
}
