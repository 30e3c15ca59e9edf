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
 *
 * Schema v2 adds what the XMPP worker keeps per account: roster (with
 * versions and tombstones), offline queue, message archive, private XML
 * and vCards (kv), blocklist. JIDs are stored as the worker gives them.
 * The ops the workers send, and their answers, are the reference comment
 * at the top of store_ops.c; the per-user caps are the STORE_MAX_* below.
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
/* The longest JID taken as an argument (contact, with, blocked JID). */
#define STORE_MAX_ADDRESS IPC_MAX_ADDRESS
/* The schema this program writes; see the migration arrays of each backend. */
#define STORE_SCHEMA_VERSION 2
/* SQLite: how long a statement waits for another connection's lock. */
#define STORE_SQLITE_BUSY_TIMEOUT_MS 5000
/* MySQL: connect, read and write timeouts, so that a hung server turns into
 * an error rather than a stuck store. */
#define STORE_MYSQL_CONNECT_TIMEOUT_S 5
#define STORE_MYSQL_IO_TIMEOUT_S 30

/*
 * Per-user caps of the data kept for an account (schema v2). The request
 * layer refuses what goes past them, so that no user can grow the database
 * or one response without bound. See store_ops.c for the answers.
 */
/* Roster items (live ones; tombstones are capped apart). */
#define STORE_MAX_ROSTER_ITEMS 10000
/* Tombstones kept for versioned fetches; past this the oldest is dropped
 * and fetches from before it get the full roster. */
#define STORE_MAX_ROSTER_TOMBSTONES 1000
/* A roster item's name, and each group name (bytes). */
#define STORE_MAX_ROSTER_NAME 1023
#define STORE_MAX_ROSTER_GROUP 1023
/* Groups of one roster item. */
#define STORE_MAX_ROSTER_GROUPS 100
/* Messages waiting in one user's offline queue. */
#define STORE_MAX_OFFLINE 1000
/* Messages handed out by one offline.fetch. */
#define STORE_OFFLINE_FETCH_MAX 500
/* An offline or archived stanza (bytes, opaque to the store). */
#define STORE_MAX_STANZA (256u << 10)
/* archive.query page size: largest, and the default when none is given. */
#define STORE_ARCHIVE_MAX_PAGE 250
#define STORE_ARCHIVE_DEFAULT_PAGE 50
/* A private-storage key ("element-name namespace") and a kv value. */
#define STORE_MAX_KV_KEY 2047
#define STORE_MAX_KV_VALUE (64u << 10)
/* Blocked JIDs of one user. */
#define STORE_MAX_BLOCKLIST 10000
/* The arguments a batch may hold before it counts as full (see
 * store_batch_full); one request more can take it up to IPC_MAX_MESSAGE
 * past this. */
#define STORE_BATCH_MAX_BYTES (8u << 20)

/* The outcome of one backend call. Only STORE_FAILED affects the
 * transaction: the caller must roll it back. The others are answers about
 * one request and leave the transaction usable. */
enum store_status {
    STORE_FAILED = -1, /* database error (db->error says which) */
    STORE_OK = 0,
    STORE_NOT_FOUND = 1, /* no such account, item, value... */
    STORE_CONFLICT = 2,  /* the account (or blocked JID) exists already */
    STORE_INVALID = 3,   /* the row exists but its values are malformed (corrupt data) */
};

/* One account row besides its key. */
struct store_account {
    struct auth_secrets secrets;
    int64_t created; /* unix time */
};

/* Called for each username of account_list (each JID of block_list), in
 * order; return false to stop. */
typedef bool store_list_cb(void *ctx, const char *username, size_t len);

/* Raw bytes: a value to write, or a column value a backend read (valid
 * only during the call or callback that passed it). */
struct store_column {
    const void *ptr;
    size_t len;
};

/* One roster row (RFC 6121 §2.1.2). The text fields are passed as they are
 * stored: the request layer validates what it writes and what it reads
 * back. A removed item is kept as a tombstone: subscription "remove", the
 * other fields empty, and the version of its removal. */
struct store_roster_item {
    struct store_column contact;      /* JID, as the XMPP worker gave it */
    struct store_column name;         /* "" for none */
    struct store_column subscription; /* none, to, from, both; remove for a tombstone */
    struct store_column ask;          /* "" or "subscribe" */
    struct store_column groups;       /* group names joined by '\n'; "" for none */
    bool approved;                    /* pre-approved (RFC 6121 §3.4) */
    int64_t version;                  /* the roster version of its last change */
};
/* Called for each roster row of roster_list; return false to stop. */
typedef bool store_roster_cb(void *ctx, const struct store_roster_item *item);

