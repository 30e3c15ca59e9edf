/*
 * The socket side of the supervisor's control protocol (sup_control.h):
 * accept clients on a non-blocking unix socket, read one bounded request
 * line, call the handler, write the reply without blocking, close. Each
 * client has a deadline so that a stuck one cannot hold a slot.
 */
#include "workers/sup_control.h"

#include <errno.h>
#include <ev.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "shared/log.h"

struct sup_reply {
    char *buf;
    size_t len, cap;
    bool overflow;
};

struct control_client {
    struct sup_control *control;
    struct control_client *prev, *next;
    int fd;
    ev_io io;
    ev_timer timer;
    char in[SUP_CONTROL_MAX_REQUEST];
    size_t in_len;
    struct sup_reply out;
    size_t out_pos;
};

struct sup_control {
    struct ev_loop *loop;
    char *path;
    int fd;
    ev_io io;
    sup_control_handler *handler;
    void *ctx;
    struct control_client *clients;
    unsigned n_clients;
};

static void reply_append(struct sup_reply *r, const char *data, size_t len)
{
    if (r->overflow)
        return;
    if (r->len + len > SUP_CONTROL_MAX_REPLY) {
        r->overflow = true;
        return;
    }
    if (r->len + len > r->cap) {
        size_t cap = r->cap == 0 ? 1024 : r->cap;
        char *buf;
        while (cap < r->len + len)
            cap *= 2;
        buf = realloc(r->buf, cap);
        if (buf == NULL) {
            r->overflow = true;
            return;
        }
        r->buf = buf;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, len);
    r->len += len;
}

void sup_reply_line(struct sup_reply *reply, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    reply_append(reply, line, (size_t)n);
}

static void client_free(struct control_client *c)
{
    struct sup_control *ctl = c->control;

    ev_io_stop(ctl->loop, &c->io);
    ev_timer_stop(ctl->loop, &c->timer);
    close(c->fd);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ctl->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    ctl->n_clients--;
    free(c->out.buf);
    free(c);
}

/* Writes what it can; frees the client once the whole reply is out (or the
 * peer is gone). */
static void client_flush(struct control_client *c)
{
    while (c->out_pos < c->out.len) {
        ssize_t n = send(c->fd, c->out.buf + c->out_pos, c->out.len - c->out_pos, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_pos += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return; /* the EV_WRITE watcher calls again */
        } else {
            break; /* the client went away; nothing to tell it */
        }
    }
    /* Closing a unix socket with unread input makes the peer's next read fail
     * with ECONNRESET, which can hide the reply: discard what the client sent
     * past its request (bounded; a client still sending gets the reset). */
    for (int i = 0; i < 16 && read(c->fd, c->in, sizeof(c->in)) > 0; i++)
        continue;
    client_free(c);
}

static void client_respond(struct control_client *c)
{
    struct sup_control *ctl = c->control;
    const char *error = NULL;
    char sample[128];
    int ret;

    ev_io_stop(ctl->loop, &c->io);
    ret = ctl->handler(ctl->ctx, c->in, &c->out, &error);
    if (!c->out.overflow) {
        if (ret == 0)
            sup_reply_line(&c->out, "OK");
        else
            sup_reply_line(&c->out, "ERR %s", error != NULL ? error : "failed");
    }
    if (c->out.overflow) {
        /* Drop whatever was built and say so in a reply that always fits. */
        free(c->out.buf);
        memset(&c->out, 0, sizeof(c->out));
        sup_reply_line(&c->out, "ERR reply too long");
    }
    if (c->out.overflow) {
        log_warnx("control: out of memory replying to \"%s\"",
                  log_sample(sample, sizeof(sample), c->in, strlen(c->in)));
        client_free(c);
        return;
    }
    ev_io_set(&c->io, c->fd, EV_WRITE);
    ev_io_start(ctl->loop, &c->io);
    ev_timer_again(ctl->loop, &c->timer);
    client_flush(c);
}

static void client_error(struct control_client *c, const char *error)
{
    ev_io_stop(c->control->loop, &c->io);
    sup_reply_line(&c->out, "ERR %s", error);
    ev_io_set(&c->io, c->fd, EV_WRITE);
    ev_io_start(c->control->loop, &c->io);
    client_flush(c);
}

/* The request is the first line_len bytes of the input. */
static void client_line(struct control_client *c, size_t line_len)
{
    /* A NUL inside the line would hide its tail from the handler. */
    if (memchr(c->in, '\0', line_len) != NULL) {
        client_error(c, "invalid request");
        return;
    }
    if (line_len > 0 && c->in[line_len - 1] == '\r')
        line_len--;
    c->in[line_len] = '\0';
    client_respond(c);
}

