/*
 * switchboardctl, the operator's tool, modelled on ejabberdctl. It reads
 * the configuration to find two endpoints:
 *  - the supervisor's control socket (status, start/stop/restart, reload,
 *    and the supervisor's half of stats): one request line, a reply of data
 *    lines ending in "OK" or "ERR <message>" (see workers/sup_control.h);
 *  - the broker (accounts, connected users, the broker's half of stats): a
 *    short-lived ZeroMQ DEALER link that says HELLO as kind "ctl", sends one
 *    IPC_REQUEST to the store or the broker, waits for the IPC_RESPONSE with
 *    the same REQ_ID, and says BYE. While the broker or the store is
 *    (re)starting the request is retried until a deadline.
 * Results go to stdout without decoration so that scripts can use them;
 * errors are one line on stderr, and the exit code says what happened.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "shared/config.h"
#include "shared/ipc.h"

#define CTL_DEFAULT_CONFIG "etc/switchboard.yml"
#define CTL_DEFAULT_TIMEOUT_S 20
/* How long one attempt waits for the broker's WELCOME, then for the response. */
#define CTL_ATTEMPT_MS 2000
/* Pause before retrying after the store said it is unavailable. */
#define CTL_RETRY_PAUSE_MS 250
/* Largest control-socket reply accepted. */
#define CTL_MAX_REPLY (1u << 20)
#define CTL_MAX_PASSWORD 1024

/* Exit codes, documented in usage(). */
#define CTL_EXIT_OK 0
#define CTL_EXIT_FAILED 1
#define CTL_EXIT_USAGE 2
#define CTL_EXIT_UNREACHABLE 3
#define CTL_EXIT_CONFIG 78

