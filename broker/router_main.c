/*
 * switchboard-broker: the ZeroMQ ROUTER every worker's DEALER connects to.
 *
 * Started by the supervisor as "switchboard-broker --config PATH" (proc.h),
 * or by hand for debugging and benchmarks. It binds one ROUTER socket at
 * ipc://<state_dir>/run/broker.sock, drops privileges, reports READY, and
 * runs a single-threaded loop: zmq_poll over the ROUTER, the supervisor's
 * life pipe and a signalfd, with a timeout up to the next heartbeat tick.
 * It never blocks on a peer: every send is ZMQ_DONTWAIT, and a peer whose
 * queue is full loses the frame (counted), never stalls the others.
 */
#include "broker/router.h"

#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "shared/log.h"
#include "shared/proc.h"

#define IPC_SCHEME "ipc://"

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool router_ratelimit(struct router *r, struct router_ratelimit *l)
{
    if (r->now_ms - l->window_ms >= 1000) {
        if (l->suppressed > 0)
            log_info("%u log lines about %s suppressed", l->suppressed, l->what);
        l->window_ms = r->now_ms;
        l->n = 0;
        l->suppressed = 0;
    }
    if (l->n < ROUTER_LOG_BURST) {
        l->n++;
        return true;
    }
    l->suppressed++;
    return false;
}

int router_send(struct router *r, const uint8_t *identity, size_t identity_len, const void *frame,
                size_t len)
{
    /* ZeroMQ queues a multipart message atomically: once the routing id part
     * is accepted, the frame part is too. */
    if (zmq_send(r->socket, identity, identity_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    if (zmq_send(r->socket, frame, len, ZMQ_DONTWAIT) < 0)
        return -1;
    return 0;
}

/* Receives up to ROUTER_BATCH_MAX messages without waiting. */
static void drain(struct router *r, zmq_msg_t *id, zmq_msg_t *frame, zmq_msg_t *extra)
{
    for (int i = 0; i < ROUTER_BATCH_MAX; i++) {
        bool extra_parts = false;

        if (zmq_msg_recv(id, r->socket, ZMQ_DONTWAIT) < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_warn("receiving from the ROUTER socket");
            return;
        }
        /* A ROUTER always prefixes the routing id, so a frame follows. */
        if (!zmq_msg_more(id) || zmq_msg_recv(frame, r->socket, ZMQ_DONTWAIT) < 0)
            continue;
        if (zmq_msg_more(frame)) {
            extra_parts = true;
            do {
                if (zmq_msg_recv(extra, r->socket, ZMQ_DONTWAIT) < 0)
                    break;
            } while (zmq_msg_more(extra));
        }
        router_frame(r, zmq_msg_data(id), zmq_msg_size(id), zmq_msg_data(frame),
                     zmq_msg_size(frame), extra_parts);
    }
}

/* Creates <state_dir>/run (0700) and hands it and the socket to the user
 * the broker is about to become, so that it and the workers (which drop to
 * the same user) can still use them. */
static void prepare_run_dir(const struct config *config, const char *socket_path, uid_t *uid_r,
                            gid_t *gid_r, bool *chown_r)
{
    char dir[4096];
    const char *slash = strrchr(socket_path, '/');

    *chown_r = false;
    if (slash == NULL || (size_t)(slash - socket_path) >= sizeof(dir))
        log_fatal(PROC_EXIT_CONFIG, "bad broker endpoint path '%s'", socket_path);
    memcpy(dir, socket_path, (size_t)(slash - socket_path));
    dir[slash - socket_path] = '\0';
    if (mkdir(config->state_dir, 0750) < 0 && errno != EEXIST)
        log_fatal(1, "cannot create state_dir %s: %s", config->state_dir, strerror(errno));
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        log_fatal(1, "cannot create %s: %s", dir, strerror(errno));
    if (config->user != NULL && geteuid() == 0) {
        struct passwd *pw = getpwnam(config->user);
        if (pw == NULL)
            log_fatal(PROC_EXIT_CONFIG, "unknown user '%s'", config->user);
        *uid_r = pw->pw_uid;
        *gid_r = pw->pw_gid;
        *chown_r = true;
        if (chown(dir, pw->pw_uid, pw->pw_gid) < 0)
            log_warn("chown %s", dir);
    }
}

static void *open_socket(struct router *r, void *zctx, char *socket_path_r, size_t path_size)
{
    char endpoint[4200];
    const char *path;
    void *s;
    int one = 1, hwm = ROUTER_HWM, zero = 0;
    int64_t max_frame = IPC_MAX_FRAME;
    uid_t uid = 0;
    gid_t gid = 0;
    bool do_chown;

    config_broker_endpoint(r->config, endpoint, sizeof(endpoint));
    if (strncmp(endpoint, IPC_SCHEME, strlen(IPC_SCHEME)) != 0)
        log_fatal(PROC_EXIT_CONFIG, "broker endpoint '%s' is not ipc://", endpoint);
    path = endpoint + strlen(IPC_SCHEME);
    snprintf(socket_path_r, path_size, "%s", path);
    prepare_run_dir(r->config, path, &uid, &gid, &do_chown);

    s = zmq_socket(zctx, ZMQ_ROUTER);
    if (s == NULL)
        log_fatal(1, "zmq_socket: %s", zmq_strerror(errno));
    /* MANDATORY: a send to a gone peer fails (EHOSTUNREACH) instead of
     * vanishing, so it is counted. MAXMSGSIZE: ZeroMQ itself drops a peer
     * that sends a frame over the contract's bound, before buffering it. */
    if (zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)) < 0 ||
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm)) < 0 ||
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm)) < 0 ||
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_frame, sizeof(max_frame)) < 0)
        log_fatal(1, "zmq_setsockopt: %s", zmq_strerror(errno));
    /* A socket file left by a previous broker would make the bind fail. */
    if (unlink(path) < 0 && errno != ENOENT)
        log_fatal(1, "cannot remove stale socket %s: %s", path, strerror(errno));
    if (zmq_bind(s, endpoint) < 0)
        log_fatal(1, "cannot bind %s: %s", endpoint, zmq_strerror(errno));
    if (do_chown && chown(path, uid, gid) < 0)
        log_warn("chown %s", path);
    return s;
}

