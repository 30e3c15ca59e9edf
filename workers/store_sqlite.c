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

static const struct store_migration sqlite_migrations[] = {
    {1, sqlite_v1},
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
    SQL_N
};

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
    return sqlite3_changes(impl->conn) > 0 ? STORE_OK : STORE_NOT_FOUND;
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
};
