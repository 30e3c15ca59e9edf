/*
 * The worker's link to the broker: one ZeroMQ DEALER connected to the
 * broker's ROUTER, and the asynchronous requests made over it.
 *
 * The link says HELLO first, and again whenever the broker asks (REHELLO)
 * or has been silent for heartbeat_ms * heartbeat_misses; the WELCOME that
 * answers the latest HELLO makes the protocol announce its routes, sessions
 * and interests (again), since the broker's tables are soft state and a
 * HELLO starts a peer over. After a silence the socket itself is replaced, so
 * that what was queued for the lost broker is discarded instead of reaching
 * its successor before the HELLO (the Paranoid Pirate worker does the same).
 *
 * Outgoing messages are appended to one frame (worker_ipc_begin/end) that
 * the end of the loop turn sends (link_flush). Every message is decoded
 * once before it is accepted into the frame, because the broker answers a
 * malformed frame by disconnecting the whole worker: a protocol's mistake
 * costs one message, not every user's connection.
 */
#include "workers/worker_private.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <zmq.h>

#include "shared/log.h"

/* Reconnection to a broker that is gone (ZeroMQ's own backoff). */
#define LINK_RECONNECT_IVL_MS 100
#define LINK_RECONNECT_IVL_MAX_MS 1000
/* Longest wait for a WELCOME before trying a new socket (the first wait is
 * heartbeat_ms * heartbeat_misses, doubling up to this). */
#define LINK_RETRY_MAX_S 5.0
/* Request structs kept for reuse. */
#define LINK_REQUEST_FREE_MAX 256
/* Bytes of a bad frame quoted in the log. */
#define LINK_SAMPLE_BYTES 48

static void link_hello(struct worker *w);
static double link_lost_after(const struct worker *w);

static void link_dropped(struct worker *w, const char *what, const char *why)
{
    struct worker_link *k = &w->link;
    unsigned long suppressed;

    k->dropped++;
    if (worker_ratelimit(w, &k->drop_log, &suppressed))
        log_warnx("broker link: %s dropped: %s (%lu dropped in all)", what, why, k->dropped);
}

/* --- building frames --- */

struct ipc_writer *worker_ipc_begin(struct worker *w, enum ipc_type type)
{
    ipc_msg_begin(&w->link.out, type);
    return &w->link.out;
}

bool worker_ipc_end(struct worker *w)
{
    struct ipc_writer *wr = &w->link.out;
    size_t start = wr->msg_start;
    uint32_t before = wr->n_msgs;
    uint8_t type = start > 0 && start < wr->len ? wr->buf[start] : 0;
    struct ipc_cursor cur;
    struct ipc_msg m;
    const char *error;

    if (!ipc_msg_end(wr)) {
        link_dropped(w, ipc_type_name(type), "too large for a frame");
        return false;
    }
    cur.pos = wr->buf + start;
    cur.end = wr->buf + wr->len;
    if (ipc_frame_next(&cur, &m, &error) != 1) {
        /* Take the message back out of the frame. */
        wr->len = before == 0 ? 0 : start;
        wr->n_msgs = before;
        link_dropped(w, ipc_type_name(type), error);
        return false;
    }
    if (wr->len >= IPC_FLUSH_AT)
        link_flush(w);
    return true;
}

bool worker_ipc_ready(struct worker *w)
{
    return w->link.ready;
}

void link_flush(struct worker *w)
{
    struct worker_link *k = &w->link;
    const uint8_t *frame;
    size_t len;
    unsigned long suppressed;

    if (k->zsock == NULL)
        return;
    frame = ipc_writer_frame(&k->out, &len);
    if (frame == NULL)
        return;
    if (zmq_send(k->zsock, frame, len, ZMQ_DONTWAIT) >= 0) {
        ipc_writer_reset(&k->out);
        return;
    }
    if (errno == EAGAIN || errno == EINTR) {
        /* The queue to the broker is full. The frame stays; messages
         * join it until it reaches IPC_MAX_FRAME, and past that they are
         * dropped and counted (worker_ipc_end). ZMQ_FD fires when there is
         * room again. */
        if (worker_ratelimit(w, &k->send_log, &suppressed))
            log_warnx("broker link: send queue full; %" PRIu32 " messages (%zu bytes) waiting",
                      k->out.n_msgs, len);
        return;
    }
    k->dropped += k->out.n_msgs;
    log_warnx("broker link: send: %s: %" PRIu32 " messages dropped", zmq_strerror(errno),
              k->out.n_msgs);
    ipc_writer_reset(&k->out);
}

