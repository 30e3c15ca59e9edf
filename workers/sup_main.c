/*
 * switchboard, the supervisor: it reads the configuration, opens the
 * listening sockets, fork+execs one process per worker (broker first, then
 * the store, rooms and the protocol workers), reaps and restarts them by the
 * policy in sup_policy.c, and serves the control socket (sup_control.c) that
 * switchboardctl talks to. It routes nothing: it stays small so that it does
 * not crash.
 *
 * The contract with each worker is in shared/proc.h: fd 3 is the read end of
 * the one life pipe (the supervisor holds the write end, so every worker sees
 * EOF when the supervisor is gone), fd 4 the write end of the worker's status
 * pipe ("READY", "CONNS n"), fd 5 and up its listening sockets. The sockets
 * stay open here across worker restarts, so connections wait in the backlog
 * while a worker restarts instead of being refused.
 *
 * Signals: SIGTERM/SIGINT stop everything in reverse start order (protocol
 * workers and rooms, then the store, then the broker; SIGKILL after
 * stop_timeout_ms per stage) and exit 0. SIGHUP reloads the configuration
 * (as the "reload" command does) and restarts only the workers whose
 * configuration fingerprint changed.
 */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shared/config.h"
#include "shared/log.h"
#include "shared/proc.h"
#include "workers/sup_control.h"
#include "workers/sup_policy.h"

#define SUP_DEFAULT_CONFIG "etc/switchboard.yml"
#define SUP_ENV_LIBEXEC_DIR "SWITCHBOARD_LIBEXEC_DIR"
#define SUP_LISTEN_BACKLOG 1024
/* Longest line a worker may write on its status pipe ("CONNS 4294967295"). */
#define SUP_STATUS_LINE_MAX 64
/* Exit codes of the supervisor itself. */
#define SUP_EXIT_OK 0
#define SUP_EXIT_FAILURE 1
#define SUP_EXIT_USAGE 2

extern char **environ;

/* A listening socket the supervisor holds for a worker. */
struct sup_listener {
    struct sup_listener *next;
    enum sb_worker_kind kind;
    char *name;
    char *address;
    uint16_t port;       /* as configured; 0 lets the kernel choose */
    uint16_t bound_port; /* the actual port */
    enum config_transport transport;
    int fd;
    bool taken; /* listeners_build: moved over from the old set */
};

struct sup;

struct sup_worker {
    struct sup *sup;
    enum sb_worker_kind kind;
    /* Started and watched by the supervisor: the broker and the store
     * always, the others when enabled in the configuration. */
    bool managed;
    struct sup_policy policy;
    pid_t pid;
    ev_child child;
    ev_timer kill_timer; /* SIGKILL when a stop takes longer than stop_timeout_ms */
    int status_fd;       /* read end of the status pipe, or -1 */
    ev_io status_io;
    char line[SUP_STATUS_LINE_MAX];
    size_t line_len;
    bool line_discard; /* inside an over-long line: skip to its newline */
    unsigned conns;
    /* The fingerprint of the configuration the last process was started
     * with; a reload restarts the worker when it changed. */
    char *fingerprint;
};

struct sup {
    struct ev_loop *loop;
    struct config *config;
    struct sup_policy_params params;
    char *config_path; /* absolute, passed to the workers */
    char *libexec_dir;
    int life_pipe[2];
    int lock_fd;
    struct sup_listener *listeners;
    struct sup_worker workers[SB_WORKER_COUNT];
    struct sup_control *control;
    ev_signal sigterm, sigint, sighup;
    ev_timer schedule_timer;
    bool shutting_down;
    int64_t started_ms;
    struct {
        unsigned starts, crashes, early_exits, failures;
    } stats;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *worker_name(const struct sup_worker *w)
{
    return config_worker_name(w->kind);
}

static void params_from_config(struct sup_policy_params *p, const struct config *c)
{
    p->intensity = c->supervisor.restart_intensity;
    p->period_ms = (int64_t)c->supervisor.restart_period_s * 1000;
    p->backoff_min_ms = c->supervisor.backoff_min_ms;
    p->backoff_max_ms = c->supervisor.backoff_max_ms;
}

static bool worker_wanted(const struct config *c, enum sb_worker_kind kind)
{
    return kind == SB_WORKER_BROKER || kind == SB_WORKER_STORE || c->workers[kind].enabled;
}

/* "exited with status 1", "killed by signal 11 (SEGV)". */
static const char *describe_exit(struct sup_exit_status st, char *out, size_t size)
{
    if (st.signaled) {
        const char *abbrev = sigabbrev_np(st.value);
        snprintf(out, size, "killed by signal %d (SIG%s)", st.value, abbrev != NULL ? abbrev : "?");
    } else {
        snprintf(out, size, "exited with status %d", st.value);
    }
    return out;
}

/* ---- listening sockets ---- */

static void listener_format(const struct sup_listener *l, char *out, size_t size)
{
    bool v6 = strchr(l->address, ':') != NULL;
    snprintf(out, size, "%s%s%s:%u/%s", v6 ? "[" : "", l->address, v6 ? "]" : "",
             l->bound_port != 0 ? l->bound_port : l->port,
             l->transport == CONFIG_TRANSPORT_UDP ? "udp" : "tcp");
}

static void listener_free(struct sup_listener **lp)
{
    struct sup_listener *l = *lp;

    if (l == NULL)
        return;
    *lp = NULL;
    if (l->fd >= 0)
        close(l->fd);
    free(l->name);
    free(l->address);
    free(l);
}

/* Opens the socket for one configured listener. -1 with *error_r naming the
 * listener, address and port. */
static int listener_open(struct sup_listener *l, const char **error_r)
{
    static char error[512];
    struct sockaddr_storage ss;
    socklen_t ss_len;
    char where[128];
    int one = 1, fd, type;
    bool tcp = l->transport == CONFIG_TRANSPORT_TCP;
    const char *what;

    memset(&ss, 0, sizeof(ss));
    listener_format(l, where, sizeof(where));
    if (strchr(l->address, ':') != NULL) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(l->port);
        if (inet_pton(AF_INET6, l->address, &sin6->sin6_addr) != 1)
            goto bad_address;
        ss_len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(l->port);
        if (inet_pton(AF_INET, l->address, &sin->sin_addr) != 1)
            goto bad_address;
        ss_len = sizeof(*sin);
    }

