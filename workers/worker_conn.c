/*
 * Connections of the worker skeleton: accept, bounded input and output
 * buffers, TLS (direct and STARTTLS), idle timers and the deferred close.
 *
 * Life of a connection: accepted (and for direct TLS, handshaken), then
 * conn_open; input is read into a buffer capped at limits.max_input and
 * offered to conn_input, which consumes whole messages; output is appended
 * to a buffer capped at limits.max_output and written at the end of the
 * loop turn (conns_turn). conn_close() only marks the connection: at the
 * end of the turn conn_closed is called and the connection leaves the id
 * map, its queued output is flushed (for at most WORKER_LINGER_S), TLS says
 * close_notify once, the write side is shut and input is drained until the
 * peer closes too (for at most WORKER_DRAIN_S), and only then is the memory
 * freed. Nothing is ever freed inside a callback of the connection.
 */
#include "workers/worker_private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "shared/log.h"
#include "shared/tls.h"

static void conn_read_cb(struct ev_loop *loop, ev_io *io, int revents);
static void conn_write_cb(struct ev_loop *loop, ev_io *io, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void conn_pause_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void conn_read(struct conn *c);

static size_t max_input(const struct worker *w)
{
    return (size_t)w->config->limits.max_input;
}

static size_t max_output(const struct worker *w)
{
    return (size_t)w->config->limits.max_output;
}

static void conn_mark_dirty(struct conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = c->w->dirty;
    c->w->dirty = c;
}

static void timer_arm(struct conn *c, double after)
{
    ev_timer_stop(c->w->loop, &c->timer);
    if (after > 0) {
        ev_timer_set(&c->timer, after, 0);
        ev_timer_start(c->w->loop, &c->timer);
    }
}

static double handshake_timeout(const struct conn *c)
{
    return c->timeout > 0 ? c->timeout : WORKER_HANDSHAKE_S;
}

/* Output is gone for good: the connection is freed without lingering. */
static void conn_drop_output(struct conn *c)
{
    c->out_head = 0;
    c->out_len = 0;
    c->plain_left = 0;
    c->aborted = true;
    ev_io_stop(c->w->loop, &c->wio);
}

/* Closes without flushing: the socket failed, or the peer is too slow. */
static void conn_abort(struct conn *c, const char *reason)
{
    conn_close(c, reason);
    conn_drop_output(c);
    ev_timer_stop(c->w->loop, &c->timer);
    conn_mark_dirty(c);
}

/* The socket or the TLS session failed: no close_notify, no lingering. */
static void conn_fail(struct conn *c, const char *what)
{
    char reason[sizeof(c->reason)];

    c->tls_broken = true;
    c->peer_eof = true;
    snprintf(reason, sizeof(reason), "%s", what);
    conn_abort(c, reason);
}

static void conn_fail_tls(struct conn *c, int ssl_error, const char *what)
{
    char reason[sizeof(c->reason)];

    if (ssl_error == SSL_ERROR_SYSCALL) {
        snprintf(reason, sizeof(reason), "%s: %s", what,
                 errno != 0 ? strerror(errno) : "connection lost");
        ERR_clear_error();
    } else {
        snprintf(reason, sizeof(reason), "%s: %s", what, tls_error_string("protocol error"));
    }
    conn_fail(c, reason);
}

static void peer_format(const struct sockaddr_storage *ss, char *out, size_t size)
{
    char host[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(out, size, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(out, size, "[%s]:%u", host, (unsigned)ntohs(sin6->sin6_port));
    } else {
        snprintf(out, size, "unknown");
    }
}

/* --- accept --- */

static void conn_opened(struct conn *c)
{
    c->opened = true;
    log_debug("conn %" PRIu64 " [%s]: open on %s%s", c->id, c->peer, c->listener->config->name,
              c->ssl != NULL ? " (TLS)" : "");
    if (c->w->proto->conn_open != NULL)
        c->w->proto->conn_open(c);
}

static void conn_new(struct worker *w, const struct worker_listener *l, int fd,
                     const struct sockaddr_storage *ss)
{
    struct conn *c = calloc(1, sizeof(*c) + w->proto->conn_state_size);
    int one = 1;

    if (c == NULL) {
        log_warnx("listener %s: out of memory: dropping a connection", l->config->name);
        close(fd);
        return;
    }
    c->w = w;
    c->listener = l;
    c->fd = fd;
    c->id = w->next_conn_id++;
    peer_format(ss, c->peer, sizeof(c->peer));
    if (hashmap_put(&w->conns, &c->id, sizeof(c->id), c) < 0) {
        log_warnx("listener %s: out of memory: dropping a connection", l->config->name);
        close(fd);
        free(c);
        return;
    }
    /* Replies are small and latency matters more than packet count; the
     * skeleton already coalesces writes per loop turn. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        log_debug("conn %" PRIu64 " [%s]: TCP_NODELAY: %s", c->id, c->peer, strerror(errno));
    c->next = w->all;
    if (w->all != NULL)
        w->all->prev = c;
    w->all = c;
    w->n_conns++;
    worker_conns_changed(w);

    ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
    c->rio.data = c;
    ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
    c->wio.data = c;
    ev_init(&c->timer, conn_timer_cb);
    c->timer.data = c;
    ev_init(&c->pause, conn_pause_cb);
    c->pause.data = c;
    c->timeout = w->config->limits.idle_timeout_s;
    c->last_input = ev_now(w->loop);
    ev_io_start(w->loop, &c->rio);

    if (l->config->tls == CONFIG_TLS_DIRECT) {
        c->state = CONN_HANDSHAKE;
        timer_arm(c, handshake_timeout(c));
        ERR_clear_error();
        c->ssl = SSL_new(w->tls);
        if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
            conn_fail_tls(c, SSL_ERROR_SSL, "TLS setup");
            return;
        }
        SSL_set_accept_state(c->ssl);
        log_debug("conn %" PRIu64 " [%s]: accepted on %s, TLS handshake", c->id, c->peer,
                  l->config->name);
        return;
    }
    c->state = CONN_OPEN;
    timer_arm(c, c->timeout);
    conn_opened(c);
}

void conn_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct listener_watch *lw = io->data;
    struct worker *w = lw->w;
    int cap = w->config->limits.max_connections;
    unsigned long suppressed;

    for (int i = 0; i < WORKER_ACCEPT_BURST; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (worker_ratelimit(w, &w->accept_log, &suppressed))
                log_warn("listener %s: accept (%lu similar suppressed)", lw->listener->config->name,
                         suppressed);
            /* Out of descriptors or memory: the pending connection stays in
             * the backlog and the listener stays readable, so polling on
             * would spin. Pause and try again shortly. */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                ev_io_stop(loop, io);
                ev_timer_set(&lw->pause, WORKER_ACCEPT_PAUSE_S, 0);
                ev_timer_start(loop, &lw->pause);
            }
            return;
        }
        if (cap > 0 && w->n_conns >= (unsigned)cap) {
            char peer[sizeof(((struct conn *)0)->peer)];

            w->refused++;
            if (worker_ratelimit(w, &w->refuse_log, &suppressed)) {
                peer_format(&ss, peer, sizeof(peer));
                log_warnx("listener %s: connection limit %d reached: refused %s "
                          "(%lu refused in all)",
                          lw->listener->config->name, cap, peer, w->refused);
            }
            close(fd);
            continue;
        }
        conn_new(w, lw->listener, fd, &ss);
    }
}