bool link_pending(struct worker *w)
{
    size_t len;

    return ipc_writer_frame(&w->link.out, &len) != NULL && (w->link.events & ZMQ_POLLOUT);
}

/* --- requests --- */

static void request_recycle(struct worker_link *k, struct link_request *r)
{
    if (k->n_req_free < LINK_REQUEST_FREE_MAX) {
        r->next_free = k->req_free;
        k->req_free = r;
        k->n_req_free++;
    } else {
        free(r);
    }
}

/* Takes the request out of the table and calls done() with msg, or with a
 * synthesized response when msg is NULL. */
static void request_finish(struct worker *w, struct link_request *r, const struct ipc_msg *msg,
                           enum ipc_code code, const char *reason)
{
    struct worker_link *k = &w->link;
    worker_request_cb *done = r->done;
    void *ctx = r->ctx;
    struct ipc_msg synth;

    hashmap_remove(&k->requests, &r->id, sizeof(r->id));
    ev_timer_stop(w->loop, &r->timer);
    if (msg == NULL) {
        memset(&synth, 0, sizeof(synth));
        synth.type = IPC_RESPONSE;
        synth.present = (UINT64_C(1) << IPC_F_WORKER) | (UINT64_C(1) << IPC_F_REQ_ID) |
                        (UINT64_C(1) << IPC_F_CODE) | (UINT64_C(1) << IPC_F_REASON);
        synth.worker = k->worker_id;
        synth.req_id = r->id;
        synth.code = code;
        synth.reason.ptr = (const uint8_t *)reason;
        synth.reason.len = (uint32_t)strlen(reason);
        msg = &synth;
    }
    /* Recycled first: done() may well make the next request. */
    request_recycle(k, r);
    done(ctx, msg);
}

static void request_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct link_request *r = t->data;

    if (r->fail_reason != NULL)
        request_finish(r->w, r, NULL, IPC_CODE_INTERNAL, r->fail_reason);
    else
        request_finish(r->w, r, NULL, IPC_CODE_UNAVAILABLE, "timeout");
}

uint32_t worker_request(struct worker *w, const char *service, const char *op,
                        const struct ipc_slice *args, size_t n_args, int timeout_ms,
                        worker_request_cb *done, void *ctx)
{
    struct worker_link *k = &w->link;
    struct link_request *r = k->req_free;
    struct ipc_writer *wr;

    if (r != NULL) {
        k->req_free = r->next_free;
        k->n_req_free--;
    } else {
        r = malloc(sizeof(*r));
        if (r == NULL)
            log_fatal(1, "out of memory for a request");
    }
    memset(r, 0, sizeof(*r));
    r->w = w;
    r->done = done;
    r->ctx = ctx;
    do {
        r->id = k->next_req_id++;
    } while (r->id == 0 || hashmap_get(&k->requests, &r->id, sizeof(r->id)) != NULL);
    if (hashmap_put(&k->requests, &r->id, sizeof(r->id), r) < 0)
        log_fatal(1, "out of memory for a request");

    wr = worker_ipc_begin(w, IPC_REQUEST);
    ipc_put_str(wr, IPC_F_TO, service);
    ipc_put_u32(wr, IPC_F_REQ_ID, r->id);
    ipc_put_str(wr, IPC_F_OP, op);
    for (size_t i = 0; i < n_args; i++)
        ipc_put_slice(wr, IPC_F_ARG, args[i]);
    if (!worker_ipc_end(w))
        r->fail_reason = "the request could not be encoded";

    /* Also when the link is down: ZeroMQ queues the frame, and the timeout
     * covers its loss. A request that could not be sent fails on the next
     * turn, never inside this call. */
    ev_timer_init(&r->timer, request_timeout_cb,
                  r->fail_reason != NULL ? 0.0 : (timeout_ms > 0 ? timeout_ms : 0) / 1000.0, 0.0);
    r->timer.data = r;
    ev_timer_start(w->loop, &r->timer);
    return r->id;
}

static bool link_response(struct worker *w, const struct ipc_msg *m)
{
    uint32_t id = m->req_id;
    struct link_request *r = hashmap_get(&w->link.requests, &id, sizeof(id));

    if (r == NULL)
        return false;
    request_finish(w, r, m, IPC_CODE_OK, NULL);
    return true;
}

