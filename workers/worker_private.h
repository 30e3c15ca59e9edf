/*
 * The worker skeleton's insides, shared by its three files and by nothing
 * else: worker.c (start, listeners, signals, the end-of-turn work and
 * shutdown), worker_conn.c (connections: buffers, TLS, timers) and
 * worker_link.c (the broker link and asynchronous requests).
 *
 * Every loop turn ends in worker_turn_end() (an ev_prepare watcher, so it
 * runs just before the loop sleeps): connections that were closed get their
 * conn_closed callback, queued output is written, finished connections are
 * freed, and the frame of broker messages built during the turn is sent.
 * Doing all of this there, and only there, is what makes conn_close() safe
 * inside a connection's own callbacks and what coalesces writes.
 */
#ifndef SB_WORKER_PRIVATE_H
#define SB_WORKER_PRIVATE_H

#include "workers/worker.h"

#include <ev.h>
#include <netinet/in.h>
#include <openssl/ssl.h>

#include "shared/hashmap.h"

/* Caps and timings of the skeleton, in one place. */
/* Connections accepted per listener wake-up, so one busy listener cannot
 * starve the others or the established connections. */
#define WORKER_ACCEPT_BURST 64
/* Datagrams read per UDP wake-up. */
#define WORKER_DATAGRAM_BURST 64
/* Largest datagram (UDP's own limit). */
#define WORKER_DATAGRAM_MAX 65536
/* Socket reads per connection wake-up (fairness between connections). */
#define WORKER_READ_BURST 4
/* First size of a connection's input and output buffers; they grow up to
 * limits.max_input / limits.max_output. */
#define WORKER_BUFFER_MIN 4096
/* A buffer that grew past this is released once it is empty again, so that
 * one burst does not pin memory for the life of an idle connection. */
#define WORKER_BUFFER_KEEP 65536
/* How long a closing connection may take to flush what is queued. */
#define WORKER_LINGER_S 5.0
/* After our last byte, a connection we close waits this long for the peer
 * to close too, reading and discarding: closing a socket with unread input
 * sends a reset, which can destroy the final reply before the peer reads
 * it (the "lingering close" of HTTP servers). */
#define WORKER_DRAIN_S 2.0
/* Bytes discarded per wake-up while draining; more and we stop waiting. */
#define WORKER_DRAIN_MAX 65536
/* Handshake deadline for TLS when no idle timeout is configured. */
#define WORKER_HANDSHAKE_S 30.0
/* How long after SIGTERM the remaining connections are dropped unflushed. */
#define WORKER_STOP_DEADLINE_S (WORKER_LINGER_S + 1.0)
/* Accepting pauses this long when the process is out of descriptors. */
#define WORKER_ACCEPT_PAUSE_S 0.1
/* CONNS reports to the supervisor are at most this frequent. */
#define WORKER_REPORT_INTERVAL_S 0.1
/* Rounds of end-of-turn work before the rest is left to the next turn. */
#define WORKER_TURN_ROUNDS 8
/* Broker frames handled per wake-up before the rest waits for the next turn. */
#define WORKER_LINK_BURST 256
/* The BYE gets this long to leave on shutdown. */
#define WORKER_BYE_LINGER_MS 500

/* At most one line per second for a repeated warning; the rest are counted. */
struct worker_ratelimit {
    ev_tstamp last;
    unsigned long suppressed;
};

struct listener_watch {
    struct worker *w;
    struct worker_listener *listener;
    ev_io io;
    ev_timer pause; /* accepting paused after EMFILE */
};

enum conn_state {
    CONN_HANDSHAKE,      /* TLS handshake in progress (direct TLS or after STARTTLS) */
    CONN_STARTTLS_FLUSH, /* STARTTLS: the clear-text reply is still being written */
    CONN_OPEN,
};

struct conn {
    struct worker *w;
    const struct worker_listener *listener;
    uint64_t id;
    int fd;
    enum conn_state state;
    SSL *ssl;

    ev_io rio, wio;
    /* Handshake deadline, then idle timeout, then (closing) flush deadline. */
    ev_timer timer;
    /* conn_pause_input: reading resumes when it fires. */
    ev_timer pause;
    double timeout; /* idle timeout in seconds, 0 = none */
    ev_tstamp last_input;

    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out; /* pending bytes are out[out_head .. out_head + out_len) */
    size_t out_head, out_len, out_cap;
    size_t plain_left; /* STARTTLS: bytes still to send in clear */

