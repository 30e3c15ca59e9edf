/*
 * The storage test suite: the backend interface of workers/store_db.h and
 * the request layer above it (store_batch_*), driven directly, without a
 * broker. The same tests run against both backends, chosen by the
 * environment:
 *   SB_STORE_BACKEND=sqlite  a scratch database under SB_TEST_DIR (or /tmp)
 *   SB_STORE_BACKEND=mysql   the server at SB_MYSQL_SOCKET, database, user
 *                            and password "switchboard" (tests/mariadb.sh)
 * A second, raw connection (sqlite3 / Connector/C) resets the database,
 * looks at what was really stored, and plants failures (a trigger that
 * makes one insert fail, a killed connection).
 *
 * Schema v2 (per-user data for the XMPP worker) is tested through the
 * request layer, as the workers use it: the v1 -> v2 upgrade in place,
 * every op with its edge cases and caps, cross-user isolation, the
 * unregister cascade, a failed batch rolled back whole, and a 100,000-row
 * archive paged from the start, the middle and the end on its indexes.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mysql.h>
#include <sqlite3.h>

#include "shared/auth.h"
#include "shared/ipc.h"
#include "shared/log.h"
#include "tests/unit/check.h"
#include "workers/store_db.h"

#define PASSWORD "correct horse battery staple"

static bool use_mysql;
static char *hosts[] = {"example.org", "example.net"};
static struct config cfg;
static char test_dir[PATH_MAX], db_path[PATH_MAX + 16];

/* --- the raw connection --- */

static sqlite3 *raw_sqlite;
static MYSQL *raw_mysql;

static void raw_open(void)
{
    if (use_mysql) {
        raw_mysql = mysql_init(NULL);
        if (mysql_real_connect(raw_mysql, NULL, cfg.store.mysql_user, cfg.store.mysql_password,
                               cfg.store.mysql_database, 0, cfg.store.mysql_socket, 0) == NULL) {
            fprintf(stderr, "raw connection to %s: %s\n", cfg.store.mysql_socket,
                    mysql_error(raw_mysql));
            exit(1);
        }
    } else if (sqlite3_open(db_path, &raw_sqlite) != SQLITE_OK) {
        fprintf(stderr, "raw open %s failed\n", db_path);
        exit(1);
    }
}

static void raw_close(void)
{
    if (raw_mysql != NULL)
        mysql_close(raw_mysql);
    if (raw_sqlite != NULL)
        sqlite3_close(raw_sqlite);
    raw_mysql = NULL;
    raw_sqlite = NULL;
}

static int raw_exec(const char *sql)
{
    if (use_mysql) {
        if (mysql_query(raw_mysql, sql) != 0) {
            fprintf(stderr, "raw: %s: %s\n", sql, mysql_error(raw_mysql));
            return -1;
        }
        return 0;
    }
    char *err = NULL;
    if (sqlite3_exec(raw_sqlite, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "raw: %s: %s\n", sql, err);
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

/* One integer from a query; -1 on error. */
static int64_t raw_int(const char *sql)
{
    int64_t v = -1;

    if (use_mysql) {
        MYSQL_RES *res;
        MYSQL_ROW row;
        if (mysql_query(raw_mysql, sql) != 0 || (res = mysql_store_result(raw_mysql)) == NULL) {
            fprintf(stderr, "raw: %s: %s\n", sql, mysql_error(raw_mysql));
            return -1;
        }
        row = mysql_fetch_row(res);
        if (row != NULL && row[0] != NULL)
            v = strtoll(row[0], NULL, 10);
        mysql_free_result(res);
        return v;
    }
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(raw_sqlite, sql, -1, &stmt, NULL) != SQLITE_OK) {
        fprintf(stderr, "raw: %s: %s\n", sql, sqlite3_errmsg(raw_sqlite));
        return -1;
    }
    if (sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
}

/* --- set-up --- */

/* Every table of the schema, in the order they are dropped. */
static const char *const all_tables[] = {
    "accounts", "roster", "roster_version", "offline", "archive", "kv", "blocklist",
};
#define N_TABLES (sizeof(all_tables) / sizeof(all_tables[0]))
/* The tables schema v2 adds. */
#define FIRST_V2_TABLE 1

static void drop_tables(void)
{
    char sql[128];

    for (size_t i = 0; i < N_TABLES; i++) {
        snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS %s", all_tables[i]);
        CHECK(raw_exec(sql) == 0);
    }
    CHECK(raw_exec("DROP TABLE IF EXISTS schema_version") == 0);
}

/* Empties every table: each test starts from an empty database. */
static void wipe(void)
{
    char sql[128];

    for (size_t i = 0; i < N_TABLES; i++) {
        snprintf(sql, sizeof(sql), "DELETE FROM %s", all_tables[i]);
        CHECK(raw_exec(sql) == 0);
    }
}

static void setup(void)
{
    const char *backend = getenv("SB_STORE_BACKEND");
    const char *base = getenv("SB_TEST_DIR");

    use_mysql = backend != NULL && strcmp(backend, "mysql") == 0;
    if (backend != NULL && !use_mysql && strcmp(backend, "sqlite") != 0) {
        fprintf(stderr, "SB_STORE_BACKEND must be sqlite or mysql\n");
        exit(2);
    }
    cfg.hosts = hosts;
    cfg.n_hosts = sizeof(hosts) / sizeof(hosts[0]);
    cfg.store.batch_max = 64;
    if (use_mysql) {
        const char *sock = getenv("SB_MYSQL_SOCKET");
        if (sock == NULL) {
            fprintf(stderr, "SB_MYSQL_SOCKET is not set\n");
            exit(2);
        }
        cfg.store.backend = CONFIG_BACKEND_MYSQL;
        cfg.store.mysql_socket = (char *)sock;
        cfg.store.mysql_user = "switchboard";
        cfg.store.mysql_password = "switchboard";
        cfg.store.mysql_database = "switchboard";
    } else {
        snprintf(test_dir, sizeof(test_dir), "%s/store-XXXXXX", base != NULL ? base : "/tmp");
        if (mkdtemp(test_dir) == NULL) {
            fprintf(stderr, "mkdtemp %s: %s\n", test_dir, strerror(errno));
            exit(1);
        }
        snprintf(db_path, sizeof(db_path), "%s/store.db", test_dir);
        cfg.store.backend = CONFIG_BACKEND_SQLITE;
        cfg.store.sqlite_path = db_path;
    }
    raw_open();
    /* Start from an empty database, whatever an earlier run left. */
    drop_tables();
}

static void teardown(void)
{
    char path[PATH_MAX + 32];

    raw_close();
    if (!use_mysql) {
        static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
        for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
            snprintf(path, sizeof(path), "%s%s", db_path, suffix[i]);
            unlink(path);
        }
        rmdir(test_dir);
    }
}

static struct store_db *open_db(void)
{
    struct store_db *db = store_db_new(&cfg);
    const char *error = NULL;
    int version = -1;

    if (store_db_connect(db, &version, &error) < 0) {
        fprintf(stderr, "connect: %s\n", error);
        exit(1);
    }
    CHECK(version == STORE_SCHEMA_VERSION);
    return db;
}

static struct store_account make_account(const char *user, const char *domain, const char *password)
{
    struct store_account a;
    const char *error;

    CHECK(auth_secrets_derive(&a.secrets, user, domain, password, strlen(password),
                              AUTH_DEFAULT_ITERATIONS, &error) == 0);
    a.created = 1700000000;
    return a;
}

static bool same_secrets(const struct auth_secrets *a, const struct auth_secrets *b)
{
    return a->salt_len == b->salt_len && memcmp(a->salt, b->salt, a->salt_len) == 0 &&
           a->iterations == b->iterations &&
           memcmp(a->sha1_stored_key, b->sha1_stored_key, AUTH_SHA1_LEN) == 0 &&
           memcmp(a->sha1_server_key, b->sha1_server_key, AUTH_SHA1_LEN) == 0 &&
           memcmp(a->sha256_stored_key, b->sha256_stored_key, AUTH_SHA256_LEN) == 0 &&
           memcmp(a->sha256_server_key, b->sha256_server_key, AUTH_SHA256_LEN) == 0 &&
           strcmp(a->ha1_md5, b->ha1_md5) == 0 && strcmp(a->ha1_sha256, b->ha1_sha256) == 0;
}

/* The stored values are what auth.c derives from the password and the
 * stored salt, and none of them holds the password's bytes. */
static void check_secrets_for(const struct auth_secrets *s, const char *user, const char *domain,
                              const char *password)
{
    struct auth_secrets again;
    const char *error;
    const struct store_column fields[] = {
        {s->salt, s->salt_len},
        {s->sha1_stored_key, AUTH_SHA1_LEN},
        {s->sha1_server_key, AUTH_SHA1_LEN},
        {s->sha256_stored_key, AUTH_SHA256_LEN},
        {s->sha256_server_key, AUTH_SHA256_LEN},
        {s->ha1_md5, AUTH_HA1_MD5_HEX},
        {s->ha1_sha256, AUTH_HA1_SHA256_HEX},
    };

    CHECK(auth_secrets_derive_salt(&again, user, domain, password, strlen(password), s->salt,
                                   s->salt_len, s->iterations, &error) == 0);
    CHECK(same_secrets(s, &again));
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        CHECK(memmem(fields[i].ptr, fields[i].len, password, strlen(password)) == NULL);
}

/* --- the backend interface --- */

static int list_n;
static char list_names[16][STORE_MAX_USERNAME + 1];

static bool list_cb(void *ctx, const char *name, size_t len)
{
    (void)ctx;
    if (list_n < 16) {
        memcpy(list_names[list_n], name, len);
        list_names[list_n][len] = '\0';
    }
    list_n++;
    return true;
}

static bool list_stop_cb(void *ctx, const char *name, size_t len)
{
    int *seen = ctx;
    (void)name, (void)len;
    return ++*seen < 2;
}

/* Reads, like writes, run inside a transaction (the interface's contract:
 * MySQL would otherwise keep the implicit transaction and its snapshot). */
static int list_domain(struct store_db *db, const char *domain)
{
    const char *error;

    list_n = 0;
    CHECK(db->ops->begin(db, &error) == 0);
    CHECK(db->ops->account_list(db, domain, list_cb, NULL, &error) == STORE_OK);
    CHECK(db->ops->commit(db, &error) == 0);
    return list_n;
}

static uint64_t count_accounts(struct store_db *db)
{
    const char *error;
    uint64_t n = UINT64_MAX;

    CHECK(db->ops->begin(db, &error) == 0);
    CHECK(db->ops->account_count(db, &n, &error) == STORE_OK);
    CHECK(db->ops->commit(db, &error) == 0);
    return n;
}

static enum store_status get_account(struct store_db *db, const char *domain, const char *user,
                                     struct store_account *account_r)
{
    enum store_status status;
    const char *error;

    CHECK(db->ops->begin(db, &error) == 0);
    status = db->ops->account_get(db, domain, user, account_r, &error);
    CHECK(db->ops->commit(db, &error) == 0);
    return status;
}

static void test_migrations(void)
{
    struct store_db *db;
    const char *error = NULL;
    int version = -1;

    /* From empty. */
    CHECK(raw_int("SELECT COUNT(*) FROM accounts") == -1); /* no such table yet */
    db = open_db();
    CHECK(raw_int("SELECT COUNT(*) FROM schema_version") == STORE_SCHEMA_VERSION);
    CHECK(raw_int("SELECT MAX(version) FROM schema_version") == STORE_SCHEMA_VERSION);
    CHECK(raw_int("SELECT COUNT(*) FROM accounts") == 0);
    for (size_t i = FIRST_V2_TABLE; i < N_TABLES; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", all_tables[i]);
        CHECK(raw_int(sql) == 0);
    }

    /* Again on the same connection, and after reconnecting: nothing to do. */
    CHECK(db->ops->migrate(db, &version, &error) == 0);
    CHECK(version == STORE_SCHEMA_VERSION);
    CHECK(store_db_connect(db, &version, &error) == 0);
    CHECK(version == STORE_SCHEMA_VERSION);
    CHECK(raw_int("SELECT COUNT(*) FROM schema_version") == STORE_SCHEMA_VERSION);

    /* Data survives a re-run. */
    struct store_account a = make_account("keeper", "example.org", PASSWORD);
    CHECK(db->ops->begin(db, &error) == 0);
    CHECK(db->ops->account_insert(db, "example.org", "keeper", &a, &error) == STORE_OK);
    CHECK(db->ops->commit(db, &error) == 0);
    CHECK(store_db_connect(db, &version, &error) == 0);
    CHECK(count_accounts(db) == 1);

    /* A database from a newer program is refused, and the handle left closed. */
    CHECK(raw_exec("INSERT INTO schema_version (version) VALUES (99)") == 0);
    error = NULL;
    CHECK(store_db_connect(db, &version, &error) < 0);
    CHECK(error != NULL && strstr(error, "newer") != NULL);
    CHECK(db->impl == NULL && !db->lost);
    CHECK(raw_exec("DELETE FROM schema_version WHERE version = 99") == 0);
    CHECK(store_db_connect(db, &version, &error) == 0);

    CHECK(db->ops->begin(db, &error) == 0);
    CHECK(db->ops->account_delete(db, "example.org", "keeper", &error) == STORE_OK);
    CHECK(db->ops->commit(db, &error) == 0);
    store_db_free(&db);
    CHECK(db == NULL);
}

static void test_open_failures(void)
{
    struct config bad = cfg;
    struct store_db *db;
    const char *error = NULL;

    if (use_mysql) {
        /* No server at this socket: transient, worth retrying. */
        bad.store.mysql_socket = "/nonexistent/mysql.sock";
        db = store_db_new(&bad);
        CHECK(store_db_connect(db, NULL, &error) < 0);
        CHECK(db->lost && db->impl == NULL);
        store_db_free(&db);
        /* Bad credentials: a configuration error. */
        bad = cfg;
        bad.store.mysql_password = "wrong";
        db = store_db_new(&bad);
        CHECK(store_db_connect(db, NULL, &error) < 0);
        CHECK(!db->lost && db->impl == NULL);
        CHECK(error != NULL && strstr(error, "connect") != NULL);
        store_db_free(&db);
    } else {
        bad.store.sqlite_path = "/nonexistent/dir/store.db";
        db = store_db_new(&bad);
        CHECK(store_db_connect(db, NULL, &error) < 0);
        CHECK(!db->lost && db->impl == NULL);
        CHECK(error != NULL && strstr(error, "/nonexistent/dir/store.db") != NULL);
        store_db_free(&db);
    }
}

static void test_accounts(void)
{
    struct store_db *db = open_db();
    struct store_account alice = make_account("alice", "example.org", PASSWORD);
    struct store_account alice2 = make_account("alice", "example.net", "other password");
    struct store_account got;
    const char *error;

    CHECK(db->ops->begin(db, &error) == 0);
    CHECK(db->ops->account_insert(db, "example.org", "alice", &alice, &error) == STORE_OK);
    /* Same key: conflict, and the transaction goes on. */
    CHECK(db->ops->account_insert(db, "example.org", "alice", &alice2, &error) == STORE_CONFLICT);
    /* Same user in another domain is another account. */
    CHECK(db->ops->account_insert(db, "example.net", "alice", &alice2, &error) == STORE_OK);
    CHECK(db->ops->account_insert(db, "example.org", "bob", &alice2, &error) == STORE_OK);
    /* Keys compare bytewise: the backend itself does not fold case (the
     * request layer does, before). */
    CHECK(db->ops->account_insert(db, "example.org", "Bob", &alice2, &error) == STORE_OK);
    CHECK(db->ops->commit(db, &error) == 0);

    CHECK(get_account(db, "example.org", "alice", &got) == STORE_OK);
    CHECK(same_secrets(&got.secrets, &alice.secrets));
    CHECK(got.created == 1700000000);
    check_secrets_for(&got.secrets, "alice", "example.org", PASSWORD);
    /* The conflicting insert changed nothing. */
    CHECK(!same_secrets(&got.secrets, &alice2.secrets));
    CHECK(get_account(db, "example.net", "alice", &got) == STORE_OK);
    check_secrets_for(&got.secrets, "alice", "example.net", "other password");
    CHECK(get_account(db, "example.org", "carol", &got) == STORE_NOT_FOUND);
    CHECK(get_account(db, "example.com", "alice", &got) == STORE_NOT_FOUND);
    CHECK(get_account(db, "example.org", "ALICE", &got) == STORE_NOT_FOUND);

    /* Nothing stored holds the password, in any column. */
    char sql[512], hex[2 * sizeof(PASSWORD) + 1];
    auth_hex_encode(PASSWORD, strlen(PASSWORD), hex);
    snprintf(sql, sizeof(sql),
             "SELECT COUNT(*) FROM accounts WHERE INSTR(salt, X'%s') > 0 OR"
             " INSTR(sha1_stored_key, X'%s') > 0 OR INSTR(sha256_stored_key, X'%s') > 0 OR"
             " INSTR(ha1_md5, X'%s') > 0 OR INSTR(username, X'%s') > 0",
             hex, hex, hex, hex, hex);
    CHECK(raw_int(sql) == 0);
    CHECK(raw_int("SELECT COUNT(*) FROM accounts WHERE INSTR(username, X'616c696365') > 0") ==
          2); /* the same query finds what is there */

    CHECK(list_domain(db, "example.org") == 3);
    CHECK_STR(list_names[0], "Bob");
    CHECK_STR(list_names[1], "alice");
    CHECK_STR(list_names[2], "bob");
    CHECK(list_domain(db, "example.net") == 1);
    CHECK(list_domain(db, "example.com") == 0);
    CHECK(count_accounts(db) == 4);
    int seen = 0;
    CHECK(db->ops->begin(db, &error) == 0);
    CHECK(db->ops->account_list(db, "example.org", list_stop_cb, &seen, &error) == STORE_OK);
    CHECK(db->ops->commit(db, &error) == 0);
    CHECK(seen == 2);
    /* The connection is usable after a list that stopped early. */
    CHECK(count_accounts(db) == 4);

    /* Password change: new secrets, same account. */
    struct store_account newpw = make_account("alice", "example.org", "new password");
    CHECK(db->ops->begin(db, &error) == 0);
    CHECK(db->ops->account_update_secrets(db, "example.org", "alice", &newpw.secrets, &error) ==
          STORE_OK);
    CHECK(db->ops->account_update_secrets(db, "example.org", "carol", &newpw.secrets, &error) ==
          STORE_NOT_FOUND);
    /* The same values again still count as found. */
    CHECK(db->ops->account_update_secrets(db, "example.org", "alice", &newpw.secrets, &error) ==
          STORE_OK);
    CHECK(db->ops->commit(db, &error) == 0);
    CHECK(get_account(db, "example.org", "alice", &got) == STORE_OK);
    check_secrets_for(&got.secrets, "alice", "example.org", "new password");
    CHECK(got.created == 1700000000);

    /* Unregister. */
    CHECK(db->ops->begin(db, &error) == 0);
    CHECK(db->ops->account_delete(db, "example.org", "alice", &error) == STORE_OK);
    CHECK(db->ops->account_delete(db, "example.org", "alice", &error) == STORE_NOT_FOUND);
    CHECK(db->ops->account_delete(db, "example.org", "Bob", &error) == STORE_OK);
    CHECK(db->ops->commit(db, &error) == 0);
    CHECK(get_account(db, "example.org", "alice", &got) == STORE_NOT_FOUND);
    CHECK(get_account(db, "example.net", "alice", &got) == STORE_OK);
    CHECK(count_accounts(db) == 2);

    /* A corrupt row is reported as such, not as an error of the transaction. */
    CHECK(raw_exec("UPDATE accounts SET sha1_stored_key = X'0102' WHERE username = 'bob'") == 0);
    CHECK(get_account(db, "example.org", "bob", &got) == STORE_INVALID);

    CHECK(db->ops->begin(db, &error) == 0);
    CHECK(db->ops->account_delete(db, "example.org", "bob", &error) == STORE_OK);
    CHECK(db->ops->account_delete(db, "example.net", "alice", &error) == STORE_OK);
    CHECK(db->ops->commit(db, &error) == 0);
    CHECK(count_accounts(db) == 0);
    store_db_free(&db);
}

static void test_unicode(void)
{
    /* Bytewise order: "zoe" < "émile" (c3 a9) < "ünïcødé" (c3 bc) < "日本語" (e6). */
    static const char *const names[] = {"日本語", "ünïcødé", "émile", "Émile", "zoe"};
    static const char *const sorted[] = {"zoe", "Émile", "émile", "ünïcødé", "日本語"};
    struct store_db *db = open_db();
    struct store_account a = make_account("x", "example.org", PASSWORD), got;
    const char *error;

    CHECK(db->ops->begin(db, &error) == 0);
    for (size_t i = 0; i < 5; i++)
        CHECK(db->ops->account_insert(db, "example.org", names[i], &a, &error) == STORE_OK);
    CHECK(db->ops->account_insert(db, "example.org", "émile", &a, &error) == STORE_CONFLICT);
    CHECK(db->ops->commit(db, &error) == 0);
    CHECK(list_domain(db, "example.org") == 5);
    for (int i = 0; i < 5; i++)
        CHECK_STR(list_names[i], sorted[i]);
    CHECK(get_account(db, "example.org", "日本語", &got) == STORE_OK);
    CHECK(same_secrets(&got.secrets, &a.secrets));
    CHECK(get_account(db, "example.org", "emile", &got) == STORE_NOT_FOUND);

    CHECK(db->ops->begin(db, &error) == 0);
    for (size_t i = 0; i < 5; i++)
        CHECK(db->ops->account_delete(db, "example.org", names[i], &error) == STORE_OK);
    CHECK(db->ops->commit(db, &error) == 0);
    store_db_free(&db);
}

static void test_rollback(void)
{
    struct store_db *db = open_db();
    struct store_account a = make_account("carol", "example.org", PASSWORD), got;
    const char *error;

    CHECK(db->ops->begin(db, &error) == 0);
    CHECK(db->ops->account_insert(db, "example.org", "carol", &a, &error) == STORE_OK);
    CHECK(db->ops->account_insert(db, "example.org", "dave", &a, &error) == STORE_OK);
    CHECK(db->ops->account_get(db, "example.org", "carol", &got, &error) == STORE_OK);
    CHECK(db->ops->rollback(db, &error) == 0);
    CHECK(get_account(db, "example.org", "carol", &got) == STORE_NOT_FOUND);
    CHECK(count_accounts(db) == 0);
    CHECK(raw_int("SELECT COUNT(*) FROM accounts") == 0);
    store_db_free(&db);
    /* Nothing appears after reopening either. */
    db = open_db();
    CHECK(count_accounts(db) == 0);
    store_db_free(&db);
}

static void test_many(void)
{
    struct store_db *db = open_db();
    struct store_account a = make_account("x", "example.net", PASSWORD);
    const char *error;
    char name[32];

    CHECK(db->ops->begin(db, &error) == 0);
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "user%04d", 1999 - i);
        CHECK(db->ops->account_insert(db, "example.net", name, &a, &error) == STORE_OK);
    }
    CHECK(db->ops->commit(db, &error) == 0);
    CHECK(raw_int("SELECT COUNT(*) FROM accounts") == 2000);
    CHECK(list_domain(db, "example.net") == 2000);
    CHECK_STR(list_names[0], "user0000");
    CHECK_STR(list_names[15], "user0015");

    CHECK(raw_exec("DELETE FROM accounts") == 0);
    store_db_free(&db);
}

