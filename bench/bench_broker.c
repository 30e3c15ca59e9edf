/*
 * bench-broker: how many stanzas per second the real switchboard-broker
 * routes from one peer to a session on another, and what each costs it.
 *
 * It writes a minimal configuration in a temporary folder, starts the
 * broker binary standalone (not supervised), and connects two DEALER peers
 * of kind "bench". Peer B announces the session b@bench/r (connection 1);
 * peer A sends N message stanzas of about 100 bytes to it, batched in
 * frames, with a window of stanzas in flight so that no queue reaches its
 * high-water mark. B counts what arrives. Both peers run in this one thread
 * so that, on a small machine, the benchmark leaves the CPU to the broker.
 *
 * Reported: stanzas/s and ns per stanza (wall clock), the broker's CPU time
 * per stanza (from /proc/<pid>/stat), its peak RSS (VmHWM), and its own
 * counters. Exit status 0 only when every stanza arrived with the right
 * target. See bench/README.md.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "shared/ipc.h"

#define DEFAULT_COUNT 2000000
#define DEFAULT_BATCH 256
#define DEFAULT_WINDOW_FRAMES 64
/* Give up when nothing arrives for this long. */
#define STALL_MS 10000
/* Every Nth received frame is fully decoded and checked; the others are
 * only counted by walking the message headers, to keep this side cheap. */
#define CHECK_EVERY 16

struct bench {
    const char *broker_path;
    long count, batch, window;
    char dir[64], config[128], endpoint[200], socket_path[160];
    pid_t pid;
    void *zctx, *a, *b;
    uint32_t a_id, b_id;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static pid_t broker_pid;

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "bench-broker: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (broker_pid > 0)
        kill(broker_pid, SIGTERM);
    exit(1);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The broker's user+system CPU time in ns. */
static int64_t broker_cpu_ns(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long utime, stime;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        die("cannot read %s: %s", path, strerror(errno));
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name, which may hold spaces: state is the
     * 3rd field, utime the 14th and stime the 15th. */
    p = strrchr(buf, ')');
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        die("cannot parse %s", path);
    return (int64_t)((utime + stime) * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK)));
}

/* The broker's peak resident set in kB. */
static long broker_peak_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void send_frame(void *sock, const struct ipc_writer *w)
{
    size_t len;
    const uint8_t *frame = ipc_writer_frame(w, &len);

    if (frame == NULL || zmq_send(sock, frame, len, 0) < 0)
        die("send: %s", zmq_strerror(errno));
}

/* Receives one frame (waiting up to timeout_ms) into msg; false on timeout. */
static bool recv_frame(void *sock, zmq_msg_t *msg, long timeout_ms)
{
    zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};

    if (zmq_poll(&item, 1, timeout_ms) < 0)
        die("zmq_poll: %s", zmq_strerror(errno));
    if (!(item.revents & ZMQ_POLLIN))
        return false;
    if (zmq_msg_recv(msg, sock, 0) < 0)
        die("recv: %s", zmq_strerror(errno));
    return true;
}

/* Waits for a message of this type on a peer, skipping heartbeats;
 * *msg_r's slices point into frame, which the caller closes. */
static void expect(void *sock, zmq_msg_t *frame, enum ipc_type type, struct ipc_msg *msg_r)
{
    int64_t deadline = now_ns() + 5 * 1000000000ll;

    while (now_ns() < deadline) {
        struct ipc_cursor cur;
        const char *error;
        int rc;

        if (!recv_frame(sock, frame, 100))
            continue;
        if (ipc_frame_open(&cur, zmq_msg_data(frame), zmq_msg_size(frame), &error) < 0)
            die("bad frame from the broker: %s", error);
        while ((rc = ipc_frame_next(&cur, msg_r, &error)) == 1)
            if (msg_r->type == type)
                return;
        if (rc < 0)
            die("bad frame from the broker: %s", error);
    }
    die("no %s from the broker", ipc_type_name(type));
}