    type = (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC | SOCK_NONBLOCK;
    fd = socket(ss.ss_family, type, 0);
    if (fd < 0) {
        what = "cannot create a socket for";
        goto fail;
    }
    /* SO_REUSEADDR lets a restarted supervisor bind while old connections
     * linger in TIME_WAIT; on UDP it would let two sockets share the port,
     * so it is left off there. */
    if (tcp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
        what = "cannot set SO_REUSEADDR on";
        goto fail_close;
    }
    if (ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) {
        what = "cannot set IPV6_V6ONLY on";
        goto fail_close;
    }
    if (bind(fd, (struct sockaddr *)&ss, ss_len) < 0) {
        what = "cannot bind";
        goto fail_close;
    }
    if (tcp && listen(fd, SUP_LISTEN_BACKLOG) < 0) {
        what = "cannot listen on";
        goto fail_close;
    }
    ss_len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &ss_len) < 0) {
        what = "cannot read the address of";
        goto fail_close;
    }
    l->bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    l->fd = fd;
    listener_format(l, where, sizeof(where));
    log_info("listener %s/%s on %s", config_worker_name(l->kind), l->name, where);
    return 0;

fail_close : {
    int saved = errno;
    close(fd);
    errno = saved;
}
fail:
    snprintf(error, sizeof(error), "listener %s/%s: %s %s: %s", config_worker_name(l->kind),
             l->name, what, where, strerror(errno));
    *error_r = error;
    return -1;
bad_address:
    snprintf(error, sizeof(error), "listener %s/%s: invalid address %s",
             config_worker_name(l->kind), l->name, l->address);
    *error_r = error;
    return -1;
}

static struct sup_listener *listener_new(enum sb_worker_kind kind, const struct config_listener *cl)
{
    struct sup_listener *l = calloc(1, sizeof(*l));

    if (l == NULL)
        return NULL;
    l->kind = kind;
    l->fd = -1;
    l->port = cl->port;
    l->transport = cl->transport;
    l->name = strdup(cl->name);
    l->address = strdup(cl->address);
    if (l->name == NULL || l->address == NULL)
        listener_free(&l);
    return l;
}

/* The open listener that serves a configured one: the same address, port
 * and transport (so a listener renamed or moved to another worker keeps its
 * socket, and no second bind to a busy port is tried); for port 0, the same
 * worker and name as well, since each such listener has a port of its own. */
static bool listener_matches(const struct sup_listener *l, enum sb_worker_kind kind,
                             const struct config_listener *cl)
{
    if (l->transport != cl->transport || l->port != cl->port ||
        strcmp(l->address, cl->address) != 0)
        return false;
    return cl->port != 0 || (l->kind == kind && strcmp(l->name, cl->name) == 0);
}

/*
 * Builds the listener set for config in *list_r, taking sockets from *old
 * where they match (moved out of *old) and opening the others. On failure
 * the sockets opened here are closed, the taken ones go back to *old, and
 * -1 is returned with *error_r.
 */
static int listeners_build(const struct config *config, struct sup_listener **old,
                           struct sup_listener **list_r, const char **error_r)
{
    struct sup_listener *list = NULL, **tail = &list;

    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        const struct config_worker *cw = &config->workers[k];
        if (!worker_wanted(config, (enum sb_worker_kind)k))
            continue;
        for (size_t i = 0; i < cw->n_listeners; i++) {
            const struct config_listener *cl = &cw->listeners[i];
            struct sup_listener *l = NULL, **pp;

            for (pp = old; *pp != NULL; pp = &(*pp)->next) {
                if (listener_matches(*pp, (enum sb_worker_kind)k, cl)) {
                    l = *pp;
                    *pp = l->next;
                    break;
                }
            }
            if (l != NULL) {
                /* Reused: it serves under its (possibly new) name and worker. */
                char *name = strdup(cl->name);
                if (name == NULL) {
                    l->next = *old;
                    *old = l;
                    *error_r = "out of memory";
                    goto fail;
                }
                free(l->name);
                l->name = name;
                l->kind = (enum sb_worker_kind)k;
                l->next = NULL;
                l->taken = true;
            } else {
                l = listener_new((enum sb_worker_kind)k, cl);
                if (l == NULL) {
                    *error_r = "out of memory";
                    goto fail;
                }
                if (listener_open(l, error_r) < 0) {
                    listener_free(&l);
                    goto fail;
                }
            }
            *tail = l;
            tail = &l->next;
        }
    }
    for (struct sup_listener *l = list; l != NULL; l = l->next)
        l->taken = false;
    *list_r = list;
    return 0;

fail:
    while (list != NULL) {
        struct sup_listener *l = list;
        list = l->next;
        if (l->taken) {
            l->taken = false;
            l->next = *old;
            *old = l;
        } else {
            listener_free(&l);
        }
    }
    return -1;
}

static void listeners_free(struct sup_listener **list)
{
    while (*list != NULL) {
        struct sup_listener *l = *list;
        *list = l->next;
        listener_free(&l);
    }
}

/* ---- spawning ---- */

/* Everything the child needs, prepared before fork() so that the child only
 * makes async-signal-safe calls. */
struct spawn_plan {
    char *path;
    char *argv[4];
    char **envp;
    char *listen_env; /* the one envp string allocated here */
    int *fds;         /* [0] life, [1] status, [2...] listeners */
    size_t n_fds;
};

