/*
 * Unit tests of the configuration loader (shared/config.c): defaults, every
 * class of error with its "name:line:" prefix, path resolution, the TLS
 * rule, fingerprints, and the shipped etc/switchboard.yml itself.
 */
#include "shared/config.h"
#include "shared/log.h"
#include "tests/unit/check.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_dir[PATH_MAX];

static struct config *load_ok(const char *text)
{
    struct config *c = NULL;
    const char *error = NULL;

    if (config_load_string("t.yml", text, strlen(text), &c, &error) < 0) {
        fprintf(stderr, "unexpected error: %s\n", error);
        return NULL;
    }
    CHECK(error == NULL);
    return c;
}

/* Loads text, which must fail with exactly this message. */
#define CHECK_ERROR(text, expected)                                                                \
    do {                                                                                           \
        struct config *c_ = (struct config *)1;                                                    \
        const char *e_ = NULL;                                                                     \
        CHECK(config_load_string("t.yml", text, strlen(text), &c_, &e_) == -1);                    \
        CHECK(c_ == NULL);                                                                         \
        CHECK_STR(e_, expected);                                                                   \
    } while (0)

/* Loads text, which must fail with a message that starts with prefix. */
#define CHECK_ERROR_PREFIX(text, prefix)                                                           \
    do {                                                                                           \
        struct config *c_ = (struct config *)1;                                                    \
        const char *e_ = NULL;                                                                     \
        CHECK(config_load_string("t.yml", text, strlen(text), &c_, &e_) == -1);                    \
        CHECK(c_ == NULL);                                                                         \
        CHECK(e_ != NULL && strncmp(e_, prefix, strlen(prefix)) == 0);                             \
        if (e_ != NULL && strncmp(e_, prefix, strlen(prefix)) != 0)                                \
            fprintf(stderr, "  expected prefix \"%s\", got \"%s\"\n", prefix, e_);                 \
    } while (0)

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fputs(text, f);
    fclose(f);
}

static void test_defaults(void)
{
    char cwd[PATH_MAX], expect[PATH_MAX + 64], endpoint[PATH_MAX + 64];
    char *parent;
    struct config *c = load_ok("# nothing but defaults\n");

    CHECK(c != NULL);
    if (c == NULL)
        return;
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    CHECK_STR(c->path, "t.yml");
    CHECK(c->n_hosts == 1);
    CHECK_STR(c->hosts[0], "localhost");
    /* ../var from the current directory, normalized. */
    parent = strrchr(cwd, '/');
    if (parent != NULL && parent != cwd)
        *parent = '\0';
    snprintf(expect, sizeof(expect), "%s/var", parent == cwd ? "" : cwd);
    CHECK_STR(c->state_dir, expect);
    CHECK(c->user == NULL);
    CHECK(c->log_level == LOG_LEVEL_INFO);
    CHECK(c->tls_certificate == NULL && c->tls_key == NULL);
    CHECK(c->broker.heartbeat_ms == 1000);
    CHECK(c->broker.heartbeat_misses == 3);
    CHECK(c->store.backend == CONFIG_BACKEND_SQLITE);
    snprintf(expect, sizeof(expect), "%s/switchboard.db", c->state_dir);
    CHECK_STR(c->store.sqlite_path, expect);
    CHECK(c->store.mysql_host == NULL && c->store.mysql_socket == NULL);
    CHECK(c->store.mysql_port == 3306);
    CHECK_STR(c->store.mysql_user, "switchboard");
    CHECK_STR(c->store.mysql_password, "");
    CHECK_STR(c->store.mysql_database, "switchboard");
    CHECK(c->store.batch_max == 256);
    snprintf(expect, sizeof(expect), "%s/run/control.sock", c->state_dir);
    CHECK_STR(c->supervisor.control_socket, expect);
    CHECK(c->supervisor.restart_intensity == 5);
    CHECK(c->supervisor.restart_period_s == 60);
    CHECK(c->supervisor.backoff_min_ms == 500);
    CHECK(c->supervisor.backoff_max_ms == 30000);
    CHECK(c->supervisor.stop_timeout_ms == 10000);
    CHECK(c->limits.max_connections == 10000);
    CHECK(c->limits.idle_timeout_s == 300);
    CHECK(c->limits.max_input == 262144);
    CHECK(c->limits.max_output == 1048576);
    CHECK(c->xmpp.require_tls);
    CHECK(c->xmpp.max_stanza == 262144);
    CHECK(c->xmpp.max_sessions_per_account == 10);
    CHECK(c->xmpp.auth_failures == 3);
    CHECK(c->xmpp.plain);
    CHECK(c->xmpp.max_connections_per_ip == 50);
    CHECK(c->workers[SB_WORKER_BROKER].enabled);
    CHECK(c->workers[SB_WORKER_STORE].enabled);
    for (int k = SB_WORKER_ROOMS; k < SB_WORKER_COUNT; k++) {
        CHECK(!c->workers[k].enabled);
        CHECK(c->workers[k].n_listeners == 0);
    }
    for (int k = 0; k < SB_WORKER_COUNT; k++)
        CHECK(c->workers[k].fingerprint != NULL);
    snprintf(expect, sizeof(expect), "ipc://%s/run/broker.sock", c->state_dir);
    config_broker_endpoint(c, endpoint, sizeof(endpoint));
    CHECK_STR(endpoint, expect);
    config_free(&c);
    CHECK(c == NULL);
    config_free(&c); /* a NULL pointer is fine */

    /* An empty file and an empty document mean the same. */
    c = NULL;
    {
        const char *e = NULL;
        CHECK(config_load_string("t.yml", "", 0, &c, &e) == 0);
        CHECK(c != NULL && c->n_hosts == 1);
        config_free(&c);
    }
    c = load_ok("---\n");
    CHECK(c != NULL);
    config_free(&c);
}