/* --- input --- */

static void again_add(struct conn *c)
{
    struct worker *w = c->w;

    if (w->n_again == w->again_cap) {
        size_t cap = w->again_cap ? w->again_cap * 2 : 16;
        uint64_t *n = realloc(w->again, cap * sizeof(*n));

        if (n == NULL) {
            /* The bytes stay in the TLS buffer until the peer sends more. */
            log_warnx("conn %" PRIu64 " [%s]: out of memory", c->id, c->peer);
            return;
        }
        w->again = n;
        w->again_cap = cap;
    }
    w->again[w->n_again++] = c->id;
    ev_check_start(w->loop, &w->again_check);
    worker_kick(w);
}

void conns_read_again(struct worker *w)
{
    size_t n = w->n_again;

    /* Reads below may queue ids again; they are kept for the next turn. */
    for (size_t i = 0; i < n; i++) {
        struct conn *c = worker_conn_find(w, w->again[i]);

        if (c != NULL && !c->closing && c->state == CONN_OPEN)
            conn_read(c);
    }
    memmove(w->again, w->again + n, (w->n_again - n) * sizeof(*w->again));
    w->n_again -= n;
}

/* Offers the buffered input to the protocol and keeps the unconsumed tail. */
static void conn_deliver(struct conn *c)
{
    struct worker *w = c->w;
    ssize_t used;

    if (w->proto->conn_input == NULL) {
        c->in_len = 0;
        return;
    }
    c->in_input = true;
    used = w->proto->conn_input(c, c->in, c->in_len);
    c->in_input = false;
    if (c->discard_input) {
        /* STARTTLS: whatever followed the command was sent in clear before
         * the handshake and must not be trusted (RFC 6120 §5.4.3.3). */
        c->discard_input = false;
        c->in_len = 0;
        return;
    }
    if (used < 0) {
        if (!c->closing)
            conn_close(c, "protocol error");
        return;
    }
    if ((size_t)used > c->in_len)
        log_panic("conn %" PRIu64 ": conn_input consumed %zd of %zu bytes", c->id, used, c->in_len);
    if (used > 0) {
        memmove(c->in, c->in + used, c->in_len - (size_t)used);
        c->in_len -= (size_t)used;
    }
    if (c->closing)
        return;
    if (used == 0 && c->in_len >= max_input(w)) {
        log_info("conn %" PRIu64 " [%s]: %zu bytes of input without a complete message", c->id,
                 c->peer, c->in_len);
        if (w->proto->conn_overflow != NULL)
            w->proto->conn_overflow(c);
        conn_close(c, "input too long");
        return;
    }
    if (c->in_len == 0 && c->in_cap > WORKER_BUFFER_KEEP) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static int conn_in_reserve(struct conn *c)
{
    size_t cap = max_input(c->w);

    if (c->in_len < c->in_cap)
        return 0;
    if (c->in_cap < cap) {
        size_t ncap = c->in_cap ? c->in_cap * 2 : WORKER_BUFFER_MIN;
        uint8_t *n;

        if (ncap > cap)
            ncap = cap;
        n = realloc(c->in, ncap);
        if (n == NULL) {
            conn_fail(c, "out of memory");
            return -1;
        }
        c->in = n;
        c->in_cap = ncap;
        return 0;
    }
    /* conn_deliver closes a connection whose full buffer was not consumed. */
    log_panic("conn %" PRIu64 ": input buffer full while reading", c->id);
}

static void conn_read(struct conn *c)
{
    struct worker *w = c->w;

    for (int i = 0; i < WORKER_READ_BURST; i++) {
        size_t room;
        ssize_t n;

        if (c->closing || c->state != CONN_OPEN || c->paused)
            return;
        if (conn_in_reserve(c) < 0)
            return;
        room = c->in_cap - c->in_len;
        if (c->ssl != NULL) {
            int r;

            ERR_clear_error();
            r = SSL_read(c->ssl, c->in + c->in_len, room > INT_MAX ? INT_MAX : (int)room);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);

                switch (e) {
                case SSL_ERROR_WANT_READ:
                    return;
                case SSL_ERROR_WANT_WRITE:
                    /* A TLS 1.3 key update must be answered first. */
                    c->read_wants_write = true;
                    ev_io_start(w->loop, &c->wio);
                    return;
                case SSL_ERROR_ZERO_RETURN:
                    c->peer_eof = true;
                    conn_close(c, "peer closed");
                    return;
                default:
                    conn_fail_tls(c, e, "TLS read");
                    return;
                }
            }
            n = r;
        } else {
            n = recv(c->fd, c->in + c->in_len, room, 0);
            if (n == 0) {
                c->peer_eof = true;
                conn_close(c, "peer closed");
                return;
            }
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                conn_fail(c, strerror(errno));
                return;
            }
        }
        c->in_len += (size_t)n;
        c->last_input = ev_now(w->loop);
        conn_deliver(c);
        /* A short plain read emptied the socket; TLS reads return one
         * record at a time, so only WANT_READ says that. */
        if (c->ssl == NULL && (size_t)n < room)
            return;
    }
    /* The socket is level-triggered and brings us back, but bytes already
     * decrypted inside OpenSSL do not show on it. */
    if (c->ssl != NULL && !c->closing && c->state == CONN_OPEN && !c->paused &&
        SSL_has_pending(c->ssl))
        again_add(c);
}

