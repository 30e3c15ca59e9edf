/*
 * The broker's side of the link protocol (ipc.h, IPC_LINK_*): who the peers
 * are, whether they are alive, and how output reaches them.
 *
 * A peer exists from its HELLO to its BYE, its death by silence (no frame
 * for heartbeat_ms * heartbeat_misses), its replacement by a new incarnation
 * of the same worker kind, or a malformed frame. Whatever arrives from an
 * identity that is not a peer, other than HELLO, gets REHELLO: that is how a
 * worker learns that the broker restarted, or that it was declared dead, and
 * re-announces its state.
 *
 * A frame is handled message by message. When a message fails to decode, the
 * messages before it in the same frame have already been acted on; the peer
 * is then disconnected, so its worker restarts and re-announces anyway.
 *
 * Output is batched: each peer has a writer that collects the messages of
 * one loop turn, flushed once as one frame (or earlier when it grows past
 * IPC_FLUSH_AT). Dead peers are unlinked at once but freed only after the
 * flush, so that a DISCONNECT queued for them still goes out.
 */
#include "broker/router.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/log.h"

#define BIT(tag) (UINT64_C(1) << (tag))

/* Bytes of a broken frame shown in the warning. */
#define SAMPLE_BYTES 48

void router_init_peers(struct router *r)
{
    hashmap_init(&r->by_identity);
    hashmap_init(&r->by_id);
    ipc_writer_init(&r->stranger);
}

static const char *identity_hex(const uint8_t *id, size_t len, char *out, size_t out_size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < len && o + 3 < out_size; i++) {
        out[o++] = hex[id[i] >> 4];
        out[o++] = hex[id[i] & 15];
    }
    if (o + 3 < out_size && len * 2 > o)
        out[o++] = '+';
    out[o] = '\0';
    return out;
}

struct router_peer *router_peer_by_id(struct router *r, uint32_t id)
{
    return hashmap_get(&r->by_id, &id, sizeof(id));
}

/* ---- output ---- */

static void peer_flush(struct router *r, struct router_peer *p)
{
    size_t len;
    const uint8_t *frame = ipc_writer_frame(&p->out, &len);

    if (frame == NULL)
        return;
    if (router_send(r, p->identity, p->identity_len, frame, len) < 0) {
        r->counters.send_failed += p->out.n_msgs;
        if (router_ratelimit(r, &r->log_send))
            log_debug("peer %u (%s): %u messages dropped: %s", p->owner.id, p->kind, p->out.n_msgs,
                      strerror(errno));
    }
    ipc_writer_reset(&p->out);
}

struct ipc_writer *router_peer_begin(struct router *r, struct router_peer *p, enum ipc_type type)
{
    if (!p->dirty) {
        p->dirty = true;
        p->next_dirty = r->dirty;
        r->dirty = p;
    }
    ipc_msg_begin(&p->out, type);
    return &p->out;
}

bool router_peer_end(struct router *r, struct router_peer *p)
{
    if (!ipc_msg_end(&p->out)) {
        r->counters.send_failed++;
        if (router_ratelimit(r, &r->log_send))
            log_debug("peer %u (%s): a message too large to encode was dropped", p->owner.id,
                      p->kind);
        return false;
    }
    if (p->out.len >= IPC_FLUSH_AT)
        peer_flush(r, p);
    return true;
}

void router_flush(struct router *r)
{
    struct router_peer *p;

    while ((p = r->dirty) != NULL) {
        r->dirty = p->next_dirty;
        p->dirty = false;
        p->next_dirty = NULL;
        peer_flush(r, p);
    }
    while ((p = r->graveyard) != NULL) {
        r->graveyard = p->next;
        ipc_writer_free(&p->out);
        free(p);
    }
}

/* One message to an identity that is not a peer, sent at once. */
static void stranger_send(struct router *r, const uint8_t *id, size_t id_len, enum ipc_type type,
                          const char *reason)
{
    size_t len;
    const uint8_t *frame;

    ipc_writer_reset(&r->stranger);
    ipc_msg_begin(&r->stranger, type);
    ipc_put_str(&r->stranger, IPC_F_REASON, reason);
    ipc_msg_end(&r->stranger);
    frame = ipc_writer_frame(&r->stranger, &len);
    if (frame != NULL && router_send(r, id, id_len, frame, len) < 0)
        r->counters.send_failed++;
    ipc_writer_reset(&r->stranger);
}

