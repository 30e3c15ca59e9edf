/*
 * Routing: where each stanza, request and response from a peer goes, and
 * the broker's own requests.
 *
 * A delivery copies the received message body as it is (no re-encoding)
 * and appends WORKER, the sender's id, and the TARGET connection ids the
 * tables chose. Nothing here allocates per message: bodies are appended to
 * the destination peers' reusable writers.
 */
#include "broker/router.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"

#define BIT(tag) (UINT64_C(1) << (tag))

/* Room left in a response for its REASON when listing rows. */
#define RESPONSE_SLACK 4096

static bool deliver(struct router *r, struct router_peer *to, const struct ipc_msg *m,
                    uint32_t sender, const uint64_t *conns, size_t n_conns)
{
    struct ipc_writer *w = router_peer_begin(r, to, m->type);

    ipc_put_raw(w, m->body, m->body_len);
    ipc_put_u32(w, IPC_F_WORKER, sender);
    for (size_t i = 0; i < n_conns; i++)
        ipc_put_u64(w, IPC_F_TARGET, conns[i]);
    return router_peer_end(r, to);
}

static void dropped(struct router *r, struct router_peer *from, const char *why)
{
    r->counters.stanzas_dropped++;
    if (router_ratelimit(r, &r->log_dropped))
        log_debug("peer %u (%s): stanza dropped: %s", from->owner.id, from->kind, why);
}

/* No route: tell the sender, unless the stanza is an error already (two
 * servers must not bounce errors back and forth). */
static void bounce(struct router *r, struct router_peer *from, const struct ipc_msg *m)
{
    struct ipc_writer *w;

    if (ipc_slice_eq(m->type_str, "error")) {
        dropped(r, from, "error stanza without a route");
        return;
    }
    w = router_peer_begin(r, from, IPC_STANZA);
    ipc_put_u8(w, IPC_F_SKIND, m->skind);
    ipc_put_str(w, IPC_F_TYPE, "error");
    if (m->present & BIT(IPC_F_ID))
        ipc_put_slice(w, IPC_F_ID, m->id);
    ipc_put_slice(w, IPC_F_FROM, m->to);
    if (m->present & BIT(IPC_F_FROM))
        ipc_put_slice(w, IPC_F_TO, m->from);
    ipc_put_str(w, IPC_F_REASON, "service-unavailable");
    if (m->present & BIT(IPC_F_CONN))
        ipc_put_u64(w, IPC_F_TARGET, m->conn);
    if (router_peer_end(r, from))
        r->counters.stanzas_bounced++;
}

static void publish(struct router *r, struct router_peer *from, const struct ipc_msg *m)
{
    struct router_owner *const *owners;
    size_t n, delivered = 0;

    if (!(m->present & BIT(IPC_F_TOPIC)) || !router_topic_valid(m->topic)) {
        dropped(r, from, "publish without a valid topic");
        return;
    }
    n = router_interest_match(r->tables, m->topic, &owners);
    for (size_t i = 0; i < n; i++) {
        if (owners[i] == &from->owner)
            continue;
        delivered += deliver(r, router_peer_of(owners[i]), m, from->owner.id, NULL, 0);
    }
    if (delivered > 0)
        r->counters.stanzas_routed++;
    else
        r->counters.publishes_unmatched++;
}

void router_stanza(struct router *r, struct router_peer *from, const struct ipc_msg *m)
{
    const struct router_delivery *d;
    size_t n, delivered = 0;

    if (m->skind == STANZA_PUBLISH) {
        publish(r, from, m);
        return;
    }
    if (!(m->present & BIT(IPC_F_TO)) || m->to.len == 0) {
        dropped(r, from, "stanza without TO");
        return;
    }
    n = router_tables_route(r->tables, m->skind, m->to, &d);
    if (n == 0) {
        bounce(r, from, m);
        return;
    }
    for (size_t i = 0; i < n; i++)
        delivered +=
            deliver(r, router_peer_of(d[i].owner), m, from->owner.id, d[i].conns, d[i].n_conns);
    if (delivered > 0)
        r->counters.stanzas_routed++;
    else
        dropped(r, from, "too large to forward");
}

/* ---- requests ---- */

static struct ipc_writer *response_begin(struct router *r, struct router_peer *to, uint32_t req_id,
                                         enum ipc_code code)
{
    struct ipc_writer *w = router_peer_begin(r, to, IPC_RESPONSE);

    ipc_put_u32(w, IPC_F_WORKER, to->owner.id);
    ipc_put_u32(w, IPC_F_REQ_ID, req_id);
    ipc_put_u32(w, IPC_F_CODE, code);
    return w;
}

/* Bytes in the open message so far. */
static size_t open_len(const struct ipc_writer *w)
{
    return w->msg_start ? w->len - w->msg_start : 0;
}

