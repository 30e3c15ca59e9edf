/*
 * The configuration loader. The YAML text is read with libyaml's event API
 * into a small tree of scalars, lists and mappings that remembers the line of
 * every node; the tree is then checked against the schema and converted into
 * struct config, and the cross-section rules (listener conflicts, TLS files,
 * the MySQL server) are checked last. Only the plain subset of YAML that a
 * configuration needs is accepted: anchors, aliases, tags, several
 * documents, deep nesting and big files are refused before they can cost
 * anything. Finally each worker gets a fingerprint: a canonical text of the
 * converted values it depends on, which the supervisor compares on SIGHUP.
 */
#include "shared/config.h"

#include "shared/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

/* Caps on what the schema allows; the file size and depth caps are in
 * config.h. */
#define CONFIG_MAX_HOSTS 1024
#define CONFIG_MAX_LISTENERS 64
#define CONFIG_MAX_LISTENER_NAME 32
/* Far above any real file (hosts and listeners are capped), far below what
 * 1 MiB of "[a,a,a..." would allocate. */
#define CONFIG_MAX_NODES 65536
/* A unix socket path must fit sockaddr_un.sun_path with its NUL. */
#define CONFIG_MAX_SOCKET_PATH (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

static const char *const config_worker_names[SB_WORKER_COUNT] = {
    "broker", "store", "rooms", "xmpp", "mqtt", "sip", "irc",
};
static const char *const config_tls_names[] = {"none", "starttls", "direct", NULL};
static const char *const config_transport_names[] = {"tcp", "udp", NULL};
static const char *const config_backend_names[] = {"sqlite", "mysql", NULL};
static const char *const config_log_level_names[] = {"debug", "info", "warn", "error", NULL};

/* Valid until the next load: the header promises a static buffer. */
static char config_error[1024];

const char *config_worker_name(enum sb_worker_kind kind)
{
    if ((int)kind < 0 || kind >= SB_WORKER_COUNT)
        return "unknown";
    return config_worker_names[kind];
}

int config_worker_parse(const char *name)
{
    for (int i = 0; i < SB_WORKER_COUNT; i++)
        if (strcmp(name, config_worker_names[i]) == 0)
            return i;
    return -1;
}

/* ---- the YAML tree ---- */

enum node_type { NODE_SCALAR, NODE_LIST, NODE_MAP };

struct node {
    enum node_type type;
    int line;
    /* Scalars: the value (NUL-terminated, may hold NULs from escapes) and
     * whether it was written plain, because only plain scalars can be
     * integers, booleans or null. */
    char *value;
    size_t len;
    bool plain;
    /* Lists: the items. Mappings: key, value, key, value... */
    struct node **items;
    size_t n_items;
    size_t cap_items;
};

struct loader {
    const char *name; /* for messages */
    char base_dir[PATH_MAX];
    const unsigned char *text;
    size_t len;
    yaml_parser_t parser;
    size_t n_nodes;
    struct config *config;
    /* Kept even when the files are not needed, for the fingerprints. */
    char *tls_certificate;
    char *tls_key;
    int tls_line;
    int tls_certificate_line;
    int tls_key_line;
    int store_line;
    int state_dir_line;
};

static int fail(struct loader *l, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct loader *l, int line, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(config_error, sizeof(config_error), "%s:%d: ", l->name, line);

    if (n < 0 || (size_t)n >= sizeof(config_error))
        return -1;
    va_start(ap, fmt);
    vsnprintf(config_error + n, sizeof(config_error) - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static void node_free(struct node *node)
{
    if (node == NULL)
        return;
    for (size_t i = 0; i < node->n_items; i++)
        node_free(node->items[i]);
    free(node->items);
    free(node->value);
    free(node);
}

static int node_add(struct loader *l, struct node *parent, struct node *child)
{
    if (parent->n_items == parent->cap_items) {
        size_t cap = parent->cap_items ? parent->cap_items * 2 : 8;
        struct node **items = realloc(parent->items, cap * sizeof(*items));
        if (items == NULL)
            return fail(l, child->line, "out of memory");
        parent->items = items;
        parent->cap_items = cap;
    }
    parent->items[parent->n_items++] = child;
    return 0;
}

/* The line of the byte at offset, for reader errors, which carry no mark. */
static int line_at(const struct loader *l, size_t offset)
{
    int line = 1;
    for (size_t i = 0; i < offset && i < l->len; i++)
        if (l->text[i] == '\n')
            line++;
    return line;
}

static int yaml_fail(struct loader *l)
{
    const yaml_parser_t *p = &l->parser;
    int line;

    if (p->error == YAML_MEMORY_ERROR)
        return fail(l, 1, "out of memory");
    if (p->error == YAML_READER_ERROR)
        line = line_at(l, p->problem_offset);
    else
        line = (int)p->problem_mark.line + 1;
    if (p->context != NULL)
        return fail(l, line, "YAML syntax error: %s %s", p->problem ? p->problem : "error",
                    p->context);
    return fail(l, line, "YAML syntax error: %s", p->problem ? p->problem : "error");
}

static int next_event(struct loader *l, yaml_event_t *event)
{
    if (!yaml_parser_parse(&l->parser, event))
        return yaml_fail(l);
    return 0;
}

static int event_line(const yaml_event_t *event)
{
    return (int)event->start_mark.line + 1;
}

/* Refuses the YAML features a configuration has no use for: aliases could
 * expand exponentially, tags would change types behind our back. */
static int check_event(struct loader *l, const yaml_event_t *event)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;

    switch (event->type) {
    case YAML_ALIAS_EVENT:
        return fail(l, event_line(event), "YAML aliases are not allowed");
    case YAML_SCALAR_EVENT:
        anchor = event->data.scalar.anchor;
        tag = event->data.scalar.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = event->data.sequence_start.anchor;
        tag = event->data.sequence_start.tag;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = event->data.mapping_start.anchor;
        tag = event->data.mapping_start.tag;
        break;
    default:
        break;
    }
    if (anchor != NULL)
        return fail(l, event_line(event), "YAML anchors are not allowed");
    if (tag != NULL)
        return fail(l, event_line(event), "YAML tags are not allowed");
    return 0;
}

/* Builds the node that starts with event (which this function deletes).
 * depth is the nesting level of the new node (the root is 1). */
static int parse_node(struct loader *l, yaml_event_t *event, int depth, struct node **node_r)
{
    struct node *node;
    int line = event_line(event);

    *node_r = NULL;
    if (check_event(l, event) < 0) {
        yaml_event_delete(event);
        return -1;
    }
    if (++l->n_nodes > CONFIG_MAX_NODES) {
        yaml_event_delete(event);
        return fail(l, line, "more than %d YAML values", CONFIG_MAX_NODES);
    }
    node = calloc(1, sizeof(*node));
    if (node == NULL) {
        yaml_event_delete(event);
        return fail(l, line, "out of memory");
    }
    node->line = line;
    if (event->type == YAML_SCALAR_EVENT) {
        node->type = NODE_SCALAR;
        node->len = event->data.scalar.length;
        node->plain = event->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        node->value = malloc(node->len + 1);
        if (node->value == NULL) {
            yaml_event_delete(event);
            free(node);
            return fail(l, line, "out of memory");
        }
        memcpy(node->value, event->data.scalar.value, node->len);
        node->value[node->len] = '\0';
        yaml_event_delete(event);
        *node_r = node;
        return 0;
    }
    if (event->type != YAML_SEQUENCE_START_EVENT && event->type != YAML_MAPPING_START_EVENT) {
        yaml_event_delete(event);
        free(node);
        return fail(l, line, "unexpected YAML event");
    }
    node->type = event->type == YAML_SEQUENCE_START_EVENT ? NODE_LIST : NODE_MAP;
    yaml_event_delete(event);
    if (depth > CONFIG_MAX_DEPTH) {
        free(node);
        return fail(l, line, "nesting deeper than %d levels", CONFIG_MAX_DEPTH);
    }
    for (;;) {
        yaml_event_t child_event;
        struct node *child;

        if (next_event(l, &child_event) < 0)
            goto err;
        if (child_event.type == YAML_SEQUENCE_END_EVENT ||
            child_event.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&child_event);
            break;
        }
        if (node->type == NODE_MAP && node->n_items % 2 == 0 &&
            child_event.type != YAML_SCALAR_EVENT && child_event.type != YAML_ALIAS_EVENT) {
            fail(l, event_line(&child_event), "mapping keys must be strings");
            yaml_event_delete(&child_event);
            goto err;
        }
        if (parse_node(l, &child_event, depth + 1, &child) < 0)
            goto err;
        if (node_add(l, node, child) < 0) {
            node_free(child);
            goto err;
        }
    }
    *node_r = node;
    return 0;
err:
    node_free(node);
    return -1;
}

