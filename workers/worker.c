/*
 * The worker skeleton's frame: worker_main() reads the configuration, takes
 * (or, standalone, binds) the listening sockets, builds the TLS context,
 * drops privileges, starts the broker link, reports READY and runs the
 * loop; SIGTERM, SIGINT or the end of the supervisor's life pipe stop it
 * gracefully. The end-of-turn work that makes writes coalesce and frees
 * connections outside their callbacks is driven from here (worker_turn_cb).
 * Connections are in worker_conn.c, the broker link in worker_link.c.
 */
#include "workers/worker_private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shared/log.h"
#include "shared/proc.h"
#include "shared/tls.h"

bool worker_ratelimit(struct worker *w, struct worker_ratelimit *rl, unsigned long *suppressed_r)
{
    ev_tstamp now = ev_now(w->loop);

    if (rl->last != 0 && now - rl->last < 1.0) {
        rl->suppressed++;
        return false;
    }
    rl->last = now;
    *suppressed_r = rl->suppressed;
    rl->suppressed = 0;
    return true;
}

void worker_kick(struct worker *w)
{
    /* An active idle watcher makes the loop poll without blocking, so the
     * prepare watcher (worker_turn_cb) runs again right away. */
    if (!ev_is_active(&w->kick))
        ev_idle_start(w->loop, &w->kick);
}

static void kick_cb(struct ev_loop *loop, ev_idle *idle, int revents)
{
    ev_idle_stop(loop, idle);
}

/* --- reports to the supervisor --- */

static void report_now(struct worker *w)
{
    if (w->report_sent && w->reported_conns == w->n_conns)
        return;
    w->reported_conns = w->n_conns;
    w->report_sent = true;
    proc_report_conns(w->n_conns);
    /* A stopped libev timer keeps its remaining time (zero after it fired),
     * so the interval must be set again before each start. */
    ev_timer_set(&w->report, WORKER_REPORT_INTERVAL_S, 0);
    ev_timer_start(w->loop, &w->report);
}

static void report_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;

    /* Trailing edge: report what changed during the quiet interval. */
    report_now(w);
}

void worker_conns_changed(struct worker *w)
{
    if (!proc_supervised())
        return;
    /* Leading edge now, then at most once per interval. */
    if (!ev_is_active(&w->report))
        report_now(w);
}

/* --- end of turn --- */

static void worker_turn_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct worker *w = p->data;
    bool more = true;

    /* Each round may queue work for the next: closing a connection calls
     * conn_closed, which may write to other connections or to the broker;
     * a broker message handled in link_drain may write to connections. */
    for (int round = 0; round < WORKER_TURN_ROUNDS && more && !w->aborting; round++) {
        more = conns_turn(w);
        link_flush(w);
        /* Must come after the last zmq_send of the turn: see link_drain. */
        more = link_drain(w) || more;
        more = more || w->dirty != NULL || w->closing != NULL || link_pending(w);
    }
    if (more && !w->aborting)
        worker_kick(w);

    if (w->stopping && !w->aborting && w->n_conns == 0 && !w->bye_sent) {
        w->bye_sent = true;
        link_bye(w);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void again_cb(struct ev_loop *loop, ev_check *check, int revents)
{
    struct worker *w = check->data;

    conns_read_again(w);
    if (w->n_again == 0)
        ev_check_stop(loop, check);
}

/* --- stopping --- */

static void listeners_disarm(struct worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        ev_io_stop(w->loop, &w->watches[i].io);
        ev_timer_stop(w->loop, &w->watches[i].pause);
    }
}

void worker_abort(struct worker *w, int code)
{
    w->exit_code = code;
    w->stopping = true;
    w->aborting = true;
    ev_break(w->loop, EVBREAK_ALL);
}

static void stop_deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct worker *w = t->data;

    log_warnx("%u connections still flushing at the stop deadline: dropping them", w->n_conns);
    worker_abort(w, w->exit_code);
}

void worker_stop(struct worker *w, int code)
{
    if (w->stopping)
        return;
    log_info("stopping (%u connections)", w->n_conns);
    w->stopping = true;
    w->exit_code = code;
    listeners_disarm(w);
    ev_io_stop(w->loop, &w->life);
    conns_close_all(w, "shutting down");
    ev_timer_start(w->loop, &w->stop_deadline);
    worker_kick(w);
}

