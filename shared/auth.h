/*
 * Password-derived secrets. A password is never stored: when it is set, the
 * store derives from it the values each protocol needs to check a login
 * later, and keeps only those:
 *
 *   - SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802 §3, RFC 7677): a random salt,
 *     an iteration count, StoredKey and ServerKey for each hash. XMPP (SASL
 *     SCRAM) verifies a ClientProof against StoredKey and signs with
 *     ServerKey; SASL PLAIN is checked by deriving the keys again from the
 *     salt and comparing StoredKey.
 *   - SIP digest HA1 = H(username ":" realm ":" password) in lowercase hex,
 *     with MD5 (RFC 2617) and SHA-256 (RFC 7616, RFC 8760); the realm is the
 *     account's domain.
 *
 * The password is used as given: SASLprep / PRECIS OpaqueString
 * normalization (RFC 8265) of non-ASCII passwords is not done, so a client
 * must send the same bytes that were registered.
 *
 * Also a constant-time comparison and the base64/hex helpers the SASL and
 * digest code needs. Everything here is OpenSSL underneath.
 */
#ifndef SB_AUTH_H
#define SB_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_SALT_LEN 16
/* Longest salt accepted from storage (a later version may use longer ones). */
#define AUTH_MAX_SALT 64
#define AUTH_DEFAULT_ITERATIONS 4096
/* Bounds on the iteration count read back from storage or a peer: below
 * the RFC 7677 minimum is refused, and a huge count would be a CPU trap. */
#define AUTH_MIN_ITERATIONS 4096
#define AUTH_MAX_ITERATIONS 1000000
#define AUTH_SHA1_LEN 20
#define AUTH_SHA256_LEN 32
#define AUTH_MAX_HASH_LEN 32
#define AUTH_HA1_MD5_HEX 32
#define AUTH_HA1_SHA256_HEX 64
/* Longest password accepted (bytes); the same bound as an address part. */
#define AUTH_MAX_PASSWORD 1023

enum auth_hash { AUTH_HASH_SHA1, AUTH_HASH_SHA256 };

/* Everything stored for one password. */
struct auth_secrets {
    uint8_t salt[AUTH_MAX_SALT];
    size_t salt_len;
    unsigned iterations;
    uint8_t sha1_stored_key[AUTH_SHA1_LEN];
    uint8_t sha1_server_key[AUTH_SHA1_LEN];
    uint8_t sha256_stored_key[AUTH_SHA256_LEN];
    uint8_t sha256_server_key[AUTH_SHA256_LEN];
    char ha1_md5[AUTH_HA1_MD5_HEX + 1];       /* lowercase hex, NUL-terminated */
    char ha1_sha256[AUTH_HA1_SHA256_HEX + 1]; /* lowercase hex, NUL-terminated */
};

/* Output length of a hash: 20 or 32. */
size_t auth_hash_len(enum auth_hash hash);

/* out = H(data); out has auth_hash_len(hash) bytes. -1 on an OpenSSL failure. */
int auth_digest(enum auth_hash hash, const void *data, size_t len, uint8_t *out);
/* out = HMAC(key, data). -1 on an OpenSSL failure. */
int auth_hmac(enum auth_hash hash, const void *key, size_t key_len, const void *data, size_t len,
              uint8_t *out);

/*
 * The SCRAM key schedule of RFC 5802 §3 for one password:
 *   SaltedPassword = Hi(password, salt, iterations)   (PBKDF2 with HMAC-H)
 *   ClientKey      = HMAC(SaltedPassword, "Client Key")
 *   StoredKey      = H(ClientKey)
 *   ServerKey      = HMAC(SaltedPassword, "Server Key")
 * Each output has auth_hash_len(hash) bytes; client_key_r may be NULL.
 * -1 on an OpenSSL failure, or an iteration count of 0 or above
 * AUTH_MAX_ITERATIONS.
 */
int auth_scram_keys(enum auth_hash hash, const void *password, size_t password_len,
                    const uint8_t *salt, size_t salt_len, unsigned iterations,
                    uint8_t *client_key_r, uint8_t *stored_key_r, uint8_t *server_key_r);

/* ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage) (the client's
 * side; tests and load generators use it). -1 on an OpenSSL failure. */
int auth_scram_client_proof(enum auth_hash hash, const uint8_t *client_key,
                            const void *auth_message, size_t auth_message_len, uint8_t *proof_r);
/* The server's check of a ClientProof: recovers ClientKey = proof XOR
 * HMAC(StoredKey, AuthMessage) and compares H(ClientKey) with StoredKey in
 * constant time. proof_len must be auth_hash_len(hash). */
bool auth_scram_verify_proof(enum auth_hash hash, const uint8_t *stored_key,
                             const void *auth_message, size_t auth_message_len,
                             const uint8_t *proof, size_t proof_len);
/* ServerSignature = HMAC(ServerKey, AuthMessage). -1 on an OpenSSL failure. */
int auth_scram_server_signature(enum auth_hash hash, const uint8_t *server_key,
                                const void *auth_message, size_t auth_message_len,
                                uint8_t *signature_r);

/* The digest algorithms of SIP HA1 values. */
enum auth_ha1 { AUTH_HA1_MD5, AUTH_HA1_SHA256 };
/* HA1 = H(username ":" realm ":" password) as lowercase hex into out, which
 * needs AUTH_HA1_MD5_HEX + 1 or AUTH_HA1_SHA256_HEX + 1 bytes. -1 on an
 * OpenSSL failure or when out is too small. */
int auth_ha1(enum auth_ha1 alg, const char *username, const char *realm, const void *password,
             size_t password_len, char *out, size_t out_size);

/*
 * Derives every secret for a password with a fresh random salt
 * (AUTH_SALT_LEN bytes from RAND_bytes). username must already be
 * normalized (the HA1 values cover it) and realm is the account's domain.
 * -1 with *error_r on failure (no randomness, OpenSSL failure, bad
 * iteration count). *s is wiped on failure.
 */
int auth_secrets_derive(struct auth_secrets *s, const char *username, const char *realm,
                        const void *password, size_t password_len, unsigned iterations,
                        const char **error_r);
/* The same with a given salt (tests, and checking a password against a
 * stored salt). */
int auth_secrets_derive_salt(struct auth_secrets *s, const char *username, const char *realm,
                             const void *password, size_t password_len, const uint8_t *salt,
                             size_t salt_len, unsigned iterations, const char **error_r);

/* Constant-time equality of two buffers of the same length. */
bool auth_equal(const void *a, const void *b, size_t len);
/* Overwrites memory in a way the compiler does not elide. */
void auth_wipe(void *p, size_t len);

/* Bytes needed to base64-encode len bytes, including the NUL. */
#define AUTH_BASE64_SIZE(len) ((((len) + 2) / 3) * 4 + 1)
/* Standard base64 with padding (RFC 4648 §4), NUL-terminated. Returns the
 * length written (without the NUL), or -1 when out is too small. */
int auth_base64_encode(const void *data, size_t len, char *out, size_t out_size);
/* Decodes padded standard base64 (no whitespace). Returns the decoded
 * length, or -1 on malformed input or when out is too small. */
int auth_base64_decode(const char *text, size_t len, uint8_t *out, size_t out_size);
/* Lowercase hex, NUL-terminated; out needs 2 * len + 1 bytes. Returns out. */
char *auth_hex_encode(const void *data, size_t len, char *out);

#endif
