/*
 * The SQLite backend of the store (see store_db.h): the embedded default,
 * one database file under the state directory. WAL journal with
 * synchronous=FULL, so a COMMIT that returned is on disk, and readers (a
 * backup, an operator's sqlite3 shell) never block the store. Every
 * statement is prepared once and reused, so a request allocates nothing
 * here.
 */
#include "workers/store_db.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

/* Schema steps, oldest first. Append only: a released step never changes.
 * TEXT keys use SQLite's default BINARY collation, so they match and sort
 * bytewise like the VARBINARY keys of the MySQL schema. */
static const char *const sqlite_v1[] = {
    "CREATE TABLE accounts ("
    " domain TEXT NOT NULL,"
    " username TEXT NOT NULL,"
    " salt BLOB NOT NULL,"
    " iterations INTEGER NOT NULL,"
    " sha1_stored_key BLOB NOT NULL,"
    " sha1_server_key BLOB NOT NULL,"
    " sha256_stored_key BLOB NOT NULL,"
    " sha256_server_key BLOB NOT NULL,"
    " ha1_md5 CHAR(32) NOT NULL,"
    " ha1_sha256 CHAR(64) NOT NULL,"
    " created INTEGER NOT NULL,"
    " PRIMARY KEY (domain, username))",
    NULL,
};

/* v2: per-user data for the XMPP worker. JIDs are TEXT as given; stanzas
 * and kv values are BLOBs, opaque here.
 * - roster: one row per contact; a removed contact stays as a tombstone
 *   (subscription 'remove') carrying the version of its removal, so that a
 *   versioned fetch can report it (RFC 6121 §2.6). roster_version holds the
 *   per-user counter, and `pruned`, the newest tombstone version dropped
 *   when the tombstones passed their cap: deltas from before it are
 *   incomplete and get the full roster instead.
 * - offline and archive: AUTOINCREMENT, so that an id is never handed out
 *   twice, even after the newest rows were deleted: an archive id is the
 *   stanza-id clients keep, and an offline id may be deleted late.
 * - created_us rides at the end of both archive indexes so that time
 *   bounds are checked in the index: a count never reads the table. */
static const char *const sqlite_v2[] = {
    "CREATE TABLE roster ("
    " domain TEXT NOT NULL,"
    " username TEXT NOT NULL,"
    " contact TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " subscription TEXT NOT NULL"
    "  CHECK (subscription IN ('none', 'to', 'from', 'both', 'remove')),"
    " ask TEXT NOT NULL CHECK (ask IN ('', 'subscribe')),"
    " approved INTEGER NOT NULL CHECK (approved IN (0, 1)),"
    " \"groups\" TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " PRIMARY KEY (domain, username, contact))",
    "CREATE INDEX roster_by_version ON roster (domain, username, version)",
    "CREATE TABLE roster_version ("
    " domain TEXT NOT NULL,"
    " username TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " pruned INTEGER NOT NULL,"
    " PRIMARY KEY (domain, username))",
    "CREATE TABLE offline ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " domain TEXT NOT NULL,"
    " username TEXT NOT NULL,"
    " stanza BLOB NOT NULL,"
    " created INTEGER NOT NULL)",
    "CREATE INDEX offline_by_user ON offline (domain, username, id)",
    "CREATE TABLE archive ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " domain TEXT NOT NULL,"
    " username TEXT NOT NULL,"
    " with_jid TEXT NOT NULL,"
    " direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),"
    " created_us INTEGER NOT NULL,"
    " stanza BLOB NOT NULL)",
    "CREATE INDEX archive_by_user ON archive (domain, username, id, created_us)",
    "CREATE INDEX archive_by_with ON archive (domain, username, with_jid, id, created_us)",
    "CREATE TABLE kv ("
    " domain TEXT NOT NULL,"
    " username TEXT NOT NULL,"
    " kind TEXT NOT NULL CHECK (kind IN ('private', 'vcard')),"
    " \"key\" TEXT NOT NULL,"
    " value BLOB NOT NULL,"
    " PRIMARY KEY (domain, username, kind, \"key\"))",
    "CREATE TABLE blocklist ("
    " domain TEXT NOT NULL,"
    " username TEXT NOT NULL,"
    " jid TEXT NOT NULL,"
    " PRIMARY KEY (domain, username, jid))",
    NULL,
};

static const struct store_migration sqlite_migrations[] = {
    {1, sqlite_v1},
    {2, sqlite_v2},
};

#define N_MIGRATIONS (sizeof(sqlite_migrations) / sizeof(sqlite_migrations[0]))

enum sqlite_stmt_id {
    SQL_BEGIN,
    SQL_COMMIT,
    SQL_ROLLBACK,
    SQL_VERSION,
    SQL_VERSION_ADD,
    SQL_INSERT,
    SQL_DELETE,
    SQL_UPDATE,
    SQL_GET,
    SQL_LIST,
    SQL_COUNT,
    SQL_EXISTS,
    /* account_delete: what is kept for the user, in the order deleted */
    SQL_PURGE_ROSTER,
    SQL_PURGE_ROSTER_VERSION,
    SQL_PURGE_OFFLINE,
    SQL_PURGE_ARCHIVE,
    SQL_PURGE_KV,
    SQL_PURGE_BLOCKLIST,
    SQL_SAVEPOINT,
    SQL_SAVEPOINT_ROLLBACK,
    SQL_SAVEPOINT_RELEASE,
    SQL_ROSTER_VERSION,
    SQL_ROSTER_BUMP,
    SQL_ROSTER_EXISTS,
    SQL_ROSTER_COUNT_LIVE,
    SQL_ROSTER_COUNT_TOMBSTONES,
    SQL_ROSTER_PUT,
    SQL_ROSTER_ALL,
    SQL_ROSTER_SINCE,
    SQL_ROSTER_OLDEST_TOMBSTONE,
    SQL_ROSTER_DROP_TOMBSTONE,
    SQL_ROSTER_SET_PRUNED,
    SQL_OFFLINE_COUNT,
    SQL_OFFLINE_INSERT,
    SQL_OFFLINE_LIST,
    SQL_OFFLINE_DELETE,
    SQL_ARCHIVE_INSERT,
    /* archive_query: [with given][backward] */
    SQL_ARCHIVE_FORWARD,
    SQL_ARCHIVE_BACKWARD,
    SQL_ARCHIVE_WITH_FORWARD,
    SQL_ARCHIVE_WITH_BACKWARD,
    SQL_ARCHIVE_COUNT,
    SQL_ARCHIVE_WITH_COUNT,
    SQL_ARCHIVE_ID,
    SQL_KV_GET,
    SQL_KV_SET,
    SQL_KV_DELETE,
    SQL_BLOCK_LIST,
    SQL_BLOCK_COUNT,
    SQL_BLOCK_ADD,
    SQL_BLOCK_REMOVE,
    SQL_N
};