static void signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    struct worker *w = s->data;

    if (w->stopping) {
        log_info("signal %d again: stopping now", s->signum);
        worker_abort(w, w->exit_code);
        return;
    }
    log_info("signal %d", s->signum);
    worker_stop(w, 0);
}

static void life_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct worker *w = io->data;
    char buf[64];
    ssize_t n = read(io->fd, buf, sizeof(buf));

    /* The supervisor writes nothing; readability means it is gone. */
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    log_info("the supervisor is gone");
    worker_stop(w, 0);
}

/* --- listeners --- */

static int sockaddr_parse(const char *address, uint16_t port, struct sockaddr_storage *ss,
                          socklen_t *len_r)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, address, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *len_r = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, address, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len_r = sizeof(*sin6);
        return 0;
    }
    return -1;
}

static int listener_bind(const struct config_listener *cl, const char **error_r)
{
    static char msg[256];
    struct sockaddr_storage ss;
    socklen_t len;
    bool udp = cl->transport == CONFIG_TRANSPORT_UDP;
    int fd, one = 1;

    if (sockaddr_parse(cl->address, cl->port, &ss, &len) < 0) {
        snprintf(msg, sizeof(msg), "listener %s: bad address %s", cl->name, cl->address);
        *error_r = msg;
        return -1;
    }
    fd = socket(ss.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || (!udp && listen(fd, SOMAXCONN) < 0)) {
        snprintf(msg, sizeof(msg), "listener %s on %s port %u: %s", cl->name, cl->address,
                 (unsigned)cl->port, strerror(errno));
        *error_r = msg;
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Checks that an inherited descriptor is the kind of socket the listener
 * needs, and makes it non-blocking. */
static int listener_adopt(const struct config_listener *cl, int fd, const char **error_r)
{
    static char msg[256];
    int type = 0, accepting = 0, flags;
    socklen_t len = sizeof(type);
    bool udp = cl->transport == CONFIG_TRANSPORT_UDP;

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
        snprintf(msg, sizeof(msg), "listener %s: inherited fd %d: %s", cl->name, fd,
                 strerror(errno));
        *error_r = msg;
        return -1;
    }
    len = sizeof(accepting);
    if (!udp && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0)
        accepting = 0;
    if (type != (udp ? SOCK_DGRAM : SOCK_STREAM) || (!udp && !accepting)) {
        snprintf(msg, sizeof(msg), "listener %s: inherited fd %d is not a %s socket", cl->name, fd,
                 udp ? "UDP" : "listening TCP");
        *error_r = msg;
        return -1;
    }
    /* Inherited sockets may be blocking; a blocking accept would stall the
     * whole worker when a queued connection is reset before we take it. */
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        snprintf(msg, sizeof(msg), "listener %s: fd %d: %s", cl->name, fd, strerror(errno));
        *error_r = msg;
        return -1;
    }
    return 0;
}

