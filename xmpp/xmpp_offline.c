/*
 * Offline messages (RFC 6121 §8.5.2.2.1, XEP-0160) of the c2s worker, kept
 * by the store (offline.push / offline.fetch / offline.delete, see
 * workers/store_ops.c).
 *
 * A message of type normal or chat for an account without an available
 * session reaches this worker as the route owner of its domain; it is
 * stored as XML with a XEP-0203 <delay/> saying when the server received
 * it. If the store refuses it (no such account, queue full, store down),
 * the sender gets the <service-unavailable/> it would have got without
 * offline storage.
 *
 * On a session's first available presence of non-negative priority the
 * queue is fetched and written to that session; only then are the
 * delivered ids deleted (two-phase: if the session goes away before, the
 * messages stay queued for the next one). A queue longer than one fetch is
 * fetched again after each delete.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/log.h"
#include "xmpp/xmpp_session.h"

#define BIT(tag) (UINT64_C(1) << (tag))

#define XMPP_NS_DELAY "urn:xmpp:delay"

/* What a bounce needs once the store has refused a message. */
struct offline_push {
    char *from, *to, *id; /* of the original message; id may be NULL */
};

static void push_free(struct offline_push *p)
{
    free(p->from);
    free(p->to);
    free(p->id);
    free(p);
}

static char *slice_dup(struct ipc_slice v)
{
    return strndup((const char *)v.ptr, v.len);
}

static void push_done(void *ctx, const struct ipc_msg *m)
{
    struct offline_push *p = ctx;
    struct xmpp_server *srv = xmpp_server_get();

    if (m->code != IPC_CODE_OK) {
        log_debug("offline message for %s refused by the store: %s", p->to, ipc_code_name(m->code));
        if (srv != NULL)
            xmpp_route_bounce(srv, STANZA_MESSAGE, p->to, p->from, p->id, "service-unavailable");
    }
    push_free(p);
}

/* Appends xml with a <delay/> as its last child: the serialized forms we
 * handle are <message ...>...</message> and <message .../>. */