/* --- TLS --- */

static void conn_begin_handshake(struct conn *c)
{
    c->state = CONN_HANDSHAKE;
    timer_arm(c, handshake_timeout(c));
    ev_io_start(c->w->loop, &c->rio);
}

static void conn_handshake(struct conn *c)
{
    struct ev_loop *loop = c->w->loop;
    int r, e;

    ERR_clear_error();
    r = SSL_accept(c->ssl);
    if (r == 1) {
        c->tls_up = true;
        c->state = CONN_OPEN;
        ev_io_stop(loop, &c->wio);
        ev_io_start(loop, &c->rio);
        log_debug("conn %" PRIu64 " [%s]: %s with %s", c->id, c->peer, SSL_get_version(c->ssl),
                  SSL_get_cipher_name(c->ssl));
        c->last_input = ev_now(loop);
        timer_arm(c, c->timeout);
        if (!c->opened)
            conn_opened(c);
        if (c->out_len > 0)
            conn_mark_dirty(c);
        if (!c->closing && SSL_has_pending(c->ssl))
            again_add(c);
        return;
    }
    e = SSL_get_error(c->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        ev_io_stop(loop, &c->wio);
        return;
    case SSL_ERROR_WANT_WRITE:
        ev_io_start(loop, &c->wio);
        return;
    default:
        conn_fail_tls(c, e, "TLS handshake failed");
        return;
    }
}

