/*
 * The switchboard-broker process, shared between its files:
 *   router_main.c      start-up, the ROUTER socket, the event loop, sending;
 *   router_link.c      peers: HELLO/WELCOME, heartbeats, BYE, death, malformed
 *                      frames, and the per-peer output batching;
 *   router_dispatch.c  routing of stanzas, requests and responses, and the
 *                      broker's own requests ("stats", "sessions", "peers").
 * The tables themselves (router_tables.h) know nothing of ZeroMQ or peers.
 *
 * Flow of one loop turn: zmq_poll wakes up; every ZeroMQ message waiting on
 * the ROUTER (up to ROUTER_BATCH_MAX) is decoded and handled, which appends
 * outgoing messages to the destination peers' writers; the heartbeat tick
 * runs when due; then every peer with pending output is flushed once, as one
 * frame, and peers that died during the turn are freed.
 */
#ifndef SB_ROUTER_H
#define SB_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/router_tables.h"
#include "shared/config.h"
#include "shared/hashmap.h"
#include "shared/ipc.h"

/* Peers connected at once (workers, switchboardctl, tests). */
#define ROUTER_MAX_PEERS 1024
/* ZeroMQ messages handled per loop turn before output is flushed. */
#define ROUTER_BATCH_MAX 4096
/* ZeroMQ queue limits of the ROUTER, in messages (frames) per peer. */
#define ROUTER_HWM 100000
/* ZeroMQ routing ids are at most 255 bytes. */
#define ROUTER_MAX_IDENTITY 255
/* Worker kinds are short names; IPC bounds KIND to 32 bytes. */
#define ROUTER_MAX_KIND 32
/* Unknown identities recently told to HELLO again (see router_link.c). */
#define ROUTER_REHELLO_CACHE 64
/* Log lines of one rate-limited kind per second. */
#define ROUTER_LOG_BURST 10

/* Counters reported by the "stats" request, in that order. */
#define ROUTER_COUNTERS(X)                                                                         \
    X(frames_in)                                                                                   \
    X(messages_in)                                                                                 \
    X(stanzas_routed)                                                                              \
    X(stanzas_bounced)                                                                             \
    X(stanzas_dropped)                                                                             \
    X(publishes_unmatched)                                                                         \
    X(presence_unavailable_sent)                                                                   \
    X(requests_routed)                                                                             \
    X(requests_unavailable)                                                                        \
    X(responses_routed)                                                                            \
    X(responses_dropped)                                                                           \
    X(table_refused)                                                                               \
    X(malformed)                                                                                   \
    X(send_failed)                                                                                 \
    X(peers_dead)                                                                                  \
    X(peers_bye)

struct router_counters {
#define ROUTER_COUNTER_FIELD(name) uint64_t name;
    ROUTER_COUNTERS(ROUTER_COUNTER_FIELD)
#undef ROUTER_COUNTER_FIELD
};

struct router_peer {
    /* The tables' view; owner.id is the WORKER id given at HELLO. */
    struct router_owner owner;
    uint8_t identity[ROUTER_MAX_IDENTITY];
    uint8_t identity_len;
    char kind[ROUTER_MAX_KIND + 1];
    int worker_kind; /* enum sb_worker_kind, or -1 for other peers */
    uint32_t pid, conns;
    uint64_t instance;
    int64_t hello_ms, last_seen_ms;
    /* It announced a route or session: it serves users, so it hears about
     * the sessions of dead peers. */
    bool announced;
    bool dead;

    /* Output of this loop turn, sent as one frame by router_flush(). */
    struct ipc_writer out;
    bool dirty;
    struct router_peer *next_dirty;

    /* The live peers, or the dead ones waiting to be freed. */
    struct router_peer *prev, *next;
};

/* At most ROUTER_LOG_BURST lines per second of one kind. */
struct router_ratelimit {
    const char *what;
    int64_t window_ms;
    unsigned n, suppressed;
};

struct router_rehello {
    uint8_t identity[ROUTER_MAX_IDENTITY];
    uint8_t identity_len;
    int64_t at_ms;
};

struct router {
    const struct config *config;
    void *socket; /* the ZMQ_ROUTER */
    struct router_tables *tables;

    struct hashmap by_identity; /* routing id -> struct router_peer */
    struct hashmap by_id;       /* WORKER id (4 bytes, host order) -> struct router_peer */
    struct router_peer *by_kind[SB_WORKER_COUNT];
    struct router_peer *peers, *graveyard, *dirty;
    size_t n_peers;
    uint32_t last_id;
    uint64_t epoch; /* CLOCK_REALTIME ns at start */

    int64_t now_ms, started_ms; /* CLOCK_MONOTONIC */
    struct router_counters counters;

    /* Replies to identities that are not peers (REHELLO, DISCONNECT). */
    struct ipc_writer stranger;
    struct router_rehello rehello[ROUTER_REHELLO_CACHE];
    unsigned rehello_next;

    struct router_ratelimit log_send, log_stranger, log_refused, log_dropped;
};

/* router_main.c */
/* Sends one frame to a routing id, never blocking: -1 (errno EAGAIN when
 * the peer's queue is full, EHOSTUNREACH when it is gone). */
int router_send(struct router *r, const uint8_t *identity, size_t identity_len, const void *frame,
                size_t len);
/* True when a line of this kind may be logged now. */
bool router_ratelimit(struct router *r, struct router_ratelimit *limit);

/* router_link.c */
void router_init_peers(struct router *r);
/* Handles one ZeroMQ message from a routing id; extra_parts when it had
 * more than the one frame part the contract allows. */
void router_frame(struct router *r, const uint8_t *identity, size_t identity_len,
                  const uint8_t *frame, size_t len, bool extra_parts);
/* Heartbeats: declares silent peers dead and beats the others. */
void router_tick(struct router *r);
/* Sends every pending frame and frees the peers that died this turn. */
void router_flush(struct router *r);
/* Drops every peer (at exit). */
void router_free_peers(struct router *r);
/* Opens a message to a peer; close it with router_peer_end(). */
struct ipc_writer *router_peer_begin(struct router *r, struct router_peer *p, enum ipc_type type);
/* Closes it; false (and counted) when it could not be encoded. */
bool router_peer_end(struct router *r, struct router_peer *p);
struct router_peer *router_peer_by_id(struct router *r, uint32_t id);
/* The peer broke the contract: DISCONNECT it with reason, warn with a
 * sample of the offending bytes, and declare it dead. */
void router_peer_malformed(struct router *r, struct router_peer *p, const char *reason,
                           const void *data, size_t len);

static inline struct router_peer *router_peer_of(struct router_owner *owner)
{
    return (struct router_peer *)(void *)((char *)owner - offsetof(struct router_peer, owner));
}

/* router_dispatch.c */
void router_stanza(struct router *r, struct router_peer *from, const struct ipc_msg *m);
void router_request(struct router *r, struct router_peer *from, const struct ipc_msg *m);
void router_response(struct router *r, struct router_peer *from, const struct ipc_msg *m);

#endif