static void usage(FILE *out)
{
    fprintf(out,
            "usage: switchboardctl [--config PATH] [--timeout SECONDS] COMMAND [ARGS]\n"
            "\n"
            "Commands for the supervisor:\n"
            "  status                          every worker with its state, pid, uptime,\n"
            "                                  restarts and connections; the listeners\n"
            "  start WORKER                    start a stopped or failed worker\n"
            "  stop WORKER                     stop a worker (it stays stopped)\n"
            "  restart WORKER                  stop and start a worker\n"
            "                                  (WORKER: broker, store, rooms, xmpp, mqtt,\n"
            "                                  sip, irc)\n"
            "  reload                          re-read the configuration; restart only the\n"
            "                                  workers whose settings changed\n"
            "  stats                           the supervisor's counters, then the broker's\n"
            "                                  (name=value lines)\n"
            "Commands for accounts and sessions (through the broker):\n"
            "  register USER DOMAIN [PASSWORD] create an account\n"
            "  unregister USER DOMAIN          delete an account\n"
            "  passwd USER DOMAIN [PASSWORD]   set an account's password\n"
            "  registered-users DOMAIN         the accounts of DOMAIN, one per line\n"
            "  connected-users                 the online sessions, one full address per line\n"
            "When PASSWORD is omitted it is read from standard input (one line; not\n"
            "echoed on a terminal).\n"
            "\n"
            "Options:\n"
            "  --config PATH      configuration file (default " CTL_DEFAULT_CONFIG ")\n"
            "  --timeout SECONDS  how long to keep retrying while the broker or the store\n"
            "                     is unavailable (default %d)\n"
            "\n"
            "Exit status:\n"
            "  0   success\n"
            "  1   the operation failed (account exists, no such account, bad argument...)\n"
            "  2   usage error\n"
            "  3   the server is not running or not reachable\n"
            "  78  the configuration file is invalid\n",
            CTL_DEFAULT_TIMEOUT_S);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes untrusted bytes as one line: control characters become '?'. */
static void print_clean(FILE *out, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        fputc(p[i] < 0x20 || p[i] == 0x7f ? '?' : p[i], out);
    fputc('\n', out);
}

/* ---- the supervisor's control socket ---- */

/*
 * Sends one request and reads the reply until the supervisor closes.
 * Returns 0 with the data lines in *data_r (malloc'd, NUL-terminated), or
 * an exit code after printing the error.
 */
static int control_call(const struct config *c, const char *request, int timeout_ms, char **data_r)
{
    const char *path = c->supervisor.control_socket;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int64_t deadline = now_ms() + timeout_ms;
    size_t len = 0, cap = 4096, req_len = strlen(request);
    char *buf, *last;
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "switchboardctl: control socket path too long: %s\n", path);
        return CTL_EXIT_CONFIG;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "switchboardctl: socket: %s\n", strerror(errno));
        return CTL_EXIT_FAILED;
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        if (errno == ENOENT || errno == ECONNREFUSED)
            fprintf(stderr, "switchboardctl: switchboard is not running (no supervisor at %s)\n",
                    path);
        else
            fprintf(stderr, "switchboardctl: cannot reach the supervisor at %s: %s\n", path,
                    strerror(errno));
        close(fd);
        return CTL_EXIT_UNREACHABLE;
    }
    for (size_t off = 0; off <= req_len;) {
        /* The request, then its newline. */
        const char *p = off < req_len ? request + off : "\n";
        size_t n_left = off < req_len ? req_len - off : 1;
        ssize_t n = send(fd, p, n_left, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "switchboardctl: sending to the supervisor: %s\n", strerror(errno));
            close(fd);
            return CTL_EXIT_UNREACHABLE;
        }
        off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);

    buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        fprintf(stderr, "switchboardctl: out of memory\n");
        return CTL_EXIT_FAILED;
    }
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            fprintf(stderr, "switchboardctl: no reply from the supervisor\n");
            free(buf);
            close(fd);
            return CTL_EXIT_UNREACHABLE;
        }
        if (len + 1 >= cap) {
            char *nbuf;
            if (cap >= CTL_MAX_REPLY) {
                fprintf(stderr, "switchboardctl: the supervisor's reply is too long\n");
                free(buf);
                close(fd);
                return CTL_EXIT_FAILED;
            }
            nbuf = realloc(buf, cap * 2);
            if (nbuf == NULL) {
                fprintf(stderr, "switchboardctl: out of memory\n");
                free(buf);
                close(fd);
                return CTL_EXIT_FAILED;
            }
            buf = nbuf;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "switchboardctl: reading from the supervisor: %s\n", strerror(errno));
            free(buf);
            close(fd);
            return CTL_EXIT_UNREACHABLE;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';

    /* The last line is the verdict. */
    if (len == 0 || buf[len - 1] != '\n') {
        fprintf(stderr, "switchboardctl: incomplete reply from the supervisor\n");
        free(buf);
        return CTL_EXIT_UNREACHABLE;
    }
    buf[--len] = '\0';
    last = strrchr(buf, '\n');
    last = last != NULL ? last + 1 : buf;
    if (strcmp(last, "OK") == 0) {
        *last = '\0';
        *data_r = buf;
        return 0;
    }
    if (strncmp(last, "ERR ", 4) == 0)
        fprintf(stderr, "switchboardctl: %s\n", last + 4);
    else
        fprintf(stderr, "switchboardctl: unexpected reply from the supervisor: %s\n", last);
    free(buf);
    return CTL_EXIT_FAILED;
}

/* Splits s in place at tabs into at most max fields; returns the count. */
static size_t split_tabs(char *s, char **fields, size_t max)
{
    size_t n = 0;
    while (n < max) {
        fields[n++] = s;
        s = strchr(s, '\t');
        if (s == NULL)
            break;
        *s++ = '\0';
    }
    return n;
}

/* "45s", "12m03s", "3h04m", "2d03h". */
static const char *format_uptime(const char *seconds, char *out, size_t size)
{
    char *end;
    unsigned long long s = strtoull(seconds, &end, 10);

    if (*seconds == '\0' || *end != '\0') {
        snprintf(out, size, "%s", seconds);
    } else if (s < 60) {
        snprintf(out, size, "%llus", s);
    } else if (s < 3600) {
        snprintf(out, size, "%llum%02llus", s / 60, s % 60);
    } else if (s < 86400) {
        snprintf(out, size, "%lluh%02llum", s / 3600, s % 3600 / 60);
    } else {
        snprintf(out, size, "%llud%02lluh", s / 86400, s % 86400 / 3600);
    }
    return out;
}