/* The columns archive queries read, and their bounds: ?1 domain, ?2
 * username, ?3 after_id, ?4 before_id, ?5 start_us, ?6 end_us, ?7 limit,
 * ?8 with. The (domain, username[, with_jid], id) index answers the
 * equalities and the id range in order, and holds created_us, so only the
 * rows of the page are read from the table (EXPLAIN QUERY PLAN: SEARCH
 * archive USING INDEX archive_by_user (domain=? AND username=? AND id>?
 * AND id<?), no temporary B-tree; tests/unit/test_store.c checks it).
 * INDEXED BY pins that plan: statistics from an ANALYZE could otherwise
 * steer the planner to the rowid range, which walks every user's rows. */
#define ARCHIVE_SELECT "SELECT id, with_jid, direction, created_us, stanza FROM archive"
#define BY_USER " INDEXED BY archive_by_user"
#define BY_WITH " INDEXED BY archive_by_with"
#define ARCHIVE_RANGE " AND id > ?3 AND id < ?4 AND created_us >= ?5 AND created_us <= ?6"
#define ROSTER_SELECT                                                                              \
    "SELECT contact, name, subscription, ask, approved, \"groups\", version FROM roster"
#define USER_KEY " WHERE domain = ?1 AND username = ?2"

static const char *const sql_text[SQL_N] = {
    /* IMMEDIATE takes the write lock at BEGIN, so another writer makes BEGIN
     * wait (busy_timeout) instead of failing a statement mid-transaction. */
    [SQL_BEGIN] = "BEGIN IMMEDIATE",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
    [SQL_VERSION] = "SELECT COALESCE(MAX(version), 0) FROM schema_version",
    [SQL_VERSION_ADD] = "INSERT INTO schema_version (version) VALUES (?1)",
    [SQL_INSERT] = "INSERT INTO accounts (domain, username, salt, iterations, sha1_stored_key,"
                   " sha1_server_key, sha256_stored_key, sha256_server_key, ha1_md5, ha1_sha256,"
                   " created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [SQL_DELETE] = "DELETE FROM accounts WHERE domain = ?1 AND username = ?2",
    [SQL_UPDATE] = "UPDATE accounts SET salt = ?3, iterations = ?4, sha1_stored_key = ?5,"
                   " sha1_server_key = ?6, sha256_stored_key = ?7, sha256_server_key = ?8,"
                   " ha1_md5 = ?9, ha1_sha256 = ?10 WHERE domain = ?1 AND username = ?2",
    [SQL_GET] = "SELECT salt, sha1_stored_key, sha1_server_key, sha256_stored_key,"
                " sha256_server_key, ha1_md5, ha1_sha256, iterations, created"
                " FROM accounts WHERE domain = ?1 AND username = ?2",
    [SQL_LIST] = "SELECT username FROM accounts WHERE domain = ?1 ORDER BY username",
    [SQL_COUNT] = "SELECT COUNT(*) FROM accounts",
    [SQL_EXISTS] = "SELECT 1 FROM accounts" USER_KEY,
    [SQL_PURGE_ROSTER] = "DELETE FROM roster" USER_KEY,
    [SQL_PURGE_ROSTER_VERSION] = "DELETE FROM roster_version" USER_KEY,
    [SQL_PURGE_OFFLINE] = "DELETE FROM offline" USER_KEY,
    [SQL_PURGE_ARCHIVE] = "DELETE FROM archive" USER_KEY,
    [SQL_PURGE_KV] = "DELETE FROM kv" USER_KEY,
    [SQL_PURGE_BLOCKLIST] = "DELETE FROM blocklist" USER_KEY,
    [SQL_SAVEPOINT] = "SAVEPOINT request",
    /* ROLLBACK TO keeps the savepoint open: release it too. */
    [SQL_SAVEPOINT_ROLLBACK] = "ROLLBACK TO request",
    [SQL_SAVEPOINT_RELEASE] = "RELEASE request",
    [SQL_ROSTER_VERSION] = "SELECT version, pruned FROM roster_version" USER_KEY,
    [SQL_ROSTER_BUMP] = "INSERT INTO roster_version (domain, username, version, pruned)"
                        " VALUES (?1, ?2, 1, 0) ON CONFLICT (domain, username)"
                        " DO UPDATE SET version = version + 1 RETURNING version",
    [SQL_ROSTER_EXISTS] =
        "SELECT 1 FROM roster" USER_KEY " AND contact = ?3 AND subscription <> 'remove'",
    [SQL_ROSTER_COUNT_LIVE] =
        "SELECT COUNT(*) FROM roster" USER_KEY " AND subscription <> 'remove'",
    [SQL_ROSTER_COUNT_TOMBSTONES] =
        "SELECT COUNT(*) FROM roster" USER_KEY " AND subscription = 'remove'",
    [SQL_ROSTER_PUT] =
        "INSERT INTO roster (domain, username, contact, name, subscription, ask, approved,"
        " \"groups\", version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        " ON CONFLICT (domain, username, contact) DO UPDATE SET name = excluded.name,"
        " subscription = excluded.subscription, ask = excluded.ask, approved = excluded.approved,"
        " \"groups\" = excluded.\"groups\", version = excluded.version",
    [SQL_ROSTER_ALL] = ROSTER_SELECT USER_KEY " AND subscription <> 'remove' ORDER BY contact",
    [SQL_ROSTER_SINCE] = ROSTER_SELECT USER_KEY " AND version > ?3 ORDER BY version",
    [SQL_ROSTER_OLDEST_TOMBSTONE] =
        "SELECT MIN(version) FROM roster" USER_KEY " AND subscription = 'remove'",
    [SQL_ROSTER_DROP_TOMBSTONE] =
        "DELETE FROM roster" USER_KEY " AND subscription = 'remove' AND version = ?3",
    [SQL_ROSTER_SET_PRUNED] = "UPDATE roster_version SET pruned = ?3" USER_KEY " AND pruned < ?3",
    [SQL_OFFLINE_COUNT] = "SELECT COUNT(*) FROM offline" USER_KEY,
    [SQL_OFFLINE_INSERT] = "INSERT INTO offline (domain, username, stanza, created)"
                           " VALUES (?1, ?2, ?3, ?4)",
    [SQL_OFFLINE_LIST] = "SELECT id, stanza FROM offline" USER_KEY " ORDER BY id LIMIT ?3",
    [SQL_OFFLINE_DELETE] = "DELETE FROM offline" USER_KEY " AND id = ?3",
    [SQL_ARCHIVE_INSERT] = "INSERT INTO archive (domain, username, with_jid, direction,"
                           " created_us, stanza) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [SQL_ARCHIVE_FORWARD] = ARCHIVE_SELECT BY_USER USER_KEY ARCHIVE_RANGE " ORDER BY id LIMIT ?7",
    [SQL_ARCHIVE_BACKWARD] =
        ARCHIVE_SELECT BY_USER USER_KEY ARCHIVE_RANGE " ORDER BY id DESC LIMIT ?7",
    [SQL_ARCHIVE_WITH_FORWARD] =
        ARCHIVE_SELECT BY_WITH USER_KEY " AND with_jid = ?8" ARCHIVE_RANGE " ORDER BY id LIMIT ?7",
    [SQL_ARCHIVE_WITH_BACKWARD] = ARCHIVE_SELECT BY_WITH USER_KEY " AND with_jid = ?8" ARCHIVE_RANGE
                                                                  " ORDER BY id DESC LIMIT ?7",
    [SQL_ARCHIVE_COUNT] = "SELECT COUNT(*) FROM archive" BY_USER USER_KEY
                          " AND created_us >= ?3 AND created_us <= ?4",
    [SQL_ARCHIVE_WITH_COUNT] = "SELECT COUNT(*) FROM archive" BY_WITH USER_KEY
                               " AND with_jid = ?5 AND created_us >= ?3 AND created_us <= ?4",
    [SQL_ARCHIVE_ID] = "SELECT 1 FROM archive" USER_KEY " AND id = ?3",
    [SQL_KV_GET] = "SELECT value FROM kv" USER_KEY " AND kind = ?3 AND \"key\" = ?4",
    [SQL_KV_SET] = "INSERT INTO kv (domain, username, kind, \"key\", value)"
                   " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (domain, username, kind, \"key\")"
                   " DO UPDATE SET value = excluded.value",
    [SQL_KV_DELETE] = "DELETE FROM kv" USER_KEY " AND kind = ?3 AND \"key\" = ?4",
    [SQL_BLOCK_LIST] = "SELECT jid FROM blocklist" USER_KEY " ORDER BY jid",
    [SQL_BLOCK_COUNT] = "SELECT COUNT(*) FROM blocklist" USER_KEY,
    [SQL_BLOCK_ADD] = "INSERT INTO blocklist (domain, username, jid) VALUES (?1, ?2, ?3)"
                      " ON CONFLICT DO NOTHING",
    [SQL_BLOCK_REMOVE] = "DELETE FROM blocklist" USER_KEY " AND jid = ?3",
};