static void put_argf(struct ipc_writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put_argf(struct ipc_writer *w, const char *fmt, ...)
{
    char buf[IPC_MAX_ADDRESS + 128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    ipc_put_bytes(w, IPC_F_ARG, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static void op_stats(struct router *r, struct router_peer *from, uint32_t req_id)
{
    struct ipc_writer *w = response_begin(r, from, req_id, IPC_CODE_OK);
    struct router_tables_counts c;

    router_tables_counts(r->tables, &c);
#define ROUTER_COUNTER_ARG(name) put_argf(w, #name "=%llu", (unsigned long long)r->counters.name);
    ROUTER_COUNTERS(ROUTER_COUNTER_ARG)
#undef ROUTER_COUNTER_ARG
    put_argf(w, "peers=%zu", r->n_peers);
    put_argf(w, "routes=%zu", c.routes);
    put_argf(w, "sessions=%zu", c.sessions);
    put_argf(w, "accounts=%zu", c.accounts);
    put_argf(w, "interests=%zu", c.interests);
    router_peer_end(r, from);
}

static int session_cmp(const void *a, const void *b)
{
    const struct router_session *x = *(const struct router_session *const *)a;
    const struct router_session *y = *(const struct router_session *const *)b;
    size_t n = x->address_len < y->address_len ? x->address_len : y->address_len;
    int c = memcmp(x->address, y->address, n);

    if (c != 0)
        return c;
    return x->address_len < y->address_len ? -1 : x->address_len > y->address_len;
}

/* One row per session, sorted by address; a diagnostic, so it may sort the
 * whole table. Rows that do not fit one message are left out and said so. */
static void op_sessions(struct router *r, struct router_peer *from, uint32_t req_id)
{
    struct router_tables_counts c;
    const struct router_session **all, *s;
    struct ipc_writer *w;
    size_t n = 0, pos = 0, shown = 0;

    router_tables_counts(r->tables, &c);
    all = malloc((c.sessions ? c.sessions : 1) * sizeof(*all));
    if (all == NULL) {
        w = response_begin(r, from, req_id, IPC_CODE_INTERNAL);
        ipc_put_str(w, IPC_F_REASON, "out of memory");
        router_peer_end(r, from);
        return;
    }
    while ((s = router_session_next(r->tables, &pos)) != NULL && n < c.sessions)
        all[n++] = s;
    qsort(all, n, sizeof(*all), session_cmp);
    w = response_begin(r, from, req_id, IPC_CODE_OK);
    for (; shown < n; shown++) {
        s = all[shown];
        if (open_len(w) + s->address_len + 128 > IPC_MAX_MESSAGE - RESPONSE_SLACK)
            break;
        put_argf(w, "%s %s %llu %d", s->address, router_peer_of(s->owner)->kind,
                 (unsigned long long)s->conn, (int)s->priority);
    }
    if (shown < n) {
        char reason[96];
        snprintf(reason, sizeof(reason), "truncated: %zu of %zu sessions", shown, n);
        ipc_put_str(w, IPC_F_REASON, reason);
    }
    router_peer_end(r, from);
    free(all);
}

static int peer_cmp(const void *a, const void *b)
{
    uint32_t x = (*(const struct router_peer *const *)a)->owner.id;
    uint32_t y = (*(const struct router_peer *const *)b)->owner.id;
    return x < y ? -1 : x > y;
}

static void op_peers(struct router *r, struct router_peer *from, uint32_t req_id)
{
    struct router_peer *list[ROUTER_MAX_PEERS];
    struct ipc_writer *w;
    size_t n = 0;

    for (struct router_peer *p = r->peers; p != NULL && n < ROUTER_MAX_PEERS; p = p->next)
        list[n++] = p;
    qsort(list, n, sizeof(list[0]), peer_cmp);
    w = response_begin(r, from, req_id, IPC_CODE_OK);
    for (size_t i = 0; i < n; i++)
        put_argf(w, "%u %s %u %lld", list[i]->owner.id, list[i]->kind, list[i]->pid,
                 (long long)((r->now_ms - list[i]->hello_ms) / 1000));
    router_peer_end(r, from);
}

static void broker_request(struct router *r, struct router_peer *from, const struct ipc_msg *m)
{
    if (ipc_slice_eq(m->op, "stats")) {
        op_stats(r, from, m->req_id);
    } else if (ipc_slice_eq(m->op, "sessions")) {
        op_sessions(r, from, m->req_id);
    } else if (ipc_slice_eq(m->op, "peers")) {
        op_peers(r, from, m->req_id);
    } else {
        char op[IPC_MAX_SHORT / 4], reason[IPC_MAX_SHORT];
        struct ipc_writer *w = response_begin(r, from, m->req_id, IPC_CODE_BAD_REQUEST);

        log_sample(op, sizeof(op), m->op.ptr, m->op.len);
        snprintf(reason, sizeof(reason), "unknown broker op '%s'", op);
        ipc_put_str(w, IPC_F_REASON, reason);
        router_peer_end(r, from);
    }
}

void router_request(struct router *r, struct router_peer *from, const struct ipc_msg *m)
{
    struct router_owner *o;

    if (ipc_slice_eq(m->to, "broker")) {
        broker_request(r, from, m);
        return;
    }
    o = router_route_lookup(r->tables, m->to);
    if (o != NULL) {
        if (deliver(r, router_peer_of(o), m, from->owner.id, NULL, 0))
            r->counters.requests_routed++;
        return;
    }
    {
        char service[128], reason[160];
        struct ipc_writer *w = response_begin(r, from, m->req_id, IPC_CODE_UNAVAILABLE);

        log_sample(service, sizeof(service), m->to.ptr, m->to.len < 64 ? m->to.len : 64);
        snprintf(reason, sizeof(reason), "no service '%s'", service);
        ipc_put_str(w, IPC_F_REASON, reason);
        router_peer_end(r, from);
        r->counters.requests_unavailable++;
    }
}

void router_response(struct router *r, struct router_peer *from, const struct ipc_msg *m)
{
    struct router_peer *to = router_peer_by_id(r, m->worker);
    struct ipc_writer *w;

    if (to == NULL) {
        /* The requester died or said HELLO again since. */
        r->counters.responses_dropped++;
        return;
    }
    w = router_peer_begin(r, to, IPC_RESPONSE);
    ipc_put_raw(w, m->body, m->body_len);
    if (router_peer_end(r, to))
        r->counters.responses_routed++;
}