/* A worker whose broker restarted may have many frames in flight; tell it
 * once per heartbeat interval, not once per frame, so that it does not
 * answer with a burst of HELLOs. */
static bool rehello_recently(struct router *r, const uint8_t *id, size_t id_len)
{
    struct router_rehello *e;

    for (size_t i = 0; i < ROUTER_REHELLO_CACHE; i++) {
        e = &r->rehello[i];
        if (e->identity_len == id_len && memcmp(e->identity, id, id_len) == 0 &&
            r->now_ms - e->at_ms < r->config->broker.heartbeat_ms)
            return true;
    }
    e = &r->rehello[r->rehello_next++ % ROUTER_REHELLO_CACHE];
    memcpy(e->identity, id, id_len);
    e->identity_len = (uint8_t)id_len;
    e->at_ms = r->now_ms;
    return false;
}

/* ---- death ---- */

/* Which peers hear that the sessions of a dead peer went offline: the
 * protocol and rooms workers, and peers of other kinds (tests, future
 * gateways) that announced routes or sessions; not the store, nor tools
 * such as switchboardctl. */
static bool peer_wants_presence(const struct router_peer *p)
{
    switch (p->worker_kind) {
    case SB_WORKER_ROOMS:
    case SB_WORKER_XMPP:
    case SB_WORKER_MQTT:
    case SB_WORKER_SIP:
    case SB_WORKER_IRC:
        return true;
    case -1:
        return p->announced;
    default:
        return false;
    }
}

struct death {
    struct router *r;
    struct router_peer *dead;
};

/* Tells the other peers that one session of the dead peer is offline. */
static void session_gone(void *ctx, const struct router_session *s)
{
    struct death *d = ctx;
    struct router *r = d->r;
    struct ipc_slice full = {(const uint8_t *)s->address, s->address_len};
    struct router_address parts;

    router_address_split(full, &parts);
    for (struct router_peer *p = r->peers; p != NULL; p = p->next) {
        struct ipc_writer *w;

        if (!peer_wants_presence(p))
            continue;
        w = router_peer_begin(r, p, IPC_STANZA);
        ipc_put_u8(w, IPC_F_SKIND, STANZA_PRESENCE);
        ipc_put_str(w, IPC_F_TYPE, "unavailable");
        ipc_put_slice(w, IPC_F_FROM, full);
        ipc_put_slice(w, IPC_F_TO, parts.bare);
        ipc_put_u32(w, IPC_F_WORKER, d->dead->owner.id);
        if (router_peer_end(r, p))
            r->counters.presence_unavailable_sent++;
    }
}

/* Removes a peer and its tables' entries; with notify, the others hear that
 * its sessions went offline. With disconnect_reason, it is sent DISCONNECT.
 * The struct stays allocated until router_flush(). */
static void peer_remove(struct router *r, struct router_peer *p, bool notify,
                        const char *disconnect_reason)
{
    struct death d = {r, p};

    if (p->dead)
        return;
    p->dead = true;
    hashmap_remove(&r->by_identity, p->identity, p->identity_len);
    hashmap_remove(&r->by_id, &p->owner.id, sizeof(p->owner.id));
    if (p->worker_kind >= 0 && r->by_kind[p->worker_kind] == p)
        r->by_kind[p->worker_kind] = NULL;
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        r->peers = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    r->n_peers--;

    router_owner_drop(r->tables, &p->owner, notify ? session_gone : NULL, &d);

    /* Whatever was queued for it is moot now. */
    ipc_writer_reset(&p->out);
    if (disconnect_reason != NULL) {
        struct ipc_writer *w = router_peer_begin(r, p, IPC_LINK_DISCONNECT);
        ipc_put_str(w, IPC_F_REASON, disconnect_reason);
        router_peer_end(r, p);
    }
    p->prev = NULL;
    p->next = r->graveyard;
    r->graveyard = p;
}

/* Declared dead (not a clean BYE). */
static void peer_dead(struct router *r, struct router_peer *p, const char *disconnect_reason)
{
    if (p->dead)
        return;
    r->counters.peers_dead++;
    peer_remove(r, p, true, disconnect_reason);
}