struct sqlite_impl {
    sqlite3 *conn;
    sqlite3_stmt *stmt[SQL_N];
};

static int sqlite_fail(struct store_db *db, const char *what, const char **error_r)
{
    struct sqlite_impl *impl = db->impl;
    const char *detail = impl != NULL && impl->conn != NULL ? sqlite3_errmsg(impl->conn) : "";

    snprintf(db->error, sizeof(db->error), "sqlite: %s: %s", what, detail);
    *error_r = db->error;
    return -1;
}

/* The prepared statement, prepared on first use (statements on tables
 * that migrations create cannot be prepared before they ran). */
static sqlite3_stmt *sqlite_stmt(struct store_db *db, enum sqlite_stmt_id id, const char **error_r)
{
    struct sqlite_impl *impl = db->impl;

    if (impl->stmt[id] == NULL &&
        sqlite3_prepare_v3(impl->conn, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &impl->stmt[id],
                           NULL) != SQLITE_OK) {
        sqlite_fail(db, "prepare", error_r);
        return NULL;
    }
    return impl->stmt[id];
}

/* Runs a statement without parameters that returns no rows. */
static int sqlite_run(struct store_db *db, enum sqlite_stmt_id id, const char **error_r)
{
    sqlite3_stmt *stmt = sqlite_stmt(db, id, error_r);
    int rc;

    if (stmt == NULL)
        return -1;
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return sqlite_fail(db, sql_text[id], error_r);
    return 0;
}

static int sqlite_exec(struct store_db *db, const char *sql, const char **error_r)
{
    struct sqlite_impl *impl = db->impl;

    if (sqlite3_exec(impl->conn, sql, NULL, NULL, NULL) != SQLITE_OK)
        return sqlite_fail(db, sql, error_r);
    return 0;
}

static void sqlite_close(struct store_db *db)
{
    struct sqlite_impl *impl = db->impl;

    if (impl == NULL)
        return;
    for (int i = 0; i < SQL_N; i++)
        sqlite3_finalize(impl->stmt[i]);
    /* An open transaction (there should be none) is rolled back by close. */
    sqlite3_close_v2(impl->conn);
    free(impl);
    db->impl = NULL;
}

static int sqlite_open(struct store_db *db, const char **error_r)
{
    const char *path = db->config->store.sqlite_path;
    struct sqlite_impl *impl;
    sqlite3_stmt *stmt = NULL;
    bool wal;
    int fd;

    db->lost = false;
    if (path == NULL || path[0] == '\0') {
        snprintf(db->error, sizeof(db->error), "sqlite: no database path configured");
        *error_r = db->error;
        return -1;
    }
    /* Create the file ourselves, owner-only: it holds password-derived
     * secrets, and SQLite gives its WAL and shm files the same mode. */
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(db->error, sizeof(db->error), "sqlite: %s: %s", path, strerror(errno));
        *error_r = db->error;
        return -1;
    }
    close(fd);

    impl = calloc(1, sizeof(*impl));
    if (impl == NULL) {
        snprintf(db->error, sizeof(db->error), "sqlite: out of memory");
        *error_r = db->error;
        return -1;
    }
    db->impl = impl;
    if (sqlite3_open_v2(path, &impl->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        sqlite_fail(db, path, error_r);
        goto fail;
    }
    sqlite3_extended_result_codes(impl->conn, 1);
    sqlite3_busy_timeout(impl->conn, STORE_SQLITE_BUSY_TIMEOUT_MS);

    /* journal_mode answers with the mode in force: a file system without
     * shared memory support, for one, keeps the old mode. */
    if (sqlite3_prepare_v2(impl->conn, "PRAGMA journal_mode = WAL", -1, &stmt, NULL) != SQLITE_OK ||
        sqlite3_step(stmt) != SQLITE_ROW) {
        sqlite3_finalize(stmt);
        sqlite_fail(db, "PRAGMA journal_mode", error_r);
        goto fail;
    }
    wal = sqlite3_column_text(stmt, 0) != NULL &&
          strcmp((const char *)sqlite3_column_text(stmt, 0), "wal") == 0;
    sqlite3_finalize(stmt);
    if (!wal) {
        snprintf(db->error, sizeof(db->error), "sqlite: %s: cannot use WAL journal mode", path);
        *error_r = db->error;
        goto fail;
    }
    if (sqlite_exec(db, "PRAGMA synchronous = FULL", error_r) < 0 ||
        sqlite_exec(db, "PRAGMA foreign_keys = ON", error_r) < 0)
        goto fail;
    return 0;
fail:
    sqlite_close(db);
    return -1;
}