int conn_starttls(struct conn *c)
{
    struct worker *w = c->w;

    if (w->tls == NULL || c->ssl != NULL || c->closing || c->state != CONN_OPEN)
        return -1;
    ERR_clear_error();
    c->ssl = SSL_new(w->tls);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        log_warnx("conn %" PRIu64 " [%s]: STARTTLS: %s", c->id, c->peer,
                  tls_error_string("cannot create a TLS session"));
        SSL_free(c->ssl);
        c->ssl = NULL;
        return -1;
    }
    SSL_set_accept_state(c->ssl);
    if (c->in_input)
        c->discard_input = true;
    else
        c->in_len = 0;
    /* Reading stops until the clear-text reply has left: the peer starts
     * its handshake only after reading it, and those bytes are OpenSSL's. */
    ev_io_stop(w->loop, &c->rio);
    c->plain_left = c->out_len;
    if (c->plain_left > 0) {
        c->state = CONN_STARTTLS_FLUSH;
        timer_arm(c, handshake_timeout(c));
        conn_mark_dirty(c);
    } else {
        conn_begin_handshake(c);
    }
    return 0;
}

/* --- output --- */

/* Writes as much queued output as the socket takes. Never frees. */
static void conn_flush(struct conn *c)
{
    struct ev_loop *loop = c->w->loop;

    /* Output waits for the handshake, whose watchers are its own. */
    if (c->state == CONN_HANDSHAKE)
        return;
    while (c->out_len > 0) {
        bool clear = c->ssl == NULL || c->state == CONN_STARTTLS_FLUSH;
        size_t len = c->state == CONN_STARTTLS_FLUSH ? c->plain_left : c->out_len;
        ssize_t n;

        if (len == 0)
            break;
        if (clear) {
            n = send(c->fd, c->out + c->out_head, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    ev_io_start(loop, &c->wio);
                    return;
                }
                conn_fail(c, strerror(errno));
                return;
            }
        } else {
            int r, e;

            /* A retry after WANT_WRITE passes the same bytes again, maybe
             * more of them and maybe moved (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER):
             * the buffer only grows at its end until a write succeeds. */
            ERR_clear_error();
            r = SSL_write(c->ssl, c->out + c->out_head, len > INT_MAX ? INT_MAX : (int)len);
            if (r <= 0) {
                e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE) {
                    ev_io_start(loop, &c->wio);
                    return;
                }
                if (e == SSL_ERROR_WANT_READ) {
                    c->write_wants_read = true;
                    ev_io_start(loop, &c->rio);
                    return;
                }
                conn_fail_tls(c, e, "TLS write");
                return;
            }
            n = r;
        }
        c->out_head += (size_t)n;
        c->out_len -= (size_t)n;
        if (c->state == CONN_STARTTLS_FLUSH)
            c->plain_left -= (size_t)n;
    }
    if (!c->read_wants_write)
        ev_io_stop(loop, &c->wio);
    if (c->out_len == 0) {
        c->out_head = 0;
        if (c->out_cap > WORKER_BUFFER_KEEP) {
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
    }
    if (c->state == CONN_STARTTLS_FLUSH && c->plain_left == 0) {
        if (c->closing)
            conn_drop_output(c);
        else
            conn_begin_handshake(c);
    }
}