/* Reads the whole stream: at most one document. An empty stream gives a
 * NULL root (all defaults). */
static int parse_tree(struct loader *l, struct node **root_r)
{
    yaml_event_t event;
    struct node *root = NULL;

    *root_r = NULL;
    if (next_event(l, &event) < 0)
        return -1;
    if (event.type != YAML_STREAM_START_EVENT) {
        yaml_event_delete(&event);
        return fail(l, 1, "unexpected YAML event");
    }
    yaml_event_delete(&event);
    if (next_event(l, &event) < 0)
        return -1;
    if (event.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&event);
        return 0;
    }
    if (event.type != YAML_DOCUMENT_START_EVENT) {
        yaml_event_delete(&event);
        return fail(l, 1, "unexpected YAML event");
    }
    if (event.data.document_start.tag_directives.start !=
        event.data.document_start.tag_directives.end) {
        int line = event_line(&event);
        yaml_event_delete(&event);
        return fail(l, line, "YAML tags are not allowed");
    }
    yaml_event_delete(&event);
    if (next_event(l, &event) < 0)
        return -1;
    if (parse_node(l, &event, 1, &root) < 0)
        return -1;
    if (next_event(l, &event) < 0)
        goto err;
    /* parse_node consumed the root, so this is the document's end. */
    yaml_event_delete(&event);
    if (next_event(l, &event) < 0)
        goto err;
    if (event.type != YAML_STREAM_END_EVENT) {
        int line = event_line(&event);
        yaml_event_delete(&event);
        fail(l, line, "only one YAML document is allowed");
        goto err;
    }
    yaml_event_delete(&event);
    *root_r = root;
    return 0;
err:
    node_free(root);
    return -1;
}

/* ---- typed access to the tree ---- */

static bool node_is_null(const struct node *node)
{
    return node->type == NODE_SCALAR && node->plain &&
           (node->len == 0 || strcmp(node->value, "~") == 0 || strcmp(node->value, "null") == 0 ||
            strcmp(node->value, "Null") == 0 || strcmp(node->value, "NULL") == 0);
}

/* Looks up the keys of a mapping in a schema. values_r[i] (and keys_r[i])
 * get the value (and key) node of keys[i], or NULL when absent. Unknown and
 * duplicate keys are refused here, so no section has to think about them. */
static int map_fields(struct loader *l, const struct node *map, const char *path,
                      const char *const *keys, size_t n_keys, const struct node **values_r,
                      const struct node **keys_r)
{
    for (size_t i = 0; i < n_keys; i++) {
        values_r[i] = NULL;
        if (keys_r != NULL)
            keys_r[i] = NULL;
    }
    if (map->type != NODE_MAP)
        return fail(l, map->line, "expected a mapping %s%s", path[0] ? "for " : "at the top level",
                    path);
    for (size_t i = 0; i + 1 < map->n_items; i += 2) {
        const struct node *key = map->items[i];
        size_t k;

        for (k = 0; k < n_keys; k++)
            if (strlen(keys[k]) == key->len && strcmp(key->value, keys[k]) == 0)
                break;
        if (k == n_keys) {
            char sample[64];
            log_sample(sample, sizeof(sample), key->value, key->len);
            return fail(l, key->line, "unknown key '%s'%s%s", sample, path[0] ? " in " : "", path);
        }
        if (values_r[k] != NULL)
            return fail(l, key->line, "duplicate key '%s'", keys[k]);
        /* "key:" alone is a slip, not a request for the default. */
        if (node_is_null(map->items[i + 1]))
            return fail(l, key->line, "missing value for %s%s%s", path, path[0] ? "." : "",
                        keys[k]);
        values_r[k] = map->items[i + 1];
        if (keys_r != NULL)
            keys_r[k] = key;
    }
    return 0;
}

/* A scalar that is text: any style, no control characters (they would make
 * fingerprints ambiguous and have no business in names or paths). */
static int get_text(struct loader *l, const struct node *node, const char *path, bool allow_empty,
                    const char **value_r)
{
    if (node->type != NODE_SCALAR)
        return fail(l, node->line, "expected a string for %s", path);
    if (!allow_empty && node->len == 0)
        return fail(l, node->line, "empty value for %s", path);
    for (size_t i = 0; i < node->len; i++) {
        unsigned char c = (unsigned char)node->value[i];
        if (c < 0x20 || c == 0x7f)
            return fail(l, node->line, "control character in %s", path);
    }
    *value_r = node->value;
    return 0;
}

static int get_string(struct loader *l, const struct node *node, const char *path, bool allow_empty,
                      char **value_r)
{
    const char *text;
    char *copy;

    if (node == NULL)
        return 0;
    if (get_text(l, node, path, allow_empty, &text) < 0)
        return -1;
    copy = strdup(text);
    if (copy == NULL)
        return fail(l, node->line, "out of memory");
    free(*value_r);
    *value_r = copy;
    return 0;
}

/* Decimal integers only, no leading zeros (YAML 1.1 would read 0755 as
 * octal, and a reader should not have to wonder). */
static int get_int(struct loader *l, const struct node *node, const char *path, long long min,
                   long long max, int *value_r)
{
    const char *s;
    long long v = 0;
    bool negative = false;

    if (node == NULL)
        return 0;
    if (node->type != NODE_SCALAR || !node->plain)
        return fail(l, node->line, "expected an integer for %s", path);
    s = node->value;
    if (*s == '-' || *s == '+')
        negative = *s++ == '-';
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] != '\0'))
        return fail(l, node->line, "expected an integer for %s", path);
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return fail(l, node->line, "expected an integer for %s", path);
        if (v > (LLONG_MAX - 9) / 10) {
            return fail(l, node->line, "%s %s out of range (%lld-%lld)", path, node->value, min,
                        max);
        }
        v = v * 10 + (*s - '0');
    }
    if (negative)
        v = -v;
    if (v < min || v > max)
        return fail(l, node->line, "%s %lld out of range (%lld-%lld)", path, v, min, max);
    *value_r = (int)v;
    return 0;
}

static int get_bool(struct loader *l, const struct node *node, const char *path, bool *value_r)
{
    if (node == NULL)
        return 0;
    if (node->type == NODE_SCALAR && node->plain && strcmp(node->value, "true") == 0)
        *value_r = true;
    else if (node->type == NODE_SCALAR && node->plain && strcmp(node->value, "false") == 0)
        *value_r = false;
    else
        return fail(l, node->line, "expected true or false for %s", path);
    return 0;
}