static int sqlite_begin(struct store_db *db, const char **error_r)
{
    return sqlite_run(db, SQL_BEGIN, error_r);
}

static int sqlite_commit(struct store_db *db, const char **error_r)
{
    return sqlite_run(db, SQL_COMMIT, error_r);
}

static int sqlite_rollback(struct store_db *db, const char **error_r)
{
    struct sqlite_impl *impl = db->impl;

    /* Some errors (SQLITE_FULL, SQLITE_IOERR...) roll back by themselves;
     * a ROLLBACK then would only fail with "no transaction is active". */
    if (sqlite3_get_autocommit(impl->conn))
        return 0;
    return sqlite_run(db, SQL_ROLLBACK, error_r);
}

static int sqlite_version(struct store_db *db, int *version_r, const char **error_r)
{
    sqlite3_stmt *stmt = sqlite_stmt(db, SQL_VERSION, error_r);
    int rc;

    if (stmt == NULL)
        return -1;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *version_r = sqlite3_column_int(stmt, 0);
    sqlite3_reset(stmt);
    if (rc != SQLITE_ROW)
        return sqlite_fail(db, "reading schema_version", error_r);
    return 0;
}

static int sqlite_migrate(struct store_db *db, int *version_r, const char **error_r)
{
    const int latest = sqlite_migrations[N_MIGRATIONS - 1].version;
    const char *ignored;
    int version = 0;

    if (sqlite_exec(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                    error_r) < 0)
        return -1;
    for (;;) {
        const struct store_migration *step = NULL;
        sqlite3_stmt *add;

        /* The version is read inside the step's write transaction, so two
         * processes starting on one file cannot apply a step twice. */
        if (sqlite_begin(db, error_r) < 0)
            return -1;
        if (sqlite_version(db, &version, error_r) < 0)
            goto fail;
        if (version > latest) {
            snprintf(db->error, sizeof(db->error),
                     "sqlite: database schema version %d is newer than this program's (%d)",
                     version, latest);
            *error_r = db->error;
            goto fail;
        }
        for (size_t i = 0; i < N_MIGRATIONS; i++) {
            if (sqlite_migrations[i].version > version) {
                step = &sqlite_migrations[i];
                break;
            }
        }
        if (step == NULL)
            break;
        for (const char *const *sql = step->statements; *sql != NULL; sql++) {
            if (sqlite_exec(db, *sql, error_r) < 0)
                goto fail;
        }
        add = sqlite_stmt(db, SQL_VERSION_ADD, error_r);
        if (add == NULL)
            goto fail;
        sqlite3_bind_int(add, 1, step->version);
        int rc = sqlite3_step(add);
        sqlite3_reset(add);
        if (rc != SQLITE_DONE) {
            sqlite_fail(db, "recording the schema version", error_r);
            goto fail;
        }
        if (sqlite_commit(db, error_r) < 0)
            goto fail;
    }
    /* Nothing left to apply: end the read transaction. */
    if (sqlite_commit(db, error_r) < 0)
        goto fail;
    *version_r = version;
    return 0;
fail:
    sqlite_rollback(db, &ignored);
    return -1;
}

static void bind_key(sqlite3_stmt *stmt, const char *domain, const char *username)
{
    sqlite3_bind_text(stmt, 1, domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, username, -1, SQLITE_STATIC);
}

/* Binds parameters 3 to 10: the password-derived values. */
static void bind_secrets(sqlite3_stmt *stmt, const struct auth_secrets *s)
{
    sqlite3_bind_blob(stmt, 3, s->salt, (int)s->salt_len, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, s->iterations);
    sqlite3_bind_blob(stmt, 5, s->sha1_stored_key, AUTH_SHA1_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 6, s->sha1_server_key, AUTH_SHA1_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 7, s->sha256_stored_key, AUTH_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 8, s->sha256_server_key, AUTH_SHA256_LEN, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 9, s->ha1_md5, AUTH_HA1_MD5_HEX, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 10, s->ha1_sha256, AUTH_HA1_SHA256_HEX, SQLITE_STATIC);
}

/* Steps a write statement once and resets it (clearing the bindings, which
 * point into the caller's memory). */
static int step_write(sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return rc;
}

/* A statement with the user's key bound as ?1 and ?2. */
static sqlite3_stmt *user_stmt(struct store_db *db, enum sqlite_stmt_id id, const char *domain,
                               const char *username, const char **error_r)
{
    sqlite3_stmt *stmt = sqlite_stmt(db, id, error_r);

    if (stmt != NULL)
        bind_key(stmt, domain, username);
    return stmt;
}

/* Binds bytes as TEXT, or as a BLOB. A zero-length value must not have a
 * NULL pointer, which SQLite would store as NULL. */
static void bind_text(sqlite3_stmt *stmt, int i, struct store_column c)
{
    sqlite3_bind_text(stmt, i, c.len > 0 ? c.ptr : "", (int)c.len, SQLITE_STATIC);
}

static void bind_blob(sqlite3_stmt *stmt, int i, struct store_column c)
{
    sqlite3_bind_blob(stmt, i, c.len > 0 ? c.ptr : "", (int)c.len, SQLITE_STATIC);
}

/* A column's bytes, whatever its type; "" for an empty value or NULL. */
static struct store_column column(sqlite3_stmt *stmt, int i)
{
    struct store_column c;

    c.ptr = sqlite3_column_blob(stmt, i);
    c.len = (size_t)sqlite3_column_bytes(stmt, i);
    if (c.ptr == NULL)
        c.ptr = "", c.len = 0;
    return c;
}

/* Steps a bound write statement: STORE_OK, or STORE_FAILED. */
static enum store_status write_done(struct store_db *db, sqlite3_stmt *stmt, enum sqlite_stmt_id id,
                                    const char **error_r)
{
    if (step_write(stmt) == SQLITE_DONE)
        return STORE_OK;
    sqlite_fail(db, sql_text[id], error_r);
    return STORE_FAILED;
}