static void spawn_plan_free(struct spawn_plan *plan)
{
    free(plan->listen_env);
    free(plan->envp);
    free(plan->fds);
    free(plan->path);
    memset(plan, 0, sizeof(*plan));
}

static bool env_is_ours(const char *e)
{
    return strncmp(e, PROC_ENV_LISTEN_FDS "=", sizeof(PROC_ENV_LISTEN_FDS)) == 0 ||
           strncmp(e, PROC_ENV_SUPERVISED "=", sizeof(PROC_ENV_SUPERVISED)) == 0;
}

/* Everything but the status pipe (fds[1]), which is made just before fork(). */
static int spawn_plan_build(struct sup *s, struct sup_worker *w, struct spawn_plan *plan)
{
    size_t n_env = 0, n_listen = 0, fds_len = 0, e = 0;
    char *fds_env;

    memset(plan, 0, sizeof(*plan));
    if (asprintf(&plan->path, "%s/switchboard-%s", s->libexec_dir, worker_name(w)) < 0) {
        plan->path = NULL;
        return -1;
    }
    plan->argv[0] = plan->path;
    plan->argv[1] = "--config";
    plan->argv[2] = s->config_path;
    plan->argv[3] = NULL;

    for (struct sup_listener *l = s->listeners; l != NULL; l = l->next) {
        if (l->kind == w->kind) {
            n_listen++;
            fds_len += strlen(l->name) + 16;
        }
    }
    plan->n_fds = 2 + n_listen;
    plan->fds = calloc(plan->n_fds, sizeof(int));
    fds_env = plan->listen_env = malloc(sizeof(PROC_ENV_LISTEN_FDS) + 1 + fds_len);
    for (char **env = environ; *env != NULL; env++)
        n_env++;
    plan->envp = calloc(n_env + 3, sizeof(char *));
    if (plan->fds == NULL || fds_env == NULL || plan->envp == NULL) {
        spawn_plan_free(plan);
        return -1;
    }
    plan->fds[0] = s->life_pipe[0];
    plan->fds[1] = -1;

    /* "SWITCHBOARD_LISTEN_FDS=c2s=5 c2s-tls=6" */
    {
        size_t pos = (size_t)sprintf(fds_env, "%s=", PROC_ENV_LISTEN_FDS);
        size_t i = 0;
        for (struct sup_listener *l = s->listeners; l != NULL; l = l->next) {
            if (l->kind != w->kind)
                continue;
            plan->fds[2 + i] = l->fd;
            pos += (size_t)sprintf(fds_env + pos, "%s%s=%d", i > 0 ? " " : "", l->name,
                                   PROC_FIRST_LISTEN_FD + (int)i);
            i++;
        }
    }
    for (char **env = environ; *env != NULL; env++)
        if (!env_is_ours(*env))
            plan->envp[e++] = *env;
    plan->envp[e++] = fds_env;
    plan->envp[e++] = PROC_ENV_SUPERVISED "=1";
    plan->envp[e] = NULL;
    return 0;
}

/* In the child, between fork() and exec: async-signal-safe calls only. */
static void __attribute__((noreturn)) spawn_child(const struct spawn_plan *plan)
{
    static const char exec_failed[] = "switchboard: exec of a worker failed\n";
    struct sigaction sa;
    sigset_t none;
    int top = PROC_LIFE_FD + (int)plan->n_fds; /* first fd past the targets */

    /* The worker starts with default signal handling, whatever the
     * supervisor (and libev) had blocked or ignored. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Move every source fd above the target range first, so that placing one
     * cannot overwrite another that is still to be placed. */
    int tmp[plan->n_fds];
    for (size_t i = 0; i < plan->n_fds; i++) {
        tmp[i] = fcntl(plan->fds[i], F_DUPFD_CLOEXEC, top);
        if (tmp[i] < 0)
            _exit(127);
    }
    for (size_t i = 0; i < plan->n_fds; i++) {
        /* dup2 clears close-on-exec on the target. */
        if (dup2(tmp[i], PROC_LIFE_FD + (int)i) < 0)
            _exit(127);
    }
    if (close_range((unsigned)top, ~0u, 0) < 0) {
        for (int fd = top; fd < 65536; fd++)
            close(fd);
    }
    execve(plan->path, plan->argv, plan->envp);
    if (write(STDERR_FILENO, exec_failed, sizeof(exec_failed) - 1) < 0)
        _exit(127);
    _exit(127);
}

static void worker_status_cb(struct ev_loop *loop, ev_io *io, int revents);
static void worker_child_cb(struct ev_loop *loop, ev_child *c, int revents);
static void sup_schedule(struct sup *s);

/* Starts the worker's process. On failure the worker is FAILED (no binary)
 * or in backoff (no resources), never left PENDING. */
