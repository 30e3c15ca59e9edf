/*
 * switchboard-echo: a line-based test protocol on the worker skeleton, for
 * black-box tests of the skeleton, the supervisor and the broker before (and
 * beside) the real protocol workers. The supervisor runs it under a
 * protocol's name through a symlink (switchboard-xmpp -> switchboard-echo);
 * its worker kind comes from that name, XMPP otherwise.
 *
 * One command per line (LF or CRLF, at most ECHO_MAX_LINE bytes):
 *   ECHO text                 -> text
 *   SESSION addr [priority]   -> OK   (IPC_SESSION_ADD, re-announced after a broker restart)
 *   ROUTE addr                -> OK   (IPC_ROUTE_ADD, re-announced)
 *   INTEREST topic            -> OK   (IPC_INTEREST_ADD, re-announced)
 *   SEND to text              -> OK   (a chat message stanza from this connection's session)
 *   PUBLISH topic payload     -> OK   (a publish stanza)
 *   REQ service op [arg ...]  -> RESP code-name [arg ...]  (worker_request, 5 s)
 *   LISTEN                    -> OK   (receive stanzas that name no target connection)
 *   STARTTLS                  -> PROCEED, then a TLS handshake
 *   WAIT seconds              -> OK   (idle timeout)
 *   QUIT                      -> BYE, then close
 * Anything else gets "ERR unknown command"; a longer line gets "ERR line too
 * long" and the connection is closed. A stanza from the broker is written as
 * "STANZA skind type from to body" to its target connections, or to every
 * LISTEN connection when it has no target. Datagrams on UDP listeners are
 * sent back to their sender.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "shared/log.h"
#include "workers/worker.h"

#define ECHO_MAX_LINE 4096
/* Routes and interests remembered for re-announcing. */
#define ECHO_MAX_REMEMBERED 256
#define ECHO_MAX_ARGS 16
#define ECHO_REQUEST_TIMEOUT_MS 5000
#define ECHO_ANON "anon@local"

struct echo_conn {
    struct conn *conn;
    char *session; /* full address from SESSION, or NULL */
    int32_t priority;
    bool listening;
    struct echo_conn *prev, *next;
};

struct echo_list {
    char *items[ECHO_MAX_REMEMBERED];
    size_t n;
};

struct echo_state {
    struct worker *w;
    struct echo_list routes, interests;
    struct echo_conn *conns; /* every open connection */
    char *line;              /* delivery lines are built here */
    size_t line_cap;
};

/* The one worker of this process, for request callbacks. */
static struct echo_state *echo;

static void reply(struct conn *c, const char *text)
{
    conn_printf(c, "%s\r\n", text);
}

/* --- messages to the broker --- */

static bool send_session(struct worker *w, const struct echo_conn *ec)
{
    struct ipc_writer *wr = worker_ipc_begin(w, IPC_SESSION_ADD);

    ipc_put_str(wr, IPC_F_FROM, ec->session);
    ipc_put_u64(wr, IPC_F_CONN, conn_id(ec->conn));
    ipc_put_i32(wr, IPC_F_PRIORITY, ec->priority);
    return worker_ipc_end(w);
}

static void send_session_del(struct worker *w, const char *address)
{
    struct ipc_writer *wr = worker_ipc_begin(w, IPC_SESSION_DEL);

    ipc_put_str(wr, IPC_F_FROM, address);
    worker_ipc_end(w);
}

static bool send_string(struct worker *w, enum ipc_type type, enum ipc_tag tag, const char *value)
{
    struct ipc_writer *wr = worker_ipc_begin(w, type);

    ipc_put_str(wr, tag, value);
    return worker_ipc_end(w);
}

/* Adds value to the list unless it is there; -1 when the list is full. */
static int remember(struct echo_list *list, const char *value)
{
    for (size_t i = 0; i < list->n; i++)
        if (strcmp(list->items[i], value) == 0)
            return 0;
    if (list->n == ECHO_MAX_REMEMBERED)
        return -1;
    list->items[list->n] = strdup(value);
    if (list->items[list->n] == NULL)
        return -1;
    list->n++;
    return 0;
}

static void forget_all(struct echo_list *list)
{
    for (size_t i = 0; i < list->n; i++)
        free(list->items[i]);
    list->n = 0;
}

/* --- commands --- */

/* Splits off the first space-separated word of *rest (NUL-terminating it)
 * and advances *rest past it; NULL when nothing is left. */