/* Makes room for len more bytes of output; -1 after closing the connection
 * when the cap would be exceeded. */
static int conn_out_reserve(struct conn *c, size_t len)
{
    struct worker *w = c->w;
    size_t cap = max_output(w);

    if (len > cap - c->out_len) {
        w->too_slow++;
        log_info("conn %" PRIu64 " [%s]: more than %zu bytes of output queued "
                 "(%lu such connections closed)",
                 c->id, c->peer, cap, w->too_slow);
        conn_abort(c, "too slow: output buffer full");
        return -1;
    }
    if (c->out_head + c->out_len + len <= c->out_cap)
        return 0;
    if (c->out_head > 0) {
        memmove(c->out, c->out + c->out_head, c->out_len);
        c->out_head = 0;
    }
    if (c->out_len + len > c->out_cap) {
        size_t ncap = c->out_cap ? c->out_cap : WORKER_BUFFER_MIN;
        uint8_t *n;

        while (ncap < c->out_len + len)
            ncap *= 2;
        if (ncap > cap)
            ncap = cap;
        n = realloc(c->out, ncap);
        if (n == NULL) {
            conn_fail(c, "out of memory");
            return -1;
        }
        c->out = n;
        c->out_cap = ncap;
    }
    return 0;
}

void conn_write(struct conn *c, const void *data, size_t len)
{
    if (c->closing || len == 0)
        return;
    if (conn_out_reserve(c, len) < 0)
        return;
    memcpy(c->out + c->out_head + c->out_len, data, len);
    c->out_len += len;
    conn_mark_dirty(c);
}

void conn_printf(struct conn *c, const char *fmt, ...)
{
    char buf[512];
    va_list ap, again;
    int n;

    if (c->closing)
        return;
    va_start(ap, fmt);
    va_copy(again, ap);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(buf)) {
        conn_write(c, buf, (size_t)n);
    } else if (n >= 0 && conn_out_reserve(c, (size_t)n + 1) == 0) {
        /* Too long for the stack: format straight into the buffer. */
        vsnprintf((char *)c->out + c->out_head + c->out_len, (size_t)n + 1, fmt, again);
        c->out_len += (size_t)n;
        conn_mark_dirty(c);
    }
    va_end(again);
}

/* --- watchers --- */