static void test_values(void)
{
    struct config *c = load_ok("hosts: [Example.ORG, chat.example.org, a-1.b2]\n"
                               "state_dir: /srv/sb/./data//\n"
                               "user: switchboard\n"
                               "log_level: debug\n"
                               "broker: {heartbeat_ms: 50, heartbeat_misses: 100}\n"
                               "store:\n"
                               "  backend: mysql\n"
                               "  sqlite: {path: /db/x.db}\n"
                               "  mysql:\n"
                               "    host: db.local\n"
                               "    port: 3307\n"
                               "    socket: ../mysql.sock\n"
                               "    user: u\n"
                               "    password: ''\n"
                               "    database: d\n"
                               "  batch_max: 10000\n"
                               "supervisor:\n"
                               "  control_socket: ctl.sock\n"
                               "  restart_intensity: 1000\n"
                               "  restart_period: 86400\n"
                               "  backoff_min_ms: 10\n"
                               "  backoff_max_ms: 10\n"
                               "  stop_timeout_ms: 100\n"
                               "limits:\n"
                               "  max_connections: 0\n"
                               "  idle_timeout: 0\n"
                               "  max_input: 1024\n"
                               "  max_output: 268435456\n"
                               "workers:\n"
                               "  mqtt:\n"
                               "    enabled: true\n"
                               "    listeners:\n"
                               "      - name: mqtt\n"
                               "        address: '::0'\n"
                               "        port: 1883\n"
                               "      - {name: sip-like, address: 127.0.0.1, port: 1883,\n"
                               "         transport: udp, tls: none}\n"
                               "  sip: {enabled: false}\n");
    char cwd[PATH_MAX], expect[PATH_MAX + 64], *slash;

    CHECK(c != NULL);
    if (c == NULL)
        return;
    CHECK(c->n_hosts == 3);
    CHECK_STR(c->hosts[0], "example.org");
    CHECK_STR(c->hosts[1], "chat.example.org");
    CHECK_STR(c->hosts[2], "a-1.b2");
    CHECK_STR(c->state_dir, "/srv/sb/data");
    CHECK_STR(c->user, "switchboard");
    CHECK(c->log_level == LOG_LEVEL_DEBUG);
    CHECK(c->broker.heartbeat_ms == 50 && c->broker.heartbeat_misses == 100);
    CHECK(c->store.backend == CONFIG_BACKEND_MYSQL);
    CHECK_STR(c->store.sqlite_path, "/db/x.db");
    CHECK_STR(c->store.mysql_host, "db.local");
    CHECK(c->store.mysql_port == 3307);
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    slash = strrchr(cwd, '/');
    if (slash != NULL)
        *slash = '\0';
    snprintf(expect, sizeof(expect), "%s/mysql.sock", cwd);
    CHECK_STR(c->store.mysql_socket, expect);
    CHECK_STR(c->store.mysql_user, "u");
    CHECK_STR(c->store.mysql_password, "");
    CHECK_STR(c->store.mysql_database, "d");
    CHECK(c->store.batch_max == 10000);
    CHECK_STR(c->supervisor.control_socket, "/srv/sb/data/ctl.sock");
    CHECK(c->supervisor.restart_intensity == 1000);
    CHECK(c->supervisor.restart_period_s == 86400);
    CHECK(c->supervisor.backoff_min_ms == 10 && c->supervisor.backoff_max_ms == 10);
    CHECK(c->supervisor.stop_timeout_ms == 100);
    CHECK(c->limits.max_connections == 0 && c->limits.idle_timeout_s == 0);
    CHECK(c->limits.max_input == 1024 && c->limits.max_output == 268435456);
    CHECK(c->workers[SB_WORKER_MQTT].enabled);
    CHECK(c->workers[SB_WORKER_MQTT].n_listeners == 2);
    if (c->workers[SB_WORKER_MQTT].n_listeners == 2) {
        const struct config_listener *a = &c->workers[SB_WORKER_MQTT].listeners[0];
        const struct config_listener *b = &c->workers[SB_WORKER_MQTT].listeners[1];
        CHECK_STR(a->name, "mqtt");
        CHECK_STR(a->address, "::"); /* canonical form */
        CHECK(a->port == 1883 && a->tls == CONFIG_TLS_NONE);
        CHECK(a->transport == CONFIG_TRANSPORT_TCP);
        CHECK(a->line == 33);
        CHECK_STR(b->name, "sip-like");
        CHECK(b->transport == CONFIG_TRANSPORT_UDP && b->line == 36);
    }
    CHECK(!c->workers[SB_WORKER_SIP].enabled);
    config_free(&c);

    /* Unix socket instead of a host. */
    c = load_ok("store: {backend: mysql, mysql: {socket: /run/mysqld/mysqld.sock}}\n");
    CHECK(c != NULL && c->store.mysql_host == NULL);
    CHECK(c != NULL && strcmp(c->store.mysql_socket, "/run/mysqld/mysqld.sock") == 0);
    config_free(&c);
}

static void test_worker_names(void)
{
    static const char *const names[] = {"broker", "store", "rooms", "xmpp", "mqtt", "sip", "irc"};
    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        CHECK_STR(config_worker_name(k), names[k]);
        CHECK(config_worker_parse(names[k]) == k);
    }
    CHECK(config_worker_parse("XMPP") == -1);
    CHECK(config_worker_parse("") == -1);
    CHECK(config_worker_parse("smtp") == -1);
}

