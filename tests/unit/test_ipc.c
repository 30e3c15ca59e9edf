/*
 * Unit tests of the inter-process codec (shared/ipc.c): round trips of every
 * message type, batching, forwarding with ipc_put_raw, and rejection of
 * short, long, unknown and duplicated input.
 */
#include "shared/ipc.h"
#include "tests/unit/check.h"

#include <stdlib.h>

static int decode_one(const uint8_t *frame, size_t len, struct ipc_msg *m, const char **error_r)
{
    struct ipc_cursor cur;
    int r;

    if (ipc_frame_open(&cur, frame, len, error_r) < 0)
        return -1;
    r = ipc_frame_next(&cur, m, error_r);
    if (r != 1)
        return r;
    /* Exactly one message expected. */
    if (ipc_frame_next(&cur, &(struct ipc_msg){0}, error_r) != 0)
        return -2;
    return 1;
}

static void test_stanza_roundtrip(void)
{
    struct ipc_writer w;
    struct ipc_msg m;
    const uint8_t *frame;
    const char *error = NULL;
    size_t len;
    char buf[64];

    ipc_writer_init(&w);
    ipc_msg_begin(&w, IPC_STANZA);
    ipc_put_u8(&w, IPC_F_SKIND, STANZA_MESSAGE);
    ipc_put_str(&w, IPC_F_TYPE, "chat");
    ipc_put_str(&w, IPC_F_ID, "m1");
    ipc_put_str(&w, IPC_F_FROM, "alice@example.org/phone");
    ipc_put_str(&w, IPC_F_TO, "bob@example.org");
    ipc_put_bytes(&w, IPC_F_BODY, "hi\0there", 8);
    ipc_put_i32(&w, IPC_F_PRIORITY, -5);
    ipc_put_u8(&w, IPC_F_QOS, 2);
    ipc_put_u64(&w, IPC_F_CONN, UINT64_C(0x0102030405060708));
    CHECK(ipc_msg_end(&w));
    frame = ipc_writer_frame(&w, &len);
    CHECK(frame != NULL && frame[0] == IPC_VERSION);

    CHECK(decode_one(frame, len, &m, &error) == 1);
    CHECK(m.type == IPC_STANZA);
    CHECK(m.skind == STANZA_MESSAGE);
    CHECK(ipc_slice_eq(m.type_str, "chat"));
    CHECK(ipc_slice_eq(m.id, "m1"));
    CHECK_STR(ipc_slice_cstr(m.from, buf, sizeof(buf)), "alice@example.org/phone");
    CHECK(ipc_slice_eq(m.to, "bob@example.org"));
    CHECK(m.body_text.len == 8 && memcmp(m.body_text.ptr, "hi\0there", 8) == 0);
    CHECK(m.priority == -5);
    CHECK(m.qos == 2);
    CHECK(m.conn == UINT64_C(0x0102030405060708));
    CHECK(m.present & (UINT64_C(1) << IPC_F_BODY));
    CHECK(!(m.present & (UINT64_C(1) << IPC_F_SUBJECT)));
    ipc_writer_free(&w);
}

