/*
 * The route, session and interest tables of router_tables.h.
 *
 * Every entry is linked twice: into its table (a hash map, or the interest
 * trie) and into its owner's list, so that dropping an owner walks only its
 * own entries. Lookups on the routing path allocate nothing: their result
 * arrays are sized when entries are added, where a failure can be refused.
 *
 * The interest table is a trie of topic levels. The exact-level children of
 * all nodes live in one hash map keyed by (parent node, level); the '+' and
 * '#' children hang off their parent directly. Matching a topic visits only
 * nodes whose filter prefix matches it, so its cost does not grow with the
 * number of unrelated filters.
 */
#include "broker/router_tables.h"

#include <stdlib.h>
#include <string.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* First size of the lookup result arrays. */
#define RESULT_MIN 16

struct route {
    struct router_list refs; /* struct route_ref.in_route, in announce order */
    uint32_t len;
    char address[];
};

struct route_ref {
    struct route *route;
    struct router_owner *owner;
    struct router_list in_route, in_owner;
};

/* The sessions of one bare address. */
struct router_account {
    struct router_list sessions; /* struct router_session.in_account */
    uint32_t n_sessions;
    uint32_t len;
    char bare[];
};

enum node_kind { NODE_ROOT, NODE_EXACT, NODE_PLUS, NODE_HASH };

struct interest_node {
    struct interest_node *parent, *plus, *hash;
    uint32_t n_exact;        /* exact-level children, in router_tables.children */
    uint8_t kind;            /* enum node_kind */
    struct router_list subs; /* struct interest_sub.in_node */
    uint32_t key_len;
    uint8_t key[]; /* NODE_EXACT: the parent pointer's bytes, then the level */
};

struct interest_sub {
    struct interest_node *node;
    struct router_owner *owner;
    struct router_list in_node, in_owner;
};

struct router_tables {
    struct hashmap routes;   /* address -> struct route */
    struct hashmap sessions; /* full address -> struct router_session */
    struct hashmap accounts; /* bare address -> struct router_account */
    struct hashmap children; /* (parent, level) -> struct interest_node */
    struct interest_node *root;
    size_t n_routes, n_sessions, n_interests, n_nodes;
    size_t n_interest_owners; /* owners with at least one interest */

    /* Marks owners already selected by the current lookup. */
    uint64_t generation;
    /* Scratch key for the children map: a pointer and a level. */
    uint8_t *key_buf;

    /* Lookup results, reused from one lookup to the next. */
    struct router_delivery *deliveries;
    uint64_t *conns;
    size_t results_cap; /* of deliveries and conns */
    struct router_owner **matched;
    size_t matched_cap;
};

/* ---- lists ---- */

static void list_init(struct router_list *l)
{
    l->prev = l->next = l;
}

static bool list_empty(const struct router_list *l)
{
    return l->next == l;
}