static void listener_log(const struct worker_listener *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (getsockname(l->fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
            port = ntohs(sin->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
            port = ntohs(sin6->sin6_port);
        }
    }
    log_info("listener %s on %s port %u (%s%s)", l->config->name, host, port,
             l->config->transport == CONFIG_TRANSPORT_UDP ? "udp" : "tcp",
             l->config->tls == CONFIG_TLS_DIRECT     ? ", tls"
             : l->config->tls == CONFIG_TLS_STARTTLS ? ", starttls"
                                                     : "");
}

/* Takes the supervisor's sockets, or binds them when running by hand. */
static int listeners_take(struct worker *w, const char **error_r)
{
    static char msg[256];
    const struct config_worker *cw = &w->config->workers[w->proto->kind];
    bool supervised = proc_supervised();

    if (cw->n_listeners == 0)
        return 0;
    w->listeners = calloc(cw->n_listeners, sizeof(*w->listeners));
    w->watches = calloc(cw->n_listeners, sizeof(*w->watches));
    if (w->listeners == NULL || w->watches == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    for (size_t i = 0; i < cw->n_listeners; i++) {
        const struct config_listener *cl = &cw->listeners[i];
        struct worker_listener *l = &w->listeners[i];
        int fd;

        l->config = cl;
        l->fd = -1;
        w->n_listeners++;
        if (supervised) {
            fd = proc_listen_fd(cl->name);
            if (fd < 0) {
                snprintf(msg, sizeof(msg), "listener %s: no socket from the supervisor", cl->name);
                *error_r = msg;
                return -1;
            }
            l->fd = fd;
            if (listener_adopt(cl, fd, error_r) < 0)
                return -1;
        } else {
            fd = listener_bind(cl, error_r);
            if (fd < 0)
                return -1;
            l->fd = fd;
        }
    }
    return 0;
}

static void datagram_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct listener_watch *lw = io->data;
    struct worker *w = lw->w;
    uint8_t buf[WORKER_DATAGRAM_MAX];

    for (int i = 0; i < WORKER_DATAGRAM_BURST; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        ssize_t n = recvfrom(io->fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &peer_len);

        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                unsigned long suppressed;
                if (worker_ratelimit(w, &w->accept_log, &suppressed))
                    log_warn("listener %s: recvfrom", lw->listener->config->name);
            }
            return;
        }
        if (w->proto->datagram != NULL)
            w->proto->datagram(w, lw->listener, buf, (size_t)n, (struct sockaddr *)&peer, peer_len);
    }
}

static void accept_resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct listener_watch *lw = t->data;

    if (!lw->w->stopping)
        ev_io_start(loop, &lw->io);
}

static void listeners_arm(struct worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct listener_watch *lw = &w->watches[i];
        bool udp = w->listeners[i].config->transport == CONFIG_TRANSPORT_UDP;

        lw->w = w;
        lw->listener = &w->listeners[i];
        ev_io_init(&lw->io, udp ? datagram_cb : conn_accept_cb, w->listeners[i].fd, EV_READ);
        lw->io.data = lw;
        ev_timer_init(&lw->pause, accept_resume_cb, WORKER_ACCEPT_PAUSE_S, 0);
        lw->pause.data = lw;
        ev_io_start(w->loop, &lw->io);
        listener_log(&w->listeners[i]);
    }
}

/* --- start and end --- */

static bool worker_needs_tls(const struct worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++)
        if (w->listeners[i].config->tls != CONFIG_TLS_NONE)
            return true;
    return false;
}

static void watchers_init(struct worker *w)
{
    struct ev_loop *loop = w->loop;

    ev_prepare_init(&w->turn_end, worker_turn_cb);
    w->turn_end.data = w;
    ev_prepare_start(loop, &w->turn_end);
    ev_check_init(&w->again_check, again_cb);
    w->again_check.data = w;
    ev_idle_init(&w->kick, kick_cb);
    ev_timer_init(&w->report, report_cb, WORKER_REPORT_INTERVAL_S, 0);
    w->report.data = w;
    ev_timer_init(&w->stop_deadline, stop_deadline_cb, WORKER_STOP_DEADLINE_S, 0);
    w->stop_deadline.data = w;

    ev_signal_init(&w->sigterm, signal_cb, SIGTERM);
    w->sigterm.data = w;
    ev_signal_start(loop, &w->sigterm);
    ev_signal_init(&w->sigint, signal_cb, SIGINT);
    w->sigint.data = w;
    ev_signal_start(loop, &w->sigint);

    ev_io_init(&w->life, life_cb, proc_life_fd(), EV_READ);
    w->life.data = w;
    if (proc_life_fd() >= 0) {
        int flags = fcntl(proc_life_fd(), F_GETFL);
        if (flags >= 0)
            fcntl(proc_life_fd(), F_SETFL, flags | O_NONBLOCK);
        fcntl(proc_life_fd(), F_SETFD, FD_CLOEXEC);
        ev_io_start(loop, &w->life);
    }
}