static void test_batch_and_forward(void)
{
    struct ipc_writer w, fwd;
    struct ipc_cursor cur;
    struct ipc_msg m;
    const char *error = NULL;
    const uint8_t *frame;
    size_t len;
    int n = 0;

    ipc_writer_init(&w);
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof(id), "id%d", i);
        ipc_msg_begin(&w, IPC_STANZA);
        ipc_put_u8(&w, IPC_F_SKIND, STANZA_PRESENCE);
        ipc_put_str(&w, IPC_F_ID, id);
        CHECK(ipc_msg_end(&w));
    }
    ipc_msg_begin(&w, IPC_LINK_HEARTBEAT);
    ipc_msg_end(&w);
    frame = ipc_writer_frame(&w, &len);
    CHECK(ipc_frame_open(&cur, frame, len, &error) == 0);
    while (ipc_frame_next(&cur, &m, &error) == 1) {
        if (n < 100) {
            char id[16];
            snprintf(id, sizeof(id), "id%d", n);
            CHECK(m.type == IPC_STANZA && ipc_slice_eq(m.id, id));
        } else {
            CHECK(m.type == IPC_LINK_HEARTBEAT);
        }
        n++;
    }
    CHECK(n == 101);

    /* Forwarding: copy a body, append TARGETs and WORKER. */
    CHECK(ipc_frame_open(&cur, frame, len, &error) == 0);
    CHECK(ipc_frame_next(&cur, &m, &error) == 1);
    ipc_writer_init(&fwd);
    ipc_msg_begin(&fwd, IPC_STANZA);
    ipc_put_raw(&fwd, m.body, m.body_len);
    ipc_put_u32(&fwd, IPC_F_WORKER, 7);
    ipc_put_u64(&fwd, IPC_F_TARGET, 11);
    ipc_put_u64(&fwd, IPC_F_TARGET, 12);
    CHECK(ipc_msg_end(&fwd));
    frame = ipc_writer_frame(&fwd, &len);
    {
        struct ipc_msg f;
        struct ipc_slice v;
        uint32_t off = 0;
        uint64_t sum = 0;

        CHECK(decode_one(frame, len, &f, &error) == 1);
        CHECK(f.worker == 7 && f.n_target == 2 && ipc_slice_eq(f.id, "id0"));
        while (ipc_msg_each(&f, IPC_F_TARGET, &off, &v) == 1)
            sum += ipc_slice_u64(v);
        CHECK(sum == 23);
    }
    ipc_writer_free(&fwd);
    ipc_writer_free(&w);
}

static void test_oversized_message_dropped(void)
{
    struct ipc_writer w;
    const uint8_t *frame;
    size_t len;
    uint8_t *big = calloc(1, IPC_MAX_MESSAGE + 1);
    struct ipc_msg m;
    const char *error = NULL;

    ipc_writer_init(&w);
    ipc_msg_begin(&w, IPC_LINK_HEARTBEAT);
    CHECK(ipc_msg_end(&w));
    ipc_msg_begin(&w, IPC_STANZA);
    ipc_put_u8(&w, IPC_F_SKIND, STANZA_MESSAGE);
    ipc_put_bytes(&w, IPC_F_BODY, big, IPC_MAX_MESSAGE + 1);
    CHECK(!ipc_msg_end(&w));
    /* The frame keeps the first message only. */
    frame = ipc_writer_frame(&w, &len);
    CHECK(len == 1 + IPC_MSG_HEADER);
    CHECK(decode_one(frame, len, &m, &error) == 1 && m.type == IPC_LINK_HEARTBEAT);

    /* A failed first message leaves an empty frame. */
    ipc_writer_reset(&w);
    ipc_msg_begin(&w, IPC_STANZA);
    ipc_put_bytes(&w, IPC_F_BODY, big, IPC_MAX_MESSAGE + 1);
    CHECK(!ipc_msg_end(&w));
    CHECK(ipc_writer_frame(&w, &len) == NULL && len == 0);
    /* And the writer is usable again. */
    ipc_msg_begin(&w, IPC_LINK_BYE);
    CHECK(ipc_msg_end(&w));
    CHECK(ipc_writer_frame(&w, &len) != NULL && len == 1 + IPC_MSG_HEADER);
    ipc_writer_free(&w);
    free(big);
}

/* Decodes a hand-made frame and returns the error text, or NULL if it was accepted. */
static const char *reject(const uint8_t *frame, size_t len)
{
    struct ipc_cursor cur;
    struct ipc_msg m;
    const char *error = NULL;
    int r;

    if (ipc_frame_open(&cur, frame, len, &error) < 0)
        return error;
    while ((r = ipc_frame_next(&cur, &m, &error)) == 1)
        ;
    return r < 0 ? error : NULL;
}