static void worker_spawn(struct sup *s, struct sup_worker *w)
{
    struct spawn_plan plan;
    int sp[2];
    pid_t pid;
    char *fingerprint;

    if (spawn_plan_build(s, w, &plan) < 0) {
        log_error("cannot start %s: out of memory", worker_name(w));
        goto no_resources;
    }
    if (access(plan.path, X_OK) < 0) {
        log_error("cannot start %s: %s: binary not found (%s)", worker_name(w), plan.path,
                  strerror(errno));
        sup_policy_fail(&w->policy, "binary not found");
        s->stats.failures++;
        spawn_plan_free(&plan);
        return;
    }
    fingerprint = strdup(s->config->workers[w->kind].fingerprint != NULL
                             ? s->config->workers[w->kind].fingerprint
                             : "");
    /* Non-blocking both ways: the worker never blocks on a busy supervisor,
     * the supervisor never blocks on a quiet worker. */
    if (fingerprint == NULL || pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_warn("cannot start %s: status pipe", worker_name(w));
        free(fingerprint);
        spawn_plan_free(&plan);
        goto no_resources;
    }
    plan.fds[1] = sp[1];
    pid = fork();
    if (pid == 0)
        spawn_child(&plan);
    close(sp[1]);
    spawn_plan_free(&plan);
    if (pid < 0) {
        log_warn("cannot start %s: fork", worker_name(w));
        close(sp[0]);
        free(fingerprint);
        goto no_resources;
    }

    w->pid = pid;
    w->conns = 0;
    w->status_fd = sp[0];
    w->line_len = 0;
    w->line_discard = false;
    free(w->fingerprint);
    w->fingerprint = fingerprint;
    ev_io_set(&w->status_io, sp[0], EV_READ);
    ev_io_start(s->loop, &w->status_io);
    ev_child_set(&w->child, pid, 0);
    ev_child_start(s->loop, &w->child);
    sup_policy_started(&w->policy, now_ms());
    s->stats.starts++;
    log_info("started %s (pid %d)%s", worker_name(w), (int)pid,
             w->policy.starts > 1 ? " again" : "");
    return;

no_resources:
    /* Treated as a death before READY: retried after the backoff. */
    sup_policy_started(&w->policy, now_ms());
    sup_policy_exited(&w->policy, &s->params, now_ms(), (struct sup_exit_status){false, 127});
    s->stats.early_exits++;
}

/* Asks the worker to stop (SIGTERM, then SIGKILL after stop_timeout_ms);
 * restart: start it again once it has exited. */
static void worker_stop(struct sup *s, struct sup_worker *w, bool restart, const char *why)
{
    bool was_stopping = w->policy.state == SUP_STATE_STOPPING;

    if (!sup_policy_stop(&w->policy, restart, now_ms()))
        return;
    if (was_stopping)
        return; /* already signalled; only what happens after the exit changed */
    log_info("stopping %s (pid %d): %s", worker_name(w), (int)w->pid, why);
    if (kill(w->pid, SIGTERM) < 0 && errno != ESRCH)
        log_warn("kill %s (pid %d)", worker_name(w), (int)w->pid);
    ev_timer_set(&w->kill_timer, s->config->supervisor.stop_timeout_ms / 1000.0, 0.);
    ev_timer_start(s->loop, &w->kill_timer);
}

static void worker_kill_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct sup_worker *w = t->data;

    if (w->pid <= 0)
        return;
    log_warnx("%s (pid %d) did not stop within %d ms; sending SIGKILL", worker_name(w), (int)w->pid,
              w->sup->config->supervisor.stop_timeout_ms);
    if (kill(w->pid, SIGKILL) < 0 && errno != ESRCH)
        log_warn("kill %s (pid %d)", worker_name(w), (int)w->pid);
}

/* ---- the status pipe ---- */

static void worker_status_line(struct sup *s, struct sup_worker *w, const char *line)
{
    char sample[96];

    if (strcmp(line, "READY") == 0) {
        if (w->policy.state == SUP_STATE_STARTING) {
            sup_policy_ready(&w->policy, now_ms());
            log_info("%s (pid %d) is ready", worker_name(w), (int)w->pid);
            /* The broker's readiness releases the workers waiting for it. */
            if (w->kind == SB_WORKER_BROKER)
                sup_schedule(s);
        } else {
            sup_policy_ready(&w->policy, now_ms());
        }
    } else if (strncmp(line, "CONNS ", 6) == 0) {
        char *end;
        unsigned long n;
        errno = 0;
        n = strtoul(line + 6, &end, 10);
        if (errno != 0 || *end != '\0' || end == line + 6 || n > UINT_MAX || line[6] == '-')
            log_warnx("%s (pid %d): bad status line \"%s\"", worker_name(w), (int)w->pid,
                      log_sample(sample, sizeof(sample), line, strlen(line)));
        else
            w->conns = (unsigned)n;
    } else {
        log_warnx("%s (pid %d): unknown status line \"%s\"", worker_name(w), (int)w->pid,
                  log_sample(sample, sizeof(sample), line, strlen(line)));
    }
}

static void worker_status_close(struct sup *s, struct sup_worker *w)
{
    if (w->status_fd < 0)
        return;
    ev_io_stop(s->loop, &w->status_io);
    close(w->status_fd);
    w->status_fd = -1;
}

/* Reads what the worker wrote, a bounded amount per call. */
static void worker_status_read(struct sup *s, struct sup_worker *w)
{
    char buf[512];

    for (int rounds = 0; rounds < 16 && w->status_fd >= 0; rounds++) {
        ssize_t n = read(w->status_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            if (n < 0)
                log_warn("%s (pid %d): status pipe", worker_name(w), (int)w->pid);
            worker_status_close(s, w);
            return;
        }
        for (ssize_t i = 0; i < n; i++) {
            char ch = buf[i];
            if (ch == '\n') {
                if (!w->line_discard) {
                    w->line[w->line_len] = '\0';
                    worker_status_line(s, w, w->line);
                }
                w->line_len = 0;
                w->line_discard = false;
            } else if (w->line_discard) {
                continue;
            } else if (w->line_len + 1 < sizeof(w->line)) {
                w->line[w->line_len++] = ch;
            } else {
                log_warnx("%s (pid %d): status line longer than %d bytes ignored", worker_name(w),
                          (int)w->pid, SUP_STATUS_LINE_MAX - 1);
                w->line_discard = true;
                w->line_len = 0;
            }
        }
    }
}

static void worker_status_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct sup_worker *w = io->data;
    worker_status_read(w->sup, w);
}

/* ---- reaping and the restart policy ---- */

static void shutdown_progress(struct sup *s);