static char *next_word(char **rest)
{
    char *s = *rest, *sp;

    while (*s == ' ')
        s++;
    if (*s == '\0') {
        *rest = s;
        return NULL;
    }
    sp = strchr(s, ' ');
    if (sp != NULL) {
        *sp = '\0';
        *rest = sp + 1;
    } else {
        *rest = s + strlen(s);
    }
    return s;
}

static void cmd_session(struct conn *c, struct echo_conn *ec, char *args)
{
    struct worker *w = conn_worker(c);
    char *addr = next_word(&args), *prio = next_word(&args), *end;
    long priority = 0;
    char *old = ec->session;

    if (addr == NULL) {
        reply(c, "ERR usage: SESSION addr [priority]");
        return;
    }
    if (prio != NULL) {
        errno = 0;
        priority = strtol(prio, &end, 10);
        if (errno != 0 || *end != '\0' || priority < -128 || priority > 127) {
            reply(c, "ERR bad priority");
            return;
        }
    }
    ec->session = strdup(addr);
    if (ec->session == NULL) {
        ec->session = old;
        reply(c, "ERR out of memory");
        return;
    }
    ec->priority = (int32_t)priority;
    if (!send_session(w, ec)) {
        free(ec->session);
        ec->session = old;
        reply(c, "ERR bad address");
        return;
    }
    if (old != NULL) {
        if (strcmp(old, ec->session) != 0)
            send_session_del(w, old);
        free(old);
    }
    reply(c, "OK");
}

static void cmd_remembered(struct conn *c, struct echo_list *list, enum ipc_type type,
                           enum ipc_tag tag, char *args)
{
    char *value = next_word(&args);

    if (value == NULL) {
        reply(c, "ERR missing argument");
        return;
    }
    if (!send_string(conn_worker(c), type, tag, value)) {
        reply(c, "ERR bad argument");
        return;
    }
    if (remember(list, value) < 0) {
        reply(c, "ERR too many");
        return;
    }
    reply(c, "OK");
}

static void cmd_send(struct conn *c, struct echo_conn *ec, char *args, bool publish)
{
    struct worker *w = conn_worker(c);
    char *to = next_word(&args);
    struct ipc_writer *wr;

    if (to == NULL) {
        reply(c, publish ? "ERR usage: PUBLISH topic payload" : "ERR usage: SEND to text");
        return;
    }
    wr = worker_ipc_begin(w, IPC_STANZA);
    ipc_put_u8(wr, IPC_F_SKIND, publish ? STANZA_PUBLISH : STANZA_MESSAGE);
    ipc_put_str(wr, IPC_F_FROM, ec->session != NULL ? ec->session : ECHO_ANON);
    if (publish) {
        ipc_put_str(wr, IPC_F_TOPIC, to);
        ipc_put_str(wr, IPC_F_PAYLOAD, args);
    } else {
        ipc_put_str(wr, IPC_F_TYPE, "chat");
        ipc_put_str(wr, IPC_F_TO, to);
        ipc_put_str(wr, IPC_F_BODY, args);
    }
    ipc_put_u64(wr, IPC_F_CONN, conn_id(c));
    reply(c, worker_ipc_end(w) ? "OK" : "ERR bad stanza");
}

/* Bytes from the broker may hold anything: keep the reply one line. */
static void put_sanitized(char *out, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (p[i] < 0x20 || p[i] == 0x7f) ? '?' : (char)p[i];
}

static void echo_response(void *ctx, const struct ipc_msg *m)
{
    struct conn *c = worker_conn_find(echo->w, (uint64_t)(uintptr_t)ctx);
    struct ipc_slice arg;
    uint32_t offset = 0;

    if (c == NULL)
        return;
    conn_printf(c, "RESP %s", ipc_code_name(m->code));
    while (ipc_msg_each(m, IPC_F_ARG, &offset, &arg)) {
        char buf[512];
        size_t done = 0;

        conn_write(c, " ", 1);
        while (done < arg.len) {
            size_t n = arg.len - done < sizeof(buf) ? arg.len - done : sizeof(buf);
            put_sanitized(buf, arg.ptr + done, n);
            conn_write(c, buf, n);
            done += n;
        }
    }
    conn_write(c, "\r\n", 2);
}

static void cmd_req(struct conn *c, char *args)
{
    char *service = next_word(&args), *op = next_word(&args), *word;
    struct ipc_slice slices[ECHO_MAX_ARGS];
    size_t n = 0;

    if (service == NULL || op == NULL) {
        reply(c, "ERR usage: REQ service op [arg ...]");
        return;
    }
    while ((word = next_word(&args)) != NULL) {
        if (n == ECHO_MAX_ARGS) {
            reply(c, "ERR too many arguments");
            return;
        }
        slices[n].ptr = (const uint8_t *)word;
        slices[n].len = (uint32_t)strlen(word);
        n++;
    }
    worker_request(conn_worker(c), service, op, slices, n, ECHO_REQUEST_TIMEOUT_MS, echo_response,
                   (void *)(uintptr_t)conn_id(c));
}