/* A write on the user's rows with nothing else to bind. */
static enum store_status user_write(struct store_db *db, enum sqlite_stmt_id id, const char *domain,
                                    const char *username, const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, id, domain, username, error_r);

    return stmt != NULL ? write_done(db, stmt, id, error_r) : STORE_FAILED;
}

/* Steps a bound statement that returns at most one row of integers:
 * STORE_OK with the row's first n columns in values[], STORE_NOT_FOUND
 * when there is no row (or a NULL, as MIN() of nothing), or STORE_FAILED. */
static enum store_status read_ints(struct store_db *db, sqlite3_stmt *stmt, enum sqlite_stmt_id id,
                                   int64_t *values, int n, const char **error_r)
{
    enum store_status status = STORE_NOT_FOUND;
    int rc = sqlite3_step(stmt);

    if (rc == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
        for (int i = 0; i < n; i++)
            values[i] = sqlite3_column_int64(stmt, i);
        status = STORE_OK;
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sqlite_fail(db, sql_text[id], error_r);
        status = STORE_FAILED;
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return status;
}

/* A COUNT(*) (or any one-integer query) over the user's rows, with its
 * other parameters bound by the caller when stmt is given. */
static enum store_status read_count(struct store_db *db, sqlite3_stmt *stmt, enum sqlite_stmt_id id,
                                    uint64_t *count_r, const char **error_r)
{
    int64_t v = 0;
    enum store_status status = read_ints(db, stmt, id, &v, 1, error_r);

    if (status == STORE_FAILED)
        return STORE_FAILED;
    *count_r = (uint64_t)v;
    return STORE_OK;
}

static enum store_status sqlite_account_insert(struct store_db *db, const char *domain,
                                               const char *username,
                                               const struct store_account *account,
                                               const char **error_r)
{
    sqlite3_stmt *stmt = sqlite_stmt(db, SQL_INSERT, error_r);
    int rc;

    if (stmt == NULL)
        return STORE_FAILED;
    bind_key(stmt, domain, username);
    bind_secrets(stmt, &account->secrets);
    sqlite3_bind_int64(stmt, 11, account->created);
    rc = step_write(stmt);
    if (rc == SQLITE_DONE)
        return STORE_OK;
    /* A constraint failure undoes this statement only (ON CONFLICT ABORT),
     * so the rest of the batch's transaction stands. Other constraint
     * kinds (NOT NULL, a trigger's RAISE) are real errors. */
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
        return STORE_CONFLICT;
    sqlite_fail(db, "insert into accounts", error_r);
    return STORE_FAILED;
}

static enum store_status sqlite_account_delete(struct store_db *db, const char *domain,
                                               const char *username, const char **error_r)
{
    struct sqlite_impl *impl = db->impl;
    sqlite3_stmt *stmt = sqlite_stmt(db, SQL_DELETE, error_r);

    if (stmt == NULL)
        return STORE_FAILED;
    bind_key(stmt, domain, username);
    if (step_write(stmt) != SQLITE_DONE) {
        sqlite_fail(db, "delete from accounts", error_r);
        return STORE_FAILED;
    }
    if (sqlite3_changes(impl->conn) == 0)
        return STORE_NOT_FOUND;
    /* Then everything kept for the account, in the same transaction. */
    for (int id = SQL_PURGE_ROSTER; id <= SQL_PURGE_BLOCKLIST; id++) {
        if (user_write(db, id, domain, username, error_r) != STORE_OK)
            return STORE_FAILED;
    }
    return STORE_OK;
}

static enum store_status sqlite_account_update_secrets(struct store_db *db, const char *domain,
                                                       const char *username,
                                                       const struct auth_secrets *secrets,
                                                       const char **error_r)
{
    struct sqlite_impl *impl = db->impl;
    sqlite3_stmt *stmt = sqlite_stmt(db, SQL_UPDATE, error_r);

    if (stmt == NULL)
        return STORE_FAILED;
    bind_key(stmt, domain, username);
    bind_secrets(stmt, secrets);
    if (step_write(stmt) != SQLITE_DONE) {
        sqlite_fail(db, "update accounts", error_r);
        return STORE_FAILED;
    }
    return sqlite3_changes(impl->conn) > 0 ? STORE_OK : STORE_NOT_FOUND;
}

static enum store_status sqlite_account_get(struct store_db *db, const char *domain,
                                            const char *username, struct store_account *account_r,
                                            const char **error_r)
{
    sqlite3_stmt *stmt = sqlite_stmt(db, SQL_GET, error_r);
    struct store_column cols[STORE_COL_COUNT];
    enum store_status status;
    int rc;

    if (stmt == NULL)
        return STORE_FAILED;
    bind_key(stmt, domain, username);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        /* The columns are in enum store_account_column order, then
         * iterations and created. A column read as a blob keeps its bytes
         * whatever type it was stored as. */
        for (int i = 0; i < STORE_COL_COUNT; i++) {
            cols[i].ptr = sqlite3_column_blob(stmt, i);
            cols[i].len = (size_t)sqlite3_column_bytes(stmt, i);
        }
        status =
            store_account_from_row(account_r, cols, sqlite3_column_int64(stmt, STORE_COL_COUNT),
                                   sqlite3_column_int64(stmt, STORE_COL_COUNT + 1));
    } else if (rc == SQLITE_DONE) {
        status = STORE_NOT_FOUND;
    } else {
        sqlite_fail(db, "select from accounts", error_r);
        status = STORE_FAILED;
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return status;
}

static enum store_status sqlite_account_list(struct store_db *db, const char *domain,
                                             store_list_cb *cb, void *ctx, const char **error_r)
{
    sqlite3_stmt *stmt = sqlite_stmt(db, SQL_LIST, error_r);
    int rc;

    if (stmt == NULL)
        return STORE_FAILED;
    sqlite3_bind_text(stmt, 1, domain, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(stmt, 0);
        if (name == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (!cb(ctx, name, (size_t)sqlite3_column_bytes(stmt, 0))) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (rc != SQLITE_DONE) {
        sqlite_fail(db, "listing accounts", error_r);
        return STORE_FAILED;
    }
    return STORE_OK;
}

static enum store_status sqlite_account_count(struct store_db *db, uint64_t *count_r,
                                              const char **error_r)
{
    sqlite3_stmt *stmt = sqlite_stmt(db, SQL_COUNT, error_r);
    int rc;

    if (stmt == NULL)
        return STORE_FAILED;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *count_r = (uint64_t)sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    if (rc != SQLITE_ROW) {
        sqlite_fail(db, "counting accounts", error_r);
        return STORE_FAILED;
    }
    return STORE_OK;
}

static enum store_status sqlite_account_exists(struct store_db *db, const char *domain,
                                               const char *username, const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_EXISTS, domain, username, error_r);
    int64_t one;

    return stmt != NULL ? read_ints(db, stmt, SQL_EXISTS, &one, 1, error_r) : STORE_FAILED;
}

static int sqlite_savepoint(struct store_db *db, const char **error_r)
{
    return sqlite_run(db, SQL_SAVEPOINT, error_r);
}

static int sqlite_savepoint_rollback(struct store_db *db, const char **error_r)
{
    if (sqlite_run(db, SQL_SAVEPOINT_ROLLBACK, error_r) < 0)
        return -1;
    return sqlite_run(db, SQL_SAVEPOINT_RELEASE, error_r);
}

static int sqlite_savepoint_release(struct store_db *db, const char **error_r)
{
    return sqlite_run(db, SQL_SAVEPOINT_RELEASE, error_r);
}

/* --- roster --- */

static enum store_status sqlite_roster_version_get(struct store_db *db, const char *domain,
                                                   const char *username, int64_t *version_r,
                                                   int64_t *pruned_r, const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_ROSTER_VERSION, domain, username, error_r);
    int64_t v[2] = {0, 0};
    enum store_status status;

    if (stmt == NULL)
        return STORE_FAILED;
    status = read_ints(db, stmt, SQL_ROSTER_VERSION, v, 2, error_r);
    if (status == STORE_FAILED)
        return STORE_FAILED;
    *version_r = v[0];
    *pruned_r = v[1];
    return STORE_OK;
}

static enum store_status sqlite_roster_version_bump(struct store_db *db, const char *domain,
                                                    const char *username, int64_t *version_r,
                                                    const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_ROSTER_BUMP, domain, username, error_r);
    enum store_status status;

    if (stmt == NULL)
        return STORE_FAILED;
    /* The upsert is done by the first step, which returns the new value. */
    status = read_ints(db, stmt, SQL_ROSTER_BUMP, version_r, 1, error_r);
    if (status == STORE_NOT_FOUND) {
        snprintf(db->error, sizeof(db->error), "sqlite: roster version bump returned nothing");
        *error_r = db->error;
        status = STORE_FAILED;
    }
    return status;
}