static void test_errors(void)
{
    /* Unknown keys, at every level. */
    CHECK_ERROR("log_level: info\nfoo: 1\n", "t.yml:2: unknown key 'foo'");
    CHECK_ERROR("workers:\n  xmpp:\n    enabled: false\n    foo: bar\n",
                "t.yml:4: unknown key 'foo' in workers.xmpp");
    CHECK_ERROR("workers:\n  smtp: {enabled: true}\n", "t.yml:2: unknown key 'smtp' in workers");
    CHECK_ERROR("workers:\n  broker: {enabled: true}\n",
                "t.yml:2: unknown key 'broker' in workers");
    CHECK_ERROR("store: {mysql: {hostname: x}}\n",
                "t.yml:1: unknown key 'hostname' in store.mysql");
    CHECK_ERROR("workers:\n  irc:\n    listeners:\n      - {name: a, address: '::1', port: 1, "
                "ssl: true}\n",
                "t.yml:4: unknown key 'ssl' in workers.irc.listeners[0]");

    /* Wrong types. */
    CHECK_ERROR("broker:\n  heartbeat_ms: fast\n",
                "t.yml:2: expected an integer for broker.heartbeat_ms");
    CHECK_ERROR("broker:\n  heartbeat_ms: '1000'\n",
                "t.yml:2: expected an integer for broker.heartbeat_ms");
    CHECK_ERROR("broker:\n  heartbeat_ms: 0x10\n",
                "t.yml:2: expected an integer for broker.heartbeat_ms");
    CHECK_ERROR("broker:\n  heartbeat_ms: 01000\n",
                "t.yml:2: expected an integer for broker.heartbeat_ms");
    CHECK_ERROR("broker:\n  heartbeat_ms: 1000.0\n",
                "t.yml:2: expected an integer for broker.heartbeat_ms");
    CHECK_ERROR("broker:\n  heartbeat_ms: [1000]\n",
                "t.yml:2: expected an integer for broker.heartbeat_ms");
    CHECK_ERROR("broker: 5\n", "t.yml:1: expected a mapping for broker");
    CHECK_ERROR("- a\n- b\n", "t.yml:1: expected a mapping at the top level");
    CHECK_ERROR("hosts: localhost\n", "t.yml:1: expected a list for hosts");
    CHECK_ERROR("user: {name: x}\n", "t.yml:1: expected a string for user");
    CHECK_ERROR("user:\n", "t.yml:1: missing value for user");
    CHECK_ERROR("broker:\n  heartbeat_ms: ~\n", "t.yml:2: missing value for broker.heartbeat_ms");
    CHECK_ERROR("workers:\n  xmpp: {enabled: yes}\n",
                "t.yml:2: expected true or false for workers.xmpp.enabled");
    CHECK_ERROR("workers:\n  xmpp: {enabled: 'true'}\n",
                "t.yml:2: expected true or false for workers.xmpp.enabled");
    CHECK_ERROR("workers:\n  xmpp: {listeners: {name: x}}\n",
                "t.yml:2: expected a list for workers.xmpp.listeners");
    CHECK_ERROR("{[a]: 1}\n", "t.yml:1: mapping keys must be strings");

    /* Ranges. */
    CHECK_ERROR("broker: {heartbeat_ms: 49}\n",
                "t.yml:1: broker.heartbeat_ms 49 out of range (50-60000)");
    CHECK_ERROR("broker: {heartbeat_misses: -1}\n",
                "t.yml:1: broker.heartbeat_misses -1 out of range (1-100)");
    CHECK_ERROR("limits: {max_input: 99999999999999999999999}\n",
                "t.yml:1: limits.max_input 99999999999999999999999 out of range (1024-67108864)");
    CHECK_ERROR("store: {batch_max: 10001}\n", "t.yml:1: store.batch_max 10001 out of range "
                                               "(1-10000)");
    CHECK_ERROR("supervisor:\n  backoff_min_ms: 1000\n  backoff_max_ms: 999\n",
                "t.yml:3: supervisor.backoff_max_ms 999 is below supervisor.backoff_min_ms 1000");
    CHECK_ERROR("supervisor:\n  backoff_min_ms: 40000\n",
                "t.yml:2: supervisor.backoff_max_ms 30000 is below supervisor.backoff_min_ms "
                "40000");
    CHECK_ERROR("workers:\n  xmpp:\n    listeners:\n      - name: c2s\n        address: 0.0.0.0\n"
                "        port: 70000\n",
                "t.yml:6: workers.xmpp.listeners[0].port 70000 out of range (0-65535)");

    /* Enumerations. */
    CHECK_ERROR("log_level: verbose\n",
                "t.yml:1: expected one of debug, info, warn, error for log_level");
    CHECK_ERROR("store: {backend: postgres}\n",
                "t.yml:1: expected one of sqlite, mysql for store.backend");
    CHECK_ERROR("store:\n  backend: mysql\n",
                "t.yml:2: store.backend mysql needs store.mysql.host or store.mysql.socket");

    /* Duplicates. */
    CHECK_ERROR("hosts: [a]\nlog_level: info\nhosts: [b]\n", "t.yml:3: duplicate key 'hosts'");
    CHECK_ERROR("broker:\n  heartbeat_ms: 100\n  heartbeat_ms: 200\n",
                "t.yml:3: duplicate key 'heartbeat_ms'");
    CHECK_ERROR("hosts: [a.org, b.org, A.org]\n", "t.yml:1: duplicate host 'a.org'");
    CHECK_ERROR("workers:\n  mqtt:\n    listeners:\n"
                "      - {name: m, address: 127.0.0.1, port: 1}\n"
                "      - {name: m, address: 127.0.0.1, port: 2}\n",
                "t.yml:5: duplicate listener name 'm'");

    /* Hosts. */
    CHECK_ERROR("hosts: []\n", "t.yml:1: hosts must not be empty");
    CHECK_ERROR("hosts:\n  - ok.org\n  - -bad.org\n",
                "t.yml:3: '-bad.org' is not a valid domain name");
    CHECK_ERROR("hosts: [bad-.org]\n", "t.yml:1: 'bad-.org' is not a valid domain name");
    CHECK_ERROR("hosts: [a..org]\n", "t.yml:1: 'a..org' is not a valid domain name");
    CHECK_ERROR("hosts: [a.org.]\n", "t.yml:1: 'a.org.' is not a valid domain name");
    CHECK_ERROR("hosts: [a_b.org]\n", "t.yml:1: 'a_b.org' is not a valid domain name");
    CHECK_ERROR("hosts: ['']\n", "t.yml:1: '' is not a valid domain name");
    CHECK_ERROR("hosts: [[a]]\n", "t.yml:1: expected a domain name in hosts");
    {
        char text[400], label[70];
        memset(label, 'a', 64);
        label[64] = '\0';
        snprintf(text, sizeof(text), "hosts: [%s.org]\n", label);
        CHECK_ERROR_PREFIX(text, "t.yml:1: 'aaaa");
        label[63] = '\0'; /* 63 is the longest label */
        snprintf(text, sizeof(text), "hosts: [%s.org]\n", label);
        struct config *c = load_ok(text);
        CHECK(c != NULL);
        config_free(&c);
    }

    /* Listeners. */
    CHECK_ERROR("workers:\n  sip:\n    listeners:\n"
                "      - {name: s, address: 0.0.0.0, port: 5061, transport: udp, tls: direct}\n",
                "t.yml:4: listener 's': tls direct is not possible over udp");
    CHECK_ERROR("workers:\n  sip:\n    listeners:\n      - {name: s, port: 5060}\n",
                "t.yml:4: workers.sip.listeners[0].address is required");
    CHECK_ERROR("workers:\n  sip:\n    listeners:\n      - {name: s, address: localhost, "
                "port: 1}\n",
                "t.yml:4: 'localhost' is not a numeric IPv4 or IPv6 address");
    CHECK_ERROR("workers:\n  sip:\n    listeners:\n      - {name: Sip, address: '::', port: 1}\n",
                "t.yml:4: listener name 'Sip' must be 1 to 32 of a-z, 0-9 and '-'");
    CHECK_ERROR("workers:\n  sip:\n    listeners:\n      - {name: s, address: '::', port: 1, "
                "tls: ssl}\n",
                "t.yml:4: expected one of none, starttls, direct for "
                "workers.sip.listeners[0].tls");

    /* Conflicts between enabled listeners, across workers; the later one
     * is reported, naming the earlier. */
    CHECK_ERROR("workers:\n"
                "  xmpp:\n"
                "    enabled: true\n"
                "    listeners:\n"
                "      - {name: x, address: 127.0.0.1, port: 5222}\n"
                "  mqtt:\n"
                "    enabled: true\n"
                "    listeners:\n"
                "      - {name: c2s, address: 127.0.0.1, port: 5222}\n",
                "t.yml:9: listener 'c2s' conflicts with listener 'x' of worker xmpp on "
                "127.0.0.1:5222/tcp");
    CHECK_ERROR("workers:\n"
                "  irc:\n"
                "    enabled: true\n"
                "    listeners:\n"
                "      - {name: a, address: '::1', port: 6667}\n"
                "      - {name: b, address: '0:0::1', port: 6667}\n",
                "t.yml:6: listener 'b' conflicts with listener 'a' of worker irc on "
                "[::1]:6667/tcp");
    /* No conflict: a disabled worker, another transport, port 0. */
    {
        struct config *c = load_ok("workers:\n"
                                   "  xmpp:\n"
                                   "    listeners:\n"
                                   "      - {name: x, address: 127.0.0.1, port: 5222}\n"
                                   "  mqtt:\n"
                                   "    enabled: true\n"
                                   "    listeners:\n"
                                   "      - {name: a, address: 127.0.0.1, port: 5222}\n"
                                   "      - {name: b, address: 127.0.0.1, port: 5222, "
                                   "transport: udp}\n"
                                   "      - {name: c, address: 127.0.0.1, port: 0}\n"
                                   "      - {name: d, address: 127.0.0.1, port: 0}\n"
                                   "      - {name: e, address: 127.0.0.2, port: 5222}\n");
        CHECK(c != NULL);
        config_free(&c);
    }

    /* TLS without a tls section. */
    CHECK_ERROR("workers:\n  irc:\n    enabled: true\n    listeners:\n"
                "      - {name: irc-tls, address: '::', port: 6697, tls: direct}\n",
                "t.yml:5: listener 'irc-tls' of worker irc uses TLS but there is no tls section");
    CHECK_ERROR("tls:\n  certificate: /x.crt\n", "t.yml:2: tls.key is required in the tls section");
}