/* Called for each queued message of offline_list, oldest first. */
typedef bool store_offline_cb(void *ctx, int64_t id, const void *stanza, size_t len);

/* One archived message (XEP-0313). */
struct store_archive_row {
    int64_t id;                    /* the archive id; set by the database */
    struct store_column with;      /* bare JID of the other party */
    struct store_column direction; /* "in" or "out" */
    int64_t created_us;            /* microseconds since the epoch */
    struct store_column stanza;
};
/* Which archived messages of one user a query selects. The bounds are
 * always set: open ones are INT64_MIN / INT64_MAX for times and 0 /
 * INT64_MAX for ids. */
struct store_archive_filter {
    struct store_column with; /* only this party; ptr NULL for any */
    int64_t start_us, end_us; /* created_us in [start_us, end_us] */
    int64_t after_id;         /* id > after_id */
    int64_t before_id;        /* id < before_id */
    unsigned limit;           /* rows at most */
    bool backward;            /* newest first, from before_id down */
};
/* Called for each row of archive_query, in the filter's direction. */
typedef bool store_archive_cb(void *ctx, const struct store_archive_row *row);

/* Called once with the value kv_get found. */
typedef void store_value_cb(void *ctx, const void *value, size_t len);

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
    /* Deletes the account and, when it existed, everything kept for it
     * (roster and roster version, offline queue, archive, kv values,
     * blocklist). STORE_OK or STORE_NOT_FOUND. */
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
    /* STORE_OK when the account exists, else STORE_NOT_FOUND. MySQL also
     * takes a shared lock on the row until the transaction ends, so that
     * an unregister on another node cannot slip between this check and
     * the writes that follow it (SQLite's BEGIN IMMEDIATE already makes
     * every writer wait). */
    enum store_status (*account_exists)(struct store_db *db, const char *domain,
                                        const char *username, const char **error_r);

    /*
     * Savepoints: undo part of the open transaction. One level only; the
     * request layer brackets a request that may have to take back writes
     * it already made (block.add past the cap).
     */
    int (*savepoint)(struct store_db *db, const char **error_r);
    int (*savepoint_rollback)(struct store_db *db, const char **error_r);
    int (*savepoint_release)(struct store_db *db, const char **error_r);

    /*
     * Schema v2: per-user data. None of these calls checks that the
     * account exists (the request layer does, with account_exists), and
     * account_delete removes all of it along with the account.
     */
    /* The user's roster version (0 before any change) and the highest
     * version of a tombstone dropped so far (0 for none): a delta from a
     * version below it would miss a removal. */
    enum store_status (*roster_version_get)(struct store_db *db, const char *domain,
                                            const char *username, int64_t *version_r,
                                            int64_t *pruned_r, const char **error_r);
    /* Adds one to the user's roster version and sets *version_r to it. */
    enum store_status (*roster_version_bump)(struct store_db *db, const char *domain,
                                             const char *username, int64_t *version_r,
                                             const char **error_r);
    /* STORE_OK when contact is a live item (not a tombstone), else
     * STORE_NOT_FOUND. */
    enum store_status (*roster_item_exists)(struct store_db *db, const char *domain,
                                            const char *username, struct store_column contact,
                                            const char **error_r);
    /* Live items (tombstones false) or tombstones (true). */
    enum store_status (*roster_count)(struct store_db *db, const char *domain, const char *username,
                                      bool tombstones, uint64_t *count_r, const char **error_r);
    /* Inserts or replaces the row of item->contact, tombstones included. */
    enum store_status (*roster_put)(struct store_db *db, const char *domain, const char *username,
                                    const struct store_roster_item *item, const char **error_r);
    /* since < 0: every live item, by contact. since >= 0: every row whose
     * version is above since, tombstones included, by version. */
    enum store_status (*roster_list)(struct store_db *db, const char *domain, const char *username,
                                     int64_t since, store_roster_cb *cb, void *ctx,
                                     const char **error_r);
    /* Deletes the user's oldest tombstone and raises the pruned version to
     * its version; STORE_NOT_FOUND when there is none. */
    enum store_status (*roster_prune)(struct store_db *db, const char *domain, const char *username,
                                      const char **error_r);

    /* Messages in the user's offline queue. */
    enum store_status (*offline_count)(struct store_db *db, const char *domain,
                                       const char *username, uint64_t *count_r,
                                       const char **error_r);
    /* Queues a message; *id_r is its id (never reused). */
    enum store_status (*offline_insert)(struct store_db *db, const char *domain,
                                        const char *username, struct store_column stanza,
                                        int64_t created, int64_t *id_r, const char **error_r);
    /* The oldest limit messages, oldest first. */
    enum store_status (*offline_list)(struct store_db *db, const char *domain, const char *username,
                                      unsigned limit, store_offline_cb *cb, void *ctx,
                                      const char **error_r);
    /* Deletes the user's message id: STORE_OK, or STORE_NOT_FOUND when the
     * user has no such message (another user's id included). */
    enum store_status (*offline_delete)(struct store_db *db, const char *domain,
                                        const char *username, int64_t id, const char **error_r);

    /* Appends row (its id is ignored) and sets *id_r to the new id, which
     * is above every id given before, and never reused. */
    enum store_status (*archive_insert)(struct store_db *db, const char *domain,
                                        const char *username, const struct store_archive_row *row,
                                        int64_t *id_r, const char **error_r);
    /* The rows the filter selects, by id (descending when backward), at
     * most filter->limit of them. Uses the (domain, username, id) index, or
     * the (domain, username, with, id) one when with is given. */
    enum store_status (*archive_query)(struct store_db *db, const char *domain,
                                       const char *username,
                                       const struct store_archive_filter *filter,
                                       store_archive_cb *cb, void *ctx, const char **error_r);
    /* How many rows match the filter's with and time bounds (its id
     * bounds, limit and direction are ignored: RSM's count is the size of
     * the whole result set). Reads the index only. */
    enum store_status (*archive_count)(struct store_db *db, const char *domain,
                                       const char *username,
                                       const struct store_archive_filter *filter, uint64_t *count_r,
                                       const char **error_r);
    /* STORE_OK when the user's archive has this id, else STORE_NOT_FOUND. */
    enum store_status (*archive_id_exists)(struct store_db *db, const char *domain,
                                           const char *username, int64_t id, const char **error_r);
    /* Deletes the user's whole archive. */
    enum store_status (*archive_purge)(struct store_db *db, const char *domain,
                                       const char *username, const char **error_r);

    /* kind is "private" or "vcard". STORE_OK after calling cb with the
     * value, or STORE_NOT_FOUND. */
    enum store_status (*kv_get)(struct store_db *db, const char *domain, const char *username,
                                struct store_column kind, struct store_column key,
                                store_value_cb *cb, void *ctx, const char **error_r);
    /* Inserts or replaces. */
    enum store_status (*kv_set)(struct store_db *db, const char *domain, const char *username,
                                struct store_column kind, struct store_column key,
                                struct store_column value, const char **error_r);
    /* STORE_OK, or STORE_NOT_FOUND when there was no value. */
    enum store_status (*kv_delete)(struct store_db *db, const char *domain, const char *username,
                                   struct store_column kind, struct store_column key,
                                   const char **error_r);

    /* The user's blocked JIDs in bytewise order. */
    enum store_status (*block_list)(struct store_db *db, const char *domain, const char *username,
                                    store_list_cb *cb, void *ctx, const char **error_r);
    enum store_status (*block_count)(struct store_db *db, const char *domain, const char *username,
                                     uint64_t *count_r, const char **error_r);
    /* STORE_OK, or STORE_CONFLICT when the JID was blocked already. */
    enum store_status (*block_add)(struct store_db *db, const char *domain, const char *username,
                                   struct store_column jid, const char **error_r);
    /* STORE_OK, or STORE_NOT_FOUND when the JID was not blocked. */
    enum store_status (*block_remove)(struct store_db *db, const char *domain, const char *username,
                                      struct store_column jid, const char **error_r);
    /* Unblocks everything. */
    enum store_status (*block_clear)(struct store_db *db, const char *domain, const char *username,
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

/* The columns of an accounts row, in the order store_account_from_row
 * takes them. */
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
/* True when the batch holds max requests, or when their arguments
 * (stanzas, values...) take STORE_BATCH_MAX_BYTES: run it before adding
 * more. What one batch holds stays bounded whatever the requests carry. */
bool store_batch_full(const struct store_batch *batch);
/* Runs every queued request, calls respond() once per request in queue
 * order, and empties the batch. */
void store_batch_run(struct store_batch *batch, store_response_cb *respond, void *ctx);

#endif
