/*
 * Unit tests of the broker's tables (broker/router_tables.c) and of the hash
 * map under them (shared/hashmap.c): routes with the "*" fallback, sessions
 * (update, takeover, delete), routing to full and bare addresses with
 * priorities, interest matching with '+', '#' and '$' topics, and dropping
 * an owner.
 */
#include "broker/router_tables.h"
#include "shared/hashmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"

static struct ipc_slice sl(const char *s)
{
    return (struct ipc_slice){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static bool slice_is(struct ipc_slice s, const char *str)
{
    return ipc_slice_eq(s, str);
}

static int session_add(struct router_tables *t, struct router_owner *o, const char *address,
                       uint64_t conn, int32_t priority)
{
    struct router_session_info info = {.address = sl(address), .conn = conn, .priority = priority};
    const char *error = NULL;
    int ret = router_session_add(t, o, &info, &error);

    if (ret < 0 && error == NULL)
        return -2; /* a refusal must say why */
    return ret;
}

/* The delivery for owner in a route result, or NULL. */
static const struct router_delivery *delivery_for(const struct router_delivery *d, size_t n,
                                                  const struct router_owner *o)
{
    for (size_t i = 0; i < n; i++)
        if (d[i].owner == o)
            return &d[i];
    return NULL;
}

static bool has_conn(const struct router_delivery *d, uint64_t conn)
{
    for (size_t i = 0; d != NULL && i < d->n_conns; i++)
        if (d->conns[i] == conn)
            return true;
    return false;
}

static bool matched(struct router_owner *const *owners, size_t n, const struct router_owner *o)
{
    for (size_t i = 0; i < n; i++)
        if (owners[i] == o)
            return true;
    return false;
}

static void test_hashmap(void)
{
    enum { N = 20000 };
    struct hashmap m;
    char(*keys)[16] = calloc(N, sizeof(*keys));
    bool *present = calloc(N, sizeof(*present));
    unsigned seed = 12345;
    size_t count = 0, pos = 0, walked = 0, bad = 0;
    const void *key;
    size_t len;
    void *value;

    hashmap_init(&m);
    CHECK(hashmap_get(&m, "x", 1) == NULL);
    CHECK(hashmap_remove(&m, "x", 1) == NULL);
    for (int i = 0; i < N; i++)
        snprintf(keys[i], sizeof(keys[i]), "key-%d", i);
    /* Random puts and removes against a reference, so that backward-shift
     * deletion is exercised across wrapped probe runs. */
    for (int round = 0; round < 200000; round++) {
        int i;
        seed = seed * 1103515245u + 12345u;
        i = (int)((seed >> 8) % N);
        if ((seed >> 4) & 1) {
            bad += hashmap_put(&m, keys[i], strlen(keys[i]), &present[i]) != 0;
            count += !present[i];
            present[i] = true;
        } else {
            void *v = hashmap_remove(&m, keys[i], strlen(keys[i]));
            bad += v != (present[i] ? &present[i] : NULL);
            count -= present[i];
            present[i] = false;
        }
    }
    CHECK(bad == 0);
    CHECK(hashmap_count(&m) == count);
    for (int i = 0; i < N; i++) {
        void *v = hashmap_get(&m, keys[i], strlen(keys[i]));
        if (v != (present[i] ? &present[i] : NULL)) {
            CHECK(!"lookup disagrees with the reference");
            break;
        }
    }
    while (hashmap_next(&m, &pos, &key, &len, &value)) {
        walked++;
        bad += !*(bool *)value || len != strlen(key);
    }
    CHECK(walked == count && bad == 0);
    /* A prefix is a different key; the empty key is a key. */
    CHECK(hashmap_get(&m, "key-1", 4) == NULL);
    CHECK(hashmap_put(&m, "", 0, &present[0]) == 0);
    CHECK(hashmap_get(&m, "", 0) == &present[0]);
    CHECK(hashmap_remove(&m, "", 0) == &present[0]);
    for (int i = 0; i < N; i++)
        hashmap_remove(&m, keys[i], strlen(keys[i]));
    CHECK(hashmap_count(&m) == 0);
    CHECK(hashmap_hash("abc", 3) == hashmap_hash("abc", 3));
    CHECK(hashmap_hash("abc", 3) != hashmap_hash("abd", 3));
    hashmap_deinit(&m);
    free(keys);
    free(present);
}

static void test_address_split(void)
{
    struct router_address a;

    router_address_split(sl("alice@example.org/phone"), &a);
    CHECK(a.has_local && a.has_resource);
    CHECK(slice_is(a.local, "alice"));
    CHECK(slice_is(a.domain, "example.org"));
    CHECK(slice_is(a.resource, "phone"));
    CHECK(slice_is(a.bare, "alice@example.org"));

    /* The resource may hold '@' and '/'; the local part ends at the first '@'
     * before the first '/'. */
    router_address_split(sl("a@b@c/x@y/z"), &a);
    CHECK(slice_is(a.local, "a"));
    CHECK(slice_is(a.domain, "b@c"));
    CHECK(slice_is(a.resource, "x@y/z"));

    router_address_split(sl("example.org/res@x"), &a);
    CHECK(!a.has_local && a.has_resource);
    CHECK(slice_is(a.domain, "example.org"));
    CHECK(slice_is(a.resource, "res@x"));

    router_address_split(sl("store"), &a);
    CHECK(!a.has_local && !a.has_resource);
    CHECK(slice_is(a.domain, "store"));
    CHECK(slice_is(a.bare, "store"));

    router_address_split(sl(""), &a);
    CHECK(!a.has_local && !a.has_resource && a.bare.len == 0);

    router_address_split(sl("bob@example.org/"), &a);
    CHECK(a.has_resource && a.resource.len == 0);
}

static void test_routes(void)
{
    struct router_tables *t = router_tables_new();
    struct router_owner a, b, s2s;
    const struct router_delivery *d;
    const char *error = NULL;
    size_t n;

    router_owner_init(&a, 1);
    router_owner_init(&b, 2);
    router_owner_init(&s2s, 3);

    CHECK(router_route_add(t, &a, sl(""), &error) < 0 && error != NULL);
    CHECK(router_route_add(t, &a, sl("example.org"), &error) == 0);
    CHECK(router_route_add(t, &b, sl("example.org"), &error) == 0);
    CHECK(router_route_add(t, &a, sl("example.org"), &error) == 0); /* no-op */
    CHECK(router_route_add(t, &b, sl("conference.example.org"), &error) == 0);
    CHECK(a.n_routes == 1 && b.n_routes == 2);

    /* First in announce order wins; when it leaves, the next one serves. */
    CHECK(router_route_lookup(t, sl("example.org")) == &a);
    CHECK(router_route_lookup(t, sl("example.com")) == NULL);
    CHECK(router_route_lookup(t, sl("example.or")) == NULL);

    /* Addresses without sessions go to the route of the address, then of
     * its domain, without connections. */
    n = router_tables_route(t, STANZA_MESSAGE, sl("room@conference.example.org/nick"), &d);
    CHECK(n == 1 && d[0].owner == &b && d[0].n_conns == 0);
    n = router_tables_route(t, STANZA_MESSAGE, sl("conference.example.org"), &d);
    CHECK(n == 1 && d[0].owner == &b);
    n = router_tables_route(t, STANZA_MESSAGE, sl("nobody@example.org"), &d);
    CHECK(n == 1 && d[0].owner == &a && d[0].n_conns == 0);
    n = router_tables_route(t, STANZA_IQ, sl("nobody@example.org/r"), &d);
    CHECK(n == 1 && d[0].owner == &a);
    CHECK(router_tables_route(t, STANZA_MESSAGE, sl("x@elsewhere.net"), &d) == 0);

    /* The "*" route catches every other domain. */
    CHECK(router_route_add(t, &s2s, sl(ROUTER_FALLBACK_ROUTE), &error) == 0);
    n = router_tables_route(t, STANZA_MESSAGE, sl("x@elsewhere.net/r"), &d);
    CHECK(n == 1 && d[0].owner == &s2s && d[0].n_conns == 0);
    n = router_tables_route(t, STANZA_MESSAGE, sl("nobody@example.org"), &d);
    CHECK(n == 1 && d[0].owner == &a);

    CHECK(!router_route_del(t, &a, sl("conference.example.org")));
    CHECK(router_route_del(t, &a, sl("example.org")));
    CHECK(!router_route_del(t, &a, sl("example.org")));
    CHECK(router_route_lookup(t, sl("example.org")) == &b);
    CHECK(router_route_del(t, &b, sl("example.org")));
    CHECK(router_route_lookup(t, sl("example.org")) == NULL);
    n = router_tables_route(t, STANZA_MESSAGE, sl("nobody@example.org"), &d);
    CHECK(n == 1 && d[0].owner == &s2s);

    /* Per-owner cap. */
    {
        char name[32];
        int refused = 0;
        for (int i = 0; i < ROUTER_MAX_ROUTES_PER_OWNER + 5; i++) {
            snprintf(name, sizeof(name), "svc%d.example", i);
            if (router_route_add(t, &a, sl(name), &error) < 0)
                refused++;
        }
        CHECK(refused == 5);
        CHECK(a.n_routes == ROUTER_MAX_ROUTES_PER_OWNER);
    }

    router_owner_drop(t, &a, NULL, NULL);
    router_owner_drop(t, &b, NULL, NULL);
    router_owner_drop(t, &s2s, NULL, NULL);
    {
        struct router_tables_counts c;
        router_tables_counts(t, &c);
        CHECK(c.routes == 0);
    }
    router_tables_free(&t);
    CHECK(t == NULL);
}

static void test_sessions(void)
{
    struct router_tables *t = router_tables_new();
    struct router_owner a, b;
    const struct router_session *s;
    const struct router_delivery *d;
    struct router_tables_counts c;
    size_t n;

    router_owner_init(&a, 1);
    router_owner_init(&b, 2);

    /* Only full addresses with all three parts are sessions. */
    CHECK(session_add(t, &a, "alice@example.org", 1, 0) == -1);
    CHECK(session_add(t, &a, "example.org/res", 1, 0) == -1);
    CHECK(session_add(t, &a, "@example.org/res", 1, 0) == -1);
    CHECK(session_add(t, &a, "alice@/res", 1, 0) == -1);
    CHECK(session_add(t, &a, "alice@example.org/", 1, 0) == -1);

    CHECK(session_add(t, &a, "alice@example.org/phone", 11, 5) == 0);
    s = router_session_lookup(t, sl("alice@example.org/phone"));
    CHECK(s != NULL && s->owner == &a && s->conn == 11 && s->priority == 5);

    /* Update in place, with show and status. */
    {
        struct router_session_info info = {.address = sl("alice@example.org/phone"),
                                           .conn = 12,
                                           .priority = -1,
                                           .show = sl("away"),
                                           .status = sl("lunch")};
        const char *error;
        CHECK(router_session_add(t, &a, &info, &error) == 0);
    }
    s = router_session_lookup(t, sl("alice@example.org/phone"));
    CHECK(s != NULL && s->conn == 12 && s->priority == -1);
    CHECK_STR(s->show, "away");
    CHECK(s->status_len == 5 && memcmp(s->status, "lunch", 5) == 0);
    CHECK(a.n_sessions == 1);

    /* A long status is cut at a character boundary. */
    {
        char *status = malloc(ROUTER_MAX_STATUS + 10);
        struct router_session_info info = {.address = sl("alice@example.org/phone"), .conn = 12};
        const char *error;

        memset(status, 'x', ROUTER_MAX_STATUS + 10);
        /* A two-byte character straddling the limit. */
        status[ROUTER_MAX_STATUS - 1] = (char)0xc3;
        status[ROUTER_MAX_STATUS] = (char)0xa9;
        info.status = (struct ipc_slice){(const uint8_t *)status, ROUTER_MAX_STATUS + 10};
        CHECK(router_session_add(t, &a, &info, &error) == 0);
        s = router_session_lookup(t, sl("alice@example.org/phone"));
        CHECK(s->status_len == ROUTER_MAX_STATUS - 1);
        /* And an empty one clears it. */
        info.status = sl("");
        CHECK(router_session_add(t, &a, &info, &error) == 0);
        CHECK(s->status == NULL && s->status_len == 0 && s->priority == 0);
        free(status);
    }

    /* Full address: that session, with its connection. */
    n = router_tables_route(t, STANZA_MESSAGE, sl("alice@example.org/phone"), &d);
    CHECK(n == 1 && d[0].owner == &a && d[0].n_conns == 1 && d[0].conns[0] == 12);
    /* An unknown resource has no route here (no domain route yet). */
    CHECK(router_tables_route(t, STANZA_MESSAGE, sl("alice@example.org/tablet"), &d) == 0);

    /* Takeover: b announces the same address. */
    CHECK(session_add(t, &b, "alice@example.org/phone", 21, 1) == 0);
    s = router_session_lookup(t, sl("alice@example.org/phone"));
    CHECK(s->owner == &b && s->conn == 21);
    CHECK(a.n_sessions == 0 && b.n_sessions == 1);
    /* The previous holder's late delete does not remove it. */
    CHECK(!router_session_del(t, &a, sl("alice@example.org/phone")));
    CHECK(router_session_lookup(t, sl("alice@example.org/phone")) != NULL);
    CHECK(router_session_del(t, &b, sl("alice@example.org/phone")));
    CHECK(router_session_lookup(t, sl("alice@example.org/phone")) == NULL);
    CHECK(!router_session_del(t, &b, sl("alice@example.org/phone")));
    router_tables_counts(t, &c);
    CHECK(c.sessions == 0 && c.accounts == 0);
    CHECK(b.n_sessions == 0);

    /* Iteration sees every session once. */
    CHECK(session_add(t, &a, "u1@example.org/r", 1, 0) == 0);
    CHECK(session_add(t, &a, "u2@example.org/r", 2, 0) == 0);
    CHECK(session_add(t, &b, "u2@example.org/s", 3, 0) == 0);
    {
        size_t pos = 0, seen = 0;
        uint64_t conns = 0;
        while ((s = router_session_next(t, &pos)) != NULL) {
            seen++;
            conns += s->conn;
        }
        CHECK(seen == 3 && conns == 6);
    }
    router_tables_counts(t, &c);
    CHECK(c.sessions == 3 && c.accounts == 2);

    /* Per-account cap. */
    {
        char name[64];
        int refused = 0;
        for (int i = 0; i < ROUTER_MAX_SESSIONS_PER_ACCOUNT + 3; i++) {
            snprintf(name, sizeof(name), "many@example.org/r%d", i);
            if (session_add(t, &a, name, (uint64_t)i, 0) < 0)
                refused++;
        }
        CHECK(refused == 3);
        /* Bare routing to all of them still fits the result arrays. */
        n = router_tables_route(t, STANZA_PRESENCE, sl("many@example.org"), &d);
        CHECK(n == 1 && d[0].n_conns == ROUTER_MAX_SESSIONS_PER_ACCOUNT);
    }

    router_owner_drop(t, &a, NULL, NULL);
    router_owner_drop(t, &b, NULL, NULL);
    router_tables_counts(t, &c);
    CHECK(c.sessions == 0 && c.accounts == 0);
    router_tables_free(&t);
}

static void test_bare_routing(void)
{
    struct router_tables *t = router_tables_new();
    struct router_owner xmpp, sip, irc;
    const struct router_delivery *d, *dx, *ds;
    const char *error;
    size_t n;

    router_owner_init(&xmpp, 1);
    router_owner_init(&sip, 2);
    router_owner_init(&irc, 3);
    CHECK(router_route_add(t, &xmpp, sl("example.org"), &error) == 0);

    CHECK(session_add(t, &xmpp, "bob@example.org/laptop", 101, 5) == 0);
    CHECK(session_add(t, &xmpp, "bob@example.org/phone", 102, 10) == 0);
    CHECK(session_add(t, &sip, "bob@example.org/sip-1", 201, 10) == 0);
    CHECK(session_add(t, &irc, "bob@example.org/irc", 301, -1) == 0);

    /* Messages: the highest priority (10) only, one delivery per owner. */
    n = router_tables_route(t, STANZA_MESSAGE, sl("bob@example.org"), &d);
    CHECK(n == 2);
    dx = delivery_for(d, n, &xmpp);
    ds = delivery_for(d, n, &sip);
    CHECK(dx != NULL && dx->n_conns == 1 && has_conn(dx, 102));
    CHECK(ds != NULL && ds->n_conns == 1 && has_conn(ds, 201));
    CHECK(delivery_for(d, n, &irc) == NULL);

    /* Other kinds: every session, grouped per owner. */
    n = router_tables_route(t, STANZA_PRESENCE, sl("bob@example.org"), &d);
    CHECK(n == 3);
    dx = delivery_for(d, n, &xmpp);
    CHECK(dx != NULL && dx->n_conns == 2 && has_conn(dx, 101) && has_conn(dx, 102));
    ds = delivery_for(d, n, &sip);
    CHECK(ds != NULL && ds->n_conns == 1 && has_conn(ds, 201));
    CHECK(delivery_for(d, n, &irc) != NULL && has_conn(delivery_for(d, n, &irc), 301));

    /* Priority 0 is available. */
    CHECK(session_add(t, &xmpp, "bob@example.org/phone", 102, 0) == 0);
    CHECK(session_add(t, &sip, "bob@example.org/sip-1", 201, 0) == 0);
    CHECK(session_add(t, &xmpp, "bob@example.org/laptop", 101, -5) == 0);
    n = router_tables_route(t, STANZA_MESSAGE, sl("bob@example.org"), &d);
    CHECK(n == 2);
    CHECK(has_conn(delivery_for(d, n, &xmpp), 102) && !has_conn(delivery_for(d, n, &xmpp), 101));

    /* Only negative priorities: messages go to the domain's owner without
     * connections (offline storage), other kinds still reach sessions. */
    CHECK(session_add(t, &xmpp, "bob@example.org/phone", 102, -1) == 0);
    CHECK(session_add(t, &sip, "bob@example.org/sip-1", 201, -2) == 0);
    n = router_tables_route(t, STANZA_MESSAGE, sl("bob@example.org"), &d);
    CHECK(n == 1 && d[0].owner == &xmpp && d[0].n_conns == 0);
    n = router_tables_route(t, STANZA_PRESENCE, sl("bob@example.org"), &d);
    CHECK(n == 3);
    /* Without a domain route, nothing serves it. */
    CHECK(router_route_del(t, &xmpp, sl("example.org")));
    CHECK(router_tables_route(t, STANZA_MESSAGE, sl("bob@example.org"), &d) == 0);

    router_owner_drop(t, &xmpp, NULL, NULL);
    router_owner_drop(t, &sip, NULL, NULL);
    router_owner_drop(t, &irc, NULL, NULL);
    router_tables_free(&t);
}

static void test_filters(void)
{
    CHECK(router_filter_valid(sl("a/b/c")));
    CHECK(router_filter_valid(sl("#")));
    CHECK(router_filter_valid(sl("+")));
    CHECK(router_filter_valid(sl("a/+/c/#")));
    CHECK(router_filter_valid(sl("/+/")));
    CHECK(router_filter_valid(sl("a//b")));
    CHECK(!router_filter_valid(sl("")));
    CHECK(!router_filter_valid(sl("a/#/b")));
    CHECK(!router_filter_valid(sl("a/b#")));
    CHECK(!router_filter_valid(sl("a+/b")));
    CHECK(!router_filter_valid(sl("a/++")));
    CHECK(!router_filter_valid(sl("##")));
    CHECK(router_topic_valid(sl("a/b")));
    CHECK(router_topic_valid(sl("/")));
    CHECK(!router_topic_valid(sl("")));
    CHECK(!router_topic_valid(sl("a/+")));
    CHECK(!router_topic_valid(sl("a/#")));
    {
        /* The level cap. */
        char deep[ROUTER_MAX_TOPIC_LEVELS * 2 + 2];
        size_t i;
        for (i = 0; i < ROUTER_MAX_TOPIC_LEVELS; i++) {
            deep[2 * i] = 'x';
            deep[2 * i + 1] = '/';
        }
        deep[2 * i - 1] = '\0';
        CHECK(router_filter_valid(sl(deep)));
        deep[2 * i - 1] = '/';
        deep[2 * i] = 'x';
        deep[2 * i + 1] = '\0';
        CHECK(!router_filter_valid(sl(deep)));
    }
}

static void test_interests(void)
{
    struct router_tables *t = router_tables_new();
    struct router_owner a, b, c, sys;
    struct router_owner *const *m;
    struct router_tables_counts counts;
    const char *error;
    size_t n;

    router_owner_init(&a, 1);
    router_owner_init(&b, 2);
    router_owner_init(&c, 3);
    router_owner_init(&sys, 4);

    CHECK(router_interest_add(t, &a, sl("a/+/c/#"), &error) == 0);
    CHECK(router_interest_add(t, &a, sl("a/b/#/c"), &error) < 0);
    CHECK(router_interest_add(t, &a, sl(""), &error) < 0);
    router_owner_drop(t, &a, NULL, NULL);
    router_tables_counts(t, &counts);
    CHECK(counts.interests == 0 && counts.interest_nodes == 0);

    CHECK(router_interest_add(t, &a, sl("sport/tennis/+"), &error) == 0);
    CHECK(router_interest_add(t, &a, sl("sport/#"), &error) == 0);
    CHECK(router_interest_add(t, &a, sl("sport/#"), &error) == 0); /* set semantics */
    CHECK(router_interest_add(t, &b, sl("sport/tennis/player1"), &error) == 0);
    CHECK(router_interest_add(t, &c, sl("#"), &error) == 0);
    CHECK(router_interest_add(t, &c, sl("+/+"), &error) == 0);
    CHECK(router_interest_add(t, &sys, sl("$SYS/#"), &error) == 0);
    CHECK(a.n_interests == 2);

    /* a matches by two filters and still appears once. */
    n = router_interest_match(t, sl("sport/tennis/player1"), &m);
    CHECK(n == 3 && matched(m, n, &a) && matched(m, n, &b) && matched(m, n, &c));

    /* '#' includes the parent level: "sport/#" matches "sport". */
    n = router_interest_match(t, sl("sport"), &m);
    CHECK(n == 2 && matched(m, n, &a) && matched(m, n, &c));

    /* '+' is exactly one level, possibly empty. */
    n = router_interest_match(t, sl("sport/tennis"), &m);
    CHECK(n == 2 && matched(m, n, &a) && matched(m, n, &c)); /* "+/+" and "#" for c */
    n = router_interest_match(t, sl("sport/tennis/"), &m);
    CHECK(n == 2 && matched(m, n, &a) && !matched(m, n, &b));
    n = router_interest_match(t, sl("weather/"), &m);
    CHECK(n == 1 && matched(m, n, &c));
    n = router_interest_match(t, sl("sport/tennis/player1/ranking"), &m);
    CHECK(n == 2 && matched(m, n, &a) && !matched(m, n, &b));
    n = router_interest_match(t, sl("sports"), &m);
    CHECK(n == 1 && matched(m, n, &c));

    /* '$' topics: not matched by filters that start with a wildcard. */
    n = router_interest_match(t, sl("$SYS/broker/load"), &m);
    CHECK(n == 1 && matched(m, n, &sys));
    n = router_interest_match(t, sl("$SYS"), &m);
    CHECK(n == 1 && matched(m, n, &sys));
    n = router_interest_match(t, sl("$x/y"), &m);
    CHECK(n == 0);
    /* But a '$' in a later level is an ordinary character. */
    n = router_interest_match(t, sl("sport/$x"), &m);
    CHECK(n == 2 && matched(m, n, &a) && matched(m, n, &c));

    /* Topic names with wildcards match nothing. */
    CHECK(router_interest_match(t, sl("sport/#"), &m) == 0);

    /* Deleting is per owner and per exact filter. */
    CHECK(!router_interest_del(t, &b, sl("sport/#")));
    CHECK(!router_interest_del(t, &a, sl("sport/tennis")));
    CHECK(router_interest_del(t, &a, sl("sport/#")));
    CHECK(!router_interest_del(t, &a, sl("sport/#")));
    n = router_interest_match(t, sl("sport/golf"), &m);
    CHECK(n == 1 && matched(m, n, &c));
    n = router_interest_match(t, sl("sport/tennis/x"), &m);
    CHECK(n == 2 && matched(m, n, &a) && matched(m, n, &c));

    /* Dropping removes the owner's filters and prunes the trie. */
    router_owner_drop(t, &c, NULL, NULL);
    n = router_interest_match(t, sl("weather"), &m);
    CHECK(n == 0);
    router_owner_drop(t, &a, NULL, NULL);
    router_owner_drop(t, &b, NULL, NULL);
    router_owner_drop(t, &sys, NULL, NULL);
    router_tables_counts(t, &counts);
    CHECK(counts.interests == 0 && counts.interest_nodes == 0);

    /* Many owners on one filter: every one is found. */
    {
        struct router_owner many[40];
        for (int i = 0; i < 40; i++) {
            router_owner_init(&many[i], (uint32_t)(10 + i));
            CHECK(router_interest_add(t, &many[i], sl(i % 2 ? "x/+" : "x/#"), &error) == 0);
        }
        n = router_interest_match(t, sl("x/y"), &m);
        CHECK(n == 40);
        for (int i = 0; i < 40; i++)
            router_owner_drop(t, &many[i], NULL, NULL);
    }
    router_tables_counts(t, &counts);
    CHECK(counts.interests == 0 && counts.interest_nodes == 0);
    router_tables_free(&t);
}

struct dropped {
    char addresses[8][64];
    int n;
};

static void on_dropped(void *ctx, const struct router_session *s)
{
    struct dropped *d = ctx;
    if (d->n < 8)
        snprintf(d->addresses[d->n++], sizeof(d->addresses[0]), "%s", s->address);
}

static bool dropped_has(const struct dropped *d, const char *address)
{
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->addresses[i], address) == 0)
            return true;
    return false;
}