/* --- usernames --- */

static void test_usernames(void)
{
    char out[STORE_MAX_USERNAME + 1], big[STORE_MAX_USERNAME + 2];
    const char *error;

    CHECK(store_username_normalize("Alice", 5, out, &error) == 5);
    CHECK_STR(out, "alice");
    CHECK(store_username_normalize("ÉMILE.Z_9-x", 12, out, &error) == 12);
    CHECK_STR(out, "Émile.z_9-x"); /* non-ASCII kept as sent (no PRECIS yet) */
    CHECK(store_username_normalize("日本語", strlen("日本語"), out, &error) > 0);
    CHECK_STR(out, "日本語");

    static const char *const refused[] = {
        "",
        "a b",
        "a\tb",
        "a\"b",
        "a&b",
        "a'b",
        "a/b",
        "a:b",
        "a<b",
        "a>b",
        "a@b",
        "a\x7f",
        "a\x01",
        "\xc2\x85",
        "\xc2\xa0x",
        "a\xe3\x80\x80",
        "\xc0\xaf",
        "\xed\xa0\x80",
        "\xf4\x90\x80\x80",
        "\xe6\x97",
        "\xff",
        "a\xe2\x80\xa8",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        error = NULL;
        if (store_username_normalize(refused[i], strlen(refused[i]), out, &error) >= 0)
            fprintf(stderr, "accepted refused[%zu]\n", i);
        CHECK(error != NULL);
    }
    CHECK(store_username_normalize("a\0b", 3, out, &error) < 0);

    memset(big, 'a', sizeof(big));
    CHECK(store_username_normalize(big, STORE_MAX_USERNAME, out, &error) == STORE_MAX_USERNAME);
    CHECK(store_username_normalize(big, STORE_MAX_USERNAME + 1, out, &error) < 0);

    CHECK(store_domain_lookup(&cfg, "example.org", 11) == hosts[0]);
    CHECK(store_domain_lookup(&cfg, "EXAMPLE.Net", 11) == hosts[1]);
    CHECK(store_domain_lookup(&cfg, "example.or", 10) == NULL);
    CHECK(store_domain_lookup(&cfg, "example.orgx", 12) == NULL);
    CHECK(store_domain_lookup(&cfg, "", 0) == NULL);
}

/* --- the request layer --- */

#define MAX_RESPONSES 128
/* A delta of 1,000 tombstones, with room to spare. */
#define MAX_KEPT_ARGS 1100

/* One response as the broker would forward it. Each kept ARG is a copy
 * (run() frees them before the next batch). */
struct response {
    uint32_t worker, req_id, code, n_arg;
    char reason[128];
    struct {
        uint8_t *data;
        uint32_t len;
    } args[MAX_KEPT_ARGS];
};

static struct response responses[MAX_RESPONSES];
static size_t n_responses;

static void free_responses(void)
{
    for (size_t i = 0; i < n_responses; i++) {
        for (uint32_t k = 0; k < MAX_KEPT_ARGS; k++)
            free(responses[i].args[k].data);
    }
    n_responses = 0;
}

static void collect(void *ctx, const struct ipc_msg *m)
{
    struct response *r;
    struct ipc_slice arg;
    uint32_t offset = 0, i = 0;

    (void)ctx;
    CHECK(m->type == IPC_RESPONSE);
    if (n_responses == MAX_RESPONSES)
        return;
    r = &responses[n_responses++];
    memset(r, 0, sizeof(*r));
    r->worker = m->worker;
    r->req_id = m->req_id;
    r->code = m->code;
    r->n_arg = m->n_arg;
    ipc_slice_cstr(m->reason, r->reason, sizeof(r->reason));
    while (ipc_msg_each(m, IPC_F_ARG, &offset, &arg) == 1 && i < MAX_KEPT_ARGS) {
        /* At least one byte, so that an empty ARG has a pointer too. */
        r->args[i].data = malloc(arg.len + 1);
        CHECK(r->args[i].data != NULL);
        memcpy(r->args[i].data, arg.ptr, arg.len);
        r->args[i].len = arg.len;
        i++;
    }
}

static bool arg_is(const struct response *r, uint32_t i, const char *s)
{
    return i < MAX_KEPT_ARGS && r->args[i].len == strlen(s) &&
           memcmp(r->args[i].data, s, r->args[i].len) == 0;
}

/* Queues a request built like the broker would forward it. args is a
 * list of NUL-terminated strings ending with NULL; a (size_t) length
 * follows each when lens is true. */
static bool queue(struct store_batch *b, uint32_t req_id, const char *op, int n_args,
                  const char *const *args, const size_t *lens)
{
    struct ipc_writer w;
    struct ipc_cursor cur;
    struct ipc_msg m;
    const uint8_t *frame;
    const char *error;
    size_t len;
    bool ok;

    ipc_writer_init(&w);
    ipc_msg_begin(&w, IPC_REQUEST);
    ipc_put_str(&w, IPC_F_TO, "store");
    ipc_put_u32(&w, IPC_F_REQ_ID, req_id);
    ipc_put_str(&w, IPC_F_OP, op);
    ipc_put_u32(&w, IPC_F_WORKER, 7);
    for (int i = 0; i < n_args; i++)
        ipc_put_bytes(&w, IPC_F_ARG, args[i], lens != NULL ? lens[i] : strlen(args[i]));
    CHECK(ipc_msg_end(&w));
    frame = ipc_writer_frame(&w, &len);
    CHECK(ipc_frame_open(&cur, frame, len, &error) == 0);
    CHECK(ipc_frame_next(&cur, &m, &error) == 1);
    ok = store_batch_add(b, &m);
    /* The batch must not keep pointers into the frame: scribble over it. */
    memset(w.buf, 0xaa, w.len);
    ipc_writer_free(&w);
    return ok;
}

#define Q(b, id, op, ...)                                                                          \
    do {                                                                                           \
        const char *const q_args_[] = {__VA_ARGS__};                                               \
        CHECK(queue(b, id, op, (int)(sizeof(q_args_) / sizeof(q_args_[0])) - 1, q_args_, NULL));   \
    } while (0)

static void run(struct store_batch *b)
{
    free_responses();
    store_batch_run(b, collect, NULL);
    CHECK(store_batch_pending(b) == 0);
}

