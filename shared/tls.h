/*
 * TLS contexts for Switchboard's listeners (OpenSSL 3). One server context
 * per worker, built at start from the configured certificate and key, and
 * shared by every direct-TLS and STARTTLS connection of that worker. The
 * settings are the server's policy in one place: TLS 1.2 or newer, the
 * server's cipher preference, no compression, no renegotiation, session
 * resumption by tickets and a server-side cache.
 */
#ifndef SB_TLS_H
#define SB_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* Builds a server context from a PEM certificate chain (leaf first) and its
 * PEM private key. Returns NULL with *error_r ("certificate PATH: reason",
 * a static buffer valid until the next call) when a file cannot be read or
 * the key does not match the certificate. */
SSL_CTX *tls_server_ctx(const char *cert_path, const char *key_path, const char **error_r);
/* Frees the context and NULLs the pointer; NULL is fine. */
void tls_ctx_free(SSL_CTX **ctx);

/* Describes the first error in this thread's OpenSSL error queue (or
 * fallback when it is empty) and empties the queue, so that a stale error
 * never leaks into the next connection's diagnosis. Returns a static
 * buffer, valid until the next call. */
const char *tls_error_string(const char *fallback);

#endif