/* Handles one line (NUL-terminated, without its end of line). Returns -1
 * when the connection was closed, 1 after STARTTLS, 0 otherwise. */
static int echo_line(struct conn *c, char *line)
{
    struct echo_conn *ec = conn_data(c);
    char *args = line, *cmd = next_word(&args);

    if (cmd == NULL) {
        reply(c, "ERR unknown command");
    } else if (strcmp(cmd, "ECHO") == 0) {
        reply(c, args);
    } else if (strcmp(cmd, "SESSION") == 0) {
        cmd_session(c, ec, args);
    } else if (strcmp(cmd, "ROUTE") == 0) {
        cmd_remembered(c, &echo->routes, IPC_ROUTE_ADD, IPC_F_ADDRESS, args);
    } else if (strcmp(cmd, "INTEREST") == 0) {
        cmd_remembered(c, &echo->interests, IPC_INTEREST_ADD, IPC_F_TOPIC, args);
    } else if (strcmp(cmd, "SEND") == 0) {
        cmd_send(c, ec, args, false);
    } else if (strcmp(cmd, "PUBLISH") == 0) {
        cmd_send(c, ec, args, true);
    } else if (strcmp(cmd, "REQ") == 0) {
        cmd_req(c, args);
    } else if (strcmp(cmd, "LISTEN") == 0) {
        ec->listening = true;
        reply(c, "OK");
    } else if (strcmp(cmd, "STARTTLS") == 0) {
        if (conn_is_tls(c)) {
            reply(c, "ERR already TLS");
            return 0;
        }
        reply(c, "PROCEED");
        if (conn_starttls(c) < 0) {
            conn_close(c, "STARTTLS without a TLS context");
            return -1;
        }
        return 1;
    } else if (strcmp(cmd, "WAIT") == 0) {
        char *end;
        double s = strtod(args, &end);

        if (end == args || s < 0 || s > 86400) {
            reply(c, "ERR bad seconds");
        } else {
            conn_set_timeout(c, s);
            reply(c, "OK");
        }
    } else if (strcmp(cmd, "QUIT") == 0) {
        reply(c, "BYE");
        conn_close(c, "quit");
        return -1;
    } else {
        reply(c, "ERR unknown command");
    }
    return 0;
}

/* --- the callback table --- */

static void echo_overflow(struct conn *c)
{
    reply(c, "ERR line too long");
}

static ssize_t echo_input(struct conn *c, const uint8_t *data, size_t len)
{
    char line[ECHO_MAX_LINE + 1];
    size_t pos = 0;

    while (pos < len) {
        const uint8_t *nl = memchr(data + pos, '\n', len - pos);
        size_t n;
        int r;

        if (nl == NULL) {
            /* The longest line may still be followed by CR LF. */
            if (len - pos > ECHO_MAX_LINE + 1) {
                echo_overflow(c);
                conn_close(c, "line too long");
                return -1;
            }
            break;
        }
        n = (size_t)(nl - (data + pos));
        if (n > 0 && data[pos + n - 1] == '\r')
            n--;
        if (n > ECHO_MAX_LINE) {
            echo_overflow(c);
            conn_close(c, "line too long");
            return -1;
        }
        memcpy(line, data + pos, n);
        line[n] = '\0';
        pos = (size_t)(nl - data) + 1;
        if (memchr(line, '\0', n) != NULL) {
            reply(c, "ERR NUL in line");
            continue;
        }
        r = echo_line(c, line);
        if (r < 0)
            return -1;
        if (r > 0)
            return (ssize_t)pos; /* STARTTLS: the rest is discarded */
    }
    return (ssize_t)pos;
}

static void echo_open(struct conn *c)
{
    struct echo_conn *ec = conn_data(c);

    ec->conn = c;
    ec->next = echo->conns;
    if (echo->conns != NULL)
        echo->conns->prev = ec;
    echo->conns = ec;
}

static void echo_closed(struct conn *c, const char *reason)
{
    struct echo_conn *ec = conn_data(c);

    if (ec->session != NULL) {
        send_session_del(conn_worker(c), ec->session);
        free(ec->session);
        ec->session = NULL;
    }
    if (ec->prev != NULL)
        ec->prev->next = ec->next;
    else
        echo->conns = ec->next;
    if (ec->next != NULL)
        ec->next->prev = ec->prev;
}