static void test_batch_ops(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 64);
    char longpw[AUTH_MAX_PASSWORD + 2];
    uint8_t salt[AUTH_MAX_SALT];
    size_t salt_len;

    memset(longpw, 'p', sizeof(longpw));
    longpw[AUTH_MAX_PASSWORD + 1] = '\0';

    Q(b, 1, "account.register", "dave", "example.org", PASSWORD, NULL);
    Q(b, 2, "account.register", "dave", "example.org", "again", NULL);    /* same batch */
    Q(b, 3, "account.register", "DAVE", "EXAMPLE.ORG", "case", NULL);     /* folded */
    Q(b, 4, "account.register", "da ve", "example.org", "x", NULL);       /* bad user */
    Q(b, 5, "account.register", "erin", "example.com", "x", NULL);        /* unknown domain */
    Q(b, 6, "account.register", "erin", "example.org", "", NULL);         /* empty password */
    Q(b, 7, "account.register", "erin", "example.org", longpw, NULL);     /* 1024 bytes */
    Q(b, 8, "account.register", "erin", "example.org", longpw + 1, NULL); /* 1023 bytes */
    Q(b, 9, "account.register", "erin", "example.org", NULL);             /* too few args */
    Q(b, 10, "account.unregister", "erin", "example.org", "extra", NULL); /* too many */
    Q(b, 11, "account.frobnicate", NULL);                                 /* unknown op */
    Q(b, 12, "store.ping", NULL);
    Q(b, 13, "account.count", NULL);
    Q(b, 14, "account.register", "Ünï", "example.org", "pw", NULL);
    Q(b, 15, "account.list", "Example.Org", NULL);
    Q(b, 16, "account.list", "example.com", NULL);
    Q(b, 17, "account.get", "Dave", "example.org", NULL);
    Q(b, 18, "account.get", "nobody", "example.org", NULL);
    Q(b, 19, "account.register", "frank", "example.org", "tab\there", NULL);
    Q(b, 20, "account.get", "a@b", "example.org", NULL);
    CHECK(store_batch_pending(b) == 20);
    run(b);

    CHECK(n_responses == 20);
    for (size_t i = 0; i < n_responses; i++) {
        CHECK(responses[i].req_id == i + 1); /* in request order */
        CHECK(responses[i].worker == 7);
    }
    static const uint32_t want[] = {
        IPC_CODE_OK,          IPC_CODE_CONFLICT,    IPC_CODE_CONFLICT,    IPC_CODE_BAD_REQUEST,
        IPC_CODE_BAD_REQUEST, IPC_CODE_BAD_REQUEST, IPC_CODE_BAD_REQUEST, IPC_CODE_OK,
        IPC_CODE_BAD_REQUEST, IPC_CODE_BAD_REQUEST, IPC_CODE_BAD_REQUEST, IPC_CODE_OK,
        IPC_CODE_OK,          IPC_CODE_OK,          IPC_CODE_OK,          IPC_CODE_BAD_REQUEST,
        IPC_CODE_OK,          IPC_CODE_NOT_FOUND,   IPC_CODE_BAD_REQUEST, IPC_CODE_BAD_REQUEST,
    };
    for (size_t i = 0; i < 20; i++) {
        if (responses[i].code != want[i])
            fprintf(stderr, "request %zu: code %u (%s), want %u\n", i + 1, responses[i].code,
                    responses[i].reason, want[i]);
        CHECK(responses[i].code == want[i]);
    }
    CHECK_STR(responses[4].reason, "unknown domain");
    CHECK_STR(responses[10].reason, "unknown op");
    CHECK_STR(responses[8].reason, "wrong number of arguments");
    /* The count saw the two accounts registered before it in the batch. */
    CHECK(responses[12].n_arg == 1 && arg_is(&responses[12], 0, "2"));
    /* The list, sorted bytewise, including the one registered after the count. */
    CHECK(responses[14].n_arg == 3);
    CHECK(arg_is(&responses[14], 0, "dave"));
    CHECK(arg_is(&responses[14], 1, "erin"));
    CHECK(arg_is(&responses[14], 2, "Ünï")); /* non-ASCII is not case-folded */
    /* get: salt, iterations, 4 keys, 2 HA1 values, all matching a fresh
     * derivation from the password and the returned salt. */
    const struct response *get = &responses[16];
    CHECK(get->n_arg == 8);
    CHECK(arg_is(get, 1, "4096"));
    salt_len = get->args[0].len;
    CHECK(salt_len == AUTH_SALT_LEN);
    memcpy(salt, get->args[0].data, salt_len);
    struct auth_secrets s;
    const char *error;
    CHECK(auth_secrets_derive_salt(&s, "dave", "example.org", PASSWORD, strlen(PASSWORD), salt,
                                   salt_len, 4096, &error) == 0);
    CHECK(get->args[2].len == AUTH_SHA1_LEN &&
          memcmp(get->args[2].data, s.sha1_stored_key, AUTH_SHA1_LEN) == 0);
    CHECK(get->args[3].len == AUTH_SHA1_LEN &&
          memcmp(get->args[3].data, s.sha1_server_key, AUTH_SHA1_LEN) == 0);
    CHECK(get->args[4].len == AUTH_SHA256_LEN &&
          memcmp(get->args[4].data, s.sha256_stored_key, AUTH_SHA256_LEN) == 0);
    CHECK(get->args[5].len == AUTH_SHA256_LEN &&
          memcmp(get->args[5].data, s.sha256_server_key, AUTH_SHA256_LEN) == 0);
    CHECK(arg_is(get, 6, s.ha1_md5));
    CHECK(arg_is(get, 7, s.ha1_sha256));
    for (int i = 0; i < 8; i++)
        CHECK(memmem(get->args[i].data, get->args[i].len, PASSWORD, strlen(PASSWORD)) == NULL);

    /* passwd, then unregister. */
    Q(b, 30, "account.passwd", "dave", "example.org", "second", NULL);
    Q(b, 31, "account.passwd", "nobody", "example.org", "second", NULL);
    Q(b, 32, "account.passwd", "dave", "example.org", "", NULL);
    Q(b, 33, "account.get", "dave", "example.org", NULL);
    Q(b, 34, "account.unregister", "erin", "example.org", NULL);
    Q(b, 35, "account.unregister", "erin", "example.org", NULL);
    Q(b, 36, "account.unregister", "erin", "example.net", NULL);
    Q(b, 37, "account.count", NULL);
    run(b);
    CHECK(n_responses == 8);
    CHECK(responses[0].code == IPC_CODE_OK);
    CHECK(responses[1].code == IPC_CODE_NOT_FOUND);
    CHECK(responses[2].code == IPC_CODE_BAD_REQUEST);
    CHECK(responses[3].code == IPC_CODE_OK && responses[3].n_arg == 8);
    CHECK(responses[3].args[0].len != salt_len ||
          memcmp(responses[3].args[0].data, salt, salt_len) != 0); /* a new salt */
    CHECK(auth_secrets_derive_salt(&s, "dave", "example.org", "second", 6,
                                   responses[3].args[0].data, responses[3].args[0].len, 4096,
                                   &error) == 0);
    CHECK(memcmp(responses[3].args[4].data, s.sha256_stored_key, AUTH_SHA256_LEN) == 0);
    CHECK(responses[4].code == IPC_CODE_OK);
    CHECK(responses[5].code == IPC_CODE_NOT_FOUND);
    CHECK(responses[6].code == IPC_CODE_NOT_FOUND);
    CHECK(arg_is(&responses[7], 0, "2"));

    /* A request without WORKER cannot be answered and is not queued. */
    {
        struct ipc_writer w;
        struct ipc_cursor cur;
        struct ipc_msg m;
        const uint8_t *frame;
        size_t len;
        ipc_writer_init(&w);
        ipc_msg_begin(&w, IPC_REQUEST);
        ipc_put_str(&w, IPC_F_TO, "store");
        ipc_put_u32(&w, IPC_F_REQ_ID, 1);
        ipc_put_str(&w, IPC_F_OP, "store.ping");
        CHECK(ipc_msg_end(&w));
        frame = ipc_writer_frame(&w, &len);
        CHECK(ipc_frame_open(&cur, frame, len, &error) == 0);
        CHECK(ipc_frame_next(&cur, &m, &error) == 1);
        CHECK(!store_batch_add(b, &m));
        CHECK(store_batch_pending(b) == 0);
        ipc_writer_free(&w);
    }

    CHECK(raw_exec("DELETE FROM accounts") == 0);
    store_batch_free(&b);
    CHECK(b == NULL);
    store_db_free(&db);
}

static void test_batch_limits(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 50);
    char name[32];

    /* Many registrations in one batch: one transaction, all acknowledged. */
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof(name), "bulk%02d", i);
        Q(b, (uint32_t)i, "account.register", name, "example.net", "pw", NULL);
    }
    CHECK(store_batch_full(b));
    CHECK(!queue(b, 99, "store.ping", 0, NULL, NULL)); /* full: refused */
    run(b);
    CHECK(n_responses == 50);
    for (size_t i = 0; i < n_responses; i++)
        CHECK(responses[i].code == IPC_CODE_OK);
    CHECK(raw_int("SELECT COUNT(*) FROM accounts") == 50);
    CHECK(!store_batch_full(b));

    Q(b, 1, "account.list", "example.net", NULL);
    run(b);
    CHECK(n_responses == 1 && responses[0].n_arg == 50);
    CHECK(arg_is(&responses[0], 0, "bulk00") && arg_is(&responses[0], 7, "bulk07"));

    CHECK(raw_exec("DELETE FROM accounts") == 0);
    store_batch_free(&b);
    store_db_free(&db);
}

/* Responses that do not fit one frame: a transaction is cut short, its
 * part committed and answered, and the rest runs in the next one; a list
 * longer than one message allows is refused whole. */
static void test_big_lists(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 16);
    struct store_account a = make_account("x", "example.net", PASSWORD);
    char name[1001];
    const char *error;
    int i;

    /* 1500 names of 1000 bytes: a 1.5 MB response each. */
    CHECK(db->ops->begin(db, &error) == 0);
    for (i = 0; i < 1500; i++) {
        snprintf(name, sizeof(name), "%04d%0996d", i, 0);
        CHECK(db->ops->account_insert(db, "example.net", name, &a, &error) == STORE_OK);
    }
    CHECK(db->ops->commit(db, &error) == 0);
    for (uint32_t k = 0; k < 6; k++)
        Q(b, k, "account.list", "example.net", NULL);
    Q(b, 6, "account.register", "last", "example.org", "pw", NULL);
    run(b);
    CHECK(n_responses == 7);
    for (size_t k = 0; k < 6 && k < n_responses; k++) {
        CHECK(responses[k].req_id == k);
        CHECK(responses[k].code == IPC_CODE_OK && responses[k].n_arg == 1500);
        CHECK_STR(responses[k].reason, "");
        CHECK(responses[k].args[1].len == 1000 &&
              memcmp(responses[k].args[1].data, "0001000", 7) == 0);
    }
    CHECK(responses[6].code == IPC_CODE_OK);

    /* 2100 such names do not fit one response: as many as fit, in order,
     * and a REASON that says the list is cut. */
    CHECK(db->ops->begin(db, &error) == 0);
    for (; i < 2100; i++) {
        snprintf(name, sizeof(name), "%04d%0996d", i, 0);
        CHECK(db->ops->account_insert(db, "example.net", name, &a, &error) == STORE_OK);
    }
    CHECK(db->ops->commit(db, &error) == 0);
    Q(b, 1, "account.list", "example.net", NULL);
    Q(b, 2, "account.count", NULL);
    run(b);
    CHECK(n_responses == 2);
    CHECK(responses[0].code == IPC_CODE_OK);
    CHECK(responses[0].n_arg > 1900 && responses[0].n_arg < 2100);
    CHECK(responses[0].args[7].len == 1000 && memcmp(responses[0].args[7].data, "0007000", 7) == 0);
    CHECK(strncmp(responses[0].reason, "truncated: ", 11) == 0);
    CHECK(responses[1].code == IPC_CODE_OK && arg_is(&responses[1], 0, "2101"));

    CHECK(raw_exec("DELETE FROM accounts") == 0);
    store_batch_free(&b);
    store_db_free(&db);
}

/* A database failure in the middle of a batch: every request of the batch
 * is answered INTERNAL and nothing of it is committed. */
static void test_batch_failure(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 16);

    if (use_mysql)
        CHECK(raw_exec("CREATE TRIGGER boom BEFORE INSERT ON accounts FOR EACH ROW"
                       " IF NEW.username = 'boom' THEN"
                       " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom'; END IF") == 0);
    else
        CHECK(raw_exec("CREATE TRIGGER boom BEFORE INSERT ON accounts"
                       " WHEN NEW.username = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END") == 0);

    Q(b, 1, "account.register", "before", "example.org", "pw", NULL);
    Q(b, 2, "store.ping", NULL);
    Q(b, 3, "account.register", "boom", "example.org", "pw", NULL);
    Q(b, 4, "account.register", "after", "example.org", "pw", NULL);
    Q(b, 5, "account.frobnicate", NULL);
    run(b);
    CHECK(n_responses == 5);
    for (size_t i = 0; i < n_responses; i++) {
        CHECK(responses[i].req_id == i + 1);
        CHECK(responses[i].code == IPC_CODE_INTERNAL);
    }
    CHECK(raw_int("SELECT COUNT(*) FROM accounts") == 0);

    /* The store goes on: the next batch works. */
    CHECK(raw_exec("DROP TRIGGER boom") == 0);
    Q(b, 6, "account.register", "before", "example.org", "pw", NULL);
    run(b);
    CHECK(n_responses == 1 && responses[0].code == IPC_CODE_OK);
    CHECK(raw_int("SELECT COUNT(*) FROM accounts") == 1);

    CHECK(raw_exec("DELETE FROM accounts") == 0);
    store_batch_free(&b);
    store_db_free(&db);
}

/* MySQL: the server drops the store's connection between two batches (a
 * restart, wait_timeout); the next batch reconnects and is retried once. */
static void test_reconnect(void)
{
    struct store_db *db;
    struct store_batch *b;
    char sql[128];
    int64_t id;

    if (!use_mysql)
        return;
    db = open_db();
    b = store_batch_new(db, 16);
    id = raw_int("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'switchboard'"
                 " AND ID <> CONNECTION_ID() LIMIT 1");
    CHECK(id > 0);
    snprintf(sql, sizeof(sql), "KILL CONNECTION %" PRId64, id);
    CHECK(raw_exec(sql) == 0);

    Q(b, 1, "account.register", "phoenix", "example.org", "pw", NULL);
    Q(b, 2, "account.count", NULL);
    run(b);
    CHECK(n_responses == 2);
    CHECK(responses[0].code == IPC_CODE_OK);
    CHECK(responses[1].code == IPC_CODE_OK && arg_is(&responses[1], 0, "1"));
    CHECK(!db->lost && db->impl != NULL);
    CHECK(raw_int("SELECT COUNT(*) FROM accounts WHERE username = 'phoenix'") == 1);

    CHECK(raw_exec("DELETE FROM accounts") == 0);
    store_batch_free(&b);
    store_db_free(&db);
}

