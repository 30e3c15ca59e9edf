/*
 * The broker's tables: which peer serves an address (routes), where each
 * online account's sessions live (sessions, indexed by full and by bare
 * address), and which peer wants which publish topics (interests). They are
 * plain data structures without I/O, so they are unit-tested on their own;
 * router_main.c feeds them from the peers' announcements and asks them where
 * each stanza goes.
 *
 * The tables are soft state: workers own their sessions and re-announce
 * everything after a broker restart. Every entry belongs to one owner (a
 * peer), which keeps lists of its entries so that dropping a peer costs only
 * its own entries. Addresses and topics are compared as bytes: workers
 * normalize them before announcing.
 */
#ifndef SB_ROUTER_TABLES_H
#define SB_ROUTER_TABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shared/hashmap.h"
#include "shared/ipc.h"

/* Caps. Announcements beyond them are refused (and the broker counts them),
 * so a broken or hostile worker cannot grow the broker without bound. */
#define ROUTER_MAX_ROUTES_PER_OWNER 4096
#define ROUTER_MAX_SESSIONS 1000000
/* Resources of one account (RFC 6120 leaves the number to the server). */
#define ROUTER_MAX_SESSIONS_PER_ACCOUNT 1024
#define ROUTER_MAX_INTERESTS 1000000
/* Bytes of a topic or filter (the IPC codec's bound for TOPIC). */
#define ROUTER_MAX_TOPIC 65535
/* Levels of one topic filter; EMQX uses the same default. */
#define ROUTER_MAX_TOPIC_LEVELS 128
/* Nodes of the interest trie, over all filters. */
#define ROUTER_MAX_INTEREST_NODES 4000000
/* Bytes of presence status kept per session; the broker keeps it only for
 * diagnostics, so a longer one is cut (at a UTF-8 character boundary). */
#define ROUTER_MAX_STATUS 1024
#define ROUTER_MAX_SHOW 16
/* The route used when no other matches (s2s). */
#define ROUTER_FALLBACK_ROUTE "*"

struct router_account;

/* An intrusive circular list; private to router_tables.c. */
struct router_list {
    struct router_list *prev, *next;
};

/*
 * A peer as the tables see it. The caller embeds it in its own peer struct,
 * calls router_owner_init() once, and must call router_owner_drop() before
 * freeing it. The fields below id are private.
 */
struct router_owner {
    uint32_t id; /* for the caller; the tables do not interpret it */

    struct router_list routes, sessions, interests;
    uint32_t n_routes, n_sessions, n_interests;
    uint64_t mark; /* generation of the last lookup that selected it */
    uint32_t slot; /* its index in that lookup's results */
};

/* Where one stanza goes: a peer and, when the address named sessions, the
 * connections inside it (none: the owner decides). */
struct router_delivery {
    struct router_owner *owner;
    const uint64_t *conns;
    size_t n_conns;
};

/* A session; the fields are read-only to callers. */
struct router_session {
    struct router_owner *owner;
    uint64_t conn;
    int32_t priority;
    uint8_t show_len;
    char show[ROUTER_MAX_SHOW + 1];
    uint8_t *status; /* NULL when empty */
    uint32_t status_len;

    /* Private. */
    struct router_list in_owner, in_account;
    struct router_account *account;
    uint32_t address_len;
    char address[]; /* "local@domain/resource", NUL-terminated */
};

/* What SESSION_ADD announced. */
struct router_session_info {
    struct ipc_slice address; /* full address: local@domain/resource */
    uint64_t conn;
    int32_t priority;
    struct ipc_slice show, status; /* may be empty */
};

/* The parts of "local@domain/resource": the resource is what follows the
 * first '/', the local part what precedes the first '@' before that '/'.
 * bare is local@domain (or just the domain). */
struct router_address {
    struct ipc_slice local, domain, resource, bare;
    bool has_local, has_resource;
};

void router_address_split(struct ipc_slice address, struct router_address *parts_r);

