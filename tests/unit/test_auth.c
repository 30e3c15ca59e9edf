/*
 * Tests of shared/auth.c: the SCRAM key schedule against the worked
 * examples of RFC 5802 §5 (SCRAM-SHA-1) and RFC 7677 §3 (SCRAM-SHA-256), the
 * SIP HA1 values against digests computed outside this code, and the
 * encoding and comparison helpers.
 */
#include <string.h>

#include "shared/auth.h"
#include "tests/unit/check.h"

struct scram_example {
    enum auth_hash hash;
    const char *salt_b64;
    int salt_len; /* decoded */
    const char
        *auth_message;     /* client-first-bare "," server-first "," client-final-without-proof */
    const char *proof_b64; /* p= of the client-final message */
    const char *server_signature_b64; /* v= of the server-final message */
};

/* RFC 5802 §5: user "user", password "pencil". */
static const struct scram_example rfc5802 = {
    AUTH_HASH_SHA1,
    "QSXCR+Q6sek8bf92",
    12,
    "n=user,r=fyko+d2lbbFgONRv9qkxdawL,"
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096,"
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
    "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

/* RFC 7677 §3: user "user", password "pencil". */
static const struct scram_example rfc7677 = {
    AUTH_HASH_SHA256,
    "W22ZaJ0SNY7soEsUEjb6gQ==",
    16,
    "n=user,r=rOprNGfwEbeRWgbNEkqO,"
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

static void test_scram_example(const struct scram_example *ex)
{
    uint8_t salt[32], client_key[AUTH_MAX_HASH_LEN], stored_key[AUTH_MAX_HASH_LEN],
        server_key[AUTH_MAX_HASH_LEN], proof[AUTH_MAX_HASH_LEN], signature[AUTH_MAX_HASH_LEN],
        rfc_proof[AUTH_MAX_HASH_LEN + 4], rfc_signature[AUTH_MAX_HASH_LEN + 4];
    char b64[AUTH_BASE64_SIZE(AUTH_MAX_HASH_LEN)];
    size_t hlen = auth_hash_len(ex->hash);
    size_t am_len = strlen(ex->auth_message);
    int salt_len, proof_len, sig_len;

    salt_len = auth_base64_decode(ex->salt_b64, strlen(ex->salt_b64), salt, sizeof(salt));
    CHECK(salt_len == ex->salt_len);
    proof_len =
        auth_base64_decode(ex->proof_b64, strlen(ex->proof_b64), rfc_proof, sizeof(rfc_proof));
    sig_len = auth_base64_decode(ex->server_signature_b64, strlen(ex->server_signature_b64),
                                 rfc_signature, sizeof(rfc_signature));
    CHECK(proof_len == (int)hlen);
    CHECK(sig_len == (int)hlen);

    CHECK(auth_scram_keys(ex->hash, "pencil", 6, salt, (size_t)salt_len, 4096, client_key,
                          stored_key, server_key) == 0);

    /* The client's proof computed from our keys is the RFC's, byte for byte. */
    CHECK(auth_scram_client_proof(ex->hash, client_key, ex->auth_message, am_len, proof) == 0);
    CHECK(auth_base64_encode(proof, hlen, b64, sizeof(b64)) > 0);
    CHECK_STR(b64, ex->proof_b64);
    /* The server side: the RFC's proof verifies against our StoredKey, and
     * our ServerSignature is the RFC's. */
    CHECK(auth_scram_verify_proof(ex->hash, stored_key, ex->auth_message, am_len, rfc_proof,
                                  (size_t)proof_len));
    CHECK(auth_scram_server_signature(ex->hash, server_key, ex->auth_message, am_len, signature) ==
          0);
    CHECK(auth_equal(signature, rfc_signature, hlen));
    CHECK(auth_base64_encode(signature, hlen, b64, sizeof(b64)) > 0);
    CHECK_STR(b64, ex->server_signature_b64);

    /* A proof with one bit flipped, a wrong password, or another auth
     * message does not verify. */
    rfc_proof[3] ^= 0x01;
    CHECK(!auth_scram_verify_proof(ex->hash, stored_key, ex->auth_message, am_len, rfc_proof,
                                   (size_t)proof_len));
    rfc_proof[3] ^= 0x01;
    CHECK(!auth_scram_verify_proof(ex->hash, stored_key, ex->auth_message, am_len - 1, rfc_proof,
                                   (size_t)proof_len));
    CHECK(!auth_scram_verify_proof(ex->hash, stored_key, ex->auth_message, am_len, rfc_proof,
                                   (size_t)proof_len - 1));
    uint8_t other_stored[AUTH_MAX_HASH_LEN], other_server[AUTH_MAX_HASH_LEN];
    CHECK(auth_scram_keys(ex->hash, "pencil2", 7, salt, (size_t)salt_len, 4096, NULL, other_stored,
                          other_server) == 0);
    CHECK(!auth_equal(other_stored, stored_key, hlen));
    CHECK(!auth_scram_verify_proof(ex->hash, other_stored, ex->auth_message, am_len, rfc_proof,
                                   (size_t)proof_len));

    /* Iteration counts out of bounds are refused. */
    CHECK(auth_scram_keys(ex->hash, "pencil", 6, salt, (size_t)salt_len, 0, NULL, stored_key,
                          server_key) < 0);
    CHECK(auth_scram_keys(ex->hash, "pencil", 6, salt, (size_t)salt_len, AUTH_MAX_ITERATIONS + 1,
                          NULL, stored_key, server_key) < 0);
}

static void test_ha1(void)
{
    char md5[AUTH_HA1_MD5_HEX + 1], sha256[AUTH_HA1_SHA256_HEX + 1];

    /* Both obtained with coreutils, independently of this code:
     *   printf 'alice:example.org:secret' | md5sum
     *   printf 'alice:example.org:secret' | sha256sum */
    CHECK(auth_ha1(AUTH_HA1_MD5, "alice", "example.org", "secret", 6, md5, sizeof(md5)) == 0);
    CHECK_STR(md5, "543e1aec5d3614f03141652d6ada51b2");
    CHECK(auth_ha1(AUTH_HA1_SHA256, "alice", "example.org", "secret", 6, sha256, sizeof(sha256)) ==
          0);
    CHECK_STR(sha256, "d1659fff7a501be15962adc35514ca6a5868905695f2dd1093741f931e000a1f");
    /* Output buffers that are too small are refused. */
    CHECK(auth_ha1(AUTH_HA1_MD5, "alice", "example.org", "secret", 6, md5, AUTH_HA1_MD5_HEX) < 0);
    CHECK(auth_ha1(AUTH_HA1_SHA256, "alice", "example.org", "secret", 6, sha256, sizeof(md5)) < 0);
}

static void test_secrets(void)
{
    static const uint8_t salt[16] = {0x41, 0x25, 0xc2, 0x47, 0xe4, 0x3a, 0xb1, 0xe9,
                                     0x3c, 0x6d, 0xff, 0x76, 0x00, 0x01, 0x02, 0x03};
    struct auth_secrets a, b, c;
    uint8_t stored[AUTH_SHA256_LEN], server[AUTH_SHA256_LEN];
    const char *error = NULL;

    /* Derivation with a given salt matches the separate building blocks. */
    CHECK(auth_secrets_derive_salt(&a, "alice", "example.org", "secret", 6, salt, sizeof(salt),
                                   4096, &error) == 0);
    CHECK(a.salt_len == 16 && memcmp(a.salt, salt, 16) == 0 && a.iterations == 4096);
    CHECK(auth_scram_keys(AUTH_HASH_SHA1, "secret", 6, salt, 16, 4096, NULL, stored, server) == 0);
    CHECK(memcmp(a.sha1_stored_key, stored, AUTH_SHA1_LEN) == 0);
    CHECK(memcmp(a.sha1_server_key, server, AUTH_SHA1_LEN) == 0);
    CHECK(auth_scram_keys(AUTH_HASH_SHA256, "secret", 6, salt, 16, 4096, NULL, stored, server) ==
          0);
    CHECK(memcmp(a.sha256_stored_key, stored, AUTH_SHA256_LEN) == 0);
    CHECK(memcmp(a.sha256_server_key, server, AUTH_SHA256_LEN) == 0);
    CHECK_STR(a.ha1_md5, "543e1aec5d3614f03141652d6ada51b2");
    CHECK_STR(a.ha1_sha256, "d1659fff7a501be15962adc35514ca6a5868905695f2dd1093741f931e000a1f");

    /* Random salts: two derivations of one password differ everywhere but
     * in the HA1 values, which have no salt. */
    CHECK(auth_secrets_derive(&b, "alice", "example.org", "secret", 6, AUTH_DEFAULT_ITERATIONS,
                              &error) == 0);
    CHECK(auth_secrets_derive(&c, "alice", "example.org", "secret", 6, AUTH_DEFAULT_ITERATIONS,
                              &error) == 0);
    CHECK(b.salt_len == AUTH_SALT_LEN && c.salt_len == AUTH_SALT_LEN);
    CHECK(memcmp(b.salt, c.salt, AUTH_SALT_LEN) != 0);
    CHECK(memcmp(b.sha256_stored_key, c.sha256_stored_key, AUTH_SHA256_LEN) != 0);
    CHECK(memcmp(b.sha1_server_key, c.sha1_server_key, AUTH_SHA1_LEN) != 0);
    CHECK_STR(b.ha1_md5, c.ha1_md5);

    /* Too few iterations or a bad salt length are refused, and *s wiped. */
    CHECK(auth_secrets_derive(&b, "alice", "example.org", "secret", 6, 100, &error) < 0);
    CHECK(error != NULL && b.salt_len == 0);
    CHECK(auth_secrets_derive_salt(&b, "alice", "example.org", "secret", 6, salt, 0, 4096, &error) <
          0);
    CHECK(auth_secrets_derive_salt(&b, "alice", "example.org", "secret", 6, salt, AUTH_MAX_SALT + 1,
                                   4096, &error) < 0);
}

static void test_encoding(void)
{
    uint8_t out[16];
    char text[AUTH_BASE64_SIZE(5)], hex[11];

    CHECK(auth_base64_encode("hello", 5, text, sizeof(text)) == 8);
    CHECK_STR(text, "aGVsbG8=");
    CHECK(auth_base64_encode("hello", 5, text, 8) < 0);
    CHECK(auth_base64_encode("", 0, text, sizeof(text)) == 0);
    CHECK_STR(text, "");

    CHECK(auth_base64_decode("aGVsbG8=", 8, out, sizeof(out)) == 5);
    CHECK(memcmp(out, "hello", 5) == 0);
    CHECK(auth_base64_decode("aGVsbA==", 8, out, sizeof(out)) == 4);
    CHECK(auth_base64_decode("aGVs", 4, out, sizeof(out)) == 3);
    CHECK(auth_base64_decode("", 0, out, sizeof(out)) == 0);
    /* Malformed: bad length, bad characters, padding inside, stray bits. */
    CHECK(auth_base64_decode("aGVsbG8", 7, out, sizeof(out)) < 0);
    CHECK(auth_base64_decode("aGV\nbG8=", 8, out, sizeof(out)) < 0);
    CHECK(auth_base64_decode("aG=sbG8=", 8, out, sizeof(out)) < 0);
    CHECK(auth_base64_decode("aGVsbG9=", 8, out, sizeof(out)) < 0);
    CHECK(auth_base64_decode("a===", 4, out, sizeof(out)) < 0);
    CHECK(auth_base64_decode("aGVsbG8=", 8, out, 4) < 0);

    CHECK_STR(auth_hex_encode("\x00\x7f\xff\xa5\x10", 5, hex), "007fffa510");

    CHECK(auth_equal("abcdef", "abcdef", 6));
    CHECK(!auth_equal("abcdef", "abcdeg", 6));
    CHECK(auth_equal("abcdef", "abcdeg", 5));
}

int main(void)
{
    test_scram_example(&rfc5802);
    test_scram_example(&rfc7677);
    test_ha1();
    test_secrets();
    test_encoding();
    return check_result("test_auth");
}
