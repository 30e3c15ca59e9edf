/*
 * The MySQL/MariaDB backend of the store (see store_db.h), through MariaDB
 * Connector/C: the production choice, and the database several nodes can
 * share. One connection, autocommit off, utf8mb4, strict SQL mode; the
 * request layer brackets every batch with begin/commit.
 *
 * Every value a client supplied reaches SQL as a hexadecimal literal
 * (X'616c696365'), never as quoted text: nothing a user sends can change a
 * statement, whatever the connection character set. Queries are built in a
 * fixed buffer sized for the longest keys, so a request allocates nothing
 * here beyond what the client library does for results.
 *
 * A lost connection (server restarted, idle timeout, network) sets db->lost
 * and fails the call; the request layer then reconnects and retries the
 * whole batch once. The client library's own auto-reconnect is disabled: it
 * would silently drop the open transaction.
 */
#include "workers/store_db.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

/* Schema steps, oldest first. Append only: a released step never changes.
 * MySQL commits DDL implicitly, so a step is not atomic: every statement
 * must be safe to run again (IF NOT EXISTS...) in case the process died
 * between the DDL and the schema_version row. Keys are VARBINARY so that
 * they compare and sort bytewise, like SQLite's BINARY collation (a utf8mb4
 * collation would make "Alice" and "alice" one key); 2 * 1023 bytes fit the
 * 3072-byte InnoDB key limit. */
static const char *const mysql_v1[] = {
    "CREATE TABLE IF NOT EXISTS accounts ("
    " domain VARBINARY(1023) NOT NULL,"
    " username VARBINARY(1023) NOT NULL,"
    " salt BLOB NOT NULL,"
    " iterations INT UNSIGNED NOT NULL,"
    " sha1_stored_key BLOB NOT NULL,"
    " sha1_server_key BLOB NOT NULL,"
    " sha256_stored_key BLOB NOT NULL,"
    " sha256_server_key BLOB NOT NULL,"
    " ha1_md5 CHAR(32) CHARACTER SET ascii NOT NULL,"
    " ha1_sha256 CHAR(64) CHARACTER SET ascii NOT NULL,"
    " created BIGINT NOT NULL,"
    " PRIMARY KEY (domain, username)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    NULL,
};

static const struct store_migration mysql_migrations[] = {
    {1, mysql_v1},
};

#define N_MIGRATIONS (sizeof(mysql_migrations) / sizeof(mysql_migrations[0]))

/* Held while migrating, so that nodes starting together against one
 * server do not apply a step twice. */
#define MYSQL_MIGRATE_LOCK "'switchboard.migrate'"
#define MYSQL_MIGRATE_LOCK_WAIT_S "60"

/* The longest statement: an INSERT with two 1023-byte keys and every
 * secret, hex-encoded. */
#define MYSQL_QUERY_MAX 8192

struct mysql_impl {
    MYSQL *conn;
    char query[MYSQL_QUERY_MAX];
    size_t len;
    bool overflow;
};

static bool mysql_errno_is_lost(unsigned err)
{
    switch (err) {
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_UNKNOWN_HOST:
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_SERVER_LOST_EXTENDED:
    case ER_SERVER_SHUTDOWN:
    case ER_CONNECTION_KILLED:
        return true;
    default:
        return false;
    }
}

static int mysql_fail(struct store_db *db, const char *what, const char **error_r)
{
    struct mysql_impl *impl = db->impl;
    unsigned err = impl != NULL && impl->conn != NULL ? mysql_errno(impl->conn) : 0;

    if (mysql_errno_is_lost(err))
        db->lost = true;
    snprintf(db->error, sizeof(db->error), "mysql: %s: %s (%u)", what,
             err != 0 ? mysql_error(impl->conn) : "unknown error", err);
    *error_r = db->error;
    return -1;
}

/* Query building into impl->query; an overflow is reported by q_run. */
static void q_reset(struct mysql_impl *impl)
{
    impl->len = 0;
    impl->overflow = false;
}

static void q_append(struct mysql_impl *impl, const char *s, size_t n)
{
    if (impl->overflow || n >= sizeof(impl->query) - impl->len) {
        impl->overflow = true;
        return;
    }
    memcpy(impl->query + impl->len, s, n);
    impl->len += n;
}

static void q_sql(struct mysql_impl *impl, const char *sql)
{
    q_append(impl, sql, strlen(sql));
}

