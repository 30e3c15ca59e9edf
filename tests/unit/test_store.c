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
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    CHECK(raw_exec("DROP TABLE IF EXISTS accounts") == 0);
    CHECK(raw_exec("DROP TABLE IF EXISTS schema_version") == 0);
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
    CHECK(raw_int("SELECT COUNT(*) FROM schema_version") == 1);
    CHECK(raw_int("SELECT MAX(version) FROM schema_version") == STORE_SCHEMA_VERSION);
    CHECK(raw_int("SELECT COUNT(*) FROM accounts") == 0);

    /* Again on the same connection, and after reconnecting: nothing to do. */
    CHECK(db->ops->migrate(db, &version, &error) == 0);
    CHECK(version == STORE_SCHEMA_VERSION);
    CHECK(store_db_connect(db, &version, &error) == 0);
    CHECK(version == STORE_SCHEMA_VERSION);
    CHECK(raw_int("SELECT COUNT(*) FROM schema_version") == 1);

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
#define MAX_KEPT_ARGS 8

struct response {
    uint32_t worker, req_id, code, n_arg;
    char reason[128];
    struct {
        uint8_t data[1100];
        uint32_t len;
    } args[MAX_KEPT_ARGS];
};

static struct response responses[MAX_RESPONSES];
static size_t n_responses;

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
        if (arg.len <= sizeof(r->args[i].data)) {
            memcpy(r->args[i].data, arg.ptr, arg.len);
            r->args[i].len = arg.len;
        }
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
    n_responses = 0;
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
    teardown();
    return check_result(use_mysql ? "test_store (mysql)" : "test_store (sqlite)");
}