static void print_status(char *data)
{
    enum { COLS = 6, MAX_ROWS = 256 };
    static const char *const heads[COLS] = {"WORKER", "STATE",    "PID",
                                            "UPTIME", "RESTARTS", "CONNECTIONS"};
    char *rows[MAX_ROWS][COLS], uptimes[MAX_ROWS][24];
    char *listeners[MAX_ROWS][4];
    size_t n_rows = 0, n_listeners = 0, width[COLS], lw = strlen("LISTENER");
    char *save = NULL;

    for (int i = 0; i < COLS; i++)
        width[i] = strlen(heads[i]);
    for (char *line = strtok_r(data, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *f[COLS];
        size_t n = split_tabs(line, f, COLS);

        if (strcmp(f[0], "listener") == 0 && n >= 4 && n_listeners < MAX_ROWS) {
            /* "listener worker name where": split_tabs stopped at 6 fields at most. */
            char **l = listeners[n_listeners++];
            size_t w;
            l[0] = f[1];
            l[1] = f[2];
            l[2] = f[3];
            w = strlen(l[0]) + 1 + strlen(l[1]);
            if (w > lw)
                lw = w;
        } else if (n == COLS && n_rows < MAX_ROWS) {
            for (int i = 0; i < COLS; i++)
                rows[n_rows][i] = f[i];
            rows[n_rows][3] = (char *)format_uptime(f[3], uptimes[n_rows], sizeof(uptimes[0]));
            for (int i = 0; i < COLS; i++)
                if (strlen(rows[n_rows][i]) > width[i])
                    width[i] = strlen(rows[n_rows][i]);
            n_rows++;
        }
    }
    for (int i = 0; i < COLS; i++)
        printf("%-*s%s", i + 1 < COLS ? (int)width[i] : 0, heads[i], i + 1 < COLS ? "  " : "\n");
    for (size_t r = 0; r < n_rows; r++)
        for (int i = 0; i < COLS; i++)
            printf("%-*s%s", i + 1 < COLS ? (int)width[i] : 0, rows[r][i],
                   i + 1 < COLS ? "  " : "\n");
    if (n_listeners > 0) {
        printf("\n%-*s  %s\n", (int)lw, "LISTENER", "ADDRESS");
        for (size_t i = 0; i < n_listeners; i++) {
            char name[160];
            snprintf(name, sizeof(name), "%s/%s", listeners[i][0], listeners[i][1]);
            printf("%-*s  %s\n", (int)lw, name, listeners[i][2]);
        }
    }
}

/* ---- the broker ---- */

struct broker_call {
    const char *to; /* "store" or "broker" */
    const char *op;
    const char *args[3];
    size_t n_args;
    /* For messages: "alice@example.org". */
    const char *account;
    /* Prints the successful response's ARGs: one per line. */
    bool print_args;
    /* Each ARG is a session row "address kind conn priority" (the broker's
     * "sessions" op): print only the address, which may itself contain
     * spaces (in its resource), so the three last fields are cut off. */
    bool address_only;
};

enum attempt_result { ATTEMPT_DONE, ATTEMPT_RETRY, ATTEMPT_FATAL };

static int send_frame(void *sock, struct ipc_writer *w)
{
    size_t len;
    const uint8_t *frame = ipc_writer_frame(w, &len);
    int rc;

    if (frame == NULL)
        return -1;
    rc = zmq_send(sock, frame, len, ZMQ_DONTWAIT);
    ipc_writer_reset(w);
    return rc < 0 ? -1 : 0;
}

/* Prints the outcome of a response and sets *exit_r. */
static void handle_response(const struct broker_call *call, const struct ipc_msg *m, int *exit_r)
{
    char reason[IPC_MAX_SHORT + 1];
    const char *what = call->account != NULL ? call->account : call->args[0];

    ipc_slice_cstr(m->reason, reason, sizeof(reason));
    for (char *p = reason; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20)
            *p = '?';
    switch (m->code) {
    case IPC_CODE_OK:
        if (call->print_args) {
            uint32_t off = 0;
            struct ipc_slice arg;
            while (ipc_msg_each(m, IPC_F_ARG, &off, &arg) == 1) {
                if (call->address_only) {
                    uint32_t len = arg.len;
                    for (int fields = 0; fields < 3 && len > 0; fields++) {
                        while (len > 0 && arg.ptr[len - 1] != ' ')
                            len--;
                        if (len > 0)
                            len--; /* the space */
                    }
                    if (len > 0)
                        arg.len = len;
                }
                print_clean(stdout, arg.ptr, arg.len);
            }
        }
        /* A successful reply with a reason is partial ("truncated: ..."). */
        if (reason[0] != '\0')
            fprintf(stderr, "switchboardctl: note: %s\n", reason);
        *exit_r = CTL_EXIT_OK;
        return;
    case IPC_CODE_CONFLICT:
        if (strcmp(call->op, "account.register") == 0)
            fprintf(stderr, "switchboardctl: account %s already exists\n", what);
        else
            fprintf(stderr, "switchboardctl: conflict%s%s\n", reason[0] ? ": " : "", reason);
        break;
    case IPC_CODE_NOT_FOUND:
        if (strncmp(call->op, "account.", 8) == 0 && call->account != NULL)
            fprintf(stderr, "switchboardctl: no such account %s\n", what);
        else
            fprintf(stderr, "switchboardctl: not found%s%s\n", reason[0] ? ": " : "", reason);
        break;
    case IPC_CODE_BAD_REQUEST:
        fprintf(stderr, "switchboardctl: invalid argument%s%s\n", reason[0] ? ": " : "", reason);
        break;
    default:
        fprintf(stderr, "switchboardctl: %s failed: %s%s%s\n", call->op, ipc_code_name(m->code),
                reason[0] ? ": " : "", reason);
        break;
    }
    *exit_r = CTL_EXIT_FAILED;
}

/*
 * Waits until deadline for a message of the wanted type (and REQ_ID, for a
 * response). Returns 1 with the message decoded into *m (slices into
 * *frame, which the caller closes), 0 on timeout, -1 when the broker said
 * REHELLO (retry), -2 when it said DISCONNECT.
 */
static int wait_for(void *sock, int64_t deadline, uint8_t type, uint32_t req_id, zmq_msg_t *frame,
                    struct ipc_msg *m)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
        struct ipc_cursor cur;
        const char *error;
        int rc;

        if (left <= 0)
            return 0;
        rc = zmq_poll(&item, 1, (long)left);
        if (rc < 0 && zmq_errno() == EINTR)
            continue;
        if (rc <= 0)
            return 0;
        if (zmq_msg_recv(frame, sock, ZMQ_DONTWAIT) < 0)
            continue;
        if (ipc_frame_open(&cur, zmq_msg_data(frame), zmq_msg_size(frame), &error) < 0) {
            fprintf(stderr, "switchboardctl: bad frame from the broker: %s\n", error);
            continue;
        }
        while ((rc = ipc_frame_next(&cur, m, &error)) == 1) {
            if (m->type == IPC_LINK_REHELLO)
                return -1;
            if (m->type == IPC_LINK_DISCONNECT) {
                char reason[IPC_MAX_SHORT + 1];
                fprintf(stderr, "switchboardctl: the broker refused the link: %s\n",
                        ipc_slice_cstr(m->reason, reason, sizeof(reason)));
                return -2;
            }
            if (m->type == type && (type != IPC_RESPONSE || m->req_id == req_id))
                return 1;
        }
        if (rc < 0)
            fprintf(stderr, "switchboardctl: bad message from the broker: %s\n", error);
    }
}