/* One of a NULL-terminated list of names; the index goes to *value_r. */
static int get_enum(struct loader *l, const struct node *node, const char *path,
                    const char *const *names, int *value_r)
{
    char choices[128] = "";
    size_t used = 0;

    if (node == NULL)
        return 0;
    if (node->type == NODE_SCALAR)
        for (int i = 0; names[i] != NULL; i++)
            if (strlen(names[i]) == node->len && strcmp(node->value, names[i]) == 0) {
                *value_r = i;
                return 0;
            }
    for (int i = 0; names[i] != NULL && used < sizeof(choices); i++) {
        int n = snprintf(choices + used, sizeof(choices) - used, "%s%s", i ? ", " : "", names[i]);
        used += n < 0 ? 0 : (size_t)n;
    }
    return fail(l, node->line, "expected one of %s for %s", choices, path);
}

/* Joins base and path (unless path is absolute) and collapses "//", "."
 * and "..", lexically: base is already free of symlinks (realpath). */
static int path_resolve(const char *base, const char *path, char *out, size_t out_size)
{
    char joined[PATH_MAX * 2];
    size_t len = 0;
    char *p, *save = NULL;
    int n;

    if (path[0] == '/')
        n = snprintf(joined, sizeof(joined), "%s", path);
    else
        n = snprintf(joined, sizeof(joined), "%s/%s", base, path);
    if (n < 0 || (size_t)n >= sizeof(joined) || out_size < 2)
        return -1;
    out[0] = '\0';
    for (p = strtok_r(joined, "/", &save); p != NULL; p = strtok_r(NULL, "/", &save)) {
        size_t plen = strlen(p);
        if (strcmp(p, ".") == 0)
            continue;
        if (strcmp(p, "..") == 0) {
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0)
                len--; /* the slash before the dropped component */
            out[len] = '\0';
            continue;
        }
        if (len + 1 + plen + 1 > out_size)
            return -1;
        out[len++] = '/';
        memcpy(out + len, p, plen + 1);
        len += plen;
    }
    if (len == 0) {
        out[0] = '/';
        out[1] = '\0';
    }
    return 0;
}

/* A path setting: relative paths are taken from base. node NULL means
 * "use the default", which is resolved the same way. */
static int get_path(struct loader *l, const struct node *node, const char *path, const char *base,
                    const char *def, char **value_r)
{
    char resolved[PATH_MAX];
    const char *text = def;
    int line = node ? node->line : 1;

    if (node != NULL && get_text(l, node, path, false, &text) < 0)
        return -1;
    if (text == NULL)
        return 0;
    if (path_resolve(base, text, resolved, sizeof(resolved)) < 0)
        return fail(l, line, "%s is too long", path);
    free(*value_r);
    *value_r = strdup(resolved);
    if (*value_r == NULL)
        return fail(l, line, "out of memory");
    return 0;
}

/* ---- sections ---- */

static bool host_valid(const char *name, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? name[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || name[i - 1] == '-' || name[i - label] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-') {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

static int load_hosts(struct loader *l, const struct node *node)
{
    struct config *c = l->config;

    if (node == NULL) {
        c->hosts = calloc(1, sizeof(*c->hosts));
        if (c->hosts == NULL || (c->hosts[0] = strdup("localhost")) == NULL)
            return fail(l, 1, "out of memory");
        c->n_hosts = 1;
        return 0;
    }
    if (node->type != NODE_LIST)
        return fail(l, node->line, "expected a list for hosts");
    if (node->n_items == 0)
        return fail(l, node->line, "hosts must not be empty");
    if (node->n_items > CONFIG_MAX_HOSTS)
        return fail(l, node->line, "too many hosts (at most %d)", CONFIG_MAX_HOSTS);
    c->hosts = calloc(node->n_items, sizeof(*c->hosts));
    if (c->hosts == NULL)
        return fail(l, node->line, "out of memory");
    for (size_t i = 0; i < node->n_items; i++) {
        const struct node *item = node->items[i];
        char *host;

        if (item->type != NODE_SCALAR)
            return fail(l, item->line, "expected a domain name in hosts");
        if (!host_valid(item->value, item->len)) {
            char sample[80];
            log_sample(sample, sizeof(sample), item->value, item->len);
            return fail(l, item->line, "'%s' is not a valid domain name", sample);
        }
        host = strdup(item->value);
        if (host == NULL)
            return fail(l, item->line, "out of memory");
        for (char *p = host; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        c->hosts[c->n_hosts++] = host;
        for (size_t j = 0; j + 1 < c->n_hosts; j++)
            if (strcmp(c->hosts[j], host) == 0)
                return fail(l, item->line, "duplicate host '%s'", host);
    }
    return 0;
}

static int load_tls(struct loader *l, const struct node *node)
{
    static const char *const keys[] = {"certificate", "key"};
    const struct node *v[2], *k[2];

    if (node == NULL)
        return 0;
    l->tls_line = node->line;
    if (map_fields(l, node, "tls", keys, 2, v, k) < 0)
        return -1;
    if (v[0] == NULL)
        return fail(l, node->line, "tls.certificate is required in the tls section");
    if (v[1] == NULL)
        return fail(l, node->line, "tls.key is required in the tls section");
    l->tls_certificate_line = k[0]->line;
    l->tls_key_line = k[1]->line;
    if (get_path(l, v[0], "tls.certificate", l->base_dir, NULL, &l->tls_certificate) < 0 ||
        get_path(l, v[1], "tls.key", l->base_dir, NULL, &l->tls_key) < 0)
        return -1;
    return 0;
}

static int load_broker(struct loader *l, const struct node *node)
{
    static const char *const keys[] = {"heartbeat_ms", "heartbeat_misses"};
    const struct node *v[2];

    if (node == NULL)
        return 0;
    if (map_fields(l, node, "broker", keys, 2, v, NULL) < 0 ||
        get_int(l, v[0], "broker.heartbeat_ms", 50, 60000, &l->config->broker.heartbeat_ms) < 0 ||
        get_int(l, v[1], "broker.heartbeat_misses", 1, 100, &l->config->broker.heartbeat_misses) <
            0)
        return -1;
    return 0;
}

static int load_store(struct loader *l, const struct node *node)
{
    static const char *const keys[] = {"backend", "sqlite", "mysql", "batch_max"};
    static const char *const sqlite_keys[] = {"path"};
    static const char *const mysql_keys[] = {"host", "port",     "socket",
                                             "user", "password", "database"};
    struct config *c = l->config;
    const struct node *v[4] = {NULL}, *sv[1] = {NULL}, *mv[6] = {NULL};
    int backend = CONFIG_BACKEND_SQLITE, port = c->store.mysql_port;

    if (node != NULL) {
        l->store_line = node->line;
        if (map_fields(l, node, "store", keys, 4, v, NULL) < 0 ||
            get_enum(l, v[0], "store.backend", config_backend_names, &backend) < 0 ||
            get_int(l, v[3], "store.batch_max", 1, 10000, &c->store.batch_max) < 0)
            return -1;
        if (v[0] != NULL)
            l->store_line = v[0]->line;
        if (v[1] != NULL && map_fields(l, v[1], "store.sqlite", sqlite_keys, 1, sv, NULL) < 0)
            return -1;
        if (v[2] != NULL && map_fields(l, v[2], "store.mysql", mysql_keys, 6, mv, NULL) < 0)
            return -1;
    }
    c->store.backend = backend;
    if (get_path(l, sv[0], "store.sqlite.path", c->state_dir, "switchboard.db",
                 &c->store.sqlite_path) < 0 ||
        get_string(l, mv[0], "store.mysql.host", false, &c->store.mysql_host) < 0 ||
        get_int(l, mv[1], "store.mysql.port", 1, 65535, &port) < 0 ||
        get_path(l, mv[2], "store.mysql.socket", l->base_dir, NULL, &c->store.mysql_socket) < 0 ||
        get_string(l, mv[3], "store.mysql.user", false, &c->store.mysql_user) < 0 ||
        get_string(l, mv[4], "store.mysql.password", true, &c->store.mysql_password) < 0 ||
        get_string(l, mv[5], "store.mysql.database", false, &c->store.mysql_database) < 0)
        return -1;
    c->store.mysql_port = (uint16_t)port;
    if (backend == CONFIG_BACKEND_MYSQL && c->store.mysql_host == NULL &&
        c->store.mysql_socket == NULL)
        return fail(l, l->store_line,
                    "store.backend mysql needs store.mysql.host or "
                    "store.mysql.socket");
    return 0;
}

static int load_supervisor(struct loader *l, const struct node *node)
{
    static const char *const keys[] = {"control_socket", "restart_intensity", "restart_period",
                                       "backoff_min_ms", "backoff_max_ms",    "stop_timeout_ms"};
    struct config *c = l->config;
    const struct node *v[6] = {NULL};

    if (node != NULL && (map_fields(l, node, "supervisor", keys, 6, v, NULL) < 0 ||
                         get_int(l, v[1], "supervisor.restart_intensity", 1, 1000,
                                 &c->supervisor.restart_intensity) < 0 ||
                         get_int(l, v[2], "supervisor.restart_period", 1, 86400,
                                 &c->supervisor.restart_period_s) < 0 ||
                         get_int(l, v[3], "supervisor.backoff_min_ms", 10, 600000,
                                 &c->supervisor.backoff_min_ms) < 0 ||
                         get_int(l, v[4], "supervisor.backoff_max_ms", 10, 3600000,
                                 &c->supervisor.backoff_max_ms) < 0 ||
                         get_int(l, v[5], "supervisor.stop_timeout_ms", 100, 600000,
                                 &c->supervisor.stop_timeout_ms) < 0))
        return -1;
    if (get_path(l, v[0], "supervisor.control_socket", c->state_dir, "run/control.sock",
                 &c->supervisor.control_socket) < 0)
        return -1;
    if (strlen(c->supervisor.control_socket) > CONFIG_MAX_SOCKET_PATH)
        return fail(l, v[0] ? v[0]->line : l->state_dir_line,
                    "supervisor.control_socket '%s' is too long for a unix socket (at most %zu "
                    "bytes)",
                    c->supervisor.control_socket, CONFIG_MAX_SOCKET_PATH);
    if (c->supervisor.backoff_max_ms < c->supervisor.backoff_min_ms)
        return fail(l, v[4] ? v[4]->line : v[3]->line,
                    "supervisor.backoff_max_ms %d is below supervisor.backoff_min_ms %d",
                    c->supervisor.backoff_max_ms, c->supervisor.backoff_min_ms);
    return 0;
}

static int load_limits(struct loader *l, const struct node *node)
{
    static const char *const keys[] = {"max_connections", "idle_timeout", "max_input",
                                       "max_output"};
    struct config *c = l->config;
    const struct node *v[4];

    if (node == NULL)
        return 0;
    if (map_fields(l, node, "limits", keys, 4, v, NULL) < 0 ||
        get_int(l, v[0], "limits.max_connections", 0, 10000000, &c->limits.max_connections) < 0 ||
        get_int(l, v[1], "limits.idle_timeout", 0, 86400, &c->limits.idle_timeout_s) < 0 ||
        get_int(l, v[2], "limits.max_input", 1024, 67108864, &c->limits.max_input) < 0 ||
        get_int(l, v[3], "limits.max_output", 1024, 268435456, &c->limits.max_output) < 0)
        return -1;
    return 0;
}

static bool listener_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > CONFIG_MAX_LISTENER_NAME)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '-'))
            return false;
    return true;
}