/* SQLite: the password's bytes are nowhere in the database files. */
static void test_file_has_no_password(void)
{
    struct store_db *db;
    struct store_batch *b;
    FILE *f;
    char *data = NULL;
    size_t len = 0, cap = 0, n;

    if (use_mysql)
        return;
    db = open_db();
    b = store_batch_new(db, 4);
    Q(b, 1, "account.register", "grace", "example.org", PASSWORD, NULL);
    Q(b, 2, "account.passwd", "grace", "example.org", PASSWORD " 2", NULL);
    run(b);
    CHECK(n_responses == 2 && responses[0].code == IPC_CODE_OK && responses[1].code == IPC_CODE_OK);
    store_batch_free(&b);
    store_db_free(&db);
    raw_close(); /* the last connection checkpoints the WAL into the file */

    f = fopen(db_path, "rb");
    CHECK(f != NULL);
    while (f != NULL) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            data = realloc(data, cap);
        }
        n = fread(data + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    if (f != NULL)
        fclose(f);
    CHECK(len > 0);
    CHECK(memmem(data, len, "grace", 5) != NULL); /* the scan does find what is there */
    CHECK(memmem(data, len, PASSWORD, strlen(PASSWORD)) == NULL);
    CHECK(memmem(data, len, "horse battery", 13) == NULL);
    free(data);
    raw_open();
    CHECK(raw_exec("DELETE FROM accounts") == 0);
}

/* --- schema v2: per-user data --- */

#define CHECK_CODE(resp, want)                                                                     \
    do {                                                                                           \
        const struct response *c_r_ = (resp);                                                      \
        if (c_r_->code != (uint32_t)(want))                                                        \
            fprintf(stderr, "%s:%d: code %u (%s), want %u\n", __FILE__, __LINE__, c_r_->code,      \
                    c_r_->reason, (unsigned)(want));                                               \
        CHECK(c_r_->code == (uint32_t)(want));                                                     \
    } while (0)

/* Queues op with the NULL-terminated string arguments that follow, runs
 * it alone, and returns its response. */
