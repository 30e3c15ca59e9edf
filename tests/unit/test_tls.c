/*
 * Unit tests of the server TLS policy (shared/tls.c): a context builds from
 * a certificate and its key, refuses a missing file and a key that does not
 * match, carries the policy's options, and in a handshake over memory BIOs
 * accepts TLS 1.2 and 1.3 clients and refuses a TLS 1.1 one.
 */
#include "shared/tls.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

struct files {
    char cert[64], key[64], other_key[64];
};

static EVP_PKEY *write_key(const char *path)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    FILE *f = fopen(path, "w");

    if (key == NULL || f == NULL || PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1)
        abort();
    fclose(f);
    return key;
}

static void make_files(struct files *fs)
{
    X509 *x = X509_new();
    X509_NAME *name;
    EVP_PKEY *key, *other;
    FILE *f;
    int fd;

    snprintf(fs->cert, sizeof(fs->cert), "/tmp/sb-test-tls-XXXXXX");
    snprintf(fs->key, sizeof(fs->key), "/tmp/sb-test-tls-XXXXXX");
    snprintf(fs->other_key, sizeof(fs->other_key), "/tmp/sb-test-tls-XXXXXX");
    if ((fd = mkstemp(fs->cert)) < 0 || close(fd) < 0 || (fd = mkstemp(fs->key)) < 0 ||
        close(fd) < 0 || (fd = mkstemp(fs->other_key)) < 0 || close(fd) < 0)
        abort();
    key = write_key(fs->key);
    other = write_key(fs->other_key);

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    if (X509_sign(x, key, EVP_sha256()) == 0)
        abort();
    f = fopen(fs->cert, "w");
    if (f == NULL || PEM_write_X509(f, x) != 1)
        abort();
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

/* Runs a handshake between ctx and a client limited to [min, max]
 * versions over a memory BIO pair; returns the negotiated version or 0. */
static int handshake(SSL_CTX *server_ctx, int min, int max)
{
    SSL_CTX *client_ctx = SSL_CTX_new(TLS_client_method());
    SSL *client, *server;
    BIO *cb, *sb;
    int version = 0, done_c = 0, done_s = 0;

    /* Let the client offer old versions at all (OpenSSL 3's default
     * security level would refuse TLS 1.1 on the client side first, and
     * the test would prove nothing about the server). */
    SSL_CTX_set_security_level(client_ctx, 0);
    SSL_CTX_set_cipher_list(client_ctx, "ALL:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(client_ctx, min);
    SSL_CTX_set_max_proto_version(client_ctx, max);
    client = SSL_new(client_ctx);
    server = SSL_new(server_ctx);
    BIO_new_bio_pair(&cb, 0, &sb, 0);
    SSL_set_bio(client, cb, cb);
    SSL_set_bio(server, sb, sb);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);
    for (int i = 0; i < 20 && !(done_c && done_s); i++) {
        int rc = SSL_do_handshake(client), rs;

        if (rc == 1)
            done_c = 1;
        else if (SSL_get_error(client, rc) != SSL_ERROR_WANT_READ)
            break;
        rs = SSL_do_handshake(server);
        if (rs == 1)
            done_s = 1;
        else if (SSL_get_error(server, rs) != SSL_ERROR_WANT_READ)
            break;
    }
    if (done_c && done_s)
        version = SSL_version(server);
    ERR_clear_error();
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(client_ctx);
    return version;
}

int main(void)
{
    struct files fs;
    const char *error = NULL;
    SSL_CTX *ctx;
    uint64_t opts;

    make_files(&fs);

    ctx = tls_server_ctx(fs.cert, fs.key, &error);
    CHECK(ctx != NULL);
    if (ctx != NULL) {
        CHECK(SSL_CTX_get_min_proto_version(ctx) == TLS1_2_VERSION);
        opts = SSL_CTX_get_options(ctx);
        CHECK((opts & SSL_OP_NO_COMPRESSION) != 0);
        CHECK((opts & SSL_OP_CIPHER_SERVER_PREFERENCE) != 0);
        CHECK((opts & SSL_OP_NO_RENEGOTIATION) != 0);
        CHECK((opts & SSL_OP_NO_TICKET) == 0);
        CHECK(handshake(ctx, TLS1_3_VERSION, TLS1_3_VERSION) == TLS1_3_VERSION);
        CHECK(handshake(ctx, TLS1_2_VERSION, TLS1_2_VERSION) == TLS1_2_VERSION);
        CHECK(handshake(ctx, TLS1_VERSION, TLS1_1_VERSION) == 0);
        /* The same client opened up to 1.2 succeeds: the refusal above was the server's. */
        CHECK(handshake(ctx, TLS1_VERSION, TLS1_2_VERSION) == TLS1_2_VERSION);
    }
    tls_ctx_free(&ctx);
    CHECK(ctx == NULL);
    tls_ctx_free(&ctx);

    error = NULL;
    CHECK(tls_server_ctx("/nonexistent/cert.pem", fs.key, &error) == NULL);
    CHECK(error != NULL && strstr(error, "certificate /nonexistent/cert.pem") != NULL);

    error = NULL;
    CHECK(tls_server_ctx(fs.cert, "/nonexistent/key.pem", &error) == NULL);
    CHECK(error != NULL && strstr(error, "private key /nonexistent/key.pem") != NULL);

    error = NULL;
    CHECK(tls_server_ctx(fs.cert, fs.other_key, &error) == NULL);
    CHECK(error != NULL && strstr(error, "private key") != NULL);

    /* A key is not a certificate. */
    error = NULL;
    CHECK(tls_server_ctx(fs.key, fs.key, &error) == NULL);
    CHECK(error != NULL && strstr(error, "certificate") != NULL);

    /* The error queue is left empty for the next caller. */
    CHECK(ERR_peek_error() == 0);
    CHECK_STR(tls_error_string("nothing"), "nothing");

    unlink(fs.cert);
    unlink(fs.key);
    unlink(fs.other_key);
    return check_result("test_tls");
}