static enum store_status sqlite_roster_item_exists(struct store_db *db, const char *domain,
                                                   const char *username,
                                                   struct store_column contact,
                                                   const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_ROSTER_EXISTS, domain, username, error_r);
    int64_t one;

    if (stmt == NULL)
        return STORE_FAILED;
    bind_text(stmt, 3, contact);
    return read_ints(db, stmt, SQL_ROSTER_EXISTS, &one, 1, error_r);
}

static enum store_status sqlite_roster_count(struct store_db *db, const char *domain,
                                             const char *username, bool tombstones,
                                             uint64_t *count_r, const char **error_r)
{
    enum sqlite_stmt_id id = tombstones ? SQL_ROSTER_COUNT_TOMBSTONES : SQL_ROSTER_COUNT_LIVE;
    sqlite3_stmt *stmt = user_stmt(db, id, domain, username, error_r);

    return stmt != NULL ? read_count(db, stmt, id, count_r, error_r) : STORE_FAILED;
}

static enum store_status sqlite_roster_put(struct store_db *db, const char *domain,
                                           const char *username,
                                           const struct store_roster_item *item,
                                           const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_ROSTER_PUT, domain, username, error_r);

    if (stmt == NULL)
        return STORE_FAILED;
    bind_text(stmt, 3, item->contact);
    bind_text(stmt, 4, item->name);
    bind_text(stmt, 5, item->subscription);
    bind_text(stmt, 6, item->ask);
    sqlite3_bind_int(stmt, 7, item->approved ? 1 : 0);
    bind_text(stmt, 8, item->groups);
    sqlite3_bind_int64(stmt, 9, item->version);
    return write_done(db, stmt, SQL_ROSTER_PUT, error_r);
}

/* Steps a bound SELECT, calling row() for each row until it returns false;
 * resets the statement either way. */
static enum store_status read_rows(struct store_db *db, sqlite3_stmt *stmt, enum sqlite_stmt_id id,
                                   bool (*row)(sqlite3_stmt *stmt, void *ctx), void *ctx,
                                   const char **error_r)
{
    int rc;

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (!row(stmt, ctx)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (rc != SQLITE_DONE) {
        sqlite_fail(db, sql_text[id], error_r);
        return STORE_FAILED;
    }
    return STORE_OK;
}

struct row_cb {
    union {
        store_roster_cb *roster;
        store_offline_cb *offline;
        store_archive_cb *archive;
        store_list_cb *list;
    } cb;
    void *ctx;
};

static bool roster_row(sqlite3_stmt *stmt, void *ctx)
{
    struct row_cb *rc = ctx;
    struct store_roster_item item = {
        .contact = column(stmt, 0),
        .name = column(stmt, 1),
        .subscription = column(stmt, 2),
        .ask = column(stmt, 3),
        .approved = sqlite3_column_int(stmt, 4) != 0,
        .groups = column(stmt, 5),
        .version = sqlite3_column_int64(stmt, 6),
    };

    return rc->cb.roster(rc->ctx, &item);
}

static enum store_status sqlite_roster_list(struct store_db *db, const char *domain,
                                            const char *username, int64_t since,
                                            store_roster_cb *cb, void *ctx, const char **error_r)
{
    enum sqlite_stmt_id id = since < 0 ? SQL_ROSTER_ALL : SQL_ROSTER_SINCE;
    sqlite3_stmt *stmt = user_stmt(db, id, domain, username, error_r);
    struct row_cb rc = {.cb.roster = cb, .ctx = ctx};

    if (stmt == NULL)
        return STORE_FAILED;
    if (since >= 0)
        sqlite3_bind_int64(stmt, 3, since);
    return read_rows(db, stmt, id, roster_row, &rc, error_r);
}

static enum store_status sqlite_roster_prune(struct store_db *db, const char *domain,
                                             const char *username, const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_ROSTER_OLDEST_TOMBSTONE, domain, username, error_r);
    enum store_status status;
    int64_t oldest;

    if (stmt == NULL)
        return STORE_FAILED;
    status = read_ints(db, stmt, SQL_ROSTER_OLDEST_TOMBSTONE, &oldest, 1, error_r);
    if (status != STORE_OK)
        return status;
    for (int id = SQL_ROSTER_DROP_TOMBSTONE; id <= SQL_ROSTER_SET_PRUNED; id++) {
        stmt = user_stmt(db, id, domain, username, error_r);
        if (stmt == NULL)
            return STORE_FAILED;
        sqlite3_bind_int64(stmt, 3, oldest);
        if (write_done(db, stmt, id, error_r) != STORE_OK)
            return STORE_FAILED;
    }
    return STORE_OK;
}