static void worker_child_cb(struct ev_loop *loop, ev_child *c, int revents)
{
    struct sup_worker *w = c->data;
    struct sup *s = w->sup;
    int status = c->rstatus;
    struct sup_exit_status st;
    bool requested = w->policy.state == SUP_STATE_STOPPING;
    bool was_ready;
    pid_t pid = w->pid;
    int64_t now, up_ms;
    enum sup_exit_action action;
    char how[64];

    ev_child_stop(loop, c);
    ev_timer_stop(loop, &w->kill_timer);
    /* While shutting down, an exit is never a crash, even before this worker's
     * turn: a Ctrl-C on the terminal reaches the whole process group. */
    if (s->shutting_down && w->policy.state != SUP_STATE_STOPPING) {
        sup_policy_stop(&w->policy, false, now_ms());
        requested = true;
    }
    /* A READY written just before the exit still counts: read it first. */
    while (w->status_fd >= 0) {
        int before = w->status_fd;
        worker_status_read(s, w);
        if (w->status_fd == before) {
            /* EAGAIN: nothing left that the dead process could write. */
            worker_status_close(s, w);
        }
    }
    now = now_ms();
    w->pid = 0;
    w->conns = 0;
    was_ready = w->policy.ready_ms >= 0;
    up_ms = now - w->policy.started_ms;
    st.signaled = WIFSIGNALED(status);
    st.value = st.signaled ? WTERMSIG(status) : WEXITSTATUS(status);
    describe_exit(st, how, sizeof(how));

    action = sup_policy_exited(&w->policy, &s->params, now, st);
    switch (action) {
    case SUP_EXIT_STOPPED:
        log_info("%s (pid %d) stopped: %s", worker_name(w), (int)pid, how);
        break;
    case SUP_EXIT_RESTART:
        if (requested) {
            log_info("%s (pid %d) stopped for a restart: %s", worker_name(w), (int)pid, how);
        } else {
            s->stats.crashes++;
            log_error("%s (pid %d) crashed after %.1f s: %s; restarting now (%u crash(es) in "
                      "the last %d s, %d allowed)",
                      worker_name(w), (int)pid, up_ms / 1000.0, how,
                      sup_policy_recent_crashes(&w->policy, &s->params, now),
                      s->config->supervisor.restart_period_s,
                      s->config->supervisor.restart_intensity);
        }
        break;
    case SUP_EXIT_BACKOFF:
        s->stats.early_exits++;
        log_error("%s (pid %d) died before it was ready: %s; restarting in %lld ms", worker_name(w),
                  (int)pid, how, (long long)(w->policy.due_ms - now));
        break;
    case SUP_EXIT_FAILED:
        if (was_ready && !(!st.signaled && st.value == PROC_EXIT_CONFIG))
            s->stats.crashes++;
        s->stats.failures++;
        log_error("%s (pid %d) %s; marked failed: %s; not restarting (\"switchboardctl start "
                  "%s\" retries)",
                  worker_name(w), (int)pid, how, w->policy.failed_reason, worker_name(w));
        break;
    }

    if (s->shutting_down) {
        shutdown_progress(s);
        return;
    }
    if (!w->managed && w->policy.state == SUP_STATE_PENDING)
        sup_policy_stop(&w->policy, false, now); /* disabled meanwhile */
    sup_schedule(s);
}

static void schedule_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    sup_schedule(t->data);
}

/* Starts whatever the policy says is due, and arms the timer for the next
 * time something may become due. */
static void sup_schedule(struct sup *s)
{
    const struct sup_policy *ws[SB_WORKER_COUNT];
    int64_t wake = -1, now;
    unsigned start, late;

    if (s->shutting_down)
        return;
    /* Each round starts at least one worker (which leaves PENDING), so this
     * ends within SB_WORKER_COUNT rounds. */
    for (;;) {
        for (int k = 0; k < SB_WORKER_COUNT; k++)
            ws[k] = s->workers[k].managed ? &s->workers[k].policy : NULL;
        now = now_ms();
        start = sup_policy_pick(ws, now, &wake, &late);
        if (start == 0)
            break;
        for (int k = 0; k < SB_WORKER_COUNT; k++) {
            if (!(start & (1u << k)))
                continue;
            if (late & (1u << k))
                log_warnx("the broker is not ready after %d ms; starting %s anyway",
                          SUP_POLICY_BROKER_WAIT_MS, config_worker_name((enum sb_worker_kind)k));
            worker_spawn(s, &s->workers[k]);
        }
    }
    ev_timer_stop(s->loop, &s->schedule_timer);
    if (wake >= 0) {
        ev_timer_set(&s->schedule_timer, (double)(wake > now ? wake - now : 0) / 1000.0, 0.);
        ev_timer_start(s->loop, &s->schedule_timer);
    }
}

/* ---- stopping everything ---- */

/* Stage 0: rooms and the protocol workers; 1: the store; 2: the broker. */
static int stop_stage(enum sb_worker_kind kind)
{
    if (kind == SB_WORKER_BROKER)
        return 2;
    if (kind == SB_WORKER_STORE)
        return 1;
    return 0;
}

static void shutdown_progress(struct sup *s)
{
    for (int stage = 0; stage < 3; stage++) {
        bool alive = false;
        for (int k = SB_WORKER_COUNT - 1; k >= 0; k--) {
            struct sup_worker *w = &s->workers[k];
            if (stop_stage(w->kind) != stage || w->pid <= 0)
                continue;
            alive = true;
            worker_stop(s, w, false, "shutting down");
        }
        if (alive)
            return; /* the next stage starts once this one has exited */
    }
    log_info("all workers stopped");
    ev_break(s->loop, EVBREAK_ALL);
}

static void shutdown_begin(struct sup *s, const char *why)
{
    int64_t now = now_ms();

    if (s->shutting_down) {
        log_info("%s: already shutting down", why);
        return;
    }
    log_info("%s: stopping all workers", why);
    s->shutting_down = true;
    ev_timer_stop(s->loop, &s->schedule_timer);
    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        struct sup_worker *w = &s->workers[k];
        if (!sup_policy_has_process(&w->policy))
            sup_policy_stop(&w->policy, false, now);
    }
    shutdown_progress(s);
}

/* ---- reload ---- */