/* Parses a numeric address into its bytes; returns the family or -1. */
static int address_parse(const char *text, unsigned char bytes[16])
{
    memset(bytes, 0, 16);
    if (inet_pton(AF_INET, text, bytes) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, text, bytes) == 1)
        return AF_INET6;
    return -1;
}

static int load_listener(struct loader *l, const struct node *node, const char *path,
                         struct config_worker *w)
{
    static const char *const keys[] = {"name", "address", "port", "tls", "transport"};
    struct config_listener *ln = &w->listeners[w->n_listeners];
    const struct node *v[5];
    char field[128], canonical[INET6_ADDRSTRLEN];
    unsigned char bytes[16];
    const char *text;
    int port = 0, tls = CONFIG_TLS_NONE, transport = CONFIG_TRANSPORT_TCP, family;

    memset(ln, 0, sizeof(*ln));
    ln->line = node->line;
    if (map_fields(l, node, path, keys, 5, v, NULL) < 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if (v[i] == NULL)
            return fail(l, node->line, "%s.%s is required", path, keys[i]);
    snprintf(field, sizeof(field), "%s.name", path);
    if (get_text(l, v[0], field, false, &text) < 0)
        return -1;
    if (!listener_name_valid(text, v[0]->len))
        return fail(l, v[0]->line, "listener name '%s' must be 1 to %d of a-z, 0-9 and '-'", text,
                    CONFIG_MAX_LISTENER_NAME);
    for (size_t i = 0; i < w->n_listeners; i++)
        if (strcmp(w->listeners[i].name, text) == 0)
            return fail(l, v[0]->line, "duplicate listener name '%s'", text);
    snprintf(field, sizeof(field), "%s.address", path);
    if (get_text(l, v[1], field, false, &text) < 0)
        return -1;
    family = address_parse(text, bytes);
    if (family < 0)
        return fail(l, v[1]->line, "'%s' is not a numeric IPv4 or IPv6 address", text);
    /* The canonical spelling, so that "::0" and "::" compare and
     * fingerprint alike. */
    inet_ntop(family, bytes, canonical, sizeof(canonical));
    snprintf(field, sizeof(field), "%s.port", path);
    if (get_int(l, v[2], field, 0, 65535, &port) < 0)
        return -1;
    snprintf(field, sizeof(field), "%s.tls", path);
    if (get_enum(l, v[3], field, config_tls_names, &tls) < 0)
        return -1;
    snprintf(field, sizeof(field), "%s.transport", path);
    if (get_enum(l, v[4], field, config_transport_names, &transport) < 0)
        return -1;
    if (transport == CONFIG_TRANSPORT_UDP && tls != CONFIG_TLS_NONE)
        return fail(l, v[3]->line, "listener '%s': tls %s is not possible over udp", v[0]->value,
                    config_tls_names[tls]);
    ln->name = strdup(v[0]->value);
    ln->address = strdup(canonical);
    /* Counted before the checks below so config_free sees the strings. */
    w->n_listeners++;
    if (ln->name == NULL || ln->address == NULL)
        return fail(l, node->line, "out of memory");
    ln->port = (uint16_t)port;
    ln->tls = tls;
    ln->transport = transport;
    return 0;
}

/* ---- the protocol workers' own keys ----
 *
 * Each worker's settings are a table: name, type, where the value lives in
 * struct config, range and default. Loading, defaults and fingerprints all
 * come from the same rows, so a new key is one row (and its documentation
 * in etc/switchboard.yml). */

enum option_type { OPT_BOOL, OPT_INT, OPT_TEXT };

struct option_spec {
    const char *name;
    enum option_type type;
    size_t offset;           /* in struct config */
    long long min, max, def; /* OPT_INT range and default; OPT_BOOL default */
};

#define OPT_B(field, name, def)                                                                    \
    {                                                                                              \
        name, OPT_BOOL, offsetof(struct config, field), 0, 1, def                                  \
    }
#define OPT_I(field, name, min, max, def)                                                          \
    {                                                                                              \
        name, OPT_INT, offsetof(struct config, field), min, max, def                               \
    }
/* Text options default to "". */
#define OPT_T(field, name)                                                                         \
    {                                                                                              \
        name, OPT_TEXT, offsetof(struct config, field), 0, 0, 0                                    \
    }

/* max_stanza: the parser's ceiling is 64 MiB; below 4 KiB no client could
 * send its roster. auth_failures: RFC 6120 §6.4.5 asks for at least 2 and
 * at most 5 retries. */
static const struct option_spec xmpp_options[] = {
    OPT_B(xmpp.require_tls, "require_tls", 1),
    OPT_I(xmpp.max_stanza, "max_stanza", 4096, 67108864, 262144),
    OPT_I(xmpp.max_sessions_per_account, "max_sessions_per_account", 1, 1000, 10),
    OPT_I(xmpp.auth_failures, "auth_failures", 2, 5, 3),
    OPT_B(xmpp.plain, "plain", 1),
    OPT_I(xmpp.max_connections_per_ip, "max_connections_per_ip", 0, 10000000, 50),
    OPT_B(xmpp.register_accounts, "register", 0),
    OPT_I(xmpp.resume_timeout_s, "resume_timeout", 0, 86400, 300),
};

/* MQTT's ceilings: 268435455 is the largest Remaining Length (MQTT 5
 * §1.5.5), 65535 the largest Receive Maximum, Topic Alias Maximum and
 * Keep Alive (§3.1.2.10, §3.2.2.3). Expiries stop at 2^31 - 1 here. */
static const struct option_spec mqtt_options[] = {
    OPT_B(mqtt.allow_anonymous, "allow_anonymous", 0),
    OPT_I(mqtt.max_packet_size, "max_packet_size", 64, 268435455, 1048576),
    OPT_I(mqtt.session_expiry_s, "session_expiry", 0, 2147483647, 86400),
    OPT_I(mqtt.max_session_expiry_s, "max_session_expiry", 0, 2147483647, 604800),
    OPT_I(mqtt.max_queued, "max_queued", 1, 100000, 1000),
    OPT_I(mqtt.max_inflight, "max_inflight", 1, 65535, 20),
    OPT_I(mqtt.receive_maximum, "receive_maximum", 1, 65535, 100),
    OPT_I(mqtt.max_keepalive_s, "max_keepalive", 10, 65535, 65535),
    OPT_I(mqtt.topic_alias_maximum, "topic_alias_maximum", 0, 65535, 10),
    OPT_B(mqtt.retain_available, "retain_available", 1),
    OPT_I(mqtt.max_connections_per_ip, "max_connections_per_ip", 0, 10000000, 100),
};

static const struct option_spec sip_options[] = {
    OPT_B(sip.md5, "md5", 1),
    OPT_I(sip.min_expires_s, "min_expires", 1, 86400, 60),
    OPT_I(sip.max_expires_s, "max_expires", 1, 604800, 3600),
    OPT_I(sip.default_expires_s, "default_expires", 1, 604800, 3600),
    OPT_I(sip.max_connections_per_ip, "max_connections_per_ip", 0, 10000000, 50),
};

static const struct option_spec irc_options[] = {
    OPT_T(irc.server_name, "server_name"),
    OPT_T(irc.motd, "motd"),
    OPT_I(irc.max_connections_per_ip, "max_connections_per_ip", 0, 10000000, 10),
};

struct option_table {
    const struct option_spec *rows;
    size_t n;
};

#define OPTION_TABLE(a)                                                                            \
    {                                                                                              \
        a, sizeof(a) / sizeof(a[0])                                                                \
    }

static const struct option_table worker_options[SB_WORKER_COUNT] = {
    [SB_WORKER_XMPP] = OPTION_TABLE(xmpp_options),
    [SB_WORKER_MQTT] = OPTION_TABLE(mqtt_options),
    [SB_WORKER_SIP] = OPTION_TABLE(sip_options),
    [SB_WORKER_IRC] = OPTION_TABLE(irc_options),
};

/* Keys of a worker section: enabled, listeners, the table's rows, then
 * acl for mqtt. */
#define WORKER_KEYS_MAX 32

static void *option_field(struct config *c, const struct option_spec *o)
{
    return (char *)c + o->offset;
}

static const void *option_value(const struct config *c, const struct option_spec *o)
{
    return (const char *)c + o->offset;
}

static int load_option(struct loader *l, const struct node *node, const char *path,
                       const struct option_spec *o)
{
    char field[96];
    void *p = option_field(l->config, o);

    if (node == NULL)
        return 0;
    snprintf(field, sizeof(field), "%s.%s", path, o->name);
    switch (o->type) {
    case OPT_BOOL:
        return get_bool(l, node, field, p);
    case OPT_INT:
        return get_int(l, node, field, o->min, o->max, p);
    case OPT_TEXT:
        return get_string(l, node, field, true, p);
    }
    return -1;
}

static int options_defaults(struct config *c)
{
    for (int k = 0; k < SB_WORKER_COUNT; k++)
        for (size_t i = 0; i < worker_options[k].n; i++) {
            const struct option_spec *o = &worker_options[k].rows[i];
            void *p = option_field(c, o);

            if (o->type == OPT_BOOL)
                *(bool *)p = o->def != 0;
            else if (o->type == OPT_INT)
                *(int *)p = (int)o->def;
            else if ((*(char **)p = strdup("")) == NULL)
                return -1;
        }
    return 0;
}

static void options_free(struct config *c)
{
    for (int k = 0; k < SB_WORKER_COUNT; k++)
        for (size_t i = 0; i < worker_options[k].n; i++)
            if (worker_options[k].rows[i].type == OPT_TEXT)
                free(*(char **)option_field(c, &worker_options[k].rows[i]));
}

/* An MQTT topic filter of an access rule (MQTT 5 §4.7.1): '#' only as the
 * whole last level, '+' only as a whole level, no NUL. */
static bool mqtt_filter_valid(const char *f, size_t len)
{
    if (len == 0 || len > 65535)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool level_start = i == 0 || f[i - 1] == '/';
        bool level_end = i + 1 == len || f[i + 1] == '/';

        if (f[i] == '\0')
            return false;
        if (f[i] == '#' && !(level_start && i + 1 == len))
            return false;
        if (f[i] == '+' && !(level_start && level_end))
            return false;
    }
    return true;
}