/* One attempt on a fresh socket: HELLO, WELCOME, REQUEST, RESPONSE, BYE. */
static enum attempt_result broker_attempt(void *zctx, const char *endpoint,
                                          const struct broker_call *call, uint32_t req_id,
                                          int64_t deadline, int *exit_r)
{
    struct ipc_writer w;
    struct ipc_msg m;
    zmq_msg_t frame;
    enum attempt_result result = ATTEMPT_RETRY;
    void *sock = zmq_socket(zctx, ZMQ_DEALER);
    int zero = 0, rc;
    int64_t until;

    if (sock == NULL) {
        fprintf(stderr, "switchboardctl: zmq_socket: %s\n", zmq_strerror(zmq_errno()));
        *exit_r = CTL_EXIT_FAILED;
        return ATTEMPT_FATAL;
    }
    ipc_writer_init(&w);
    zmq_msg_init(&frame);
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_connect(sock, endpoint) < 0) {
        fprintf(stderr, "switchboardctl: cannot connect to %s: %s\n", endpoint,
                zmq_strerror(zmq_errno()));
        *exit_r = CTL_EXIT_CONFIG;
        result = ATTEMPT_FATAL;
        goto out;
    }

    ipc_msg_begin(&w, IPC_LINK_HELLO);
    ipc_put_str(&w, IPC_F_KIND, "ctl");
    ipc_put_u32(&w, IPC_F_PID, (uint32_t)getpid());
    ipc_msg_end(&w);
    if (send_frame(sock, &w) < 0)
        goto out;
    until = now_ms() + CTL_ATTEMPT_MS;
    rc = wait_for(sock, until < deadline ? until : deadline, IPC_LINK_WELCOME, 0, &frame, &m);
    if (rc == -2) {
        *exit_r = CTL_EXIT_FAILED;
        result = ATTEMPT_FATAL;
    }
    if (rc != 1)
        goto out;

    ipc_msg_begin(&w, IPC_REQUEST);
    ipc_put_str(&w, IPC_F_TO, call->to);
    ipc_put_u32(&w, IPC_F_REQ_ID, req_id);
    ipc_put_str(&w, IPC_F_OP, call->op);
    for (size_t i = 0; i < call->n_args; i++)
        ipc_put_str(&w, IPC_F_ARG, call->args[i]);
    if (!ipc_msg_end(&w)) {
        fprintf(stderr, "switchboardctl: request too large\n");
        *exit_r = CTL_EXIT_FAILED;
        result = ATTEMPT_FATAL;
        goto out;
    }
    if (send_frame(sock, &w) < 0)
        goto out;
    until = now_ms() + CTL_ATTEMPT_MS;
    rc = wait_for(sock, until < deadline ? until : deadline, IPC_RESPONSE, req_id, &frame, &m);
    if (rc == -2) {
        *exit_r = CTL_EXIT_FAILED;
        result = ATTEMPT_FATAL;
    }
    if (rc != 1)
        goto out;
    if (m.code == IPC_CODE_UNAVAILABLE)
        goto out; /* the store is (re)starting: retry */
    handle_response(call, &m, exit_r);
    result = ATTEMPT_DONE;

    /* A clean goodbye lets the broker drop this peer at once. */
    ipc_msg_begin(&w, IPC_LINK_BYE);
    ipc_msg_end(&w);
    (void)send_frame(sock, &w);