/* --- offline messages --- */

static enum store_status sqlite_offline_count(struct store_db *db, const char *domain,
                                              const char *username, uint64_t *count_r,
                                              const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_OFFLINE_COUNT, domain, username, error_r);

    return stmt != NULL ? read_count(db, stmt, SQL_OFFLINE_COUNT, count_r, error_r) : STORE_FAILED;
}

static enum store_status sqlite_offline_insert(struct store_db *db, const char *domain,
                                               const char *username, struct store_column stanza,
                                               int64_t created, int64_t *id_r, const char **error_r)
{
    struct sqlite_impl *impl = db->impl;
    sqlite3_stmt *stmt = user_stmt(db, SQL_OFFLINE_INSERT, domain, username, error_r);

    if (stmt == NULL)
        return STORE_FAILED;
    bind_blob(stmt, 3, stanza);
    sqlite3_bind_int64(stmt, 4, created);
    if (write_done(db, stmt, SQL_OFFLINE_INSERT, error_r) != STORE_OK)
        return STORE_FAILED;
    *id_r = sqlite3_last_insert_rowid(impl->conn);
    return STORE_OK;
}

static bool offline_row(sqlite3_stmt *stmt, void *ctx)
{
    struct row_cb *rc = ctx;
    struct store_column stanza = column(stmt, 1);

    return rc->cb.offline(rc->ctx, sqlite3_column_int64(stmt, 0), stanza.ptr, stanza.len);
}

static enum store_status sqlite_offline_list(struct store_db *db, const char *domain,
                                             const char *username, unsigned limit,
                                             store_offline_cb *cb, void *ctx, const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_OFFLINE_LIST, domain, username, error_r);
    struct row_cb rc = {.cb.offline = cb, .ctx = ctx};

    if (stmt == NULL)
        return STORE_FAILED;
    sqlite3_bind_int64(stmt, 3, limit);
    return read_rows(db, stmt, SQL_OFFLINE_LIST, offline_row, &rc, error_r);
}

/* A write on one row of the user's, selected by ?3: STORE_OK when a row
 * changed, STORE_NOT_FOUND when none did. */
static enum store_status changed_row(struct store_db *db, sqlite3_stmt *stmt,
                                     enum sqlite_stmt_id id, const char **error_r)
{
    struct sqlite_impl *impl = db->impl;

    if (write_done(db, stmt, id, error_r) != STORE_OK)
        return STORE_FAILED;
    return sqlite3_changes(impl->conn) > 0 ? STORE_OK : STORE_NOT_FOUND;
}

static enum store_status sqlite_offline_delete(struct store_db *db, const char *domain,
                                               const char *username, int64_t id,
                                               const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_OFFLINE_DELETE, domain, username, error_r);

    if (stmt == NULL)
        return STORE_FAILED;
    sqlite3_bind_int64(stmt, 3, id);
    return changed_row(db, stmt, SQL_OFFLINE_DELETE, error_r);
}

/* --- archive --- */

static enum store_status sqlite_archive_insert(struct store_db *db, const char *domain,
                                               const char *username,
                                               const struct store_archive_row *row, int64_t *id_r,
                                               const char **error_r)
{
    struct sqlite_impl *impl = db->impl;
    sqlite3_stmt *stmt = user_stmt(db, SQL_ARCHIVE_INSERT, domain, username, error_r);

    if (stmt == NULL)
        return STORE_FAILED;
    bind_text(stmt, 3, row->with);
    bind_text(stmt, 4, row->direction);
    sqlite3_bind_int64(stmt, 5, row->created_us);
    bind_blob(stmt, 6, row->stanza);
    if (write_done(db, stmt, SQL_ARCHIVE_INSERT, error_r) != STORE_OK)
        return STORE_FAILED;
    *id_r = sqlite3_last_insert_rowid(impl->conn);
    return STORE_OK;
}

static bool archive_row(sqlite3_stmt *stmt, void *ctx)
{
    struct row_cb *rc = ctx;
    struct store_archive_row row = {
        .id = sqlite3_column_int64(stmt, 0),
        .with = column(stmt, 1),
        .direction = column(stmt, 2),
        .created_us = sqlite3_column_int64(stmt, 3),
        .stanza = column(stmt, 4),
    };

    return rc->cb.archive(rc->ctx, &row);
}

static enum store_status sqlite_archive_query(struct store_db *db, const char *domain,
                                              const char *username,
                                              const struct store_archive_filter *f,
                                              store_archive_cb *cb, void *ctx, const char **error_r)
{
    enum sqlite_stmt_id id =
        f->with.ptr != NULL ? (f->backward ? SQL_ARCHIVE_WITH_BACKWARD : SQL_ARCHIVE_WITH_FORWARD)
                            : (f->backward ? SQL_ARCHIVE_BACKWARD : SQL_ARCHIVE_FORWARD);
    sqlite3_stmt *stmt = user_stmt(db, id, domain, username, error_r);
    struct row_cb rc = {.cb.archive = cb, .ctx = ctx};

    if (stmt == NULL)
        return STORE_FAILED;
    sqlite3_bind_int64(stmt, 3, f->after_id);
    sqlite3_bind_int64(stmt, 4, f->before_id);
    sqlite3_bind_int64(stmt, 5, f->start_us);
    sqlite3_bind_int64(stmt, 6, f->end_us);
    sqlite3_bind_int64(stmt, 7, f->limit);
    if (f->with.ptr != NULL)
        bind_text(stmt, 8, f->with);
    return read_rows(db, stmt, id, archive_row, &rc, error_r);
}

static enum store_status sqlite_archive_count(struct store_db *db, const char *domain,
                                              const char *username,
                                              const struct store_archive_filter *f,
                                              uint64_t *count_r, const char **error_r)
{
    enum sqlite_stmt_id id = f->with.ptr != NULL ? SQL_ARCHIVE_WITH_COUNT : SQL_ARCHIVE_COUNT;
    sqlite3_stmt *stmt = user_stmt(db, id, domain, username, error_r);

    if (stmt == NULL)
        return STORE_FAILED;
    sqlite3_bind_int64(stmt, 3, f->start_us);
    sqlite3_bind_int64(stmt, 4, f->end_us);
    if (f->with.ptr != NULL)
        bind_text(stmt, 5, f->with);
    return read_count(db, stmt, id, count_r, error_r);
}