static int load_acl_filters(struct loader *l, const struct node *node, const char *path,
                            char ***list_r, size_t *n_r)
{
    const char *text;
    char field[128];

    if (node == NULL)
        return 0;
    if (node->type != NODE_LIST)
        return fail(l, node->line, "expected a list of topic filters for %s", path);
    *list_r = calloc(node->n_items ? node->n_items : 1, sizeof(**list_r));
    if (*list_r == NULL)
        return fail(l, node->line, "out of memory");
    for (size_t i = 0; i < node->n_items; i++) {
        snprintf(field, sizeof(field), "%s[%zu]", path, i);
        if (get_text(l, node->items[i], field, false, &text) < 0)
            return -1;
        if (!mqtt_filter_valid(text, node->items[i]->len))
            return fail(l, node->items[i]->line, "'%s' is not a valid MQTT topic filter", text);
        if (((*list_r)[i] = strdup(text)) == NULL)
            return fail(l, node->line, "out of memory");
        (*n_r)++;
    }
    return 0;
}

/* workers.mqtt.acl: a list of {user, publish, subscribe}. */
static int load_mqtt_acl(struct loader *l, const struct node *node)
{
    static const char *const keys[] = {"user", "publish", "subscribe"};
    struct config *c = l->config;

    if (node == NULL)
        return 0;
    if (node->type != NODE_LIST)
        return fail(l, node->line, "expected a list for workers.mqtt.acl");
    c->mqtt.acl = calloc(node->n_items ? node->n_items : 1, sizeof(*c->mqtt.acl));
    if (c->mqtt.acl == NULL)
        return fail(l, node->line, "out of memory");
    for (size_t i = 0; i < node->n_items; i++) {
        struct config_mqtt_acl *rule = &c->mqtt.acl[i];
        const struct node *v[3];
        char path[64], field[96];

        snprintf(path, sizeof(path), "workers.mqtt.acl[%zu]", i);
        c->mqtt.n_acl++;
        if (map_fields(l, node->items[i], path, keys, 3, v, NULL) < 0)
            return -1;
        if (v[0] == NULL)
            return fail(l, node->items[i]->line, "%s.user is required", path);
        snprintf(field, sizeof(field), "%s.user", path);
        if (get_string(l, v[0], field, false, &rule->user) < 0)
            return -1;
        snprintf(field, sizeof(field), "%s.publish", path);
        if (load_acl_filters(l, v[1], field, &rule->publish, &rule->n_publish) < 0)
            return -1;
        snprintf(field, sizeof(field), "%s.subscribe", path);
        if (load_acl_filters(l, v[2], field, &rule->subscribe, &rule->n_subscribe) < 0)
            return -1;
    }
    return 0;
}