/* Re-reads the configuration and applies it: listeners opened and closed,
 * workers started, stopped or restarted where their fingerprint changed. On
 * any error nothing changes and -1 is returned with *error_r. */
static int sup_reload(struct sup *s, const char **error_r)
{
    static char error[1024];
    struct config *nc = NULL, *old;
    struct sup_listener *list = NULL;
    const char *err;
    int64_t now;

    if (config_load(s->config_path, &nc, &err) < 0) {
        snprintf(error, sizeof(error), "%s", err);
        goto fail;
    }
    if (strcmp(nc->state_dir, s->config->state_dir) != 0) {
        snprintf(error, sizeof(error),
                 "state_dir cannot change on reload (restart switchboard to move it)");
        goto fail;
    }
    if (strcmp(nc->supervisor.control_socket, s->config->supervisor.control_socket) != 0) {
        snprintf(error, sizeof(error),
                 "supervisor.control_socket cannot change on reload (restart switchboard)");
        goto fail;
    }
    if (listeners_build(nc, &s->listeners, &list, &err) < 0) {
        snprintf(error, sizeof(error), "%s", err);
        goto fail;
    }
    /* What is left in the old list is no longer configured. A worker that
     * inherited one keeps its copy until it is restarted. */
    for (struct sup_listener *l = s->listeners; l != NULL; l = l->next) {
        char where[128];
        listener_format(l, where, sizeof(where));
        log_info("closing listener %s/%s on %s", config_worker_name(l->kind), l->name, where);
    }
    listeners_free(&s->listeners);
    s->listeners = list;

    old = s->config;
    s->config = nc;
    log_set_level((enum log_level)nc->log_level);
    params_from_config(&s->params, nc);
    now = now_ms();
    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        struct sup_worker *w = &s->workers[k];
        bool want = worker_wanted(nc, (enum sb_worker_kind)k);
        const char *fp = nc->workers[k].fingerprint != NULL ? nc->workers[k].fingerprint : "";
        bool changed = w->fingerprint == NULL || strcmp(w->fingerprint, fp) != 0;

        if (want && !w->managed) {
            w->managed = true;
            log_info("%s is enabled now: starting it", worker_name(w));
            if (w->policy.state == SUP_STATE_STOPPING)
                w->policy.restart_after_stop = true;
            else if (!sup_policy_has_process(&w->policy))
                sup_policy_start(&w->policy, now);
        } else if (!want && w->managed) {
            w->managed = false;
            log_info("%s is disabled now: stopping it", worker_name(w));
            worker_stop(s, w, false, "disabled in the configuration");
            if (!sup_policy_has_process(&w->policy))
                sup_policy_init(&w->policy); /* forget its history and failure */
        } else if (want && changed) {
            if (sup_policy_has_process(&w->policy)) {
                worker_stop(s, w, true, "its configuration changed");
            } else if (w->policy.state == SUP_STATE_FAILED) {
                log_info("%s: configuration changed: trying the failed worker again",
                         worker_name(w));
                sup_policy_start(&w->policy, now);
            }
        }
    }
    config_free(&old);
    log_info("configuration reloaded from %s", s->config_path);
    sup_schedule(s);
    return 0;

fail:
    config_free(&nc);
    log_error("reload: %s; keeping the running configuration", error);
    *error_r = error;
    return -1;
}

/* ---- the control socket's commands ---- */

static struct sup_worker *control_worker(struct sup *s, const char *name, const char **error_r)
{
    static char error[160];
    char sample[48];
    int kind;

    if (name == NULL) {
        *error_r = "missing worker name";
        return NULL;
    }
    kind = config_worker_parse(name);
    if (kind < 0) {
        snprintf(error, sizeof(error), "unknown worker \"%s\"",
                 log_sample(sample, sizeof(sample), name, strlen(name)));
        *error_r = error;
        return NULL;
    }
    if (!s->workers[kind].managed) {
        snprintf(error, sizeof(error), "%s is not enabled in the configuration", name);
        *error_r = error;
        return NULL;
    }
    return &s->workers[kind];
}

static void control_status(struct sup *s, struct sup_reply *r)
{
    int64_t now = now_ms();

    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        const struct sup_worker *w = &s->workers[k];
        const struct sup_policy *p = &w->policy;
        char state[SUP_POLICY_REASON_MAX + 16], pid[16], uptime[24];

        if (!w->managed && !sup_policy_has_process(p))
            continue;
        if (p->state == SUP_STATE_FAILED)
            snprintf(state, sizeof(state), "failed(%s)", p->failed_reason);
        else
            snprintf(state, sizeof(state), "%s", sup_state_name(p, now));
        if (w->pid > 0) {
            snprintf(pid, sizeof(pid), "%d", (int)w->pid);
            snprintf(uptime, sizeof(uptime), "%lld", (long long)((now - p->started_ms) / 1000));
        } else {
            snprintf(pid, sizeof(pid), "-");
            snprintf(uptime, sizeof(uptime), "-");
        }
        sup_reply_line(r, "%s\t%s\t%s\t%s\t%u\t%u", worker_name(w), state, pid, uptime,
                       sup_policy_restarts(p), w->conns);
    }
    for (const struct sup_listener *l = s->listeners; l != NULL; l = l->next) {
        char where[128];
        listener_format(l, where, sizeof(where));
        sup_reply_line(r, "listener\t%s\t%s\t%s", config_worker_name(l->kind), l->name, where);
    }
}

static void control_stats(struct sup *s, struct sup_reply *r)
{
    sup_reply_line(r, "uptime_s=%lld", (long long)((now_ms() - s->started_ms) / 1000));
    sup_reply_line(r, "starts=%u", s->stats.starts);
    sup_reply_line(r, "crashes=%u", s->stats.crashes);
    sup_reply_line(r, "early_exits=%u", s->stats.early_exits);
    sup_reply_line(r, "failures=%u", s->stats.failures);
    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        const struct sup_worker *w = &s->workers[k];
        if (!w->managed && w->policy.starts == 0)
            continue;
        sup_reply_line(r, "restarts.%s=%u", worker_name(w), sup_policy_restarts(&w->policy));
        sup_reply_line(r, "crashes.%s=%u", worker_name(w), w->policy.crashes);
    }
}