void router_peer_malformed(struct router *r, struct router_peer *p, const char *reason,
                           const void *data, size_t len)
{
    char sample[SAMPLE_BYTES * 4 + 1];

    r->counters.malformed++;
    log_sample(sample, sizeof(sample), data, len < SAMPLE_BYTES ? len : SAMPLE_BYTES);
    log_warnx("peer %u (%s pid %u): malformed input: %s; disconnecting it (first bytes: %s)",
              p->owner.id, p->kind, p->pid, reason, sample);
    peer_dead(r, p, reason);
}

void router_tick(struct router *r)
{
    int64_t limit = (int64_t)r->config->broker.heartbeat_ms * r->config->broker.heartbeat_misses;
    struct router_peer *p, *next;

    for (p = r->peers; p != NULL; p = next) {
        next = p->next;
        if (r->now_ms - p->last_seen_ms > limit) {
            log_warnx("peer %u (%s pid %u): silent for %lld ms, declaring it dead", p->owner.id,
                      p->kind, p->pid, (long long)(r->now_ms - p->last_seen_ms));
            peer_dead(r, p, NULL);
            continue;
        }
        router_peer_begin(r, p, IPC_LINK_HEARTBEAT);
        router_peer_end(r, p);
    }
}

void router_free_peers(struct router *r)
{
    struct router_peer *p;

    /* Shutting down: nobody is left to hear about sessions. */
    while ((p = r->peers) != NULL) {
        r->peers = p->next;
        router_owner_drop(r->tables, &p->owner, NULL, NULL);
        p->next = r->graveyard;
        r->graveyard = p;
    }
    r->n_peers = 0;
    r->dirty = NULL;
    router_flush(r);
    hashmap_deinit(&r->by_identity);
    hashmap_deinit(&r->by_id);
    ipc_writer_free(&r->stranger);
}

/* ---- HELLO ---- */

