/*
 * The store's database layer: one small, neutral interface (struct
 * store_backend_ops) with two implementations, SQLite (store_sqlite.c, the
 * embedded default) and MySQL/MariaDB through MariaDB Connector/C
 * (store_mysql.c), and the request layer above it (store_ops.c) that turns
 * IPC_REQUESTs into batched transactions. switchboard-store (store_main.c)
 * is the only process that links any of this; tests/unit/test_store.c drives
 * the same interface against both backends.
 *
 * Keys are normalized before they reach a backend: usernames are validated
 * and case-folded (store_username_normalize), domains are one of the
 * configured hosts. Backends compare them bytewise (SQLite's BINARY
 * collation, VARBINARY columns in MySQL), so both sort and match alike.
 */
#ifndef SB_STORE_DB_H
#define SB_STORE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/auth.h"
#include "shared/config.h"
#include "shared/ipc.h"

/* RFC 7622 §3.3 and §3.2: at most 1023 bytes for a localpart and a domainpart. */
#define STORE_MAX_USERNAME 1023
#define STORE_MAX_DOMAIN 1023
/* The schema this program writes; see the migration arrays of each backend. */
#define STORE_SCHEMA_VERSION 1
/* SQLite: how long a statement waits for another connection's lock. */
#define STORE_SQLITE_BUSY_TIMEOUT_MS 5000
/* MySQL: connect, read and write timeouts, so that a hung server turns into
 * an error rather than a stuck store. */
#define STORE_MYSQL_CONNECT_TIMEOUT_S 5
#define STORE_MYSQL_IO_TIMEOUT_S 30

/* The outcome of one backend call. Only STORE_FAILED affects the
 * transaction: the caller must roll it back. The others are answers about
 * one request and leave the transaction usable. */
enum store_status {
    STORE_FAILED = -1, /* database error (db->error says which) */
    STORE_OK = 0,
    STORE_NOT_FOUND = 1, /* no such account */
    STORE_CONFLICT = 2,  /* the account exists already */
    STORE_INVALID = 3,   /* the row exists but its values are malformed (corrupt data) */
};

/* One account row besides its key. */
struct store_account {
    struct auth_secrets secrets;
    int64_t created; /* unix time */
};

/* Called for each username of account_list, in order; return false to stop. */
typedef bool store_list_cb(void *ctx, const char *username, size_t len);

struct store_db;

/*
 * A backend. Every function that can fail returns -1 (or STORE_FAILED) and
 * points *error_r at a message in db->error. The account_* calls, reads
 * included, are made between begin and commit/rollback: MySQL runs with
 * autocommit off, so a read outside would open a transaction that keeps
 * its snapshot until the next one. When the connection to a
 * database server is lost (MySQL "server has gone away" and the like) the
 * backend also sets db->lost, and the caller closes, opens and retries.
 */
struct store_backend_ops {
    const char *name; /* "sqlite", "mysql" */

    /* Connects using db->config->store and sets db->impl. A failure to
     * reach a server sets db->lost (worth retrying later); other failures
     * (bad credentials, bad path) are configuration errors. */
    int (*open)(struct store_db *db, const char **error_r);
    /* Disconnects and frees db->impl (set to NULL); safe when closed. */
    void (*close)(struct store_db *db);

    int (*begin)(struct store_db *db, const char **error_r);
    int (*commit)(struct store_db *db, const char **error_r);
    int (*rollback)(struct store_db *db, const char **error_r);

    /* Applies the missing schema migrations, each in its own transaction,
     * and sets *version_r to the schema version now in place. Refuses a
     * database whose schema is newer than this program's. Must not be
     * called inside a transaction. */
    int (*migrate)(struct store_db *db, int *version_r, const char **error_r);

    /* STORE_OK or STORE_CONFLICT. */
    enum store_status (*account_insert)(struct store_db *db, const char *domain,
                                        const char *username, const struct store_account *account,
                                        const char **error_r);
    /* STORE_OK or STORE_NOT_FOUND. */
    enum store_status (*account_delete)(struct store_db *db, const char *domain,
                                        const char *username, const char **error_r);
    /* Replaces the password-derived values; STORE_OK or STORE_NOT_FOUND. */
    enum store_status (*account_update_secrets)(struct store_db *db, const char *domain,
                                                const char *username,
                                                const struct auth_secrets *secrets,
                                                const char **error_r);
    /* STORE_OK, STORE_NOT_FOUND or STORE_INVALID. */
    enum store_status (*account_get)(struct store_db *db, const char *domain, const char *username,
                                     struct store_account *account_r, const char **error_r);
    /* The usernames of a domain in bytewise order. */
    enum store_status (*account_list)(struct store_db *db, const char *domain, store_list_cb *cb,
                                      void *ctx, const char **error_r);
    /* Accounts over all domains. */
    enum store_status (*account_count)(struct store_db *db, uint64_t *count_r,
                                       const char **error_r);
};

