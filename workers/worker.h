/*
 * The worker skeleton: everything a Switchboard worker process shares, so
 * that a protocol is a small callback table (struct worker_proto) and a
 * main() of a few lines:
 *
 *     int main(int argc, char **argv) { return worker_main(argc, argv, &xmpp_proto); }
 *
 * worker_main() reads the configuration, takes the listening sockets the
 * supervisor handed over (proc.h), builds TLS server contexts, drops
 * privileges, connects to the broker (HELLO, heartbeats, re-announce after a
 * broker restart), runs the libev loop, reports readiness and connection
 * counts, and exits when the supervisor's life pipe closes or on SIGTERM.
 *
 * Connections have bounded input and output buffers, TCP_NODELAY, optional
 * TLS (direct or STARTTLS), an idle timeout, and coalesced writes: output is
 * queued and flushed once per loop turn. A connection is never freed inside
 * one of its own callbacks: conn_close() schedules it.
 */
#ifndef SB_WORKER_H
#define SB_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "shared/config.h"
#include "shared/ipc.h"

struct ev_loop;
struct worker;
struct conn;

/* An inherited listener with its configuration. */
struct worker_listener {
    const struct config_listener *config;
    int fd;
};

struct worker_proto {
    enum sb_worker_kind kind;
    /* Bytes of protocol state allocated (zeroed) with each connection;
     * conn_data() returns it. */
    size_t conn_state_size;

    /* After the configuration is read and the loop exists, before the
     * broker link. -1 with *error_r: the worker exits 78 (configuration). */
    int (*init)(struct worker *w, const char **error_r);
    void (*deinit)(struct worker *w);

    /* A TCP connection was accepted (and for direct-TLS listeners, its
     * handshake completed). */
    void (*conn_open)(struct conn *c);
    /* Bytes arrived. Returns how many were consumed (the rest stay buffered
     * and are offered again with more), or -1 after conn_close(). When the
     * input buffer is full and nothing is consumed, the skeleton calls
     * conn_overflow (or closes the connection when it is NULL). */
    ssize_t (*conn_input)(struct conn *c, const uint8_t *data, size_t len);
    /* The input buffer is full: the protocol sends its own error, then the
     * skeleton closes the connection. */
    void (*conn_overflow)(struct conn *c);
    /* The connection is going away (peer closed, error, timeout or
     * conn_close()); free protocol state here. reason is for logs. Called
     * once for each connection that got conn_open, at the end of the loop
     * turn, after which worker_conn_find no longer returns it. */
    void (*conn_closed)(struct conn *c, const char *reason);
    /* The idle timer fired; NULL means close. */
    void (*conn_timeout)(struct conn *c);

    /* A datagram on a UDP listener. */
    void (*datagram)(struct worker *w, const struct worker_listener *l, const uint8_t *data,
                     size_t len, const struct sockaddr *peer, socklen_t peer_len);

    /* One message from the broker (IPC_STANZA, IPC_REQUEST, IPC_RESPONSE
     * for requests not made with worker_request). */
    void (*ipc_message)(struct worker *w, const struct ipc_msg *m);
    /* Called after each batch of broker messages has been handled. */
    void (*ipc_batch_end)(struct worker *w);
    /* The broker welcomed this worker (first time or after a broker
     * restart): announce every route, session and interest held. */
    void (*announce)(struct worker *w);
};

/* Runs the worker; returns the process exit code. */
int worker_main(int argc, char **argv, const struct worker_proto *proto);

struct ev_loop *worker_loop(struct worker *w);
const struct config *worker_config(struct worker *w);
/* The protocol's own global state. */
void *worker_data(struct worker *w);
void worker_set_data(struct worker *w, void *data);
/* This worker's listeners (UDP ones too), for sending datagrams. */
const struct worker_listener *worker_listeners(struct worker *w, size_t *count_r);
/* Open connections. */
unsigned worker_conn_count(struct worker *w);
struct conn *worker_conn_find(struct worker *w, uint64_t id);
/* Stops the loop; worker_main returns code. */
void worker_stop(struct worker *w, int code);

/*
 * Talking to the broker. Messages are appended to one frame that is sent
 * at the end of the loop turn (or earlier when large). Usage:
 *     struct ipc_writer *wr = worker_ipc_begin(w, IPC_STANZA);
 *     ipc_put_...(wr, ...);
 *     worker_ipc_end(w);
 * A message that cannot be encoded is dropped and counted.
 */
struct ipc_writer *worker_ipc_begin(struct worker *w, enum ipc_type type);
bool worker_ipc_end(struct worker *w);
/* True once the broker has welcomed this worker (and not lost since). */
bool worker_ipc_ready(struct worker *w);

/* Asynchronous request to a service ("store", "broker"). done() is called
 * exactly once: with the response, or with a synthesized response whose code
 * is IPC_CODE_UNAVAILABLE when none arrives within timeout_ms. Returns the
 * request id. */
typedef void worker_request_cb(void *ctx, const struct ipc_msg *response);
uint32_t worker_request(struct worker *w, const char *service, const char *op,
                        const struct ipc_slice *args, size_t n_args, int timeout_ms,
                        worker_request_cb *done, void *ctx);

/* Connections. */
uint64_t conn_id(const struct conn *c);
struct worker *conn_worker(const struct conn *c);
void *conn_data(struct conn *c);
const struct worker_listener *conn_listener(const struct conn *c);
/* "ip:port" of the peer, for logs. */
const char *conn_peer(const struct conn *c);
bool conn_is_tls(const struct conn *c);
/* Queues bytes; they are sent at the end of the loop turn. When the output
 * cap is exceeded the connection is closed as too slow (and counted). */
void conn_write(struct conn *c, const void *data, size_t len);
void conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Starts TLS on a plain connection (STARTTLS): call after writing the
 * protocol's "proceed"; any input already buffered is discarded, as
 * RFC 6120 §5.4.3.3 asks. -1 when the worker has no TLS context. */
int conn_starttls(struct conn *c);
/* The connection's OpenSSL session (an SSL *) once TLS is up, else NULL:
 * for what only the protocol knows to ask of it, such as SASL channel
 * bindings (RFC 5929, RFC 9266). Do not read or write through it. */
void *conn_ssl(struct conn *c);
/* Stops reading from the peer for the given seconds (a rate shaper): input
 * waits in the socket buffers, so TCP slows the sender down. Calling it
 * again while paused restarts the delay; 0 resumes at once. */
void conn_pause_input(struct conn *c, double seconds);
/* (Re)arms the idle timer; 0 disables it. */
void conn_set_timeout(struct conn *c, double seconds);
/* Flushes queued output, then closes. Safe to call from the connection's
 * own callbacks, and more than once. */
void conn_close(struct conn *c, const char *reason);

#endif