static void test_yaml_refused(void)
{
    /* Syntax errors carry the parser's line. */
    CHECK_ERROR_PREFIX("hosts: [a\nlog_level: info\n", "t.yml:");
    CHECK_ERROR_PREFIX("log_level: info\nbroker:\n  heartbeat_ms: 1\n bad: x\n",
                       "t.yml:4: YAML syntax error: ");
    CHECK_ERROR_PREFIX("user: \"a\\qb\"\n", "t.yml:1: YAML syntax error: ");
    CHECK_ERROR_PREFIX("user: a\n\xff\xfe\n", "t.yml:2: YAML syntax error: ");

    /* Anchors, aliases, tags, documents. */
    CHECK_ERROR("hosts: &h [a.org]\n", "t.yml:1: YAML anchors are not allowed");
    CHECK_ERROR("a: &x 1\nb: *x\n", "t.yml:1: YAML anchors are not allowed");
    CHECK_ERROR("hosts:\n  - *x\n", "t.yml:2: YAML aliases are not allowed");
    CHECK_ERROR("broker: {heartbeat_ms: !!int 100}\n", "t.yml:1: YAML tags are not allowed");
    CHECK_ERROR("%TAG ! tag:example.org,2000:\n---\nuser: x\n",
                "t.yml:1: YAML tags are not allowed");
    CHECK_ERROR("user: a\n---\nuser: b\n", "t.yml:2: only one YAML document is allowed");
    CHECK_ERROR("user: \"a\\0b\"\n", "t.yml:1: control character in user");
    CHECK_ERROR("user: ''\n", "t.yml:1: empty value for user");

    /* Nesting: 16 levels are parsed (and then refused by the schema), 17
     * are refused while parsing. */
    {
        char text[256] = "";
        for (int i = 0; i < CONFIG_MAX_DEPTH; i++)
            strcat(text, "[");
        strcat(text, "1");
        for (int i = 0; i < CONFIG_MAX_DEPTH; i++)
            strcat(text, "]");
        strcat(text, "\n");
        CHECK_ERROR(text, "t.yml:1: expected a mapping at the top level");
        memmove(text + 1, text, strlen(text) + 1);
        text[0] = '[';
        strcpy(text + strlen(text) - 1, "]\n");
        CHECK_ERROR(text, "t.yml:1: nesting deeper than 16 levels");
    }
    {
        char text[512] = "";
        /* A block mapping 17 deep: the error is on the 17th line. */
        for (int i = 0; i < 17; i++) {
            char line[64];
            snprintf(line, sizeof(line), "%*sk%d:\n", i, "", i);
            strcat(text, line);
        }
        CHECK_ERROR(text, "t.yml:17: nesting deeper than 16 levels");
    }

    /* Size cap. */
    {
        size_t len = CONFIG_MAX_SIZE + 1;
        char *big = malloc(len);
        struct config *c = NULL;
        const char *e = NULL;
        CHECK(big != NULL);
        if (big != NULL) {
            memset(big, '#', len);
            CHECK(config_load_string("big.yml", big, len, &c, &e) == -1);
            CHECK(c == NULL);
            CHECK(e != NULL && strncmp(e, "big.yml:1: file larger than", 27) == 0);
            /* Exactly the cap is fine (a comment). */
            CHECK(config_load_string("big.yml", big, len - 1, &c, &e) == 0);
            config_free(&c);
            free(big);
        }
    }

    /* Node cap: a list of 70000 items. */
    {
        size_t n = 70000, len = 0;
        char *text = malloc(8 + 2 * n + 4);
        CHECK(text != NULL);
        if (text != NULL) {
            len += (size_t)sprintf(text, "hosts: [");
            for (size_t i = 0; i < n; i++) {
                text[len++] = 'a';
                text[len++] = ',';
            }
            memcpy(text + len - 1, "]\n", 3);
            CHECK_ERROR(text, "t.yml:1: more than 65536 YAML values");
            free(text);
        }
    }

    /* A billion laughs never gets past the first anchor. */
    CHECK_ERROR("a: &a [\"lol\",\"lol\"]\nb: &b [*a,*a]\nc: [*b,*b]\n",
                "t.yml:1: YAML anchors are not allowed");
}