static const struct response *call(struct store_batch *b, const char *op, ...)
{
    const char *args[64];
    int n = 0;
    va_list ap;

    va_start(ap, op);
    while (n < 64 && (args[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    CHECK(queue(b, 1, op, n, args, NULL));
    run(b);
    CHECK(n_responses == 1);
    return &responses[0];
}

/* The same with explicit lengths, for arguments that hold NUL bytes. */
static const struct response *call_bytes(struct store_batch *b, const char *op, int n,
                                         const char *const *args, const size_t *lens)
{
    CHECK(queue(b, 1, op, n, args, lens));
    run(b);
    CHECK(n_responses == 1);
    return &responses[0];
}

struct field {
    const uint8_t *p;
    size_t len;
};

/* Splits ARG i at its NUL bytes into at most max fields (the last one
 * keeps the rest); returns how many. */
static int split(const struct response *r, uint32_t i, struct field *f, int max)
{
    const uint8_t *p, *end, *z;
    int n = 0;

    if (i >= MAX_KEPT_ARGS || r->args[i].data == NULL)
        return 0;
    p = r->args[i].data;
    end = p + r->args[i].len;
    while (n < max - 1 && (z = memchr(p, '\0', (size_t)(end - p))) != NULL) {
        f[n].p = p;
        f[n++].len = (size_t)(z - p);
        p = z + 1;
    }
    f[n].p = p;
    f[n].len = (size_t)(end - p);
    return n + 1;
}

static bool field_is(struct field f, const char *s)
{
    return f.len == strlen(s) && memcmp(f.p, s, f.len) == 0;
}

/* ARG i as a decimal number; -1 when it is none. */
static int64_t arg_num(const struct response *r, uint32_t i)
{
    char buf[24];

    if (i >= MAX_KEPT_ARGS || r->args[i].data == NULL || r->args[i].len == 0 ||
        r->args[i].len >= sizeof(buf))
        return -1;
    memcpy(buf, r->args[i].data, r->args[i].len);
    buf[r->args[i].len] = '\0';
    for (char *c = buf; *c != '\0'; c++) {
        if (*c < '0' || *c > '9')
            return -1;
    }
    return strtoll(buf, NULL, 10);
}

static bool roster_arg_is(const struct response *r, uint32_t i, const char *contact,
                          const char *name, const char *sub, const char *ask, const char *approved,
                          const char *groups)
{
    struct field f[6];

    return split(r, i, f, 6) == 6 && field_is(f[0], contact) && field_is(f[1], name) &&
           field_is(f[2], sub) && field_is(f[3], ask) && field_is(f[4], approved) &&
           field_is(f[5], groups);
}

/* Accounts straight through the backend: one derivation for all. */
static void add_accounts(struct store_db *db, const char *const *users, const char *domain)
{
    static struct store_account a;
    static bool made;
    const char *error;

    if (!made) {
        a = make_account("x", "example.org", PASSWORD);
        made = true;
    }
    CHECK(db->ops->begin(db, &error) == 0);
    for (; *users != NULL; users++)
        CHECK(db->ops->account_insert(db, domain, *users, &a, &error) == STORE_OK);
    CHECK(db->ops->commit(db, &error) == 0);
}

static const char *const alice_bob[] = {"alice", "bob", NULL};

/* A string of n copies of c (n < sizeof the buffer). */
static char *repeat(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

/* A v1 database (accounts only) with data upgrades in place. */
static void test_migrate_v1(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 16);
    const struct response *r;
    const char *error;
    char sql[128];
    int version = -1;

    add_accounts(db, alice_bob, "example.org");
    CHECK(call(b, "roster.set", "alice", "example.org", "bob@example.org", "Bob", "both", "", "0",
               "", NULL)
              ->code == IPC_CODE_OK);
    /* Back to what a v1 program left: its table and version row only. */
    for (size_t i = FIRST_V2_TABLE; i < N_TABLES; i++) {
        snprintf(sql, sizeof(sql), "DROP TABLE %s", all_tables[i]);
        CHECK(raw_exec(sql) == 0);
    }
    CHECK(raw_exec("DELETE FROM schema_version WHERE version > 1") == 0);
    CHECK(raw_int("SELECT MAX(version) FROM schema_version") == 1);
    CHECK(raw_int("SELECT COUNT(*) FROM roster") == -1); /* gone */

    CHECK(store_db_connect(db, &version, &error) == 0);
    CHECK(version == 2);
    CHECK(raw_int("SELECT COUNT(*) FROM schema_version") == 2);
    CHECK(raw_int("SELECT COUNT(*) FROM accounts") == 2); /* the accounts stayed */
    for (size_t i = FIRST_V2_TABLE; i < N_TABLES; i++) {
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", all_tables[i]);
        CHECK(raw_int(sql) == 0);
    }
    r = call(b, "roster.get", "alice", "example.org", "", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(r->n_arg == 1 && arg_is(r, 0, "0"));
    r = call(b, "roster.set", "alice", "example.org", "bob@example.org", "Bob", "both", "", "0", "",
             NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(arg_is(r, 0, "1"));

    /* MySQL commits DDL as it goes, so a step can be cut between its
     * tables and its version row: running it again must be harmless and
     * keep the data. (SQLite's step is one transaction.) */
    if (use_mysql) {
        CHECK(raw_exec("DELETE FROM schema_version WHERE version = 2") == 0);
        CHECK(store_db_connect(db, &version, &error) == 0);
        CHECK(version == 2);
        CHECK(raw_int("SELECT COUNT(*) FROM roster") == 1);
    }
    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

/* Every per-user op answers NOT_FOUND "no account" for a user without one,
 * and BAD_REQUEST for a bad user or domain. */
static void test_no_account(void)
{
    static const struct {
        const char *op;
        int n;
        const char *args[8];
    } ops[] = {
        {"roster.get", 3, {"", "", ""}},
        {"roster.set", 8, {"", "", "c@x", "", "none", "", "0", ""}},
        {"roster.remove", 3, {"", "", "c@x"}},
        {"offline.push", 3, {"", "", "<message/>"}},
        {"offline.fetch", 2, {"", ""}},
        {"offline.delete", 3, {"", "", "1"}},
        {"archive.append", 6, {"", "", "c@x", "in", "1", "<message/>"}},
        {"archive.query", 8, {"", "", "", "", "", "", "", ""}},
        {"archive.purge", 2, {"", ""}},
        {"kv.get", 4, {"", "", "vcard", ""}},
        {"kv.set", 5, {"", "", "vcard", "", "<vCard/>"}},
        {"kv.delete", 4, {"", "", "vcard", ""}},
        {"block.list", 2, {"", ""}},
        {"block.add", 3, {"", "", "c@x"}},
        {"block.remove", 3, {"", "", "c@x"}},
    };
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 64);
    const char *args[8];

    add_accounts(db, alice_bob, "example.org");
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        memcpy(args, ops[i].args, sizeof(args));
        args[0] = "nobody", args[1] = "example.org";
        CHECK(queue(b, (uint32_t)(3 * i), ops[i].op, ops[i].n, args, NULL));
        args[0] = "no body"; /* not a username */
        CHECK(queue(b, (uint32_t)(3 * i + 1), ops[i].op, ops[i].n, args, NULL));
        args[0] = "alice", args[1] = "example.com"; /* not a host */
        CHECK(queue(b, (uint32_t)(3 * i + 2), ops[i].op, ops[i].n, args, NULL));
    }
    run(b);
    CHECK(n_responses == 3 * sizeof(ops) / sizeof(ops[0]));
    for (size_t i = 0; i < n_responses; i++) {
        CHECK(responses[i].req_id == i);
        if (i % 3 == 0) {
            CHECK_CODE(&responses[i], IPC_CODE_NOT_FOUND);
            CHECK_STR(responses[i].reason, "no account");
        } else {
            CHECK_CODE(&responses[i], IPC_CODE_BAD_REQUEST);
        }
    }
    CHECK_STR(responses[2].reason, "unknown domain");

    /* Argument counts. */
    Q(b, 1, "roster.set", "alice", "example.org", "c@x", "", "none", "", "0", NULL);
    Q(b, 2, "roster.get", "alice", "example.org", NULL);
    Q(b, 3, "block.add", "alice", "example.org", NULL);
    Q(b, 4, "block.remove", "alice", "example.org", NULL);
    Q(b, 5, "archive.query", "alice", "example.org", "", "", "", "", "", "", "", NULL);
    Q(b, 6, "offline.delete", "alice", "example.org", NULL); /* no ids: nothing to do */
    Q(b, 7, "kv.set", "alice", "example.org", "vcard", "", NULL);
    run(b);
    CHECK(n_responses == 7);
    for (size_t i = 0; i < 5; i++) {
        CHECK_CODE(&responses[i], IPC_CODE_BAD_REQUEST);
        CHECK_STR(responses[i].reason, "wrong number of arguments");
    }
    CHECK_CODE(&responses[5], IPC_CODE_OK);
    CHECK_CODE(&responses[6], IPC_CODE_BAD_REQUEST);
    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

static void test_roster(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 64);
    const struct response *r;
    char big[STORE_MAX_ADDRESS + 2], groups[STORE_MAX_ROSTER_GROUPS * 4 + 8];

    add_accounts(db, alice_bob, "example.org");
    r = call(b, "roster.get", "alice", "example.org", "", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK_STR(r->reason, "full");
    CHECK(r->n_arg == 1 && arg_is(r, 0, "0"));

    /* Three changes in one batch: versions 1, 2, 3, and a read that sees
     * them before the commit. */
    Q(b, 1, "roster.set", "alice", "example.org", "bob@example.org", "Bob", "both", "", "0",
      "Friends\nWork", NULL);
    Q(b, 2, "roster.set", "ALICE", "example.org", "carol@example.net", "", "none", "subscribe", "1",
      "", NULL);
    Q(b, 3, "roster.set", "alice", "Example.Org", "bob@example.org", "Bobby", "to", "", "0",
      "Friends", NULL);
    Q(b, 4, "roster.get", "alice", "example.org", "", NULL);
    run(b);
    CHECK(n_responses == 4);
    CHECK(arg_is(&responses[0], 0, "1"));
    CHECK(arg_is(&responses[1], 0, "2"));
    CHECK(arg_is(&responses[2], 0, "3"));
    r = &responses[3];
    CHECK_STR(r->reason, "full");
    CHECK(r->n_arg == 3 && arg_is(r, 0, "3"));
    /* The full roster is sorted by contact. */
    CHECK(roster_arg_is(r, 1, "bob@example.org", "Bobby", "to", "", "0", "Friends"));
    CHECK(roster_arg_is(r, 2, "carol@example.net", "", "none", "subscribe", "1", ""));

    /* Deltas: the items changed after the given version, by version. */
    r = call(b, "roster.get", "alice", "example.org", "1", NULL);
    CHECK_STR(r->reason, "delta");
    CHECK(r->n_arg == 3 && arg_is(r, 0, "3"));
    CHECK(roster_arg_is(r, 1, "carol@example.net", "", "none", "subscribe", "1", ""));
    CHECK(roster_arg_is(r, 2, "bob@example.org", "Bobby", "to", "", "0", "Friends"));
    r = call(b, "roster.get", "alice", "example.org", "2", NULL);
    CHECK_STR(r->reason, "delta");
    CHECK(r->n_arg == 2 &&
          roster_arg_is(r, 1, "bob@example.org", "Bobby", "to", "", "0", "Friends"));
    r = call(b, "roster.get", "alice", "example.org", "3", NULL); /* up to date */
    CHECK_STR(r->reason, "delta");
    CHECK(r->n_arg == 1 && arg_is(r, 0, "3"));
    r = call(b, "roster.get", "alice", "example.org", "0", NULL);
    CHECK_STR(r->reason, "delta");
    CHECK(r->n_arg == 3);
    /* Versions this roster never had: the full roster. */
    static const char *const unknown[] = {"4", "99999999999999999999", "abc", "-1", " 1", "1.0"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        r = call(b, "roster.get", "alice", "example.org", unknown[i], NULL);
        CHECK_CODE(r, IPC_CODE_OK);
        CHECK_STR(r->reason, "full");
        CHECK(r->n_arg == 3 && arg_is(r, 0, "3"));
    }

    /* Removal leaves a tombstone that deltas report and full rosters do not. */
    r = call(b, "roster.remove", "alice", "example.org", "carol@example.net", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(arg_is(r, 0, "4"));
    r = call(b, "roster.remove", "alice", "example.org", "carol@example.net", NULL);
    CHECK_CODE(r, IPC_CODE_NOT_FOUND);
    CHECK_STR(r->reason, "no such item");
    r = call(b, "roster.remove", "alice", "example.org", "dave@example.net", NULL);
    CHECK_CODE(r, IPC_CODE_NOT_FOUND);
    r = call(b, "roster.get", "alice", "example.org", "3", NULL);
    CHECK_STR(r->reason, "delta");
    CHECK(r->n_arg == 2 && arg_is(r, 0, "4"));
    CHECK(roster_arg_is(r, 1, "carol@example.net", "", "remove", "", "0", ""));
    r = call(b, "roster.get", "alice", "example.org", "", NULL);
    CHECK(r->n_arg == 2 &&
          roster_arg_is(r, 1, "bob@example.org", "Bobby", "to", "", "0", "Friends"));
    CHECK(raw_int("SELECT COUNT(*) FROM roster WHERE subscription = 'remove'") == 1);
    /* Back again: the tombstone becomes the item. */
    r = call(b, "roster.set", "alice", "example.org", "carol@example.net", "C", "from", "", "0", "",
             NULL);
    CHECK(arg_is(r, 0, "5"));
    r = call(b, "roster.get", "alice", "example.org", "4", NULL);
    CHECK(r->n_arg == 2 && roster_arg_is(r, 1, "carol@example.net", "C", "from", "", "0", ""));
    CHECK(raw_int("SELECT COUNT(*) FROM roster") == 2);

    /* Each user has a roster and a version of their own. */
    r = call(b, "roster.get", "bob", "example.org", "", NULL);
    CHECK(r->n_arg == 1 && arg_is(r, 0, "0"));
    r = call(b, "roster.remove", "bob", "example.org", "carol@example.net", NULL);
    CHECK_CODE(r, IPC_CODE_NOT_FOUND);
    r = call(b, "roster.set", "bob", "example.org", "alice@example.org", "", "both", "", "0", "",
             NULL);
    CHECK(arg_is(r, 0, "1"));
    r = call(b, "roster.get", "alice", "example.org", "", NULL);
    CHECK(r->n_arg == 3 && arg_is(r, 0, "5"));

    /* What roster.set refuses. */
    struct {
        const char *contact, *name, *sub, *ask, *approved, *groups, *reason;
    } bad[] = {
        {"x@y", "", "remove", "", "0", "", "bad subscription"},
        {"x@y", "", "pending", "", "0", "", "bad subscription"},
        {"x@y", "", "", "", "0", "", "bad subscription"},
        {"x@y", "", "None", "", "0", "", "bad subscription"},
        {"x@y", "", "none", "unsubscribe", "0", "", "bad ask"},
        {"x@y", "", "none", "", "2", "", "bad approved"},
        {"x@y", "", "none", "", "", "", "bad approved"},
        {"x@y", "", "none", "", "0", "a\n\nb", "empty group name"},
        {"x@y", "", "none", "", "0", "a\n", "empty group name"},
        {"x@y", "", "none", "", "0", "\n", "empty group name"},
        {"x@y", "", "none", "", "0", "a\nb\na", "repeated group"},
        {"x@y", "", "none", "", "0", "a\tb", "control character in group name"},
        {"x@y", "", "none", "", "0", "\xff", "group name is not valid UTF-8"},
        {"x@y", "a\nb", "none", "", "0", "", "control character in roster name"},
        {"x@y", "\xc0\xaf", "none", "", "0", "", "roster name is not valid UTF-8"},
        {"", "", "none", "", "0", "", "empty JID"},
        {"x\x01@y", "", "none", "", "0", "", "control character in JID"},
        {"x\xc2\x85@y", "", "none", "", "0", "", "control character in JID"},
        {"x\xed\xa0\x80@y", "", "none", "", "0", "", "JID is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = call(b, "roster.set", "alice", "example.org", bad[i].contact, bad[i].name, bad[i].sub,
                 bad[i].ask, bad[i].approved, bad[i].groups, NULL);
        CHECK_CODE(r, IPC_CODE_BAD_REQUEST);
        if (strcmp(r->reason, bad[i].reason) != 0)
            fprintf(stderr, "bad[%zu]: %s\n", i, r->reason);
        CHECK_STR(r->reason, bad[i].reason);
    }
    /* Lengths: a JID of 3071 bytes and names of 1023 are fine, one more is not. */
    r = call(b, "roster.set", "alice", "example.org", repeat(big, 'j', STORE_MAX_ADDRESS + 1), "",
             "none", "", "0", "", NULL);
    CHECK_CODE(r, IPC_CODE_BAD_REQUEST);
    CHECK_STR(r->reason, "JID too long");
    r = call(b, "roster.set", "alice", "example.org", "x@y",
             repeat(big, 'n', STORE_MAX_ROSTER_NAME + 1), "none", "", "0", "", NULL);
    CHECK_STR(r->reason, "roster name too long");
    r = call(b, "roster.set", "alice", "example.org", "x@y", "", "none", "", "0",
             repeat(big, 'g', STORE_MAX_ROSTER_GROUP + 1), NULL);
    CHECK_STR(r->reason, "group name too long");
    /* 100 groups are fine, 101 are not. */
    groups[0] = '\0';
    for (int i = 0; i < STORE_MAX_ROSTER_GROUPS + 1; i++)
        snprintf(groups + strlen(groups), sizeof(groups) - strlen(groups), "%s%d", i ? "\n" : "",
                 i);
    r = call(b, "roster.set", "alice", "example.org", "x@y", "", "none", "", "0", groups, NULL);
    CHECK_CODE(r, IPC_CODE_BAD_REQUEST);
    CHECK_STR(r->reason, "too many groups");
    *strrchr(groups, '\n') = '\0';
    r = call(b, "roster.set", "alice", "example.org", repeat(big, 'j', STORE_MAX_ADDRESS),
             "日本語 ünï", "none", "", "0", groups, NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(arg_is(r, 0, "6"));
    r = call(b, "roster.set", "alice", "example.org", "x@y",
             repeat(big, 'n', STORE_MAX_ROSTER_NAME), "both", "", "1",
             repeat(big + 2000, 'g', STORE_MAX_ROSTER_GROUP), NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    r = call(b, "roster.get", "alice", "example.org", "5", NULL);
    CHECK(r->n_arg == 3 && arg_is(r, 0, "7"));
    CHECK(roster_arg_is(r, 1, repeat(big, 'j', STORE_MAX_ADDRESS), "日本語 ünï", "none", "", "0",
                        groups));
    /* Nothing refused was stored, nor bumped the version. */
    CHECK(raw_int("SELECT COUNT(*) FROM roster WHERE username = 'alice'") == 4);

    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

/* The item cap, the tombstone cap, and rosters too big for one response. */
static void test_roster_caps(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 16);
    const struct response *r;
    struct store_roster_item item = {
        .name = {"", 0}, .subscription = {"both", 4}, .ask = {"", 0}, .groups = {"", 0}};
    char contact[400], removed[400];
    const char *error;
    int64_t version;

    add_accounts(db, alice_bob, "example.org");
    /* alice: 10,000 items of 312-byte JIDs (versions 1..10000), about
     * 3 MB: more than one response. bob: 1,000 tombstones (versions
     * 1..1000) and one item (1001). */
    CHECK(db->ops->begin(db, &error) == 0);
    for (int i = 0; i < STORE_MAX_ROSTER_ITEMS; i++) {
        snprintf(contact, sizeof(contact), "c%05d%0294d@example.net", i, 0);
        item.contact = (struct store_column){contact, strlen(contact)};
        CHECK(db->ops->roster_version_bump(db, "example.org", "alice", &version, &error) ==
              STORE_OK);
        item.version = version;
        CHECK(db->ops->roster_put(db, "example.org", "alice", &item, &error) == STORE_OK);
    }
    item.subscription = (struct store_column){"remove", 6};
    for (int i = 0; i <= STORE_MAX_ROSTER_TOMBSTONES; i++) {
        if (i == STORE_MAX_ROSTER_TOMBSTONES)
            item.subscription = (struct store_column){"to", 2};
        snprintf(contact, sizeof(contact), "t%d@example.net", i);
        item.contact = (struct store_column){contact, strlen(contact)};
        CHECK(db->ops->roster_version_bump(db, "example.org", "bob", &item.version, &error) ==
              STORE_OK);
        CHECK(db->ops->roster_put(db, "example.org", "bob", &item, &error) == STORE_OK);
    }
    CHECK(db->ops->commit(db, &error) == 0);
    CHECK(version == STORE_MAX_ROSTER_ITEMS && item.version == 1001);

    /* Full: a new item is refused, an existing one can change. */
    r = call(b, "roster.set", "alice", "example.org", "new@example.net", "", "none", "", "0", "",
             NULL);
    CHECK_CODE(r, IPC_CODE_BAD_REQUEST);
    CHECK_STR(r->reason, "roster full");
    snprintf(contact, sizeof(contact), "c%05d%0294d@example.net", 1500, 0);
    r = call(b, "roster.set", "alice", "example.org", contact, "", "none", "", "0", "", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(arg_is(r, 0, "10001"));
    /* A removal frees a place; the removed contact counts as new again. */
    snprintf(removed, sizeof(removed), "c%05d%0294d@example.net", 2000, 0);
    r = call(b, "roster.remove", "alice", "example.org", removed, NULL);
    CHECK(arg_is(r, 0, "10002"));
    r = call(b, "roster.set", "alice", "example.org", "new@example.net", "", "none", "", "0", "",
             NULL);
    CHECK(arg_is(r, 0, "10003"));
    r = call(b, "roster.set", "alice", "example.org", removed, "", "none", "", "0", "", NULL);
    CHECK_STR(r->reason, "roster full");

    /* The full roster does not fit: cut, and said so. */
    r = call(b, "roster.get", "alice", "example.org", "", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(strncmp(r->reason, "truncated: ", 11) == 0);
    CHECK(r->n_arg > 5000 && r->n_arg < STORE_MAX_ROSTER_ITEMS + 1);
    CHECK(arg_is(r, 0, "10003"));
    /* A small delta does fit; a big one falls back to the (cut) full roster. */
    r = call(b, "roster.get", "alice", "example.org", "10000", NULL);
    CHECK_STR(r->reason, "delta");
    CHECK(r->n_arg == 4);
    CHECK(roster_arg_is(r, 2, removed, "", "remove", "", "0", ""));
    r = call(b, "roster.get", "alice", "example.org", "0", NULL);
    CHECK(strncmp(r->reason, "truncated: ", 11) == 0);

    /* bob: one removal past the tombstone cap drops the oldest tombstone
     * (version 1), so a delta from version 0 would miss its removal: the
     * full roster instead. From version 1 on, deltas are exact. */
    r = call(b, "roster.remove", "bob", "example.org", "t5@example.net", NULL);
    CHECK_CODE(r, IPC_CODE_NOT_FOUND); /* a tombstone is no item */
    r = call(b, "roster.get", "bob", "example.org", "0", NULL);
    CHECK_STR(r->reason, "delta");
    CHECK(r->n_arg == 1 + STORE_MAX_ROSTER_TOMBSTONES + 1);
    r = call(b, "roster.remove", "bob", "example.org", contact, NULL);
    CHECK_CODE(r, IPC_CODE_NOT_FOUND);
    r = call(b, "roster.remove", "bob", "example.org", "t1000@example.net", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(arg_is(r, 0, "1002"));
    CHECK(raw_int("SELECT COUNT(*) FROM roster WHERE username = 'bob' AND"
                  " subscription = 'remove'") == STORE_MAX_ROSTER_TOMBSTONES);
    CHECK(raw_int("SELECT COUNT(*) FROM roster WHERE username = 'bob' AND version = 1") == 0);
    CHECK(raw_int("SELECT pruned FROM roster_version WHERE username = 'bob'") == 1);
    CHECK(raw_int("SELECT pruned FROM roster_version WHERE username = 'alice'") == 0);
    r = call(b, "roster.get", "bob", "example.org", "0", NULL);
    CHECK_STR(r->reason, "full");
    CHECK(r->n_arg == 1 && arg_is(r, 0, "1002"));
    r = call(b, "roster.get", "bob", "example.org", "1", NULL);
    CHECK_STR(r->reason, "delta");
    CHECK(r->n_arg == 1 + STORE_MAX_ROSTER_TOMBSTONES);
    CHECK(roster_arg_is(r, 1, "t1@example.net", "", "remove", "", "0", ""));
    CHECK(roster_arg_is(r, STORE_MAX_ROSTER_TOMBSTONES, "t1000@example.net", "", "remove", "", "0",
                        ""));

    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

static void test_offline(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 64);
    const struct response *r;
    struct field f[2];
    int64_t ids[3], bob_id;
    char num[3][24], *stanza;
    const char *error;

    add_accounts(db, alice_bob, "example.org");
    /* Stanzas are opaque bytes: a NUL inside is kept. */
    const char *const args[] = {"alice", "example.org", "<message>a\0b</message>"};
    const size_t lens[] = {5, 11, 23};
    r = call_bytes(b, "offline.push", 3, args, lens);
    CHECK_CODE(r, IPC_CODE_OK);
    ids[0] = arg_num(r, 0);
    Q(b, 1, "offline.push", "alice", "example.org", "<message>2</message>", NULL);
    Q(b, 2, "offline.push", "bob", "example.org", "<message>bob</message>", NULL);
    Q(b, 3, "offline.push", "Alice", "example.org", "<message>3</message>", NULL);
    Q(b, 4, "offline.push", "alice", "example.org", "", NULL);
    run(b);
    CHECK(n_responses == 4);
    ids[1] = arg_num(&responses[0], 0);
    bob_id = arg_num(&responses[1], 0);
    ids[2] = arg_num(&responses[2], 0);
    CHECK(ids[0] > 0 && ids[1] > ids[0] && bob_id > ids[1] && ids[2] > bob_id);
    CHECK_CODE(&responses[3], IPC_CODE_BAD_REQUEST);
    CHECK_STR(responses[3].reason, "empty stanza");

    /* Fetching removes nothing: twice the same, oldest first. */
    for (int k = 0; k < 2; k++) {
        r = call(b, "offline.fetch", "alice", "example.org", NULL);
        CHECK_CODE(r, IPC_CODE_OK);
        CHECK_STR(r->reason, "");
        CHECK(r->n_arg == 3);
        CHECK(split(r, 0, f, 2) == 2 && f[1].len == 23 &&
              memcmp(f[1].p, "<message>a\0b</message>", 23) == 0);
        snprintf(num[0], sizeof(num[0]), "%" PRId64, ids[0]);
        CHECK(field_is(f[0], num[0]));
        CHECK(split(r, 2, f, 2) == 2 && field_is(f[1], "<message>3</message>"));
    }
    /* Delete: alice's own ids only; bob's id and unknown ones are ignored. */
    snprintf(num[0], sizeof(num[0]), "%" PRId64, ids[0]);
    snprintf(num[1], sizeof(num[1]), "%" PRId64, bob_id);
    snprintf(num[2], sizeof(num[2]), "%" PRId64, ids[2] + 1000);
    r = call(b, "offline.delete", "alice", "example.org", num[0], num[1], num[2], num[0], NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    r = call(b, "offline.fetch", "alice", "example.org", NULL);
    CHECK(r->n_arg == 2 && split(r, 0, f, 2) == 2 && field_is(f[1], "<message>2</message>"));
    r = call(b, "offline.fetch", "bob", "example.org", NULL);
    CHECK(r->n_arg == 1 && split(r, 0, f, 2) == 2 && field_is(f[0], num[1]));
    r = call(b, "offline.delete", "alice", "example.org", "1x", NULL);
    CHECK_CODE(r, IPC_CODE_BAD_REQUEST);
    CHECK_STR(r->reason, "bad id");
    r = call(b, "offline.delete", "alice", "example.org", "", NULL);
    CHECK_CODE(r, IPC_CODE_BAD_REQUEST);

    /* Stanza size: STORE_MAX_STANZA bytes are fine, one more is not. */
    stanza = malloc(STORE_MAX_STANZA + 2);
    CHECK(stanza != NULL);
    repeat(stanza, 's', STORE_MAX_STANZA + 1);
    r = call(b, "offline.push", "bob", "example.org", stanza, NULL);
    CHECK_CODE(r, IPC_CODE_BAD_REQUEST);
    CHECK_STR(r->reason, "stanza too large");
    stanza[STORE_MAX_STANZA] = '\0';
    /* Ten such stanzas do not fit one response: as many as fit, and a
     * REASON saying more are queued. */
    r = call(b, "offline.delete", "bob", "example.org", num[1], NULL);
    for (uint32_t i = 0; i < 10; i++)
        Q(b, i, "offline.push", "bob", "example.org", stanza, NULL);
    run(b);
    CHECK(n_responses == 10 && responses[9].code == IPC_CODE_OK);
    r = call(b, "offline.fetch", "bob", "example.org", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(strncmp(r->reason, "truncated: ", 11) == 0);
    CHECK(r->n_arg == (IPC_MAX_MESSAGE - (64u << 10)) / (STORE_MAX_STANZA + 16));
    CHECK(split(r, 0, f, 2) == 2 && f[1].len == STORE_MAX_STANZA &&
          memcmp(f[1].p, stanza, STORE_MAX_STANZA) == 0);
    free(stanza);

    /* The queue cap: CONFLICT at STORE_MAX_OFFLINE, per user. */
    CHECK(raw_exec("DELETE FROM offline") == 0);
    CHECK(db->ops->begin(db, &error) == 0);
    for (int i = 0; i < STORE_MAX_OFFLINE; i++) {
        char msg[32];
        int64_t id;
        snprintf(msg, sizeof(msg), "<message>%d</message>", i);
        CHECK(db->ops->offline_insert(db, "example.org", "alice",
                                      (struct store_column){msg, strlen(msg)}, 1700000000, &id,
                                      &error) == STORE_OK);
    }
    CHECK(db->ops->commit(db, &error) == 0);
    r = call(b, "offline.push", "alice", "example.org", "<message>one more</message>", NULL);
    CHECK_CODE(r, IPC_CODE_CONFLICT);
    CHECK_STR(r->reason, "offline queue full");
    r = call(b, "offline.push", "bob", "example.org", "<message>bob</message>", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    /* 1000 queued: 500 per fetch, the first saying more are queued. */
    r = call(b, "offline.fetch", "alice", "example.org", NULL);
    CHECK(r->n_arg == STORE_OFFLINE_FETCH_MAX && strncmp(r->reason, "truncated: ", 11) == 0);
    CHECK(split(r, 0, f, 2) == 2 && field_is(f[1], "<message>0</message>"));
    CHECK(split(r, 499, f, 2) == 2 && field_is(f[1], "<message>499</message>"));
    /* Delete that page (500 ids in one request), and fetch the rest. */
    {
        static char idbuf[STORE_OFFLINE_FETCH_MAX][24];
        const char *del[2 + STORE_OFFLINE_FETCH_MAX] = {"alice", "example.org"};
        for (int i = 0; i < STORE_OFFLINE_FETCH_MAX; i++) {
            CHECK(split(r, (uint32_t)i, f, 2) == 2 && f[0].len < 24);
            memcpy(idbuf[i], f[0].p, f[0].len);
            idbuf[i][f[0].len] = '\0';
            del[2 + i] = idbuf[i];
        }
        CHECK(queue(b, 1, "offline.delete", 2 + STORE_OFFLINE_FETCH_MAX, del, NULL));
        run(b);
        CHECK(n_responses == 1 && responses[0].code == IPC_CODE_OK);
    }
    r = call(b, "offline.fetch", "alice", "example.org", NULL);
    CHECK(r->n_arg == 500 && r->reason[0] == '\0');
    CHECK(split(r, 0, f, 2) == 2 && field_is(f[1], "<message>500</message>"));
    CHECK(raw_int("SELECT COUNT(*) FROM offline WHERE username = 'alice'") == 500);

    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

/* Checks archive result ARG i: id, with, direction, created_us, stanza. */
static bool archive_arg_is(const struct response *r, uint32_t i, int64_t id, const char *with,
                           const char *direction, int64_t created_us, const char *stanza)
{
    struct field f[5];
    char num[2][24];

    snprintf(num[0], sizeof(num[0]), "%" PRId64, id);
    snprintf(num[1], sizeof(num[1]), "%" PRId64, created_us);
    return split(r, i, f, 5) == 5 && field_is(f[0], num[0]) && field_is(f[1], with) &&
           field_is(f[2], direction) && field_is(f[3], num[1]) && field_is(f[4], stanza);
}

/* The ids of an archive page (ARGs 2...), into ids[]; returns how many. */
static uint32_t page_ids(const struct response *r, int64_t *ids)
{
    struct field f[5];
    uint32_t n = 0;

    for (uint32_t i = 2; i < r->n_arg && i < MAX_KEPT_ARGS; i++) {
        char num[24];
        if (split(r, i, f, 5) != 5 || f[0].len >= sizeof(num))
            break;
        memcpy(num, f[0].p, f[0].len);
        num[f[0].len] = '\0';
        ids[n++] = strtoll(num, NULL, 10);
    }
    return n;
}

static void test_archive(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 64);
    const struct response *r;
    int64_t ids[8], bob_id = -1, eve[10], got[MAX_KEPT_ARGS];
    char num[4][24], *stanza;

    add_accounts(db, alice_bob, "example.org");
    /* alice: 6 messages with bob and carol, at t = 1000, 2000, ... */
    static const struct {
        const char *with, *dir;
    } rows[6] = {
        {"bob@example.org", "out"}, {"bob@example.org", "in"},    {"carol@example.net", "in"},
        {"bob@example.org", "out"}, {"carol@example.net", "out"}, {"bob@example.org", "in"},
    };
    for (uint32_t i = 0; i < 6; i++) {
        char t[24], body[64];
        snprintf(t, sizeof(t), "%u", (i + 1) * 1000);
        snprintf(body, sizeof(body), "<message><body>%u</body></message>", i);
        Q(b, i, "archive.append", "alice", "example.org", rows[i].with, rows[i].dir, t, body, NULL);
        if (i == 2)
            Q(b, 100, "archive.append", "bob", "example.org", "alice@example.org", "in", "2500",
              "<message>b</message>", NULL);
    }
    run(b);
    CHECK(n_responses == 7);
    for (size_t i = 0, k = 0; i < n_responses; i++) {
        CHECK_CODE(&responses[i], IPC_CODE_OK);
        if (responses[i].req_id == 100)
            bob_id = arg_num(&responses[i], 0);
        else
            ids[k++] = arg_num(&responses[i], 0);
    }
    for (int i = 1; i < 6; i++)
        CHECK(ids[i] > ids[i - 1]);
    CHECK(bob_id > ids[2] && bob_id < ids[3]);

    /* Everything, in order, with the exact count. */
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", "", "", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(r->n_arg == 8 && arg_is(r, 0, "complete") && arg_is(r, 1, "6"));
    CHECK(archive_arg_is(r, 2, ids[0], "bob@example.org", "out", 1000,
                         "<message><body>0</body></message>"));
    CHECK(archive_arg_is(r, 7, ids[5], "bob@example.org", "in", 6000,
                         "<message><body>5</body></message>"));
    /* with, and time bounds (inclusive); the count follows them. */
    r = call(b, "archive.query", "alice", "example.org", "carol@example.net", "", "", "", "", "",
             NULL);
    CHECK(r->n_arg == 4 && arg_is(r, 0, "complete") && arg_is(r, 1, "2"));
    CHECK(page_ids(r, got) == 2 && got[0] == ids[2] && got[1] == ids[4]);
    r = call(b, "archive.query", "alice", "example.org", "", "2000", "4000", "", "", "", NULL);
    CHECK(r->n_arg == 5 && arg_is(r, 1, "3"));
    CHECK(page_ids(r, got) == 3 && got[0] == ids[1] && got[2] == ids[3]);
    r = call(b, "archive.query", "alice", "example.org", "bob@example.org", "2001", "", "", "", "",
             NULL);
    CHECK(r->n_arg == 4 && arg_is(r, 1, "2"));
    CHECK(page_ids(r, got) == 2 && got[0] == ids[3] && got[1] == ids[5]);
    r = call(b, "archive.query", "alice", "example.org", "dave@example.net", "", "", "", "", "",
             NULL);
    CHECK(r->n_arg == 2 && arg_is(r, 0, "complete") && arg_is(r, 1, "0"));

    /* Paging forward by 2: after the last id of each page. */
    snprintf(num[0], sizeof(num[0]), "%" PRId64, ids[1]);
    snprintf(num[1], sizeof(num[1]), "%" PRId64, ids[3]);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", "", "2", NULL);
    CHECK(arg_is(r, 0, "incomplete") && arg_is(r, 1, "6"));
    CHECK(page_ids(r, got) == 2 && got[0] == ids[0] && got[1] == ids[1]);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", num[0], "", "2", NULL);
    CHECK(arg_is(r, 0, "incomplete") && arg_is(r, 1, "6"));
    CHECK(page_ids(r, got) == 2 && got[0] == ids[2] && got[1] == ids[3]);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", num[1], "", "2", NULL);
    CHECK(arg_is(r, 0, "complete"));
    CHECK(page_ids(r, got) == 2 && got[0] == ids[4] && got[1] == ids[5]);
    /* Paging back from the end: pages in ascending order. */
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", "last", "4", NULL);
    CHECK(arg_is(r, 0, "incomplete") && arg_is(r, 1, "6"));
    CHECK(page_ids(r, got) == 4 && got[0] == ids[2] && got[3] == ids[5]);
    snprintf(num[2], sizeof(num[2]), "%" PRId64, ids[2]);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", num[2], "4", NULL);
    CHECK(arg_is(r, 0, "complete"));
    CHECK(page_ids(r, got) == 2 && got[0] == ids[0] && got[1] == ids[1]);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", "last", "6", NULL);
    CHECK(arg_is(r, 0, "complete") && page_ids(r, got) == 6);
    /* after and before together: the ids between; and with "with". */
    snprintf(num[3], sizeof(num[3]), "%" PRId64, ids[5]);
    r = call(b, "archive.query", "alice", "example.org", "bob@example.org", "", "", num[0], num[3],
             "", NULL);
    CHECK(arg_is(r, 0, "complete") && arg_is(r, 1, "4"));
    CHECK(page_ids(r, got) == 1 && got[0] == ids[3]);
    /* max 0: the count only. */
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", "", "0", NULL);
    CHECK(r->n_arg == 2 && arg_is(r, 0, "incomplete") && arg_is(r, 1, "6"));
    /* Unknown ids, bob's included: item-not-found. */
    snprintf(num[0], sizeof(num[0]), "%" PRId64, bob_id);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", num[0], "", "", NULL);
    CHECK_CODE(r, IPC_CODE_NOT_FOUND);
    CHECK_STR(r->reason, "unknown id");
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", num[0], "", NULL);
    CHECK_CODE(r, IPC_CODE_NOT_FOUND);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "999999", "", "", NULL);
    CHECK_CODE(r, IPC_CODE_NOT_FOUND);
    r = call(b, "archive.query", "bob", "example.org", "", "", "", "", "", "", NULL);
    CHECK(r->n_arg == 3 && arg_is(r, 1, "1") &&
          archive_arg_is(r, 2, bob_id, "alice@example.org", "in", 2500, "<message>b</message>"));

    /* What append and query refuse. */
    struct {
        const char *op, *args[6], *reason;
    } bad[] = {
        {"archive.append", {"", "in", "1", "<m/>"}, "empty JID"},
        {"archive.append", {"a@b", "both", "1", "<m/>"}, "bad direction"},
        {"archive.append", {"a@b", "in", "-1", "<m/>"}, "bad created_us"},
        {"archive.append", {"a@b", "in", "", "<m/>"}, "bad created_us"},
        {"archive.append", {"a@b", "in", "9223372036854775808", "<m/>"}, "bad created_us"},
        {"archive.append", {"a@b", "in", "1", ""}, "empty stanza"},
        {"archive.query", {"a\x7f", "", "", "", "", ""}, "control character in JID"},
        {"archive.query", {"", "x", "", "", "", ""}, "bad start_us"},
        {"archive.query", {"", "", "1e6", "", "", ""}, "bad end_us"},
        {"archive.query", {"", "", "", "first", "", ""}, "bad after_id"},
        {"archive.query", {"", "", "", "", "LAST", ""}, "bad before_id"},
        {"archive.query", {"", "", "", "", "", "251"}, "bad max"},
        {"archive.query", {"", "", "", "", "", "-1"}, "bad max"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[8] = {"alice", "example.org"};
        int n = strcmp(bad[i].op, "archive.append") == 0 ? 6 : 8;
        for (int k = 0; k < n - 2; k++)
            args[2 + k] = bad[i].args[k];
        CHECK(queue(b, (uint32_t)i, bad[i].op, n, args, NULL));
    }
    run(b);
    CHECK(n_responses == sizeof(bad) / sizeof(bad[0]));
    for (size_t i = 0; i < n_responses; i++) {
        CHECK_CODE(&responses[i], IPC_CODE_BAD_REQUEST);
        CHECK_STR(responses[i].reason, bad[i].reason);
    }
    /* The default page is 50, the largest 250. */
    for (uint32_t i = 0; i < 60; i++)
        Q(b, i, "archive.append", "alice", "example.org", "dave@example.net", "in", "7000", "<m/>",
          NULL);
    run(b);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", "", "", NULL);
    CHECK(r->n_arg == 52 && arg_is(r, 0, "incomplete") && arg_is(r, 1, "66"));
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", "last", "250", NULL);
    CHECK(r->n_arg == 68 && arg_is(r, 0, "complete"));

    /* A page that does not fit one response is cut short. */
    stanza = malloc(STORE_MAX_STANZA + 1);
    CHECK(stanza != NULL);
    repeat(stanza, 'z', STORE_MAX_STANZA);
    for (uint32_t i = 0; i < 10; i++)
        Q(b, i, "archive.append", "alice", "example.org", "eve@example.net", "out", "8000", stanza,
          NULL);
    run(b);
    CHECK(n_responses == 10 && responses[9].code == IPC_CODE_OK);
    for (uint32_t i = 0; i < 10; i++)
        eve[i] = arg_num(&responses[i], 0);
    /* (2 MiB - 64 KiB) / 256 KiB: 7 of them. */
    r = call(b, "archive.query", "alice", "example.org", "eve@example.net", "", "", "", "", "10",
             NULL);
    CHECK(arg_is(r, 0, "incomplete") && arg_is(r, 1, "10"));
    CHECK(page_ids(r, got) == 7 && got[0] == eve[0] && got[6] == eve[6]);
    CHECK(r->args[2].len > STORE_MAX_STANZA &&
          memcmp(r->args[2].data + r->args[2].len - STORE_MAX_STANZA, stanza, STORE_MAX_STANZA) ==
              0);
    /* Backwards, the newest 7: the ones next to the end. */
    r = call(b, "archive.query", "alice", "example.org", "eve@example.net", "", "", "", "last",
             "10", NULL);
    CHECK(arg_is(r, 0, "incomplete"));
    CHECK(page_ids(r, got) == 7 && got[0] == eve[3] && got[6] == eve[9]);
    free(stanza);

    /* Purge: alice's archive only; ids are not reused afterwards. */
    r = call(b, "archive.purge", "alice", "example.org", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(raw_int("SELECT COUNT(*) FROM archive WHERE username = 'alice'") == 0);
    CHECK(raw_int("SELECT COUNT(*) FROM archive WHERE username = 'bob'") == 1);
    r = call(b, "archive.append", "alice", "example.org", "bob@example.org", "in", "9000", "<m/>",
             NULL);
    CHECK(arg_num(r, 0) > eve[9]);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", "", "", NULL);
    CHECK(r->n_arg == 3 && arg_is(r, 0, "complete") && arg_is(r, 1, "1"));

    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The plan a query runs with, as one string (SQLite: EXPLAIN QUERY PLAN's
 * details; MySQL: EXPLAIN's key and Extra columns). */
static void query_plan(const char *sql, char *out, size_t size)
{
    char explain[1024];

    out[0] = '\0';
    if (use_mysql) {
        MYSQL_RES *res;
        MYSQL_ROW row;
        MYSQL_FIELD *fields;
        unsigned key = 0, n;

        snprintf(explain, sizeof(explain), "EXPLAIN %s", sql);
        CHECK(mysql_query(raw_mysql, explain) == 0);
        res = mysql_store_result(raw_mysql);
        CHECK(res != NULL);
        if (res == NULL)
            return;
        n = mysql_num_fields(res);
        fields = mysql_fetch_fields(res);
        for (unsigned i = 0; i < n; i++) {
            if (strcmp(fields[i].name, "key") == 0)
                key = i;
        }
        while ((row = mysql_fetch_row(res)) != NULL)
            snprintf(out + strlen(out), size - strlen(out), "%s:%s;", row[key] ? row[key] : "NULL",
                     row[n - 1] ? row[n - 1] : "");
        mysql_free_result(res);
        return;
    }
    sqlite3_stmt *stmt;
    snprintf(explain, sizeof(explain), "EXPLAIN QUERY PLAN %s", sql);
    CHECK(sqlite3_prepare_v2(raw_sqlite, explain, -1, &stmt, NULL) == SQLITE_OK);
    while (sqlite3_step(stmt) == SQLITE_ROW)
        snprintf(out + strlen(out), size - strlen(out), "%s;", sqlite3_column_text(stmt, 3));
    sqlite3_finalize(stmt);
}

/*
 * A 100,000-row archive: 90,000 messages of alice's (with three parties in
 * turn) and 10,000 of bob's interleaved. Pages from the start, the middle
 * and the end must be exact, and the queries must run on the indexes (the
 * timings are printed, not asserted).
 */
static void test_archive_big(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 16);
    static const char *const with[3] = {"bob@example.org", "carol@example.net", "dave@example.net"};
    static int64_t alice_ids[90000];
    struct store_archive_row row = {.direction = {"in", 2}};
    const struct response *r;
    int64_t id, got[MAX_KEPT_ARGS];
    size_t n_alice = 0;
    char stanza[64], num[24], plan[512];
    const char *error;
    double t;

    add_accounts(db, alice_bob, "example.org");
    t = now_s();
    CHECK(db->ops->begin(db, &error) == 0);
    for (int i = 0; i < 100000; i++) {
        bool bob = i % 10 == 9;
        const char *w = bob ? "alice@example.org" : with[n_alice % 3];

        snprintf(stanza, sizeof(stanza), "<message><body>%d</body></message>", i);
        row.with = (struct store_column){w, strlen(w)};
        row.stanza = (struct store_column){stanza, strlen(stanza)};
        row.created_us = 1700000000000000 + (int64_t)i * 1000;
        CHECK(db->ops->archive_insert(db, "example.org", bob ? "bob" : "alice", &row, &id,
                                      &error) == STORE_OK);
        if (!bob)
            alice_ids[n_alice++] = id;
    }
    CHECK(db->ops->commit(db, &error) == 0);
    printf("archive: 100000 rows inserted in %.2f s\n", now_s() - t);
    CHECK(raw_int("SELECT COUNT(*) FROM archive") == 100000);

    /* The first page. */
    t = now_s();
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", "", "", NULL);
    CHECK(arg_is(r, 0, "incomplete") && arg_is(r, 1, "90000"));
    CHECK(page_ids(r, got) == 50 && got[0] == alice_ids[0] && got[49] == alice_ids[49]);
    /* The middle: after the 45,000th. */
    snprintf(num, sizeof(num), "%" PRId64, alice_ids[44999]);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", num, "", "250", NULL);
    CHECK(arg_is(r, 0, "incomplete") && arg_is(r, 1, "90000"));
    CHECK(page_ids(r, got) == 250);
    for (int i = 0; i < 250; i++)
        CHECK(got[i] == alice_ids[45000 + i]);
    /* The middle backwards: before the same id. */
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", num, "100", NULL);
    CHECK(arg_is(r, 0, "incomplete") && page_ids(r, got) == 100);
    CHECK(got[0] == alice_ids[44899] && got[99] == alice_ids[44998]);
    /* The end. */
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", "last", "", NULL);
    CHECK(arg_is(r, 0, "incomplete") && arg_is(r, 1, "90000"));
    CHECK(page_ids(r, got) == 50 && got[0] == alice_ids[89950] && got[49] == alice_ids[89999]);
    CHECK(archive_arg_is(r, 51, alice_ids[89999], with[89999 % 3], "in",
                         1700000000000000 + 99998 * 1000, "<message><body>99998</body></message>"));
    /* The last page forward is complete. */
    snprintf(num, sizeof(num), "%" PRId64, alice_ids[89990]);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", num, "", "", NULL);
    CHECK(arg_is(r, 0, "complete") && page_ids(r, got) == 9 && got[8] == alice_ids[89999]);
    /* With one party, from the middle; and a time window. */
    snprintf(num, sizeof(num), "%" PRId64, alice_ids[45000]);
    r = call(b, "archive.query", "alice", "example.org", with[1], "", "", num, "", "10", NULL);
    CHECK(arg_is(r, 0, "incomplete") && arg_is(r, 1, "30000"));
    CHECK(page_ids(r, got) == 10 && got[0] == alice_ids[45001] && got[9] == alice_ids[45028]);
    r = call(b, "archive.query", "alice", "example.org", "", "1700000000000000", "1700000000999999",
             "", "last", "", NULL);
    /* rows 0..999 by time, of which alice has 900 */
    CHECK(arg_is(r, 0, "incomplete") && arg_is(r, 1, "900"));
    CHECK(page_ids(r, got) == 50 && got[49] == alice_ids[899]);
    r = call(b, "archive.query", "bob", "example.org", "", "", "", "", "last", "", NULL);
    CHECK(arg_is(r, 1, "10000") && page_ids(r, got) == 50);
    printf("archive: 9 queries in %.3f s\n", now_s() - t);

    /* The plans: the (domain, username[, with_jid], id) indexes, read in
     * id order (no sort), and the counts from the index alone. The
     * statements are the backends' (store_sqlite.c, store_mysql.c). */
    if (use_mysql) {
        query_plan("SELECT id, with_jid, direction, created_us, stanza FROM archive"
                   " FORCE INDEX (archive_by_user) WHERE domain = X'6578616d706c652e6f7267' AND"
                   " username = X'616c696365' AND created_us >= -9223372036854775808 AND"
                   " created_us <= 9223372036854775807 AND id > 50000 AND"
                   " id < 9223372036854775807 ORDER BY id LIMIT 51",
                   plan, sizeof(plan));
        CHECK(strncmp(plan, "archive_by_user:", 16) == 0 && strstr(plan, "filesort") == NULL);
        query_plan("SELECT id, with_jid, direction, created_us, stanza FROM archive"
                   " FORCE INDEX (archive_by_with) WHERE domain = X'6578616d706c652e6f7267' AND"
                   " username = X'616c696365' AND with_hash = UNHEX(SHA2('bob@example.org', 256))"
                   " AND created_us >= -9223372036854775808 AND created_us <= 9223372036854775807"
                   " AND id > 0 AND id < 9223372036854775807 ORDER BY id DESC LIMIT 51",
                   plan, sizeof(plan));
        CHECK(strncmp(plan, "archive_by_with:", 16) == 0 && strstr(plan, "filesort") == NULL);
        query_plan("SELECT COUNT(*) FROM archive FORCE INDEX (archive_by_user)"
                   " WHERE domain = X'6578616d706c652e6f7267' AND username = X'616c696365'"
                   " AND created_us >= 0 AND created_us <= 9223372036854775807",
                   plan, sizeof(plan));
        CHECK(strncmp(plan, "archive_by_user:", 16) == 0 && strstr(plan, "Using index") != NULL);
        query_plan("SELECT COUNT(*) FROM archive FORCE INDEX (archive_by_with)"
                   " WHERE domain = X'6578616d706c652e6f7267' AND username = X'616c696365'"
                   " AND with_hash = UNHEX(SHA2('bob@example.org', 256))"
                   " AND created_us >= 0 AND created_us <= 9223372036854775807",
                   plan, sizeof(plan));
        CHECK(strncmp(plan, "archive_by_with:", 16) == 0 && strstr(plan, "Using index") != NULL);
    } else {
        query_plan("SELECT id, with_jid, direction, created_us, stanza FROM archive"
                   " INDEXED BY archive_by_user WHERE domain = ?1 AND username = ?2 AND id > ?3"
                   " AND id < ?4 AND created_us >= ?5 AND created_us <= ?6"
                   " ORDER BY id DESC LIMIT ?7",
                   plan, sizeof(plan));
        CHECK(strstr(plan, "USING INDEX archive_by_user (domain=? AND username=? AND id>? AND "
                           "id<?)") != NULL);
        CHECK(strstr(plan, "TEMP B-TREE") == NULL);
        query_plan("SELECT id, with_jid, direction, created_us, stanza FROM archive"
                   " INDEXED BY archive_by_with WHERE domain = ?1 AND username = ?2 AND"
                   " with_jid = ?8 AND id > ?3 AND id < ?4 AND created_us >= ?5 AND"
                   " created_us <= ?6 ORDER BY id LIMIT ?7",
                   plan, sizeof(plan));
        CHECK(strstr(plan, "USING INDEX archive_by_with (domain=? AND username=? AND "
                           "with_jid=? AND id>? AND id<?)") != NULL);
        CHECK(strstr(plan, "TEMP B-TREE") == NULL);
        query_plan("SELECT COUNT(*) FROM archive INDEXED BY archive_by_with WHERE domain = ?1"
                   " AND username = ?2 AND with_jid = ?5 AND created_us >= ?3 AND"
                   " created_us <= ?4",
                   plan, sizeof(plan));
        CHECK(strstr(plan, "USING COVERING INDEX archive_by_with") != NULL);
        query_plan("SELECT COUNT(*) FROM archive INDEXED BY archive_by_user WHERE domain = ?1"
                   " AND username = ?2 AND created_us >= ?3 AND created_us <= ?4",
                   plan, sizeof(plan));
        CHECK(strstr(plan, "USING COVERING INDEX archive_by_user") != NULL);
        /* Left to itself (no INDEXED BY), the planner picks the same. */
        query_plan("SELECT id, with_jid, direction, created_us, stanza FROM archive"
                   " WHERE domain = ?1 AND username = ?2 AND id > ?3 AND id < ?4 AND"
                   " created_us >= ?5 AND created_us <= ?6 ORDER BY id LIMIT ?7",
                   plan, sizeof(plan));
        CHECK(strstr(plan, "USING INDEX archive_by_user") != NULL);
    }
    if (plan[0] != '\0')
        printf("archive: plan %s\n", plan);

    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

static void test_kv(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 64);
    const struct response *r;
    char *value;

    add_accounts(db, alice_bob, "example.org");
    r = call(b, "kv.get", "alice", "example.org", "vcard", "", NULL);
    CHECK_CODE(r, IPC_CODE_NOT_FOUND);
    CHECK_STR(r->reason, "no value");
    Q(b, 1, "kv.set", "alice", "example.org", "vcard", "", "<vCard xmlns='vcard-temp'/>", NULL);
    Q(b, 2, "kv.set", "alice", "example.org", "private", "storage storage:bookmarks", "<s1/>",
      NULL);
    Q(b, 3, "kv.set", "alice", "example.org", "private", "storage storage:rosternotes", "<s2/>",
      NULL);
    Q(b, 4, "kv.set", "bob", "example.org", "private", "storage storage:bookmarks", "<bob/>", NULL);
    Q(b, 5, "kv.get", "alice", "example.org", "private", "storage storage:bookmarks", NULL);
    Q(b, 6, "kv.set", "alice", "example.org", "private", "storage storage:bookmarks", "<s3/>",
      NULL);
    Q(b, 7, "kv.get", "alice", "example.org", "private", "storage storage:bookmarks", NULL);
    Q(b, 8, "kv.get", "bob", "example.org", "private", "storage storage:bookmarks", NULL);
    Q(b, 9, "kv.get", "alice", "example.org", "vcard", "", NULL);
    Q(b, 10, "kv.get", "bob", "example.org", "vcard", "", NULL);
    Q(b, 11, "kv.get", "alice", "example.org", "private", "storage storage:Bookmarks", NULL);
    run(b);
    CHECK(n_responses == 11);
    for (int i = 0; i < 4; i++)
        CHECK(responses[i].code == IPC_CODE_OK && responses[i].n_arg == 0);
    CHECK(responses[4].n_arg == 1 && arg_is(&responses[4], 0, "<s1/>"));
    CHECK(arg_is(&responses[6], 0, "<s3/>")); /* replaced */
    CHECK(arg_is(&responses[7], 0, "<bob/>"));
    CHECK(arg_is(&responses[8], 0, "<vCard xmlns='vcard-temp'/>"));
    CHECK_CODE(&responses[9], IPC_CODE_NOT_FOUND);
    CHECK_STR(responses[9].reason, "no value");
    CHECK_CODE(&responses[10], IPC_CODE_NOT_FOUND); /* keys are exact */

    /* Values are bytes: NULs and the empty value are kept. */
    const char *const args[] = {"alice", "example.org", "vcard", "", "a\0b"};
    const size_t lens[] = {5, 11, 5, 0, 3};
    CHECK_CODE(call_bytes(b, "kv.set", 5, args, lens), IPC_CODE_OK);
    r = call(b, "kv.get", "alice", "example.org", "vcard", "", NULL);
    CHECK(r->n_arg == 1 && r->args[0].len == 3 && memcmp(r->args[0].data, "a\0b", 3) == 0);
    CHECK_CODE(call(b, "kv.set", "bob", "example.org", "vcard", "", "", NULL), IPC_CODE_OK);
    r = call(b, "kv.get", "bob", "example.org", "vcard", "", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(r->n_arg == 1 && r->args[0].len == 0);

    /* 64 KiB is the largest value. */
    value = malloc(STORE_MAX_KV_VALUE + 2);
    CHECK(value != NULL);
    repeat(value, 'v', STORE_MAX_KV_VALUE + 1);
    r = call(b, "kv.set", "alice", "example.org", "vcard", "", value, NULL);
    CHECK_CODE(r, IPC_CODE_BAD_REQUEST);
    CHECK_STR(r->reason, "value too large");
    value[STORE_MAX_KV_VALUE] = '\0';
    CHECK_CODE(call(b, "kv.set", "alice", "example.org", "vcard", "", value, NULL), IPC_CODE_OK);
    r = call(b, "kv.get", "alice", "example.org", "vcard", "", NULL);
    CHECK(r->args[0].len == STORE_MAX_KV_VALUE &&
          memcmp(r->args[0].data, value, STORE_MAX_KV_VALUE) == 0);
    free(value);

    /* Kinds and keys. */
    static const struct {
        const char *kind, *key, *reason;
    } bad[] = {
        {"Vcard", "", "bad kind"},
        {"", "", "bad kind"},
        {"roster", "a b", "bad kind"},
        {"vcard", "x", "vcard key must be empty"},
        {"private", "", "empty private key"},
        {"private", "storage", "private key must be \"element-name namespace\""},
        {"private", " storage", "private key must be \"element-name namespace\""},
        {"private", "storage ", "private key must be \"element-name namespace\""},
        {"private", "a b c", "private key must be \"element-name namespace\""},
        {"private", "a  b", "private key must be \"element-name namespace\""},
        {"private", "a\tb", "control character in private key"},
        {"private", "a \xff", "private key is not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        Q(b, (uint32_t)(2 * i), "kv.get", "alice", "example.org", bad[i].kind, bad[i].key, NULL);
        Q(b, (uint32_t)(2 * i + 1), "kv.set", "alice", "example.org", bad[i].kind, bad[i].key, "v",
          NULL);
    }
    run(b);
    CHECK(n_responses == 2 * sizeof(bad) / sizeof(bad[0]));
    for (size_t i = 0; i < n_responses; i++) {
        CHECK_CODE(&responses[i], IPC_CODE_BAD_REQUEST);
        CHECK_STR(responses[i].reason, bad[i / 2].reason);
    }
    char key[STORE_MAX_KV_KEY + 2];
    repeat(key, 'k', STORE_MAX_KV_KEY);
    key[10] = ' ';
    CHECK_CODE(call(b, "kv.set", "alice", "example.org", "private", key, "<k/>", NULL),
               IPC_CODE_OK);
    r = call(b, "kv.get", "alice", "example.org", "private", key, NULL);
    CHECK(arg_is(r, 0, "<k/>"));
    strcat(key, "k");
    r = call(b, "kv.set", "alice", "example.org", "private", key, "<k/>", NULL);
    CHECK_STR(r->reason, "private key too long");

    /* Delete. */
    r = call(b, "kv.delete", "alice", "example.org", "private", "storage storage:bookmarks", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    r = call(b, "kv.delete", "alice", "example.org", "private", "storage storage:bookmarks", NULL);
    CHECK_CODE(r, IPC_CODE_NOT_FOUND);
    CHECK_STR(r->reason, "no value");
    r = call(b, "kv.get", "bob", "example.org", "private", "storage storage:bookmarks", NULL);
    CHECK(arg_is(r, 0, "<bob/>"));
    r = call(b, "kv.get", "alice", "example.org", "private", "storage storage:rosternotes", NULL);
    CHECK(arg_is(r, 0, "<s2/>"));

    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

static void test_blocklist(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 64);
    const struct response *r;
    char jid[64];
    const char *error;

    add_accounts(db, alice_bob, "example.org");
    r = call(b, "block.list", "alice", "example.org", NULL);
    CHECK(r->code == IPC_CODE_OK && r->n_arg == 0);
    r = call(b, "block.add", "alice", "example.org", "spam@example.net", "Eve@example.net",
             "eve@example.net", "spam@example.net", "日本@example.net", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    r = call(b, "block.add", "alice", "example.org", "eve@example.net", NULL); /* again: fine */
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK_CODE(call(b, "block.add", "bob", "example.org", "x@example.net", NULL), IPC_CODE_OK);
    r = call(b, "block.list", "alice", "example.org", NULL);
    CHECK(r->n_arg == 4);
    /* Bytewise order; JIDs as given (the XMPP worker normalizes). */
    CHECK(arg_is(r, 0, "Eve@example.net") && arg_is(r, 1, "eve@example.net") &&
          arg_is(r, 2, "spam@example.net") && arg_is(r, 3, "日本@example.net"));
    r = call(b, "block.add", "alice", "example.org", "ok@example.net", "", NULL);
    CHECK_CODE(r, IPC_CODE_BAD_REQUEST);
    CHECK_STR(r->reason, "empty JID");
    r = call(b, "block.add", "alice", "example.org", "a\x01@b", NULL);
    CHECK_STR(r->reason, "control character in JID");
    CHECK(raw_int("SELECT COUNT(*) FROM blocklist") == 5); /* nothing of those */

    r = call(b, "block.remove", "alice", "example.org", "eve@example.net", "nobody@example.net",
             NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    r = call(b, "block.list", "alice", "example.org", NULL);
    CHECK(r->n_arg == 3 && arg_is(r, 1, "spam@example.net"));
    r = call(b, "block.remove", "alice", "example.org", "spam@example.net", "", NULL);
    CHECK_CODE(r, IPC_CODE_BAD_REQUEST);
    /* Unblock all: alice's only. */
    r = call(b, "block.remove", "alice", "example.org", "", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    CHECK(call(b, "block.list", "alice", "example.org", NULL)->n_arg == 0);
    CHECK(call(b, "block.list", "bob", "example.org", NULL)->n_arg == 1);

    /* The cap: 9,999 blocked; two new JIDs are refused whole, one new
     * with one old fits exactly. Around the refused one in the same batch,
     * other writes stand (the savepoint undoes its own writes only). */
    CHECK(db->ops->begin(db, &error) == 0);
    for (int i = 0; i < STORE_MAX_BLOCKLIST - 1; i++) {
        snprintf(jid, sizeof(jid), "u%05d@example.net", i);
        CHECK(db->ops->block_add(db, "example.org", "alice",
                                 (struct store_column){jid, strlen(jid)}, &error) == STORE_OK);
    }
    CHECK(db->ops->block_add(db, "example.org", "alice", (struct store_column){jid, strlen(jid)},
                             &error) == STORE_CONFLICT);
    CHECK(db->ops->commit(db, &error) == 0);
    Q(b, 1, "kv.set", "alice", "example.org", "vcard", "", "<before/>", NULL);
    Q(b, 2, "block.add", "alice", "example.org", "new1@example.net", "new2@example.net", NULL);
    Q(b, 3, "kv.set", "alice", "example.org", "private", "a b", "<after/>", NULL);
    Q(b, 4, "block.add", "alice", "example.org", "u00000@example.net", "new1@example.net", NULL);
    Q(b, 5, "block.add", "alice", "example.org", "u00001@example.net", NULL); /* at the cap */
    Q(b, 6, "block.add", "alice", "example.org", "new2@example.net", NULL);
    Q(b, 7, "block.add", "bob", "example.org", "new2@example.net", NULL);
    run(b);
    CHECK(n_responses == 7);
    CHECK_CODE(&responses[0], IPC_CODE_OK);
    CHECK_CODE(&responses[1], IPC_CODE_BAD_REQUEST);
    CHECK_STR(responses[1].reason, "blocklist full");
    CHECK_CODE(&responses[2], IPC_CODE_OK);
    CHECK_CODE(&responses[3], IPC_CODE_OK);
    CHECK_CODE(&responses[4], IPC_CODE_OK);
    CHECK_CODE(&responses[5], IPC_CODE_BAD_REQUEST);
    CHECK_CODE(&responses[6], IPC_CODE_OK);
    CHECK(raw_int("SELECT COUNT(*) FROM blocklist WHERE username = 'alice'") ==
          STORE_MAX_BLOCKLIST);
    CHECK(raw_int("SELECT COUNT(*) FROM blocklist WHERE jid = 'new2@example.net'") == 1);
    CHECK(raw_int("SELECT COUNT(*) FROM kv") == 2);
    /* 10,000 JIDs of 18 bytes fit one response. */
    r = call(b, "block.list", "alice", "example.org", NULL);
    CHECK(r->n_arg == STORE_MAX_BLOCKLIST && r->reason[0] == '\0');

    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

/* account.unregister takes everything of the user's along, and only that. */
static void test_unregister_cascade(void)
{
    static const char *const users[] = {"alice", "bob", NULL};
    static const char *const tables[] = {"roster", "roster_version", "offline", "archive",
                                         "kv",     "blocklist"};
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 64);
    const struct response *r;
    char sql[128];

    add_accounts(db, users, "example.org");
    add_accounts(db, users, "example.net");
    for (int d = 0; d < 2; d++) {
        const char *domain = d ? "example.net" : "example.org";
        for (int u = 0; u < 2; u++) {
            Q(b, 1, "roster.set", users[u], domain, "c@x", "", "both", "", "0", "", NULL);
            Q(b, 2, "roster.set", users[u], domain, "d@x", "", "both", "", "0", "", NULL);
            Q(b, 3, "roster.remove", users[u], domain, "d@x", NULL);
            Q(b, 4, "offline.push", users[u], domain, "<message/>", NULL);
            Q(b, 5, "archive.append", users[u], domain, "c@x", "in", "1", "<message/>", NULL);
            Q(b, 6, "kv.set", users[u], domain, "vcard", "", "<vCard/>", NULL);
            Q(b, 7, "kv.set", users[u], domain, "private", "a b", "<a/>", NULL);
            Q(b, 8, "block.add", users[u], domain, "c@x", NULL);
        }
    }
    run(b);
    CHECK(n_responses == 32);
    for (size_t i = 0; i < n_responses; i++)
        CHECK_CODE(&responses[i], IPC_CODE_OK);

    r = call(b, "account.unregister", "alice", "example.org", NULL);
    CHECK_CODE(r, IPC_CODE_OK);
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM %s WHERE domain = 'example.org' AND username = 'alice'",
                 tables[i]);
        CHECK(raw_int(sql) == 0);
        /* The same user in the other domain, and the other user, keep theirs. */
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM %s WHERE domain = 'example.net' AND username = 'alice'",
                 tables[i]);
        CHECK(raw_int(sql) > 0);
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM %s WHERE domain = 'example.org' AND username = 'bob'",
                 tables[i]);
        CHECK(raw_int(sql) > 0);
    }
    CHECK(raw_int("SELECT COUNT(*) FROM roster") == 6);
    /* A new account of the same name starts empty. */
    CHECK_CODE(call(b, "account.register", "alice", "example.org", "pw", NULL), IPC_CODE_OK);
    r = call(b, "roster.get", "alice", "example.org", "", NULL);
    CHECK(r->n_arg == 1 && arg_is(r, 0, "0"));
    CHECK(call(b, "offline.fetch", "alice", "example.org", NULL)->n_arg == 0);
    CHECK(call(b, "block.list", "alice", "example.org", NULL)->n_arg == 0);
    CHECK_CODE(call(b, "kv.get", "alice", "example.org", "vcard", "", NULL), IPC_CODE_NOT_FOUND);
    r = call(b, "archive.query", "alice", "example.org", "", "", "", "", "", "", NULL);
    CHECK(r->n_arg == 2 && arg_is(r, 1, "0"));

    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

/* A database failure in a batch of per-user writes: all INTERNAL, none
 * of it committed, the roster version included. */
static void test_batch_failure_v2(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 16);
    char sql[128];

    add_accounts(db, alice_bob, "example.org");
    if (use_mysql)
        CHECK(raw_exec("CREATE TRIGGER boom BEFORE INSERT ON archive FOR EACH ROW"
                       " IF NEW.with_jid = 'boom@x' THEN"
                       " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom'; END IF") == 0);
    else
        CHECK(raw_exec("CREATE TRIGGER boom BEFORE INSERT ON archive"
                       " WHEN NEW.with_jid = 'boom@x' BEGIN SELECT RAISE(ABORT, 'boom'); END") ==
              0);
    Q(b, 1, "roster.set", "alice", "example.org", "c@x", "", "both", "", "0", "", NULL);
    Q(b, 2, "offline.push", "alice", "example.org", "<message/>", NULL);
    Q(b, 3, "kv.set", "alice", "example.org", "vcard", "", "<vCard/>", NULL);
    Q(b, 4, "block.add", "alice", "example.org", "c@x", NULL);
    Q(b, 5, "archive.append", "alice", "example.org", "c@x", "in", "1", "<message/>", NULL);
    Q(b, 6, "account.unregister", "bob", "example.org", NULL);
    Q(b, 7, "archive.append", "alice", "example.org", "boom@x", "in", "1", "<message/>", NULL);
    Q(b, 8, "roster.get", "alice", "example.org", "", NULL);
    run(b);
    CHECK(n_responses == 8);
    for (size_t i = 0; i < n_responses; i++) {
        CHECK(responses[i].req_id == i + 1);
        CHECK_CODE(&responses[i], IPC_CODE_INTERNAL);
    }
    for (size_t i = FIRST_V2_TABLE; i < N_TABLES; i++) {
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", all_tables[i]);
        CHECK(raw_int(sql) == 0);
    }
    CHECK(raw_int("SELECT COUNT(*) FROM accounts") == 2);

    /* The same without the failing request goes through. */
    CHECK(raw_exec("DROP TRIGGER boom") == 0);
    Q(b, 1, "roster.set", "alice", "example.org", "c@x", "", "both", "", "0", "", NULL);
    Q(b, 2, "archive.append", "alice", "example.org", "c@x", "in", "1", "<message/>", NULL);
    run(b);
    CHECK(n_responses == 2 && responses[0].code == IPC_CODE_OK && arg_is(&responses[0], 0, "1"));
    CHECK(raw_int("SELECT COUNT(*) FROM archive") == 1);

    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

/* Queued arguments count towards a byte budget, so that a batch holds a
 * bounded amount whatever its requests carry. */
static void test_batch_bytes(void)
{
    struct store_db *db = open_db();
    struct store_batch *b = store_batch_new(db, 1000);
    char *stanza = malloc(STORE_MAX_STANZA + 1);
    uint32_t n = 0;

    add_accounts(db, alice_bob, "example.org");
    CHECK(stanza != NULL);
    repeat(stanza, 'm', STORE_MAX_STANZA);
    while (!store_batch_full(b) && n < 1000)
        Q(b, n++, "offline.push", "alice", "example.org", stanza, NULL);
    /* 8 MB of 256 KiB stanzas, far below the 1000 requests allowed. */
    CHECK(n == 32);
    CHECK(!queue(b, 99, "store.ping", 0, NULL, NULL));
    run(b);
    CHECK(n_responses == 32 && responses[31].code == IPC_CODE_OK);
    CHECK(!store_batch_full(b));
    CHECK(raw_int("SELECT COUNT(*) FROM offline") == 32);
    free(stanza);
    wipe();
    store_batch_free(&b);
    store_db_free(&db);
}

int main(void)
{
    log_init("test_store", LOG_LEVEL_WARN);
    setup();
    printf("backend: %s\n", use_mysql ? "mysql" : "sqlite");
    test_usernames();
    test_migrations();
    test_open_failures();
    test_accounts();
    test_unicode();
    test_rollback();
    test_many();
    test_batch_ops();
    test_batch_limits();
    test_big_lists();
    test_batch_failure();
    test_reconnect();
    test_file_has_no_password();
    test_migrate_v1();
    test_no_account();
    test_roster();
    test_roster_caps();
    test_offline();
    test_archive();
    test_archive_big();
    test_kv();
    test_blocklist();
    test_unregister_cascade();
    test_batch_failure_v2();
    test_batch_bytes();
    free_responses();
    teardown();
    return check_result(use_mysql ? "test_store (mysql)" : "test_store (sqlite)");
}