void link_fail_requests(struct worker *w)
{
    struct worker_link *k = &w->link;
    /* A done() that asks again would keep this going forever. */
    size_t budget = hashmap_count(&k->requests) * 2 + 64;

    while (hashmap_count(&k->requests) > 0 && budget-- > 0) {
        size_t pos = 0;
        void *value;

        if (!hashmap_next(&k->requests, &pos, NULL, NULL, &value))
            break;
        request_finish(w, value, NULL, IPC_CODE_UNAVAILABLE, "shutting down");
    }
}

/* --- receiving --- */

static const char *slice_sample(struct ipc_slice s, char *out, size_t size)
{
    return log_sample(out, size, s.ptr, s.len);
}

static void link_malformed(const char *error, const uint8_t *at, size_t len)
{
    char sample[4 * LINK_SAMPLE_BYTES + 1];

    log_error(
        "broker link: malformed frame from the broker (%s), rest dropped: %s", error,
        log_sample(sample, sizeof(sample), at, len < LINK_SAMPLE_BYTES ? len : LINK_SAMPLE_BYTES));
}

static void link_welcome(struct worker *w, const struct ipc_msg *m)
{
    struct worker_link *k = &w->link;
    bool first = !k->welcomed;

    /* The broker answers every HELLO with one WELCOME, in order, and
     * forgets what a peer announced whenever it says HELLO. So only the
     * answer to the latest HELLO counts, and it always calls for a full
     * announce: a WELCOME to an earlier HELLO would be followed by the
     * broker wiping what we announced in reply to it. */
    if (++k->welcomes < k->hellos) {
        log_debug("broker link: WELCOME to an earlier HELLO ignored");
        return;
    }
    k->welcomes = k->hellos;
    k->retry_after = link_lost_after(w);
    k->worker_id = m->worker;
    k->epoch = m->epoch;
    k->ready = true;
    k->welcomed = true;
    log_info("broker link: welcomed as worker %" PRIu32 " (broker epoch %" PRIx64 ")%s", m->worker,
             m->epoch, first ? "" : "; announcing again");
    if (w->proto->announce != NULL)
        w->proto->announce(w);
}

static void link_message(struct worker *w, const struct ipc_msg *m)
{
    char reason[256];

    switch ((enum ipc_type)m->type) {
    case IPC_LINK_WELCOME:
        link_welcome(w, m);
        return;
    case IPC_LINK_HEARTBEAT:
        return;
    case IPC_LINK_REHELLO:
        log_info("broker link: the broker asks for HELLO again (%s)",
                 slice_sample(m->reason, reason, sizeof(reason)));
        link_hello(w);
        return;
    case IPC_LINK_DISCONNECT:
        log_error("broker link: disconnected by the broker (%s); exiting",
                  slice_sample(m->reason, reason, sizeof(reason)));
        worker_abort(w, 1);
        return;
    case IPC_RESPONSE:
        if (link_response(w, m))
            return;
        log_debug("broker link: response to request %" PRIu32 " not made here (or late)",
                  m->req_id);
        break;
    case IPC_STANZA:
    case IPC_REQUEST:
        break;
    default:
        log_warnx("broker link: unexpected %s from the broker; ignored", ipc_type_name(m->type));
        return;
    }
    if (w->proto->ipc_message != NULL)
        w->proto->ipc_message(w, m);
}

static void link_frame(struct worker *w, const uint8_t *data, size_t len)
{
    struct ipc_cursor cur;
    struct ipc_msg m;
    const char *error;
    int r;

    w->link.last_rx = ev_now(w->loop);
    if (ipc_frame_open(&cur, data, len, &error) < 0) {
        link_malformed(error, data, len);
        return;
    }
    while ((r = ipc_frame_next(&cur, &m, &error)) == 1) {
        link_message(w, &m);
        if (w->aborting)
            return;
    }
    if (r < 0)
        link_malformed(error, cur.pos, (size_t)(cur.end - cur.pos));
}