static void worker_free(struct worker **wp)
{
    struct worker *w = *wp;

    if (w == NULL)
        return;
    if (w->loop != NULL) {
        ev_prepare_stop(w->loop, &w->turn_end);
        ev_check_stop(w->loop, &w->again_check);
        ev_idle_stop(w->loop, &w->kick);
        ev_timer_stop(w->loop, &w->report);
        ev_timer_stop(w->loop, &w->stop_deadline);
        ev_signal_stop(w->loop, &w->sigterm);
        ev_signal_stop(w->loop, &w->sigint);
        ev_io_stop(w->loop, &w->life);
        listeners_disarm(w);
    }
    link_stop(w);
    for (size_t i = 0; i < w->n_listeners; i++)
        if (w->listeners[i].fd >= 0)
            close(w->listeners[i].fd);
    free(w->listeners);
    free(w->watches);
    free(w->again);
    hashmap_deinit(&w->conns);
    tls_ctx_free(&w->tls);
    config_free(&w->config);
    if (w->loop != NULL)
        ev_loop_destroy(w->loop);
    free(w);
    *wp = NULL;
}

int worker_main(int argc, char **argv, const struct worker_proto *proto)
{
    const char *name = config_worker_name(proto->kind);
    const char *path, *error = NULL;
    char program[64];
    struct worker *w;
    int code;

    snprintf(program, sizeof(program), "switchboard-%s", name);
    path = proc_config_arg(argc, argv, program);
    log_init(name, LOG_LEVEL_INFO);
    /* A peer that goes away mid-write must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        log_error("out of memory");
        return 1;
    }
    w->proto = proto;
    w->name = name;
    w->next_conn_id = 1;
    hashmap_init(&w->conns);
    link_init(w);
    if (config_load(path, &w->config, &error) < 0) {
        log_error("%s", error);
        worker_free(&w);
        return PROC_EXIT_CONFIG;
    }
    log_set_level((enum log_level)w->config->log_level);
    w->loop = ev_default_loop(EVFLAG_AUTO);
    if (w->loop == NULL) {
        log_error("cannot create the event loop");
        worker_free(&w);
        return 1;
    }

    if (listeners_take(w, &error) < 0)
        goto config_error;
    if (worker_needs_tls(w)) {
        if (w->config->tls_certificate == NULL || w->config->tls_key == NULL) {
            error = "a TLS listener needs tls.certificate and tls.key";
            goto config_error;
        }
        w->tls = tls_server_ctx(w->config->tls_certificate, w->config->tls_key, &error);
        if (w->tls == NULL)
            goto config_error;
    }
    watchers_init(w);
    /* Privileges go before the protocol starts: the sockets and the TLS key
     * are already held, and what init creates (the store's database file)
     * must belong to the configured user. */
    if (proc_drop_privileges(w->config->user, &error) < 0)
        goto config_error;
    if (proto->init != NULL && proto->init(w, &error) < 0)
        goto config_error;
    if (link_start(w, &error) < 0)
        goto config_error_deinit;
    listeners_arm(w);
    proc_report_ready();
    log_info("serving (pid %d)", (int)getpid());

    ev_run(w->loop, 0);

    link_fail_requests(w);
    conns_free_all(w);
    if (proto->deinit != NULL)
        proto->deinit(w);
    code = w->exit_code;
    log_info("stopped");
    worker_free(&w);
    return code;

config_error_deinit:
    log_error("%s", error);
    link_fail_requests(w);
    if (proto->deinit != NULL)
        proto->deinit(w);
    worker_free(&w);
    return PROC_EXIT_CONFIG;
config_error:
    log_error("%s", error);
    worker_free(&w);
    return PROC_EXIT_CONFIG;
}

/* --- accessors --- */

struct ev_loop *worker_loop(struct worker *w)
{
    return w->loop;
}

const struct config *worker_config(struct worker *w)
{
    return w->config;
}

void *worker_data(struct worker *w)
{
    return w->data;
}

void worker_set_data(struct worker *w, void *data)
{
    w->data = data;
}

const struct worker_listener *worker_listeners(struct worker *w, size_t *count_r)
{
    *count_r = w->n_listeners;
    return w->listeners;
}

unsigned worker_conn_count(struct worker *w)
{
    return w->n_conns;
}

struct conn *worker_conn_find(struct worker *w, uint64_t id)
{
    return hashmap_get(&w->conns, &id, sizeof(id));
}