static enum store_status sqlite_archive_id_exists(struct store_db *db, const char *domain,
                                                  const char *username, int64_t id,
                                                  const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_ARCHIVE_ID, domain, username, error_r);
    int64_t one;

    if (stmt == NULL)
        return STORE_FAILED;
    sqlite3_bind_int64(stmt, 3, id);
    return read_ints(db, stmt, SQL_ARCHIVE_ID, &one, 1, error_r);
}

static enum store_status sqlite_archive_purge(struct store_db *db, const char *domain,
                                              const char *username, const char **error_r)
{
    return user_write(db, SQL_PURGE_ARCHIVE, domain, username, error_r);
}

/* --- private storage and vCards --- */

static sqlite3_stmt *kv_stmt(struct store_db *db, enum sqlite_stmt_id id, const char *domain,
                             const char *username, struct store_column kind,
                             struct store_column key, const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, id, domain, username, error_r);

    if (stmt != NULL) {
        bind_text(stmt, 3, kind);
        bind_text(stmt, 4, key);
    }
    return stmt;
}

static enum store_status sqlite_kv_get(struct store_db *db, const char *domain,
                                       const char *username, struct store_column kind,
                                       struct store_column key, store_value_cb *cb, void *ctx,
                                       const char **error_r)
{
    sqlite3_stmt *stmt = kv_stmt(db, SQL_KV_GET, domain, username, kind, key, error_r);
    enum store_status status = STORE_NOT_FOUND;
    int rc;

    if (stmt == NULL)
        return STORE_FAILED;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        struct store_column value = column(stmt, 0);
        cb(ctx, value.ptr, value.len);
        status = STORE_OK;
    } else if (rc != SQLITE_DONE) {
        sqlite_fail(db, sql_text[SQL_KV_GET], error_r);
        status = STORE_FAILED;
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return status;
}

static enum store_status sqlite_kv_set(struct store_db *db, const char *domain,
                                       const char *username, struct store_column kind,
                                       struct store_column key, struct store_column value,
                                       const char **error_r)
{
    sqlite3_stmt *stmt = kv_stmt(db, SQL_KV_SET, domain, username, kind, key, error_r);

    if (stmt == NULL)
        return STORE_FAILED;
    bind_blob(stmt, 5, value);
    return write_done(db, stmt, SQL_KV_SET, error_r);
}

static enum store_status sqlite_kv_delete(struct store_db *db, const char *domain,
                                          const char *username, struct store_column kind,
                                          struct store_column key, const char **error_r)
{
    sqlite3_stmt *stmt = kv_stmt(db, SQL_KV_DELETE, domain, username, kind, key, error_r);

    return stmt != NULL ? changed_row(db, stmt, SQL_KV_DELETE, error_r) : STORE_FAILED;
}

/* --- blocklist --- */

static bool block_row(sqlite3_stmt *stmt, void *ctx)
{
    struct row_cb *rc = ctx;
    struct store_column jid = column(stmt, 0);

    return rc->cb.list(rc->ctx, jid.ptr, jid.len);
}

static enum store_status sqlite_block_list(struct store_db *db, const char *domain,
                                           const char *username, store_list_cb *cb, void *ctx,
                                           const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_BLOCK_LIST, domain, username, error_r);
    struct row_cb rc = {.cb.list = cb, .ctx = ctx};

    return stmt != NULL ? read_rows(db, stmt, SQL_BLOCK_LIST, block_row, &rc, error_r)
                        : STORE_FAILED;
}

static enum store_status sqlite_block_count(struct store_db *db, const char *domain,
                                            const char *username, uint64_t *count_r,
                                            const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_BLOCK_COUNT, domain, username, error_r);

    return stmt != NULL ? read_count(db, stmt, SQL_BLOCK_COUNT, count_r, error_r) : STORE_FAILED;
}

static enum store_status sqlite_block_add(struct store_db *db, const char *domain,
                                          const char *username, struct store_column jid,
                                          const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_BLOCK_ADD, domain, username, error_r);
    enum store_status status;

    if (stmt == NULL)
        return STORE_FAILED;
    bind_text(stmt, 3, jid);
    /* ON CONFLICT DO NOTHING: no row changed means it was there. */
    status = changed_row(db, stmt, SQL_BLOCK_ADD, error_r);
    return status == STORE_NOT_FOUND ? STORE_CONFLICT : status;
}

static enum store_status sqlite_block_remove(struct store_db *db, const char *domain,
                                             const char *username, struct store_column jid,
                                             const char **error_r)
{
    sqlite3_stmt *stmt = user_stmt(db, SQL_BLOCK_REMOVE, domain, username, error_r);

    if (stmt == NULL)
        return STORE_FAILED;
    bind_text(stmt, 3, jid);
    return changed_row(db, stmt, SQL_BLOCK_REMOVE, error_r);
}

static enum store_status sqlite_block_clear(struct store_db *db, const char *domain,
                                            const char *username, const char **error_r)
{
    return user_write(db, SQL_PURGE_BLOCKLIST, domain, username, error_r);
}

const struct store_backend_ops store_sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .migrate = sqlite_migrate,
    .account_insert = sqlite_account_insert,
    .account_delete = sqlite_account_delete,
    .account_update_secrets = sqlite_account_update_secrets,
    .account_get = sqlite_account_get,
    .account_list = sqlite_account_list,
    .account_count = sqlite_account_count,
    .account_exists = sqlite_account_exists,
    .savepoint = sqlite_savepoint,
    .savepoint_rollback = sqlite_savepoint_rollback,
    .savepoint_release = sqlite_savepoint_release,
    .roster_version_get = sqlite_roster_version_get,
    .roster_version_bump = sqlite_roster_version_bump,
    .roster_item_exists = sqlite_roster_item_exists,
    .roster_count = sqlite_roster_count,
    .roster_put = sqlite_roster_put,
    .roster_list = sqlite_roster_list,
    .roster_prune = sqlite_roster_prune,
    .offline_count = sqlite_offline_count,
    .offline_insert = sqlite_offline_insert,
    .offline_list = sqlite_offline_list,
    .offline_delete = sqlite_offline_delete,
    .archive_insert = sqlite_archive_insert,
    .archive_query = sqlite_archive_query,
    .archive_count = sqlite_archive_count,
    .archive_id_exists = sqlite_archive_id_exists,
    .archive_purge = sqlite_archive_purge,
    .kv_get = sqlite_kv_get,
    .kv_set = sqlite_kv_set,
    .kv_delete = sqlite_kv_delete,
    .block_list = sqlite_block_list,
    .block_count = sqlite_block_count,
    .block_add = sqlite_block_add,
    .block_remove = sqlite_block_remove,
    .block_clear = sqlite_block_clear,
};