static int load_worker(struct loader *l, const struct node *node, enum sb_worker_kind kind)
{
    const struct option_table *opts = &worker_options[kind];
    const char *keys[WORKER_KEYS_MAX] = {"enabled", "listeners"};
    const struct node *v[WORKER_KEYS_MAX];
    struct config_worker *w = &l->config->workers[kind];
    size_t n_keys = 2;
    char path[64], field[96];

    for (size_t i = 0; i < opts->n; i++)
        keys[n_keys++] = opts->rows[i].name;
    if (kind == SB_WORKER_MQTT)
        keys[n_keys++] = "acl";
    snprintf(path, sizeof(path), "workers.%s", config_worker_names[kind]);
    if (map_fields(l, node, path, keys, n_keys, v, NULL) < 0)
        return -1;
    for (size_t i = 0; i < opts->n; i++)
        if (load_option(l, v[2 + i], path, &opts->rows[i]) < 0)
            return -1;
    if (kind == SB_WORKER_MQTT && load_mqtt_acl(l, v[2 + opts->n]) < 0)
        return -1;
    snprintf(field, sizeof(field), "%s.enabled", path);
    if (get_bool(l, v[0], field, &w->enabled) < 0)
        return -1;
    if (v[1] == NULL)
        return 0;
    if (v[1]->type != NODE_LIST)
        return fail(l, v[1]->line, "expected a list for %s.listeners", path);
    if (v[1]->n_items > CONFIG_MAX_LISTENERS)
        return fail(l, v[1]->line, "too many listeners in %s (at most %d)", path,
                    CONFIG_MAX_LISTENERS);
    if (v[1]->n_items == 0)
        return 0;
    w->listeners = calloc(v[1]->n_items, sizeof(*w->listeners));
    if (w->listeners == NULL)
        return fail(l, v[1]->line, "out of memory");
    for (size_t i = 0; i < v[1]->n_items; i++) {
        snprintf(field, sizeof(field), "%s.listeners[%zu]", path, i);
        if (load_listener(l, v[1]->items[i], field, w) < 0)
            return -1;
    }
    return 0;
}

static int load_workers(struct loader *l, const struct node *node)
{
    static const char *const keys[] = {"rooms", "xmpp", "mqtt", "sip", "irc"};
    static const enum sb_worker_kind kinds[] = {SB_WORKER_ROOMS, SB_WORKER_XMPP, SB_WORKER_MQTT,
                                                SB_WORKER_SIP, SB_WORKER_IRC};
    const struct node *v[5];

    if (node == NULL)
        return 0;
    if (map_fields(l, node, "workers", keys, 5, v, NULL) < 0)
        return -1;
    for (size_t i = 0; i < 5; i++)
        if (v[i] != NULL && load_worker(l, v[i], kinds[i]) < 0)
            return -1;
    return 0;
}

/* ---- checks across sections ---- */

/* Two enabled listeners may not bind the same address, port and transport;
 * port 0 asks the kernel for a fresh port and so never conflicts. The later
 * one in the file is reported. */
static int check_conflicts(struct loader *l)
{
    const struct config *c = l->config;

    for (int a = 0; a < SB_WORKER_COUNT; a++) {
        if (!c->workers[a].enabled)
            continue;
        for (size_t i = 0; i < c->workers[a].n_listeners; i++) {
            const struct config_listener *x = &c->workers[a].listeners[i];
            for (int b = a; b < SB_WORKER_COUNT; b++) {
                if (!c->workers[b].enabled)
                    continue;
                for (size_t j = b == a ? i + 1 : 0; j < c->workers[b].n_listeners; j++) {
                    const struct config_listener *y = &c->workers[b].listeners[j];
                    const struct config_listener *first = x->line <= y->line ? x : y;
                    const struct config_listener *later = first == x ? y : x;
                    int first_kind = first == x ? a : b;

                    if (x->port == 0 || x->port != y->port || x->transport != y->transport ||
                        strcmp(x->address, y->address) != 0)
                        continue;
                    return fail(l, later->line,
                                "listener '%s' conflicts with listener '%s' of worker %s on "
                                "%s%s%s:%u/%s",
                                later->name, first->name, config_worker_names[first_kind],
                                strchr(first->address, ':') ? "[" : "", first->address,
                                strchr(first->address, ':') ? "]" : "", first->port,
                                config_transport_names[first->transport]);
                }
            }
        }
    }
    return 0;
}

static int check_readable(struct loader *l, const char *what, const char *path, int line)
{
    if (access(path, R_OK) == 0)
        return 0;
    if (errno == ENOENT)
        return fail(l, line, "%s file '%s' not found", what, path);
    return fail(l, line, "%s file '%s' not readable: %s", what, path, strerror(errno));
}

/* The certificate and key are checked, and handed to the workers, only
 * when some enabled listener uses TLS: the default file names a
 * development certificate that scripts/run creates, and a configuration
 * without TLS listeners must load without it. */