static void test_rejections(void)
{
    /* HELLO with KIND "x" and PID 1: the valid baseline. */
    const uint8_t ok[] = {1,   IPC_LINK_HELLO, 0, 0, 0, 15, IPC_F_KIND, 0, 0, 0, 1,
                          'x', IPC_F_PID,      0, 0, 0, 4,  0,          0, 0, 1};
    uint8_t b[64];

    CHECK(reject(ok, sizeof(ok)) == NULL);
    CHECK_STR(reject(ok, 0), "empty frame");
    memcpy(b, ok, sizeof(ok));
    b[0] = 2;
    CHECK_STR(reject(b, sizeof(ok)), "unsupported frame version");
    CHECK_STR(reject(ok, 3), "truncated message header");
    CHECK_STR(reject(ok, sizeof(ok) - 1), "truncated message body");
    memcpy(b, ok, sizeof(ok));
    b[1] = 99;
    CHECK_STR(reject(b, sizeof(ok)), "unknown message type");
    memcpy(b, ok, sizeof(ok));
    b[6] = 60; /* unknown tag */
    CHECK_STR(reject(b, sizeof(ok)), "field not allowed in this message type");
    memcpy(b, ok, sizeof(ok));
    b[6] = IPC_F_BODY; /* known tag, not allowed in HELLO */
    CHECK_STR(reject(b, sizeof(ok)), "field not allowed in this message type");
    memcpy(b, ok, sizeof(ok));
    b[12] = IPC_F_KIND; /* KIND twice, PID missing; KIND value is 4 bytes here */
    CHECK_STR(reject(b, sizeof(ok)), "duplicate field");
    memcpy(b, ok, sizeof(ok));
    b[16] = 3; /* PID of 3 bytes */
    b[5] = 14;
    CHECK_STR(reject(b, sizeof(ok) - 1), "bad u32 field width");
    memcpy(b, ok, sizeof(ok));
    b[10] = 200; /* field length beyond the body */
    CHECK_STR(reject(b, sizeof(ok)), "truncated field value");
    memcpy(b, ok, sizeof(ok));
    b[5] = 6; /* body ends inside the second field's header */
    CHECK(reject(b, 6 + 6) != NULL);
    {
        /* Missing required PID. */
        const uint8_t f[] = {1, IPC_LINK_HELLO, 0, 0, 0, 6, IPC_F_KIND, 0, 0, 0, 1, 'x'};
        CHECK_STR(reject(f, sizeof(f)), "required field missing");
    }
    {
        /* NUL inside a string. */
        const uint8_t f[] = {1, IPC_ROUTE_ADD, 0, 0, 0, 7, IPC_F_ADDRESS, 0, 0, 0, 2, 'a', 0};
        CHECK_STR(reject(f, sizeof(f)), "NUL inside a string field");
    }
    {
        /* Stanza kind out of range, QoS out of range. */
        const uint8_t f[] = {1, IPC_STANZA, 0, 0, 0, 6, IPC_F_SKIND, 0, 0, 0, 1, 9};
        const uint8_t g[] = {1, IPC_STANZA, 0, 0,         0, 12, IPC_F_SKIND, 0, 0,
                             0, 1,          1, IPC_F_QOS, 0, 0,  0,           1, 3};
        CHECK_STR(reject(f, sizeof(f)), "unknown stanza kind");
        CHECK_STR(reject(g, sizeof(g)), "QoS out of range");
    }
    {
        /* A message length over the cap. */
        const uint8_t f[] = {1, IPC_STANZA, 0x7f, 0, 0, 0};
        CHECK_STR(reject(f, sizeof(f)), "message too large");
    }
}

int main(void)
{
    test_stanza_roundtrip();
    test_batch_and_forward();
    test_oversized_message_dropped();
    test_rejections();
    return check_result("test_ipc");
}