out:
    zmq_msg_close(&frame);
    ipc_writer_free(&w);
    zmq_close(sock);
    return result;
}

static int broker_call(const struct config *c, const struct broker_call *call, int timeout_s)
{
    char endpoint[4200];
    int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
    uint32_t req_id = (uint32_t)getpid() << 8;
    int exit_code = CTL_EXIT_UNREACHABLE;
    void *zctx;

    config_broker_endpoint(c, endpoint, sizeof(endpoint));
    zctx = zmq_ctx_new();
    if (zctx == NULL) {
        fprintf(stderr, "switchboardctl: zmq_ctx_new: %s\n", zmq_strerror(zmq_errno()));
        return CTL_EXIT_FAILED;
    }
    /* A request can be repeated: on a timeout the first one may still have
     * been carried out, so a retried register can come back as "already
     * exists". UNAVAILABLE means it was not carried out. */
    while (now_ms() < deadline) {
        int64_t attempt_start = now_ms();
        enum attempt_result r =
            broker_attempt(zctx, endpoint, call, ++req_id, deadline, &exit_code);
        if (r != ATTEMPT_RETRY)
            break;
        /* Do not spin when the answer ("unavailable") comes back at once. */
        if (now_ms() - attempt_start < CTL_RETRY_PAUSE_MS)
            usleep(CTL_RETRY_PAUSE_MS * 1000);
    }
    zmq_ctx_term(zctx);
    if (exit_code == CTL_EXIT_UNREACHABLE)
        fprintf(stderr, "switchboardctl: broker/store unavailable (no answer within %d s)\n",
                timeout_s);
    return exit_code;
}