    bool opened;           /* conn_open was called */
    bool closing;          /* conn_close was called */
    bool notified;         /* conn_closed was called (or is not due) */
    bool dirty;            /* on the worker's dirty list */
    bool tls_up;           /* handshake complete */
    bool tls_broken;       /* fatal TLS or socket error: no close_notify */
    bool read_wants_write; /* SSL_read asked for writability */
    bool write_wants_read; /* SSL_write asked for readability */
    bool discard_input;    /* STARTTLS during conn_input: drop what is buffered */
    bool in_input;         /* inside proto->conn_input */
    bool aborted;          /* output dropped: free without lingering */
    bool peer_eof;         /* the peer closed (or the socket failed) */
    bool draining;         /* lingering close: discarding input until EOF */
    bool tls_shut;         /* close_notify sent */
    bool paused;           /* conn_pause_input: not reading until the pause timer */

    struct conn *dirty_next, *closing_next;
    struct conn *prev, *next; /* every connection of the worker */

    char peer[INET6_ADDRSTRLEN + 8];
    char reason[160];

    /* The protocol's state (conn_state_size bytes). */
    _Alignas(max_align_t) unsigned char data[];
};

struct link_request {
    struct worker *w;
    uint32_t id; /* the map key points here */
    ev_timer timer;
    worker_request_cb *done;
    void *ctx;
    const char *fail_reason; /* set when the request could not be sent */
    struct link_request *next_free;
};

struct worker_link {
    void *zctx, *zsock;
    ev_io zio;
    ev_timer heartbeat;
    struct ipc_writer out;
    bool ready;    /* welcomed and not lost since */
    bool welcomed; /* welcomed at least once */
    /* HELLOs sent and WELCOMEs received on this socket: the broker answers
     * each HELLO once, in order, so equal counts mean "answered". */
    uint32_t hellos, welcomes;
    uint32_t worker_id;
    uint64_t epoch, instance;
    ev_tstamp last_rx;
    double retry_after; /* seconds without WELCOME before a new socket */
    int events;         /* ZMQ_EVENTS after the last drain */
    bool bye;           /* BYE sent: give it time to leave */
    unsigned long dropped;
    struct worker_ratelimit drop_log, send_log;

    uint32_t next_req_id;
    struct hashmap requests; /* req id -> struct link_request */
    struct link_request *req_free;
    size_t n_req_free;
};

struct worker {
    const struct worker_proto *proto;
    struct config *config;
    struct ev_loop *loop;
    const char *name;
    void *data;
    SSL_CTX *tls;

    struct worker_listener *listeners;
    struct listener_watch *watches;
    size_t n_listeners;

    ev_prepare turn_end;
    ev_check again_check;
    ev_idle kick;
    ev_io life;
    ev_signal sigterm, sigint;
    ev_timer stop_deadline;
    ev_timer report;
    unsigned reported_conns;
    bool report_sent;

    bool stopping, bye_sent;
    bool aborting; /* worker_abort: leave the loop without flushing */
    int exit_code;

    /* Connections. */
    struct hashmap conns; /* id -> struct conn, until conn_closed */
    struct conn *all;     /* every connection (including closing ones) */
    struct conn *dirty;   /* output to write, or ready to free */
    struct conn *closing; /* closed, conn_closed not yet called */
    uint64_t *again;      /* ids of TLS connections with buffered input left */
    size_t n_again, again_cap;
    unsigned n_conns;
    uint64_t next_conn_id;
    unsigned long refused, too_slow;
    struct worker_ratelimit refuse_log, accept_log;

    struct worker_link link;
};

/* worker.c */
bool worker_ratelimit(struct worker *w, struct worker_ratelimit *rl, unsigned long *suppressed_r);
/* Makes sure the loop does not sleep before worker_turn_end runs again. */
void worker_kick(struct worker *w);
void worker_conns_changed(struct worker *w);
/* Ends the loop at once (no flushing); worker_main returns code. */
void worker_abort(struct worker *w, int code);

/* worker_conn.c */
void conn_accept_cb(struct ev_loop *loop, ev_io *io, int revents);
/* Calls conn_closed for closed connections, writes queued output and frees
 * finished connections. Returns true when more work was queued meanwhile. */
bool conns_turn(struct worker *w);
/* Reads again from TLS connections that stopped with input buffered. */
void conns_read_again(struct worker *w);
void conns_close_all(struct worker *w, const char *reason);
/* Shutdown: conn_closed for those that still need it, then free them all. */
void conns_free_all(struct worker *w);

/* worker_link.c */
/* Before anything may queue a broker message. */
void link_init(struct worker *w);
int link_start(struct worker *w, const char **error_r);
/* Sends the frame built so far. */
void link_flush(struct worker *w);
/* Reads and handles what the broker sent (bounded); returns true when more
 * waits or the frame left unsent can go now. */
bool link_drain(struct worker *w);
bool link_pending(struct worker *w);
void link_bye(struct worker *w);
/* Shutdown: every pending request gets its done() with "shutting down". */
void link_fail_requests(struct worker *w);
void link_stop(struct worker *w);

#endif
