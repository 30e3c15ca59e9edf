/*
 * Password-derived secrets (see auth.h): the SCRAM key schedule of RFC 5802
 * §3 for SHA-1 and SHA-256, SIP digest HA1 values, and the small encoding
 * helpers around them. The store calls auth_secrets_derive() when a password
 * is set; the protocol workers use the SCRAM proof helpers at login.
 */
#include "shared/auth.h"

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

static const EVP_MD *auth_md(enum auth_hash hash)
{
    return hash == AUTH_HASH_SHA1 ? EVP_sha1() : EVP_sha256();
}

size_t auth_hash_len(enum auth_hash hash)
{
    return hash == AUTH_HASH_SHA1 ? AUTH_SHA1_LEN : AUTH_SHA256_LEN;
}

int auth_digest(enum auth_hash hash, const void *data, size_t len, uint8_t *out)
{
    unsigned out_len = 0;
    if (EVP_Digest(data, len, out, &out_len, auth_md(hash), NULL) != 1 ||
        out_len != auth_hash_len(hash))
        return -1;
    return 0;
}

int auth_hmac(enum auth_hash hash, const void *key, size_t key_len, const void *data, size_t len,
              uint8_t *out)
{
    unsigned out_len = 0;
    if (key_len > INT_MAX)
        return -1;
    if (HMAC(auth_md(hash), key, (int)key_len, data, len, out, &out_len) == NULL ||
        out_len != auth_hash_len(hash))
        return -1;
    return 0;
}

int auth_scram_keys(enum auth_hash hash, const void *password, size_t password_len,
                    const uint8_t *salt, size_t salt_len, unsigned iterations,
                    uint8_t *client_key_r, uint8_t *stored_key_r, uint8_t *server_key_r)
{
    size_t hlen = auth_hash_len(hash);
    uint8_t salted[AUTH_MAX_HASH_LEN], client_key[AUTH_MAX_HASH_LEN];
    int ret = -1;

    if (iterations < 1 || iterations > AUTH_MAX_ITERATIONS || password_len > INT_MAX ||
        salt_len > INT_MAX)
        return -1;
    /* Hi() of RFC 5802 §2.2 is PBKDF2 (RFC 2898) with HMAC-H and dkLen = hLen. */
    if (PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len, (int)iterations,
                          auth_md(hash), (int)hlen, salted) != 1)
        goto out;
    if (auth_hmac(hash, salted, hlen, "Client Key", 10, client_key) < 0 ||
        auth_digest(hash, client_key, hlen, stored_key_r) < 0 ||
        auth_hmac(hash, salted, hlen, "Server Key", 10, server_key_r) < 0)
        goto out;
    if (client_key_r != NULL)
        memcpy(client_key_r, client_key, hlen);
    ret = 0;
out:
    auth_wipe(salted, sizeof(salted));
    auth_wipe(client_key, sizeof(client_key));
    return ret;
}

int auth_scram_client_proof(enum auth_hash hash, const uint8_t *client_key,
                            const void *auth_message, size_t auth_message_len, uint8_t *proof_r)
{
    size_t hlen = auth_hash_len(hash);
    uint8_t stored_key[AUTH_MAX_HASH_LEN], signature[AUTH_MAX_HASH_LEN];

    if (auth_digest(hash, client_key, hlen, stored_key) < 0 ||
        auth_hmac(hash, stored_key, hlen, auth_message, auth_message_len, signature) < 0)
        return -1;
    for (size_t i = 0; i < hlen; i++)
        proof_r[i] = client_key[i] ^ signature[i];
    return 0;
}

bool auth_scram_verify_proof(enum auth_hash hash, const uint8_t *stored_key,
                             const void *auth_message, size_t auth_message_len,
                             const uint8_t *proof, size_t proof_len)
{
    size_t hlen = auth_hash_len(hash);
    uint8_t signature[AUTH_MAX_HASH_LEN], client_key[AUTH_MAX_HASH_LEN], check[AUTH_MAX_HASH_LEN];
    bool ok;

    if (proof_len != hlen ||
        auth_hmac(hash, stored_key, hlen, auth_message, auth_message_len, signature) < 0)
        return false;
    for (size_t i = 0; i < hlen; i++)
        client_key[i] = proof[i] ^ signature[i];
    ok = auth_digest(hash, client_key, hlen, check) == 0 && auth_equal(check, stored_key, hlen);
    auth_wipe(client_key, sizeof(client_key));
    return ok;
}

int auth_scram_server_signature(enum auth_hash hash, const uint8_t *server_key,
                                const void *auth_message, size_t auth_message_len,
                                uint8_t *signature_r)
{
    return auth_hmac(hash, server_key, auth_hash_len(hash), auth_message, auth_message_len,
                     signature_r);
}