bool link_drain(struct worker *w)
{
    struct worker_link *k = &w->link;
    void *sock = k->zsock;
    int handled = 0, events = 0;
    size_t events_len = sizeof(events);

    if (sock == NULL)
        return false;
    /* ZMQ_FD is edge-triggered, and it does not mean "readable": it fires
     * when the socket's state changes, and it is reset by any zmq call on
     * the socket, zmq_send and ZMQ_EVENTS included. So after it fires, and
     * after every send, the socket must be read until EAGAIN (or
     * ZMQ_EVENTS checked) before the loop sleeps; otherwise a message that
     * arrived meanwhile sits unseen until some unrelated wake-up. The turn
     * end calls this after its last send, and a bounded batch that leaves
     * input behind makes the loop come straight back. */
    while (handled < WORKER_LINK_BURST) {
        zmq_msg_t msg;

        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
            int e = errno;

            zmq_msg_close(&msg);
            if (e == EINTR)
                continue;
            if (e != EAGAIN)
                log_warnx("broker link: receive: %s", zmq_strerror(e));
            break;
        }
        handled++;
        if (zmq_msg_more(&msg)) {
            /* The broker sends single-part messages; drop every part. */
            log_error("broker link: multi-part message from the broker; dropped");
            while (zmq_msg_more(&msg) && zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) >= 0)
                ;
            zmq_msg_close(&msg);
            continue;
        }
        link_frame(w, zmq_msg_data(&msg), zmq_msg_size(&msg));
        zmq_msg_close(&msg);
        /* DISCONNECT, or the socket was replaced while handling. */
        if (w->aborting || k->zsock != sock)
            break;
    }
    if (handled > 0 && !w->aborting && w->proto->ipc_batch_end != NULL)
        w->proto->ipc_batch_end(w);
    if (k->zsock != NULL && zmq_getsockopt(k->zsock, ZMQ_EVENTS, &events, &events_len) == 0)
        k->events = events;
    return !w->aborting && (k->events & ZMQ_POLLIN) != 0;
}

static void link_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker *w = io->data;

    /* What the handlers queued is sent at the end of the turn. */
    if (link_drain(w))
        worker_kick(w);
}

/* --- the socket --- */

static int link_socket_open(struct worker *w, const char **error_r)
{
    static char msg[700];
    struct worker_link *k = &w->link;
    char endpoint[600];
    int linger = 0, ivl = LINK_RECONNECT_IVL_MS, ivl_max = LINK_RECONNECT_IVL_MAX_MS;
    int64_t max_size = IPC_MAX_FRAME;
    int fd;
    size_t fd_len = sizeof(fd);

    config_broker_endpoint(w->config, endpoint, sizeof(endpoint));
    k->zsock = zmq_socket(k->zctx, ZMQ_DEALER);
    if (k->zsock == NULL || zmq_setsockopt(k->zsock, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
        zmq_setsockopt(k->zsock, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl)) < 0 ||
        zmq_setsockopt(k->zsock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof(ivl_max)) < 0 ||
        /* Bigger frames are not ours: ZeroMQ drops them unread. */
        zmq_setsockopt(k->zsock, ZMQ_MAXMSGSIZE, &max_size, sizeof(max_size)) < 0 ||
        zmq_connect(k->zsock, endpoint) < 0 || zmq_getsockopt(k->zsock, ZMQ_FD, &fd, &fd_len) < 0) {
        snprintf(msg, sizeof(msg), "broker link %s: %s", endpoint, zmq_strerror(errno));
        *error_r = msg;
        if (k->zsock != NULL)
            zmq_close(k->zsock);
        k->zsock = NULL;
        return -1;
    }
    k->events = 0;
    /* A new socket is a new peer for the broker: earlier HELLOs are moot. */
    k->hellos = 0;
    k->welcomes = 0;
    ev_io_init(&k->zio, link_io_cb, fd, EV_READ);
    k->zio.data = w;
    ev_io_start(w->loop, &k->zio);
    return 0;
}

static void link_socket_close(struct worker *w, int linger_ms)
{
    struct worker_link *k = &w->link;

    if (k->zsock == NULL)
        return;
    ev_io_stop(w->loop, &k->zio);
    zmq_setsockopt(k->zsock, ZMQ_LINGER, &linger_ms, sizeof(linger_ms));
    zmq_close(k->zsock);
    k->zsock = NULL;
}

static void link_hello(struct worker *w)
{
    struct worker_link *k = &w->link;
    struct ipc_writer *wr;
    size_t len;

    /* HELLO must come first: whatever is still unsent was meant for a
     * broker that no longer knows us, and would only be refused. The
     * announce after WELCOME restores the state it carried. */
    if (ipc_writer_frame(&k->out, &len) != NULL) {
        log_debug("broker link: %" PRIu32 " unsent messages dropped before HELLO", k->out.n_msgs);
        k->dropped += k->out.n_msgs;
        ipc_writer_reset(&k->out);
    }
    k->ready = false;
    k->hellos++;
    wr = worker_ipc_begin(w, IPC_LINK_HELLO);
    ipc_put_str(wr, IPC_F_KIND, w->name);
    ipc_put_u32(wr, IPC_F_PID, (uint32_t)getpid());
    ipc_put_u64(wr, IPC_F_INSTANCE, k->instance);
    worker_ipc_end(w);
}