static int control_handle(void *ctx, char *request, struct sup_reply *reply, const char **error_r)
{
    static char error[160];
    struct sup *s = ctx;
    char *save = NULL, sample[48];
    char *cmd = strtok_r(request, " \t", &save);
    char *arg = cmd != NULL ? strtok_r(NULL, " \t", &save) : NULL;
    char *extra = arg != NULL ? strtok_r(NULL, " \t", &save) : NULL;
    struct sup_worker *w;
    bool needs_arg;

    if (cmd == NULL) {
        *error_r = "empty request";
        return -1;
    }
    needs_arg =
        strcmp(cmd, "restart") == 0 || strcmp(cmd, "stop") == 0 || strcmp(cmd, "start") == 0;
    if (extra != NULL || (arg != NULL && !needs_arg)) {
        snprintf(error, sizeof(error), "too many arguments to %s",
                 log_sample(sample, sizeof(sample), cmd, strlen(cmd)));
        *error_r = error;
        return -1;
    }
    if (strcmp(cmd, "status") == 0) {
        control_status(s, reply);
        return 0;
    }
    if (strcmp(cmd, "stats") == 0) {
        control_stats(s, reply);
        return 0;
    }
    if (!needs_arg && strcmp(cmd, "reload") != 0) {
        snprintf(error, sizeof(error), "unknown command \"%s\"",
                 log_sample(sample, sizeof(sample), cmd, strlen(cmd)));
        *error_r = error;
        return -1;
    }
    if (s->shutting_down) {
        *error_r = "shutting down";
        return -1;
    }
    if (strcmp(cmd, "reload") == 0) {
        log_info("control: reload requested");
        return sup_reload(s, error_r);
    }
    if ((w = control_worker(s, arg, error_r)) == NULL)
        return -1;
    log_info("control: %s %s requested", cmd, worker_name(w));
    if (strcmp(cmd, "stop") == 0) {
        worker_stop(s, w, false, "stop requested");
    } else if (strcmp(cmd, "restart") == 0) {
        if (sup_policy_has_process(&w->policy))
            worker_stop(s, w, true, "restart requested");
        else
            sup_policy_start(&w->policy, now_ms());
    } else { /* start */
        if (w->policy.state == SUP_STATE_STOPPING)
            w->policy.restart_after_stop = true;
        else if (!sup_policy_has_process(&w->policy))
            sup_policy_start(&w->policy, now_ms());
    }
    sup_schedule(s);
    return 0;
}

/* ---- signals ---- */

static void signal_cb(struct ev_loop *loop, ev_signal *sig, int revents)
{
    struct sup *s = sig->data;
    const char *err;

    switch (sig->signum) {
    case SIGHUP:
        if (s->shutting_down)
            return;
        log_info("SIGHUP: reloading the configuration");
        (void)sup_reload(s, &err); /* logged there */
        break;
    case SIGTERM:
        shutdown_begin(s, "SIGTERM");
        break;
    case SIGINT:
        shutdown_begin(s, "SIGINT");
        break;
    }
}

/* ---- start-up ---- */

static void usage(FILE *out)
{
    fprintf(out, "usage: switchboard [--config PATH] [--check-config] [--foreground]\n"
                 "\n"
                 "Starts the Switchboard messaging server: the supervisor and its workers.\n"
                 "  --config PATH    configuration file (default " SUP_DEFAULT_CONFIG ")\n"
                 "  --check-config   validate the configuration, print \"configuration OK\", exit\n"
                 "  --foreground     accepted for compatibility; switchboard always runs in the\n"
                 "                   foreground and logs to standard error\n"
                 "\n"
                 "Environment: " SUP_ENV_LIBEXEC_DIR " names the directory of the worker\n"
                 "binaries (default: the directory of this executable).\n"
                 "Exit status: 0 after a clean stop, 1 on a start-up failure (another\n"
                 "supervisor holds the state directory), 2 on bad usage, 78 on a\n"
                 "configuration error.\n");
}

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *path, const char **error_r)
{
    static char error[PATH_MAX + 64];
    char buf[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf)) {
        *error_r = "state_dir: bad path";
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
                snprintf(error, sizeof(error), "cannot create %s: %s", buf, strerror(errno));
                *error_r = error;
                return -1;
            }
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return 0;
}

/* Creates state_dir and state_dir/run; hands them to the configured user
 * when running as root, since the workers drop to that user and create
 * their files (the broker's socket, the database) there. */
static int state_dirs(const struct config *c, const char **error_r)
{
    static char error[PATH_MAX + 64];
    char run[PATH_MAX];

    if (snprintf(run, sizeof(run), "%s/run", c->state_dir) >= (int)sizeof(run)) {
        *error_r = "state_dir: path too long";
        return -1;
    }
    if (make_dirs(c->state_dir, error_r) < 0 || make_dirs(run, error_r) < 0)
        return -1;
    if (c->user != NULL && geteuid() == 0) {
        struct passwd *pw = getpwnam(c->user);
        if (pw == NULL) {
            snprintf(error, sizeof(error), "user %s: no such user", c->user);
            *error_r = error;
            return -1;
        }
        if (chown(c->state_dir, pw->pw_uid, pw->pw_gid) < 0 ||
            chown(run, pw->pw_uid, pw->pw_gid) < 0) {
            snprintf(error, sizeof(error), "cannot give %s to %s: %s", c->state_dir, c->user,
                     strerror(errno));
            *error_r = error;
            return -1;
        }
    }
    return 0;
}