int auth_ha1(enum auth_ha1 alg, const char *username, const char *realm, const void *password,
             size_t password_len, char *out, size_t out_size)
{
    const EVP_MD *md = alg == AUTH_HA1_MD5 ? EVP_md5() : EVP_sha256();
    size_t need = alg == AUTH_HA1_MD5 ? AUTH_HA1_MD5_HEX + 1 : AUTH_HA1_SHA256_HEX + 1;
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned digest_len = 0;
    EVP_MD_CTX *ctx;
    int ok;

    if (out_size < need)
        return -1;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return -1;
    ok = EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
         EVP_DigestUpdate(ctx, username, strlen(username)) == 1 &&
         EVP_DigestUpdate(ctx, ":", 1) == 1 && EVP_DigestUpdate(ctx, realm, strlen(realm)) == 1 &&
         EVP_DigestUpdate(ctx, ":", 1) == 1 && EVP_DigestUpdate(ctx, password, password_len) == 1 &&
         EVP_DigestFinal_ex(ctx, digest, &digest_len) == 1 && digest_len * 2 + 1 == need;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    auth_hex_encode(digest, digest_len, out);
    return 0;
}

int auth_secrets_derive_salt(struct auth_secrets *s, const char *username, const char *realm,
                             const void *password, size_t password_len, const uint8_t *salt,
                             size_t salt_len, unsigned iterations, const char **error_r)
{
    memset(s, 0, sizeof(*s));
    if (salt_len == 0 || salt_len > AUTH_MAX_SALT) {
        *error_r = "bad salt length";
        return -1;
    }
    if (iterations < AUTH_MIN_ITERATIONS || iterations > AUTH_MAX_ITERATIONS) {
        *error_r = "iteration count out of bounds";
        return -1;
    }
    memcpy(s->salt, salt, salt_len);
    s->salt_len = salt_len;
    s->iterations = iterations;
    if (auth_scram_keys(AUTH_HASH_SHA1, password, password_len, salt, salt_len, iterations, NULL,
                        s->sha1_stored_key, s->sha1_server_key) < 0 ||
        auth_scram_keys(AUTH_HASH_SHA256, password, password_len, salt, salt_len, iterations, NULL,
                        s->sha256_stored_key, s->sha256_server_key) < 0 ||
        auth_ha1(AUTH_HA1_MD5, username, realm, password, password_len, s->ha1_md5,
                 sizeof(s->ha1_md5)) < 0 ||
        auth_ha1(AUTH_HA1_SHA256, username, realm, password, password_len, s->ha1_sha256,
                 sizeof(s->ha1_sha256)) < 0) {
        auth_wipe(s, sizeof(*s));
        *error_r = "key derivation failed (OpenSSL)";
        return -1;
    }
    return 0;
}

int auth_secrets_derive(struct auth_secrets *s, const char *username, const char *realm,
                        const void *password, size_t password_len, unsigned iterations,
                        const char **error_r)
{
    uint8_t salt[AUTH_SALT_LEN];

    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        memset(s, 0, sizeof(*s));
        *error_r = "no randomness for the salt (RAND_bytes failed)";
        return -1;
    }
    return auth_secrets_derive_salt(s, username, realm, password, password_len, salt, sizeof(salt),
                                    iterations, error_r);
}

bool auth_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

void auth_wipe(void *p, size_t len)
{
    OPENSSL_cleanse(p, len);
}

int auth_base64_encode(const void *data, size_t len, char *out, size_t out_size)
{
    if (len > INT_MAX / 2 || out_size < AUTH_BASE64_SIZE(len))
        return -1;
    return EVP_EncodeBlock((unsigned char *)out, data, (int)len);
}

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* A small strict decoder rather than EVP_DecodeBlock, which accepts
 * whitespace, does not report padding and cannot bound its output. */
int auth_base64_decode(const char *text, size_t len, uint8_t *out, size_t out_size)
{
    size_t n = 0;

    if (len % 4 != 0 || len / 4 * 3 > (size_t)INT_MAX)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        const unsigned char *q = (const unsigned char *)text + i;
        bool last = i + 4 == len;
        int v[4], pad = 0;

        for (int k = 0; k < 4; k++) {
            if (q[k] == '=' && last && k >= 2) {
                pad++;
                v[k] = 0;
                continue;
            }
            if (pad > 0)
                return -1; /* data after padding */
            v[k] = base64_value(q[k]);
            if (v[k] < 0)
                return -1;
        }
        uint32_t bits =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* Non-canonical encodings (stray bits under the padding) are refused. */
        if ((pad == 1 && (bits & 0xff) != 0) || (pad == 2 && (bits & 0xffff) != 0))
            return -1;
        if (n + 3 - (size_t)pad > out_size)
            return -1;
        out[n++] = (uint8_t)(bits >> 16);
        if (pad < 2)
            out[n++] = (uint8_t)(bits >> 8);
        if (pad < 1)
            out[n++] = (uint8_t)bits;
    }
    return (int)n;
}

char *auth_hex_encode(const void *data, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = data;

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
    return out;
}