static void q_hex(struct mysql_impl *impl, const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = data;

    if (impl->overflow || 2 * len + 3 >= sizeof(impl->query) - impl->len) {
        impl->overflow = true;
        return;
    }
    impl->query[impl->len++] = 'X';
    impl->query[impl->len++] = '\'';
    for (size_t i = 0; i < len; i++) {
        impl->query[impl->len++] = digits[p[i] >> 4];
        impl->query[impl->len++] = digits[p[i] & 15];
    }
    impl->query[impl->len++] = '\'';
}

static void q_str(struct mysql_impl *impl, const char *s)
{
    q_hex(impl, s, strlen(s));
}

static void q_int(struct mysql_impl *impl, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRId64, v);
    q_append(impl, num, (size_t)n);
}

/* "domain = X'..' AND username = X'..'" */
static void q_key(struct mysql_impl *impl, const char *domain, const char *username)
{
    q_sql(impl, " WHERE domain = ");
    q_str(impl, domain);
    q_sql(impl, " AND username = ");
    q_str(impl, username);
}

static int q_run(struct store_db *db, const char *what, const char **error_r)
{
    struct mysql_impl *impl = db->impl;

    if (impl->overflow) {
        snprintf(db->error, sizeof(db->error), "mysql: %s: statement too long", what);
        *error_r = db->error;
        return -1;
    }
    if (mysql_real_query(impl->conn, impl->query, impl->len) != 0)
        return mysql_fail(db, what, error_r);
    return 0;
}

static int mysql_exec(struct store_db *db, const char *sql, const char **error_r)
{
    struct mysql_impl *impl = db->impl;

    if (mysql_real_query(impl->conn, sql, strlen(sql)) != 0)
        return mysql_fail(db, sql, error_r);
    return 0;
}

/* Runs a query that returns one row of one integer (NULL reads as 0). */
static int mysql_query_int(struct store_db *db, const char *sql, int64_t *value_r,
                           const char **error_r)
{
    struct mysql_impl *impl = db->impl;
    MYSQL_RES *res;
    MYSQL_ROW row;
    char *end;
    int ret = -1;

    if (mysql_exec(db, sql, error_r) < 0)
        return -1;
    res = mysql_store_result(impl->conn);
    if (res == NULL)
        return mysql_fail(db, sql, error_r);
    row = mysql_fetch_row(res);
    if (row == NULL) {
        snprintf(db->error, sizeof(db->error), "mysql: %s: no row", sql);
        *error_r = db->error;
    } else if (row[0] == NULL) {
        *value_r = 0;
        ret = 0;
    } else {
        errno = 0;
        *value_r = strtoll(row[0], &end, 10);
        if (errno != 0 || *end != '\0') {
            snprintf(db->error, sizeof(db->error), "mysql: %s: not an integer", sql);
            *error_r = db->error;
        } else {
            ret = 0;
        }
    }
    mysql_free_result(res);
    return ret;
}

static void mysql_close_impl(struct store_db *db)
{
    struct mysql_impl *impl = db->impl;

    if (impl == NULL)
        return;
    /* An open transaction is rolled back by the server when we go. */
    if (impl->conn != NULL)
        mysql_close(impl->conn);
    free(impl);
    db->impl = NULL;
}