static bool kind_valid(struct ipc_slice kind)
{
    if (kind.len == 0 || kind.len > ROUTER_MAX_KIND)
        return false;
    for (uint32_t i = 0; i < kind.len; i++) {
        uint8_t c = kind.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

static uint32_t new_id(struct router *r)
{
    uint32_t id;

    /* Unique among live peers, never 0; wraps after 4 billion HELLOs. */
    do {
        id = ++r->last_id;
    } while (id == 0 || router_peer_by_id(r, id) != NULL);
    return id;
}

static struct router_peer *peer_new(struct router *r, const uint8_t *id, size_t id_len)
{
    struct router_peer *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    router_owner_init(&p->owner, 0);
    memcpy(p->identity, id, id_len);
    p->identity_len = (uint8_t)id_len;
    ipc_writer_init(&p->out);
    if (hashmap_put(&r->by_identity, p->identity, p->identity_len, p) < 0) {
        free(p);
        return NULL;
    }
    p->next = r->peers;
    if (r->peers != NULL)
        r->peers->prev = p;
    r->peers = p;
    r->n_peers++;
    return p;
}

/* HELLO from p (a peer saying HELLO again) or from a new identity (p NULL).
 * Returns the peer, or NULL when it was refused. */
static struct router_peer *hello(struct router *r, struct router_peer *p, const uint8_t *id,
                                 size_t id_len, const struct ipc_msg *m)
{
    char kind[ROUTER_MAX_KIND + 1], idhex[24];
    struct ipc_writer *w;
    bool again = p != NULL;
    int wk;

    if (!kind_valid(m->kind)) {
        if (p != NULL) {
            router_peer_malformed(r, p, "bad KIND in HELLO", m->body, m->body_len);
        } else {
            r->counters.malformed++;
            stranger_send(r, id, id_len, IPC_LINK_DISCONNECT, "bad KIND in HELLO");
        }
        return NULL;
    }
    ipc_slice_cstr(m->kind, kind, sizeof(kind));
    wk = config_worker_parse(kind);

    if (p != NULL) {
        /* The peer starts over: forget what it announced without telling
         * anyone (it re-announces at once), and give it a new id. */
        router_owner_drop(r->tables, &p->owner, NULL, NULL);
        hashmap_remove(&r->by_id, &p->owner.id, sizeof(p->owner.id));
        if (p->worker_kind >= 0 && r->by_kind[p->worker_kind] == p)
            r->by_kind[p->worker_kind] = NULL;
    } else {
        if (r->n_peers >= ROUTER_MAX_PEERS) {
            log_warnx("refusing a HELLO from %s (%s): %d peers already", kind,
                      identity_hex(id, id_len, idhex, sizeof(idhex)), ROUTER_MAX_PEERS);
            stranger_send(r, id, id_len, IPC_LINK_DISCONNECT, "too many peers");
            return NULL;
        }
        p = peer_new(r, id, id_len);
        if (p == NULL) {
            log_error("out of memory for a new peer");
            stranger_send(r, id, id_len, IPC_LINK_DISCONNECT, "broker out of memory");
            return NULL;
        }
    }

    /* A worker process holds one link, so a new link of the same worker
     * kind means the previous one is stale. From another process (pid or
     * instance differ), the previous incarnation died with its sessions.
     * From the same process, it re-opened its socket and re-announces what
     * it holds: the old link goes quietly, without DISCONNECT (which would
     * stop the process) and without presences (the sessions live on). */
    if (wk >= 0 && r->by_kind[wk] != NULL && r->by_kind[wk] != p) {
        struct router_peer *old = r->by_kind[wk];

        if (old->pid != m->pid || old->instance != m->instance) {
            log_warnx("peer %u (%s pid %u) is replaced by pid %u: declaring it dead", old->owner.id,
                      old->kind, old->pid, m->pid);
            peer_dead(r, old, NULL);
        } else {
            log_info("peer %u (%s pid %u) re-linked: its old link is dropped", old->owner.id,
                     old->kind, old->pid);
            peer_remove(r, old, false, NULL);
        }
    }

    memcpy(p->kind, kind, sizeof(kind));
    p->worker_kind = wk;
    p->pid = m->pid;
    p->instance = m->instance;
    p->conns = 0;
    p->announced = false;
    p->hello_ms = p->last_seen_ms = r->now_ms;
    p->owner.id = new_id(r);
    if (hashmap_put(&r->by_id, &p->owner.id, sizeof(p->owner.id), p) < 0) {
        log_error("out of memory for peer %s pid %u", kind, m->pid);
        peer_dead(r, p, "broker out of memory");
        return NULL;
    }
    if (wk >= 0)
        r->by_kind[wk] = p;

    w = router_peer_begin(r, p, IPC_LINK_WELCOME);
    ipc_put_u32(w, IPC_F_WORKER, p->owner.id);
    ipc_put_u64(w, IPC_F_EPOCH, r->epoch);
    router_peer_end(r, p);
    log_info("peer %u: %s pid %u %s (identity %s)", p->owner.id, kind, p->pid,
             again ? "said HELLO again" : "joined", identity_hex(id, id_len, idhex, sizeof(idhex)));
    return p;
}

/* ---- intake ---- */

static void table_refused(struct router *r, struct router_peer *p, const char *what,
                          struct ipc_slice value, const char *error)
{
    char sample[64];

    r->counters.table_refused++;
    if (router_ratelimit(r, &r->log_refused))
        log_warnx("peer %u (%s): %s '%s' refused: %s", p->owner.id, p->kind, what,
                  log_sample(sample, sizeof(sample), value.ptr, value.len < 40 ? value.len : 40),
                  error);
}

/* Handles one message of a peer. False when the peer is gone afterwards
 * (BYE, malformed), so the rest of its frame must be ignored. */
static bool dispatch(struct router *r, struct router_peer *p, const struct ipc_msg *m)
{
    const char *error = NULL;

    switch ((enum ipc_type)m->type) {
    case IPC_LINK_HELLO:
        return hello(r, p, p->identity, p->identity_len, m) != NULL;
    case IPC_LINK_HEARTBEAT:
        if (m->present & BIT(IPC_F_CONNS))
            p->conns = m->conns;
        return true;
    case IPC_LINK_BYE:
        log_info("peer %u (%s pid %u) said goodbye", p->owner.id, p->kind, p->pid);
        r->counters.peers_bye++;
        peer_remove(r, p, true, NULL);
        return false;
    case IPC_LINK_WELCOME:
    case IPC_LINK_REHELLO:
    case IPC_LINK_DISCONNECT:
        router_peer_malformed(r, p, "a message type only the broker sends", m->body, m->body_len);
        return false;

    case IPC_ROUTE_ADD:
        if (router_route_add(r->tables, &p->owner, m->address, &error) < 0)
            table_refused(r, p, "route", m->address, error);
        else
            p->announced = true;
        return true;
    case IPC_ROUTE_DEL:
        router_route_del(r->tables, &p->owner, m->address);
        return true;
    case IPC_SESSION_ADD: {
        struct router_session_info info = {.address = m->from,
                                           .conn = m->conn,
                                           .priority = m->priority,
                                           .show = m->show,
                                           .status = m->status};
        if (router_session_add(r->tables, &p->owner, &info, &error) < 0)
            table_refused(r, p, "session", m->from, error);
        else
            p->announced = true;
        return true;
    }
    case IPC_SESSION_DEL:
        router_session_del(r->tables, &p->owner, m->from);
        return true;
    case IPC_INTEREST_ADD:
        if (router_interest_add(r->tables, &p->owner, m->topic, &error) < 0)
            table_refused(r, p, "interest", m->topic, error);
        return true;
    case IPC_INTEREST_DEL:
        router_interest_del(r->tables, &p->owner, m->topic);
        return true;

    case IPC_STANZA:
    case IPC_REQUEST:
        /* Only the broker says who sent a message and to which connections. */
        if (m->present & (BIT(IPC_F_WORKER) | BIT(IPC_F_TARGET))) {
            router_peer_malformed(r, p, "WORKER or TARGET set by a worker", m->body, m->body_len);
            return false;
        }
        if (m->type == IPC_STANZA)
            router_stanza(r, p, m);
        else
            router_request(r, p, m);
        return true;
    case IPC_RESPONSE:
        router_response(r, p, m);
        return true;
    }
    /* ipc_frame_next only returns known types. */
    router_peer_malformed(r, p, "unexpected message type", m->body, m->body_len);
    return false;
}

/* Input from an identity that is not a peer and did not start with HELLO. */
static void stranger_input(struct router *r, const uint8_t *id, size_t id_len, const char *error,
                           const void *data, size_t len)
{
    char idhex[24], sample[SAMPLE_BYTES * 4 + 1];

    if (error == NULL) {
        if (!rehello_recently(r, id, id_len))
            stranger_send(r, id, id_len, IPC_LINK_REHELLO, "unknown peer: say HELLO");
        return;
    }
    r->counters.malformed++;
    if (router_ratelimit(r, &r->log_stranger))
        log_warnx(
            "malformed input from unknown identity %s: %s (first bytes: %s)",
            identity_hex(id, id_len, idhex, sizeof(idhex)), error,
            log_sample(sample, sizeof(sample), data, len < SAMPLE_BYTES ? len : SAMPLE_BYTES));
    stranger_send(r, id, id_len, IPC_LINK_DISCONNECT, error);
}

void router_frame(struct router *r, const uint8_t *id, size_t id_len, const uint8_t *data,
                  size_t len, bool extra_parts)
{
    struct router_peer *p;
    struct ipc_cursor cur;
    struct ipc_msg m;
    const char *error = NULL;

    r->counters.frames_in++;
    if (id_len == 0 || id_len > ROUTER_MAX_IDENTITY)
        return; /* ZeroMQ never delivers these */
    p = hashmap_get(&r->by_identity, id, id_len);
    if (p != NULL)
        p->last_seen_ms = r->now_ms;
    if (extra_parts)
        error = "a ZeroMQ message of more than one part";
    else
        (void)ipc_frame_open(&cur, data, len, &error);
    while (error == NULL) {
        int rc = ipc_frame_next(&cur, &m, &error);

        if (rc == 0)
            return;
        if (rc < 0)
            break;
        r->counters.messages_in++;
        if (p == NULL) {
            if (m.type == IPC_LINK_BYE)
                return; /* leaving anyway */
            if (m.type != IPC_LINK_HELLO) {
                stranger_input(r, id, id_len, NULL, data, len);
                return;
            }
            p = hello(r, NULL, id, id_len, &m);
            if (p == NULL)
                return;
            continue;
        }
        if (!dispatch(r, p, &m))
            return;
    }
    if (p != NULL)
        router_peer_malformed(r, p, error, data, len);
    else
        stranger_input(r, id, id_len, error, data, len);
}