/* Lingering close: discard what the peer still sends until it closes. */
static void conn_drain(struct conn *c)
{
    char buf[4096];
    size_t total = 0;

    while (total < WORKER_DRAIN_MAX) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;
    }
    c->peer_eof = true;
    ev_io_stop(c->w->loop, &c->rio);
    conn_mark_dirty(c);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = io->data;

    if (c->draining) {
        conn_drain(c);
        return;
    }
    if (c->write_wants_read) {
        c->write_wants_read = false;
        conn_flush(c);
        if (c->closing && c->out_len == 0)
            conn_mark_dirty(c);
    }
    if (c->closing) {
        if (!c->write_wants_read)
            ev_io_stop(loop, io);
        return;
    }
    switch (c->state) {
    case CONN_HANDSHAKE:
        conn_handshake(c);
        return;
    case CONN_STARTTLS_FLUSH:
        ev_io_stop(loop, io);
        return;
    case CONN_OPEN:
        if (c->paused) {
            /* Woken for a write that wanted to read; the pause holds. */
            if (!c->write_wants_read)
                ev_io_stop(loop, io);
            return;
        }
        conn_read(c);
        return;
    }
}

static void conn_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct conn *c = io->data;

    if (c->state == CONN_HANDSHAKE) {
        if (c->closing)
            ev_io_stop(loop, io);
        else
            conn_handshake(c);
        return;
    }
    if (c->read_wants_write) {
        c->read_wants_write = false;
        if (!c->closing)
            conn_read(c);
    }
    conn_flush(c);
    /* A closing connection is freed at the end of the turn. */
    if (c->closing && c->out_len == 0)
        conn_mark_dirty(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct conn *c = t->data;
    struct worker *w = c->w;
    double left;

    if (c->closing) {
        if (c->draining) {
            c->peer_eof = true;
        } else if (c->out_len > 0) {
            log_info("conn %" PRIu64 " [%s]: %zu bytes left unsent at close", c->id, c->peer,
                     c->out_len);
        }
        conn_drop_output(c);
        conn_mark_dirty(c);
        return;
    }
    if (c->state != CONN_OPEN) {
        conn_fail(c, "TLS handshake timeout");
        return;
    }
    if (c->timeout <= 0)
        return;
    /* The timer is not restarted on every read; it checks here instead. */
    left = c->last_input + c->timeout - ev_now(loop);
    if (left > 0.01) {
        timer_arm(c, left);
        return;
    }
    if (w->proto->conn_timeout != NULL)
        w->proto->conn_timeout(c);
    else
        conn_close(c, "idle timeout");
}

/* --- closing --- */

void conn_close(struct conn *c, const char *reason)
{
    struct worker *w = c->w;

    if (c->closing)
        return;
    c->closing = true;
    snprintf(c->reason, sizeof(c->reason), "%s", reason != NULL ? reason : "closed");
    ev_io_stop(w->loop, &c->rio);
    c->read_wants_write = false;
    ev_timer_stop(w->loop, &c->timer);
    ev_timer_stop(w->loop, &c->pause);
    c->paused = false;
    if (c->opened)
        log_info("conn %" PRIu64 " [%s]: closed: %s", c->id, c->peer, c->reason);
    else
        log_info("conn %" PRIu64 " [%s]: closed before opening: %s", c->id, c->peer, c->reason);
    /* Nothing can be written in the middle of a handshake. */
    if (c->state == CONN_HANDSHAKE)
        conn_drop_output(c);
    if (c->out_len > 0)
        timer_arm(c, WORKER_LINGER_S);
    c->closing_next = w->closing;
    w->closing = c;
}

static void conn_free(struct conn *c)
{
    struct worker *w = c->w;

    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ev_timer_stop(w->loop, &c->timer);
    ev_timer_stop(w->loop, &c->pause);
    if (!c->notified)
        hashmap_remove(&w->conns, &c->id, sizeof(c->id));
    if (c->ssl != NULL) {
        if (c->tls_up && !c->tls_broken && !c->tls_shut) {
            /* Once, without waiting for the peer's reply. */
            ERR_clear_error();
            (void)SSL_shutdown(c->ssl);
        }
        SSL_free(c->ssl);
        ERR_clear_error();
    }
    close(c->fd);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->all = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->in);
    free(c->out);
    free(c);
    w->n_conns--;
    worker_conns_changed(w);
}