static bool stamp(struct xmpp_buf *b, const char *host, const char *xml, size_t len)
{
    static const char close_tag[] = "</message>";
    const size_t close_len = sizeof(close_tag) - 1;
    char when[32];
    struct tm tm;
    time_t now = time(NULL);
    size_t head;

    if (gmtime_r(&now, &tm) == NULL || strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return false;
    if (len > close_len && memcmp(xml + len - close_len, close_tag, close_len) == 0)
        head = len - close_len;
    else if (len > 2 && memcmp(xml + len - 2, "/>", 2) == 0)
        head = len - 2;
    else
        return false;
    xmpp_buf_append(b, xml, head);
    if (head == len - 2)
        xmpp_buf_append_str(b, ">");
    xmpp_buf_append_str(b, "<delay xmlns='" XMPP_NS_DELAY "' from='");
    xmpp_buf_append_escaped(b, host, strlen(host), true);
    xmpp_buf_append_str(b, "' stamp='");
    xmpp_buf_append_str(b, when);
    xmpp_buf_append_str(b, "'/>");
    xmpp_buf_append_str(b, close_tag);
    return !b->failed;
}

bool xmpp_offline_store(struct xmpp_server *srv, const struct ipc_msg *m, const struct xmpp_jid *to,
                        const char *host, const char *xml, size_t len)
{
    struct xmpp_buf *b = &srv->reply;
    struct offline_push *p;
    struct ipc_slice args[3];

    if (m->from.len == 0 || xml[0] != '<')
        return false;
    xmpp_buf_clear(b);
    if (!stamp(b, host, xml, len))
        return false;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return false;
    p->from = slice_dup(m->from);
    p->to = strndup(to->str, to->bare_len);
    p->id = m->present & BIT(IPC_F_ID) ? slice_dup(m->id) : NULL;
    if (p->from == NULL || p->to == NULL || ((m->present & BIT(IPC_F_ID)) && p->id == NULL)) {
        push_free(p);
        return false;
    }
    args[0] = (struct ipc_slice){(const uint8_t *)to->str, (uint32_t)to->local_len};
    args[1] = (struct ipc_slice){(const uint8_t *)host, (uint32_t)strlen(host)};
    args[2] = (struct ipc_slice){(const uint8_t *)b->data, (uint32_t)b->len};
    worker_request(srv->w, "store", "offline.push", args, 3, XMPP_STORE_TIMEOUT_MS, push_done, p);
    return true;
}

/* --- delivery --- */

static void fetch(struct xmpp_session *s);

/* The session a fetch or delete was for, if it is still there and the
 * answer is the one it waits for. */
static struct xmpp_session *request_session(void *ctx, const struct ipc_msg *m)
{
    struct xmpp_server *srv = xmpp_server_get();
    struct conn *c = srv != NULL ? worker_conn_find(srv->w, (uint64_t)(uintptr_t)ctx) : NULL;
    struct xmpp_session *s = c != NULL ? conn_data(c) : NULL;

    if (s == NULL || !s->bound || s->closing || s->offline_req != m->req_id)
        return NULL;
    s->offline_req = 0;
    return s;
}

static void delete_done(void *ctx, const struct ipc_msg *m)
{
    struct xmpp_session *s = request_session(ctx, m);

    if (s == NULL)
        return;
    if (m->code != IPC_CODE_OK) {
        /* They stay queued and come again with the next session. */
        log_info("%s: offline messages not deleted: %s", s->jid, ipc_code_name(m->code));
        return;
    }
    if (s->offline_more)
        fetch(s);
}

static void fetch_done(void *ctx, const struct ipc_msg *m)
{
    struct xmpp_session *s = request_session(ctx, m);
    struct ipc_slice v, *ids;
    uint32_t offset = 0;
    size_t n = 0;

    if (s == NULL)
        return;
    if (m->code != IPC_CODE_OK) {
        log_info("%s: offline messages not fetched: %s", s->jid, ipc_code_name(m->code));
        return;
    }
    if (m->n_arg == 0)
        return;
    ids = malloc((size_t)m->n_arg * sizeof(*ids));
    if (ids == NULL)
        return;
    while (ipc_msg_each(m, IPC_F_ARG, &offset, &v)) {
        const uint8_t *nul = memchr(v.ptr, '\0', v.len);
        size_t id_len = nul != NULL ? (size_t)(nul - v.ptr) : 0;

        if (nul == NULL || id_len == 0 || id_len == v.len - 1)
            continue;
        xmpp_session_write(s, (const char *)nul + 1, v.len - id_len - 1);
        ids[n++] = (struct ipc_slice){v.ptr, (uint32_t)id_len};
    }
    /* Written to the connection: now they may go (ids follow user, domain). */
    if (n > 0 && !s->closing) {
        struct ipc_slice *args = malloc((n + 2) * sizeof(*args));

        if (args != NULL) {
            args[0] = (struct ipc_slice){(const uint8_t *)s->user, (uint32_t)strlen(s->user)};
            args[1] = (struct ipc_slice){(const uint8_t *)s->host, (uint32_t)strlen(s->host)};
            memcpy(args + 2, ids, n * sizeof(*ids));
            s->offline_more = m->reason.len > 0;
            s->offline_req = worker_request(s->srv->w, "store", "offline.delete", args, n + 2,
                                            XMPP_STORE_TIMEOUT_MS, delete_done,
                                            (void *)(uintptr_t)conn_id(s->conn));
            free(args);
        }
    }
    log_info("%s: %zu offline message%s delivered", s->jid, n, n == 1 ? "" : "s");
    free(ids);
}

static void fetch(struct xmpp_session *s)
{
    struct ipc_slice args[2] = {
        {(const uint8_t *)s->user, (uint32_t)strlen(s->user)},
        {(const uint8_t *)s->host, (uint32_t)strlen(s->host)},
    };

    s->offline_more = false;
    s->offline_req =
        worker_request(s->srv->w, "store", "offline.fetch", args, 2, XMPP_STORE_TIMEOUT_MS,
                       fetch_done, (void *)(uintptr_t)conn_id(s->conn));
}

void xmpp_offline_deliver(struct xmpp_session *s)
{
    if (s->offline_started)
        return;
    s->offline_started = true;
    fetch(s);
}