static int mysql_open_impl(struct store_db *db, const char **error_r)
{
    const struct config *config = db->config;
    unsigned connect_timeout = STORE_MYSQL_CONNECT_TIMEOUT_S;
    unsigned io_timeout = STORE_MYSQL_IO_TIMEOUT_S;
    my_bool reconnect = 0;
    struct mysql_impl *impl;
    unsigned err;

    db->lost = false;
    impl = calloc(1, sizeof(*impl));
    if (impl == NULL) {
        snprintf(db->error, sizeof(db->error), "mysql: out of memory");
        *error_r = db->error;
        return -1;
    }
    db->impl = impl;
    impl->conn = mysql_init(NULL);
    if (impl->conn == NULL) {
        snprintf(db->error, sizeof(db->error), "mysql: out of memory");
        *error_r = db->error;
        goto fail;
    }
    mysql_optionsv(impl->conn, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
    mysql_optionsv(impl->conn, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
    mysql_optionsv(impl->conn, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
    mysql_optionsv(impl->conn, MYSQL_OPT_RECONNECT, &reconnect);
    mysql_optionsv(impl->conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");

    /* CLIENT_FOUND_ROWS: an UPDATE reports the rows it matched, not only
     * the rows it changed, so "not found" never depends on the values. */
    if (mysql_real_connect(impl->conn, config->store.mysql_host, config->store.mysql_user,
                           config->store.mysql_password, config->store.mysql_database,
                           config->store.mysql_port, config->store.mysql_socket,
                           CLIENT_FOUND_ROWS) == NULL) {
        err = mysql_errno(impl->conn);
        mysql_fail(db, "connect", error_r);
        /* Unreachable or restarting servers are worth retrying; bad
         * credentials or database names are configuration errors. */
        db->lost = err != ER_ACCESS_DENIED_ERROR && err != ER_DBACCESS_DENIED_ERROR &&
                   err != ER_BAD_DB_ERROR;
        goto fail;
    }
    if (mysql_autocommit(impl->conn, 0) != 0) {
        mysql_fail(db, "autocommit off", error_r);
        goto fail;
    }
    /* Strict mode: a value that does not fit is an error, never silently
     * truncated. */
    if (mysql_exec(db,
                   "SET SESSION sql_mode = "
                   "'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_"
                   "ZERO'",
                   error_r) < 0)
        goto fail;
    return 0;
fail:
    mysql_close_impl(db);
    return -1;
}

static int mysql_begin(struct store_db *db, const char **error_r)
{
    return mysql_exec(db, "START TRANSACTION", error_r);
}

static int mysql_commit_impl(struct store_db *db, const char **error_r)
{
    struct mysql_impl *impl = db->impl;

    if (mysql_commit(impl->conn) != 0)
        return mysql_fail(db, "COMMIT", error_r);
    return 0;
}

static int mysql_rollback_impl(struct store_db *db, const char **error_r)
{
    struct mysql_impl *impl = db->impl;

    if (mysql_rollback(impl->conn) != 0)
        return mysql_fail(db, "ROLLBACK", error_r);
    return 0;
}

static int mysql_migrate_locked(struct store_db *db, int *version_r, const char **error_r)
{
    const int latest = mysql_migrations[N_MIGRATIONS - 1].version;
    const char *ignored;
    int64_t version = 0;

    if (mysql_exec(db,
                   "CREATE TABLE IF NOT EXISTS schema_version (version INT NOT NULL)"
                   " ENGINE=InnoDB",
                   error_r) < 0)
        return -1;
    for (;;) {
        const struct store_migration *step = NULL;
        struct mysql_impl *impl = db->impl;

        /* A fresh transaction for each read, so that the version another
         * node wrote before we took the lock is seen. */
        if (mysql_commit_impl(db, error_r) < 0 ||
            mysql_query_int(db, "SELECT MAX(version) FROM schema_version", &version, error_r) < 0 ||
            mysql_commit_impl(db, error_r) < 0)
            return -1;
        if (version > latest) {
            snprintf(db->error, sizeof(db->error),
                     "mysql: database schema version %" PRId64 " is newer than this program's (%d)",
                     version, latest);
            *error_r = db->error;
            return -1;
        }
        for (size_t i = 0; i < N_MIGRATIONS; i++) {
            if (mysql_migrations[i].version > version) {
                step = &mysql_migrations[i];
                break;
            }
        }
        if (step == NULL)
            break;
        if (mysql_begin(db, error_r) < 0)
            return -1;
        for (const char *const *sql = step->statements; *sql != NULL; sql++) {
            if (mysql_exec(db, *sql, error_r) < 0)
                goto fail;
        }
        q_reset(impl);
        q_sql(impl, "INSERT INTO schema_version (version) VALUES (");
        q_int(impl, step->version);
        q_sql(impl, ")");
        if (q_run(db, "recording the schema version", error_r) < 0 ||
            mysql_commit_impl(db, error_r) < 0)
            goto fail;
    }
    *version_r = (int)version;
    return 0;
fail:
    mysql_rollback_impl(db, &ignored);
    return -1;
}

static int mysql_migrate(struct store_db *db, int *version_r, const char **error_r)
{
    const char *ignored;
    int64_t locked = 0;
    int ret;

    if (mysql_query_int(db,
                        "SELECT GET_LOCK(" MYSQL_MIGRATE_LOCK ", " MYSQL_MIGRATE_LOCK_WAIT_S ")",
                        &locked, error_r) < 0)
        return -1;
    if (locked != 1) {
        snprintf(db->error, sizeof(db->error),
                 "mysql: another process held the migration lock for %s s",
                 MYSQL_MIGRATE_LOCK_WAIT_S);
        *error_r = db->error;
        return -1;
    }
    ret = mysql_migrate_locked(db, version_r, error_r);
    /* The lock also goes with the connection, should this fail. */
    mysql_exec(db, "DO RELEASE_LOCK(" MYSQL_MIGRATE_LOCK ")", &ignored);
    mysql_commit_impl(db, &ignored);
    return ret;
}

/* The password-derived values for VALUES (...), in column order. */
static void q_secrets(struct mysql_impl *impl, const struct auth_secrets *s)
{
    q_hex(impl, s->salt, s->salt_len);
    q_sql(impl, ", ");
    q_int(impl, s->iterations);
    q_sql(impl, ", ");
    q_hex(impl, s->sha1_stored_key, AUTH_SHA1_LEN);
    q_sql(impl, ", ");
    q_hex(impl, s->sha1_server_key, AUTH_SHA1_LEN);
    q_sql(impl, ", ");
    q_hex(impl, s->sha256_stored_key, AUTH_SHA256_LEN);
    q_sql(impl, ", ");
    q_hex(impl, s->sha256_server_key, AUTH_SHA256_LEN);
    q_sql(impl, ", ");
    q_hex(impl, s->ha1_md5, AUTH_HA1_MD5_HEX);
    q_sql(impl, ", ");
    q_hex(impl, s->ha1_sha256, AUTH_HA1_SHA256_HEX);
}

static enum store_status mysql_account_insert(struct store_db *db, const char *domain,
                                              const char *username,
                                              const struct store_account *account,
                                              const char **error_r)
{
    struct mysql_impl *impl = db->impl;

    q_reset(impl);
    q_sql(impl, "INSERT INTO accounts (domain, username, salt, iterations, sha1_stored_key,"
                " sha1_server_key, sha256_stored_key, sha256_server_key, ha1_md5, ha1_sha256,"
                " created) VALUES (");
    q_str(impl, domain);
    q_sql(impl, ", ");
    q_str(impl, username);
    q_sql(impl, ", ");
    q_secrets(impl, &account->secrets);
    q_sql(impl, ", ");
    q_int(impl, account->created);
    q_sql(impl, ")");
    if (q_run(db, "insert into accounts", error_r) == 0)
        return STORE_OK;
    /* InnoDB undoes only the failed statement on a duplicate key, so the
     * rest of the batch's transaction stands. */
    if (!impl->overflow && mysql_errno(impl->conn) == ER_DUP_ENTRY)
        return STORE_CONFLICT;
    return STORE_FAILED;
}

static enum store_status mysql_account_delete(struct store_db *db, const char *domain,
                                              const char *username, const char **error_r)
{
    struct mysql_impl *impl = db->impl;

    q_reset(impl);
    q_sql(impl, "DELETE FROM accounts");
    q_key(impl, domain, username);
    if (q_run(db, "delete from accounts", error_r) < 0)
        return STORE_FAILED;
    return mysql_affected_rows(impl->conn) > 0 ? STORE_OK : STORE_NOT_FOUND;
}

static enum store_status mysql_account_update_secrets(struct store_db *db, const char *domain,
                                                      const char *username,
                                                      const struct auth_secrets *s,
                                                      const char **error_r)
{
    struct mysql_impl *impl = db->impl;

    q_reset(impl);
    q_sql(impl, "UPDATE accounts SET salt = ");
    q_hex(impl, s->salt, s->salt_len);
    q_sql(impl, ", iterations = ");
    q_int(impl, s->iterations);
    q_sql(impl, ", sha1_stored_key = ");
    q_hex(impl, s->sha1_stored_key, AUTH_SHA1_LEN);
    q_sql(impl, ", sha1_server_key = ");
    q_hex(impl, s->sha1_server_key, AUTH_SHA1_LEN);
    q_sql(impl, ", sha256_stored_key = ");
    q_hex(impl, s->sha256_stored_key, AUTH_SHA256_LEN);
    q_sql(impl, ", sha256_server_key = ");
    q_hex(impl, s->sha256_server_key, AUTH_SHA256_LEN);
    q_sql(impl, ", ha1_md5 = ");
    q_hex(impl, s->ha1_md5, AUTH_HA1_MD5_HEX);
    q_sql(impl, ", ha1_sha256 = ");
    q_hex(impl, s->ha1_sha256, AUTH_HA1_SHA256_HEX);
    q_key(impl, domain, username);
    if (q_run(db, "update accounts", error_r) < 0)
        return STORE_FAILED;
    /* With CLIENT_FOUND_ROWS this counts matched rows. */
    return mysql_affected_rows(impl->conn) > 0 ? STORE_OK : STORE_NOT_FOUND;
}

static bool parse_int64(const char *s, int64_t *v_r)
{
    char *end;

    if (s == NULL)
        return false;
    errno = 0;
    *v_r = strtoll(s, &end, 10);
    return errno == 0 && end != s && *end == '\0';
}

static enum store_status mysql_account_get(struct store_db *db, const char *domain,
                                           const char *username, struct store_account *account_r,
                                           const char **error_r)
{
    struct mysql_impl *impl = db->impl;
    struct store_column cols[STORE_COL_COUNT];
    enum store_status status;
    int64_t iterations, created;
    unsigned long *lengths;
    MYSQL_RES *res;
    MYSQL_ROW row;

    q_reset(impl);
    q_sql(impl, "SELECT salt, sha1_stored_key, sha1_server_key, sha256_stored_key,"
                " sha256_server_key, ha1_md5, ha1_sha256, iterations, created FROM accounts");
    q_key(impl, domain, username);
    if (q_run(db, "select from accounts", error_r) < 0)
        return STORE_FAILED;
    res = mysql_store_result(impl->conn);
    if (res == NULL) {
        mysql_fail(db, "select from accounts", error_r);
        return STORE_FAILED;
    }
    row = mysql_fetch_row(res);
    lengths = row != NULL ? mysql_fetch_lengths(res) : NULL;
    if (row == NULL) {
        status = STORE_NOT_FOUND;
    } else if (lengths == NULL || !parse_int64(row[STORE_COL_COUNT], &iterations) ||
               !parse_int64(row[STORE_COL_COUNT + 1], &created)) {
        memset(account_r, 0, sizeof(*account_r));
        status = STORE_INVALID;
    } else {
        /* The columns are in enum store_account_column order. */
        for (int i = 0; i < STORE_COL_COUNT; i++) {
            cols[i].ptr = row[i];
            cols[i].len = row[i] != NULL ? lengths[i] : 0;
        }
        status = store_account_from_row(account_r, cols, iterations, created);
    }
    mysql_free_result(res);
    return status;
}

static enum store_status mysql_account_list(struct store_db *db, const char *domain,
                                            store_list_cb *cb, void *ctx, const char **error_r)
{
    struct mysql_impl *impl = db->impl;
    MYSQL_RES *res;
    MYSQL_ROW row;
    bool more = true;

    q_reset(impl);
    q_sql(impl, "SELECT username FROM accounts WHERE domain = ");
    q_str(impl, domain);
    q_sql(impl, " ORDER BY username");
    if (q_run(db, "listing accounts", error_r) < 0)
        return STORE_FAILED;
    /* Rows are streamed rather than buffered: a domain may be large. */
    res = mysql_use_result(impl->conn);
    if (res == NULL) {
        mysql_fail(db, "listing accounts", error_r);
        return STORE_FAILED;
    }
    while (more && (row = mysql_fetch_row(res)) != NULL) {
        unsigned long *lengths = mysql_fetch_lengths(res);
        if (row[0] != NULL && lengths != NULL)
            more = cb(ctx, row[0], lengths[0]);
    }
    /* mysql_fetch_row returns NULL at the end and on errors alike. When
     * the callback stopped early, mysql_free_result skips the rest. */
    if (more && mysql_errno(impl->conn) != 0) {
        mysql_fail(db, "listing accounts", error_r);
        mysql_free_result(res);
        return STORE_FAILED;
    }
    mysql_free_result(res);
    return STORE_OK;
}

static enum store_status mysql_account_count(struct store_db *db, uint64_t *count_r,
                                             const char **error_r)
{
    int64_t count;

    if (mysql_query_int(db, "SELECT COUNT(*) FROM accounts", &count, error_r) < 0)
        return STORE_FAILED;
    *count_r = (uint64_t)count;
    return STORE_OK;
}

const struct store_backend_ops store_mysql_ops = {
    .name = "mysql",
    .open = mysql_open_impl,
    .close = mysql_close_impl,
    .begin = mysql_begin,
    .commit = mysql_commit_impl,
    .rollback = mysql_rollback_impl,
    .migrate = mysql_migrate,
    .account_insert = mysql_account_insert,
    .account_delete = mysql_account_delete,
    .account_update_secrets = mysql_account_update_secrets,
    .account_get = mysql_account_get,
    .account_list = mysql_account_list,
    .account_count = mysql_account_count,
};