static int check_tls(struct loader *l)
{
    struct config *c = l->config;
    const struct config_listener *user = NULL;
    int user_kind = 0;

    for (int k = 0; k < SB_WORKER_COUNT && user == NULL; k++) {
        if (!c->workers[k].enabled)
            continue;
        for (size_t i = 0; i < c->workers[k].n_listeners; i++)
            if (c->workers[k].listeners[i].tls != CONFIG_TLS_NONE) {
                user = &c->workers[k].listeners[i];
                user_kind = k;
                break;
            }
    }
    if (user == NULL)
        return 0;
    if (l->tls_certificate == NULL)
        return fail(l, user->line,
                    "listener '%s' of worker %s uses TLS but there is no tls section", user->name,
                    config_worker_names[user_kind]);
    if (check_readable(l, "certificate", l->tls_certificate, l->tls_certificate_line) < 0 ||
        check_readable(l, "key", l->tls_key, l->tls_key_line) < 0)
        return -1;
    c->tls_certificate = strdup(l->tls_certificate);
    c->tls_key = strdup(l->tls_key);
    if (c->tls_certificate == NULL || c->tls_key == NULL)
        return fail(l, l->tls_line, "out of memory");
    return 0;
}

/* ---- fingerprints ---- */

struct text {
    char *s;
    size_t len, cap;
    bool failed;
};

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->s != NULL && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap : 512;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *s = realloc(t->s, cap);
        if (s == NULL) {
            t->failed = true;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

static void fingerprint_globals(const struct loader *l, struct text *t)
{
    const struct config *c = l->config;

    text_printf(t, "hosts=");
    for (size_t i = 0; i < c->n_hosts; i++)
        text_printf(t, "%s%s", i ? "," : "", c->hosts[i]);
    text_printf(t, "\nstate_dir=%s\nuser=%s\nlog_level=%s\n", c->state_dir, c->user ? c->user : "",
                config_log_level_names[c->log_level]);
    text_printf(t, "tls.certificate=%s\ntls.key=%s\n", l->tls_certificate ? l->tls_certificate : "",
                l->tls_key ? l->tls_key : "");
    text_printf(t, "broker.heartbeat_ms=%d\nbroker.heartbeat_misses=%d\n", c->broker.heartbeat_ms,
                c->broker.heartbeat_misses);
    text_printf(t,
                "limits.max_connections=%d\nlimits.idle_timeout=%d\nlimits.max_input=%d\n"
                "limits.max_output=%d\n",
                c->limits.max_connections, c->limits.idle_timeout_s, c->limits.max_input,
                c->limits.max_output);
}

static void fingerprint_store(const struct config *c, struct text *t)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    const char *password = c->store.mysql_password;

    text_printf(t, "store.backend=%s\nstore.sqlite.path=%s\nstore.batch_max=%d\n",
                config_backend_names[c->store.backend], c->store.sqlite_path, c->store.batch_max);
    text_printf(t,
                "store.mysql.host=%s\nstore.mysql.port=%u\nstore.mysql.socket=%s\n"
                "store.mysql.user=%s\nstore.mysql.database=%s\nstore.mysql.password=",
                c->store.mysql_host ? c->store.mysql_host : "", c->store.mysql_port,
                c->store.mysql_socket ? c->store.mysql_socket : "", c->store.mysql_user,
                c->store.mysql_database);
    /* Fingerprints may end up in logs; the password only as a digest. */
    if (!EVP_Digest(password, strlen(password), digest, &digest_len, EVP_sha256(), NULL)) {
        t->failed = true;
        return;
    }
    for (unsigned int i = 0; i < digest_len; i++)
        text_printf(t, "%02x", digest[i]);
    text_printf(t, "\n");
}

static void fingerprint_worker(const struct config *c, enum sb_worker_kind kind, struct text *t)
{
    const struct config_worker *w = &c->workers[kind];
    const char *name = config_worker_names[kind];

    text_printf(t, "workers.%s.enabled=%s\n", name, w->enabled ? "true" : "false");
    for (size_t i = 0; i < worker_options[kind].n; i++) {
        const struct option_spec *o = &worker_options[kind].rows[i];
        const void *p = option_value(c, o);

        text_printf(t, "workers.%s.%s=", name, o->name);
        if (o->type == OPT_BOOL)
            text_printf(t, "%d\n", *(const bool *)p);
        else if (o->type == OPT_INT)
            text_printf(t, "%d\n", *(const int *)p);
        else
            text_printf(t, "%zu:%s\n", strlen(*(char *const *)p), *(char *const *)p);
    }
    if (kind == SB_WORKER_MQTT)
        for (size_t i = 0; i < c->mqtt.n_acl; i++) {
            const struct config_mqtt_acl *rule = &c->mqtt.acl[i];

            text_printf(t, "workers.mqtt.acl=%zu:%s", strlen(rule->user), rule->user);
            for (size_t j = 0; j < rule->n_publish; j++)
                text_printf(t, " p%zu:%s", strlen(rule->publish[j]), rule->publish[j]);
            for (size_t j = 0; j < rule->n_subscribe; j++)
                text_printf(t, " s%zu:%s", strlen(rule->subscribe[j]), rule->subscribe[j]);
            text_printf(t, "\n");
        }
    for (size_t i = 0; i < w->n_listeners; i++) {
        const struct config_listener *ln = &w->listeners[i];
        text_printf(t, "workers.%s.listener=%s %s %u %s %s\n", name, ln->name, ln->address,
                    ln->port, config_tls_names[ln->tls], config_transport_names[ln->transport]);
    }
}

static int make_fingerprints(struct loader *l)
{
    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        struct text t = {0};

        fingerprint_globals(l, &t);
        if (k == SB_WORKER_STORE)
            fingerprint_store(l->config, &t);
        fingerprint_worker(l->config, k, &t);
        if (t.failed) {
            free(t.s);
            return fail(l, 1, "out of memory");
        }
        l->config->workers[k].fingerprint = t.s;
    }
    return 0;
}

/* ---- loading ---- */

static struct config *config_defaults(void)
{
    struct config *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->log_level = LOG_LEVEL_INFO;
    c->broker.heartbeat_ms = 1000;
    c->broker.heartbeat_misses = 3;
    c->store.backend = CONFIG_BACKEND_SQLITE;
    c->store.mysql_port = 3306;
    c->store.batch_max = 256;
    c->store.mysql_user = strdup("switchboard");
    c->store.mysql_password = strdup("");
    c->store.mysql_database = strdup("switchboard");
    c->supervisor.restart_intensity = 5;
    c->supervisor.restart_period_s = 60;
    c->supervisor.backoff_min_ms = 500;
    c->supervisor.backoff_max_ms = 30000;
    c->supervisor.stop_timeout_ms = 10000;
    c->limits.max_connections = 10000;
    c->limits.idle_timeout_s = 300;
    c->limits.max_input = 262144;
    c->limits.max_output = 1048576;
    c->workers[SB_WORKER_BROKER].enabled = true;
    c->workers[SB_WORKER_STORE].enabled = true;
    if (options_defaults(c) < 0 || c->store.mysql_user == NULL || c->store.mysql_password == NULL ||
        c->store.mysql_database == NULL) {
        config_free(&c);
        return NULL;
    }
    return c;
}

enum {
    KEY_HOSTS,
    KEY_STATE_DIR,
    KEY_USER,
    KEY_LOG_LEVEL,
    KEY_TLS,
    KEY_BROKER,
    KEY_STORE,
    KEY_SUPERVISOR,
    KEY_LIMITS,
    KEY_WORKERS,
    KEY_COUNT
};