static void list_append(struct router_list *head, struct router_list *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static void list_remove(struct router_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#define list_each(pos, head)                                                                       \
    for (struct router_list *pos = (head)->next; pos != (head); pos = pos->next)

/* Grows *arr (of elem-sized items) to hold at least need; -1 on failure. */
static int ensure_cap(void **arr, size_t *cap, size_t need, size_t elem)
{
    size_t n = *cap ? *cap : RESULT_MIN;
    void *p;

    if (need <= *cap)
        return 0;
    while (n < need)
        n *= 2;
    p = realloc(*arr, n * elem);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = n;
    return 0;
}

static int results_reserve(struct router_tables *t, size_t need)
{
    size_t cap_d = t->results_cap, cap_c = t->results_cap;

    if (ensure_cap((void **)&t->deliveries, &cap_d, need, sizeof(*t->deliveries)) < 0 ||
        ensure_cap((void **)&t->conns, &cap_c, need, sizeof(*t->conns)) < 0)
        return -1;
    t->results_cap = cap_d < cap_c ? cap_d : cap_c;
    return 0;
}

/* ---- addresses and topics ---- */

void router_address_split(struct ipc_slice a, struct router_address *r)
{
    const uint8_t *slash = a.len ? memchr(a.ptr, '/', a.len) : NULL;
    const uint8_t *at;
    uint32_t bare_len = slash ? (uint32_t)(slash - a.ptr) : a.len;

    memset(r, 0, sizeof(*r));
    r->bare.ptr = a.ptr;
    r->bare.len = bare_len;
    if (slash != NULL) {
        r->has_resource = true;
        r->resource.ptr = slash + 1;
        r->resource.len = a.len - bare_len - 1;
    }
    at = bare_len ? memchr(a.ptr, '@', bare_len) : NULL;
    if (at != NULL) {
        r->has_local = true;
        r->local.ptr = a.ptr;
        r->local.len = (uint32_t)(at - a.ptr);
        r->domain.ptr = at + 1;
        r->domain.len = bare_len - r->local.len - 1;
    } else {
        r->domain = r->bare;
    }
}

bool router_topic_valid(struct ipc_slice topic)
{
    return topic.len > 0 && topic.len <= ROUTER_MAX_TOPIC &&
           memchr(topic.ptr, '+', topic.len) == NULL && memchr(topic.ptr, '#', topic.len) == NULL;
}

bool router_filter_valid(struct ipc_slice f)
{
    uint32_t levels = 1, start = 0;

    if (f.len == 0 || f.len > ROUTER_MAX_TOPIC)
        return false;
    for (uint32_t i = 0; i < f.len; i++) {
        uint8_t c = f.ptr[i];

        if (c == '/') {
            if (++levels > ROUTER_MAX_TOPIC_LEVELS)
                return false;
            start = i + 1;
        } else if (c == '+' || c == '#') {
            /* A wildcard fills its whole level; '#' is also the last one. */
            bool level_end = i + 1 == f.len || f.ptr[i + 1] == '/';
            if (i != start || !level_end || (c == '#' && i + 1 != f.len))
                return false;
        }
    }
    return true;
}

/* ---- tables ---- */

void router_owner_init(struct router_owner *o, uint32_t id)
{
    memset(o, 0, sizeof(*o));
    o->id = id;
    list_init(&o->routes);
    list_init(&o->sessions);
    list_init(&o->interests);
}

static struct interest_node *node_new(enum node_kind kind, struct interest_node *parent,
                                      const uint8_t *key, size_t key_len)
{
    struct interest_node *n = calloc(1, sizeof(*n) + key_len);

    if (n == NULL)
        return NULL;
    n->kind = (uint8_t)kind;
    n->parent = parent;
    list_init(&n->subs);
    n->key_len = (uint32_t)key_len;
    if (key_len > 0)
        memcpy(n->key, key, key_len);
    return n;
}

struct router_tables *router_tables_new(void)
{
    struct router_tables *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    hashmap_init(&t->routes);
    hashmap_init(&t->sessions);
    hashmap_init(&t->accounts);
    hashmap_init(&t->children);
    t->root = node_new(NODE_ROOT, NULL, NULL, 0);
    /* A level is at most a whole topic. */
    t->key_buf = malloc(sizeof(struct interest_node *) + ROUTER_MAX_TOPIC);
    if (t->root == NULL || t->key_buf == NULL || results_reserve(t, RESULT_MIN) < 0 ||
        ensure_cap((void **)&t->matched, &t->matched_cap, RESULT_MIN, sizeof(*t->matched)) < 0) {
        router_tables_free(&t);
        return NULL;
    }
    return t;
}

void router_tables_free(struct router_tables **tp)
{
    struct router_tables *t = *tp;

    if (t == NULL)
        return;
    hashmap_deinit(&t->routes);
    hashmap_deinit(&t->sessions);
    hashmap_deinit(&t->accounts);
    hashmap_deinit(&t->children);
    free(t->root);
    free(t->key_buf);
    free(t->deliveries);
    free(t->conns);
    free(t->matched);
    free(t);
    *tp = NULL;
}

void router_tables_counts(const struct router_tables *t, struct router_tables_counts *c)
{
    c->routes = t->n_routes;
    c->sessions = t->n_sessions;
    c->accounts = hashmap_count(&t->accounts);
    c->interests = t->n_interests;
    c->interest_nodes = t->n_nodes;
}

/* ---- routes ---- */

static void route_ref_free(struct router_tables *t, struct route_ref *ref)
{
    struct route *r = ref->route;

    list_remove(&ref->in_route);
    list_remove(&ref->in_owner);
    ref->owner->n_routes--;
    t->n_routes--;
    if (list_empty(&r->refs)) {
        hashmap_remove(&t->routes, r->address, r->len);
        free(r);
    }
    free(ref);
}

int router_route_add(struct router_tables *t, struct router_owner *o, struct ipc_slice address,
                     const char **error_r)
{
    struct route *r;
    struct route_ref *ref;

    if (address.len == 0) {
        *error_r = "empty route address";
        return -1;
    }
    r = hashmap_get(&t->routes, address.ptr, address.len);
    if (r != NULL) {
        list_each(pos, &r->refs)
        {
            if (container_of(pos, struct route_ref, in_route)->owner == o)
                return 0;
        }
    }
    if (o->n_routes >= ROUTER_MAX_ROUTES_PER_OWNER) {
        *error_r = "too many routes for one peer";
        return -1;
    }
    ref = calloc(1, sizeof(*ref));
    if (ref == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    if (r == NULL) {
        r = malloc(sizeof(*r) + address.len + 1);
        if (r == NULL) {
            free(ref);
            *error_r = "out of memory";
            return -1;
        }
        list_init(&r->refs);
        r->len = address.len;
        memcpy(r->address, address.ptr, address.len);
        r->address[address.len] = '\0';
        if (hashmap_put(&t->routes, r->address, r->len, r) < 0) {
            free(r);
            free(ref);
            *error_r = "out of memory";
            return -1;
        }
    }
    ref->route = r;
    ref->owner = o;
    list_append(&r->refs, &ref->in_route);
    list_append(&o->routes, &ref->in_owner);
    o->n_routes++;
    t->n_routes++;
    return 0;
}

bool router_route_del(struct router_tables *t, struct router_owner *o, struct ipc_slice address)
{
    struct route *r = hashmap_get(&t->routes, address.ptr, address.len);

    if (r == NULL)
        return false;
    list_each(pos, &r->refs)
    {
        struct route_ref *ref = container_of(pos, struct route_ref, in_route);
        if (ref->owner == o) {
            route_ref_free(t, ref);
            return true;
        }
    }
    return false;
}

struct router_owner *router_route_lookup(struct router_tables *t, struct ipc_slice address)
{
    struct route *r = hashmap_get(&t->routes, address.ptr, address.len);

    if (r == NULL || list_empty(&r->refs))
        return NULL;
    return container_of(r->refs.next, struct route_ref, in_route)->owner;
}

/* ---- sessions ---- */

static void session_set(struct router_session *s, const struct router_session_info *info)
{
    uint32_t n = info->status.len;

    s->conn = info->conn;
    s->priority = info->priority;
    s->show_len = (uint8_t)(info->show.len < ROUTER_MAX_SHOW ? info->show.len : ROUTER_MAX_SHOW);
    if (s->show_len > 0)
        memcpy(s->show, info->show.ptr, s->show_len);
    s->show[s->show_len] = '\0';

    if (n > ROUTER_MAX_STATUS) {
        /* Cut before the character that straddles the limit. */
        n = ROUTER_MAX_STATUS;
        while (n > 0 && (info->status.ptr[n] & 0xc0) == 0x80)
            n--;
    }
    if (n != s->status_len) {
        uint8_t *p = n > 0 ? realloc(s->status, n) : NULL;
        if (n == 0 || p == NULL) {
            /* The status is diagnostic only: without memory, keep none. */
            free(s->status);
            n = 0;
        }
        s->status = p;
        s->status_len = n;
    }
    if (n > 0)
        memcpy(s->status, info->status.ptr, n);
}

static void session_free(struct router_tables *t, struct router_session *s)
{
    struct router_account *a = s->account;

    hashmap_remove(&t->sessions, s->address, s->address_len);
    list_remove(&s->in_owner);
    s->owner->n_sessions--;
    list_remove(&s->in_account);
    if (--a->n_sessions == 0) {
        hashmap_remove(&t->accounts, a->bare, a->len);
        free(a);
    }
    t->n_sessions--;
    free(s->status);
    free(s);
}

int router_session_add(struct router_tables *t, struct router_owner *o,
                       const struct router_session_info *info, const char **error_r)
{
    struct router_address parts;
    struct router_session *s;
    struct router_account *a;

    router_address_split(info->address, &parts);
    if (!parts.has_local || !parts.has_resource || parts.local.len == 0 || parts.domain.len == 0 ||
        parts.resource.len == 0) {
        *error_r = "session address is not local@domain/resource";
        return -1;
    }
    s = hashmap_get(&t->sessions, info->address.ptr, info->address.len);
    if (s != NULL) {
        if (s->owner != o) {
            list_remove(&s->in_owner);
            s->owner->n_sessions--;
            s->owner = o;
            list_append(&o->sessions, &s->in_owner);
            o->n_sessions++;
        }
        session_set(s, info);
        return 0;
    }
    if (t->n_sessions >= ROUTER_MAX_SESSIONS) {
        *error_r = "session table full";
        return -1;
    }
    a = hashmap_get(&t->accounts, parts.bare.ptr, parts.bare.len);
    if (a != NULL && a->n_sessions >= ROUTER_MAX_SESSIONS_PER_ACCOUNT) {
        *error_r = "too many sessions for one account";
        return -1;
    }
    /* Routing to this account must not need memory later. */
    if (results_reserve(t, (a ? a->n_sessions : 0) + 1) < 0) {
        *error_r = "out of memory";
        return -1;
    }
    s = calloc(1, sizeof(*s) + info->address.len + 1);
    if (s == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    s->address_len = info->address.len;
    memcpy(s->address, info->address.ptr, info->address.len);
    s->address[s->address_len] = '\0';
    if (a == NULL) {
        a = malloc(sizeof(*a) + parts.bare.len + 1);
        if (a == NULL) {
            free(s);
            *error_r = "out of memory";
            return -1;
        }
        list_init(&a->sessions);
        a->n_sessions = 0;
        a->len = parts.bare.len;
        memcpy(a->bare, parts.bare.ptr, parts.bare.len);
        a->bare[a->len] = '\0';
        if (hashmap_put(&t->accounts, a->bare, a->len, a) < 0) {
            free(a);
            free(s);
            *error_r = "out of memory";
            return -1;
        }
    }
    if (hashmap_put(&t->sessions, s->address, s->address_len, s) < 0) {
        if (a->n_sessions == 0) {
            hashmap_remove(&t->accounts, a->bare, a->len);
            free(a);
        }
        free(s);
        *error_r = "out of memory";
        return -1;
    }
    s->owner = o;
    s->account = a;
    list_append(&o->sessions, &s->in_owner);
    list_append(&a->sessions, &s->in_account);
    o->n_sessions++;
    a->n_sessions++;
    t->n_sessions++;
    session_set(s, info);
    return 0;
}

bool router_session_del(struct router_tables *t, struct router_owner *o, struct ipc_slice address)
{
    struct router_session *s = hashmap_get(&t->sessions, address.ptr, address.len);

    if (s == NULL || s->owner != o)
        return false;
    session_free(t, s);
    return true;
}

const struct router_session *router_session_lookup(struct router_tables *t,
                                                   struct ipc_slice address)
{
    return hashmap_get(&t->sessions, address.ptr, address.len);
}

const struct router_session *router_session_next(struct router_tables *t, size_t *pos)
{
    void *value;

    return hashmap_next(&t->sessions, pos, NULL, NULL, &value) ? value : NULL;
}

/* ---- interests ---- */

/* The child of n for one level of a filter; '+' and '#' name the wildcard
 * children. With create, a missing child is made (NULL when the table is
 * full or memory runs out). */
static struct interest_node *node_child(struct router_tables *t, struct interest_node *n,
                                        const uint8_t *level, size_t len, bool create)
{
    struct interest_node **wild = NULL, *child;
    size_t key_len = sizeof(n) + len;

    if (len == 1 && level[0] == '+')
        wild = &n->plus;
    else if (len == 1 && level[0] == '#')
        wild = &n->hash;
    if (wild != NULL) {
        if (*wild == NULL && create && t->n_nodes < ROUTER_MAX_INTEREST_NODES) {
            *wild = node_new(level[0] == '+' ? NODE_PLUS : NODE_HASH, n, NULL, 0);
            if (*wild != NULL)
                t->n_nodes++;
        }
        return *wild;
    }
    memcpy(t->key_buf, &n, sizeof(n));
    if (len > 0)
        memcpy(t->key_buf + sizeof(n), level, len);
    child = hashmap_get(&t->children, t->key_buf, key_len);
    if (child != NULL || !create || t->n_nodes >= ROUTER_MAX_INTEREST_NODES)
        return child;
    child = node_new(NODE_EXACT, n, t->key_buf, key_len);
    if (child == NULL)
        return NULL;
    if (hashmap_put(&t->children, child->key, child->key_len, child) < 0) {
        free(child);
        return NULL;
    }
    n->n_exact++;
    t->n_nodes++;
    return child;
}

/* Frees n and its ancestors while they serve no filter. */
static void node_prune(struct router_tables *t, struct interest_node *n)
{
    while (n->kind != NODE_ROOT && list_empty(&n->subs) && n->n_exact == 0 && n->plus == NULL &&
           n->hash == NULL) {
        struct interest_node *parent = n->parent;

        if (n->kind == NODE_PLUS) {
            parent->plus = NULL;
        } else if (n->kind == NODE_HASH) {
            parent->hash = NULL;
        } else {
            hashmap_remove(&t->children, n->key, n->key_len);
            parent->n_exact--;
        }
        free(n);
        t->n_nodes--;
        n = parent;
    }
}

/* Walks (and with create, builds) the trie path of a valid filter. */
static struct interest_node *filter_node(struct router_tables *t, struct ipc_slice f, bool create)
{
    struct interest_node *n = t->root;
    const uint8_t *p = f.ptr, *end = f.ptr + f.len;

    for (;;) {
        const uint8_t *slash = p < end ? memchr(p, '/', (size_t)(end - p)) : NULL;
        const uint8_t *level_end = slash ? slash : end;
        struct interest_node *child = node_child(t, n, p, (size_t)(level_end - p), create);

        if (child == NULL) {
            if (create)
                node_prune(t, n);
            return NULL;
        }
        n = child;
        if (slash == NULL)
            return n;
        p = slash + 1;
    }
}

static void sub_free(struct router_tables *t, struct interest_sub *sub)
{
    struct interest_node *n = sub->node;

    list_remove(&sub->in_node);
    list_remove(&sub->in_owner);
    if (--sub->owner->n_interests == 0)
        t->n_interest_owners--;
    t->n_interests--;
    free(sub);
    node_prune(t, n);
}

int router_interest_add(struct router_tables *t, struct router_owner *o, struct ipc_slice filter,
                        const char **error_r)
{
    struct interest_node *n;
    struct interest_sub *sub;

    if (!router_filter_valid(filter)) {
        *error_r = "invalid topic filter";
        return -1;
    }
    if (t->n_interests >= ROUTER_MAX_INTERESTS) {
        *error_r = "interest table full";
        return -1;
    }
    /* A match can select every owner with interests: make room now. */
    if (o->n_interests == 0 && ensure_cap((void **)&t->matched, &t->matched_cap,
                                          t->n_interest_owners + 1, sizeof(*t->matched)) < 0) {
        *error_r = "out of memory";
        return -1;
    }
    n = filter_node(t, filter, true);
    if (n == NULL) {
        *error_r =
            t->n_nodes >= ROUTER_MAX_INTEREST_NODES ? "interest table full" : "out of memory";
        return -1;
    }
    list_each(pos, &n->subs)
    {
        if (container_of(pos, struct interest_sub, in_node)->owner == o)
            return 0;
    }
    sub = calloc(1, sizeof(*sub));
    if (sub == NULL) {
        node_prune(t, n);
        *error_r = "out of memory";
        return -1;
    }
    sub->node = n;
    sub->owner = o;
    list_append(&n->subs, &sub->in_node);
    list_append(&o->interests, &sub->in_owner);
    if (o->n_interests++ == 0)
        t->n_interest_owners++;
    t->n_interests++;
    return 0;
}

bool router_interest_del(struct router_tables *t, struct router_owner *o, struct ipc_slice filter)
{
    struct interest_node *n;

    if (!router_filter_valid(filter))
        return false;
    n = filter_node(t, filter, false);
    if (n == NULL)
        return false;
    list_each(pos, &n->subs)
    {
        struct interest_sub *sub = container_of(pos, struct interest_sub, in_node);
        if (sub->owner == o) {
            sub_free(t, sub);
            return true;
        }
    }
    return false;
}

static void match_emit(struct router_tables *t, const struct interest_node *n, size_t *count)
{
    list_each(pos, &n->subs)
    {
        struct router_owner *o = container_of(pos, struct interest_sub, in_node)->owner;
        if (o->mark != t->generation && *count < t->matched_cap) {
            o->mark = t->generation;
            t->matched[(*count)++] = o;
        }
    }
}

/* Matches the levels from p on against the filters below n. The recursion
 * depth is bounded by the trie's, at most ROUTER_MAX_TOPIC_LEVELS. */
static void match_walk(struct router_tables *t, struct interest_node *n, const uint8_t *p,
                       const uint8_t *end, bool done, size_t *count)
{
    const uint8_t *slash, *level_end;
    struct interest_node *child;
    bool wild_ok, last;

    if (done) {
        /* "a/#" also matches "a" (MQTT 3.1.1 §4.7.1.2). */
        match_emit(t, n, count);
        if (n->hash != NULL)
            match_emit(t, n->hash, count);
        return;
    }
    /* Wildcards in the first level do not match "$SYS/..." topics. */
    wild_ok = !(n->kind == NODE_ROOT && p < end && *p == '$');
    slash = p < end ? memchr(p, '/', (size_t)(end - p)) : NULL;
    level_end = slash ? slash : end;
    last = slash == NULL;
    if (wild_ok && n->hash != NULL)
        match_emit(t, n->hash, count);
    if (wild_ok && n->plus != NULL)
        match_walk(t, n->plus, last ? end : slash + 1, end, last, count);
    child = node_child(t, n, p, (size_t)(level_end - p), false);
    if (child != NULL)
        match_walk(t, child, last ? end : slash + 1, end, last, count);
}

size_t router_interest_match(struct router_tables *t, struct ipc_slice topic,
                             struct router_owner *const **owners_r)
{
    size_t count = 0;

    *owners_r = t->matched;
    if (t->n_interests == 0 || !router_topic_valid(topic))
        return 0;
    t->generation++;
    match_walk(t, t->root, topic.ptr, topic.ptr + topic.len, false, &count);
    return count;
}

/* ---- routing ---- */

/* The deliveries for a bare address with sessions; 0 when none qualifies. */
static size_t account_deliveries(struct router_tables *t, struct router_account *a, uint8_t skind)
{
    bool best_only = skind == STANZA_MESSAGE;
    int32_t best = INT32_MIN;
    size_t n = 0, offset = 0;

    if (best_only) {
        list_each(pos, &a->sessions)
        {
            const struct router_session *s = container_of(pos, struct router_session, in_account);
            if (s->priority > best)
                best = s->priority;
        }
        /* Only negative priorities: as if the account were offline. */
        if (best < 0)
            return 0;
    }
    /* Count the connections per owner, then lay them out owner by owner. */
    t->generation++;
    list_each(pos, &a->sessions)
    {
        struct router_session *s = container_of(pos, struct router_session, in_account);
        struct router_owner *o = s->owner;

        if (best_only && s->priority != best)
            continue;
        if (o->mark != t->generation) {
            o->mark = t->generation;
            o->slot = (uint32_t)n;
            t->deliveries[n++] = (struct router_delivery){o, NULL, 0};
        }
        t->deliveries[o->slot].n_conns++;
    }
    for (size_t i = 0; i < n; i++) {
        t->deliveries[i].conns = t->conns + offset;
        offset += t->deliveries[i].n_conns;
        t->deliveries[i].n_conns = 0;
    }
    list_each(pos, &a->sessions)
    {
        struct router_session *s = container_of(pos, struct router_session, in_account);
        struct router_delivery *d;

        if (best_only && s->priority != best)
            continue;
        d = &t->deliveries[s->owner->slot];
        t->conns[(size_t)(d->conns - t->conns) + d->n_conns++] = s->conn;
    }
    return n;
}

size_t router_tables_route(struct router_tables *t, uint8_t skind, struct ipc_slice to,
                           const struct router_delivery **deliveries_r)
{
    struct router_address parts;
    struct router_owner *o;

    *deliveries_r = t->deliveries;
    router_address_split(to, &parts);
    if (parts.has_resource) {
        struct router_session *s = hashmap_get(&t->sessions, to.ptr, to.len);
        if (s != NULL) {
            t->conns[0] = s->conn;
            t->deliveries[0] = (struct router_delivery){s->owner, t->conns, 1};
            return 1;
        }
    } else if (parts.has_local) {
        struct router_account *a = hashmap_get(&t->accounts, to.ptr, to.len);
        if (a != NULL) {
            size_t n = account_deliveries(t, a, skind);
            if (n > 0)
                return n;
        }
    }
    o = router_route_lookup(t, to);
    if (o == NULL && parts.domain.len != to.len)
        o = router_route_lookup(t, parts.domain);
    if (o == NULL) {
        struct ipc_slice fallback = {(const uint8_t *)ROUTER_FALLBACK_ROUTE,
                                     sizeof(ROUTER_FALLBACK_ROUTE) - 1};
        o = router_route_lookup(t, fallback);
    }
    if (o == NULL)
        return 0;
    t->deliveries[0] = (struct router_delivery){o, NULL, 0};
    return 1;
}

/* ---- owners ---- */

void router_owner_drop(struct router_tables *t, struct router_owner *o,
                       router_session_fn *session_fn, void *ctx)
{
    while (!list_empty(&o->routes))
        route_ref_free(t, container_of(o->routes.next, struct route_ref, in_owner));
    while (!list_empty(&o->sessions)) {
        struct router_session *s = container_of(o->sessions.next, struct router_session, in_owner);
        if (session_fn != NULL)
            session_fn(ctx, s);
        session_free(t, s);
    }
    while (!list_empty(&o->interests))
        sub_free(t, container_of(o->interests.next, struct interest_sub, in_owner));
}