extern const struct store_backend_ops store_sqlite_ops;
extern const struct store_backend_ops store_mysql_ops;

struct store_db {
    const struct store_backend_ops *ops;
    const struct config *config; /* the store section; must outlive the db */
    void *impl;                  /* the backend's connection; NULL while closed */
    bool lost;                   /* the server connection is gone: reopen */
    char error[512];             /* the last error message */
};

/* A database handle for config->store.backend, not yet open. */
struct store_db *store_db_new(const struct config *config);
/* Closes (when open) and frees; NULLs *db. */
void store_db_free(struct store_db **db);
/* (Re)connects: closes when open, opens, and runs the migrations; sets
 * *version_r (may be NULL) to the schema version. On failure the db is
 * left closed, db->lost tells a transient failure from a configuration
 * error, and *error_r says why. */
int store_db_connect(struct store_db *db, int *version_r, const char **error_r);

/* One migration step: the statements that take the schema from version - 1
 * to version. Each backend keeps an ordered array of them in its own SQL
 * dialect. */
struct store_migration {
    int version;
    const char *const *statements; /* NULL-terminated */
};

/* Raw column values of an accounts row, for store_account_from_row. */
struct store_column {
    const void *ptr;
    size_t len;
};
enum store_account_column {
    STORE_COL_SALT,
    STORE_COL_SHA1_STORED,
    STORE_COL_SHA1_SERVER,
    STORE_COL_SHA256_STORED,
    STORE_COL_SHA256_SERVER,
    STORE_COL_HA1_MD5,
    STORE_COL_HA1_SHA256,
    STORE_COL_COUNT
};
/* Fills *account_r from the values a backend read, checking every size
 * and bound: STORE_OK, or STORE_INVALID for a malformed row (*account_r is
 * then zeroed). */
enum store_status store_account_from_row(struct store_account *account_r,
                                         const struct store_column cols[STORE_COL_COUNT],
                                         int64_t iterations, int64_t created);

/*
 * Username rules (RFC 7622 §3.3.1, the subset without PRECIS): valid UTF-8,
 * 1 to STORE_MAX_USERNAME bytes, no control characters, no whitespace, none
 * of " & ' / : < > @. ASCII letters are case-folded to lowercase. Full PRECIS
 * UsernameCaseMapped (Unicode case mapping and NFC of non-ASCII) is not done
 * yet: non-ASCII characters are kept as sent, so "Ä" and "ä" are two names.
 * Writes the normalized name, NUL-terminated, into out (STORE_MAX_USERNAME
 * + 1 bytes) and returns its length; -1 with *error_r when refused.
 */
int store_username_normalize(const void *name, size_t len, char *out, const char **error_r);
/* The configured host equal to name (ASCII case-insensitively), or NULL. */
const char *store_domain_lookup(const struct config *config, const void *name, size_t len);

/*
 * The request layer. IPC_REQUESTs are queued (each copied, so the frame
 * they came in may go away) and then run together in ONE transaction; their
 * IPC_RESPONSEs are handed out only after COMMIT succeeded. Ops, arguments
 * and answers are listed at the top of store_ops.c.
 */
struct store_batch;
/* Receives each response: an IPC_RESPONSE message (WORKER, REQ_ID, CODE,
 * REASON, ARG*) whose body the caller forwards as it is. */
typedef void store_response_cb(void *ctx, const struct ipc_msg *response);

/* A batch of at most max requests (at least 1) over db. */
struct store_batch *store_batch_new(struct store_db *db, size_t max);
void store_batch_free(struct store_batch **batch);
/* Iterations for newly derived secrets (default AUTH_DEFAULT_ITERATIONS). */
void store_batch_set_iterations(struct store_batch *batch, unsigned iterations);
/* Queues one IPC_REQUEST. Validation happens here and password-derived
 * secrets are computed here, so the clear password is never kept. Returns
 * false (and logs) when the request cannot be queued: it has no WORKER to
 * answer, or the batch is full (run it first). */
bool store_batch_add(struct store_batch *batch, const struct ipc_msg *request);
size_t store_batch_pending(const struct store_batch *batch);
bool store_batch_full(const struct store_batch *batch);
/* Runs every queued request, calls respond() once per request in queue
 * order, and empties the batch. */
void store_batch_run(struct store_batch *batch, store_response_cb *respond, void *ctx);

#endif