/* ---- passwords ---- */

static struct termios saved_tty;
static volatile sig_atomic_t tty_changed;

static void restore_tty_and_die(int sig)
{
    if (tty_changed)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads one line from stdin into buf (no echo on a terminal). -1 on EOF or
 * an over-long line, after printing why. */
static int read_password(char *buf, size_t size)
{
    bool tty = isatty(STDIN_FILENO);
    size_t len;
    char *ok;

    if (tty && tcgetattr(STDIN_FILENO, &saved_tty) == 0) {
        struct termios quiet = saved_tty;
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = restore_tty_and_die;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        quiet.c_lflag |= ECHONL;
        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0)
            tty_changed = 1;
        fprintf(stderr, "Password: ");
        fflush(stderr);
    }
    ok = fgets(buf, (int)size, stdin);
    if (tty_changed) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
        tty_changed = 0;
    }
    if (ok == NULL) {
        fprintf(stderr, "switchboardctl: no password given on standard input\n");
        return -1;
    }
    len = strlen(buf);
    if (len > 0 && buf[len - 1] == '\n') {
        buf[--len] = '\0';
    } else if (!feof(stdin)) {
        fprintf(stderr, "switchboardctl: password too long (at most %d bytes)\n",
                CTL_MAX_PASSWORD - 2);
        return -1;
    }
    if (len > 0 && buf[len - 1] == '\r')
        buf[--len] = '\0';
    if (len == 0) {
        fprintf(stderr, "switchboardctl: empty password\n");
        return -1;
    }
    return 0;
}

/* ---- commands ---- */

static int cmd_supervisor(const struct config *c, const char *request, bool is_status,
                          int timeout_s)
{
    char *data = NULL;
    int rc = control_call(c, request, timeout_s * 1000, &data);

    if (rc != 0)
        return rc;
    if (is_status)
        print_status(data);
    else
        fputs(data, stdout);
    free(data);
    return CTL_EXIT_OK;
}