static void echo_datagram(struct worker *w, const struct worker_listener *l, const uint8_t *data,
                          size_t len, const struct sockaddr *peer, socklen_t peer_len)
{
    if (sendto(l->fd, data, len, MSG_DONTWAIT, peer, peer_len) < 0)
        log_debug("listener %s: sendto: %s", l->config->name, strerror(errno));
}

/* Grows the delivery line buffer; false when memory runs out. */
static bool line_reserve(size_t need)
{
    char *n;

    if (need <= echo->line_cap)
        return true;
    n = realloc(echo->line, need);
    if (n == NULL)
        return false;
    echo->line = n;
    echo->line_cap = need;
    return true;
}

static size_t put_field(char *out, struct ipc_slice s, const char *none)
{
    if (s.len == 0) {
        size_t n = strlen(none);
        memcpy(out, none, n);
        return n;
    }
    put_sanitized(out, s.ptr, s.len);
    return s.len;
}

static void echo_ipc(struct worker *w, const struct ipc_msg *m)
{
    struct ipc_slice to = m->to.len > 0 ? m->to : m->topic;
    struct ipc_slice body = m->body_text.len > 0 ? m->body_text : m->payload;
    size_t len;
    char *p;

    if (m->type != IPC_STANZA) {
        log_debug("%s from the broker ignored", ipc_type_name(m->type));
        return;
    }
    /* "STANZA " skind ' ' type ' ' from ' ' to ' ' body "\r\n" */
    if (!line_reserve(32 + m->type_str.len + m->from.len + to.len + body.len + 16)) {
        log_warnx("out of memory for a delivery");
        return;
    }
    p = echo->line;
    p += sprintf(p, "STANZA %u ", (unsigned)m->skind);
    p += put_field(p, m->type_str, "-");
    *p++ = ' ';
    p += put_field(p, m->from, "-");
    *p++ = ' ';
    p += put_field(p, to, "-");
    *p++ = ' ';
    p += put_field(p, body, "");
    *p++ = '\r';
    *p++ = '\n';
    len = (size_t)(p - echo->line);

    if (m->n_target > 0) {
        struct ipc_slice target;
        uint32_t offset = 0;

        while (ipc_msg_each(m, IPC_F_TARGET, &offset, &target)) {
            struct conn *c = worker_conn_find(w, ipc_slice_u64(target));
            if (c != NULL)
                conn_write(c, echo->line, len);
        }
        return;
    }
    for (struct echo_conn *ec = echo->conns; ec != NULL; ec = ec->next)
        if (ec->listening)
            conn_write(ec->conn, echo->line, len);
}

static void echo_announce(struct worker *w)
{
    for (size_t i = 0; i < echo->routes.n; i++)
        send_string(w, IPC_ROUTE_ADD, IPC_F_ADDRESS, echo->routes.items[i]);
    for (size_t i = 0; i < echo->interests.n; i++)
        send_string(w, IPC_INTEREST_ADD, IPC_F_TOPIC, echo->interests.items[i]);
    for (struct echo_conn *ec = echo->conns; ec != NULL; ec = ec->next)
        if (ec->session != NULL)
            send_session(w, ec);
}

static int echo_init(struct worker *w, const char **error_r)
{
    echo = calloc(1, sizeof(*echo));
    if (echo == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    echo->w = w;
    worker_set_data(w, echo);
    return 0;
}

static void echo_deinit(struct worker *w)
{
    forget_all(&echo->routes);
    forget_all(&echo->interests);
    free(echo->line);
    free(echo);
    echo = NULL;
    worker_set_data(w, NULL);
}

int main(int argc, char **argv)
{
    struct worker_proto proto = {
        .kind = SB_WORKER_XMPP,
        .conn_state_size = sizeof(struct echo_conn),
        .init = echo_init,
        .deinit = echo_deinit,
        .conn_open = echo_open,
        .conn_input = echo_input,
        .conn_overflow = echo_overflow,
        .conn_closed = echo_closed,
        .datagram = echo_datagram,
        .ipc_message = echo_ipc,
        .announce = echo_announce,
    };
    const char *base = strrchr(argv[0], '/');
    const char *prefix = "switchboard-";

    base = base != NULL ? base + 1 : argv[0];
    if (strncmp(base, prefix, strlen(prefix)) == 0) {
        int kind = config_worker_parse(base + strlen(prefix));
        if (kind >= 0)
            proto.kind = (enum sb_worker_kind)kind;
    }
    return worker_main(argc, argv, &proto);
}