static void *peer_connect(struct bench *b, uint32_t *id_r)
{
    void *s = zmq_socket(b->zctx, ZMQ_DEALER);
    struct ipc_writer w;
    struct ipc_msg m;
    zmq_msg_t frame;
    int zero = 0, hwm = 1000000;

    if (s == NULL || zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm)) < 0 ||
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm)) < 0 || zmq_connect(s, b->endpoint) < 0)
        die("connect %s: %s", b->endpoint, zmq_strerror(errno));
    ipc_writer_init(&w);
    ipc_msg_begin(&w, IPC_LINK_HELLO);
    ipc_put_str(&w, IPC_F_KIND, "bench");
    ipc_put_u32(&w, IPC_F_PID, (uint32_t)getpid());
    ipc_msg_end(&w);
    send_frame(s, &w);
    ipc_writer_free(&w);
    zmq_msg_init(&frame);
    expect(s, &frame, IPC_LINK_WELCOME, &m);
    *id_r = m.worker;
    zmq_msg_close(&frame);
    return s;
}

/* Asks the broker for an op and prints its ARG rows when print is set;
 * returns true when one row starts with want (if not NULL). */
static bool broker_request(void *sock, const char *op, const char *want, bool print)
{
    struct ipc_writer w;
    struct ipc_msg m;
    struct ipc_slice arg;
    zmq_msg_t frame;
    uint32_t offset = 0;
    bool found = false;

    ipc_writer_init(&w);
    ipc_msg_begin(&w, IPC_REQUEST);
    ipc_put_str(&w, IPC_F_TO, "broker");
    ipc_put_u32(&w, IPC_F_REQ_ID, 1);
    ipc_put_str(&w, IPC_F_OP, op);
    ipc_msg_end(&w);
    send_frame(sock, &w);
    ipc_writer_free(&w);
    zmq_msg_init(&frame);
    expect(sock, &frame, IPC_RESPONSE, &m);
    while (ipc_msg_each(&m, IPC_F_ARG, &offset, &arg) == 1) {
        if (print)
            printf("  %.*s\n", (int)arg.len, (const char *)arg.ptr);
        if (want != NULL && arg.len >= strlen(want) && memcmp(arg.ptr, want, strlen(want)) == 0)
            found = true;
    }
    zmq_msg_close(&frame);
    return found;
}

static void start_broker(struct bench *b)
{
    FILE *f;
    int64_t deadline;
    struct stat st;

    snprintf(b->dir, sizeof(b->dir), "/tmp/sbbench.XXXXXX");
    if (mkdtemp(b->dir) == NULL)
        die("mkdtemp: %s", strerror(errno));
    snprintf(b->config, sizeof(b->config), "%s/switchboard.yml", b->dir);
    snprintf(b->socket_path, sizeof(b->socket_path), "%s/state/run/broker.sock", b->dir);
    snprintf(b->endpoint, sizeof(b->endpoint), "ipc://%s", b->socket_path);
    f = fopen(b->config, "w");
    if (f == NULL)
        die("%s: %s", b->config, strerror(errno));
    /* Long liveness: the benchmark peers are busy, not heartbeating. */
    fprintf(f,
            "state_dir: %s/state\nlog_level: warn\nbroker:\n  heartbeat_ms: 1000\n"
            "  heartbeat_misses: 100\n",
            b->dir);
    fclose(f);

    b->pid = fork();
    if (b->pid < 0)
        die("fork: %s", strerror(errno));
    if (b->pid == 0) {
        unsetenv("SWITCHBOARD_SUPERVISED");
        execl(b->broker_path, b->broker_path, "--config", b->config, (char *)NULL);
        fprintf(stderr, "bench-broker: exec %s: %s\n", b->broker_path, strerror(errno));
        _exit(127);
    }
    broker_pid = b->pid;
    deadline = now_ns() + 10 * 1000000000ll;
    while (stat(b->socket_path, &st) < 0) {
        int status;
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            broker_pid = 0;
            die("the broker exited before binding (status %d)", status);
        }
        if (now_ns() > deadline)
            die("the broker did not bind %s", b->socket_path);
        usleep(10000);
    }
}