static void test_owner_drop(void)
{
    struct router_tables *t = router_tables_new();
    struct router_owner a, b;
    struct router_tables_counts c;
    struct dropped dropped = {.n = 0};
    const struct router_delivery *d;
    struct router_owner *const *m;
    const char *error;
    size_t n;

    router_owner_init(&a, 1);
    router_owner_init(&b, 2);
    CHECK(router_route_add(t, &a, sl("example.org"), &error) == 0);
    CHECK(router_route_add(t, &b, sl("example.org"), &error) == 0);
    CHECK(router_interest_add(t, &a, sl("t/#"), &error) == 0);
    CHECK(router_interest_add(t, &b, sl("t/x"), &error) == 0);
    CHECK(session_add(t, &a, "u@example.org/1", 1, 0) == 0);
    CHECK(session_add(t, &a, "u@example.org/2", 2, 0) == 0);
    CHECK(session_add(t, &a, "v@example.org/1", 3, 0) == 0);
    CHECK(session_add(t, &b, "u@example.org/3", 4, 0) == 0);

    router_owner_drop(t, &a, on_dropped, &dropped);
    CHECK(dropped.n == 3);
    CHECK(dropped_has(&dropped, "u@example.org/1"));
    CHECK(dropped_has(&dropped, "u@example.org/2"));
    CHECK(dropped_has(&dropped, "v@example.org/1"));
    CHECK(a.n_routes == 0 && a.n_sessions == 0 && a.n_interests == 0);

    /* b remains complete. */
    CHECK(router_route_lookup(t, sl("example.org")) == &b);
    n = router_tables_route(t, STANZA_MESSAGE, sl("u@example.org"), &d);
    CHECK(n == 1 && d[0].owner == &b && d[0].n_conns == 1 && d[0].conns[0] == 4);
    n = router_tables_route(t, STANZA_MESSAGE, sl("v@example.org"), &d);
    CHECK(n == 1 && d[0].owner == &b && d[0].n_conns == 0);
    n = router_interest_match(t, sl("t/x"), &m);
    CHECK(n == 1 && m[0] == &b);
    router_tables_counts(t, &c);
    CHECK(c.routes == 1 && c.sessions == 1 && c.accounts == 1 && c.interests == 1);

    /* Dropping twice is harmless; then everything is gone. */
    router_owner_drop(t, &a, on_dropped, &dropped);
    CHECK(dropped.n == 3);
    router_owner_drop(t, &b, on_dropped, &dropped);
    CHECK(dropped.n == 4 && dropped_has(&dropped, "u@example.org/3"));
    router_tables_counts(t, &c);
    CHECK(c.routes == 0 && c.sessions == 0 && c.accounts == 0 && c.interests == 0 &&
          c.interest_nodes == 0);
    CHECK(router_tables_route(t, STANZA_MESSAGE, sl("u@example.org"), &d) == 0);
    router_tables_free(&t);
}

int main(void)
{
    test_hashmap();
    test_address_split();
    test_routes();
    test_sessions();
    test_bare_routing();
    test_filters();
    test_interests();
    test_owner_drop();
    return check_result("test_router_tables");
}