static void test_files(void)
{
    char path[PATH_MAX + 64], cert[PATH_MAX + 64], key[PATH_MAX + 64];
    char text[4 * PATH_MAX], expect[3 * PATH_MAX];
    struct config *c = NULL;
    const char *e = NULL;

    snprintf(path, sizeof(path), "%s/etc", tmp_dir);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/tls", tmp_dir);
    CHECK(mkdir(path, 0700) == 0);

    /* Relative paths resolve against the file's directory, through a
     * relative path to the file itself. */
    snprintf(path, sizeof(path), "%s/etc/sb.yml", tmp_dir);
    write_file(path, "state_dir: ../state\n"
                     "tls: {certificate: ../tls/c.pem, key: ./../tls/k.pem}\n"
                     "store: {sqlite: {path: db/s.db}}\n"
                     "workers:\n"
                     "  xmpp:\n"
                     "    enabled: true\n"
                     "    listeners:\n"
                     "      - {name: c2s, address: 127.0.0.1, port: 0, tls: starttls}\n");
    CHECK(config_load(path, &c, &e) == -1);
    snprintf(expect, sizeof(expect), "%s:2: certificate file '%s/tls/c.pem' not found", path,
             tmp_dir);
    CHECK_STR(e, expect);
    snprintf(cert, sizeof(cert), "%s/tls/c.pem", tmp_dir);
    snprintf(key, sizeof(key), "%s/tls/k.pem", tmp_dir);
    write_file(cert, "cert\n");
    CHECK(config_load(path, &c, &e) == -1);
    snprintf(expect, sizeof(expect), "%s:2: key file '%s/tls/k.pem' not found", path, tmp_dir);
    CHECK_STR(e, expect);
    write_file(key, "key\n");
    if (geteuid() != 0) { /* root reads anything */
        CHECK(chmod(key, 0) == 0);
        CHECK(config_load(path, &c, &e) == -1);
        snprintf(expect, sizeof(expect),
                 "%s:2: key file '%s/tls/k.pem' not readable: Permission denied", path, tmp_dir);
        CHECK_STR(e, expect);
        CHECK(chmod(key, 0600) == 0);
    }
    CHECK(config_load(path, &c, &e) == 0);
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK_STR(c->path, path);
        snprintf(expect, sizeof(expect), "%s/state", tmp_dir);
        CHECK_STR(c->state_dir, expect);
        snprintf(expect, sizeof(expect), "%s/state/db/s.db", tmp_dir);
        CHECK_STR(c->store.sqlite_path, expect);
        CHECK_STR(c->tls_certificate, cert);
        CHECK_STR(c->tls_key, key);
        config_free(&c);
    }

    /* With the TLS listener disabled the files are not needed and not
     * handed out. */
    CHECK(unlink(cert) == 0);
    write_file(path, "tls: {certificate: ../tls/c.pem, key: ../tls/k.pem}\n"
                     "workers:\n"
                     "  xmpp:\n"
                     "    enabled: false\n"
                     "    listeners:\n"
                     "      - {name: c2s, address: 127.0.0.1, port: 0, tls: starttls}\n"
                     "  mqtt:\n"
                     "    enabled: true\n"
                     "    listeners:\n"
                     "      - {name: mqtt, address: 127.0.0.1, port: 0}\n");
    CHECK(config_load(path, &c, &e) == 0);
    CHECK(c != NULL && c->tls_certificate == NULL && c->tls_key == NULL);
    config_free(&c);

    /* A path relative to the current directory: "etc/sb.yml". */
    CHECK(chdir(tmp_dir) == 0);
    write_file("etc/rel.yml", "state_dir: .\n");
    CHECK(config_load("etc/rel.yml", &c, &e) == 0);
    if (c != NULL) {
        CHECK_STR(c->path, "etc/rel.yml");
        snprintf(expect, sizeof(expect), "%s/etc", tmp_dir);
        CHECK_STR(c->state_dir, expect);
        config_free(&c);
    }
    write_file("bare.yml", "state_dir: s\n");
    CHECK(config_load("bare.yml", &c, &e) == 0);
    if (c != NULL) {
        snprintf(expect, sizeof(expect), "%s/s", tmp_dir);
        CHECK_STR(c->state_dir, expect);
        config_free(&c);
    }
    /* config_load_string takes the current directory. */
    c = load_ok("state_dir: ./x/../y\n");
    if (c != NULL) {
        snprintf(expect, sizeof(expect), "%s/y", tmp_dir);
        CHECK_STR(c->state_dir, expect);
        config_free(&c);
    }

    /* Errors carry the path as given. */
    write_file("etc/bad.yml", "log_level: info\n\nlog_level: info\n");
    CHECK(config_load("etc/bad.yml", &c, &e) == -1);
    CHECK_STR(e, "etc/bad.yml:3: duplicate key 'log_level'");
    CHECK(config_load("etc/missing.yml", &c, &e) == -1);
    CHECK_STR(e, "etc/missing.yml: cannot open: No such file or directory");
    CHECK(config_load("nodir/x.yml", &c, &e) == -1);
    CHECK_STR(e, "nodir/x.yml: cannot open: No such file or directory");
    CHECK(config_load("etc", &c, &e) == -1);
    CHECK_STR(e, "etc: not a regular file");

    /* A state_dir too long for the sockets under it. */
    snprintf(text, sizeof(text), "state_dir: /%0100d\n", 0);
    CHECK_ERROR_PREFIX(text, "t.yml:1: state_dir '/000");
    (void)text;
}

static char *fingerprint_of(const char *text, enum sb_worker_kind kind)
{
    struct config *c = load_ok(text);
    char *fp;

    if (c == NULL)
        return NULL;
    fp = strdup(c->workers[kind].fingerprint);
    config_free(&c);
    return fp;
}