static int stop_broker(struct bench *b)
{
    int status = 0;
    char cmd[128];

    kill(b->pid, SIGTERM);
    if (waitpid(b->pid, &status, 0) < 0)
        die("waitpid: %s", strerror(errno));
    broker_pid = 0;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench-broker: could not remove %s\n", b->dir);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* One frame of batch message stanzas from a@bench/r to b@bench/r. */
static void build_batch(struct ipc_writer *w, long batch)
{
    static const char body[] = "the quick brown fox jumps over the dog";
    char id[32];

    for (long i = 0; i < batch; i++) {
        snprintf(id, sizeof(id), "m%07ld", i);
        ipc_msg_begin(w, IPC_STANZA);
        ipc_put_u8(w, IPC_F_SKIND, STANZA_MESSAGE);
        ipc_put_str(w, IPC_F_TYPE, "chat");
        ipc_put_str(w, IPC_F_ID, id);
        ipc_put_str(w, IPC_F_FROM, "a@bench/r");
        ipc_put_str(w, IPC_F_TO, "b@bench/r");
        ipc_put_bytes(w, IPC_F_BODY, body, sizeof(body) - 1);
        if (!ipc_msg_end(w))
            die("cannot encode a stanza");
    }
}

/* Counts the stanzas in a frame B received; with check, decodes it fully
 * and verifies every delivery. */
static long count_stanzas(const struct bench *b, const uint8_t *data, size_t len, bool check)
{
    long n = 0;

    if (check) {
        struct ipc_cursor cur;
        struct ipc_msg m;
        const char *error;
        int rc;

        if (ipc_frame_open(&cur, data, len, &error) < 0)
            die("bad frame from the broker: %s", error);
        while ((rc = ipc_frame_next(&cur, &m, &error)) == 1) {
            struct ipc_slice target;
            uint32_t offset = 0;

            if (m.type != IPC_STANZA)
                continue;
            if (m.worker != b->a_id || m.n_target != 1 ||
                ipc_msg_each(&m, IPC_F_TARGET, &offset, &target) != 1 ||
                ipc_slice_u64(target) != 1 || !ipc_slice_eq(m.to, "b@bench/r"))
                die("a delivery has the wrong sender or target");
            n++;
        }
        if (rc < 0)
            die("bad frame from the broker: %s", error);
        return n;
    }
    for (size_t pos = 1; pos + IPC_MSG_HEADER <= len;) {
        uint32_t body = (uint32_t)data[pos + 1] << 24 | (uint32_t)data[pos + 2] << 16 |
                        (uint32_t)data[pos + 3] << 8 | data[pos + 4];
        n += data[pos] == IPC_STANZA;
        pos += IPC_MSG_HEADER + body;
    }
    return n;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench-broker [-n STANZAS] [-b PER_FRAME] [-w FRAMES_IN_FLIGHT] [BROKER]\n"
            "  BROKER defaults to switchboard-broker next to this program.\n");
    exit(2);
}