/* Everything is written: say goodbye and wait for the peer's FIN. */
static void conn_linger(struct conn *c)
{
    if (c->ssl != NULL && c->tls_up && !c->tls_broken) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);
        ERR_clear_error();
        c->tls_shut = true;
    }
    if (shutdown(c->fd, SHUT_WR) < 0) {
        conn_free(c);
        return;
    }
    c->draining = true;
    ev_io_stop(c->w->loop, &c->wio);
    ev_io_start(c->w->loop, &c->rio);
    timer_arm(c, WORKER_DRAIN_S);
}

static void conns_notify(struct worker *w)
{
    struct conn *c;

    while ((c = w->closing) != NULL) {
        w->closing = c->closing_next;
        c->closing_next = NULL;
        c->notified = true;
        /* Gone for the protocol and for broker deliveries from now on. */
        hashmap_remove(&w->conns, &c->id, sizeof(c->id));
        if (c->opened && w->proto->conn_closed != NULL)
            w->proto->conn_closed(c, c->reason);
        conn_mark_dirty(c);
    }
}

bool conns_turn(struct worker *w)
{
    struct conn *list;

    conns_notify(w);
    list = w->dirty;
    w->dirty = NULL;
    while (list != NULL) {
        struct conn *c = list;

        list = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        /* Closed during this stage: conns_notify comes first next round. */
        if (c->closing && !c->notified)
            continue;
        if (c->out_len > 0 && !ev_is_active(&c->wio))
            conn_flush(c);
        if (!c->closing || !c->notified || c->out_len > 0)
            continue;
        if (c->peer_eof || c->aborted)
            conn_free(c);
        else if (!c->draining)
            conn_linger(c);
    }
    return w->dirty != NULL || w->closing != NULL;
}

void conns_close_all(struct worker *w, const char *reason)
{
    for (struct conn *c = w->all; c != NULL; c = c->next)
        conn_close(c, reason);
}

void conns_free_all(struct worker *w)
{
    struct conn *c;

    for (c = w->all; c != NULL; c = c->next) {
        if (c->notified)
            continue;
        c->notified = true;
        hashmap_remove(&w->conns, &c->id, sizeof(c->id));
        if (c->opened && w->proto->conn_closed != NULL)
            w->proto->conn_closed(c, c->closing ? c->reason : "shutting down");
    }
    while (w->all != NULL)
        conn_free(w->all);
    w->closing = NULL;
    w->dirty = NULL;
}

/* --- accessors --- */

uint64_t conn_id(const struct conn *c)
{
    return c->id;
}

struct worker *conn_worker(const struct conn *c)
{
    return c->w;
}

void *conn_data(struct conn *c)
{
    return c->data;
}

const struct worker_listener *conn_listener(const struct conn *c)
{
    return c->listener;
}

const char *conn_peer(const struct conn *c)
{
    return c->peer;
}

bool conn_is_tls(const struct conn *c)
{
    return c->tls_up;
}

void *conn_ssl(struct conn *c)
{
    return c->tls_up ? c->ssl : NULL;
}

static void conn_resume(struct conn *c)
{
    c->paused = false;
    if (c->closing || c->state != CONN_OPEN)
        return;
    ev_io_start(c->w->loop, &c->rio);
    /* Records OpenSSL already decrypted do not wake the socket watcher. */
    if (c->ssl != NULL && SSL_has_pending(c->ssl))
        again_add(c);
}

static void conn_pause_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    conn_resume(t->data);
}

void conn_pause_input(struct conn *c, double seconds)
{
    struct ev_loop *loop = c->w->loop;

    if (c->closing)
        return;
    ev_timer_stop(loop, &c->pause);
    if (seconds <= 0) {
        if (c->paused)
            conn_resume(c);
        return;
    }
    c->paused = true;
    if (!c->write_wants_read)
        ev_io_stop(loop, &c->rio);
    ev_timer_set(&c->pause, seconds, 0);
    ev_timer_start(loop, &c->pause);
}

void conn_set_timeout(struct conn *c, double seconds)
{
    if (c->closing)
        return;
    c->timeout = seconds > 0 ? seconds : 0;
    c->last_input = ev_now(c->w->loop);
    /* During a handshake the handshake deadline stays; the idle timer
     * starts when it completes. */
    if (c->state == CONN_OPEN)
        timer_arm(c, c->timeout);
}