static int cmd_stats(const struct config *c, int timeout_s)
{
    static const struct broker_call call = {.to = "broker", .op = "stats", .print_args = true};
    char *data = NULL, *save = NULL;
    int rc = control_call(c, "stats", timeout_s * 1000, &data);

    if (rc != 0)
        return rc;
    for (char *line = strtok_r(data, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
        printf("supervisor.%s\n", line);
    free(data);
    fflush(stdout);
    return broker_call(c, &call, timeout_s);
}

static bool is_worker_command(const char *cmd)
{
    return strcmp(cmd, "start") == 0 || strcmp(cmd, "stop") == 0 || strcmp(cmd, "restart") == 0;
}

int main(int argc, char **argv)
{
    const char *path = CTL_DEFAULT_CONFIG, *err, *cmd;
    int timeout_s = CTL_DEFAULT_TIMEOUT_S, i, n, rc;
    struct config *config = NULL;
    char password[CTL_MAX_PASSWORD];
    char account[2 * IPC_MAX_SHORT];
    struct broker_call call;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CTL_EXIT_OK;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end != '\0' || t < 1 || t > 3600) {
                fprintf(stderr, "switchboardctl: --timeout takes 1..3600 seconds\n");
                return CTL_EXIT_USAGE;
            }
            timeout_s = (int)t;
        } else if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else {
            fprintf(stderr, "switchboardctl: unknown option %s (see --help)\n", argv[i]);
            return CTL_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    cmd = argv[i];
    n = argc - i - 1; /* arguments after the command */

    /* Check the usage before touching the configuration. */
    memset(&call, 0, sizeof(call));
    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "reload") == 0 || strcmp(cmd, "stats") == 0 ||
        strcmp(cmd, "connected-users") == 0) {
        if (n != 0)
            goto bad_usage;
    } else if (is_worker_command(cmd)) {
        if (n != 1)
            goto bad_usage;
        if (config_worker_parse(argv[i + 1]) < 0) {
            fprintf(stderr, "switchboardctl: unknown worker \"%s\"\n", argv[i + 1]);
            return CTL_EXIT_USAGE;
        }
    } else if (strcmp(cmd, "register") == 0 || strcmp(cmd, "passwd") == 0) {
        if (n != 2 && n != 3)
            goto bad_usage;
    } else if (strcmp(cmd, "unregister") == 0) {
        if (n != 2)
            goto bad_usage;
    } else if (strcmp(cmd, "registered-users") == 0) {
        if (n != 1)
            goto bad_usage;
    } else {
        fprintf(stderr, "switchboardctl: unknown command \"%s\" (see --help)\n", cmd);
        return CTL_EXIT_USAGE;
    }

    if (config_load(path, &config, &err) < 0) {
        fprintf(stderr, "switchboardctl: %s\n", err);
        return CTL_EXIT_CONFIG;
    }

    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "reload") == 0) {
        rc = cmd_supervisor(config, cmd, strcmp(cmd, "status") == 0, timeout_s);
    } else if (is_worker_command(cmd)) {
        char request[64];
        snprintf(request, sizeof(request), "%s %s", cmd, argv[i + 1]);
        rc = cmd_supervisor(config, request, false, timeout_s);
    } else if (strcmp(cmd, "stats") == 0) {
        rc = cmd_stats(config, timeout_s);
    } else if (strcmp(cmd, "connected-users") == 0) {
        call.to = "broker";
        call.op = "sessions";
        call.print_args = true;
        call.address_only = true;
        rc = broker_call(config, &call, timeout_s);
    } else if (strcmp(cmd, "registered-users") == 0) {
        call.to = "store";
        call.op = "account.list";
        call.args[0] = argv[i + 1];
        call.n_args = 1;
        call.print_args = true;
        rc = broker_call(config, &call, timeout_s);
    } else {
        /* register, passwd, unregister USER DOMAIN [PASSWORD] */
        const char *user = argv[i + 1], *domain = argv[i + 2];

        if (user[0] == '\0' || domain[0] == '\0') {
            fprintf(stderr, "switchboardctl: empty user or domain\n");
            config_free(&config);
            return CTL_EXIT_FAILED;
        }
        snprintf(account, sizeof(account), "%s@%s", user, domain);
        call.to = "store";
        call.account = account;
        call.args[0] = user;
        call.args[1] = domain;
        call.n_args = 2;
        if (strcmp(cmd, "unregister") == 0) {
            call.op = "account.unregister";
        } else {
            call.op = strcmp(cmd, "register") == 0 ? "account.register" : "account.passwd";
            if (n == 3) {
                call.args[2] = argv[i + 3];
            } else {
                if (read_password(password, sizeof(password)) < 0) {
                    config_free(&config);
                    return CTL_EXIT_FAILED;
                }
                call.args[2] = password;
            }
            if (call.args[2][0] == '\0') {
                fprintf(stderr, "switchboardctl: empty password\n");
                config_free(&config);
                return CTL_EXIT_FAILED;
            }
            call.n_args = 3;
        }
        rc = broker_call(config, &call, timeout_s);
        explicit_bzero(password, sizeof(password));
    }
    config_free(&config);
    return rc;

bad_usage:
    fprintf(stderr, "switchboardctl: wrong number of arguments for %s (see --help)\n", cmd);
    return CTL_EXIT_USAGE;
}