static void test_fingerprints(void)
{
    static const char base[] = "hosts: [a.org]\n"
                               "store: {backend: sqlite}\n"
                               "workers:\n"
                               "  xmpp:\n"
                               "    enabled: true\n"
                               "    listeners:\n"
                               "      - {name: c2s, address: 127.0.0.1, port: 5222}\n"
                               "  mqtt:\n"
                               "    enabled: true\n"
                               "    listeners:\n"
                               "      - {name: mqtt, address: 127.0.0.1, port: 1883}\n";
    /* The same settings, written differently. */
    static const char reformatted[] = "# comment\n"
                                      "workers:\n"
                                      "  mqtt: {listeners: [{port: 1883, name: mqtt,\n"
                                      "         address: \"127.0.0.1\", tls: none}],\n"
                                      "         enabled: true}\n"
                                      "  xmpp:\n"
                                      "      listeners:\n"
                                      "      -   name: c2s\n"
                                      "          port: 5222\n"
                                      "          address: 127.000.0.1x\n"
                                      "      enabled: true\n"
                                      "hosts:\n"
                                      "  - A.ORG\n"
                                      "log_level: info\n";
    /* xmpp's listener moves; nothing else changes. */
    static const char moved[] = "hosts: [a.org]\n"
                                "workers:\n"
                                "  xmpp:\n"
                                "    enabled: true\n"
                                "    listeners:\n"
                                "      - {name: c2s, address: 127.0.0.1, port: 5223}\n"
                                "  mqtt:\n"
                                "    enabled: true\n"
                                "    listeners:\n"
                                "      - {name: mqtt, address: 127.0.0.1, port: 1883}\n";
    /* store changes; protocol workers do not care. */
    static const char store[] = "hosts: [a.org]\n"
                                "store: {batch_max: 100}\n"
                                "workers:\n"
                                "  xmpp:\n"
                                "    enabled: true\n"
                                "    listeners:\n"
                                "      - {name: c2s, address: 127.0.0.1, port: 5222}\n"
                                "  mqtt:\n"
                                "    enabled: true\n"
                                "    listeners:\n"
                                "      - {name: mqtt, address: 127.0.0.1, port: 1883}\n";
    /* A global value changes: every worker. */
    static const char global[] = "hosts: [a.org, b.org]\n"
                                 "workers:\n"
                                 "  xmpp:\n"
                                 "    enabled: true\n"
                                 "    listeners:\n"
                                 "      - {name: c2s, address: 127.0.0.1, port: 5222}\n"
                                 "  mqtt:\n"
                                 "    enabled: true\n"
                                 "    listeners:\n"
                                 "      - {name: mqtt, address: 127.0.0.1, port: 1883}\n";
    char reformatted_ok[sizeof(reformatted)];
    char *p;

    /* (The "x" above makes the address invalid; take it out. It checks that
     * the reformatted text is really parsed, not skipped.) */
    CHECK_ERROR(reformatted, "t.yml:10: '127.000.0.1x' is not a numeric IPv4 or IPv6 address");
    strcpy(reformatted_ok, reformatted);
    p = strstr(reformatted_ok, "127.000.0.1x");
    memcpy(p, "127.0.0.1   ", 12);

    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        char *a = fingerprint_of(base, k), *b = fingerprint_of(reformatted_ok, k);
        char *m = fingerprint_of(moved, k), *s = fingerprint_of(store, k);
        char *g = fingerprint_of(global, k);

        CHECK(a != NULL && b != NULL && m != NULL && s != NULL && g != NULL);
        if (a && b && m && s && g) {
            CHECK_STR(b, a);
            if (k == SB_WORKER_XMPP)
                CHECK(strcmp(m, a) != 0);
            else
                CHECK_STR(m, a);
            if (k == SB_WORKER_STORE)
                CHECK(strcmp(s, a) != 0);
            else
                CHECK_STR(s, a);
            CHECK(strcmp(g, a) != 0);
        }
        free(a);
        free(b);
        free(m);
        free(s);
        free(g);
    }

    /* Enabling a worker changes only its own fingerprint. */
    {
        char *off = fingerprint_of("workers: {sip: {enabled: false}}\n", SB_WORKER_SIP);
        char *on = fingerprint_of("workers: {sip: {enabled: true}}\n", SB_WORKER_SIP);
        char *broker = fingerprint_of("workers: {sip: {enabled: true}}\n", SB_WORKER_BROKER);
        char *broker_off = fingerprint_of("workers: {sip: {enabled: false}}\n", SB_WORKER_BROKER);
        CHECK(off != NULL && on != NULL && strcmp(off, on) != 0);
        CHECK(broker != NULL && broker_off != NULL && strcmp(broker, broker_off) == 0);
        free(off);
        free(on);
        free(broker);
        free(broker_off);
    }

    /* The MySQL password counts, but is not in the text. */
    {
        char *p1 = fingerprint_of("store: {mysql: {password: hunter2}}\n", SB_WORKER_STORE);
        char *p2 = fingerprint_of("store: {mysql: {password: hunter3}}\n", SB_WORKER_STORE);
        CHECK(p1 != NULL && p2 != NULL && strcmp(p1, p2) != 0);
        CHECK(p1 != NULL && strstr(p1, "hunter2") == NULL);
        free(p1);
        free(p2);
    }
}

/* workers.xmpp's own keys: values, ranges, types, and that they belong to
 * the xmpp section only. */
static void test_xmpp_options(void)
{
    struct config *c = load_ok("workers:\n"
                               "  xmpp:\n"
                               "    require_tls: false\n"
                               "    max_stanza: 65536\n"
                               "    max_sessions_per_account: 3\n"
                               "    auth_failures: 5\n"
                               "    plain: false\n"
                               "    max_connections_per_ip: 0\n");

    CHECK(c != NULL);
    if (c != NULL) {
        CHECK(!c->xmpp.require_tls);
        CHECK(c->xmpp.max_stanza == 65536);
        CHECK(c->xmpp.max_sessions_per_account == 3);
        CHECK(c->xmpp.auth_failures == 5);
        CHECK(!c->xmpp.plain);
        CHECK(c->xmpp.max_connections_per_ip == 0);
        CHECK(!c->workers[SB_WORKER_XMPP].enabled);
        config_free(&c);
    }
    CHECK_ERROR("workers:\n  xmpp:\n    max_stanza: 100\n",
                "t.yml:3: workers.xmpp.max_stanza 100 out of range (4096-67108864)");
    CHECK_ERROR("workers:\n  xmpp:\n    max_stanza: 67108865\n",
                "t.yml:3: workers.xmpp.max_stanza 67108865 out of range (4096-67108864)");
    CHECK_ERROR("workers:\n  xmpp:\n    auth_failures: 1\n",
                "t.yml:3: workers.xmpp.auth_failures 1 out of range (2-5)");
    CHECK_ERROR("workers:\n  xmpp:\n    auth_failures: 6\n",
                "t.yml:3: workers.xmpp.auth_failures 6 out of range (2-5)");
    CHECK_ERROR("workers:\n  xmpp:\n    max_sessions_per_account: 0\n",
                "t.yml:3: workers.xmpp.max_sessions_per_account 0 out of range (1-1000)");
    CHECK_ERROR("workers:\n  xmpp:\n    max_connections_per_ip: -1\n",
                "t.yml:3: workers.xmpp.max_connections_per_ip -1 out of range (0-10000000)");
    CHECK_ERROR("workers:\n  xmpp:\n    require_tls: yes\n",
                "t.yml:3: expected true or false for workers.xmpp.require_tls");
    CHECK_ERROR("workers:\n  xmpp:\n    plain: 1\n",
                "t.yml:3: expected true or false for workers.xmpp.plain");
    CHECK_ERROR("workers:\n  xmpp:\n    max_stanza: big\n",
                "t.yml:3: expected an integer for workers.xmpp.max_stanza");
    /* Only the xmpp worker has these keys. */
    CHECK_ERROR("workers:\n  mqtt:\n    require_tls: true\n",
                "t.yml:3: unknown key 'require_tls' in workers.mqtt");
    CHECK_ERROR("workers:\n  xmpp:\n    max_stanza: 8192\n    max_stanza: 8192\n",
                "t.yml:4: duplicate key 'max_stanza'");

    /* They restart the xmpp worker on SIGHUP, and only it. */
    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        char *a = fingerprint_of("workers: {xmpp: {max_sessions_per_account: 10}}\n", k);
        char *b = fingerprint_of("workers: {xmpp: {max_sessions_per_account: 11}}\n", k);
        char *d = fingerprint_of("# defaults\n", k);

        CHECK(a != NULL && b != NULL && d != NULL);
        if (a != NULL && b != NULL && d != NULL) {
            CHECK_STR(a, d); /* 10 is the default */
            if (k == SB_WORKER_XMPP)
                CHECK(strcmp(a, b) != 0);
            else
                CHECK_STR(a, b);
        }
        free(a);
        free(b);
        free(d);
    }
}

