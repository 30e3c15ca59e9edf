/*
 * Server TLS contexts (tls.h). Workers build one at start when any of their
 * listeners speaks TLS; connections then take SSL objects from it.
 */
#include "shared/tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

/* TLS 1.2 suites, strongest first (Mozilla "intermediate"): forward secrecy
 * and AEAD only. TLS 1.3 keeps OpenSSL's own list, which is already that. */
#define TLS_CIPHERS_12                                                                             \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                   \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"

/* Names the server's session cache, so that a session resumed on another
 * context (after a restart, tickets) is recognized as ours. */
#define TLS_SESSION_CONTEXT "switchboard"

static char tls_error_buf[512];

const char *tls_error_string(const char *fallback)
{
    unsigned long e = ERR_get_error();

    if (e == 0) {
        snprintf(tls_error_buf, sizeof(tls_error_buf), "%s", fallback);
    } else {
        ERR_error_string_n(e, tls_error_buf, sizeof(tls_error_buf));
    }
    ERR_clear_error();
    return tls_error_buf;
}

static SSL_CTX *fail(SSL_CTX *ctx, const char *what, const char *path, const char **error_r)
{
    static char msg[1024];
    const char *reason = tls_error_string("unknown error");

    snprintf(msg, sizeof(msg), "%s%s%s: %s", what, path ? " " : "", path ? path : "", reason);
    *error_r = msg;
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tls_server_ctx(const char *cert_path, const char *key_path, const char **error_r)
{
    SSL_CTX *ctx;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return fail(NULL, "TLS context", NULL, error_r);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        return fail(ctx, "TLS minimum version", NULL, error_r);
    /* Renegotiation is a denial-of-service lever and nothing we serve needs
     * it; compression leaks secrets (CRIME). Unexpected EOF is reported as a
     * clean close: every protocol we carry frames its own messages, so a
     * truncated record cannot pass for a complete one. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Partial writes let a connection's output buffer drain as far as the
     * socket allows; the buffer may move between retries because it is
     * compacted; idle connections give their TLS buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) != 1)
        return fail(ctx, "TLS cipher list", NULL, error_r);
    SSL_CTX_set_dh_auto(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (SSL_CTX_set_session_id_context(ctx, (const unsigned char *)TLS_SESSION_CONTEXT,
                                       sizeof(TLS_SESSION_CONTEXT) - 1) != 1)
        return fail(ctx, "TLS session context", NULL, error_r);

    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1)
        return fail(ctx, "certificate", cert_path, error_r);
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1)
        return fail(ctx, "private key", key_path, error_r);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail(ctx, "private key", key_path, error_r);
    return ctx;
}

void tls_ctx_free(SSL_CTX **ctx)
{
    SSL_CTX_free(*ctx);
    *ctx = NULL;
}