static long parse_long(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    struct bench b = {.count = DEFAULT_COUNT, .batch = DEFAULT_BATCH};
    long window_frames = DEFAULT_WINDOW_FRAMES, sent = 0, received = 0, frames_in = 0;
    char self[PATH_MAX], path[PATH_MAX + 32], want[64];
    struct ipc_writer batch, beat;
    int64_t t0, t1, cpu0, cpu1, last_progress, last_beat;
    zmq_msg_t frame;
    ssize_t n;
    int opt, code;

    while ((opt = getopt(argc, argv, "n:b:w:h")) != -1) {
        switch (opt) {
        case 'n':
            b.count = parse_long(optarg);
            break;
        case 'b':
            b.batch = parse_long(optarg);
            break;
        case 'w':
            window_frames = parse_long(optarg);
            break;
        default:
            usage();
        }
    }
    if (optind < argc) {
        b.broker_path = argv[optind];
    } else {
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n < 0)
            die("readlink /proc/self/exe: %s", strerror(errno));
        self[n] = '\0';
        *strrchr(self, '/') = '\0';
        snprintf(path, sizeof(path), "%s/switchboard-broker", self);
        b.broker_path = path;
    }
    if (b.count % b.batch != 0)
        b.count += b.batch - b.count % b.batch;
    b.window = window_frames * b.batch;

    start_broker(&b);
    b.zctx = zmq_ctx_new();
    b.b = peer_connect(&b, &b.b_id);
    {
        /* B's session, then a round trip that proves it is in the table. */
        struct ipc_writer w;
        ipc_writer_init(&w);
        ipc_msg_begin(&w, IPC_SESSION_ADD);
        ipc_put_str(&w, IPC_F_FROM, "b@bench/r");
        ipc_put_u64(&w, IPC_F_CONN, 1);
        ipc_msg_end(&w);
        send_frame(b.b, &w);
        ipc_writer_free(&w);
        if (!broker_request(b.b, "sessions", "b@bench/r bench 1", false))
            die("the broker did not take the session");
    }
    b.a = peer_connect(&b, &b.a_id);

    ipc_writer_init(&batch);
    build_batch(&batch, b.batch);
    ipc_writer_init(&beat);
    ipc_msg_begin(&beat, IPC_LINK_HEARTBEAT);
    ipc_msg_end(&beat);
    zmq_msg_init(&frame);

    printf("bench-broker: %ld stanzas of %zu bytes, %ld per frame, %ld in flight, broker %s\n",
           b.count, (batch.len - 1) / (size_t)b.batch, b.batch, b.window, b.broker_path);
    cpu0 = broker_cpu_ns(b.pid);
    t0 = last_progress = last_beat = now_ns();
    while (received < b.count) {
        zmq_pollitem_t items[2] = {{.socket = b.b, .events = ZMQ_POLLIN},
                                   {.socket = b.a, .events = ZMQ_POLLOUT}};
        bool can_send = sent < b.count && sent - received + b.batch <= b.window;
        int64_t now;

        if (zmq_poll(items, can_send ? 2 : 1, 100) < 0 && errno != EINTR)
            die("zmq_poll: %s", zmq_strerror(errno));
        if (can_send && (items[1].revents & ZMQ_POLLOUT)) {
            size_t len;
            const uint8_t *data = ipc_writer_frame(&batch, &len);
            if (zmq_send(b.a, data, len, ZMQ_DONTWAIT) == (int)len)
                sent += b.batch;
            else if (errno != EAGAIN)
                die("send: %s", zmq_strerror(errno));
        }
        while (zmq_msg_recv(&frame, b.b, ZMQ_DONTWAIT) >= 0) {
            received += count_stanzas(&b, zmq_msg_data(&frame), zmq_msg_size(&frame),
                                      frames_in++ % CHECK_EVERY == 0);
            last_progress = now_ns();
        }
        if (errno != EAGAIN)
            die("recv: %s", zmq_strerror(errno));
        now = now_ns();
        if (now - last_progress > STALL_MS * 1000000ll)
            die("stalled: %ld of %ld stanzas arrived", received, b.count);
        /* Keep both links alive on slow (sanitized) builds. */
        if (now - last_beat > 500 * 1000000ll) {
            send_frame(b.a, &beat);
            send_frame(b.b, &beat);
            last_beat = now;
        }
    }
    t1 = now_ns();
    cpu1 = broker_cpu_ns(b.pid);

    printf("  %.0f stanzas/s, %.0f ns per stanza, broker CPU %.0f ns per stanza, "
           "broker peak RSS %ld kB, %ld frames to B\n",
           (double)b.count * 1e9 / (double)(t1 - t0), (double)(t1 - t0) / (double)b.count,
           (double)(cpu1 - cpu0) / (double)b.count, broker_peak_rss_kb(b.pid), frames_in);
    printf("broker counters:\n");
    snprintf(want, sizeof(want), "stanzas_routed=%ld", b.count);
    if (!broker_request(b.b, "stats", want, true))
        die("the broker's stanzas_routed is not %ld", b.count);

    zmq_msg_close(&frame);
    ipc_writer_free(&batch);
    ipc_writer_free(&beat);
    zmq_close(b.a);
    zmq_close(b.b);
    zmq_ctx_term(b.zctx);
    code = stop_broker(&b);
    if (code != 0)
        die("the broker exited with status %d", code);
    return received == b.count ? 0 : 1;
}