/* The other workers' own keys, the MQTT access rules, and defaults. */
static void test_worker_options(void)
{
    struct config *c = load_ok("# defaults\n");

    CHECK(c != NULL);
    if (c != NULL) {
        CHECK(!c->xmpp.register_accounts);
        CHECK(c->xmpp.resume_timeout_s == 300);
        CHECK(!c->mqtt.allow_anonymous);
        CHECK(c->mqtt.max_packet_size == 1048576);
        CHECK(c->mqtt.max_queued == 1000);
        CHECK(c->mqtt.retain_available);
        CHECK(c->mqtt.acl == NULL && c->mqtt.n_acl == 0);
        CHECK(c->sip.md5);
        CHECK(c->sip.min_expires_s == 60);
        CHECK_STR(c->irc.server_name, "");
        CHECK_STR(c->irc.motd, "");
        CHECK(c->irc.max_connections_per_ip == 10);
        config_free(&c);
    }
    c = load_ok("workers:\n"
                "  xmpp: {register: true, resume_timeout: 0}\n"
                "  mqtt:\n"
                "    allow_anonymous: true\n"
                "    max_queued: 5\n"
                "    topic_alias_maximum: 0\n"
                "    acl:\n"
                "      - user: '*'\n"
                "        publish: ['devices/%u/#']\n"
                "        subscribe: ['devices/+/state', '#']\n"
                "      - {user: anonymous, subscribe: [public/#]}\n"
                "  sip: {md5: false, min_expires: 30, max_expires: 7200}\n"
                "  irc: {server_name: irc.example.org, motd: 'Hello there'}\n");
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK(c->xmpp.register_accounts);
        CHECK(c->xmpp.resume_timeout_s == 0);
        CHECK(c->mqtt.allow_anonymous);
        CHECK(c->mqtt.max_queued == 5);
        CHECK(c->mqtt.topic_alias_maximum == 0);
        CHECK(c->mqtt.n_acl == 2);
        if (c->mqtt.n_acl == 2) {
            CHECK_STR(c->mqtt.acl[0].user, "*");
            CHECK(c->mqtt.acl[0].n_publish == 1 && c->mqtt.acl[0].n_subscribe == 2);
            CHECK_STR(c->mqtt.acl[0].publish[0], "devices/%u/#");
            CHECK_STR(c->mqtt.acl[0].subscribe[1], "#");
            CHECK_STR(c->mqtt.acl[1].user, "anonymous");
            CHECK(c->mqtt.acl[1].n_publish == 0 && c->mqtt.acl[1].n_subscribe == 1);
        }
        CHECK(!c->sip.md5);
        CHECK(c->sip.min_expires_s == 30 && c->sip.max_expires_s == 7200);
        CHECK_STR(c->irc.server_name, "irc.example.org");
        CHECK_STR(c->irc.motd, "Hello there");
        config_free(&c);
    }
    /* An empty rule list is there: it allows nothing. */
    c = load_ok("workers: {mqtt: {acl: []}}\n");
    CHECK(c != NULL && c->mqtt.acl != NULL && c->mqtt.n_acl == 0);
    config_free(&c);

    CHECK_ERROR("workers:\n  mqtt:\n    max_packet_size: 10\n",
                "t.yml:3: workers.mqtt.max_packet_size 10 out of range (64-268435455)");
    CHECK_ERROR("workers:\n  mqtt:\n    acl: {user: x}\n",
                "t.yml:3: expected a list for workers.mqtt.acl");
    CHECK_ERROR("workers:\n  mqtt:\n    acl:\n      - publish: [a]\n",
                "t.yml:4: workers.mqtt.acl[0].user is required");
    CHECK_ERROR("workers:\n  mqtt:\n    acl:\n      - {user: a, publish: ['a/#/b']}\n",
                "t.yml:4: 'a/#/b' is not a valid MQTT topic filter");
    CHECK_ERROR("workers:\n  mqtt:\n    acl:\n      - {user: a, subscribe: ['a+']}\n",
                "t.yml:4: 'a+' is not a valid MQTT topic filter");
    CHECK_ERROR("workers:\n  mqtt:\n    acl:\n      - {user: a, subscribe: a/b}\n",
                "t.yml:4: expected a list of topic filters for workers.mqtt.acl[0].subscribe");
    CHECK_ERROR("workers:\n  mqtt:\n    acl:\n      - {user: a, topics: [a]}\n",
                "t.yml:4: unknown key 'topics' in workers.mqtt.acl[0]");
    CHECK_ERROR("workers:\n  sip:\n    min_expires: 0\n",
                "t.yml:3: workers.sip.min_expires 0 out of range (1-86400)");
    CHECK_ERROR("workers:\n  irc:\n    motd: [a]\n",
                "t.yml:3: expected a string for workers.irc.motd");
    CHECK_ERROR("workers:\n  sip:\n    acl: []\n", "t.yml:3: unknown key 'acl' in workers.sip");

    /* Each key restarts its own worker only, access rules included. */
    static const struct {
        const char *a, *b;
        enum sb_worker_kind kind;
    } changes[] = {
        {"workers: {xmpp: {register: false}}\n", "workers: {xmpp: {register: true}}\n",
         SB_WORKER_XMPP},
        {"workers: {mqtt: {acl: [{user: a, publish: [x]}]}}\n",
         "workers: {mqtt: {acl: [{user: a, subscribe: [x]}]}}\n", SB_WORKER_MQTT},
        {"workers: {irc: {motd: a}}\n", "workers: {irc: {motd: b}}\n", SB_WORKER_IRC},
        {"workers: {sip: {md5: true}}\n", "workers: {sip: {md5: false}}\n", SB_WORKER_SIP},
    };
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++)
        for (int k = 0; k < SB_WORKER_COUNT; k++) {
            char *a = fingerprint_of(changes[i].a, k);
            char *b = fingerprint_of(changes[i].b, k);

            CHECK(a != NULL && b != NULL);
            if (a != NULL && b != NULL && (k == (int)changes[i].kind) != (strcmp(a, b) != 0)) {
                fprintf(stderr, "  change %zu, worker %d: fingerprint wrong\n", i, k);
                CHECK(false);
            }
            free(a);
            free(b);
        }
}