/* SIGTERM and SIGINT arrive through a signalfd polled with the socket, so
 * that stopping never races with a blocking poll. They are blocked before
 * ZeroMQ starts its threads, which inherit the mask. */
static int signals_setup(void)
{
    sigset_t set;
    int fd;

    signal(SIGPIPE, SIG_IGN);
    /* The supervisor restarts the broker to apply a new configuration. */
    signal(SIGHUP, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        log_fatal(1, "sigprocmask: %s", strerror(errno));
    fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        log_fatal(1, "signalfd: %s", strerror(errno));
    return fd;
}

/* True when the life pipe says the supervisor is gone. */
static bool life_ended(int fd)
{
    char buf[64];
    ssize_t n = read(fd, buf, sizeof(buf));

    if (n > 0)
        return false; /* the supervisor writes nothing; ignore */
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    return true;
}

static int run(struct router *r, int sig_fd, int life_fd)
{
    zmq_msg_t id, frame, extra;
    zmq_pollitem_t items[3];
    int n_items = 0, sock_i, sig_i, life_i = -1;
    int64_t next_tick;

    zmq_msg_init(&id);
    zmq_msg_init(&frame);
    zmq_msg_init(&extra);
    sock_i = n_items;
    items[n_items++] = (zmq_pollitem_t){.socket = r->socket, .events = ZMQ_POLLIN};
    sig_i = n_items;
    items[n_items++] = (zmq_pollitem_t){.fd = sig_fd, .events = ZMQ_POLLIN};
    if (life_fd >= 0) {
        life_i = n_items;
        items[n_items++] = (zmq_pollitem_t){.fd = life_fd, .events = ZMQ_POLLIN};
    }
    r->now_ms = monotonic_ms();
    next_tick = r->now_ms + r->config->broker.heartbeat_ms;

    for (;;) {
        long timeout = next_tick > r->now_ms ? (long)(next_tick - r->now_ms) : 0;

        if (zmq_poll(items, n_items, timeout) < 0 && errno != EINTR) {
            log_error("zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        r->now_ms = monotonic_ms();
        if (items[sig_i].revents) {
            struct signalfd_siginfo si;
            if (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                log_info("%s: stopping", strsignal((int)si.ssi_signo));
                break;
            }
        }
        if (life_i >= 0 && items[life_i].revents && life_ended(life_fd)) {
            log_info("the supervisor is gone: stopping");
            break;
        }
        if (items[sock_i].revents & ZMQ_POLLIN)
            drain(r, &id, &frame, &extra);
        if (r->now_ms >= next_tick) {
            router_tick(r);
            next_tick += r->config->broker.heartbeat_ms;
            /* After a stall, beat on time again rather than catch up. */
            if (next_tick <= r->now_ms)
                next_tick = r->now_ms + r->config->broker.heartbeat_ms;
        }
        router_flush(r);
    }
    zmq_msg_close(&id);
    zmq_msg_close(&frame);
    zmq_msg_close(&extra);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = proc_config_arg(argc, argv, "switchboard-broker");
    const char *error;
    struct config *config;
    struct router r;
    struct timespec ts;
    char socket_path[4200];
    void *zctx;
    int sig_fd, rc;

    log_init("broker", LOG_LEVEL_INFO);
    if (config_load(path, &config, &error) < 0)
        log_fatal(PROC_EXIT_CONFIG, "%s", error);
    log_set_level((enum log_level)config->log_level);
    sig_fd = signals_setup();

    memset(&r, 0, sizeof(r));
    r.config = config;
    r.log_send = (struct router_ratelimit){.what = "failed sends"};
    r.log_stranger = (struct router_ratelimit){.what = "unknown identities"};
    r.log_refused = (struct router_ratelimit){.what = "refused announcements"};
    r.log_dropped = (struct router_ratelimit){.what = "dropped stanzas"};
    clock_gettime(CLOCK_REALTIME, &ts);
    r.epoch = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    r.started_ms = monotonic_ms();
    r.tables = router_tables_new();
    if (r.tables == NULL)
        log_fatal(1, "out of memory");
    router_init_peers(&r);

    zctx = zmq_ctx_new();
    if (zctx == NULL)
        log_fatal(1, "zmq_ctx_new: %s", zmq_strerror(errno));
    r.socket = open_socket(&r, zctx, socket_path, sizeof(socket_path));
    if (proc_drop_privileges(config->user, &error) < 0)
        log_fatal(PROC_EXIT_CONFIG, "cannot become user '%s': %s", config->user, error);
    log_info("listening on ipc://%s (heartbeat %d ms, %d misses)", socket_path,
             config->broker.heartbeat_ms, config->broker.heartbeat_misses);
    proc_report_ready();

    rc = run(&r, sig_fd, proc_life_fd());

    router_free_peers(&r);
    router_tables_free(&r.tables);
    zmq_close(r.socket);
    zmq_ctx_term(zctx);
    /* Best effort: a later broker removes a stale file anyway. */
    unlink(socket_path);
    close(sig_fd);
    config_free(&config);
    return rc;
}