/* Topic names (publish) have no wildcards; filters (interests) may have '+'
 * alone in a level and '#' alone in the last level. Both are non-empty. */
bool router_topic_valid(struct ipc_slice topic);
bool router_filter_valid(struct ipc_slice filter);

void router_owner_init(struct router_owner *owner, uint32_t id);

struct router_tables *router_tables_new(void);
/* Every owner must have been dropped first. */
void router_tables_free(struct router_tables **tables);

/* Routes. An address is served by the owners that announced it, in
 * announce order; lookups return the first. Adding a route the owner has is
 * a no-op. */
int router_route_add(struct router_tables *t, struct router_owner *owner, struct ipc_slice address,
                     const char **error_r);
/* False when the owner did not have the route. */
bool router_route_del(struct router_tables *t, struct router_owner *owner,
                      struct ipc_slice address);
/* The owner serving exactly this address, or NULL. */
struct router_owner *router_route_lookup(struct router_tables *t, struct ipc_slice address);

/* Sessions. Adding an existing address updates it; when another owner held
 * it, the new owner takes it over (the client moved, or the older worker
 * has not told us yet that the session is gone). */
int router_session_add(struct router_tables *t, struct router_owner *owner,
                       const struct router_session_info *info, const char **error_r);
/* Removes the session only when this owner holds it, so that a late
 * SESSION_DEL from the previous holder does not remove a taken-over
 * session. False when nothing was removed. */
bool router_session_del(struct router_tables *t, struct router_owner *owner,
                        struct ipc_slice address);
const struct router_session *router_session_lookup(struct router_tables *t,
                                                   struct ipc_slice address);
/* Iterates every session in no order: set *pos to 0 first; NULL at the end.
 * The tables must not change during the walk. */
const struct router_session *router_session_next(struct router_tables *t, size_t *pos);

/* Interests: topic filters in MQTT syntax. Adding a filter the owner has is
 * a no-op (set semantics: the worker counts its own subscribers). */
int router_interest_add(struct router_tables *t, struct router_owner *owner,
                        struct ipc_slice filter, const char **error_r);
bool router_interest_del(struct router_tables *t, struct router_owner *owner,
                         struct ipc_slice filter);
/* The owners with a filter matching the topic name, each once, in no
 * particular order. Filters whose first level is a wildcard do not match
 * topics starting with '$' (MQTT 3.1.1 §4.7.2). The array stays valid until
 * the next lookup on these tables. */
size_t router_interest_match(struct router_tables *t, struct ipc_slice topic,
                             struct router_owner *const **owners_r);

/*
 * Where a stanza of kind skind (enum stanza_kind) addressed to `to` goes:
 *  1. a full address with a session: that session;
 *  2. a bare address with sessions: for messages, the sessions with the
 *     highest priority if it is >= 0 (RFC 6121 §8.5.2.1); for other kinds,
 *     all sessions; one delivery per owner with all its connections;
 *  3. otherwise the owner of the route for the whole address (a service such
 *     as "conference.example.org"), else for its domain part, else "*",
 *     without connections: that worker decides (offline storage, bounce).
 * Returns the number of deliveries, 0 when nothing serves the address. The
 * array stays valid until the next lookup on these tables.
 */
size_t router_tables_route(struct router_tables *t, uint8_t skind, struct ipc_slice to,
                           const struct router_delivery **deliveries_r);

/* Removes every route, session and interest of the owner. session_fn, when
 * not NULL, sees each of its sessions just before it is removed. */
typedef void router_session_fn(void *ctx, const struct router_session *session);
void router_owner_drop(struct router_tables *t, struct router_owner *owner,
                       router_session_fn *session_fn, void *ctx);

struct router_tables_counts {
    size_t routes; /* (address, owner) pairs */
    size_t sessions;
    size_t accounts;  /* bare addresses with sessions */
    size_t interests; /* (filter, owner) pairs */
    size_t interest_nodes;
};
void router_tables_counts(const struct router_tables *t, struct router_tables_counts *counts_r);

#endif