/* Takes <state_dir>/run/supervisor.lock, held for the supervisor's life. */
static int take_lock(const struct config *c)
{
    char path[PATH_MAX], pid[32];
    int fd, n;

    snprintf(path, sizeof(path), "%s/run/supervisor.lock", c->state_dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK) {
            ssize_t len = pread(fd, pid, sizeof(pid) - 1, 0);
            pid[len > 0 ? len : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            log_error("another switchboard supervisor%s%s%s is running on %s",
                      pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "", c->state_dir);
        } else {
            log_error("cannot lock %s: %s", path, strerror(errno));
        }
        close(fd);
        return -1;
    }
    n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        log_warn("cannot write the pid to %s", path);
    return fd;
}

static char *find_libexec_dir(void)
{
    const char *env = getenv(SUP_ENV_LIBEXEC_DIR);
    char self[PATH_MAX];
    ssize_t n;
    char *slash;

    if (env != NULL && env[0] != '\0')
        return strdup(env);
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return strdup(".");
    self[n] = '\0';
    slash = strrchr(self, '/');
    if (slash == self)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    return strdup(self);
}

static void sup_free(struct sup *s)
{
    sup_control_free(&s->control);
    listeners_free(&s->listeners);
    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        worker_status_close(s, &s->workers[k]);
        free(s->workers[k].fingerprint);
    }
    if (s->life_pipe[0] >= 0)
        close(s->life_pipe[0]);
    if (s->life_pipe[1] >= 0)
        close(s->life_pipe[1]);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    config_free(&s->config);
    free(s->config_path);
    free(s->libexec_dir);
}

int main(int argc, char **argv)
{
    static struct sup sup;
    struct sup *s = &sup;
    const char *path = SUP_DEFAULT_CONFIG, *err;
    bool check_only = false;
    struct sigaction sa;
    struct sup_listener *no_listeners = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = true;
        } else if (strcmp(argv[i], "--foreground") == 0) {
            /* always */
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return SUP_EXIT_OK;
        } else {
            fprintf(stderr, "switchboard: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return SUP_EXIT_USAGE;
        }
    }

    /* With 0, 1 or 2 closed, a pipe or socket opened later would land there
     * and be mistaken for a standard stream by every worker. */
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            return SUP_EXIT_FAILURE;
    }
    log_init("supervisor", LOG_LEVEL_INFO);
    if (config_load(path, &s->config, &err) < 0) {
        fprintf(stderr, "%s\n", err);
        return PROC_EXIT_CONFIG;
    }
    if (check_only) {
        printf("configuration OK\n");
        config_free(&s->config);
        return SUP_EXIT_OK;
    }
    log_set_level((enum log_level)s->config->log_level);

    s->lock_fd = -1;
    s->life_pipe[0] = s->life_pipe[1] = -1;
    s->started_ms = now_ms();
    s->config_path = realpath(path, NULL);
    s->libexec_dir = find_libexec_dir();
    if (s->config_path == NULL || s->libexec_dir == NULL) {
        log_error("%s: %s", path, strerror(errno));
        sup_free(s);
        return SUP_EXIT_FAILURE;
    }
    params_from_config(&s->params, s->config);

    /* A write to a vanished control client must not kill the supervisor. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    if (state_dirs(s->config, &err) < 0) {
        log_error("%s", err);
        sup_free(s);
        return PROC_EXIT_CONFIG;
    }
    if ((s->lock_fd = take_lock(s->config)) < 0) {
        sup_free(s);
        return SUP_EXIT_FAILURE;
    }
    if (listeners_build(s->config, &no_listeners, &s->listeners, &err) < 0) {
        log_error("%s", err);
        sup_free(s);
        return PROC_EXIT_CONFIG;
    }
    if (pipe2(s->life_pipe, O_CLOEXEC) < 0) {
        log_error("life pipe: %s", strerror(errno));
        sup_free(s);
        return SUP_EXIT_FAILURE;
    }

    s->loop = ev_default_loop(EVFLAG_AUTO);
    if (s->loop == NULL) {
        log_error("cannot initialise the event loop");
        sup_free(s);
        return SUP_EXIT_FAILURE;
    }
    s->control =
        sup_control_new(s->loop, s->config->supervisor.control_socket, control_handle, s, &err);
    if (s->control == NULL) {
        log_error("%s", err);
        sup_free(s);
        return PROC_EXIT_CONFIG;
    }

    ev_signal_init(&s->sigterm, signal_cb, SIGTERM);
    ev_signal_init(&s->sigint, signal_cb, SIGINT);
    ev_signal_init(&s->sighup, signal_cb, SIGHUP);
    s->sigterm.data = s->sigint.data = s->sighup.data = s;
    ev_signal_start(s->loop, &s->sigterm);
    ev_signal_start(s->loop, &s->sigint);
    ev_signal_start(s->loop, &s->sighup);
    ev_init(&s->schedule_timer, schedule_timer_cb);
    s->schedule_timer.data = s;

    for (int k = 0; k < SB_WORKER_COUNT; k++) {
        struct sup_worker *w = &s->workers[k];
        w->sup = s;
        w->kind = (enum sb_worker_kind)k;
        w->status_fd = -1;
        sup_policy_init(&w->policy);
        ev_init(&w->status_io, worker_status_cb);
        w->status_io.data = w;
        ev_init(&w->child, worker_child_cb);
        w->child.data = w;
        ev_init(&w->kill_timer, worker_kill_cb);
        w->kill_timer.data = w;
        w->managed = worker_wanted(s->config, w->kind);
        if (w->managed)
            sup_policy_schedule(&w->policy, s->started_ms);
    }

    log_info("switchboard starting (config %s, workers from %s, control socket %s)", s->config_path,
             s->libexec_dir, s->config->supervisor.control_socket);
    sup_schedule(s);
    ev_run(s->loop, 0);

    sup_free(s);
    ev_loop_destroy(s->loop);
    log_info("stopped");
    return SUP_EXIT_OK;
}