static void client_read(struct control_client *c)
{
    for (;;) {
        size_t room = sizeof(c->in) - 1 - c->in_len;
        ssize_t n;
        char *nl;

        if (room == 0) {
            client_error(c, "request too long");
            return;
        }
        n = read(c->fd, c->in + c->in_len, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            client_free(c);
            return;
        }
        if (n == 0) {
            /* A request without its final newline still counts. */
            if (c->in_len == 0) {
                client_free(c);
                return;
            }
            client_line(c, c->in_len);
            return;
        }
        nl = memchr(c->in + c->in_len, '\n', (size_t)n);
        c->in_len += (size_t)n;
        if (nl != NULL) {
            client_line(c, (size_t)(nl - c->in));
            return;
        }
    }
}

static void client_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct control_client *c = io->data;

    if (revents & EV_READ)
        client_read(c);
    else if (revents & EV_WRITE)
        client_flush(c);
}

static void client_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct control_client *c = t->data;

    log_debug("control: client timed out");
    client_free(c);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct sup_control *ctl = io->data;

    for (;;) {
        struct control_client *c;
        int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                log_warn("control: accept");
            return;
        }
        if (ctl->n_clients >= SUP_CONTROL_MAX_CLIENTS) {
            static const char busy[] = "ERR busy\n";
            /* Best effort: the socket is new, its buffer is empty. */
            if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                log_debug("control: cannot tell a client it was refused");
            close(fd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            log_warnx("control: out of memory");
            close(fd);
            continue;
        }
        c->control = ctl;
        c->fd = fd;
        ev_io_init(&c->io, client_cb, fd, EV_READ);
        c->io.data = c;
        ev_init(&c->timer, client_timeout_cb);
        c->timer.repeat = SUP_CONTROL_TIMEOUT_S;
        c->timer.data = c;
        c->next = ctl->clients;
        if (ctl->clients != NULL)
            ctl->clients->prev = c;
        ctl->clients = c;
        ctl->n_clients++;
        ev_io_start(loop, &c->io);
        ev_timer_again(loop, &c->timer);
    }
}

struct sup_control *sup_control_new(struct ev_loop *loop, const char *path,
                                    sup_control_handler *handler, void *ctx, const char **error_r)
{
    static char error[512];
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct sup_control *ctl;
    mode_t old_mask;
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(error, sizeof(error), "control socket path too long (at most %zu bytes): %s",
                 sizeof(sun.sun_path) - 1, path);
        *error_r = error;
        return NULL;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(error, sizeof(error), "control socket: %s", strerror(errno));
        *error_r = error;
        return NULL;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        snprintf(error, sizeof(error), "cannot remove stale control socket %s: %s", path,
                 strerror(errno));
        close(fd);
        *error_r = error;
        return NULL;
    }
    /* The mode comes from the umask at bind time; chmod afterwards as well,
     * in case the file system ignores it. */
    old_mask = umask(0177);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        umask(old_mask);
        snprintf(error, sizeof(error), "cannot bind control socket %s: %s", path, strerror(errno));
        close(fd);
        *error_r = error;
        return NULL;
    }
    umask(old_mask);
    if (chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
        snprintf(error, sizeof(error), "control socket %s: %s", path, strerror(errno));
        unlink(path);
        close(fd);
        *error_r = error;
        return NULL;
    }
    ctl = calloc(1, sizeof(*ctl));
    if (ctl == NULL || (ctl->path = strdup(path)) == NULL) {
        free(ctl);
        unlink(path);
        close(fd);
        *error_r = "out of memory";
        return NULL;
    }
    ctl->loop = loop;
    ctl->fd = fd;
    ctl->handler = handler;
    ctl->ctx = ctx;
    ev_io_init(&ctl->io, accept_cb, fd, EV_READ);
    ctl->io.data = ctl;
    ev_io_start(loop, &ctl->io);
    return ctl;
}

void sup_control_free(struct sup_control **control)
{
    struct sup_control *ctl = *control;

    if (ctl == NULL)
        return;
    *control = NULL;
    while (ctl->clients != NULL)
        client_free(ctl->clients);
    ev_io_stop(ctl->loop, &ctl->io);
    close(ctl->fd);
    unlink(ctl->path);
    free(ctl->path);
    free(ctl);
}