/* The shipped file loads and says what the brief promises. It enables the
 * xmpp worker, whose TLS listeners need the development certificate that
 * scripts/run makes under var/tls: the file is loaded from a copy beside
 * stand-in certificate files (only their readability is checked), and
 * without them it must fail on the certificate. */
static void test_default_file(void)
{
    struct config *c = NULL;
    const char *e = NULL;
    static const struct {
        enum sb_worker_kind kind;
        const char *name;
        unsigned port;
        enum config_tls_mode tls;
        enum config_transport transport;
    } expect[] = {
        {SB_WORKER_XMPP, "c2s", 5222, CONFIG_TLS_STARTTLS, CONFIG_TRANSPORT_TCP},
        {SB_WORKER_XMPP, "c2s-tls", 5223, CONFIG_TLS_DIRECT, CONFIG_TRANSPORT_TCP},
        {SB_WORKER_MQTT, "mqtt", 1883, CONFIG_TLS_NONE, CONFIG_TRANSPORT_TCP},
        {SB_WORKER_MQTT, "mqtt-tls", 8883, CONFIG_TLS_DIRECT, CONFIG_TRANSPORT_TCP},
        {SB_WORKER_SIP, "sip-udp", 5060, CONFIG_TLS_NONE, CONFIG_TRANSPORT_UDP},
        {SB_WORKER_SIP, "sip-tcp", 5060, CONFIG_TLS_NONE, CONFIG_TRANSPORT_TCP},
        {SB_WORKER_SIP, "sip-tls", 5061, CONFIG_TLS_DIRECT, CONFIG_TRANSPORT_TCP},
        {SB_WORKER_IRC, "irc", 6667, CONFIG_TLS_NONE, CONFIG_TRANSPORT_TCP},
        {SB_WORKER_IRC, "irc-tls", 6697, CONFIG_TLS_DIRECT, CONFIG_TRANSPORT_TCP},
    };
    size_t seen[SB_WORKER_COUNT] = {0};
    char root[PATH_MAX + 16], copy[2 * PATH_MAX], path[2 * PATH_MAX], expect_path[4 * PATH_MAX];
    FILE *in = fopen(SB_SOURCE_DIR "/etc/switchboard.yml", "r");
    char *text = malloc(CONFIG_MAX_SIZE + 1);
    size_t len = 0;

    CHECK(in != NULL && text != NULL);
    if (in == NULL || text == NULL) {
        if (in != NULL)
            fclose(in);
        free(text);
        return;
    }
    len = fread(text, 1, CONFIG_MAX_SIZE, in);
    fclose(in);
    text[len] = '\0';
    snprintf(root, sizeof(root), "%s/shipped", tmp_dir);
    CHECK(mkdir(root, 0700) == 0);
    snprintf(path, sizeof(path), "%s/etc", root);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(copy, sizeof(copy), "%s/etc/switchboard.yml", root);
    write_file(copy, text);
    free(text);

    CHECK(config_load(copy, &c, &e) == -1);
    snprintf(expect_path, sizeof(expect_path),
             "%s:41: certificate file '%s/var/tls/dev.crt' not found", copy, root);
    CHECK_STR(e, expect_path);

    snprintf(path, sizeof(path), "%s/var", root);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/var/tls", root);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/var/tls/dev.crt", root);
    write_file(path, "stand-in\n");
    snprintf(path, sizeof(path), "%s/var/tls/dev.key", root);
    write_file(path, "stand-in\n");
    CHECK(config_load(copy, &c, &e) == 0);
    if (c == NULL) {
        fprintf(stderr, "etc/switchboard.yml: %s\n", e);
        return;
    }
    CHECK(c->n_hosts == 1 && strcmp(c->hosts[0], "localhost") == 0);
    snprintf(expect_path, sizeof(expect_path), "%s/var", root);
    CHECK_STR(c->state_dir, expect_path);
    CHECK(c->store.backend == CONFIG_BACKEND_SQLITE);
    snprintf(expect_path, sizeof(expect_path), "%s/var/switchboard.db", root);
    CHECK_STR(c->store.sqlite_path, expect_path);
    CHECK(c->log_level == LOG_LEVEL_INFO);
    CHECK(c->broker.heartbeat_ms == 1000 && c->limits.max_input == 262144);
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        const struct config_worker *w = &c->workers[expect[i].kind];
        size_t n = seen[expect[i].kind]++;
        CHECK(n < w->n_listeners);
        if (n >= w->n_listeners)
            continue;
        CHECK_STR(w->listeners[n].name, expect[i].name);
        CHECK_STR(w->listeners[n].address, "0.0.0.0");
        CHECK(w->listeners[n].port == expect[i].port);
        CHECK(w->listeners[n].tls == expect[i].tls);
        CHECK(w->listeners[n].transport == expect[i].transport);
    }
    for (int k = SB_WORKER_ROOMS; k < SB_WORKER_COUNT; k++) {
        /* Each protocol worker is enabled once it exists. */
        CHECK(c->workers[k].enabled == (k == SB_WORKER_XMPP));
        CHECK(c->workers[k].n_listeners == seen[k]);
    }
    CHECK(c->xmpp.require_tls && c->xmpp.max_stanza == 262144 &&
          c->xmpp.max_sessions_per_account == 10 && c->xmpp.auth_failures == 3 && c->xmpp.plain &&
          c->xmpp.max_connections_per_ip == 50);
    config_free(&c);
}

int main(void)
{
    char template[] = "/tmp/test_config.XXXXXX";
    char cwd[PATH_MAX];

    if (mkdtemp(template) == NULL || realpath(template, tmp_dir) == NULL ||
        getcwd(cwd, sizeof(cwd)) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_defaults();
    test_values();
    test_worker_names();
    test_errors();
    test_yaml_refused();
    test_default_file();
    test_fingerprints();
    test_xmpp_options();
    test_worker_options();
    test_files(); /* changes the current directory */
    if (chdir(cwd) == 0) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmp_dir);
    }
    return check_result("test_config");
}