static int load_root(struct loader *l, const struct node *root)
{
    static const char *const names[KEY_COUNT] = {
        [KEY_HOSTS] = "hosts",   [KEY_STATE_DIR] = "state_dir",
        [KEY_USER] = "user",     [KEY_LOG_LEVEL] = "log_level",
        [KEY_TLS] = "tls",       [KEY_BROKER] = "broker",
        [KEY_STORE] = "store",   [KEY_SUPERVISOR] = "supervisor",
        [KEY_LIMITS] = "limits", [KEY_WORKERS] = "workers",
    };
    struct config *c = l->config;
    const struct node *v[KEY_COUNT] = {NULL};
    int level = LOG_LEVEL_INFO;

    /* An empty document (only "---" or comments) means all defaults. */
    if (root != NULL && !(node_is_null(root)) &&
        map_fields(l, root, "", names, KEY_COUNT, v, NULL) < 0)
        return -1;
    l->state_dir_line = v[KEY_STATE_DIR] ? v[KEY_STATE_DIR]->line : 1;
    if (load_hosts(l, v[KEY_HOSTS]) < 0 ||
        get_path(l, v[KEY_STATE_DIR], "state_dir", l->base_dir, "../var", &c->state_dir) < 0 ||
        get_string(l, v[KEY_USER], "user", false, &c->user) < 0 ||
        get_enum(l, v[KEY_LOG_LEVEL], "log_level", config_log_level_names, &level) < 0)
        return -1;
    c->log_level = level;
    /* The broker endpoint lives under state_dir and must fit a unix socket. */
    if (strlen(c->state_dir) + strlen("/run/broker.sock") > CONFIG_MAX_SOCKET_PATH)
        return fail(l, l->state_dir_line,
                    "state_dir '%s' is too long for the unix sockets under it (at most %zu bytes)",
                    c->state_dir, CONFIG_MAX_SOCKET_PATH - strlen("/run/broker.sock"));
    if (load_tls(l, v[KEY_TLS]) < 0 || load_broker(l, v[KEY_BROKER]) < 0 ||
        load_store(l, v[KEY_STORE]) < 0 || load_supervisor(l, v[KEY_SUPERVISOR]) < 0 ||
        load_limits(l, v[KEY_LIMITS]) < 0 || load_workers(l, v[KEY_WORKERS]) < 0)
        return -1;
    if (check_conflicts(l) < 0 || check_tls(l) < 0)
        return -1;
    return make_fingerprints(l);
}

static int config_load_text(const char *name, const char *base_dir, const char *text, size_t len,
                            struct config **config_r, const char **error_r)
{
    struct loader l = {.name = name, .text = (const unsigned char *)text, .len = len};
    struct node *root = NULL;
    int ret = -1;

    *config_r = NULL;
    *error_r = config_error;
    config_error[0] = '\0';
    if (len > CONFIG_MAX_SIZE) {
        fail(&l, 1, "file larger than %d bytes", CONFIG_MAX_SIZE);
        return -1;
    }
    if (snprintf(l.base_dir, sizeof(l.base_dir), "%s", base_dir) >= (int)sizeof(l.base_dir)) {
        fail(&l, 1, "directory name too long");
        return -1;
    }
    l.config = config_defaults();
    if (l.config == NULL || (l.config->path = strdup(name)) == NULL) {
        config_free(&l.config);
        fail(&l, 1, "out of memory");
        return -1;
    }
    if (!yaml_parser_initialize(&l.parser)) {
        config_free(&l.config);
        fail(&l, 1, "out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&l.parser, (const unsigned char *)text, len);
    if (parse_tree(&l, &root) == 0 && load_root(&l, root) == 0)
        ret = 0;
    yaml_parser_delete(&l.parser);
    node_free(root);
    free(l.tls_certificate);
    free(l.tls_key);
    if (ret < 0) {
        config_free(&l.config);
        return -1;
    }
    *config_r = l.config;
    *error_r = NULL;
    return 0;
}

int config_load_string(const char *name, const char *text, size_t len, struct config **config_r,
                       const char **error_r)
{
    char cwd[PATH_MAX];

    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        snprintf(config_error, sizeof(config_error), "%s:1: cannot get the current directory: %s",
                 name, strerror(errno));
        *config_r = NULL;
        *error_r = config_error;
        return -1;
    }
    return config_load_text(name, cwd, text, len, config_r, error_r);
}

/* For errors about the file as a whole, which have no line. */
static int fail_file(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail_file(const char *path, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(config_error, sizeof(config_error), "%s: ", path);

    if (n < 0 || (size_t)n >= sizeof(config_error))
        return -1;
    va_start(ap, fmt);
    vsnprintf(config_error + n, sizeof(config_error) - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Reads at most CONFIG_MAX_SIZE + 1 bytes, so that a file that grew since
 * fstat is still caught by the size check. */
static int read_file(const char *path, int fd, char **text_r, size_t *len_r)
{
    struct stat st;
    char *text;
    size_t len = 0;

    if (fstat(fd, &st) < 0)
        return fail_file(path, "cannot stat: %s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail_file(path, "not a regular file");
    if (st.st_size > CONFIG_MAX_SIZE)
        return fail_file(path, "file larger than %d bytes", CONFIG_MAX_SIZE);
    text = malloc(CONFIG_MAX_SIZE + 1);
    if (text == NULL)
        return fail_file(path, "out of memory");
    while (len < CONFIG_MAX_SIZE + 1) {
        ssize_t n = read(fd, text + len, CONFIG_MAX_SIZE + 1 - len);
        if (n == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(text);
            return fail_file(path, "cannot read: %s", strerror(errno));
        }
        len += (size_t)n;
    }
    *text_r = text;
    *len_r = len;
    return 0;
}

int config_load(const char *path, struct config **config_r, const char **error_r)
{
    char dir[PATH_MAX], real_dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    char *text = NULL;
    size_t len = 0;
    int fd, ret;

    *config_r = NULL;
    *error_r = config_error;
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else if ((size_t)(slash - path) < sizeof(dir))
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    else
        return fail_file(path, "path too long");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail_file(path, "cannot open: %s", strerror(errno));
    ret = read_file(path, fd, &text, &len);
    close(fd);
    if (ret < 0)
        return -1;
    /* Relative paths in the file are taken from its real directory. */
    if (realpath(dir, real_dir) == NULL) {
        free(text);
        return fail_file(path, "cannot resolve its directory: %s", strerror(errno));
    }
    ret = config_load_text(path, real_dir, text, len, config_r, error_r);
    free(text);
    return ret;
}

void config_free(struct config **config)
{
    struct config *c = *config;

    if (c == NULL)
        return;
    free(c->path);
    for (size_t i = 0; i < c->n_hosts; i++)
        free(c->hosts[i]);
    free(c->hosts);
    free(c->state_dir);
    free(c->user);
    free(c->tls_certificate);
    free(c->tls_key);
    free(c->store.sqlite_path);
    free(c->store.mysql_host);
    free(c->store.mysql_socket);
    free(c->store.mysql_user);
    free(c->store.mysql_password);
    free(c->store.mysql_database);
    free(c->supervisor.control_socket);
    options_free(c);
    for (size_t i = 0; i < c->mqtt.n_acl; i++) {
        struct config_mqtt_acl *rule = &c->mqtt.acl[i];

        free(rule->user);
        for (size_t j = 0; j < rule->n_publish; j++)
            free(rule->publish[j]);
        for (size_t j = 0; j < rule->n_subscribe; j++)
            free(rule->subscribe[j]);
        free(rule->publish);
        free(rule->subscribe);
    }
    free(c->mqtt.acl);
    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        struct config_worker *w = &c->workers[k];
        for (size_t i = 0; i < w->n_listeners; i++) {
            free(w->listeners[i].name);
            free(w->listeners[i].address);
        }
        free(w->listeners);
        free(w->fingerprint);
    }
    free(c);
    *config = NULL;
}

void config_broker_endpoint(const struct config *config, char *out, size_t out_size)
{
    snprintf(out, out_size, "ipc://%s/run/broker.sock", config->state_dir);
}