static double link_lost_after(const struct worker *w)
{
    const struct config *cfg = w->config;

    return cfg->broker.heartbeat_ms * (double)cfg->broker.heartbeat_misses / 1000.0;
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;
    struct worker_link *k = &w->link;
    double silent = ev_now(loop) - k->last_rx;
    const char *error;

    if (silent > (k->ready ? link_lost_after(w) : k->retry_after)) {
        if (k->ready) {
            log_warnx("broker link: nothing from the broker for %.1f s: lost; connecting again",
                      silent);
        } else {
            log_debug("broker link: no WELCOME after %.1f s; connecting again", silent);
            /* A HELLO queued for a broker that is down waits in ZeroMQ and
             * goes out when the broker is back; a new socket only helps
             * when the HELLO went to a broker that died reading it. Each
             * new socket is a new peer that replaces the last one, so a
             * slow broker must not see them in quick succession. */
            k->retry_after *= 2;
            if (k->retry_after > LINK_RETRY_MAX_S)
                k->retry_after = LINK_RETRY_MAX_S;
        }
        link_socket_close(w, 0);
        if (link_socket_open(w, &error) < 0) {
            log_error("%s", error);
            worker_abort(w, 1);
            return;
        }
        k->last_rx = ev_now(loop);
        link_hello(w);
        return;
    }
    if (k->ready) {
        struct ipc_writer *wr = worker_ipc_begin(w, IPC_LINK_HEARTBEAT);
        ipc_put_u32(wr, IPC_F_CONNS, w->n_conns);
        worker_ipc_end(w);
    }
}

void link_init(struct worker *w)
{
    struct worker_link *k = &w->link;

    ipc_writer_init(&k->out);
    hashmap_init(&k->requests);
    k->next_req_id = 1;
}

int link_start(struct worker *w, const char **error_r)
{
    struct worker_link *k = &w->link;
    double beat = w->config->broker.heartbeat_ms / 1000.0;
    struct timeval tv;

    gettimeofday(&tv, NULL);
    k->instance = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    k->zctx = zmq_ctx_new();
    if (k->zctx == NULL) {
        *error_r = "cannot create the ZeroMQ context";
        return -1;
    }
    if (link_socket_open(w, error_r) < 0)
        return -1;
    k->last_rx = ev_now(w->loop);
    k->retry_after = link_lost_after(w);
    ev_timer_init(&k->heartbeat, heartbeat_cb, beat, beat);
    k->heartbeat.data = w;
    ev_timer_start(w->loop, &k->heartbeat);
    link_hello(w);
    return 0;
}

void link_bye(struct worker *w)
{
    struct worker_link *k = &w->link;

    if (k->zsock == NULL || !k->ready)
        return;
    worker_ipc_begin(w, IPC_LINK_BYE);
    worker_ipc_end(w);
    link_flush(w);
    k->bye = true;
}

void link_stop(struct worker *w)
{
    struct worker_link *k = &w->link;
    struct link_request *r;
    void *value;
    size_t pos;

    if (w->loop != NULL)
        ev_timer_stop(w->loop, &k->heartbeat);
    /* Requests still here were not failed (their done() kept asking). */
    while (pos = 0, hashmap_next(&k->requests, &pos, NULL, NULL, &value)) {
        r = value;
        hashmap_remove(&k->requests, &r->id, sizeof(r->id));
        if (w->loop != NULL)
            ev_timer_stop(w->loop, &r->timer);
        free(r);
    }
    hashmap_deinit(&k->requests);
    while ((r = k->req_free) != NULL) {
        k->req_free = r->next_free;
        free(r);
    }
    k->n_req_free = 0;
    link_socket_close(w, k->bye ? WORKER_BYE_LINGER_MS : 0);
    if (k->zctx != NULL) {
        while (zmq_ctx_term(k->zctx) < 0 && errno == EINTR)
            ;
        k->zctx = NULL;
    }
    ipc_writer_free(&k->out);
}
